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

/// The customer details the frontend sends for new customers: the `x-customer-email` and
/// `x-customer-name` headers.
pub(crate) fn customer_info(request: &HttpRequest) -> CustomerInfo {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    CustomerInfo {
        email: header("x-customer-email"),
        name: header("x-customer-name"),
    }
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
        let info = customer_info(&request);
        assert_eq!(info.email.as_deref(), Some("ada@example.com"));
        assert!(info.name.is_none());
    }
}
