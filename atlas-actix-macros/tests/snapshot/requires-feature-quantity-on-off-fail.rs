use actix_web::web;
use atlas::requires_feature;

#[requires_feature("data-explorer", quantity = *_rows)]
async fn export(_rows: web::Json<f64>) -> &'static str {
    "exported"
}

fn main() {}
