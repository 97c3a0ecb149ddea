use atlas_actix::limit;

fn main() {
    let _ = limit!(atlas_actix::Atlas::builder(), "", |_| async { 1 });
}
