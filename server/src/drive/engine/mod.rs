//! The drive's changes, each one transaction: folders, uploads and their commit, moves,
//! deletes, restores, shares. Handlers in `drive/mod.rs` call these; they hold no HTTP.
//!
//! ```text
//! mod      DriveError, Access, and what every change shares: authorisation, the folder
//!          checks, free names, undeleting a chain, the announcement of a change
//! tree     folders, moves and renames, deletes, restores
//! uploads  uploads, chunks, the commit (conflicted copies, restores), version restores
//! shares   sharing a folder and ending a share
//! ```
//!
//! Invariants:
//! - Every change takes the drive's next sequence number first (`store::next_seq`, the
//!   drive's lock), then reads and checks the tree, then writes: checks cannot race.
//! - No edit is lost: a commit on a stale base becomes a conflicted copy beside the file;
//!   a commit on a deleted file brings it (and its folders) back; a new file whose name is
//!   taken becomes a conflicted copy too, unless it has the same content.
//! - A commit is idempotent: the upload remembers what it became, and committing it again
//!   answers that.
//! - A version is committed only when every chunk of it is in the chunk store.
//! - A move never makes a folder its own ancestor; names never clash (see
//!   `meridian_shared::drive::names`).
//! - Each change is announced, in its transaction, on the `user:` topic of the owner and
//!   of everyone a folder above it is shared with (in user id order, so transactions on
//!   several drives take topic rows in one order).

use meridian_shared::drive::names::{name_key, numbered_name, NameError};
use meridian_shared::drive::{DriveChanged, NodeKind, ShareMode};
use sqlx::AnyConnection;

use super::store::{self, NodeRow, TOP};
use crate::ids::IdError;
use crate::realtime::events::Events;
use crate::AppState;

