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

pub use self::events::{Append, Events, Published};

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::hub::Hub;
use crate::{Clock, Db};

/// What the realtime channel needs of the instance: narrow handles, no system.
#[derive(Clone)]
pub struct Realtime {
    pub db: Db,
    pub hub: Hub,
    pub clock: Arc<dyn Clock>,
    pub instance_id: Arc<str>,
    /// How often the server pings, and how long a silent client is kept.
    pub heartbeat: Duration,
    pub client_timeout: Duration,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

/// The channel needs an existing session: a cookie-less upgrade is refused, without
/// storing a session nobody can use.
pub const WITHOUT_GUEST_SESSION: &[&str] = &["/api/realtime"];

/// How many events each topic keeps for replay.
pub const RETAINED_EVENTS_PER_TOPIC: u64 = 10_000;

pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Realtime: FromRef<S>,
{
    crate::openapi::with_platform_errors(
        OpenApiRouter::new().routes(routes!(channel::realtime_socket)),
    )
}
