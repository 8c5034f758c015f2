//! Documents across server instances sharing one PostgreSQL: NOTIFY on one channel tells
//! the others that a document has new stored updates, new awareness states, changed
//! members, or was deleted; every instance LISTENs and passes it to its loaded room.
//!
//! Invariants:
//! - "Stored" notices are queued inside the transaction that stores the updates, so they
//!   are sent only if those commit. They carry only the seq: the receiving room reads
//!   the updates from the database, so a lost or late notice costs latency, never data
//!   (rooms also check `head_seq` every 2 s).
//! - An instance ignores its own notices.

use std::sync::Arc;

use meridian_shared::docs::Role;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;
use yrs::sync::awareness::AwarenessUpdate;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;

use super::room::{RoomMsg, Rooms};
use crate::realtime::pg::{next_notice, InstanceNotice};
use crate::realtime::store::notify;
use crate::AppState;

pub const CHANNEL: &str = "meridian_docs";
/// PostgreSQL's limit is 8000 bytes; keep a margin.
const MAX_NOTIFY_BYTES: usize = 7900;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Notice {
    /// Documents with new stored updates, each with its latest seq.
    Stored {
        origin: String,
        docs: Vec<(String, i64)>,
    },
    Awareness {
        origin: String,
        doc: String,
        /// The encoded awareness update, in hex.
        update: String,
    },
    Member {
        origin: String,
        doc: String,
        user_id: String,
        role: Option<Role>,
    },
    Deleted {
        origin: String,
        doc: String,
    },
}

impl InstanceNotice for Notice {
    fn origin(&self) -> &str {
        match self {
            Notice::Stored { origin, .. }
            | Notice::Awareness { origin, .. }
            | Notice::Member { origin, .. }
            | Notice::Deleted { origin, .. } => origin,
        }
    }
}

fn encode(notice: &Notice) -> String {
    serde_json::to_string(notice).expect("notices serialise")
}

/// Queues the notices of stored updates in the storing transaction (as few as fit).
pub async fn notify_stored(
    conn: &mut AnyConnection,
    origin: &str,
    heads: &[(&str, i64)],
) -> Result<(), sqlx::Error> {
    // A document id and seq take about 60 bytes in JSON.
    for chunk in heads.chunks(100) {
        let notice = Notice::Stored {
            origin: origin.to_owned(),
            docs: chunk
                .iter()
                .map(|(doc, seq)| ((*doc).to_owned(), *seq))
                .collect(),
        };
        notify(conn, CHANNEL, &encode(&notice)).await?;
    }
    Ok(())
}

fn send_later(state: &AppState, payload: String) {
    if payload.len() > MAX_NOTIFY_BYTES {
        tracing::warn!(
            bytes = payload.len(),
            "document notice too large to share; skipped"
        );
        return;
    }
    let pool = state.db.pool.clone();
    state.tasks.spawn(async move {
        let sent = async {
            let mut conn = pool.acquire().await?;
            notify(&mut conn, CHANNEL, &payload).await
        };
        if let Err(err) = sent.await {
            tracing::warn!(%err, "could not tell other instances about a document");
        }
    });
}

/// Shares changed awareness states with the other instances (fire and forget: awareness
/// is not durable, and clocks order it).
pub fn publish_awareness(state: &AppState, doc_id: &str, update: &AwarenessUpdate) {
    let notice = Notice::Awareness {
        origin: state.instance_id.to_string(),
        doc: doc_id.to_owned(),
        update: hex::encode(update.encode_v1()),
    };
    send_later(state, encode(&notice));
}

/// Tells the other instances that a member's role changed (`None`: removed).
pub fn publish_member(state: &AppState, doc_id: &str, user_id: &str, role: Option<Role>) {
    let notice = Notice::Member {
        origin: state.instance_id.to_string(),
        doc: doc_id.to_owned(),
        user_id: user_id.to_owned(),
        role,
    };
    send_later(state, encode(&notice));
}

pub fn publish_deleted(state: &AppState, doc_id: &str) {
    let notice = Notice::Deleted {
        origin: state.instance_id.to_string(),
        doc: doc_id.to_owned(),
    };
    send_later(state, encode(&notice));
}

pub async fn listen(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Passes other instances' notices to this instance's rooms until `shutdown`. Rooms
/// re-check `head_seq` every 2 s, so "stored" notices lost while the LISTEN connection
/// is down only delay; lost awareness is renewed by clients within 15 s.
pub async fn relay(
    mut listener: PgListener,
    rooms: Arc<Rooms>,
    origin: Arc<str>,
    shutdown: CancellationToken,
) {
    while let Some(notice) =
        next_notice::<Notice>(&mut listener, &origin, "documents", &shutdown).await
    {
        match notice {
            Notice::Stored { docs, .. } => {
                for (doc, seq) in docs {
                    rooms.tell(&doc, RoomMsg::RemoteStored { seq }).await;
                }
            }
            Notice::Awareness { doc, update, .. } => {
                let decoded = hex::decode(&update)
                    .ok()
                    .and_then(|bytes| AwarenessUpdate::decode_v1(&bytes).ok());
                match decoded {
                    Some(update) => rooms.tell(&doc, RoomMsg::RemoteAwareness { update }).await,
                    None => tracing::warn!(%doc, "undecodable awareness notice"),
                }
            }
            Notice::Member {
                doc, user_id, role, ..
            } => rooms.tell(&doc, RoomMsg::SetRole { user_id, role }).await,
            Notice::Deleted { doc, .. } => rooms.tell(&doc, RoomMsg::Deleted).await,
        }
    }
}
