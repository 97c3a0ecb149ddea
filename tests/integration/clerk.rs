//! Clerk session tokens: what verifies, what does not, organisations, JWKS.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::test::{self, TestRequest};
use actix_web::{web, App, HttpResponse, HttpServer};
use atlas_actix::{limit, ClerkAuth, ClerkError};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::Generate;
use serde_json::{json, Value};

use crate::common::builder;
use crate::common::{json_body, start_emulator};

struct KeyPair {
    public_pem: String,
    signing: EncodingKey,
}

fn key_pair() -> KeyPair {
    let private = rsa::PrivateKey::generate();
    KeyPair {
        public_pem: private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
        signing: EncodingKey::from_rsa_pem(
            private.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
        )
        .unwrap(),
    }
}

/// The instance's key, and another one, made once for all the tests.
fn keys() -> &'static (KeyPair, KeyPair) {
    static KEYS: OnceLock<(KeyPair, KeyPair)> = OnceLock::new();
    KEYS.get_or_init(|| (key_pair(), key_pair()))
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "sid": "sess_1", "iat": now(), "nbf": now() - 5, "exp": now() + 600, "v": 2,
           "iss": "https://clerk.example.dev", "azp": "https://app.example.com"})
}

fn sign(claims: &Value, key: &KeyPair, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key.signing).unwrap()
}

fn clerk() -> ClerkAuth {
    ClerkAuth::from_pem(&keys().0.public_pem).unwrap()
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[actix_rt::test]
async fn a_valid_session_names_the_user_or_its_organisation() {
    let (good, _) = keys();
    let user = clerk()
        .verify(&sign(&claims("user_alice"), good, None))
        .await
        .unwrap();
    assert_eq!(user.user_id, "user_alice");
    assert_eq!(user.session_id.as_deref(), Some("sess_1"));
    assert!(user.organization_id.is_none());

    let mut v2 = claims("user_alice");
    v2["o"] = json!({"id": "org_standard_corp", "rol": "member", "slg": "standard"});
    let mut v1 = claims("user_bob");
    v1["org_id"] = json!("org_standard_corp");
    for token in [sign(&v2, good, None), sign(&v1, good, None)] {
        let session = clerk().verify(&token).await.unwrap();
        assert_eq!(
            session.organization_id.as_deref(),
            Some("org_standard_corp")
        );
    }
}

#[actix_rt::test]
async fn bad_tokens_are_refused() {
    let (good, other) = keys();
    let mut expired = claims("u");
    expired["exp"] = json!(now() - 3600);
    let mut early = claims("u");
    early["nbf"] = json!(now() + 3600);
    let mut pending = claims("u");
    pending["sts"] = json!("pending");
    let mut no_subject = claims("u");
    no_subject.as_object_mut().unwrap().remove("sub");

    let header_none = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64url(claims("u").to_string().as_bytes());
    let alg_none = format!("{header_none}.{payload}.");
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("u"),
        &EncodingKey::from_secret(good.public_pem.as_bytes()).unwrap(),
    )
    .unwrap();

    let cases = [
        ("expired", sign(&expired, good, None)),
        ("not yet valid", sign(&early, good, None)),
        ("pending session", sign(&pending, good, None)),
        ("no subject", sign(&no_subject, good, None)),
        ("signed by another key", sign(&claims("u"), other, None)),
        ("alg none", alg_none),
        ("HS256 with the public key", hs256),
        ("not a token", "abc".to_owned()),
        ("empty", String::new()),
    ];
    for (what, token) in cases {
        assert!(
            clerk().verify(&token).await.is_none(),
            "{what} was accepted"
        );
    }
}

