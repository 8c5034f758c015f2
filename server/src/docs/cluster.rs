//! Documents across server instances sharing one PostgreSQL. Documents tell the other
//! instances that a document has new stored updates, new awareness states, changed
//! members, or was deleted, as notices of the system [`SYSTEM`] on the realtime path
//! (`realtime::Events::notify` in a transaction, `Hub::notify_others` otherwise); the
//! instance's one LISTEN loop hands them to [`relay`], which passes them to the loaded
//! room. The updates themselves stay in the documents' store, never in the topic log.
//!
//! Invariants:
//! - "Stored" notices are queued inside the transaction that stores the updates, so they
//!   are sent only if those commit. They carry only the seq: the receiving room reads
//!   the updates from the database, so a lost or late notice costs latency, never data
//!   (rooms also check `head_seq` every 2 s).
//! - On a single instance (SQLite) nothing is sent.

use std::sync::Arc;

use meridian_shared::docs::Role;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use yrs::sync::awareness::AwarenessUpdate;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;

use super::room::{RoomMsg, Rooms};
use crate::realtime::hub::Hub;
use crate::realtime::Events;

/// The name documents' notices travel under.
pub const SYSTEM: &str = "docs";
/// Documents per "stored" notice: an id and a seq take at most about 60 bytes of JSON,
/// and a notice must fit in PostgreSQL's 8000.
const DOCS_PER_NOTICE: usize = 100;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Notice {
    /// Documents with new stored updates, each with its latest seq.
    Stored {
        docs: Vec<(String, i64)>,
    },
    Awareness {
        doc: String,
        /// The encoded awareness update, in hex.
        update: String,
    },
    Member {
        doc: String,
        user_id: String,
        role: Option<Role>,
    },
    Deleted {
        doc: String,
    },
}

fn body(notice: &Notice) -> serde_json::Value {
    serde_json::to_value(notice).expect("notices serialise")
}

/// Queues the notices of stored updates in the storing transaction (as few as fit).
pub async fn notify_stored(
    events: &mut Events,
    conn: &mut AnyConnection,
    heads: &[(&str, i64)],
) -> Result<(), sqlx::Error> {
    for chunk in heads.chunks(DOCS_PER_NOTICE) {
        let notice = Notice::Stored {
            docs: chunk
                .iter()
                .map(|(doc, seq)| ((*doc).to_owned(), *seq))
                .collect(),
        };
        events.notify(conn, SYSTEM, body(&notice)).await?;
    }
    Ok(())
}

/// Shares changed awareness states with the other instances (fire and forget: awareness
/// is not durable, and clocks order it).
pub fn publish_awareness(hub: &Hub, doc_id: &str, update: &AwarenessUpdate) {
    let notice = Notice::Awareness {
        doc: doc_id.to_owned(),
        update: hex::encode(update.encode_v1()),
    };
    hub.notify_others(SYSTEM, body(&notice));
}

/// Tells the other instances that a member's role changed (`None`: removed).
pub fn publish_member(hub: &Hub, doc_id: &str, user_id: &str, role: Option<Role>) {
    let notice = Notice::Member {
        doc: doc_id.to_owned(),
        user_id: user_id.to_owned(),
        role,
    };
    hub.notify_others(SYSTEM, body(&notice));
}

pub fn publish_deleted(hub: &Hub, doc_id: &str) {
    let notice = Notice::Deleted {
        doc: doc_id.to_owned(),
    };
    hub.notify_others(SYSTEM, body(&notice));
}

/// Passes other instances' notices (from `Hub::notices(SYSTEM)`) to this instance's
/// rooms until `shutdown`. Rooms re-check `head_seq` every 2 s, so "stored" notices lost
/// while the LISTEN connection is down only delay; lost awareness is renewed by clients
/// within 15 s.
pub async fn relay(
    mut notices: mpsc::Receiver<serde_json::Value>,
    rooms: Arc<Rooms>,
    shutdown: CancellationToken,
) {
    loop {
        let body = tokio::select! {
            _ = shutdown.cancelled() => return,
            body = notices.recv() => match body {
                Some(body) => body,
                None => return,
            },
        };
        let notice = match serde_json::from_value::<Notice>(body) {
            Ok(notice) => notice,
            Err(err) => {
                tracing::warn!(%err, "ignoring a malformed document notice");
                continue;
            }
        };
        match notice {
            Notice::Stored { docs } => {
                for (doc, seq) in docs {
                    rooms.tell(&doc, RoomMsg::RemoteStored { seq }).await;
                }
            }
            Notice::Awareness { doc, update } => {
                let decoded = hex::decode(&update)
                    .ok()
                    .and_then(|bytes| AwarenessUpdate::decode_v1(&bytes).ok());
                match decoded {
                    Some(update) => rooms.tell(&doc, RoomMsg::RemoteAwareness { update }).await,
                    None => tracing::warn!(%doc, "undecodable awareness notice"),
                }
            }
            Notice::Member { doc, user_id, role } => {
                rooms.tell(&doc, RoomMsg::SetRole { user_id, role }).await
            }
            Notice::Deleted { doc } => rooms.tell(&doc, RoomMsg::Deleted).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_stored_notice_fits_in_a_notify() {
        // Ids of 32 hex digits (documents made before ids came from the generator; a
        // snowflake has at most 19 digits).
        let docs = (0..DOCS_PER_NOTICE)
            .map(|i| (format!("{i:032x}"), i64::MAX))
            .collect();
        let notice = serde_json::json!({
            "kind": "system",
            "origin": "0123456789abcdef",
            "system": SYSTEM,
            "body": body(&Notice::Stored { docs }),
        });
        assert!(
            notice.to_string().len() < 7900,
            "{}",
            notice.to_string().len()
        );
    }
}
