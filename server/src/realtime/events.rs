//! The one way a system publishes: [`Events`] appends events to topics inside the
//! system's own transaction and delivers them once it has committed.
//!
//! ```text
//! let mut events = Events::new(&hub);
//! events.append(&mut tx, topic, op_id, payload, session_id).await?;
//! tx.commit().await?;
//! events.deliver();
//! ```
//!
//! Invariants:
//! - Durable before visible: an event is stored, and on PostgreSQL its NOTIFY queued, in
//!   the caller's transaction; nobody sees it before that commits (a rolled-back batch is
//!   simply dropped).
//! - Ordered topics: `append` first takes the topic's next sequence number, which locks
//!   the topic row until the transaction ends, so writers to one topic commit in
//!   sequence order on every instance; the hub puts their deliveries back in that order.
//!   No lock of this process is taken.
//! - Idempotent ops: `(topic, op_id)` is unique; appending an op the topic already has
//!   stores nothing and answers the original sequence number.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use meridian_shared::realtime::Event;
use sqlx::AnyConnection;

use super::hub::{Hub, Notice};
use super::store;
use crate::db::Db;

/// The outcome of appending one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub seq: u64,
    /// The op had been applied before; nothing was stored or sent this time.
    pub duplicate: bool,
}

/// One event for [`Events::append_all`].
pub struct Append {
    pub topic: String,
    pub op_id: String,
    pub payload: serde_json::Value,
    pub session_id: Option<String>,
}

/// Events appended in one transaction, to be delivered after it commits.
#[must_use = "deliver the events once the transaction has committed"]
pub struct Events {
    hub: Hub,
    appended: Vec<Arc<Event>>,
}

impl Events {
    pub fn new(hub: &Hub) -> Events {
        Events {
            hub: hub.clone(),
            appended: Vec::new(),
        }
    }

    /// Appends an event to `topic` in the transaction on `conn` (see the module's
    /// invariants). A transaction that writes should start with its first write; the
    /// caller's own rows may come before or after this.
    pub async fn append(
        &mut self,
        conn: &mut AnyConnection,
        topic: &str,
        op_id: &str,
        payload: serde_json::Value,
        session_id: Option<&str>,
    ) -> Result<Published, sqlx::Error> {
        let seq = store::next_seq(conn, topic).await?;
        let payload_json = json_text(&payload);
        let event = Event {
            topic: topic.to_owned(),
            seq,
            op_id: op_id.to_owned(),
            payload,
            at_ms: self.hub.clock().now_ms(),
        };
        if !store::insert_event(conn, &event, &payload_json, session_id).await? {
            store::undo_next_seq(conn, topic).await?;
            let original = store::seq_of_op(conn, topic, op_id)
                .await?
                .ok_or(sqlx::Error::RowNotFound)?;
            return Ok(Published {
                seq: original,
                duplicate: true,
            });
        }
        let event = Arc::new(event);
        if let Some(remote) = self.hub.remote() {
            remote.queue(conn, &Notice::Event(event.clone())).await?;
        }
        self.appended.push(event);
        Ok(Published {
            seq,
            duplicate: false,
        })
    }

