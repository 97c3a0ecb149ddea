//! The push link: one socket.io v4 connection (engine.io 4 over a websocket, opened with awc
//! and the `x-api-key` header) through which the platform tells the client what changed, so
//! an upgrade shows on the very next request instead of when the cache expires.
//!
//! The framing is small enough to own, and owning it keeps one HTTP and TLS stack: the Rust
//! socket.io clients bring their own (tokio-tungstenite, reqwest) beside awc. The open packet `0{...}` gives the ping timing, `40`
//! joins the default namespace, pings `2` are answered `3`, and events arrive as
//! `42["name", payload]`. A link that misses its pings for `pingInterval + pingTimeout` is
//! dead; the client reconnects with capped exponential backoff with jitter. A refused key
//! is reported and retried only at the cap, never in a hot loop.

use std::sync::Weak;
use std::time::Duration;

use awc::http::header::HeaderValue;
use awc::ws;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::client::retry::Backoff;
use crate::client::telemetry;
use crate::client::{upgrade, Inner, PushLink};

/// Reconnections wait 0.5 s, 1 s, 2 s, ... at most 10 s (jittered): back within seconds of
/// the platform's return (a refused key waits the longest step too).
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
/// The longest wait for the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the link needs, made when the client starts.
pub(crate) struct LinkConfig {
    pub(crate) url: String,
    pub(crate) key: HeaderValue,
    pub(crate) tls: std::sync::Arc<rustls::ClientConfig>,
}

impl LinkConfig {
    /// The socket.io URL of a platform base URL.
    pub(crate) fn socket_url(base_url: &str) -> String {
        let ws_base = match base_url.strip_prefix("https://") {
            Some(rest) => format!("wss://{rest}"),
            None => format!("ws://{}", base_url.trim_start_matches("http://")),
        };
        format!("{ws_base}/socket.io/?EIO=4&transport=websocket")
    }
}

/// engine.io's open packet.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Open {
    ping_interval: u64,
    ping_timeout: u64,
}

/// A push the platform sent.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Customer(String),
    Plans,
    Merchant,
}

/// Reads a `42["name", payload]` packet (an optional ack id may follow `42`).
fn event(packet: &str) -> Option<Event> {
    let rest = packet.strip_prefix("42")?;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let Value::Array(items) = serde_json::from_str(rest).ok()? else {
        return None;
    };
    match items.first()?.as_str()? {
        "invalidateCustomer" => Some(Event::Customer(items.get(1)?.as_str()?.to_owned())),
        "invalidatePlans" => Some(Event::Plans),
        "invalidateMerchant" => Some(Event::Merchant),
        _ => None,
    }
}

/// How a connection ended.
enum Ended {
    Refused,
    Down(String),
    /// The client is gone.
    Dropped,
}

/// Keeps the link up until the client is dropped or shut down (the I/O thread's runtime,
/// which runs this, ends then).
pub(crate) async fn run(weak: Weak<Inner>, config: LinkConfig, state: watch::Sender<PushLink>) {
    let client = awc::Client::builder()
        .connector(
            awc::Connector::new()
                .rustls_0_23(config.tls.clone())
                .timeout(HANDSHAKE_TIMEOUT),
        )
        .timeout(HANDSHAKE_TIMEOUT)
        .finish();
    let mut failures: u32 = 0;
    loop {
        state.send_replace(PushLink::Connecting);
        telemetry::push_connected(false);
        let ended = connect(&client, &config, &weak, &state).await;
        let wait = match ended {
            Ended::Dropped => return,
            Ended::Refused => {
                // A wrong key does not become right by retrying: report, wait the longest.
                if state.send_replace(PushLink::Refused) != PushLink::Refused {
                    tracing::error!("the Atlas platform refused the push link's API key");
                }
                telemetry::push_connected(false);
                RECONNECT.max
            }
            Ended::Down(reason) => {
                tracing::warn!(%reason, "the Atlas push link is down; reconnecting");
                state.send_replace(PushLink::Disconnected { reason });
                telemetry::push_connected(false);
                failures += 1;
                RECONNECT.delay(failures.saturating_sub(1))
            }
        };
        if weak.strong_count() == 0 {
            return;
        }
        actix_rt::time::sleep(wait).await;
        if matches!(state.borrow().clone(), PushLink::Connected) {
            failures = 0;
        }
    }
}

