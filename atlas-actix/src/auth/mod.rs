//! Who the user of a request is: the app says, through a [`UserResolver`].

#[cfg(feature = "clerk")]
pub(crate) mod clerk;

use std::future::Future;
use std::pin::Pin;

use actix_web::HttpRequest;

use crate::models::CustomerInfo;

/// The future a [`UserResolver`] returns; it may borrow the resolver.
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = Option<String>> + 'a>>;

/// Turns a request into the Atlas customer id of its user: a user id, or an organisation id
/// so that every member of the organisation shares its plan. `None` when the request has no
/// (valid) user.
///
/// Any `Fn(HttpRequest) -> impl Future<Output = Option<String>>` is one, so any auth works;
/// `ClerkAuth` (feature `clerk`) verifies Clerk session tokens.
///
/// ```
/// use actix_web::HttpRequest;
///
/// // Trust a header set by an authenticating proxy in front of the app.
/// let resolver = |req: HttpRequest| async move {
///     req.headers()
///         .get("x-authenticated-user")
///         .and_then(|value| value.to_str().ok())
///         .map(str::to_owned)
/// };
/// let builder = atlas_actix::Atlas::builder().user_resolver(resolver);
/// ```
pub trait UserResolver: Send + Sync + 'static {
    /// The customer id of the request's user, if it has one.
    fn resolve(&self, request: HttpRequest) -> ResolveFuture<'_>;

    /// Whether the request's user, already resolved, may change its customer's billing:
    /// subscribe, cancel, renew, set a payment method. Called by the Atlas scope's billing
    /// routes; a refusal answers 403. Default: yes. `ClerkAuth` can
    /// restrict it to organisation roles.
    fn may_manage_billing(&self, request: &HttpRequest) -> bool {
        let _ = request;
        true
    }

    /// The details of the user's customer, for when the platform creates it (its first
    /// request). Default: the `x-customer-email` and `x-customer-name` headers the React SDK
    /// sends, each kept only when it is in bounds (see [`contact_headers`]). `ClerkAuth`
    /// prefers the verified session's `email` and `name` claims.
    fn customer_info(&self, request: &HttpRequest) -> CustomerInfo {
        contact_headers(request)
    }
}

impl<F, Fut> UserResolver for F
where
    F: Fn(HttpRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<String>> + 'static,
{
    fn resolve(&self, request: HttpRequest) -> ResolveFuture<'_> {
        Box::pin(self(request))
    }
}

/// The longest customer email kept (RFC 5321's limit on a path).
pub(crate) const MAX_CONTACT_EMAIL: usize = 254;
/// The longest customer name kept, in characters.
pub(crate) const MAX_CONTACT_NAME: usize = 200;

/// The customer details the frontend sends for new customers, the `x-customer-email` and
/// `x-customer-name` headers, each kept only when it is in bounds: an email of at most 254
/// bytes shaped like an address (`local@domain`, no spaces or control characters), a name of
/// at most 200 characters without control characters.
/// Anything else is dropped (logged at debug): the customer is created without it. The
/// headers are the caller's word; a resolver that knows better says so in
/// [`UserResolver::customer_info`].
pub fn contact_headers(request: &HttpRequest) -> CustomerInfo {
    let header = |name: &'static str, valid: fn(&str) -> bool| {
        // UTF-8, not only ASCII: names are often not English ones.
        let value = std::str::from_utf8(request.headers().get(name)?.as_bytes())
            .ok()?
            .trim();
        if value.is_empty() {
            return None;
        }
        if !valid(value) {
            tracing::debug!(
                header = name,
                bytes = value.len(),
                "a contact header out of bounds is dropped"
            );
            return None;
        }
        Some(value.to_owned())
    };
    let mut info = CustomerInfo::new();
    info.email = header("x-customer-email", is_email);
    info.name = header("x-customer-name", is_name);
    info
}

