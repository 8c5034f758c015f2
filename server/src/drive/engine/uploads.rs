//! Uploads, their chunks and their commit; making an older version current.

use meridian_shared::drive::chunking::{
    chunk_hash, manifest_id, valid_hash, MAX_CHUNK, MAX_CHUNKS,
};
use meridian_shared::drive::names::{conflict_name, name_key, validate_name};
use meridian_shared::drive::{
    ChunkRef, CommitOutcome, Committed, NewUpload, Node, NodeKind, UploadStatus,
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
