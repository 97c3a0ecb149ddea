//! The push link: one socket.io v4 connection (engine.io 4 over a websocket, opened with awc
//! and the `x-api-key` header) through which the platform tells the client what changed, so
//! an upgrade shows on the very next request instead of when the cache expires.
//!
//! The framing (`models::push`, shared with the emulator) is small enough to own, and owning it
//! keeps one HTTP and TLS stack: the Rust socket.io clients bring their own (tokio-tungstenite,
//! reqwest) beside awc. A link that misses its pings for `pingInterval + pingTimeout` is dead;
//! the client reconnects with capped exponential backoff with jitter (from the first step again
//! after a link that was up). A refused key is reported and retried only at the cap, never in
//! a hot loop.

use std::sync::Weak;
use std::time::Duration;

use awc::http::header::HeaderValue;
use awc::ws;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;

use crate::client::retry::{repeat, Backoff, Round};
use crate::client::telemetry;
use crate::client::{upgrade, Inner, PushLink};
use crate::models::push::{Packet, Timing};
use crate::models::Push;

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

/// How a connection ended.
enum Ended {
    Refused,
    /// Lost, or never made; `joined` when the link had been up.
    Down {
        reason: String,
        joined: bool,
    },
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
    let (client, config, weak, state) = (&client, &config, &weak, &state);
    repeat("the Atlas push link", RECONNECT, move |_| async move {
        state.send_replace(PushLink::Connecting);
        telemetry::push_connected(false);
        let round = match connect(client, config, weak, state).await {
            Ended::Dropped => return Round::Done,
            Ended::Refused => {
                // A wrong key does not become right by retrying: report, wait the longest.
                if state.send_replace(PushLink::Refused) != PushLink::Refused {
                    tracing::error!("the Atlas push link's API key was refused; retrying at the longest backoff");
                }
                Round::Again(RECONNECT.max)
            }
            Ended::Down { reason, joined } => {
                state.send_replace(PushLink::Disconnected {
                    reason: reason.clone(),
                });
                if joined {
                    // A link that was up starts its backoff again from the first step.
                    tracing::warn!(%reason, "the Atlas push link dropped; reconnecting");
                    Round::Again(RECONNECT.delay(0))
                } else {
                    Round::Failed(reason)
                }
            }
        };
        telemetry::push_connected(false);
        if weak.strong_count() == 0 {
            return Round::Done;
        }
        round
    })
    .await;
}

async fn connect(
    client: &awc::Client,
    config: &LinkConfig,
    weak: &Weak<Inner>,
    state: &watch::Sender<PushLink>,
) -> Ended {
    let down = |reason: String, joined: bool| Ended::Down { reason, joined };
    let handshake = client
        .ws(config.url.as_str())
        .set_header("x-api-key", config.key.clone())
        .connect();
    let mut socket = match actix_rt::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Err(_) => return down("the handshake timed out".to_owned(), false),
        Ok(Err(awc::error::WsClientError::InvalidResponseStatus(status)))
            if status.as_u16() == 401 || status.as_u16() == 403 =>
        {
            return Ended::Refused
        }
        Ok(Err(err)) => return down(format!("could not connect: {err}"), false),
        Ok(Ok((_, socket))) => socket,
    };
    let mut timing = Timing::default();
    let mut joined = false;
    loop {
        let silence = Duration::from_millis(timing.ping_interval + timing.ping_timeout);
        let frame = match actix_rt::time::timeout(silence, socket.next()).await {
            Err(_) => return down("no ping within the ping timeout".to_owned(), joined),
            Ok(None) => return down("the platform closed the link".to_owned(), joined),
            Ok(Some(Err(err))) => return down(format!("websocket error: {err}"), joined),
            Ok(Some(Ok(frame))) => frame,
        };
        let text = match frame {
            ws::Frame::Text(bytes) => bytes,
            ws::Frame::Ping(bytes) => {
                if socket.send(ws::Message::Pong(bytes)).await.is_err() {
                    return down("could not answer a ping".to_owned(), joined);
                }
                continue;
            }
            ws::Frame::Close(reason) => {
                return down(format!("closed by the platform: {reason:?}"), joined)
            }
            _ => continue,
        };
        let Ok(text) = std::str::from_utf8(&text) else {
            continue;
        };
        let reply = match Packet::decode(text) {
            Packet::Open {
                timing: announced, ..
            } => {
                timing = announced;
                Some(Packet::Connect { sid: None })
            }
            Packet::Ping => Some(Packet::Pong),
            Packet::Close => return down("the platform closed the session".to_owned(), joined),
            Packet::Connect { .. } if !joined => {
                joined = true;
                state.send_replace(PushLink::Connected);
                telemetry::push_connected(true);
                tracing::info!("the Atlas push link is connected");
                None
            }
            Packet::ConnectError => return Ended::Refused,
            Packet::Event(push) => {
                let Some(atlas) = upgrade(weak) else {
                    return Ended::Dropped;
                };
                match push {
                    Push::InvalidateCustomer(customer) => {
                        tracing::debug!(customer = ?customer, "push: customer changed");
                        atlas.revalidate_customer(&customer);
                    }
                    Push::InvalidatePlans => {
                        tracing::debug!("push: plans changed");
                        atlas.invalidate_plans();
                    }
                    Push::InvalidateMerchant => {
                        tracing::debug!("push: merchant changed");
                        atlas.reinitialise();
                    }
                }
                None
            }
            Packet::Other => {
                tracing::debug!(packet = ?text, "push: a packet this SDK does not use");
                None
            }
            _ => None,
        };
        if let Some(reply) = reply {
            if socket
                .send(ws::Message::Text(reply.encode().into()))
                .await
                .is_err()
            {
                return down("could not write to the link".to_owned(), joined);
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
    fn reconnections_back_off_to_ten_seconds() {
        assert_eq!(RECONNECT.max, Duration::from_secs(10));
        for failures in 0..40 {
            assert!(RECONNECT.delay(failures) <= Duration::from_secs(10));
        }
        // The first retry is quick, a long outage's are at the cap (half of it at least).
        assert!(RECONNECT.delay(0) <= Duration::from_millis(500));
        assert!(RECONNECT.delay(39) >= Duration::from_secs(5));
    }
}
