//! The drive's changes, each one transaction: folders, uploads and their commit, moves,
//! deletes, restores, shares. Handlers in `mod.rs` call these; they hold no HTTP.
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

use meridian_shared::drive::chunking::{
    chunk_hash, manifest_id, valid_hash, MAX_CHUNK, MAX_CHUNKS,
};
use meridian_shared::drive::names::{
    conflict_name, name_key, numbered_name, validate_name, NameError,
};
use meridian_shared::drive::{
    ChunkRef, CommitOutcome, Committed, DriveChanged, NewUpload, Node, NodeKind, ShareMode,
    UploadStatus,
};
use sqlx::AnyConnection;

use super::store::{self, NewNode, NewVersion, NodeRow, UploadRow, TOP};
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
    #[error("no version {0:?} that you may open")]
    VersionNotFound(String),
    #[error("{0} chunks of this upload are still missing")]
    MissingChunks(usize),
    #[error("chunk {0} is not in this upload's manifest")]
    NotInUpload(String),
    #[error("the chunk's bytes do not match its hash or size")]
    HashMismatch,
    #[error("no account named {0:?}")]
    UnknownUser(String),
    #[error("a folder is not shared with its owner")]
    ShareWithOwner,
    #[error("{0:?} is not shared with that account")]
    ShareNotFound(String),
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

