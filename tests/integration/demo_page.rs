//! The quickstart's demo page (`GET /`): served from the binary in demo mode only, with a
//! policy that lets it run its own script alone. The browser test (`tests/frontend/browser.sh`,
//! in CI) clicks through it in Chromium.

use std::time::Duration;

use crate::common::{quickstart_command, start_emulator, Quickstart};

async fn fetch(base: &str, path: &str) -> (u16, Option<String>, String) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(20))
        .finish();
    let mut response = client.get(format!("{base}{path}")).send().await.unwrap();
    let policy = response
        .headers()
        .get("content-security-policy")
        .map(|value| value.to_str().unwrap().to_owned());
    let body = response.body().await.unwrap();
    (
        response.status().as_u16(),
        policy,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[actix_rt::test]
async fn demo_mode_serves_the_page_and_its_files_from_the_binary() {
    let emulator = start_emulator();
    let quickstart = Quickstart::start(&emulator, None);
    let (status, policy, page) = fetch(&quickstart.base, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("Demo mode") && page.contains("/demo/app.js"));
    let policy = policy.expect("a content security policy");
    for directive in [
        "script-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{directive}: {policy}");
    }
    let (status, _, script) = fetch(&quickstart.base, "/demo/app.js").await;
    assert_eq!(status, 200);
    assert!(
        script.contains("/atlas-api/plans/"),
        "the page subscribes through the scope"
    );
    assert!(
        !script.contains("innerHTML"),
        "answers are never written as HTML"
    );
    assert_eq!(fetch(&quickstart.base, "/demo/style.css").await.0, 200);
    assert_eq!(fetch(&quickstart.base, "/demo/../Cargo.toml").await.0, 404);
    assert_eq!(fetch(&quickstart.base, "/demo/other.js").await.0, 404);
}

#[actix_rt::test]
async fn with_real_clerk_keys_there_is_no_demo_page() {
    let emulator = start_emulator();
    let mut command = quickstart_command(&emulator);
    // Real Clerk verification (its JWKS unreachable here, which only fails token checks).
    command.env("CLERK_JWKS_URL", "http://127.0.0.1:9/.well-known/jwks.json");
    let quickstart = Quickstart::spawn(command);
    assert_eq!(fetch(&quickstart.base, "/").await.0, 404);
    assert_eq!(fetch(&quickstart.base, "/demo/tokens").await.0, 404);
    assert_eq!(fetch(&quickstart.base, "/demo/app.js").await.0, 404);
}