#[actix_rt::test]
async fn each_cause_of_refusal_is_logged_once_with_why() {
    crate::common::captured_logs();
    let (good, other) = keys();
    let mut expired = claims("u");
    expired["exp"] = json!(now() - 3600);
    let auth = clerk();
    for _ in 0..3 {
        for token in [
            sign(&expired, good, None),
            sign(&claims("u"), other, None),
            "garbage".to_owned(),
        ] {
            assert!(auth.verify(&token).await.is_none());
        }
    }
    let logs =
        String::from_utf8_lossy(&crate::common::captured_logs().lock().unwrap()).into_owned();
    let refusals = |cause: &str| {
        logs.lines()
            .filter(|line| {
                line.contains("DEBUG")
                    && line.contains("a Clerk session token was refused")
                    && line.contains(&format!("cause=\"{cause}\""))
            })
            .count()
    };
    // Other tests refuse tokens with clients of their own: at least this client's one line.
    for cause in ["expired", "bad_signature", "malformed"] {
        assert!(refusals(cause) >= 1, "no {cause} line: {logs}");
    }
    assert!(
        logs.contains("the frontend should refresh its session token"),
        "{logs}"
    );
    assert!(
        !logs.contains(&sign(&expired, good, None)),
        "a token in the logs"
    );
}

#[actix_rt::test]
async fn authorized_parties_are_checked() {
    let (good, _) = keys();
    let token = sign(&claims("user_alice"), good, None);
    let ours = clerk().authorized_parties(["https://app.example.com"]);
    assert!(ours.verify(&token).await.is_some());
    let theirs = clerk().authorized_parties(["https://other.example.com"]);
    assert!(theirs.verify(&token).await.is_none());
}

#[actix_rt::test]
async fn a_token_without_azp_is_refused_when_parties_are_set() {
    let (good, _) = keys();
    let mut no_azp = claims("user_alice");
    no_azp.as_object_mut().unwrap().remove("azp");
    let token = sign(&no_azp, good, None);
    assert!(
        clerk().verify(&token).await.is_some(),
        "no parties configured"
    );
    let ours = clerk().authorized_parties(["https://app.example.com"]);
    assert!(ours.verify(&token).await.is_none());
}

#[actix_rt::test]
async fn the_issuer_is_checked_when_configured() {
    let (good, _) = keys();
    let ours = || clerk().issuer("https://clerk.example.dev");
    assert!(ours()
        .verify(&sign(&claims("u"), good, None))
        .await
        .is_some());
    let mut other = claims("u");
    other["iss"] = json!("https://clerk.attacker.dev");
    assert!(ours().verify(&sign(&other, good, None)).await.is_none());
    let mut none = claims("u");
    none.as_object_mut().unwrap().remove("iss");
    assert!(ours().verify(&sign(&none, good, None)).await.is_none());
}

#[actix_rt::test]
async fn an_exp_near_the_end_of_time_answers_the_same_every_time() {
    let (good, _) = keys();
    let clerk = clerk();
    for exp in [u64::MAX, u64::MAX - 1, u64::MAX - 4] {
        let mut far = claims("user_far");
        far["exp"] = json!(exp);
        let token = sign(&far, good, None);
        // The first answer verifies; the second comes from the verified-token cache.
        let first = clerk.verify(&token).await;
        let second = clerk.verify(&token).await;
        assert_eq!(first, second, "exp {exp}");
        assert_eq!(first.map(|s| s.expires_at), Some(exp));
    }
}

#[actix_rt::test]
async fn organisation_roles_are_read_from_v1_and_v2_tokens() {
    let (good, _) = keys();
    let mut v2 = claims("user_alice");
    v2["o"] = json!({"id": "org_1", "rol": "admin", "slg": "one"});
    let mut v1 = claims("user_bob");
    v1["org_id"] = json!("org_1");
    v1["org_role"] = json!("org:member");
    let admin = clerk().verify(&sign(&v2, good, None)).await.unwrap();
    assert_eq!(admin.organization_role.as_deref(), Some("org:admin"));
    let member = clerk().verify(&sign(&v1, good, None)).await.unwrap();
    assert_eq!(member.organization_role.as_deref(), Some("org:member"));
}

