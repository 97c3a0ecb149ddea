//! Clerk session tokens: the built-in [`UserResolver`] for apps that use Clerk.
//!
//! Clerk signs session JWTs with RS256. They are verified here with the PEM public key Clerk
//! gives for networkless verification, or with the instance's JWKS (`jwks.rs`: fetched at
//! start, cached, and fetched again, one fetch at a time, when a token names an unknown key). `exp` and `nbf` are checked with a
//! small leeway, `azp` against the app's origins when they are configured (Clerk warns that
//! skipping it opens the door to CSRF; a token without `azp` is then refused too), `iss`
//! when an issuer is configured, and pending sessions are refused. Token times are compared
//! with saturating arithmetic: a token with an `exp` near 2^64 answers the same every time. Anything wrong with
//! a token (malformed, expired, not yet valid, another key, `alg: none`, HS256 signed with the
//! public key, another party) makes the request anonymous: a 401, never a 500.
//!
//! Verified tokens are cached until they expire, so the RSA check runs once per token, not
//! once per request.

mod jwks;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpRequest;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::auth::clerk::jwks::JwksKeys;
use crate::auth::{bearer_token, contact_headers, is_email, is_name, ResolveFuture, UserResolver};
use crate::client::telemetry;
use crate::models::CustomerInfo;

/// The most verified tokens remembered.
const VERIFIED_CAPACITY: usize = 100_000;

/// Why a [`ClerkAuth`] could not be set up.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ClerkError {
    /// The PEM key cannot be read.
    #[error("invalid Clerk public key: {0}")]
    InvalidKey(String),
    /// The JWKS URL is not an http(s) URL.
    #[error("invalid Clerk JWKS URL {0:?}")]
    InvalidUrl(String),
}

/// The message, as for [`AtlasError`](crate::AtlasError): `main` returning it shows the fix.
impl std::fmt::Debug for ClerkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A verified Clerk session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClerkSession {
    /// The user (`sub`).
    pub user_id: String,
    /// The active organisation, if any (`o.id` in v2 tokens, `org_id` in v1 ones).
    pub organization_id: Option<String>,
    /// The user's role in the active organisation, such as `org:admin` (`o.rol` in v2 tokens,
    /// `org_role` in v1 ones). v2 tokens carry the role without its `org:` prefix; it is
    /// added here, so both read the same.
    pub organization_role: Option<String>,
    /// The session (`sid`).
    pub session_id: Option<String>,
    /// When the token expires, in seconds since the epoch.
    pub expires_at: u64,
    /// The user's email, when the instance's session token carries an `email` claim (a custom
    /// session claim such as `{"email": "{{user.primary_email_address}}"}`) in bounds.
    pub email: Option<String>,
    /// The user's name, when the session token carries a `name` claim in bounds.
    pub name: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    sts: Option<String>,
    #[serde(default)]
    o: Option<OrganizationClaim>,
    #[serde(default)]
    org_id: Option<String>,
    #[serde(default)]
    org_role: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct OrganizationClaim {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    rol: Option<String>,
}

enum Keys {
    Pem(DecodingKey),
    Jwks(Arc<JwksKeys>),
}

struct State {
    keys: Keys,
    verified: quick_cache::sync::Cache<String, Arc<ClerkSession>>,
    /// The causes of refusal logged so far, one bit each.
    logged: AtomicU16,
}

/// Why a session token was refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Malformed,
    Algorithm,
    UnknownKey,
    Expired,
    NotYetValid,
    Signature,
    Issuer,
    Claims,
    Pending,
    Party,
}

impl Refusal {
    fn of(err: &jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind;
        match err.kind() {
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidSignature => Self::Signature,
            ErrorKind::InvalidIssuer => Self::Issuer,
            ErrorKind::InvalidAlgorithm => Self::Algorithm,
            ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => Self::Claims,
            _ => Self::Malformed,
        }
    }

    /// The `cause` label of `atlas_clerk_refusals_total`.
    fn cause(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Algorithm => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Signature => "bad_signature",
            Self::Issuer => "wrong_issuer",
            Self::Claims => "claims",
            Self::Pending => "pending_session",
            Self::Party => "wrong_azp",
        }
    }

    fn explanation(self) -> &'static str {
        match self {
            Self::Malformed => "not a JWT",
            Self::Algorithm => "not signed with RS256, as Clerk signs",
            Self::UnknownKey => "signed with a key the instance's JWKS does not have (another Clerk instance?)",
            Self::Expired => "expired: the frontend should refresh its session token",
            Self::NotYetValid => "not valid yet (nbf in the future: is this machine's clock right?)",
            Self::Signature => "its signature does not verify with the configured key (another Clerk instance's token, or a forged one)",
            Self::Issuer => "issued by another Clerk instance than CLERK_ISSUER / ClerkAuth::issuer",
            Self::Claims => "a required claim (sub, exp, iss) is missing or mistyped",
            Self::Pending => "the session is pending (sts: pending), not active yet",
            Self::Party => "its azp is not one of the authorized parties",
        }
    }
}

