//! The connection to the Atlas platform: `api` (one method per platform endpoint), `transport`
//! (the I/O thread that owns the awc client, timeouts and retries) and `push` (the socket.io
//! link through which the platform says what changed).

pub(crate) mod api;
pub(crate) mod push;
pub(crate) mod transport;
