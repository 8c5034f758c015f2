//! Talking to the Meridian server: [`http`] for request/response endpoints and
//! [`realtime`] for the WebSocket channel, whose pure bookkeeping (backoff, heartbeat,
//! per-topic sequence tracking) lives in [`realtime_state`].

pub mod http;
pub mod realtime;
pub mod realtime_state;
