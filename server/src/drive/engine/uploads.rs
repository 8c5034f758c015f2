//! Uploads, their chunks and their commit; making an older version current.
//!
//! A small edit travels small: the manifest may come as edits of the base version's
//! chunk list (`chunk_edits`), and a missing chunk as a delta against the base version's
//! chunk that overlaps it (`signatures` asks for the bases; `put_delta` rebuilds the
//! chunk, verifies it and stores it exactly as `put_chunk` does).

use std::borrow::Cow;
use std::collections::HashSet;

use meridian_shared::drive::chunking::{
    chunk_hash, manifest_id, valid_hash, MAX_CHUNK, MAX_CHUNKS,
};
use meridian_shared::drive::delta::{self, apply_edits, Signature};
use meridian_shared::drive::names::{conflict_name, name_key, validate_name};
use meridian_shared::drive::{
    ChunkRef, CommitOutcome, Committed, DeltaBase, NewUpload, Node, NodeKind, UploadStatus,
};
use sqlx::AnyConnection;

use super::{
    announce, authorize, free_name, live_folder, owner_of, target_folder, undelete_chain,
    DriveError,
};
use crate::drive::store::{self, NewNode, NewVersion, UploadRow, TOP};
use crate::realtime::events::Events;
use crate::AppState;

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

/// Missing chunks offered as deltas per upload, at most: each costs the server a read of
/// its base chunk.
pub const MAX_DELTA_BASES: usize = 32;

/// Checks that an upload gives its manifest one way: `chunks`, or `chunk_edits` on a
/// base version of a file.
fn manifest_form(body: &NewUpload) -> Result<(), DriveError> {
    if body.chunk_edits.is_some() && !body.chunks.is_empty() {
        return Err(DriveError::InvalidManifest(
            "give `chunks` or `chunk_edits`, not both".into(),
        ));
    }
    if body.chunk_edits.is_some() && (body.node_id.is_none() || body.base_version.is_none()) {
        return Err(DriveError::InvalidManifest(
            "`chunk_edits` edit the chunks of `base_version`: give `node_id` and `base_version` too"
                .into(),
        ));
    }
    Ok(())
}

/// The chunks of `version_id` if it is a version of `node_id` (the caller may read the
/// node), read whole (retention may remove it meanwhile).
async fn base_chunks(
    conn: &mut AnyConnection,
    node_id: &str,
    version_id: &str,
) -> Result<Option<Vec<ChunkRef>>, DriveError> {
    let Some(version) = store::version(conn, version_id)
        .await?
        .filter(|v| v.node_id == node_id)
    else {
        return Ok(None);
    };
    let chunks = store::version_chunks(conn, version_id).await?;
    let whole = chunks.iter().map(|c| c.size).sum::<u64>() == version.size;
    Ok(whole.then_some(chunks))
}

/// The chunk of `base` sharing the most bytes with bytes `start..end` of the file
/// (`ends`: where each chunk of `base` ends).
fn overlapping<'a>(
    base: &'a [ChunkRef],
    ends: &[u64],
    start: u64,
    end: u64,
) -> Option<&'a ChunkRef> {
    let first = ends.partition_point(|&e| e <= start);
    (first..base.len())
        .take_while(|&i| ends[i] - base[i].size < end)
        .max_by_key(|&i| ends[i].min(end) - (ends[i] - base[i].size).max(start))
        .map(|i| &base[i])
}

/// For the first `MAX_DELTA_BASES` missing chunks, the base chunk each may be a delta
/// against, with its signature. A base chunk that cannot be read is not offered.
async fn delta_bases(
    state: &AppState,
    base: &[ChunkRef],
    chunks: &[ChunkRef],
    missing: &[String],
) -> Vec<DeltaBase> {
    let missing: HashSet<&str> = missing.iter().map(String::as_str).collect();
    let ends: Vec<u64> = base
        .iter()
        .scan(0u64, |end, chunk| {
            *end += chunk.size;
            Some(*end)
        })
        .collect();
    let mut offered = HashSet::new();
    let mut bases = Vec::new();
    let mut end = 0u64;
    for chunk in chunks {
        let start = end;
        end += chunk.size;
        if bases.len() == MAX_DELTA_BASES {
            break;
        }
        if !missing.contains(chunk.hash.as_str()) || !offered.insert(chunk.hash.as_str()) {
            continue;
        }
        let Some(over) = overlapping(base, &ends, start, end) else {
            continue;
        };
        match state.drive.chunks.get(&over.hash).await {
            Ok(data) => bases.push(DeltaBase {
                hash: chunk.hash.clone(),
                base: over.hash.clone(),
                base_size: data.len() as u64,
                signature: hex::encode(Signature::of(&data).encode()),
            }),
            Err(err) => tracing::warn!(%err, hash = %over.hash, "a base chunk cannot be read"),
        }
    }
    bases
}

