//! Talking to the Meridian server: [`http`] for request/response endpoints, [`socket`]
//! for the one reconnecting WebSocket (backoff, the connection's state machine, the
//! browser glue) and [`realtime`] for the realtime channel on it, whose pure bookkeeping
//! (heartbeat, per-topic sequence tracking) lives in [`realtime_state`]; [`trace`] makes
//! each HTTP call a client span of its own trace (`traceparent`, OTLP JSON). Nothing
//! here names a system.

pub mod http;
pub mod realtime;
pub mod realtime_state;
pub mod socket;
pub mod trace;
