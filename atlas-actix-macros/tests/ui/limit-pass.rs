use atlas::{limit, Atlas, AtlasBuilder};

#[derive(Clone)]
struct Pool;

impl Pool {
    async fn count(&self, _customer: &str) -> Result<i64, std::io::Error> {
        Ok(2)
    }
}

async fn projects(customer: String) -> usize {
    customer.len()
}

fn main() {
    let pool = Pool;
    let builder: AtlasBuilder = limit!(Atlas::builder(), "seats", move |customer| {
        let pool = pool.clone();
        async move { pool.count(&customer).await }
    });
    let builder = limit!(builder, "projects", projects);
    let builder = limit!(builder, "api-keys", |customer: String| async move { customer.len() as f64 },);
    let _ = limit!(builder, "exports", |_| async { Err::<u32, String>("no store".into()) });
}
