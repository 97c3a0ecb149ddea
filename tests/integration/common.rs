//! Helpers shared by the integration tests.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use atlas_actix::emulator::{AtlasData, Emulator, EmulatorHandle};
use atlas_actix::{Atlas, AtlasBuilder};
use awc::http::{Method, StatusCode};
use serde_json::Value;

/// Polls `probe` (every 25 ms) until it gives `Some`, and returns what it gave; panics naming
/// `what` when `within` passes first. The one way these tests wait for something to happen.
pub(crate) async fn eventually<T, Fut>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> Fut,
) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
}

/// [`eventually`] for code off any runtime (a child process's exit).
pub(crate) fn eventually_blocking<T>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The quickstart's data file.
pub(crate) fn example_data_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/atlas-data.json")
}

pub(crate) fn example_data() -> AtlasData {
    AtlasData::from_file(example_data_path()).expect("the example data file loads")
}

pub(crate) fn start_emulator() -> EmulatorHandle {
    Emulator::start(example_data()).expect("the emulator starts")
}

/// An HTTP answer, its body read as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: awc::http::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

/// Sends one request to `base` + `path`. `key` goes in `x-api-key`; `body` is sent as JSON,
/// or as raw bytes when it is a `Value::String` starting with `raw:`.
pub(crate) async fn call(
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
pub(crate) struct Platform<'a> {
    pub emulator: &'a EmulatorHandle,
}

impl Platform<'_> {
    pub(crate) async fn get(&self, path: &str) -> Answer {
        call(
            self.emulator.url(),
            Some(self.emulator.api_key()),
            Method::GET,
            path,
            None,
        )
        .await
    }

    pub(crate) async fn send(&self, method: Method, path: &str, body: Value) -> Answer {
        call(
            self.emulator.url(),
            Some(self.emulator.api_key()),
            method,
            path,
            Some(body),
        )
        .await
    }

    pub(crate) async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        call(self.emulator.url(), None, method, path, body).await
    }

    /// Makes the emulator misbehave as `fault` says (see `atlas_actix::emulator::Fault`).
    pub(crate) async fn inject_fault(&self, fault: Value) {
        let answer = self
            .admin(Method::POST, "/__admin/faults", Some(fault))
            .await;
        assert!(answer.status.is_success(), "fault refused: {}", answer.text);
    }

    /// Lets the emulator behave again.
    pub(crate) async fn clear_faults(&self) {
        self.admin(Method::DELETE, "/__admin/faults", None).await;
    }
}

/// A client of the emulator with test-friendly delays.
pub(crate) fn builder(emulator: &EmulatorHandle) -> AtlasBuilder {
    Atlas::builder()
        .api_key(emulator.api_key())
        .base_url(emulator.url())
        .timeout(Duration::from_secs(5))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .registration_debounce(Duration::from_millis(100))
}

/// How many requests the emulator received on a route (`GET /external/...`).
pub(crate) async fn requests(emulator: &EmulatorHandle, route: &str) -> u64 {
    Platform { emulator }
        .admin(Method::GET, "/__admin/requests", None)
        .await
        .body[route]
        .as_u64()
        .unwrap_or(0)
}

pub(crate) const CUSTOMER_ROUTE: &str =
    "GET /external/customers/external-id/:id/with-active-and-upcoming-subscriptions";

/// A user resolver for tests: the `x-test-user` header names the customer.
pub(crate) async fn header_user(request: actix_web::HttpRequest) -> Option<String> {
    request
        .headers()
        .get("x-test-user")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Reads a test response's body as JSON (`Null` when empty).
pub(crate) async fn json_body(response: actix_web::dev::ServiceResponse) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = actix_web::test::read_body(response).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The quickstart built beside this test binary (`cargo test` builds the examples).
pub(crate) fn quickstart_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let binary = profile_dir
        .join("examples")
        .join(format!("quickstart{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "no {}: `cargo test --workspace` builds the examples",
        binary.display()
    );
    binary
}

/// The quickstart with the emulator as its platform, in demo mode, its environment cleared
/// of what would change its set-up.
pub(crate) fn quickstart_command(emulator: &EmulatorHandle) -> Command {
    let mut command = Command::new(quickstart_binary());
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("ATLAS_API_KEY", emulator.api_key())
        .env("ATLAS_HOST", emulator.url())
        .env("PORT", "0")
        .env("METRICS_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .env_remove("BIND")
        .env_remove("ALLOWED_ORIGINS")
        .env_remove("ATLAS_DEMO_PUBLIC")
        .env_remove("CLERK_JWT_KEY")
        .env_remove("CLERK_JWKS_URL")
        .env_remove("CLERK_ISSUER")
        .env_remove("CLERK_AUTHORIZED_PARTIES")
        .env_remove("ATLAS_EVENT_SPOOL")
        .env_remove("ATLAS_REDIS_URL")
        .env_remove("ATLAS_OUTAGE_POLICY");
    command
}

/// A running quickstart process, killed when dropped.
pub(crate) struct Quickstart {
    child: Child,
    pub base: String,
    /// Where its metrics and full health report are served.
    pub metrics: String,
    /// Everything it printed (its logs included), line by line.
    output: Arc<Mutex<Vec<String>>>,
}

impl Quickstart {
    /// Starts the quickstart against the emulator (as if it were the platform) and waits
    /// until it listens.
    pub(crate) fn start(emulator: &EmulatorHandle, spool: Option<&std::path::Path>) -> Self {
        let mut command = quickstart_command(emulator);
        if let Some(spool) = spool {
            command.env("ATLAS_EVENT_SPOOL", spool);
        }
        Self::spawn(command)
    }

    pub(crate) fn spawn(mut command: Command) -> Self {
        command.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = command.spawn().expect("the quickstart starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut metrics = String::new();
        let base = loop {
            let line = lines
                .next()
                .expect("the quickstart printed its address")
                .unwrap();
            if let Some(base) = line.strip_prefix("listening ") {
                break base.to_owned();
            }
            if let Some(address) = line.strip_prefix("metrics ") {
                address.clone_into(&mut metrics);
            }
            output.lock().unwrap().push(line);
        };
        // Keep reading its output, so it never blocks on a full pipe.
        let kept = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            base,
            metrics,
            output,
        }
    }

    /// What it printed so far (its logs go to standard output).
    pub(crate) fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    pub(crate) async fn token(&self, user: &str) -> String {
        let tokens = call(&self.base, None, Method::GET, "/demo/tokens", None)
            .await
            .body;
        tokens[user].as_str().unwrap().to_owned()
    }

    pub(crate) async fn complete(&self, token: &str) -> u16 {
        let client = awc::Client::default();
        let response = client
            .post(format!("{}/api/ai/complete", self.base))
            .insert_header(("authorization", format!("Bearer {token}")))
            .send_json(&serde_json::json!({"prompt": "count these words"}))
            .await
            .unwrap();
        response.status().as_u16()
    }

    /// The process's resident memory, in KiB.
    pub(crate) fn resident_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap()
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub(crate) fn wait(mut self) {
        eventually_blocking("the quickstart's exit", Duration::from_secs(10), || {
            self.child.try_wait().unwrap()
        });
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every log line of this test binary, from every thread.
pub(crate) fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        logs
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
