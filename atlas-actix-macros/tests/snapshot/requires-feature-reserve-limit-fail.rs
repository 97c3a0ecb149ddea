use actix_web::web;
use atlas::requires_feature;

#[requires_feature("seats", reserve = *_count)]
async fn add(_count: web::Json<f64>) -> &'static str {
    "added"
}

fn main() {}
