//! Demo mode: Clerk-shaped session tokens for the data file's users, signed with a key made at
//! start-up, and the demo page, served from the binary.

use actix_web::{http, web, HttpResponse, Responder};
use atlas_actix::emulator::AtlasData;
use atlas_actix::ClerkAuth;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::Generate;
use serde_json::json;

/// A demo user: a customer of the data file, or a member of an organisation customer.
pub(crate) struct DemoUser {
    pub(crate) name: String,
    pub(crate) user_id: String,
    /// The organisation, and the member's role in it.
    pub(crate) organization: Option<(String, String)>,
}

/// Demo users from the data file: each customer, and the `demoMembers` of organisations.
pub(crate) fn demo_users(data: &AtlasData) -> Vec<DemoUser> {
    let mut users = Vec::new();
    for customer in &data.customers {
        let members = customer.extra.get("demoMembers");
        match members.as_ref().and_then(|m| m.as_array()) {
            Some(members) => users.extend(members.iter().filter_map(|member| {
                let role = member.get("role").and_then(|r| r.as_str());
                Some(DemoUser {
                    name: member.get("name")?.as_str()?.to_owned(),
                    user_id: member.get("id")?.as_str()?.to_owned(),
                    organization: Some((
                        customer.external_id.clone(),
                        role.unwrap_or("org:member").to_owned(),
                    )),
                })
            })),
            None => users.push(DemoUser {
                name: customer
                    .name
                    .clone()
                    .unwrap_or_else(|| customer.external_id.clone()),
                user_id: customer.external_id.clone(),
                organization: None,
            }),
        }
    }
    users
}

/// Each demo user's name and session token.
pub(crate) type DemoTokens = Vec<(String, String)>;

/// The issuer of the demo's tokens.
const DEMO_ISSUER: &str = "https://demo.clerk.invalid";

/// Demo mode: an RSA key pair made now, Clerk-shaped tokens signed with it for the app at
/// `origin`, verified by the very `ClerkAuth` code path a real Clerk setup uses.
pub(crate) fn demo_auth(
    users: &[DemoUser],
    origin: &str,
) -> Result<(ClerkAuth, DemoTokens), Box<dyn std::error::Error>> {
    let private_key = rsa::PrivateKey::generate();
    let public_pem = private_key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)?;
    let private_pem = private_key.to_pkcs8_pem(LineEnding::LF)?;
    let signing = EncodingKey::from_rsa_pem(private_pem.as_bytes())?;
    let now = jsonwebtoken::get_current_timestamp();
    let mut tokens = Vec::new();
    for user in users {
        let mut claims = json!({
            "sub": user.user_id,
            "sid": format!("sess_demo_{}", user.user_id),
            "iss": DEMO_ISSUER,
            "azp": origin,
            "iat": now,
            "nbf": now,
            "exp": now + 24 * 3600,
            "v": 2,
        });
        if let Some((organization, role)) = &user.organization {
            // v2 tokens carry the role without its `org:` prefix.
            let role = role.strip_prefix("org:").unwrap_or(role);
            claims["o"] = json!({"id": organization, "rol": role, "slg": organization});
        }
        let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &signing)?;
        tokens.push((user.name.clone(), token));
    }
    Ok((
        ClerkAuth::from_pem(&public_pem)?.issuer(DEMO_ISSUER),
        tokens,
    ))
}

/// The demo page's files, in the binary: no build step, nothing fetched from elsewhere.
const DEMO_PAGE: &str = include_str!("../demo/index.html");
const DEMO_SCRIPT: &str = include_str!("../demo/app.js");
const DEMO_STYLE: &str = include_str!("../demo/style.css");

/// Whether a `Host` header names this machine (`localhost`, `127.x.y.z`, `[::1]`, with any
/// port) or one of the public demo's hosts.
pub(crate) fn demo_host_allowed(host: &str, public: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(address, _)| address),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback
        || public
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(host))
}

/// The page may run its own script and style only: a value an answer carries can never run,
/// nor can a `<base>`, a form or a plug-in send it elsewhere.
fn demo_answer(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            http::header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
        ))
        .insert_header((http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

/// `GET /`: the demo page (demo mode only).
pub(crate) async fn demo_page() -> HttpResponse {
    demo_answer("text/html; charset=utf-8", DEMO_PAGE)
}

pub(crate) async fn demo_asset(asset: web::Path<String>) -> HttpResponse {
    match asset.as_str() {
        "app.js" => demo_answer("text/javascript; charset=utf-8", DEMO_SCRIPT),
        "style.css" => demo_answer("text/css; charset=utf-8", DEMO_STYLE),
        _ => HttpResponse::NotFound().json(json!({ "error": "no such file" })),
    }
}

pub(crate) async fn demo_tokens_route(tokens: web::Data<DemoTokens>) -> impl Responder {
    let tokens: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .map(|(name, token)| (name.clone(), json!(token)))
        .collect();
    HttpResponse::Ok().json(tokens)
}

pub(crate) fn print_demo(base: &str, tokens: &DemoTokens) {
    println!("\nDemo mode (no CLERK_JWT_KEY or CLERK_JWKS_URL): tokens for the data file's users, valid 24 hours.");
    println!("The demo page: open {base}/ in a browser.");
    println!("All of them: curl {base}/demo/tokens\n");
    for (name, token) in tokens {
        println!("{name}:\n  TOKEN={token}");
    }
    if let Some((name, _)) = tokens.first() {
        println!("\nTry, with TOKEN set to {name}'s:");
    }
    for line in [
        "curl -H \"Authorization: Bearer $TOKEN\" BASE/atlas-api/features",
        "curl -H \"Authorization: Bearer $TOKEN\" BASE/api/data-explorer",
        "curl -X POST -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{\"email\":\"new@example.com\"}' BASE/api/seats",
        "curl -X POST -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{\"prompt\":\"hello there\"}' BASE/api/ai/complete",
        "curl -X POST -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{\"text\":\"four words of text\",\"maxTokens\":10}' BASE/api/ai/summarise",
        "curl -X POST -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{\"prompt\":\"a lighthouse\"}' BASE/api/images",
        "curl BASE/atlas-api/pricing-model",
    ] {
        println!("  {}", line.replace("BASE", base));
    }
    println!();
}