#[actix_rt::test]
async fn only_billing_roles_change_an_organisations_billing() {
    let emulator = start_emulator();
    let (good, _) = keys();
    let clerk = clerk().organizations(true).billing_roles(["org:admin"]);
    let atlas = builder(&emulator).user_resolver(clerk).build().unwrap();
    let app = test::init_service(App::new().service(atlas.scope())).await;
    let token = |sub: &str, org: Option<(&str, &str)>| {
        let mut claims = claims(sub);
        if let Some((id, role)) = org {
            claims["o"] = json!({"id": id, "rol": role});
        }
        sign(&claims, good, None)
    };
    let subscribe = |token: String| {
        TestRequest::post()
            .uri("/atlas-api/plans/plan_free/subscribe")
            .insert_header(("authorization", format!("Bearer {token}")))
            .set_json(
                json!({"billingCadence": "monthly", "successUrl": "https://app.example.com/done"}),
            )
            .to_request()
    };
    let customers = || async {
        crate::common::Platform {
            emulator: &emulator,
        }
        .admin(awc::http::Method::GET, "/__admin/customers", None)
        .await
        .body
    };
    let before = customers().await;
    let member = token("user_bob", Some(("org_standard_corp", "member")));
    let (status, body) = json_body(test::call_service(&app, subscribe(member)).await).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["error"],
        "your role in the organisation may not change its billing"
    );
    let cancel = TestRequest::post()
        .uri("/atlas-api/subscriptions/sub_standard_team/cancel")
        .insert_header((
            "authorization",
            format!(
                "Bearer {}",
                token("user_bob", Some(("org_standard_corp", "member")))
            ),
        ))
        .set_json(json!({"type": "active"}))
        .to_request();
    assert_eq!(test::call_service(&app, cancel).await.status(), 403);
    assert_eq!(customers().await, before, "the member changed nothing");

    // The admin may; so may a user acting for their own account.
    let admin = token("user_alice", Some(("org_standard_corp", "admin")));
    let (status, _) = json_body(test::call_service(&app, subscribe(admin)).await).await;
    assert_eq!(status, 200);
    let personal = token("user_dave", None);
    let (status, _) = json_body(test::call_service(&app, subscribe(personal)).await).await;
    assert_eq!(status, 200);
}

#[actix_rt::test]
async fn members_share_their_organisations_plan_through_the_scope() {
    let emulator = start_emulator();
    let (good, other) = keys();
    let counted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&counted);
    let atlas = limit!(builder(&emulator), "seats", move |customer| {
        seen.lock().unwrap().push(customer);
        async { 3 }
    })
    .user_resolver(clerk().organizations(true))
    .build()
    .unwrap();
    let app = test::init_service(App::new().service(atlas.scope())).await;
    let member = |sub: &str| {
        let mut claims = claims(sub);
        claims["o"] = json!({"id": "org_standard_corp", "rol": "member"});
        sign(&claims, good, None)
    };
    for sub in ["user_alice", "user_bob"] {
        let request = TestRequest::get()
            .uri("/atlas-api/features")
            .insert_header(("authorization", format!("Bearer {}", member(sub))))
            .to_request();
        let (status, body) = json_body(test::call_service(&app, request).await).await;
        assert_eq!(status, 200);
        let sso = body["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == "sso")
            .unwrap();
        assert_eq!(
            sso["allowed"], true,
            "{sub} has the Team plan of Standard Corp"
        );
    }
    assert!(counted
        .lock()
        .unwrap()
        .iter()
        .all(|customer| customer == "org_standard_corp"));

    // The session cookie works as the header does; anything invalid is a 401, never a 500.
    let cookie = TestRequest::get()
        .uri("/atlas-api/user")
        .insert_header(("cookie", format!("__session={}", member("user_carol"))))
        .to_request();
    let (status, body) = json_body(test::call_service(&app, cookie).await).await;
    assert_eq!(
        (status, body["externalId"].as_str()),
        (200, Some("org_standard_corp"))
    );
    for authorization in [
        format!("Bearer {}", sign(&claims("x"), other, None)),
        "Bearer garbage".to_owned(),
        "Basic abc".to_owned(),
    ] {
        let request = TestRequest::get()
            .uri("/atlas-api/user")
            .insert_header(("authorization", authorization))
            .to_request();
        assert_eq!(
            json_body(test::call_service(&app, request).await).await,
            (401, json!({"error": "Unauthorized"}))
        );
    }
}

