use atlas::limit;

fn main() {
    let _ = limit!(atlas::Atlas::builder(), "", |_| async { 1 });
}
