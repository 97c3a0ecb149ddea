//! The emulator's HTTP server: one catch-all handler that counts, injects faults, checks the
//! key, parses the body and hands the request to [`Platform`].

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::data::{AtlasData, DataFileError};
use super::faults::Fault;
use super::platform::{Platform, Query};
use super::recorded::RecordedUsage;
use super::reply::{ApiError, Reply};
use super::router::{is_admin, match_route, Match, Route};
use super::state::EmulatorState;
use crate::models::Push;
use crate::models::UsageEvent;

/// What an [`EmulatorHandle`] could not do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// No customer, plan, feature or credit unit with the id given.
    #[error("{0}")]
    NotFound(String),
    /// A value the platform cannot hold (a negative usage, a balance that is not a number).
    #[error("{0}")]
    InvalidValue(String),
    /// The fault would do nothing or cannot be: its reason.
    #[error("invalid fault: {0}")]
    InvalidFault(String),
}

/// Request bodies above this size are refused with 413, as the platform does.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A local Atlas platform for tests and examples.
///
/// It serves the platform API the SDK calls (`/external/*`, checking `x-api-key`), checkout
/// pages (`/__checkout/{id}`) that complete a purchase when visited, and an admin API
/// (`/__admin/*`) to inspect and change its state; see the [module docs](super).
///
/// ```
/// use atlas_actix::emulator::{AtlasData, Emulator};
///
/// let data = AtlasData::from_json(r#"{
///     "apiKey": "sk_test_123",
///     "merchant": {"mode": "test", "isStripeConfigured": false, "trialDurationInDays": 0},
///     "pricingModel": {"entitlements": [], "plans": []},
///     "customers": []
/// }"#)?;
/// let emulator = Emulator::start(data)?;
/// assert!(emulator.url().starts_with("http://127.0.0.1:"));
/// emulator.stop();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// Starts an emulator serving `data` on a free port of 127.0.0.1, on a thread of its own,
    /// so it works from any runtime or none.
    pub fn start(data: AtlasData) -> io::Result<EmulatorHandle> {
        Self::builder(data).start()
    }

    /// An emulator to configure before starting it.
    pub fn builder(data: AtlasData) -> EmulatorBuilder {
        EmulatorBuilder {
            data,
            data_file: None,
            api_key: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// An emulator seeded from a data file, which `POST /__admin/reset` reads again.
    pub fn from_file(path: impl Into<PathBuf>) -> Result<EmulatorBuilder, DataFileError> {
        let path = path.into();
        let data = AtlasData::from_file(&path)?;
        let mut builder = Self::builder(data);
        builder.data_file = Some(path);
        Ok(builder)
    }
}

/// Configures an emulator; made by [`Emulator::builder`] or [`Emulator::from_file`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `.start()`"]
pub struct EmulatorBuilder {
    data: AtlasData,
    data_file: Option<PathBuf>,
    api_key: Option<String>,
    addr: SocketAddr,
}

impl EmulatorBuilder {
    /// Accept this key instead of the data file's `apiKey`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Listen on this address (default `127.0.0.1:0`, a free port). The admin API needs no
    /// key: never expose the emulator beyond the machine.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Starts the emulator on a thread of its own with its own actix runtime. It stops when the
    /// handle is stopped or dropped, and ignores process signals.
    pub fn start(self) -> io::Result<EmulatorHandle> {
        let (listener, addr) = self.listen()?;
        let (state, api_key) = self.state();
        let for_server = Arc::clone(&state);
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("atlas-emulator".to_owned())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    match server(for_server, listener, false) {
                        Ok(server) => {
                            let _ = sender.send(Ok(server.handle()));
                            server.await
                        }
                        Err(err) => {
                            let _ = sender.send(Err(err));
                            Ok(())
                        }
                    }
                })
            })?;
        let server = receiver
            .recv()
            .map_err(|_| io::Error::other("the emulator thread ended before starting"))??;
        Ok(EmulatorHandle {
            url: format!("http://{addr}"),
            addr,
            api_key,
            state,
            server,
            thread: Some(thread),
        })
    }

    /// Binds the address and returns the server, to be awaited inside a running actix system
    /// (as `#[actix_web::main]` gives); it stops on SIGINT and SIGTERM. This is how the
    /// `atlas-emulator` binary runs.
    pub fn into_server(self) -> io::Result<(Server, SocketAddr)> {
        let (listener, addr) = self.listen()?;
        let (state, _) = self.state();
        Ok((server(state, listener, true)?, addr))
    }

    fn listen(&self) -> io::Result<(TcpListener, SocketAddr)> {
        let listener = TcpListener::bind(self.addr)?;
        let addr = listener.local_addr()?;
        Ok((listener, addr))
    }

    fn state(self) -> (Arc<EmulatorState>, String) {
        let api_key = self.api_key.unwrap_or_else(|| self.data.api_key.clone());
        // Pushes are only for connected clients: a slow one misses old ones, as on socket.io.
        let (pushes, _) = broadcast::channel(256);
        let platform = Platform::new(self.data, api_key.clone(), pushes.clone());
        let state = EmulatorState {
            platform: Mutex::new(platform),
            data_file: self.data_file,
            pushes,
        };
        (Arc::new(state), api_key)
    }
}