    /// Appends many events in the transaction on `conn`, in few statements: the same
    /// invariants as [`Events::append`], each append's outcome in the order given. Their
    /// topics are locked in descending order (a caller that also locks its own rows in
    /// a fixed order keeps one order across transactions).
    pub async fn append_all(
        &mut self,
        conn: &mut AnyConnection,
        appends: Vec<Append>,
    ) -> Result<Vec<Published>, sqlx::Error> {
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for append in &appends {
            *counts.entry(&append.topic).or_default() += 1;
        }
        let descending: Vec<(&str, u64)> = counts.iter().rev().map(|(t, n)| (*t, *n)).collect();
        // The next number each topic hands out.
        let mut next: HashMap<String, u64> = store::take_seqs(conn, &descending)
            .await?
            .into_iter()
            .map(|(topic, head)| {
                let count = counts.get(topic.as_str()).copied().unwrap_or(0);
                (topic, head + 1 - count)
            })
            .collect();
        let wanted: Vec<(&str, &str)> = appends
            .iter()
            .map(|a| (a.topic.as_str(), a.op_id.as_str()))
            .collect();
        let mut applied: HashMap<(String, String), u64> = store::seqs_of_ops(conn, &wanted)
            .await?
            .into_iter()
            .map(|(topic, op_id, seq)| ((topic, op_id), seq))
            .collect();
        let at_ms = self.hub.clock().now_ms();
        let mut outcomes = Vec::with_capacity(appends.len());
        let mut new_events = Vec::new();
        let mut unused: BTreeMap<String, u64> = BTreeMap::new();
        for append in appends {
            let key = (append.topic, append.op_id);
            if let Some(&seq) = applied.get(&key) {
                *unused.entry(key.0).or_default() += 1;
                outcomes.push(Published {
                    seq,
                    duplicate: true,
                });
                continue;
            }
            let slot = next.get_mut(&key.0).ok_or(sqlx::Error::RowNotFound)?;
            let seq = *slot;
            *slot += 1;
            applied.insert(key.clone(), seq);
            let payload_json = json_text(&append.payload);
            let event = Event {
                topic: key.0,
                seq,
                op_id: key.1,
                payload: append.payload,
                at_ms,
            };
            new_events.push((Arc::new(event), payload_json, append.session_id));
            outcomes.push(Published {
                seq,
                duplicate: false,
            });
        }
        // Duplicates took numbers from the end of their topic's range; give them back.
        for (topic, count) in &unused {
            store::give_back_seqs(conn, topic, *count).await?;
        }
        let rows: Vec<(&Event, &str, Option<&str>)> = new_events
            .iter()
            .map(|(event, json, session)| (&**event, json.as_str(), session.as_deref()))
            .collect();
        store::insert_events(conn, &rows).await?;
        if let Some(remote) = self.hub.remote() {
            let notices: Vec<Notice> = new_events
                .iter()
                .map(|(event, _, _)| Notice::Event(event.clone()))
                .collect();
            remote.queue_all(conn, &notices).await?;
        }
        self.appended
            .extend(new_events.into_iter().map(|(event, _, _)| event));
        Ok(outcomes)
    }

    /// Queues a notice for `system` on the other instances (see `Hub::notices`) in the
    /// transaction on `conn`: sent if it commits. Nothing on a single instance.
    pub async fn notify(
        &mut self,
        conn: &mut AnyConnection,
        system: &str,
        body: serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        let Some(remote) = self.hub.remote() else {
            return Ok(());
        };
        let notice = Notice::System {
            system: system.to_owned(),
            body,
        };
        remote.queue(conn, &notice).await
    }

    /// Hands the appended events to this instance's subscribers (other instances get
    /// them by NOTIFY). Call once the transaction has committed.
    pub fn deliver(self) {
        for event in self.appended {
            self.hub.deliver_local(event);
        }
    }

    /// Appends one event in a transaction of its own and delivers it: for a system with
    /// nothing else to write.
    pub async fn publish(
        db: &Db,
        hub: &Hub,
        topic: &str,
        op_id: &str,
        payload: serde_json::Value,
        session_id: Option<&str>,
    ) -> Result<Published, sqlx::Error> {
        let mut events = Events::new(hub);
        let published = {
            let _turn = db.write_turn().await;
            let mut tx = db.pool.begin().await?;
            let published = events
                .append(&mut tx, topic, op_id, payload, session_id)
                .await?;
            if published.duplicate {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
            }
            published
        };
        events.deliver();
        Ok(published)
    }
}

/// A payload as JSON text for the topic log. `serde_json::to_string` writes into a
/// buffer; `Value`'s `Display` (`.to_string()`) goes through a formatter for every token:
/// 2.2–2.8× as long on a cart-sized payload (a 20-line cart view, about 3 µs against 7).
fn json_text(payload: &serde_json::Value) -> String {
    serde_json::to_string(payload).expect("a JSON value serialises")
}
