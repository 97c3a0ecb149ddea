use atlas::limit;

fn main() {
    let _ = limit!(atlas::Atlas::builder(), "seats", |customer, extra| async move { 1 });
}