fn server(
    state: Arc<EmulatorState>,
    listener: TcpListener,
    handle_signals: bool,
) -> io::Result<Server> {
    actix_rt::spawn(meter(Arc::clone(&state)));
    let data = web::Data::from(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/socket.io/", web::get().to(super::socketio::handshake))
            .default_service(web::to(dispatch))
    })
    .workers(1)
    .shutdown_timeout(1)
    .listen(listener)?;
    let server = if handle_signals {
        server
    } else {
        server.disable_signals()
    };
    Ok(server.run())
}

/// How often metered usage is applied: the resolution of the data file's `delayMs`.
const METERING_TICK: std::time::Duration = std::time::Duration::from_millis(20);

/// Applies metered usage events as they fall due, for as long as the server's runtime runs.
async fn meter(state: Arc<EmulatorState>) {
    let mut tick = actix_rt::time::interval(METERING_TICK);
    loop {
        tick.tick().await;
        state.platform().apply_due_usage(std::time::Instant::now());
    }
}

/// A running emulator. Dropping it stops the emulator.
#[derive(Debug)]
pub struct EmulatorHandle {
    url: String,
    addr: SocketAddr,
    api_key: String,
    state: Arc<EmulatorState>,
    server: ServerHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl EmulatorHandle {
    /// The usage events the platform received, in order, each idempotency key once: what a
    /// test asserts after `atlas.flush()`.
    pub fn events(&self) -> Vec<UsageEvent> {
        self.state
            .platform()
            .received_events()
            .iter()
            .filter_map(|event| serde_json::from_value(event.clone()).ok())
            .collect()
    }

    /// The usage events the platform received, in order, each idempotency key once, in the
    /// app's ids (`user_erin` and `ai-tokens`, where [`events`](Self::events) has the wire's
    /// internal `cus_erin` and `ent_ai`).
    ///
    /// ```
    /// use atlas_actix::emulator::{AtlasData, Emulator};
    ///
    /// let platform = Emulator::start(AtlasData::sample())?;
    /// assert!(platform.usage().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn usage(&self) -> Vec<RecordedUsage> {
        self.state.platform().recorded_usage()
    }