#[actix_rt::test]
async fn jwks_keys_are_fetched_and_refreshed_for_unknown_key_ids() {
    let (good, other) = keys();
    let mut jwk = Jwk::from_encoding_key(&good.signing, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("kid_1".to_owned());
    let set = JwkSet { keys: vec![jwk] };
    let fetches = Arc::new(AtomicUsize::new(0));
    let served = Arc::clone(&fetches);
    let server = HttpServer::new(move || {
        let set = set.clone();
        let served = Arc::clone(&served);
        App::new().route(
            "/.well-known/jwks.json",
            web::get().to(move || {
                served.fetch_add(1, Ordering::SeqCst);
                let set = set.clone();
                async move { HttpResponse::Ok().json(set) }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}/.well-known/jwks.json", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);

    let clerk = ClerkAuth::from_jwks_url(url)
        .unwrap()
        .leeway(Duration::from_secs(1));
    assert!(clerk
        .verify(&sign(&claims("user_a"), good, Some("kid_1")))
        .await
        .is_some());
    assert!(clerk
        .verify(&sign(&claims("user_b"), good, Some("kid_1")))
        .await
        .is_some());
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "keys are cached");
    assert!(clerk
        .verify(&sign(&claims("user_c"), other, Some("kid_2")))
        .await
        .is_none());
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "an unknown kid right after a fetch does not hammer the JWKS"
    );
    assert!(
        clerk
            .verify(&sign(&claims("user_d"), good, None))
            .await
            .is_none(),
        "JWKS tokens need a kid"
    );
    handle.stop(false).await;

    assert!(matches!(
        ClerkAuth::from_jwks_url("ftp://x"),
        Err(ClerkError::InvalidUrl(url)) if url == "ftp://x"
    ));
    assert!(matches!(
        ClerkAuth::from_pem("not a key"),
        Err(ClerkError::InvalidKey(_))
    ));
}

#[test]
fn a_private_key_where_the_public_one_goes_is_refused_and_says_so() {
    let private = rsa::PrivateKey::generate();
    for pem in [
        private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----\n"
            .to_owned(),
    ] {
        let err = ClerkAuth::from_pem(&pem).unwrap_err();
        assert!(err.to_string().contains("this is a private key"), "{err}");
        // `main` returning it prints Debug: the message, not the variant.
        assert_eq!(format!("{err:?}"), err.to_string());
    }
    assert!(ClerkAuth::from_pem(&keys().0.public_pem).is_ok());
}

/// A JWKS endpoint that serves `kid_1`, fails its first `fail_first` answers and, while
/// `failing` is set, every answer; it counts fetches and the most served at once.
struct FlakyJwks {
    url: String,
    fetches: Arc<AtomicUsize>,
    most_at_once: Arc<AtomicUsize>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    handle: actix_web::dev::ServerHandle,
}

fn flaky_jwks(fail_first: usize) -> FlakyJwks {
    let (good, _) = keys();
    let mut jwk = Jwk::from_encoding_key(&good.signing, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("kid_1".to_owned());
    let set = JwkSet { keys: vec![jwk] };
    let fetches = Arc::new(AtomicUsize::new(0));
    let most_at_once = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (served, most, fail) = (
        Arc::clone(&fetches),
        Arc::clone(&most_at_once),
        Arc::clone(&failing),
    );
    let server = HttpServer::new(move || {
        let (set, served, most, fail, in_flight) = (
            set.clone(),
            Arc::clone(&served),
            Arc::clone(&most),
            Arc::clone(&fail),
            Arc::clone(&in_flight),
        );
        App::new().route(
            "/.well-known/jwks.json",
            web::get().to(move || {
                let (set, served, most, fail, in_flight) = (
                    set.clone(),
                    Arc::clone(&served),
                    Arc::clone(&most),
                    Arc::clone(&fail),
                    Arc::clone(&in_flight),
                );
                async move {
                    let number = served.fetch_add(1, Ordering::SeqCst);
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    // Slow enough that overlapping fetches would show.
                    actix_rt::time::sleep(Duration::from_millis(50)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    if number < fail_first || fail.load(Ordering::SeqCst) {
                        HttpResponse::InternalServerError().finish()
                    } else {
                        HttpResponse::Ok().json(set)
                    }
                }
            }),
        )
    })
    .workers(2)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}/.well-known/jwks.json", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    FlakyJwks {
        url,
        fetches,
        most_at_once,
        failing,
        handle,
    }
}

#[actix_rt::test]
async fn concurrent_first_requests_wait_for_one_jwks_fetch_that_fails_at_first() {
    let (good, _) = keys();
    let jwks = flaky_jwks(1);
    let clerk = ClerkAuth::from_jwks_url(jwks.url.clone()).unwrap();
    let tokens: Vec<String> = (0..200)
        .map(|i| sign(&claims(&format!("user_{i}")), good, Some("kid_1")))
        .collect();
    let sessions =
        futures_util::future::join_all(tokens.iter().map(|token| clerk.verify(token))).await;
    assert!(
        sessions.iter().all(Option::is_some),
        "{} of 200 refused",
        sessions.iter().filter(|s| s.is_none()).count()
    );
    let fetches = jwks.fetches.load(Ordering::SeqCst);
    assert!((2..=3).contains(&fetches), "{fetches} fetches");
    assert_eq!(
        jwks.most_at_once.load(Ordering::SeqCst),
        1,
        "one fetch at a time"
    );

    // The JWKS goes down: the key already known keeps working, and an unknown key is refused
    // without waiting on the dead endpoint.
    jwks.failing.store(true, Ordering::SeqCst);
    let later = sign(&claims("user_later"), good, Some("kid_1"));
    assert!(clerk.verify(&later).await.is_some());
    let started = std::time::Instant::now();
    let unknown = sign(&claims("user_x"), good, Some("kid_rotated"));
    assert!(clerk.verify(&unknown).await.is_none());
    assert!(started.elapsed() < Duration::from_secs(5));
    jwks.handle.stop(false).await;
}

/// A new customer's contact details come from the verified session when its token carries
/// them (`email`, `name` custom claims); the headers, the caller's own word, fill in what the
/// token lacks, and only within bounds.
#[actix_rt::test]
async fn a_new_customers_contact_comes_from_the_session_before_the_headers() {
    let emulator = start_emulator();
    let (good, _) = keys();
    let atlas = builder(&emulator).user_resolver(clerk()).build().unwrap();
    let app = test::init_service(App::new().configure(atlas.configure())).await;
    let mut with_email = claims("user_claims");
    with_email["email"] = json!("verified@example.com");
    let request = TestRequest::get()
        .uri("/atlas-api/user")
        .insert_header((
            "authorization",
            format!("Bearer {}", sign(&with_email, good, None)),
        ))
        .insert_header(("x-customer-email", "someone-else@example.com"))
        .insert_header(("x-customer-name", "Ada"))
        .to_request();
    let (status, user) = json_body(test::call_service(&app, request).await).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["email"], "verified@example.com");
    assert_eq!(
        user["name"], "Ada",
        "the header fills in what the token lacks"
    );

    let request = TestRequest::get()
        .uri("/atlas-api/user")
        .insert_header((
            "authorization",
            format!("Bearer {}", sign(&claims("user_headers"), good, None)),
        ))
        .insert_header(("x-customer-email", "not an address"))
        .insert_header(("x-customer-name", "n".repeat(8_000)))
        .to_request();
    let (status, user) = json_body(test::call_service(&app, request).await).await;
    assert_eq!(status, 200, "{user}");
    assert!(user["email"].is_null() && user["name"].is_null(), "{user}");
}
