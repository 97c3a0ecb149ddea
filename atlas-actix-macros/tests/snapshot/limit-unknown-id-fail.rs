use atlas::limit;

fn main() {
    let _ = limit!(atlas::Atlas::builder(), "seat", |_| async { 1 });
}