    /// Sets how much of the usage-based feature `feature` the platform counted for `customer`
    /// (external ids), on the customer's subscription that grants it, as the platform's
    /// aggregation would: its access ends at the grant's `maxUsage` and comes back below it.
    /// Pushes the change to connected clients.
    ///
    /// ```
    /// use atlas_actix::emulator::{AtlasData, Emulator};
    ///
    /// let platform = Emulator::start(AtlasData::sample())?;
    /// // Erin's Pro plan grants ai-tokens up to 1,000,000: all but 10 used.
    /// platform.set_usage("user_erin", "ai-tokens", 999_990.0)?;
    /// assert!(platform.set_usage("user_erin", "no-such-feature", 1.0).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_usage(
        &self,
        customer: &str,
        feature: &str,
        usage: f64,
    ) -> Result<(), EmulatorError> {
        self.state
            .platform()
            .set_usage(customer, feature, usage)
            .map_err(handle_error)
    }

    /// Sets `customer`'s balance of the credit `unit` (an id of the pricing model's
    /// `customPricingUnits`, which credit-based features spend). Pushes the change.
    ///
    /// ```
    /// use atlas_actix::emulator::{AtlasData, Emulator};
    ///
    /// let platform = Emulator::start(AtlasData::sample())?;
    /// platform.set_balance("user_erin", "cpu_image_credits", 5.0)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_balance(
        &self,
        customer: &str,
        unit: &str,
        balance: f64,
    ) -> Result<(), EmulatorError> {
        self.state
            .platform()
            .set_balance(customer, unit, balance)
            .map_err(handle_error)
    }

    /// The feature ids the SDK registered.
    pub fn registrations(&self) -> Vec<String> {
        self.state.platform().registered_features().to_vec()
    }

    /// Moves a customer (by its external id) to a plan, as a completed checkout would, and
    /// pushes the change to connected clients.
    pub fn set_plan(&self, customer: &str, plan_id: &str) -> Result<(), EmulatorError> {
        self.state
            .platform()
            .set_plan(customer, plan_id)
            .map_err(handle_error)
    }

    /// Makes the platform misbehave as `fault` says (answer an error, late, or not JSON).
    pub fn inject_fault(&self, fault: Fault) -> Result<(), EmulatorError> {
        fault.check().map_err(EmulatorError::InvalidFault)?;
        self.state.platform().faults.add(fault);
        Ok(())
    }

    /// Lets the platform behave again.
    pub fn clear_faults(&self) {
        self.state.platform().faults.clear();
    }

    /// Base URL, such as `http://127.0.0.1:41235`: the SDK's platform host.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API key it accepts.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// Every push the emulator sends from now on (`invalidateCustomer` after a customer
    /// changes, and what `/__admin/invalidate` asks for).
    pub fn pushes(&self) -> broadcast::Receiver<Push> {
        self.state.pushes.subscribe()
    }

    /// Stops the emulator and waits for its thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            // The stop command is sent when `stop` is called; its future only reports the end.
            drop(self.server.stop(false));
            if thread.join().is_err() {
                tracing::error!("the emulator thread panicked");
            }
        }
    }
}