#[derive(Clone)]
struct Options {
    authorized_parties: Vec<String>,
    issuer: Option<String>,
    organizations: bool,
    billing_roles: Vec<String>,
    leeway: Duration,
}

/// Verifies Clerk session tokens and turns them into Atlas customer ids: the user id, or, with
/// [`organizations`](Self::organizations), the active organisation's id so every member
/// shares the organisation's plan.
///
/// ```no_run
/// use atlas_actix::{Atlas, ClerkAuth};
///
/// let clerk = ClerkAuth::from_pem(&std::env::var("CLERK_JWT_KEY")?)?
///     .authorized_parties(["https://app.example.com"])
///     .organizations(true);
/// let atlas = Atlas::builder().user_resolver(clerk).build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ClerkAuth {
    state: Arc<State>,
    options: Arc<Options>,
}

impl std::fmt::Debug for ClerkAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.state.keys {
            Keys::Pem(_) => "pem".to_owned(),
            Keys::Jwks(keys) => format!("jwks {}", keys.url()),
        };
        f.debug_struct("ClerkAuth")
            .field("keys", &keys)
            .field("authorized_parties", &self.options.authorized_parties)
            .field("issuer", &self.options.issuer)
            .field("organizations", &self.options.organizations)
            .field("billing_roles", &self.options.billing_roles)
            .finish_non_exhaustive()
    }
}

impl ClerkAuth {
    fn with_keys(keys: Keys) -> Self {
        Self {
            state: Arc::new(State {
                keys,
                verified: quick_cache::sync::Cache::new(VERIFIED_CAPACITY),
                logged: AtomicU16::new(0),
            }),
            options: Arc::new(Options {
                authorized_parties: Vec::new(),
                issuer: None,
                organizations: false,
                billing_roles: Vec::new(),
                leeway: Duration::from_secs(5),
            }),
        }
    }

