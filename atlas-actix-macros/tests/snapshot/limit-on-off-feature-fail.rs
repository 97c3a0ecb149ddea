use atlas::limit;

fn main() {
    let _ = limit!(atlas::Atlas::builder(), "data-explorer", |_| async { 1 });
}
