use actix_web::web;
use atlas::requires_feature;

#[requires_feature("ai-tokens", reserve = body.len(), shadow)]
async fn handler(body: web::Json<Vec<u8>>) -> &'static str {
    "held?"
}

fn main() {}
