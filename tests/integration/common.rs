//! Helpers shared by the integration tests.

use std::path::PathBuf;

use atlas_actix::emulator::{AtlasData, Emulator, EmulatorHandle};
use awc::http::{Method, StatusCode};
use serde_json::Value;

/// The quickstart's data file.
pub fn example_data_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/atlas-data.json")
}

pub fn example_data() -> AtlasData {
    AtlasData::from_file(example_data_path()).expect("the example data file loads")
}

pub fn start_emulator() -> EmulatorHandle {
    Emulator::start(example_data()).expect("the emulator starts")
}

/// An HTTP answer, its body read as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: awc::http::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

/// Sends one request to `base` + `path`. `key` goes in `x-api-key`; `body` is sent as JSON,
/// or as raw bytes when it is a `Value::String` starting with `raw:`.
pub async fn call(
    base: &str,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let client = awc::Client::builder()
        .disable_redirects()
        .timeout(std::time::Duration::from_secs(20))
        .finish();
    let mut request = client.request(method, format!("{base}{path}"));
    if let Some(key) = key {
        request = request.insert_header(("x-api-key", key));
    }
    let response = match body {
        Some(Value::String(raw)) if raw.starts_with("raw:") => {
            request
                .insert_header(("content-type", "application/json"))
                .send_body(raw["raw:".len()..].to_owned())
                .await
        }
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    };
    let mut response = response.expect("the request is answered");
    let bytes = response
        .body()
        .limit(16 * 1024 * 1024)
        .await
        .expect("the body is read");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

/// A client of an emulator's platform API, with its key.
pub struct Platform<'a> {
    pub emulator: &'a EmulatorHandle,
}

impl Platform<'_> {
    pub async fn get(&self, path: &str) -> Answer {
        call(
            self.emulator.url(),
            Some(self.emulator.api_key()),
            Method::GET,
            path,
            None,
        )
        .await
    }

    pub async fn send(&self, method: Method, path: &str, body: Value) -> Answer {
        call(
            self.emulator.url(),
            Some(self.emulator.api_key()),
            method,
            path,
            Some(body),
        )
        .await
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        call(self.emulator.url(), None, method, path, body).await
    }
}

/// A user resolver for tests: the `x-test-user` header names the customer.
pub async fn header_user(request: actix_web::HttpRequest) -> Option<String> {
    request
        .headers()
        .get("x-test-user")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Reads a test response's body as JSON (`Null` when empty).
pub async fn json_body(response: actix_web::dev::ServiceResponse) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = actix_web::test::read_body(response).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
