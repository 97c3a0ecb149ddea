//! Matching request paths against the platform's route templates, the way the reference
//! platform does: segment by segment, each parameter percent-decoded on its own, so an id sent
//! as `a%2Fb` is the one segment `a/b`.

use percent_encoding::percent_decode_str;

/// Every route the emulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    MerchantMe,
    PricingModel,
    Customer,
    CreateCustomer,
    PaymentMethod,
    CreditUsage,
    Invoices,
    LineItems,
    Transactions,
    Subscription,
    Cancel,
    Renew,
    Subscribe,
    Events,
    RegisterFeatures,
    SdkVersion,
    Checkout,
    AdminEvents,
    AdminRegistrations,
    AdminSdkVersions,
    AdminCustomers,
    AdminRequests,
    AdminPutCustomer,
    AdminInvalidate,
    AdminReset,
    AdminFaults,
    AdminAddFault,
    AdminClearFaults,
}

/// The platform's own routes; their templates are the keys of `/__admin/requests`.
const PLATFORM: &[(&str, &str, Route)] = &[
    ("GET", "/external/merchants/me", Route::MerchantMe),
    ("GET", "/external/pricingModel", Route::PricingModel),
    (
        "GET",
        "/external/customers/external-id/:id/with-active-and-upcoming-subscriptions",
        Route::Customer,
    ),
    ("POST", "/external/customers", Route::CreateCustomer),
    (
        "PATCH",
        "/external/customers/external-id/:id/stripe/payment-method",
        Route::PaymentMethod,
    ),
    (
        "GET",
        "/external/customers/:id/customPricingUnits/:unitId/credit-usage",
        Route::CreditUsage,
    ),
    ("GET", "/external/invoices/amounts", Route::Invoices),
    (
        "GET",
        "/external/invoiceLineItems/expanded",
        Route::LineItems,
    ),
    ("GET", "/external/transactions", Route::Transactions),
    (
        "GET",
        "/external/subscriptions/:id/expanded",
        Route::Subscription,
    ),
    ("POST", "/external/subscriptions/:id/cancel", Route::Cancel),
    ("POST", "/external/subscriptions/:id/renew", Route::Renew),
    (
        "POST",
        "/external/plans/:id/subscribe/standard",
        Route::Subscribe,
    ),
    ("POST", "/external/event", Route::Events),
    (
        "PUT",
        "/external/billables/register",
        Route::RegisterFeatures,
    ),
    ("POST", "/external/sdk/version", Route::SdkVersion),
    ("GET", "/__checkout/:id", Route::Checkout),
];

const ADMIN: &[(&str, &str, Route)] = &[
    ("GET", "/__admin/events", Route::AdminEvents),
    ("GET", "/__admin/registrations", Route::AdminRegistrations),
    ("GET", "/__admin/sdk-versions", Route::AdminSdkVersions),
    ("GET", "/__admin/customers", Route::AdminCustomers),
    ("GET", "/__admin/requests", Route::AdminRequests),
    ("PUT", "/__admin/customers/:id", Route::AdminPutCustomer),
    ("POST", "/__admin/invalidate", Route::AdminInvalidate),
    ("POST", "/__admin/reset", Route::AdminReset),
    ("GET", "/__admin/faults", Route::AdminFaults),
    ("POST", "/__admin/faults", Route::AdminAddFault),
    ("DELETE", "/__admin/faults", Route::AdminClearFaults),
];

/// The outcome of matching a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Match {
    Found {
        route: Route,
        template: &'static str,
        params: Vec<String>,
    },
    MethodNotAllowed {
        template: &'static str,
    },
    NotFound,
}

/// Whether a raw path belongs to the admin API (which needs no key and is not counted).
pub(crate) fn is_admin(path: &str) -> bool {
    path.starts_with("/__admin/")
}

pub(crate) fn match_route(method: &str, path: &str) -> Match {
    let table = if is_admin(path) { ADMIN } else { PLATFORM };
    let raw: Vec<&str> = path.split('/').collect();
    let mut other_method = None;
    for &(route_method, template, route) in table {
        let Some(params) = match_template(template, &raw) else {
            continue;
        };
        if route_method == method {
            return Match::Found {
                route,
                template,
                params,
            };
        }
        other_method.get_or_insert(template);
    }
    match other_method {
        Some(template) => Match::MethodNotAllowed { template },
        None => Match::NotFound,
    }
}

fn match_template(template: &str, raw: &[&str]) -> Option<Vec<String>> {
    let wanted: Vec<&str> = template.split('/').collect();
    if wanted.len() != raw.len() {
        return None;
    }
    let mut params = Vec::new();
    for (want, got) in wanted.iter().zip(raw) {
        if want.starts_with(':') {
            if got.is_empty() {
                return None;
            }
            params.push(decode_segment(got));
        } else if want != got {
            return None;
        }
    }
    Some(params)
}

/// Percent-decodes one path segment; a malformed escape or invalid UTF-8 leaves the segment as
/// it came, as `decodeURIComponent` failing does in the reference platform.
fn decode_segment(segment: &str) -> String {
    match percent_decode_str(segment).decode_utf8() {
        Ok(decoded) if !has_malformed_escape(segment) => decoded.into_owned(),
        _ => segment.to_owned(),
    }
}

fn has_malformed_escape(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_segment_on_its_own() {
        let found = match_route(
            "GET",
            "/external/customers/external-id/a%2Fb%3Fc%26d%23e/with-active-and-upcoming-subscriptions",
        );
        assert_eq!(
            found,
            Match::Found {
                route: Route::Customer,
                template:
                    "/external/customers/external-id/:id/with-active-and-upcoming-subscriptions",
                params: vec!["a/b?c&d#e".to_owned()],
            }
        );
    }

    #[test]
    fn a_raw_slash_is_another_path() {
        assert_eq!(
            match_route(
                "GET",
                "/external/customers/external-id/a/b/with-active-and-upcoming-subscriptions"
            ),
            Match::NotFound
        );
    }

    #[test]
    fn tells_wrong_method_from_unknown_path() {
        assert_eq!(
            match_route("DELETE", "/external/pricingModel"),
            Match::MethodNotAllowed {
                template: "/external/pricingModel"
            }
        );
        assert_eq!(match_route("GET", "/external/nothing"), Match::NotFound);
        assert_eq!(
            match_route("GET", "/external/subscriptions//expanded"),
            Match::NotFound
        );
    }

    #[test]
    fn malformed_escapes_stay_as_sent() {
        assert_eq!(decode_segment("100%"), "100%");
        assert_eq!(decode_segment("%zz"), "%zz");
        assert_eq!(decode_segment("%ff"), "%ff");
        assert_eq!(decode_segment("caf%C3%A9"), "café");
    }
}
