//! The platform's pushes and the socket.io v4 framing they travel in (engine.io 4 packets over
//! a websocket): one codec, for the client's push link and the emulator's endpoint.
//!
//! The exchange: the server opens with `0{sid, pingInterval, pingTimeout, ...}`; the client
//! joins the default namespace with `40`, answered `40{sid}`; the server pings with `2` and
//! expects `3`; events go as `42["name", payload]` (an ack id may follow `42`); `44` refuses
//! the join, `41` leaves it, `1` closes the session.

use serde::Deserialize;
use serde_json::{json, Value};

/// What the platform pushes to connected SDK clients.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Push {
    /// A customer changed: clients refetch it. Holds the customer's external id.
    InvalidateCustomer(String),
    /// The pricing model changed.
    InvalidatePlans,
    /// The merchant changed: clients initialise again.
    InvalidateMerchant,
}

impl Push {
    /// The socket.io event name of this push.
    pub fn event_name(&self) -> &'static str {
        match self {
            Self::InvalidateCustomer(_) => "invalidateCustomer",
            Self::InvalidatePlans => "invalidatePlans",
            Self::InvalidateMerchant => "invalidateMerchant",
        }
    }

    fn from_event(items: &[Value]) -> Option<Self> {
        match items.first()?.as_str()? {
            "invalidateCustomer" => {
                Some(Self::InvalidateCustomer(items.get(1)?.as_str()?.to_owned()))
            }
            "invalidatePlans" => Some(Self::InvalidatePlans),
            "invalidateMerchant" => Some(Self::InvalidateMerchant),
            _ => None,
        }
    }
}

/// The ping timing the server announces in its open packet, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Timing {
    pub(crate) ping_interval: u64,
    pub(crate) ping_timeout: u64,
}

impl Default for Timing {
    /// socket.io's defaults, until the open packet says otherwise.
    fn default() -> Self {
        Self {
            ping_interval: 25_000,
            ping_timeout: 20_000,
        }
    }
}

/// One text packet of the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Packet {
    /// `0{...}`: the server opens the session.
    Open { sid: String, timing: Timing },
    /// `1`: the session is closed.
    Close,
    /// `2`.
    Ping,
    /// `3`.
    Pong,
    /// `40` from the client, `40{"sid": ...}` from the server: joined the default namespace.
    Connect { sid: Option<String> },
    /// `41`: left the namespace.
    Disconnect,
    /// `44...`: the join was refused.
    ConnectError,
    /// `42["name", ...]` for a push this SDK knows.
    Event(Push),
    /// Anything else: another event, another namespace, binary packets.
    Other,
}

impl Packet {
    /// The packet as it goes on the wire.
    pub(crate) fn encode(&self) -> String {
        match self {
            Self::Open { sid, timing } => format!(
                "0{}",
                json!({
                    "sid": sid,
                    "upgrades": [],
                    "pingInterval": timing.ping_interval,
                    "pingTimeout": timing.ping_timeout,
                    "maxPayload": 1_000_000,
                })
            ),
            Self::Close => "1".to_owned(),
            Self::Ping => "2".to_owned(),
            Self::Pong => "3".to_owned(),
            Self::Connect { sid: None } => "40".to_owned(),
            Self::Connect { sid: Some(sid) } => format!("40{}", json!({ "sid": sid })),
            Self::Disconnect => "41".to_owned(),
            Self::ConnectError => "44".to_owned(),
            Self::Event(push) => {
                let event = match push {
                    Push::InvalidateCustomer(customer) => json!([push.event_name(), customer]),
                    Push::InvalidatePlans | Push::InvalidateMerchant => json!([push.event_name()]),
                };
                format!("42{event}")
            }
            Self::Other => String::new(),
        }
    }

    /// Reads a text packet; what this SDK does not use is [`Packet::Other`].
    pub(crate) fn decode(text: &str) -> Self {
        match text.as_bytes() {
            [b'0', ..] => {
                #[derive(Deserialize)]
                struct Open {
                    #[serde(default)]
                    sid: String,
                    #[serde(flatten)]
                    timing: Timing,
                }
                serde_json::from_str::<Open>(&text[1..]).map_or(
                    Self::Open {
                        sid: String::new(),
                        timing: Timing::default(),
                    },
                    |open| Self::Open {
                        sid: open.sid,
                        timing: open.timing,
                    },
                )
            }
            b"1" => Self::Close,
            b"2" => Self::Ping,
            b"3" => Self::Pong,
            [b'4', b'0', rest @ ..] => {
                let sid = serde_json::from_slice::<Value>(rest)
                    .ok()
                    .and_then(|body| Some(body.get("sid")?.as_str()?.to_owned()));
                if rest.is_empty() || rest.first() == Some(&b'{') {
                    Self::Connect { sid }
                } else {
                    Self::Other
                }
            }
            [b'4', b'1', ..] => Self::Disconnect,
            [b'4', b'4', ..] => Self::ConnectError,
            [b'4', b'2', ..] => {
                let payload = text[2..].trim_start_matches(|c: char| c.is_ascii_digit());
                match serde_json::from_str::<Value>(payload) {
                    Ok(Value::Array(items)) => {
                        Push::from_event(&items).map_or(Self::Other, Self::Event)
                    }
                    _ => Self::Other,
                }
            }
            _ => Self::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_round_trip_as_socket_io_events() {
        for push in [
            Push::InvalidateCustomer("user_1".into()),
            Push::InvalidatePlans,
            Push::InvalidateMerchant,
        ] {
            let packet = Packet::Event(push.clone());
            assert_eq!(Packet::decode(&packet.encode()), packet);
        }
        assert_eq!(
            Packet::Event(Push::InvalidateCustomer("user_1".into())).encode(),
            r#"42["invalidateCustomer","user_1"]"#
        );
        assert_eq!(
            Packet::decode(r#"4217["invalidatePlans"]"#),
            Packet::Event(Push::InvalidatePlans)
        );
        for other in [
            r#"42["somethingElse",1]"#,
            r#"42["invalidateCustomer",7]"#,
            "42not json",
            "40/admin,",
            "",
        ] {
            assert_eq!(Packet::decode(other), Packet::Other, "{other}");
        }
    }

    #[test]
    fn the_handshake_packets_round_trip() {
        let open = Packet::Open {
            sid: "abc".into(),
            timing: Timing {
                ping_interval: 300,
                ping_timeout: 200,
            },
        };
        assert_eq!(Packet::decode(&open.encode()), open);
        assert_eq!(
            Packet::decode("0not json"),
            Packet::Open {
                sid: String::new(),
                timing: Timing::default()
            }
        );
        for packet in [
            Packet::Close,
            Packet::Ping,
            Packet::Pong,
            Packet::Connect { sid: None },
            Packet::Connect {
                sid: Some("abc".into()),
            },
            Packet::Disconnect,
            Packet::ConnectError,
        ] {
            assert_eq!(Packet::decode(&packet.encode()), packet);
        }
    }
}
