//! The default platform is https: the client must speak TLS through awc and rustls, trusting
//! the public roots and any certificate authority it is given.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use atlas_actix::{Atlas, AtlasError};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::common::example_data;

/// A local https platform that serves the merchant and the pricing model.
fn start_tls_platform() -> (
    String,
    CertificateDer<'static>,
    actix_web::dev::ServerHandle,
) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certificate = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate.clone()], key)
        .unwrap();
    let data = example_data();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let merchant = data.merchant.clone();
        let model = data.pricing_model.clone();
        App::new()
            .route(
                "/external/merchants/me",
                web::get().to(move || {
                    let merchant = merchant.clone();
                    async move { HttpResponse::Ok().json(merchant) }
                }),
            )
            .route(
                "/external/pricingModel",
                web::get().to(move || {
                    let model = model.clone();
                    async move { HttpResponse::Ok().json(model) }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .listen_rustls_0_23(listener, config)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (format!("https://localhost:{port}"), certificate, handle)
}

#[actix_rt::test]
async fn talks_to_an_https_platform_it_trusts_and_refuses_one_it_does_not() {
    let (url, certificate, server) = start_tls_platform();
    let key = example_data().api_key;

    let trusting = Atlas::builder()
        .api_key(&key)
        .base_url(&url)
        .add_root_certificate(certificate.to_vec())
        .build()
        .unwrap();
    let status = trusting.status().await.unwrap();
    assert_eq!(status.merchant.mode, "test");

    let wary = Atlas::builder()
        .api_key(&key)
        .base_url(&url)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(matches!(
        wary.status().await,
        Err(AtlasError::Unavailable(_))
    ));
    server.stop(false).await;
}