/// Starts an upload: records the manifest and answers the chunks still missing (and,
/// asked for, the bases they may travel as deltas against).
pub async fn create_upload(
    state: &AppState,
    user_id: &str,
    body: &NewUpload,
) -> Result<UploadStatus, DriveError> {
    let device = valid_device(&body.device)?;
    manifest_form(body)?;
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
    let base = match (&body.node_id, &body.base_version) {
        (Some(node_id), Some(version)) if body.chunk_edits.is_some() || body.signatures => {
            match base_chunks(&mut conn, node_id, version).await? {
                None if body.chunk_edits.is_some() => {
                    return Err(DriveError::VersionNotFound(version.clone()))
                }
                found => found,
            }
        }
        _ => None,
    };
    drop(conn);
    let chunks = match (&body.chunk_edits, &base) {
        (Some(edits), Some(base)) => {
            Cow::Owned(apply_edits(base, edits).map_err(DriveError::InvalidManifest)?)
        }
        _ => Cow::Borrowed(&body.chunks),
    };
    let size = valid_manifest(&chunks)?;
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
        content_id: manifest_id(&chunks),
        committed_version: None,
        committed_node: None,
        outcome: None,
    };
    {
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        store::insert_upload(&mut tx, &upload, &chunks, state.clock.now_ms()).await?;
        tx.commit().await?;
    }
    let mut status = upload_status(state, user_id, &upload.id).await?;
    if let Some(base) = base.filter(|_| body.signatures) {
        status.bases = delta_bases(state, &base, &chunks, &status.missing).await;
    }
    Ok(status)
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
        bases: Vec::new(),
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

/// The size of chunk `hash` in an upload's manifest.
async fn size_in_upload(
    conn: &mut AnyConnection,
    upload_id: &str,
    hash: &str,
) -> Result<i64, DriveError> {
    let size = if valid_hash(hash) {
        store::upload_chunk_size(conn, upload_id, hash).await?
    } else {
        None
    };
    size.ok_or_else(|| DriveError::NotInUpload(hash.chars().take(80).collect()))
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
    let size = size_in_upload(&mut conn, upload_id, hash).await?;
    drop(conn);
    store_chunk(state, hash, size, data).await
}

/// True when `base_hash` is a chunk of the upload's base version, a version of the
/// upload's file that the caller may still read.
async fn in_base(
    conn: &mut AnyConnection,
    user_id: &str,
    upload: &UploadRow,
    base_hash: &str,
) -> Result<bool, DriveError> {
    let (Some(node_id), Some(version)) = (&upload.node_id, &upload.base_version) else {
        return Ok(false);
    };
    if !valid_hash(base_hash) {
        return Ok(false);
    }
    match authorize(conn, user_id, node_id).await {
        Ok(_) => {}
        Err(DriveError::NodeNotFound(_)) => return Ok(false),
        Err(err) => return Err(err),
    }
    Ok(base_chunks(conn, node_id, version)
        .await?
        .is_some_and(|chunks| chunks.iter().any(|c| c.hash == base_hash)))
}

/// Stores one chunk of an upload sent as a delta against `base_hash`, a chunk of the
/// upload's base version: rebuilt (at most the manifest's size for it), verified against
/// its hash, stored as `put_chunk` stores it.
pub async fn put_delta(
    state: &AppState,
    user_id: &str,
    upload_id: &str,
    hash: &str,
    base_hash: &str,
    delta: &[u8],
) -> Result<(), DriveError> {
    let mut conn = state.db.pool.acquire().await?;
    let upload = own_upload(&mut conn, user_id, upload_id).await?;
    let size = size_in_upload(&mut conn, upload_id, hash).await?;
    if !in_base(&mut conn, user_id, &upload, base_hash).await? {
        return Err(DriveError::NotInBase(base_hash.chars().take(80).collect()));
    }
    drop(conn);
    let base = match state.drive.chunks.get(base_hash).await {
        Ok(base) => base,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(DriveError::NotInBase(base_hash.to_owned()))
        }
        Err(err) => return Err(err.into()),
    };
    let data = delta::apply(&base, delta, size.clamp(0, MAX_CHUNK as i64) as usize)?;
    store_chunk(state, hash, size, data).await
}

