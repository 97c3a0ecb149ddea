//! Cross-site request forgery: what a page on another site can make a browser send, and why
//! state-changing requests refuse it.
//!
//! A browser sends some cross-site requests without asking the server first (no CORS
//! preflight): a `POST` whose body is `text/plain`, a form, or no body at all, carrying the
//! site's cookies. CORS only hides the answer from the other site; the request has already
//! run. So every state-changing route (the Atlas scope's `POST`s, and guards that report
//! usage) checks two things itself:
//!
//! - a body, if any, is JSON (`Content-Type: application/json`, which a browser never sends
//!   cross-site without a preflight the CORS layer refuses), else 415;
//! - a request carrying ambient credentials (cookies, or a non-bearer `Authorization` a
//!   browser may replay) comes from an allowed origin: its `Origin` (else its `Referer`'s
//!   origin) is the app's own or one of [`AtlasBuilder::allowed_origins`], else 403.
//!   `Origin: null` and no origin at all are refused.
//!
//! Requests with `Authorization: Bearer ...` are not affected: a browser never attaches a
//! bearer token by itself.
//!
//! [`AtlasBuilder::allowed_origins`]: crate::AtlasBuilder::allowed_origins

use actix_web::http::header;
use actix_web::HttpRequest;

use crate::auth::bearer_credentials;
use crate::web::error_response::RequestError;

/// The origins (`scheme://host[:port]`) a cookie-authenticated request may come from, besides
/// the app's own.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    pub(crate) fn new<I, S>(origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self(
            origins
                .into_iter()
                .map(|origin| {
                    origin
                        .as_ref()
                        .trim()
                        .trim_end_matches('/')
                        .to_ascii_lowercase()
                })
                .filter(|origin| !origin.is_empty())
                .collect(),
        )
    }

    fn allows(&self, origin: &str, request: &HttpRequest) -> bool {
        let origin = origin.to_ascii_lowercase();
        if self.0.contains(&origin) {
            return true;
        }
        let own = request.connection_info();
        origin == format!("{}://{}", own.scheme(), own.host()).to_ascii_lowercase()
    }
}

/// Whether the request carries credentials a browser attaches by itself.
fn has_ambient_credentials(request: &HttpRequest) -> bool {
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|value| bearer_credentials(value.as_bytes()).is_some());
    if bearer {
        return false;
    }
    headers.contains_key(header::COOKIE) || headers.contains_key(header::AUTHORIZATION)
}

/// The origin the browser named: `Origin`, else the origin of `Referer`.
fn origin_of(request: &HttpRequest) -> Option<String> {
    let headers = request.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin.to_str().ok().map(str::to_owned);
    }
    let referer = headers.get(header::REFERER)?.to_str().ok()?;
    let (scheme, rest) = referer.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

/// Refuses a request with ambient credentials from an origin that is not allowed.
pub(crate) fn check_origin(
    request: &HttpRequest,
    allowed: &AllowedOrigins,
) -> Result<(), RequestError> {
    if !has_ambient_credentials(request) {
        return Ok(());
    }
    match origin_of(request) {
        Some(origin) if origin != "null" && allowed.allows(&origin, request) => Ok(()),
        origin => {
            tracing::warn!(
                route = ?request.path(),
                origin = ?origin,
                "a cookie-authenticated state change from a foreign or missing origin was refused"
            );
            Err(RequestError::ForbiddenOrigin)
        }
    }
}

/// Refuses a body that is not declared JSON. A request with neither a body nor a content type
/// passes: it carries nothing to parse, and [`check_origin`] covers its credentials.
pub(crate) fn check_json_body(request: &HttpRequest) -> Result<(), RequestError> {
    let content_type = request.headers().get(header::CONTENT_TYPE);
    let Some(content_type) = content_type else {
        let empty = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_none_or(|length| length.as_bytes() == b"0");
        let chunked = request.headers().contains_key(header::TRANSFER_ENCODING);
        return if empty && !chunked {
            Ok(())
        } else {
            Err(RequestError::UnsupportedMediaType)
        };
    };
    let essence = content_type
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(RequestError::UnsupportedMediaType)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn allowed() -> AllowedOrigins {
        AllowedOrigins::new(["https://app.example.com/"])
    }

    #[test]
    fn bearer_requests_and_requests_without_credentials_pass() {
        let bearer = TestRequest::post()
            .insert_header(("authorization", "Bearer x.y.z"))
            .insert_header(("cookie", "__session=a"))
            .insert_header(("origin", "https://evil.example"))
            .to_http_request();
        assert!(check_origin(&bearer, &allowed()).is_ok());
        let anonymous = TestRequest::post()
            .insert_header(("origin", "https://evil.example"))
            .to_http_request();
        assert!(check_origin(&anonymous, &allowed()).is_ok());
    }

    #[test]
    fn cookie_requests_need_an_allowed_origin() {
        let from = |origin: Option<(&str, &str)>| {
            let mut request = TestRequest::post()
                .uri("http://api.example.com/atlas-api/x")
                .insert_header(("host", "api.example.com"))
                .insert_header(("cookie", "__session=a"));
            if let Some(header) = origin {
                request = request.insert_header(header);
            }
            check_origin(&request.to_http_request(), &allowed()).is_ok()
        };
        assert!(from(Some(("origin", "https://app.example.com"))));
        assert!(from(Some(("origin", "HTTPS://APP.example.com"))));
        assert!(
            from(Some(("origin", "http://api.example.com"))),
            "same origin"
        );
        assert!(from(Some((
            "referer",
            "https://app.example.com/billing?x=1"
        ))));
        assert!(!from(Some(("origin", "https://evil.example"))));
        assert!(!from(Some(("origin", "null"))));
        assert!(!from(Some((
            "referer",
            "https://evil.example/app.example.com"
        ))));
        assert!(!from(None));
        let basic = TestRequest::post()
            .insert_header(("authorization", "Basic YTpi"))
            .to_http_request();
        assert!(check_origin(&basic, &allowed()).is_err());
    }

    #[test]
    fn bodies_must_be_declared_json() {
        let with = |content_type: Option<&str>, length: &str| {
            let mut request = TestRequest::post().insert_header(("content-length", length));
            if let Some(content_type) = content_type {
                request = request.insert_header(("content-type", content_type));
            }
            check_json_body(&request.to_http_request()).is_ok()
        };
        assert!(with(Some("application/json"), "2"));
        assert!(with(Some("Application/JSON; charset=utf-8"), "2"));
        assert!(with(None, "0"));
        assert!(!with(Some("text/plain"), "2"));
        assert!(!with(Some("application/x-www-form-urlencoded"), "0"));
        assert!(!with(Some("multipart/form-data; boundary=x"), "2"));
        assert!(!with(None, "2"));
    }
}
