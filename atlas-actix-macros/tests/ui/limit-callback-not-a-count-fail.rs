use atlas::limit;

fn main() {
    let _ = limit!(atlas::Atlas::builder(), "seats", |customer| async move { customer });
}
