//! Realtime: how a change reaches every session that watches it, on every instance.
//!
//! ```text
//! events   Events: append events in the caller's transaction, deliver after commit
//! hub      subscriptions, per-connection queues, per-topic order, notices to systems
//! pg       PostgreSQL NOTIFY/LISTEN: the one channel between instances
//! store    SQL of the topic log
//! socket   the one server WebSocket loop (Endpoint, Queue, heartbeat, rate, close)
//! channel  the `/api/realtime` endpoint: subscribe, publish, replay
//! ```
//!
//! Invariants:
//! - Durable before visible: an event is committed before anyone receives it or its
//!   publisher gets its `ack`; on PostgreSQL its NOTIFY is queued in the same
//!   transaction.
//! - Idempotent ops: a publish with an op id already applied to the topic is
//!   acknowledged with its original sequence number and not stored again.
//! - Ordered topics: per topic, sequence numbers are dense (the topic row is the lock)
//!   and each connection receives them in order, at most once.
//! - Every connection ends with a close frame that says why: the server shutting down,
//!   a protocol error, a missed heartbeat, a slow consumer, a revoked session.

pub mod channel;
pub mod events;
pub mod hub;
pub mod pg;
pub mod socket;
pub mod store;

pub use self::events::{Events, Published};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

/// The channel needs an existing session: a cookie-less upgrade is refused, without
/// storing a session nobody can use.
pub const WITHOUT_GUEST_SESSION: &[&str] = &["/api/realtime"];

/// How many events each topic keeps for replay.
pub const RETAINED_EVENTS_PER_TOPIC: u64 = 10_000;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(channel::realtime_socket))
}

/// Appends an event to a topic in a transaction of its own, then delivers it to every
/// subscriber on every instance. Idempotent per `(topic, op_id)`. A system that writes
/// rows of its own appends its events in that transaction with [`Events`] instead.
pub async fn publish(
    state: &AppState,
    topic: &str,
    op_id: &str,
    payload: serde_json::Value,
    session_id: Option<&str>,
) -> Result<Published, sqlx::Error> {
    Events::publish(&state.db, &state.hub, topic, op_id, payload, session_id).await
}
