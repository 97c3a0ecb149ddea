use atlas_actix::limit;

fn main() {
    let _ = limit!(atlas_actix::Atlas::builder(), "seats", |customer, extra| async move { 1 });
}
