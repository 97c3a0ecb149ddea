//! [`Atlas`]: the platform client with what the web layer needs beside it (who the user is,
//! how to answer a denial, the cross-site and rate-limit settings), as one value an app builds
//! once and hands to every worker as `web::Data`.

use std::ops::Deref;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse};

use crate::auth::{contact_headers, UserResolver};
use crate::client::AtlasClient;
use crate::error::BuildError;
use crate::models::CustomerInfo;
use crate::web::absent::AbsentLookups;
use crate::web::builder::{AtlasBuilder, DenyHandler};
use crate::web::csrf::AllowedOrigins;
use crate::web::error_response::RequestError;
use crate::web::guard::denial::Denial;
use crate::web::guard::exclusive::ExclusiveLocks;
use crate::web::guard::idempotency::IdempotencyRecords;
use crate::web::guard::unrecordable::UnrecordableUsage;
use crate::web::throttle::Throttle;

/// The Atlas SDK of an Actix Web app: the platform client ([`AtlasClient`], which it
/// dereferences to, so `atlas.allowed(..)` and every other client call work on it) plus the
/// web layer's settings. Cheap to clone: clones share everything. Build it once, outside
/// `HttpServer::new`, and hand it to the app as `web::Data`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let atlas = atlas_actix::Atlas::builder().build()?; // ATLAS_API_KEY from the environment
/// let check = atlas.allowed("user_123", ["data-explorer"]).await?;
/// if check.ok {
///     // serve the feature
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Atlas {
    client: AtlasClient,
    web: Arc<WebOptions>,
}

/// What the scope and the guards need besides the client.
pub(crate) struct WebOptions {
    pub(crate) resolver: Option<Arc<dyn UserResolver>>,
    pub(crate) deny: Option<DenyHandler>,
    pub(crate) body_limit: usize,
    pub(crate) allowed_origins: AllowedOrigins,
    pub(crate) public_throttle: Throttle,
    pub(crate) exclusive: ExclusiveLocks,
    pub(crate) unrecordable_usage: UnrecordableUsage,
    pub(crate) idempotency: Arc<IdempotencyRecords>,
    pub(crate) absent: AbsentLookups,
    /// Whether a CORS preflight that reached a guard has been logged (once).
    pub(crate) preflight_warned: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Atlas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Atlas")
            .field("client", &self.client)
            .field("body_limit", &self.web.body_limit)
            .field("allowed_origins", &self.web.allowed_origins)
            .finish_non_exhaustive()
    }
}

impl Deref for Atlas {
    type Target = AtlasClient;

    fn deref(&self) -> &AtlasClient {
        &self.client
    }
}

impl Atlas {
    /// Starts configuring a client.
    pub fn builder() -> AtlasBuilder {
        AtlasBuilder::default()
    }

    pub(crate) fn new(client: AtlasClient, web: WebOptions) -> Self {
        Self {
            client,
            web: Arc::new(web),
        }
    }

    /// The platform client alone, for code outside the web layer (a background job, another
    /// runtime).
    pub fn client(&self) -> &AtlasClient {
        &self.client
    }

    /// The Atlas customer id of the request's user, from the configured
    /// [`user_resolver`](AtlasBuilder::user_resolver); `Ok(None)` when the request has no
    /// user, an error when no resolver is configured.
    pub async fn resolve_user(
        &self,
        request: &HttpRequest,
    ) -> Result<Option<String>, RequestError> {
        let Some(resolver) = &self.web.resolver else {
            tracing::error!("no user resolver: call AtlasBuilder::user_resolver (with ClerkAuth or a function of the request)");
            return Err(RequestError::Misconfigured("no user resolver"));
        };
        Ok(resolver
            .resolve(request.clone())
            .await
            .filter(|id| !id.is_empty()))
    }

    /// The answer to a guard's denial: the custom one, if configured.
    pub(crate) fn deny(&self, request: &HttpRequest, denial: &Denial) -> HttpResponse {
        match &self.web.deny {
            Some(answer) => answer(request, denial),
            None => denial.default_response(),
        }
    }

    pub(crate) fn body_limit(&self) -> usize {
        self.web.body_limit
    }

    /// A CORS preflight reached a guard: the CORS middleware runs after it (or not at all),
    /// so the browser gets a 401 without CORS headers and the real request is never sent.
    /// Logged once per client, with the fix.
    pub(crate) fn warn_preflight(&self, request: &actix_web::HttpRequest) {
        use std::sync::atomic::Ordering;
        let preflight = request.method() == actix_web::http::Method::OPTIONS
            && request
                .headers()
                .contains_key(actix_web::http::header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight && !self.web.preflight_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                route = ?request.path(),
                "a CORS preflight reached an Atlas guard, which answers it without CORS headers: the CORS middleware must run before the guard. The last `.wrap` runs first: write `.wrap(RequireFeatures::new(..)).wrap(cors)`, or wrap the App with CORS"
            );
        }
    }

    pub(crate) fn allowed_origins(&self) -> &AllowedOrigins {
        &self.web.allowed_origins
    }

    pub(crate) fn public_throttle(&self) -> &Throttle {
        &self.web.public_throttle
    }

    pub(crate) fn exclusive_locks(&self) -> &ExclusiveLocks {
        &self.web.exclusive
    }

    pub(crate) fn absent_lookups(&self) -> &AbsentLookups {
        &self.web.absent
    }

    pub(crate) fn idempotency_records(&self) -> &Arc<IdempotencyRecords> {
        &self.web.idempotency
    }

    pub(crate) fn unrecordable_usage(&self) -> UnrecordableUsage {
        self.web.unrecordable_usage
    }

    /// The details of the request's customer for the platform, as the resolver says (the
    /// bounded contact headers without one).
    pub(crate) fn customer_info(&self, request: &HttpRequest) -> CustomerInfo {
        match &self.web.resolver {
            Some(resolver) => resolver.customer_info(request),
            None => contact_headers(request),
        }
    }

    /// Whether the request's user may change its customer's billing, as the resolver says.
    pub(crate) fn may_manage_billing(&self, request: &HttpRequest) -> bool {
        self.web
            .resolver
            .as_ref()
            .is_none_or(|resolver| resolver.may_manage_billing(request))
    }
}

impl AtlasBuilder {
    /// Builds the client and starts its initialisation in the background (merchant check,
    /// pricing model); calls wait for it. Needs no runtime: the client's I/O runs on a thread
    /// of its own.
    pub fn build(self) -> Result<Atlas, BuildError> {
        if self.public_rate_limit.0 == 0 || self.public_rate_limit.1.is_zero() {
            return Err(BuildError::InvalidOption {
                option: "public_rate_limit",
                reason: "requests and period must be above zero".to_owned(),
            });
        }
        let web = WebOptions {
            resolver: self.resolver,
            deny: self.deny,
            body_limit: self.body_limit,
            allowed_origins: self.allowed_origins,
            public_throttle: Throttle::new(self.public_rate_limit.0, self.public_rate_limit.1),
            exclusive: ExclusiveLocks::new(self.exclusive_wait),
            unrecordable_usage: self.unrecordable_usage,
            idempotency: IdempotencyRecords::new(self.idempotency_ttl),
            absent: AbsentLookups::default(),
            preflight_warned: std::sync::atomic::AtomicBool::new(false),
        };
        Ok(Atlas::new(self.client.start()?, web))
    }
}
