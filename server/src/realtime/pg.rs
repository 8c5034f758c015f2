//! The bridge between server instances that share one PostgreSQL: every notice (events,
//! session closes, systems' own notices such as the documents') travels as NOTIFY on one
//! channel, and each instance has one LISTEN connection that hands what arrives to its
//! hub.
//!
//! Invariants:
//! - A notice queued in a transaction (an event, a stored document update) is sent only
//!   if it commits, and in commit order (which per topic is sequence order).
//! - An instance ignores its own notices (it delivered those locally already).
//! - An event too large for NOTIFY (8000 bytes) travels as `(topic, seq)`, and the
//!   receivers read it from the database; a system's notice that large is not sent
//!   (systems keep theirs small and recover from lost notices).
//! - A lost LISTEN connection is reconnected; what was sent meanwhile is lost: clients
//!   resubscribe with `since`, and each system says how it recovers.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use meridian_shared::realtime::Event;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use sqlx::{AnyConnection, AnyPool};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::hub::{Hub, Notice, Remote};
use super::store;

pub const CHANNEL: &str = "meridian_realtime";
/// PostgreSQL's limit is 8000 bytes; keep a margin.
const MAX_NOTIFY_BYTES: usize = 7900;

/// A notice as it travels on [`CHANNEL`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Wire {
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
    CloseUser {
        origin: String,
        user_id: String,
        code: u16,
        reason: String,
    },
    System {
        origin: String,
        system: String,
        body: serde_json::Value,
    },
}

impl Wire {
    fn origin(&self) -> &str {
        match self {
            Wire::Event { origin, .. }
            | Wire::EventRef { origin, .. }
            | Wire::CloseSession { origin, .. }
            | Wire::CloseUser { origin, .. }
            | Wire::System { origin, .. } => origin,
        }
    }
}

/// The NOTIFY payload of a notice, or `None` when it cannot fit.
fn encode(origin: &str, notice: &Notice) -> Option<String> {
    let origin = origin.to_owned();
    let wire = match notice {
        Notice::Event(event) => Wire::Event {
            origin,
            event: Event::clone(event),
        },
        Notice::CloseSession {
            session_id,
            code,
            reason,
        } => Wire::CloseSession {
            origin,
            session_id: session_id.clone(),
            code: *code,
            reason: reason.clone(),
        },
        Notice::CloseUser {
            user_id,
            code,
            reason,
        } => Wire::CloseUser {
            origin,
            user_id: user_id.clone(),
            code: *code,
            reason: reason.clone(),
        },
        Notice::System { system, body } => Wire::System {
            origin,
            system: system.clone(),
            body: body.clone(),
        },
    };
    let text = serde_json::to_string(&wire).expect("notices serialise");
    if text.len() <= MAX_NOTIFY_BYTES {
        return Some(text);
    }
    match (wire, notice) {
        (Wire::Event { origin, .. }, Notice::Event(event)) => Some(
            serde_json::to_string(&Wire::EventRef {
                origin,
                topic: event.topic.clone(),
                seq: event.seq,
            })
            .expect("refs serialise"),
        ),
        _ => {
            tracing::warn!(bytes = text.len(), "notice too large to share; skipped");
            None
        }
    }
}

/// The other instances, reached through PostgreSQL NOTIFY.
pub struct PgRemote {
    pool: AnyPool,
    origin: String,
    tasks: TaskTracker,
}

impl PgRemote {
    /// `origin` is this instance's id; background sends run on `tasks`.
    pub fn new(pool: AnyPool, origin: &str, tasks: TaskTracker) -> PgRemote {
        PgRemote {
            pool,
            origin: origin.to_owned(),
            tasks,
        }
    }
}

