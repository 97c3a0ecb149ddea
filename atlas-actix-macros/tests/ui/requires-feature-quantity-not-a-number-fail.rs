use actix_web::web;
use atlas::requires_feature;

#[requires_feature("seats", quantity = name.as_str())]
async fn handler(name: web::Path<String>) -> String {
    name.into_inner()
}

fn main() {}
