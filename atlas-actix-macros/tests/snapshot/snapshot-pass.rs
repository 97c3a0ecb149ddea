use actix_web::{post, web, HttpResponse};
use atlas::{limit, requires_feature, Reserved};

#[post("/seats")]
#[requires_feature("seats", exclusive, quantity = body.len())]
async fn add_seats(body: web::Json<Vec<String>>) -> HttpResponse {
    HttpResponse::Created().json(body.len())
}

#[requires_feature("ai-tokens", usage = 1)]
async fn complete() -> &'static str {
    "done"
}

#[requires_feature("ai-tokens", reserve = **tokens)]
async fn summarise(tokens: web::Json<f64>, reserved: Reserved) -> &'static str {
    let _ = reserved.commit(1.0).await;
    "short"
}

#[requires_feature("image-generation", usage = 1)]
async fn image() -> &'static str {
    "a picture"
}

#[requires_feature("data-explorer", "sso")]
async fn explorer() -> &'static str {
    "rows"
}

fn main() {
    let _ = limit!(atlas::Atlas::builder(), "seats", |_| async { 1 });
    let _ = (add_seats, complete, summarise, image, explorer);
}