    /// Verifies with the PEM public key of the Clerk instance (the dashboard's "JWT public
    /// key", `CLERK_JWT_KEY`): no network needed. A private key, or anything else that is
    /// not a PEM public key, is [`ClerkError::InvalidKey`] saying so.
    pub fn from_pem(pem: &str) -> Result<Self, ClerkError> {
        if pem.contains("PRIVATE KEY") {
            // A private key would parse, and then no token would verify.
            return Err(ClerkError::InvalidKey(
                "this is a private key; give the instance's PEM public key (Clerk dashboard, API keys, \"JWT public key\")".to_owned(),
            ));
        }
        if !pem.contains("-----BEGIN PUBLIC KEY-----")
            && !pem.contains("-----BEGIN RSA PUBLIC KEY-----")
        {
            return Err(ClerkError::InvalidKey(
                "not a PEM public key (it starts with -----BEGIN PUBLIC KEY-----); give the instance's \"JWT public key\" from the Clerk dashboard".to_owned(),
            ));
        }
        let key = DecodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|err| ClerkError::InvalidKey(err.to_string()))?;
        Ok(Self::with_keys(Keys::Pem(key)))
    }

    /// Verifies with the keys of a JWKS URL (`https://<frontend api>/.well-known/jwks.json`),
    /// fetched at once (on a thread of its own) and again when a token names a key not seen
    /// yet: one fetch at a time, requests for a new key waiting for it rather than failing,
    /// known keys working while a refresh fails, failed fetches retried with backoff.
    pub fn from_jwks_url(url: impl Into<String>) -> Result<Self, ClerkError> {
        let url = url.into();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ClerkError::InvalidUrl(url));
        }
        let keys = JwksKeys::new(url);
        keys.prefetch();
        Ok(Self::with_keys(Keys::Jwks(keys)))
    }

    /// From the environment: `CLERK_JWT_KEY` (a PEM key), else `CLERK_JWKS_URL`; `None` when
    /// neither is set (an empty variable counts as unset).
    pub fn from_env() -> Result<Option<Self>, ClerkError> {
        let env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        if let Some(pem) = env("CLERK_JWT_KEY") {
            // Dashboards and .env files often carry the PEM with literal `\n`s.
            return Self::from_pem(&pem.replace("\\n", "\n")).map(Some);
        }
        env("CLERK_JWKS_URL").map(Self::from_jwks_url).transpose()
    }

    /// The origins the app's frontend runs on: a token whose `azp` is another, or that has no
    /// `azp`, is refused.
    pub fn authorized_parties<I, S>(mut self, parties: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Arc::make_mut(&mut self.options).authorized_parties =
            parties.into_iter().map(Into::into).collect();
        self
    }

    /// The Clerk instance's issuer (its Frontend API URL, `CLERK_ISSUER`): a token with
    /// another `iss`, or none, is refused.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.options).issuer = Some(issuer.into());
        self
    }

    /// The organisation roles (such as `org:admin`) that may change an organisation's billing
    /// through the Atlas scope: subscribe, cancel, renew, payment method. Other members get
    /// 403; users acting for themselves (no active organisation) are not affected. Default:
    /// every member may.
    pub fn billing_roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Arc::make_mut(&mut self.options).billing_roles =
            roles.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the customer is the active organisation, when the session has one (default
    /// `false`: always the user).
    pub fn organizations(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.options).organizations = enabled;
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default 5 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        Arc::make_mut(&mut self.options).leeway = leeway;
        self
    }

    /// Verifies a session token; `None` for any token that is not a valid, current session.
    pub async fn verify(&self, token: &str) -> Option<ClerkSession> {
        self.verified(token)
            .await
            .map(|session| ClerkSession::clone(&session))
    }

    async fn verified(&self, token: &str) -> Option<Arc<ClerkSession>> {
        self.session(token)
            .await
            .inspect_err(|refusal| self.refused(*refusal))
            .ok()
    }

    /// Logs a refusal's cause, once per cause (a flood of bad tokens is one line each), and
    /// counts it: a silent 401 is the hardest failure of an auth set-up to diagnose.
    fn refused(&self, refusal: Refusal) {
        telemetry::clerk_refusal(refusal.cause());
        let bit = 1 << refusal as u16;
        if self.state.logged.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            tracing::debug!(
                cause = refusal.cause(),
                "a Clerk session token was refused ({}); later refusals for this cause are counted in atlas_clerk_refusals_total, not logged",
                refusal.explanation()
            );
        }
    }

    async fn session(&self, token: &str) -> Result<Arc<ClerkSession>, Refusal> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(session) = self.state.verified.get(token) {
            return (now
                <= session
                    .expires_at
                    .saturating_add(self.options.leeway.as_secs()))
            .then_some(session)
            .ok_or(Refusal::Expired);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(Refusal::Algorithm);
        }
        let key = self
            .key(header.kid.as_deref())
            .await
            .ok_or(Refusal::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = self.options.leeway.as_secs();
        validation.validate_nbf = true;
        validation.validate_aud = false;
        match &self.options.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                validation.set_required_spec_claims(&["exp", "sub", "iss"]);
            }
            None => validation.set_required_spec_claims(&["exp", "sub"]),
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|err| Refusal::of(&err))?
            .claims;
        if claims.sts.as_deref() == Some("pending") {
            return Err(Refusal::Pending);
        }
        let parties = &self.options.authorized_parties;
        if !parties.is_empty() && !claims.azp.as_ref().is_some_and(|azp| parties.contains(azp)) {
            tracing::debug!(azp = ?claims.azp, "a Clerk token for another party, or none, was refused");
            return Err(Refusal::Party);
        }
        let (v2_id, v2_role) = claims.o.map_or((None, None), |o| (o.id, o.rol));
        let session = Arc::new(ClerkSession {
            organization_id: v2_id.or(claims.org_id).filter(|id| !id.is_empty()),
            organization_role: v2_role
                .map(|role| {
                    if role.starts_with("org:") {
                        role
                    } else {
                        format!("org:{role}")
                    }
                })
                .or(claims.org_role)
                .filter(|role| !role.is_empty()),
            email: claims.email.filter(|email| is_email(email)),
            name: claims.name.filter(|name| !name.is_empty() && is_name(name)),
            user_id: claims.sub,
            session_id: claims.sid,
            expires_at: claims.exp,
        });
        self.state
            .verified
            .insert(token.to_owned(), Arc::clone(&session));
        Ok(session)
    }

    async fn key(&self, kid: Option<&str>) -> Option<DecodingKey> {
        match &self.state.keys {
            Keys::Pem(key) => Some(key.clone()),
            Keys::Jwks(keys) => keys.key(kid?).await,
        }
    }

    fn customer_id(&self, session: &ClerkSession) -> String {
        match &session.organization_id {
            Some(organization) if self.options.organizations => organization.clone(),
            _ => session.user_id.clone(),
        }
    }
}

impl UserResolver for ClerkAuth {
    fn resolve(&self, request: HttpRequest) -> ResolveFuture<'_> {
        Box::pin(async move {
            let token = bearer_token(&request)?;
            let session = self.verified(token).await?;
            Some(self.customer_id(&session))
        })
    }

    /// The verified session's `email` and `name` claims when it has them; the bounded
    /// contact headers for what it lacks.
    fn customer_info(&self, request: &HttpRequest) -> CustomerInfo {
        let mut info = contact_headers(request);
        // The token was verified moments ago by `resolve`: it is in the cache.
        if let Some(session) =
            bearer_token(request).and_then(|token| self.state.verified.get(token))
        {
            if session.email.is_some() {
                info.email.clone_from(&session.email);
            }
            if session.name.is_some() {
                info.name.clone_from(&session.name);
            }
        }
        info
    }

    fn may_manage_billing(&self, request: &HttpRequest) -> bool {
        let roles = &self.options.billing_roles;
        if roles.is_empty() {
            return true;
        }
        // The token was verified moments ago by `resolve`: it is in the cache.
        let Some(session) = bearer_token(request).and_then(|token| self.state.verified.get(token))
        else {
            return false;
        };
        match (&session.organization_id, self.options.organizations) {
            (Some(_), true) => session
                .organization_role
                .as_ref()
                .is_some_and(|role| roles.contains(role)),
            // The customer is the user: its own billing.
            _ => true,
        }
    }
}
