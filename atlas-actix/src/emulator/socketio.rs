//! The emulator's socket.io v4 endpoint (engine.io 4, websocket transport), through which the
//! platform pushes invalidations to connected SDK clients. The framing is the client's
//! (`models::push`).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::Message;
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::state::EmulatorState;
use crate::models::push::{Packet, Timing};
use crate::models::Push;

/// How often the server pings, and how long it waits for the answer, as socket.io's defaults.
const PING_INTERVAL: Duration = Duration::from_secs(25);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The socket.io handshake: a websocket upgrade carrying the platform's API key.
pub(crate) async fn handshake(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<EmulatorState>,
) -> HttpResponse {
    state.platform().count_request("GET /socket.io/".to_owned());
    let key = request.headers().get("x-api-key").map(|v| v.as_bytes());
    if key != Some(state.platform().api_key().as_bytes()) {
        // What socket.io answers when `allowRequest` refuses a handshake.
        return HttpResponse::build(StatusCode::FORBIDDEN)
            .json(json!({"code": 4, "message": "Forbidden"}));
    }
    let query = request.query_string();
    let websocket = query.split('&').any(|pair| pair == "transport=websocket");
    if !query.split('&').any(|pair| pair == "EIO=4") || !websocket {
        return HttpResponse::BadRequest().json(json!({"code": 3, "message": "Bad request"}));
    }
    let (response, session, stream) = match actix_ws::handle(&request, body) {
        Ok(upgrade) => upgrade,
        Err(err) => {
            return HttpResponse::BadRequest().json(json!({"code": 3, "message": err.to_string()}))
        }
    };
    let state = state.into_inner();
    actix_rt::spawn(async move {
        if let Err(err) = serve(session, stream, &state).await {
            tracing::debug!(%err, "a socket.io client left");
        }
    });
    response
}

async fn serve(
    mut session: actix_ws::Session,
    mut stream: actix_ws::MessageStream,
    state: &EmulatorState,
) -> Result<(), actix_ws::Closed> {
    let sid = uuid::Uuid::new_v4().simple().to_string();
    let open = Packet::Open {
        sid: sid.clone(),
        timing: Timing {
            ping_interval: PING_INTERVAL.as_millis() as u64,
            ping_timeout: PING_TIMEOUT.as_millis() as u64,
        },
    };
    session.text(open.encode()).await?;
    // Pushes are received only once the client joined the namespace, so `/__admin/invalidate`
    // counts the clients that will get them.
    let mut pushes = None;
    let mut pings = actix_rt::time::interval(PING_INTERVAL);
    pings.tick().await;
    let mut last_pong = tokio::time::Instant::now();
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => match text.as_ref() {
                    "3" => last_pong = tokio::time::Instant::now(),
                    packet if packet == "40" || packet.starts_with("40{") => {
                        pushes = Some(state.pushes.subscribe());
                        session.text(format!("40{}", json!({ "sid": sid }))).await?;
                    }
                    "41" | "1" => break,
                    _ => {}
                },
                Some(Ok(Message::Ping(bytes))) => session.pong(&bytes).await?,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            push = next_push(&mut pushes) => match push {
                Ok(push) => session.text(Packet::Event(push).encode()).await?,
                Err(RecvError::Lagged(missed)) => tracing::warn!(missed, "a socket.io client fell behind; pushes were dropped"),
                Err(RecvError::Closed) => break,
            },
            _ = pings.tick() => {
                if last_pong.elapsed() > PING_INTERVAL + PING_TIMEOUT {
                    break;
                }
                session.text(Packet::Ping.encode()).await?;
            }
        }
    }
    session.close(None).await
}

/// The next push, or never while the client has not joined.
async fn next_push(
    pushes: &mut Option<tokio::sync::broadcast::Receiver<Push>>,
) -> Result<Push, RecvError> {
    match pushes {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}
