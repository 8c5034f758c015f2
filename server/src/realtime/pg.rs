//! The bridge between server instances that share one PostgreSQL: events and session
//! closes travel as NOTIFY on one channel, and every instance LISTENs.
//!
//! Invariants:
//! - An event's notification is queued inside the transaction that stores it, so it is
//!   sent only if the event commits, and in commit order (which per topic is sequence
//!   order).
//! - An instance ignores its own notifications (it delivered those locally already).
//! - A notification too large for NOTIFY (8000 bytes) carries only `(topic, seq)`, and
//!   the receivers read the event from the database.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use meridian_shared::realtime::Event;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use sqlx::AnyPool;
use tokio_util::sync::CancellationToken;

use super::hub::{Hub, Remote};
use super::store;

pub const CHANNEL: &str = "meridian_realtime";
/// PostgreSQL's limit is 8000 bytes; keep a margin.
const MAX_NOTIFY_BYTES: usize = 7900;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Notice {
    Event {
        origin: String,
        event: Event,
    },
    EventRef {
        origin: String,
        topic: String,
        seq: u64,
    },
    CloseSession {
        origin: String,
        session_id: String,
        code: u16,
        reason: String,
    },
}

impl InstanceNotice for Notice {
    fn origin(&self) -> &str {
        match self {
            Notice::Event { origin, .. }
            | Notice::EventRef { origin, .. }
            | Notice::CloseSession { origin, .. } => origin,
        }
    }
}

/// The NOTIFY payload announcing `event`.
pub fn event_notice(origin: &str, event: &Event) -> String {
    let full = serde_json::to_string(&Notice::Event {
        origin: origin.to_owned(),
        event: event.clone(),
    })
    .expect("events serialise");
    if full.len() <= MAX_NOTIFY_BYTES {
        return full;
    }
    serde_json::to_string(&Notice::EventRef {
        origin: origin.to_owned(),
        topic: event.topic.clone(),
        seq: event.seq,
    })
    .expect("refs serialise")
}

/// Sends session closes to the other instances.
pub struct PgRemote {
    pub pool: AnyPool,
    pub origin: String,
}

impl Remote for PgRemote {
    fn close_session(&self, session_id: &str, code: u16, reason: &str) -> BoxFuture<'static, ()> {
        let pool = self.pool.clone();
        let notice = serde_json::to_string(&Notice::CloseSession {
            origin: self.origin.clone(),
            session_id: session_id.to_owned(),
            code,
            reason: reason.to_owned(),
        })
        .expect("notices serialise");
        Box::pin(async move {
            let sent = async {
                let mut conn = pool.acquire().await?;
                store::notify(&mut conn, CHANNEL, &notice).await
            };
            if let Err(err) = sent.await {
                tracing::warn!(%err, "could not tell other instances to close a session");
            }
        })
    }
}

/// Connects and LISTENs; returns once the listener is ready, so that nothing published
/// after start-up is missed.
pub async fn listen(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// A notice one instance sends the others on a channel.
pub trait InstanceNotice: DeserializeOwned {
    /// The instance that sent it.
    fn origin(&self) -> &str;
}

/// The next notice another instance sent on `listener`'s channel, or `None` once
/// `shutdown` is cancelled. A failed LISTEN connection is reconnected (notifications
/// sent meanwhile are lost: each system says how it recovers); unreadable notices and
/// this instance's own are skipped.
pub async fn next_notice<N: InstanceNotice>(
    listener: &mut PgListener,
    origin: &str,
    what: &str,
    shutdown: &CancellationToken,
) -> Option<N> {
    loop {
        let notification = tokio::select! {
            _ = shutdown.cancelled() => return None,
            n = listener.recv() => n,
        };
        let notification = match notification {
            Ok(n) => n,
            Err(err) => {
                tracing::warn!(%err, "{what} LISTEN connection failed; reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
        };
        match serde_json::from_str::<N>(notification.payload()) {
            Ok(notice) if notice.origin() == origin => {}
            Ok(notice) => return Some(notice),
            Err(err) => tracing::warn!(%err, "ignoring a malformed {what} notification"),
        }
    }
}

/// Delivers other instances' notifications to the local hub until `shutdown`.
/// Notifications lost while the LISTEN connection is down are recovered by clients
/// resubscribing with `since`.
pub async fn relay(
    mut listener: PgListener,
    hub: Hub,
    pool: AnyPool,
    origin: Arc<str>,
    shutdown: CancellationToken,
) {
    while let Some(notice) =
        next_notice::<Notice>(&mut listener, &origin, "realtime", &shutdown).await
    {
        match notice {
            Notice::Event { event, .. } => hub.deliver_local(Arc::new(event)),
            Notice::EventRef { topic, seq, .. } => match store::event(&pool, &topic, seq).await {
                Ok(Some(event)) => hub.deliver_local(Arc::new(event)),
                Ok(None) => tracing::warn!(%topic, seq, "notified event is gone"),
                Err(err) => tracing::warn!(%err, "could not read a notified event"),
            },
            Notice::CloseSession {
                session_id,
                code,
                reason,
                ..
            } => hub.close_session_local(&session_id, code, &reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_events_travel_by_reference() {
        let mut event = Event {
            topic: "public:x".into(),
            seq: 3,
            op_id: "a".into(),
            payload: serde_json::json!({"text": "hi"}),
            at_ms: 1,
        };
        let small: Notice = serde_json::from_str(&event_notice("me", &event)).unwrap();
        assert!(matches!(small, Notice::Event { .. }));
        event.payload = serde_json::json!({"text": "x".repeat(9000)});
        let notice = event_notice("me", &event);
        assert!(notice.len() <= MAX_NOTIFY_BYTES);
        let large: Notice = serde_json::from_str(&notice).unwrap();
        assert!(matches!(large, Notice::EventRef { seq: 3, .. }));
    }
}