/// An address in bounds: one `@` between a non-empty local part and a domain with a dot-free
/// or dotted name, no white space or control characters.
pub(crate) fn is_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= MAX_CONTACT_EMAIL
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A name in bounds.
pub(crate) fn is_name(name: &str) -> bool {
    name.chars().count() <= MAX_CONTACT_NAME && !name.chars().any(char::is_control)
}

/// The token of an `Authorization: Bearer <token>` header value; `None` for another scheme or
/// an empty token.
pub(crate) fn bearer_credentials(authorization: &[u8]) -> Option<&str> {
    let (scheme, token) = authorization.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    // Tokens are about a kilobyte, read on every guarded request: UTF-8 validation (which has
    // a fast ASCII path) is much cheaper than `HeaderValue::to_str`'s byte-by-byte check.
    let token = std::str::from_utf8(token).ok()?.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(feature = "clerk")]
/// The session token of a request: `Authorization: Bearer <token>`, else the `__session`
/// cookie that Clerk's frontend sets for same-origin requests.
pub(crate) fn bearer_token(request: &HttpRequest) -> Option<&str> {
    let headers = request.headers();
    if let Some(value) = headers.get(actix_web::http::header::AUTHORIZATION) {
        return bearer_credentials(value.as_bytes());
    }
    headers
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|cookie| cookie.trim().split_once('='))
        .find(|(name, _)| *name == "__session")
        .map(|(_, token)| token)
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[cfg(feature = "clerk")]
    #[test]
    fn finds_the_token_in_the_header_or_the_session_cookie() {
        let header = TestRequest::default()
            .insert_header(("authorization", "Bearer abc.def.ghi"))
            .to_http_request();
        assert_eq!(bearer_token(&header), Some("abc.def.ghi"));
        let cookie = TestRequest::default()
            .insert_header(("cookie", "theme=dark; __session=tok.en.x; other=1"))
            .to_http_request();
        assert_eq!(bearer_token(&cookie), Some("tok.en.x"));
        for bad in ["Basic abc", "Bearer ", "Bearer", "abc"] {
            let request = TestRequest::default()
                .insert_header(("authorization", bad))
                .to_http_request();
            assert!(bearer_token(&request).is_none(), "{bad}");
        }
        assert!(bearer_token(&TestRequest::default().to_http_request()).is_none());
    }

    #[test]
    fn reads_customer_info_headers() {
        let request = TestRequest::default()
            .insert_header(("x-customer-email", "ada@example.com"))
            .insert_header(("x-customer-name", ""))
            .to_http_request();
        let info = contact_headers(&request);
        assert_eq!(info.email.as_deref(), Some("ada@example.com"));
        assert!(info.name.is_none());
    }

    /// A header value of any bytes, as a client may send (`HeaderValue::from_str` takes ASCII).
    fn utf8(value: &str) -> actix_web::http::header::HeaderValue {
        actix_web::http::header::HeaderValue::from_bytes(value.as_bytes())
            .expect("bytes a client can send")
    }

    #[test]
    fn contact_headers_out_of_bounds_are_dropped() {
        let long_name = "n".repeat(8_000);
        let long_email = format!("{}@example.com", "a".repeat(250));
        for (email, name) in [
            ("not an address", long_name.as_str()),
            (long_email.as_str(), "tab\tname"),
            ("two@@example.com", "c1\u{85}control"),
            ("@example.com", &"é".repeat(201)),
            ("ada@", "csi\u{9b}31m"),
        ] {
            let request = TestRequest::default()
                .insert_header(("x-customer-email", utf8(email)))
                .insert_header(("x-customer-name", utf8(name)))
                .to_http_request();
            assert_eq!(
                contact_headers(&request),
                CustomerInfo::new(),
                "{email:?} {name:?}"
            );
        }
        let request = TestRequest::default()
            .insert_header(("x-customer-email", "o'brien+atlas@mail.example.co"))
            .insert_header(("x-customer-name", utf8(&"é".repeat(200))))
            .to_http_request();
        let info = contact_headers(&request);
        assert_eq!(info.email.as_deref(), Some("o'brien+atlas@mail.example.co"));
        assert_eq!(info.name.map(|name| name.chars().count()), Some(200));
    }
}
