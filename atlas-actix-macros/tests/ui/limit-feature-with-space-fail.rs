use atlas_actix::limit;

fn main() {
    let _ = limit!(atlas_actix::Atlas::builder(), "data explorer", |_| async { 1 });
}