impl Remote for PgRemote {
    fn queue<'c>(
        &'c self,
        conn: &'c mut AnyConnection,
        notice: &Notice,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
        let payload = encode(&self.origin, notice);
        Box::pin(async move {
            match payload {
                Some(payload) => store::notify(conn, CHANNEL, &payload).await,
                None => Ok(()),
            }
        })
    }

    fn queue_all<'c>(
        &'c self,
        conn: &'c mut AnyConnection,
        notices: &'c [Notice],
    ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
        let payloads: Vec<String> = notices
            .iter()
            .filter_map(|notice| encode(&self.origin, notice))
            .collect();
        Box::pin(async move { store::notify_all(conn, CHANNEL, &payloads).await })
    }

    fn send(&self, notice: Notice) -> BoxFuture<'static, ()> {
        let pool = self.pool.clone();
        let payload = encode(&self.origin, &notice);
        Box::pin(async move {
            let Some(payload) = payload else { return };
            let sent = async {
                let mut conn = pool.acquire().await?;
                store::notify(&mut conn, CHANNEL, &payload).await
            };
            if let Err(err) = sent.await {
                tracing::warn!(%err, "could not send a notice to the other instances");
            }
        })
    }

    fn send_later(&self, notice: Notice) {
        self.tasks.spawn(self.send(notice));
    }
}

/// Connects and LISTENs; returns once the listener is ready, so that nothing published
/// after start-up is missed.
pub async fn listen(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// The next notice another instance sent, or `None` once `shutdown` is cancelled. A
/// failed LISTEN connection is reconnected; unreadable notices and this instance's own
/// are skipped.
async fn next_notice(
    listener: &mut PgListener,
    origin: &str,
    shutdown: &CancellationToken,
) -> Option<Wire> {
    loop {
        let notification = tokio::select! {
            _ = shutdown.cancelled() => return None,
            n = listener.recv() => n,
        };
        let notification = match notification {
            Ok(n) => n,
            Err(err) => {
                tracing::warn!(%err, "the LISTEN connection failed; reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
        };
        match serde_json::from_str::<Wire>(notification.payload()) {
            Ok(notice) if notice.origin() == origin => {}
            Ok(notice) => return Some(notice),
            Err(err) => tracing::warn!(%err, "ignoring a malformed notification"),
        }
    }
}

/// The instance's one LISTEN loop: hands other instances' notices to the local hub (and
/// through it to the systems that registered for theirs) until `shutdown`.
pub async fn relay(
    mut listener: PgListener,
    hub: Hub,
    pool: AnyPool,
    origin: Arc<str>,
    shutdown: CancellationToken,
) {
    while let Some(notice) = next_notice(&mut listener, &origin, &shutdown).await {
        match notice {
            Wire::Event { event, .. } => hub.deliver_local(Arc::new(event)),
            Wire::EventRef { topic, seq, .. } => match store::event(&pool, &topic, seq).await {
                Ok(Some(event)) => hub.deliver_local(Arc::new(event)),
                Ok(None) => tracing::warn!(%topic, seq, "notified event is gone"),
                Err(err) => tracing::warn!(%err, "could not read a notified event"),
            },
            Wire::CloseSession {
                session_id,
                code,
                reason,
                ..
            } => hub.close_session_local(&session_id, code, &reason),
            Wire::CloseUser {
                user_id,
                code,
                reason,
                ..
            } => hub.close_user_local(&user_id, code, &reason),
            Wire::System { system, body, .. } => hub.receive_notice(&system, body).await,
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
        let small = encode("me", &Notice::Event(Arc::new(event.clone()))).unwrap();
        assert!(matches!(
            serde_json::from_str(&small).unwrap(),
            Wire::Event { .. }
        ));
        event.payload = serde_json::json!({"text": "x".repeat(9000)});
        let notice = encode("me", &Notice::Event(Arc::new(event))).unwrap();
        assert!(notice.len() <= MAX_NOTIFY_BYTES);
        assert!(matches!(
            serde_json::from_str(&notice).unwrap(),
            Wire::EventRef { seq: 3, .. }
        ));
    }

    #[test]
    fn systems_notices_carry_their_body_or_are_skipped() {
        let notice = Notice::System {
            system: "docs".into(),
            body: serde_json::json!({"stored": [["d1", 7]]}),
        };
        let wire: Wire = serde_json::from_str(&encode("me", &notice).unwrap()).unwrap();
        match wire {
            Wire::System {
                origin,
                system,
                body,
            } => {
                assert_eq!((origin.as_str(), system.as_str()), ("me", "docs"));
                assert_eq!(body["stored"][0][1], 7);
            }
            other => panic!("{other:?}"),
        }
        let huge = Notice::System {
            system: "docs".into(),
            body: serde_json::json!("x".repeat(9000)),
        };
        assert_eq!(encode("me", &huge), None);
    }
}