/// Stores a chunk of an upload whose size the manifest gives, once it matches its hash.
async fn store_chunk(
    state: &AppState,
    hash: &str,
    size: i64,
    data: Vec<u8>,
) -> Result<(), DriveError> {
    if data.len() as i64 != size || chunk_hash(&data) != hash {
        return Err(DriveError::HashMismatch);
    }
    state.drive.chunks.put(hash, data.clone()).await?;
    let _turn = state.db.write_turn().await;
    let mut tx = state.db.pool.begin().await?;
    store::chunk_stored(&mut tx, hash, size, state.clock.now_ms()).await?;
    // Collection may have deleted the bytes since they were written (see
    // `store::chunk_stored`); usually they are there and this only looks.
    state.drive.chunks.put(hash, data).await?;
    tx.commit().await?;
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
            // Retention may have purged the file or removed the version since.
            let node = store::node(&mut tx, node)
                .await?
                .ok_or_else(|| DriveError::NodeNotFound(node.clone()))?;
            let version = store::version(&mut tx, version)
                .await?
                .ok_or_else(|| DriveError::VersionNotFound(version.clone()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_and_devices_are_checked() {
        let ok = ChunkRef {
            hash: chunk_hash(b"x"),
            size: 1,
        };
        assert_eq!(valid_manifest(&[ok.clone(), ok.clone()]).unwrap(), 2);
        assert_eq!(valid_manifest(&[]).unwrap(), 0);
        for bad in [
            ChunkRef {
                hash: "ABC".into(),
                size: 1,
            },
            ChunkRef {
                hash: chunk_hash(b"x").to_uppercase(),
                size: 1,
            },
            ChunkRef {
                hash: chunk_hash(b"x"),
                size: 0,
            },
            ChunkRef {
                hash: chunk_hash(b"x"),
                size: MAX_CHUNK as u64 + 1,
            },
        ] {
            assert!(matches!(
                valid_manifest(&[bad]),
                Err(DriveError::InvalidManifest(_))
            ));
        }
        assert_eq!(valid_device("  laptop ").unwrap(), "laptop");
        for bad in ["", "   ", "a\nb", &"d".repeat(65)] {
            assert!(matches!(valid_device(bad), Err(DriveError::InvalidDevice)));
        }
    }

    #[test]
    fn a_manifest_comes_one_way() {
        let upload = |chunks: Vec<ChunkRef>, edits: bool, base: bool| NewUpload {
            node_id: Some("n".into()),
            base_version: base.then(|| "v".into()),
            parent_id: None,
            name: None,
            device: "d".into(),
            chunks,
            chunk_edits: edits.then(Vec::new),
            signatures: false,
        };
        let one = vec![ChunkRef {
            hash: chunk_hash(b"x"),
            size: 1,
        }];
        assert!(manifest_form(&upload(one.clone(), false, true)).is_ok());
        assert!(manifest_form(&upload(Vec::new(), true, true)).is_ok());
        for bad in [upload(one, true, true), upload(Vec::new(), true, false)] {
            assert!(matches!(
                manifest_form(&bad),
                Err(DriveError::InvalidManifest(_))
            ));
        }
    }

    #[test]
    fn a_missing_chunk_is_offered_the_base_chunk_it_overlaps_most() {
        let chunk = |n: u8, size| ChunkRef {
            hash: chunk_hash(&[n]),
            size,
        };
        let base = vec![chunk(0, 100), chunk(1, 100), chunk(2, 100)];
        let ends = [100, 200, 300];
        let at = |start, end| overlapping(&base, &ends, start, end).map(|c| c.hash.clone());
        assert_eq!(at(0, 100), Some(base[0].hash.clone()));
        assert_eq!(at(90, 200), Some(base[1].hash.clone()));
        assert_eq!(at(150, 260), Some(base[2].hash.clone()));
        assert_eq!(at(299, 400), Some(base[2].hash.clone()));
        assert_eq!(at(300, 400), None);
        assert_eq!(overlapping(&[], &[], 0, 10), None);
    }

    #[test]
    fn outcomes_round_trip_through_their_stored_names() {
        for outcome in [
            CommitOutcome::Created,
            CommitOutcome::Updated,
            CommitOutcome::ConflictCopy,
            CommitOutcome::Restored,
            CommitOutcome::Unchanged,
        ] {
            assert_eq!(parse_outcome(outcome_name(outcome)), outcome);
        }
    }
}
