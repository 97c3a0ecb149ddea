use atlas::limit;

fn main() {
    let feature = "seats";
    let _ = limit!(atlas::Atlas::builder(), feature, |_| async { 1 });
}