/// Creates a folder.
pub async fn create_folder(
    state: &AppState,
    user_id: &str,
    parent_id: Option<&str>,
    name: &str,
) -> Result<Node, DriveError> {
    let name = validate_name(name)?;
    let owner = match parent_id {
        Some(p) => owner_of(state, user_id, p).await?,
        None => user_id.to_owned(),
    };
    let id = state.ids.next_id()?;
    let now = state.clock.now_ms();
    let mut events = Events::new(&state.hub);
    let node = {
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        let seq = store::next_seq(&mut tx, &owner).await?;
        let (owner, parent) = target_folder(&mut tx, user_id, parent_id).await?;
        if parent != TOP
            && store::ancestry(&mut tx, &parent).await?.len() as i64 >= store::MAX_DEPTH
        {
            return Err(DriveError::TooDeep);
        }
        let key = name_key(&name);
        if store::live_child(&mut tx, &owner, &parent, &key)
            .await?
            .is_some()
        {
            return Err(DriveError::NameTaken(name));
        }
        store::insert_node(
            &mut tx,
            NewNode {
                id: &id,
                owner_id: &owner,
                parent_id: &parent,
                name: &name,
                name_key: &key,
                kind: NodeKind::Folder,
                seq,
                now_ms: now,
            },
        )
        .await?;
        announce(&mut tx, &mut events, &owner, seq, &[&id], &[]).await?;
        let node = store::node(&mut tx, &id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        tx.commit().await?;
        node
    };
    events.deliver();
    Ok(node.into())
}

/// Renames and/or moves a node within its drive.
pub async fn move_node(
    state: &AppState,
    user_id: &str,
    node_id: &str,
    parent_id: Option<&str>,
    name: &str,
) -> Result<Node, DriveError> {
    let name = validate_name(name)?;
    let owner = owner_of(state, user_id, node_id).await?;
    let now = state.clock.now_ms();
    let mut events = Events::new(&state.hub);
    let node = {
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        let seq = store::next_seq(&mut tx, &owner).await?;
        let (node, access) = authorize(&mut tx, user_id, node_id).await?;
        access.may_write()?;
        if node.deleted {
            return Err(DriveError::Deleted(node.id));
        }
        let (new_owner, parent) = target_folder(&mut tx, user_id, parent_id).await?;
        if new_owner != node.owner_id {
            return Err(DriveError::CrossDrive);
        }
        if parent != TOP {
            let chain = store::ancestry(&mut tx, &parent).await?;
            if chain.iter().any(|id| id == &node.id) {
                return Err(DriveError::Cycle);
            }
            if chain.len() as i64 >= store::MAX_DEPTH {
                return Err(DriveError::TooDeep);
            }
        }
        let key = name_key(&name);
        if let Some(other) = store::live_child(&mut tx, &owner, &parent, &key).await? {
            if other.id != node.id {
                return Err(DriveError::NameTaken(name));
            }
        }
        // Those who saw it in its old place hear of the move too.
        let before = store::sharers_of(&mut tx, &node.id).await?;
        store::place_node(&mut tx, &node.id, &parent, &name, &key, false, seq, now).await?;
        let before: Vec<&str> = before.iter().map(String::as_str).collect();
        announce(&mut tx, &mut events, &owner, seq, &[&node.id], &before).await?;
        let node = store::node(&mut tx, node_id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        tx.commit().await?;
        node
    };
    events.deliver();
    Ok(node.into())
}

/// Deletes a node and everything under it (kept as tombstones, restorable). Deleting a
/// deleted node changes nothing. With `if_version`, a file whose current version is
/// another is not deleted (`VersionChanged`): a delete never silently beats an edit.
pub async fn delete_node(
    state: &AppState,
    user_id: &str,
    node_id: &str,
    if_version: Option<&str>,
) -> Result<(), DriveError> {
    let owner = owner_of(state, user_id, node_id).await?;
    let now = state.clock.now_ms();
    let mut events = Events::new(&state.hub);
    {
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        let seq = store::next_seq(&mut tx, &owner).await?;
        let (node, access) = authorize(&mut tx, user_id, node_id).await?;
        access.may_write()?;
        if node.deleted {
            tx.rollback().await?;
            return Ok(());
        }
        if if_version.is_some() && node.version_id.as_deref() != if_version {
            return Err(DriveError::VersionChanged);
        }
        let sharers = store::sharers_of(&mut tx, &node.id).await?;
        let mut gone = store::live_descendants(&mut tx, &node.id).await?;
        gone.push(node.id.clone());
        for id in &gone {
            store::mark_deleted(&mut tx, id, seq, now).await?;
        }
        let sharers: Vec<&str> = sharers.iter().map(String::as_str).collect();
        announce(&mut tx, &mut events, &owner, seq, &[], &sharers).await?;
        tx.commit().await?;
    }
    events.deliver();
    Ok(())
}

/// Brings back a deleted node with the folders above it (renamed `name (2)` if its name
/// was taken meanwhile); a folder brings back what was deleted with it.
pub async fn restore_node(
    state: &AppState,
    user_id: &str,
    node_id: &str,
) -> Result<Node, DriveError> {
    let owner = owner_of(state, user_id, node_id).await?;
    let now = state.clock.now_ms();
    let mut events = Events::new(&state.hub);
    let node = {
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        let seq = store::next_seq(&mut tx, &owner).await?;
        let (node, access) = authorize(&mut tx, user_id, node_id).await?;
        access.may_write()?;
        if !node.deleted {
            tx.rollback().await?;
            return Ok(node.into());
        }
        let deleted_at = node.seq;
        undelete_chain(&mut tx, &node, seq, now).await?;
        if node.kind == NodeKind::Folder {
            for id in store::deleted_descendants_at(&mut tx, &node.id, deleted_at).await? {
                store::undelete(&mut tx, &id, seq, now).await?;
            }
        }
        announce(&mut tx, &mut events, &owner, seq, &[&node.id], &[]).await?;
        let node = store::node(&mut tx, node_id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        tx.commit().await?;
        node
    };
    events.deliver();
    Ok(node.into())
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

fn valid_device(device: &str) -> Result<String, DriveError> {
    let device = device.trim();
    let chars = device.chars().count();
    if chars == 0 || chars > 64 || device.chars().any(char::is_control) {
        return Err(DriveError::InvalidDevice);
    }
    Ok(device.to_owned())
}

fn valid_manifest(chunks: &[ChunkRef]) -> Result<u64, DriveError> {
    if chunks.len() > MAX_CHUNKS {
        return Err(DriveError::InvalidManifest(format!(
            "at most {MAX_CHUNKS} chunks"
        )));
    }
    let mut size = 0u64;
    for chunk in chunks {
        if !valid_hash(&chunk.hash) {
            return Err(DriveError::InvalidManifest(format!(
                "{:?} is not a SHA-256 in lowercase hex",
                chunk.hash
            )));
        }
        if chunk.size == 0 || chunk.size > MAX_CHUNK as u64 {
            return Err(DriveError::InvalidManifest(format!(
                "a chunk has 1 to {MAX_CHUNK} bytes"
            )));
        }
        size += chunk.size;
    }
    Ok(size)
}

/// Starts an upload: records the manifest and answers the chunks still missing.
pub async fn create_upload(
    state: &AppState,
    user_id: &str,
    body: &NewUpload,
) -> Result<UploadStatus, DriveError> {
    let device = valid_device(&body.device)?;
    let size = valid_manifest(&body.chunks)?;
    let mut conn = state.db.pool.acquire().await?;
    let (owner, parent_id, name) = match &body.node_id {
        Some(node_id) => {
            let (node, access) = authorize(&mut conn, user_id, node_id).await?;
            access.may_write()?;
            if node.kind != NodeKind::File {
                return Err(DriveError::NotAFile(node.id));
            }
            (node.owner_id, node.parent_id, None)
        }
        None => {
            let name = body.name.as_deref().ok_or(DriveError::InvalidManifest(
                "give `node_id` or `name`".into(),
            ))?;
            let name = validate_name(name)?;
            let (owner, parent) =
                target_folder(&mut conn, user_id, body.parent_id.as_deref()).await?;
            (owner, parent, Some(name))
        }
    };
    drop(conn);
    let upload = UploadRow {
        id: state.ids.next_id()?,
        user_id: user_id.to_owned(),
        owner_id: owner,
        node_id: body.node_id.clone(),
        base_version: body.base_version.clone(),
        parent_id,
        name,
        device,
        size: size as i64,
        content_id: manifest_id(&body.chunks),
        committed_version: None,
        committed_node: None,
        outcome: None,
    };
    {
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        store::insert_upload(&mut tx, &upload, &body.chunks, state.clock.now_ms()).await?;
        tx.commit().await?;
    }
    upload_status(state, user_id, &upload.id).await
}

/// The chunks an upload still lacks (to resume it).
pub async fn upload_status(
    state: &AppState,
    user_id: &str,
    upload_id: &str,
) -> Result<UploadStatus, DriveError> {
    let mut conn = state.db.pool.acquire().await?;
    let upload = own_upload(&mut conn, user_id, upload_id).await?;
    Ok(UploadStatus {
        missing: store::missing_chunks(&mut conn, upload_id).await?,
        upload_id: upload.id,
        size: upload.size.max(0) as u64,
    })
}

async fn own_upload(
    conn: &mut AnyConnection,
    user_id: &str,
    upload_id: &str,
) -> Result<UploadRow, DriveError> {
    store::upload(conn, upload_id)
        .await?
        .filter(|u| u.user_id == user_id)
        .ok_or_else(|| DriveError::UploadNotFound(upload_id.to_owned()))
}

/// Stores one chunk of an upload after checking it against the manifest and its hash.
pub async fn put_chunk(
    state: &AppState,
    user_id: &str,
    upload_id: &str,
    hash: &str,
    data: Vec<u8>,
) -> Result<(), DriveError> {
    let mut conn = state.db.pool.acquire().await?;
    own_upload(&mut conn, user_id, upload_id).await?;
    let size = if valid_hash(hash) {
        store::upload_chunk_size(&mut conn, upload_id, hash).await?
    } else {
        None
    };
    let Some(size) = size else {
        return Err(DriveError::NotInUpload(hash.chars().take(80).collect()));
    };
    drop(conn);
    if data.len() as i64 != size || chunk_hash(&data) != hash {
        return Err(DriveError::HashMismatch);
    }
    state.drive.chunks.put(hash, data).await?;
    let _turn = state.db.write_turn().await;
    let mut conn = state.db.pool.acquire().await?;
    store::chunk_stored(&mut conn, hash, size, state.clock.now_ms()).await?;
    Ok(())
}

fn outcome_name(outcome: CommitOutcome) -> &'static str {
    match outcome {
        CommitOutcome::Created => "created",
        CommitOutcome::Updated => "updated",
        CommitOutcome::ConflictCopy => "conflict_copy",
        CommitOutcome::Restored => "restored",
        CommitOutcome::Unchanged => "unchanged",
    }
}

fn parse_outcome(text: &str) -> CommitOutcome {
    match text {
        "created" => CommitOutcome::Created,
        "updated" => CommitOutcome::Updated,
        "conflict_copy" => CommitOutcome::ConflictCopy,
        "restored" => CommitOutcome::Restored,
        _ => CommitOutcome::Unchanged,
    }
}

/// Inserts the conflicted copy of `name` that an upload becomes; answers its id.
async fn insert_conflict_copy(
    conn: &mut AnyConnection,
    up: &UploadRow,
    parent_id: &str,
    name: &str,
    id: &str,
    seq: i64,
    now: i64,
) -> Result<String, DriveError> {
    let wanted = conflict_name(name, &up.device, now);
    let name = free_name(conn, &up.owner_id, parent_id, &wanted).await?;
    store::insert_node(
        conn,
        NewNode {
            id,
            owner_id: &up.owner_id,
            parent_id,
            name: &name,
            name_key: &name_key(&name),
            kind: NodeKind::File,
            seq,
            now_ms: now,
        },
    )
    .await?;
    Ok(id.to_owned())
}

/// Makes an upload a version (see the module's invariants for where it lands).
pub async fn commit_upload(
    state: &AppState,
    user_id: &str,
    upload_id: &str,
) -> Result<Committed, DriveError> {
    let owner = {
        let mut conn = state.db.pool.acquire().await?;
        own_upload(&mut conn, user_id, upload_id).await?.owner_id
    };
    let version_id = state.ids.next_id()?;
    let conflict_id = state.ids.next_id()?;
    let now = state.clock.now_ms();
    let mut events = Events::new(&state.hub);
    let committed = {
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        let seq = store::next_seq(&mut tx, &owner).await?;
        let up = own_upload(&mut tx, user_id, upload_id).await?;
        if let (Some(version), Some(node), Some(outcome)) =
            (&up.committed_version, &up.committed_node, &up.outcome)
        {
            let node = store::node(&mut tx, node)
                .await?
                .ok_or(sqlx::Error::RowNotFound)?;
            let version = store::version(&mut tx, version)
                .await?
                .ok_or(sqlx::Error::RowNotFound)?;
            tx.rollback().await?;
            return Ok(Committed {
                outcome: parse_outcome(outcome),
                node: node.into(),
                version,
            });
        }
        let missing = store::missing_chunks(&mut tx, upload_id).await?;
        if !missing.is_empty() {
            return Err(DriveError::MissingChunks(missing.len()));
        }
        let (node_id, base, outcome) = match &up.node_id {
            Some(node_id) => {
                let (node, access) = authorize(&mut tx, user_id, node_id).await?;
                access.may_write()?;
                if node.deleted {
                    undelete_chain(&mut tx, &node, seq, now).await?;
                    (node.id, node.version_id, CommitOutcome::Restored)
                } else if node.content_id.as_deref() == Some(up.content_id.as_str()) {
                    (node.id, node.version_id, CommitOutcome::Unchanged)
                } else if node.version_id == up.base_version {
                    (node.id, node.version_id, CommitOutcome::Updated)
                } else {
                    let id = insert_conflict_copy(
                        &mut tx,
                        &up,
                        &node.parent_id,
                        &node.name,
                        &conflict_id,
                        seq,
                        now,
                    )
                    .await?;
                    (id, up.base_version.clone(), CommitOutcome::ConflictCopy)
                }
            }
            None => {
                let name = up.name.clone().unwrap_or_default();
                if up.parent_id != TOP {
                    let (parent, access) = authorize(&mut tx, user_id, &up.parent_id).await?;
                    access.may_write()?;
                    live_folder(&parent)?;
                }
                match store::live_child(&mut tx, &owner, &up.parent_id, &name_key(&name)).await? {
                    Some(existing)
                        if existing.kind == NodeKind::File
                            && existing.content_id.as_deref() == Some(up.content_id.as_str()) =>
                    {
                        (existing.id, existing.version_id, CommitOutcome::Unchanged)
                    }
                    Some(_) => {
                        let id = insert_conflict_copy(
                            &mut tx,
                            &up,
                            &up.parent_id,
                            &name,
                            &conflict_id,
                            seq,
                            now,
                        )
                        .await?;
                        (id, None, CommitOutcome::ConflictCopy)
                    }
                    None => {
                        store::insert_node(
                            &mut tx,
                            NewNode {
                                id: &conflict_id,
                                owner_id: &owner,
                                parent_id: &up.parent_id,
                                name: &name,
                                name_key: &name_key(&name),
                                kind: NodeKind::File,
                                seq,
                                now_ms: now,
                            },
                        )
                        .await?;
                        (conflict_id.clone(), None, CommitOutcome::Created)
                    }
                }
            }
        };
        let version = match (&base, outcome) {
            (Some(current), CommitOutcome::Unchanged) => current.clone(),
            _ => {
                store::insert_version(
                    &mut tx,
                    NewVersion {
                        id: &version_id,
                        node_id: &node_id,
                        base_version: base.as_deref(),
                        size: up.size,
                        content_id: &up.content_id,
                        device: &up.device,
                        created_by: user_id,
                        upload_id,
                        seq,
                        now_ms: now,
                    },
                )
                .await?;
                version_id.clone()
            }
        };
        store::mark_committed(
            &mut tx,
            upload_id,
            &version,
            &node_id,
            outcome_name(outcome),
        )
        .await?;
        let node = store::node(&mut tx, &node_id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        let version = store::version(&mut tx, &version)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        if outcome == CommitOutcome::Unchanged {
            tx.commit().await?;
        } else {
            announce(&mut tx, &mut events, &owner, seq, &[&node_id], &[]).await?;
            tx.commit().await?;
        }
        Committed {
            outcome,
            node: node.into(),
            version,
        }
    };
    events.deliver();
    Ok(committed)
}

/// Makes an older version of a file its current one (as a new change; history stays).
pub async fn restore_version(
    state: &AppState,
    user_id: &str,
    version_id: &str,
) -> Result<Node, DriveError> {
    let node_id = {
        let mut conn = state.db.pool.acquire().await?;
        store::version(&mut conn, version_id)
            .await?
            .ok_or_else(|| DriveError::VersionNotFound(version_id.to_owned()))?
            .node_id
    };
    let owner = owner_of(state, user_id, &node_id)
        .await
        .map_err(|e| match e {
            DriveError::NodeNotFound(_) => DriveError::VersionNotFound(version_id.to_owned()),
            other => other,
        })?;
    let now = state.clock.now_ms();
    let mut events = Events::new(&state.hub);
    let node = {
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        let seq = store::next_seq(&mut tx, &owner).await?;
        let (node, access) = authorize(&mut tx, user_id, &node_id).await?;
        access.may_write()?;
        let version = store::version(&mut tx, version_id)
            .await?
            .ok_or_else(|| DriveError::VersionNotFound(version_id.to_owned()))?;
        if node.deleted {
            undelete_chain(&mut tx, &node, seq, now).await?;
        }
        store::set_current_version(
            &mut tx,
            &node.id,
            &version.id,
            version.size as i64,
            &version.content_id,
            seq,
            now,
        )
        .await?;
        announce(&mut tx, &mut events, &owner, seq, &[&node.id], &[]).await?;
        let node = store::node(&mut tx, &node_id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        tx.commit().await?;
        node
    };
    events.deliver();
    Ok(node.into())
}

/// Shares a folder (owner only) with an account, read-only or read-write.
pub async fn share_folder(
    state: &AppState,
    user_id: &str,
    folder_id: &str,
    username: &str,
    mode: ShareMode,
) -> Result<(), DriveError> {
    let key = crate::auth::password::username_key(username.trim());
    let member = crate::auth::store::user_by_username_key(&state.db.pool, &key)
        .await?
        .map(|row| row.user)
        .ok_or_else(|| DriveError::UnknownUser(username.trim().to_owned()))?;
    let now = state.clock.now_ms();
    let mut events = Events::new(&state.hub);
    {
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        let seq = store::next_seq(&mut tx, user_id).await?;
        let (folder, access) = authorize(&mut tx, user_id, folder_id).await?;
        if access != Access::Owner {
            return Err(DriveError::OwnerOnly);
        }
        live_folder(&folder)?;
        if member.id == user_id {
            return Err(DriveError::ShareWithOwner);
        }
        store::upsert_share(&mut tx, folder_id, &member.id, mode, now).await?;
        announce(&mut tx, &mut events, user_id, seq, &[folder_id], &[]).await?;
        tx.commit().await?;
    }
    events.deliver();
    Ok(())
}

/// Ends a share (the owner, or the account it was shared with leaving).
pub async fn unshare_folder(
    state: &AppState,
    user_id: &str,
    folder_id: &str,
    member_id: &str,
) -> Result<(), DriveError> {
    let owner = owner_of(state, user_id, folder_id).await?;
    if owner != user_id && member_id != user_id {
        return Err(DriveError::OwnerOnly);
    }
    let mut events = Events::new(&state.hub);
    {
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        let seq = store::next_seq(&mut tx, &owner).await?;
        if !store::remove_share(&mut tx, folder_id, member_id).await? {
            return Err(DriveError::ShareNotFound(folder_id.to_owned()));
        }
        announce(
            &mut tx,
            &mut events,
            &owner,
            seq,
            &[folder_id],
            &[member_id],
        )
        .await?;
        tx.commit().await?;
    }
    events.deliver();
    Ok(())
}
