use atlas_actix::limit;

fn main() {
    let feature = "seats";
    let _ = limit!(atlas_actix::Atlas::builder(), feature, |_| async { 1 });
}