async fn connect(
    client: &awc::Client,
    config: &LinkConfig,
    weak: &Weak<Inner>,
    state: &watch::Sender<PushLink>,
) -> Ended {
    let handshake = client
        .ws(config.url.as_str())
        .set_header("x-api-key", config.key.clone())
        .connect();
    let mut socket = match actix_rt::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Err(_) => return Ended::Down("the handshake timed out".to_owned()),
        Ok(Err(awc::error::WsClientError::InvalidResponseStatus(status)))
            if status.as_u16() == 401 || status.as_u16() == 403 =>
        {
            return Ended::Refused
        }
        Ok(Err(err)) => return Ended::Down(format!("could not connect: {err}")),
        Ok(Ok((_, socket))) => socket,
    };
    // Until the open packet says otherwise, socket.io's defaults.
    let mut silence = Duration::from_secs(45);
    let mut joined = false;
    loop {
        let frame = match actix_rt::time::timeout(silence, socket.next()).await {
            Err(_) => return Ended::Down("no ping within the ping timeout".to_owned()),
            Ok(None) => return Ended::Down("the platform closed the link".to_owned()),
            Ok(Some(Err(err))) => return Ended::Down(format!("websocket error: {err}")),
            Ok(Some(Ok(frame))) => frame,
        };
        let text = match frame {
            ws::Frame::Text(bytes) => bytes,
            ws::Frame::Ping(bytes) => {
                if socket.send(ws::Message::Pong(bytes)).await.is_err() {
                    return Ended::Down("could not answer a ping".to_owned());
                }
                continue;
            }
            ws::Frame::Close(reason) => {
                return Ended::Down(format!("closed by the platform: {reason:?}"))
            }
            _ => continue,
        };
        let Ok(packet) = std::str::from_utf8(&text) else {
            continue;
        };
        let reply = match packet.as_bytes().first() {
            Some(b'0') => {
                if let Ok(open) = serde_json::from_str::<Open>(&packet[1..]) {
                    silence = Duration::from_millis(open.ping_interval + open.ping_timeout);
                }
                Some("40")
            }
            Some(b'2') => Some("3"),
            Some(b'1') => return Ended::Down("the platform closed the session".to_owned()),
            Some(b'4') if packet.starts_with("40") && !joined => {
                joined = true;
                state.send_replace(PushLink::Connected);
                telemetry::push_connected(true);
                tracing::info!("the Atlas push link is connected");
                None
            }
            Some(b'4') if packet.starts_with("44") => return Ended::Refused,
            Some(b'4') => {
                let Some(atlas) = upgrade(weak) else {
                    return Ended::Dropped;
                };
                match event(packet) {
                    Some(Event::Customer(customer)) => {
                        tracing::debug!(customer = ?customer, "push: customer changed");
                        atlas.invalidate_customer(&customer);
                    }
                    Some(Event::Plans) => {
                        tracing::debug!("push: plans changed");
                        atlas.invalidate_plans();
                    }
                    Some(Event::Merchant) => {
                        tracing::debug!("push: merchant changed");
                        atlas.reinitialise();
                    }
                    None => tracing::debug!(packet, "push: unknown packet"),
                }
                None
            }
            _ => None,
        };
        if let Some(reply) = reply {
            if socket.send(ws::Message::Text(reply.into())).await.is_err() {
                return Ended::Down("could not write to the link".to_owned());
            }
        }
        if weak.strong_count() == 0 {
            return Ended::Dropped;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_socket_io_events() {
        assert_eq!(
            event(r#"42["invalidateCustomer","user_1"]"#),
            Some(Event::Customer("user_1".into()))
        );
        assert_eq!(event(r#"4217["invalidatePlans"]"#), Some(Event::Plans));
        assert_eq!(event(r#"42["invalidateMerchant"]"#), Some(Event::Merchant));
        assert_eq!(event(r#"42["somethingElse",1]"#), None);
        assert_eq!(event(r#"42["invalidateCustomer",7]"#), None);
        assert_eq!(event("42not json"), None);
    }

    #[test]
    fn socket_urls_follow_the_scheme() {
        assert_eq!(
            LinkConfig::socket_url("https://platform.runonatlas.com"),
            "wss://platform.runonatlas.com/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            LinkConfig::socket_url("http://127.0.0.1:4010"),
            "ws://127.0.0.1:4010/socket.io/?EIO=4&transport=websocket"
        );
    }

    #[test]
    fn reconnections_back_off_to_a_minute() {
        for failures in 0..40 {
            assert!(RECONNECT.delay(failures) <= RECONNECT.max);
        }
        assert!(RECONNECT.delay(0) <= Duration::from_millis(500));
    }
}