/// A handle helper's error: what does not exist, or a value that cannot be.
fn handle_error(err: ApiError) -> EmulatorError {
    if err.is_not_found() {
        EmulatorError::NotFound(err.to_string())
    } else {
        EmulatorError::InvalidValue(err.to_string())
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<EmulatorState>,
) -> HttpResponse {
    let path = req.uri().path().to_owned();
    let method = req.method().as_str().to_owned();
    let matched = match_route(&method, &path);
    if !is_admin(&path) {
        let fault = {
            let mut platform = state.platform();
            let template = match &matched {
                Match::Found { template, .. } | Match::MethodNotAllowed { template } => template,
                Match::NotFound => path.as_str(),
            };
            platform.count_request(format!("{method} {template}"));
            platform.faults.take(&method, &path)
        };
        if let Some(fault) = fault {
            if let Some(delay) = fault.delay() {
                actix_rt::time::sleep(delay).await;
            }
            if let Some(status) = fault.status {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return ApiError::new(status, "injected fault").error_response();
            }
            if fault.invalid_json {
                return HttpResponse::Ok()
                    .content_type("application/json")
                    .body("{\"injected\": not json");
            }
        }
    }
    match handle(&req, payload, &state, matched, &path).await {
        Ok(reply) => reply.into_response(),
        Err(err) => err.error_response(),
    }
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    state: &EmulatorState,
    matched: Match,
    path: &str,
) -> Result<Reply, ApiError> {
    if path == "/external" || path.starts_with("/external/") {
        let key = req.headers().get("x-api-key").map(|v| v.as_bytes());
        if key != Some(state.platform().api_key().as_bytes()) {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized"));
        }
    }
    let (route, params) = match matched {
        Match::Found { route, params, .. } => (route, params),
        Match::MethodNotAllowed { .. } => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
            ))
        }
        Match::NotFound => return Err(ApiError::not_found("Not found")),
    };
    let body = if req.method() == "GET" || req.method() == "HEAD" {
        None
    } else {
        read_json(payload).await?
    };
    let query = Query::parse(req.query_string());
    let param = |i: usize| params.get(i).map_or("", String::as_str);
    let base_url = format!("http://{}", req.connection_info().host());

    // The data file is read before taking the lock, so other requests do not wait on the disk.
    let reloaded = match (&state.data_file, route) {
        (Some(file), Route::AdminReset) => {
            Some(AtlasData::from_file(file).map_err(|err| ApiError::internal(err.to_string()))?)
        }
        _ => None,
    };

    let mut platform = state.platform();
    match route {
        Route::MerchantMe => platform.merchant(),
        Route::PricingModel => platform.pricing_model(),
        Route::Customer => platform.get_customer(param(0)),
        Route::CreateCustomer => platform.post_customer(body),
        Route::PaymentMethod => platform.payment_method(&base_url, param(0), body),
        Route::CreditUsage => platform.credit_usage(param(0), param(1)),
        Route::Invoices => platform.invoices(&query),
        Route::LineItems => platform.line_items(&query),
        Route::Transactions => platform.transactions(&query),
        Route::Subscription => platform.subscription(param(0)),
        Route::Cancel => platform.cancel(param(0), body),
        Route::Renew => platform.renew(param(0), body),
        Route::Subscribe => platform.subscribe(&base_url, param(0), body),
        Route::Events => platform.post_events(body),
        Route::RegisterFeatures => platform.register_features(body),
        Route::SdkVersion => platform.sdk_version(body),
        Route::Checkout => platform.complete_checkout(param(0)),
        Route::AdminEvents => platform.admin_events(),
        Route::AdminRegistrations => platform.admin_registrations(),
        Route::AdminSdkVersions => platform.admin_sdk_versions(),
        Route::AdminCustomers => platform.admin_customers(),
        Route::AdminRequests => platform.admin_requests(),
        Route::AdminPutCustomer => platform.admin_put_customer(param(0), body),
        Route::AdminInvalidate => platform.admin_invalidate(body),
        Route::AdminFaults => Reply::ok(platform.faults.list()),
        Route::AdminAddFault => {
            let Some(fault @ Value::Object(_)) = body else {
                return Err(ApiError::bad_request("a fault is a JSON object"));
            };
            let fault: Fault = serde_json::from_value(fault)
                .map_err(|err| ApiError::bad_request(format!("invalid fault: {err}")))?;
            fault.check().map_err(ApiError::bad_request)?;
            platform.faults.add(fault);
            Reply::ok(json!({ "faults": platform.faults.list().len() }))
        }
        Route::AdminClearFaults => {
            platform.faults.clear();
            Reply::ok(json!({}))
        }
        Route::AdminReset => {
            platform.reset(reloaded);
            Reply::ok(json!({}))
        }
    }
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`]; an empty body is `None`.
async fn read_json(mut payload: web::Payload) -> Result<Option<Value>, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|err| ApiError::bad_request(format!("could not read the body: {err}")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {MAX_BODY_BYTES} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|err| ApiError::bad_request(format!("malformed JSON body: {err}")))
}
