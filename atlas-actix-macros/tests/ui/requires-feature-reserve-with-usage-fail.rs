use actix_web::web;
use atlas::requires_feature;

#[requires_feature("ai-tokens", usage = 1, reserve = body.len())]
async fn handler(body: web::Json<Vec<u8>>) -> &'static str {
    "billed twice?"
}

fn main() {}
