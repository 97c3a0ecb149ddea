use actix_web::{get, post, web, App, HttpResponse, Responder};
use atlas::requires_feature;

#[get("/above")]
#[requires_feature("data-explorer")]
async fn above() -> impl Responder {
    "above"
}

#[requires_feature("data-explorer", "sso", usage = 1, shadow)]
#[post("/below/{id}")]
async fn below(
    path: web::Path<u32>,
    query: web::Query<std::collections::HashMap<String, String>>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, actix_web::Error> {
    let _ = (path.into_inner(), query.into_inner(), body.into_inner());
    Ok(HttpResponse::Ok().finish())
}

/// Documented, routed by hand, with a `mut` argument.
#[requires_feature("ai-tokens", usage = 0.5, shadow = false, exclusive = false)]
async fn by_hand(mut path: web::Path<(u32, u32)>) -> String {
    path.0 += 1;
    format!("{}", path.0 + path.1)
}

#[requires_feature("seats", exclusive)]
async fn no_arguments() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

/// The quantity comes from the arguments, by the names the handler gives them.
#[post("/seats/{team}")]
#[requires_feature("seats", exclusive, quantity = body["emails"].as_array().map_or(0, Vec::len) + **team)]
async fn bulk(team: web::Path<usize>, mut body: web::Json<serde_json::Value>) -> HttpResponse {
    body["team"] = serde_json::json!(team.into_inner());
    HttpResponse::Created().json(&*body)
}

/// Work of unknown cost: reserves what the body allows, commits what it used.
#[post("/summarise")]
#[requires_feature("ai-tokens", reserve = body["maxTokens"].as_u64().unwrap_or(100))]
async fn summarise(body: web::Json<serde_json::Value>, reserved: atlas::Reserved) -> HttpResponse {
    let used = body["text"].as_str().map_or(0, |text| text.split_whitespace().count());
    match reserved.commit(used as f64).await {
        Ok(()) => HttpResponse::Ok().finish(),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

fn main() {
    let _ = App::new()
        .service(summarise)
        .service(above)
        .service(below)
        .service(bulk)
        .route("/by-hand/{a}/{b}", web::get().to(by_hand))
        .service(web::resource("/nothing").to(no_arguments));
}