/// What a change of the drive could not do.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("no file or folder {0:?} that you may open")]
    NodeNotFound(String),
    #[error("this folder is shared with you read-only")]
    ReadOnly,
    #[error("only the drive's owner may do this")]
    OwnerOnly,
    #[error("invalid name: {0}")]
    InvalidName(#[from] NameError),
    #[error("{0:?} is already taken in that folder (names differing only in case or Unicode form clash)")]
    NameTaken(String),
    #[error("a folder cannot move into itself or its own subfolder")]
    Cycle,
    #[error("{0:?} is not a folder")]
    NotAFolder(String),
    #[error("{0:?} is not a file")]
    NotAFile(String),
    #[error("{0:?} is deleted: restore it first")]
    Deleted(String),
    #[error("the file changed since the version you deleted: fetch it first")]
    VersionChanged,
    #[error("files move only within one drive")]
    CrossDrive,
    #[error("folders nest at most {} deep", store::MAX_DEPTH)]
    TooDeep,
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    #[error("invalid device name: 1 to 64 characters, no control characters")]
    InvalidDevice,
    #[error("no upload {0:?} of yours")]
    UploadNotFound(String),
    #[error("no version {0:?} that you may open (versions past the retention rule are removed)")]
    VersionNotFound(String),
    #[error("{0} chunks of this upload are still missing")]
    MissingChunks(usize),
    #[error("chunk {0} is not in this upload's manifest")]
    NotInUpload(String),
    #[error("the chunk's bytes do not match its hash or size")]
    HashMismatch,
    #[error("invalid delta: {0}")]
    InvalidDelta(#[from] meridian_shared::drive::delta::DeltaError),
    #[error("chunk {0} is not in this upload's base version")]
    NotInBase(String),
    #[error("no account named {0:?}")]
    UnknownUser(String),
    #[error("a folder is not shared with its owner")]
    ShareWithOwner,
    #[error("{0:?} is not shared with that account")]
    ShareNotFound(String),
    #[error("this cursor is older than deletions purged from the trash: list the drive again from cursor 0")]
    CursorExpired,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Ids(#[from] IdError),
    #[error("chunk store: {0}")]
    Storage(#[from] std::io::Error),
}

/// What the caller may do with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Owner,
    Write,
    Read,
}

impl Access {
    fn may_write(self) -> Result<(), DriveError> {
        if self == Access::Read {
            Err(DriveError::ReadOnly)
        } else {
            Ok(())
        }
    }
}

mod shares;
mod tree;
mod uploads;

pub use self::shares::{share_folder, unshare_folder};
pub use self::tree::{create_folder, delete_node, move_node, restore_node};
pub use self::uploads::{
    commit_upload, create_upload, put_chunk, put_delta, restore_version, upload_status,
};

/// The node and what `user_id` may do with it; another account's node that is not
/// shared with them is "not found".
pub async fn authorize(
    conn: &mut AnyConnection,
    user_id: &str,
    node_id: &str,
) -> Result<(NodeRow, Access), DriveError> {
    let not_found = || DriveError::NodeNotFound(node_id.to_owned());
    let node = store::node(conn, node_id).await?.ok_or_else(not_found)?;
    if node.owner_id == user_id {
        return Ok((node, Access::Owner));
    }
    match store::share_mode(conn, node_id, user_id).await? {
        Some(ShareMode::Write) => Ok((node, Access::Write)),
        Some(ShareMode::Read) => Ok((node, Access::Read)),
        None => Err(not_found()),
    }
}

/// The drive a node is in, read before taking the drive's lock (owners never change).
async fn owner_of(state: &AppState, user_id: &str, node_id: &str) -> Result<String, DriveError> {
    let mut conn = state.db.pool.acquire().await?;
    Ok(authorize(&mut conn, user_id, node_id).await?.0.owner_id)
}

/// Where a new node goes: `(owner, parent_id)` after checking the folder.
async fn target_folder(
    conn: &mut AnyConnection,
    user_id: &str,
    parent_id: Option<&str>,
) -> Result<(String, String), DriveError> {
    let Some(parent_id) = parent_id else {
        return Ok((user_id.to_owned(), TOP.to_owned()));
    };
    let (parent, access) = authorize(conn, user_id, parent_id).await?;
    access.may_write()?;
    live_folder(&parent)?;
    Ok((parent.owner_id, parent.id))
}

fn live_folder(node: &NodeRow) -> Result<(), DriveError> {
    if node.kind != NodeKind::Folder {
        return Err(DriveError::NotAFolder(node.id.clone()));
    }
    if node.deleted {
        return Err(DriveError::Deleted(node.id.clone()));
    }
    Ok(())
}

/// A name free in the folder: `name`, or `name (2)`, `name (3)`, ...
async fn free_name(
    conn: &mut AnyConnection,
    owner_id: &str,
    parent_id: &str,
    name: &str,
) -> Result<String, DriveError> {
    let mut candidate = name.to_owned();
    for n in 2..1000 {
        if store::live_child(conn, owner_id, parent_id, &name_key(&candidate))
            .await?
            .is_none()
        {
            return Ok(candidate);
        }
        candidate = numbered_name(name, n);
    }
    Err(DriveError::NameTaken(name.to_owned()))
}

/// Announces a change of `owner_id`'s drive (sequence `seq`) touching `nodes`.
async fn announce(
    conn: &mut AnyConnection,
    events: &mut Events,
    owner_id: &str,
    seq: i64,
    nodes: &[&str],
    also: &[&str],
) -> Result<(), DriveError> {
    let mut users = vec![owner_id.to_owned()];
    for node in nodes {
        users.extend(store::sharers_of(conn, node).await?);
    }
    users.extend(also.iter().map(|u| (*u).to_owned()));
    users.sort();
    users.dedup();
    let payload = serde_json::to_value(DriveChanged {
        system: "drive".into(),
        drive: owner_id.to_owned(),
        seq: seq as u64,
    })
    .expect("a drive event serialises");
    for user in users {
        events
            .append(
                conn,
                &format!("user:{user}"),
                &format!("drive:{owner_id}:{seq}"),
                payload.clone(),
                None,
            )
            .await?;
    }
    Ok(())
}

/// Undeletes `node` and its deleted ancestors, top first, renaming any whose name was
/// taken meanwhile.
async fn undelete_chain(
    conn: &mut AnyConnection,
    node: &NodeRow,
    seq: i64,
    now: i64,
) -> Result<(), DriveError> {
    let chain = store::ancestry(conn, &node.id).await?;
    for id in chain.iter().rev() {
        let Some(row) = store::node(conn, id).await? else {
            continue;
        };
        if !row.deleted {
            continue;
        }
        let name = free_name(conn, &row.owner_id, &row.parent_id, &row.name).await?;
        store::place_node(
            conn,
            &row.id,
            &row.parent_id,
            &name,
            &name_key(&name),
            true,
            seq,
            now,
        )
        .await?;
    }
    Ok(())
}
