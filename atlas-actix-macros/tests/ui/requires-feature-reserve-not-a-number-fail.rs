use actix_web::web;
use atlas::requires_feature;

#[requires_feature("ai-tokens", reserve = body.as_str())]
async fn handler(body: web::Json<String>) -> &'static str {
    "how many?"
}

fn main() {}
