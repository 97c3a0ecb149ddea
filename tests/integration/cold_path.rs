//! The cold path over HTTP: first requests for a customer through the quickstart, as a
//! deploy or a cache expiry sees them.

use std::time::Duration;

use crate::common::{requests, start_emulator, Quickstart, CUSTOMER_ROUTE};

const CONCURRENT: usize = 1000;

#[actix_rt::test]
async fn a_thousand_concurrent_first_requests_make_one_platform_request() {
    let emulator = start_emulator();
    let quickstart = Quickstart::start(&emulator, None);
    let erin = format!("Bearer {}", quickstart.token("Erin Pro").await);
    let before = requests(&emulator, CUSTOMER_ROUTE).await;
    // One connection per request, all open at once: none waits for another's answer.
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .timeout(Duration::from_secs(60))
        .finish();
    let answers = (0..CONCURRENT).map(|_| {
        let request = client
            .get(format!("{}/api/data-explorer", quickstart.base))
            .insert_header(("authorization", erin.as_str()))
            .send();
        async move { request.await.expect("answered").status().as_u16() }
    });
    let statuses = futures_util::future::join_all(answers).await;
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    let fetched = requests(&emulator, CUSTOMER_ROUTE).await - before;
    assert_eq!(
        fetched, 1,
        "{CONCURRENT} first requests made {fetched} customer requests"
    );
}
