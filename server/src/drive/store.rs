//! SQL of the drive: heads, nodes, versions and their chunks, uploads, shares.
//!
//! Invariants:
//! - `drive_heads.seq` numbers a drive's changes densely; [`next_seq`] is an
//!   `UPDATE ... RETURNING` on the drive's row, so it is the drive's lock until the
//!   transaction ends (on PostgreSQL; SQLite has one writer anyway): tree checks (cycles,
//!   name clashes) made after it cannot race another change of the same drive.
//! - At most one live node per `(owner, parent, name_key)` (a unique partial index).
//! - A version's chunks are all in `drive_chunks` (and so in the chunk store), and none
//!   of them dying, before the version is inserted.
//! - A row of `drive_chunks` has its bytes in the chunk store (see `retention` for how
//!   chunks are collected without breaking this).

use meridian_shared::drive::{ChunkRef, Node, NodeKind, ShareMode, VersionInfo};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// How deep a tree may be: bounds every walk up or down it.
pub const MAX_DEPTH: i64 = 256;

/// `parent_id` of a node at the top of its drive.
pub const TOP: &str = "";

/// A node's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub id: String,
    pub owner_id: String,
    pub parent_id: String,
    pub name: String,
    pub kind: NodeKind,
    pub deleted: bool,
    pub version_id: Option<String>,
    pub size: i64,
    pub content_id: Option<String>,
    pub seq: i64,
    pub updated_ms: i64,
}

impl From<NodeRow> for Node {
    fn from(row: NodeRow) -> Node {
        Node {
            id: row.id,
            parent_id: (row.parent_id != TOP).then_some(row.parent_id),
            name: row.name,
            kind: row.kind,
            owner_id: row.owner_id,
            deleted: row.deleted,
            version_id: row.version_id,
            size: row.size.max(0) as u64,
            content_id: row.content_id,
            seq: row.seq.max(0) as u64,
            updated_ms: row.updated_ms,
        }
    }
}

const NODE_COLUMNS: &str = "n.id, n.owner_id, n.parent_id, n.name, n.kind, n.deleted, \
     n.version_id, n.size, n.content_id, n.seq, n.updated_ms";

fn node_row(row: &AnyRow) -> Result<NodeRow, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    Ok(NodeRow {
        id: row.try_get("id")?,
        owner_id: row.try_get("owner_id")?,
        parent_id: row.try_get("parent_id")?,
        name: row.try_get("name")?,
        kind: NodeKind::parse(&kind).ok_or_else(|| decode_error(format!("kind {kind:?}")))?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        version_id: row.try_get("version_id")?,
        size: row.try_get("size")?,
        content_id: row.try_get("content_id")?,
        seq: row.try_get("seq")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

fn decode_error(what: String) -> sqlx::Error {
    sqlx::Error::Decode(what.into())
}

/// Takes the drive's next sequence number (and with it the drive's row lock).
pub async fn next_seq(conn: &mut AnyConnection, owner_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO drive_heads (owner_id, seq) VALUES ($1, 0) ON CONFLICT (owner_id) DO NOTHING",
    )
    .bind(owner_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query_scalar("UPDATE drive_heads SET seq = seq + 1 WHERE owner_id = $1 RETURNING seq")
        .bind(owner_id)
        .fetch_one(&mut *conn)
        .await
}

/// The drive's current sequence number (0 for a drive never changed).
pub async fn head(conn: &mut AnyConnection, owner_id: &str) -> Result<i64, sqlx::Error> {
    Ok(
        sqlx::query_scalar("SELECT seq FROM drive_heads WHERE owner_id = $1")
            .bind(owner_id)
            .fetch_optional(conn)
            .await?
            .unwrap_or(0),
    )
}

/// The newest change of the drive whose tombstones were purged (0 if none): a change
/// feed cursor older than it missed deletions (see `retention`).
pub async fn purged_seq(conn: &mut AnyConnection, owner_id: &str) -> Result<i64, sqlx::Error> {
    Ok(
        sqlx::query_scalar("SELECT purged_seq FROM drive_heads WHERE owner_id = $1")
            .bind(owner_id)
            .fetch_optional(conn)
            .await?
            .unwrap_or(0),
    )
}

pub async fn node(conn: &mut AnyConnection, id: &str) -> Result<Option<NodeRow>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {NODE_COLUMNS} FROM drive_nodes n WHERE n.id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(node_row).transpose()
}

/// The live node named like `name_key` in a folder, if any.
pub async fn live_child(
    conn: &mut AnyConnection,
    owner_id: &str,
    parent_id: &str,
    name_key: &str,
) -> Result<Option<NodeRow>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {NODE_COLUMNS} FROM drive_nodes n \
         WHERE n.owner_id = $1 AND n.parent_id = $2 AND n.name_key = $3 AND n.deleted = 0"
    ))
    .bind(owner_id)
    .bind(parent_id)
    .bind(name_key)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(node_row).transpose()
}

/// A folder's children (live only, or deleted too), folders first, by name.
pub async fn children(
    conn: &mut AnyConnection,
    owner_id: &str,
    parent_id: &str,
    include_deleted: bool,
) -> Result<Vec<NodeRow>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {NODE_COLUMNS} FROM drive_nodes n \
         WHERE n.owner_id = $1 AND n.parent_id = $2 AND (n.deleted = 0 OR $3 = 1) \
         ORDER BY n.kind DESC, n.name_key, n.id"
    ))
    .bind(owner_id)
    .bind(parent_id)
    .bind(i64::from(include_deleted))
    .fetch_all(conn)
    .await?;
    rows.iter().map(node_row).collect()
}

/// Nodes of a drive changed after `since`, in change order, at most `limit`.
pub async fn changes(
    conn: &mut AnyConnection,
    owner_id: &str,
    since: i64,
    limit: i64,
) -> Result<Vec<NodeRow>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {NODE_COLUMNS} FROM drive_nodes n WHERE n.owner_id = $1 AND n.seq > $2 \
         ORDER BY n.seq, n.id LIMIT $3"
    ))
    .bind(owner_id)
    .bind(since)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(node_row).collect()
}

/// The ids of `id` and its ancestors, nearest first (at most [`MAX_DEPTH`] + 1).
pub async fn ancestry(conn: &mut AnyConnection, id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH RECURSIVE chain (id, parent_id, depth) AS ( \
             SELECT id, parent_id, 0 FROM drive_nodes WHERE id = $1 \
             UNION ALL \
             SELECT n.id, n.parent_id, c.depth + 1 FROM drive_nodes n \
             JOIN chain c ON n.id = c.parent_id WHERE c.depth < $2) \
         SELECT id FROM chain ORDER BY depth",
    )
    .bind(id)
    .bind(MAX_DEPTH)
    .fetch_all(conn)
    .await
}

/// The best share `user_id` holds on `id` or one of its ancestors.
pub async fn share_mode(
    conn: &mut AnyConnection,
    id: &str,
    user_id: &str,
) -> Result<Option<ShareMode>, sqlx::Error> {
    let modes: Vec<String> = sqlx::query_scalar(
        "WITH RECURSIVE chain (id, parent_id, depth) AS ( \
             SELECT id, parent_id, 0 FROM drive_nodes WHERE id = $1 \
             UNION ALL \
             SELECT n.id, n.parent_id, c.depth + 1 FROM drive_nodes n \
             JOIN chain c ON n.id = c.parent_id WHERE c.depth < $3) \
         SELECT s.mode FROM drive_shares s JOIN chain c ON s.folder_id = c.id \
         WHERE s.user_id = $2",
    )
    .bind(id)
    .bind(user_id)
    .bind(MAX_DEPTH)
    .fetch_all(conn)
    .await?;
    let modes: Vec<ShareMode> = modes.iter().filter_map(|m| ShareMode::parse(m)).collect();
    Ok(if modes.contains(&ShareMode::Write) {
        Some(ShareMode::Write)
    } else {
        modes.first().copied()
    })
}

/// Everyone who sees `id` through a share of it or of an ancestor.
pub async fn sharers_of(conn: &mut AnyConnection, id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH RECURSIVE chain (id, parent_id, depth) AS ( \
             SELECT id, parent_id, 0 FROM drive_nodes WHERE id = $1 \
             UNION ALL \
             SELECT n.id, n.parent_id, c.depth + 1 FROM drive_nodes n \
             JOIN chain c ON n.id = c.parent_id WHERE c.depth < $2) \
         SELECT DISTINCT s.user_id FROM drive_shares s JOIN chain c ON s.folder_id = c.id",
    )
    .bind(id)
    .bind(MAX_DEPTH)
    .fetch_all(conn)
    .await
}

/// The live descendants of a folder (not the folder), at most [`MAX_DEPTH`] deep.
pub async fn live_descendants(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH RECURSIVE down (id, depth) AS ( \
             SELECT id, 1 FROM drive_nodes WHERE parent_id = $1 AND deleted = 0 \
             UNION ALL \
             SELECT n.id, d.depth + 1 FROM drive_nodes n JOIN down d ON n.parent_id = d.id \
             WHERE n.deleted = 0 AND d.depth < $2) \
         SELECT id FROM down",
    )
    .bind(id)
    .bind(MAX_DEPTH)
    .fetch_all(conn)
    .await
}

/// The deleted descendants of a folder that were deleted by the change `seq`.
pub async fn deleted_descendants_at(
    conn: &mut AnyConnection,
    id: &str,
    seq: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH RECURSIVE down (id, depth) AS ( \
             SELECT id, 1 FROM drive_nodes WHERE parent_id = $1 AND deleted = 1 AND seq = $2 \
             UNION ALL \
             SELECT n.id, d.depth + 1 FROM drive_nodes n JOIN down d ON n.parent_id = d.id \
             WHERE n.deleted = 1 AND n.seq = $2 AND d.depth < $3) \
         SELECT id FROM down",
    )
    .bind(id)
    .bind(seq)
    .bind(MAX_DEPTH)
    .fetch_all(conn)
    .await
}

pub async fn undelete(
    conn: &mut AnyConnection,
    id: &str,
    seq: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE drive_nodes SET deleted = 0, seq = $2, updated_ms = $3 WHERE id = $1")
        .bind(id)
        .bind(seq)
        .bind(now_ms)
        .execute(conn)
        .await?;
    Ok(())
}

/// A new node, to insert.
pub struct NewNode<'a> {
    pub id: &'a str,
    pub owner_id: &'a str,
    pub parent_id: &'a str,
    pub name: &'a str,
    pub name_key: &'a str,
    pub kind: NodeKind,
    pub seq: i64,
    pub now_ms: i64,
}

pub async fn insert_node(conn: &mut AnyConnection, node: NewNode<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO drive_nodes (id, owner_id, parent_id, name, name_key, kind, deleted, \
         version_id, size, content_id, seq, created_ms, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, NULL, 0, NULL, $7, $8, $8)",
    )
    .bind(node.id)
    .bind(node.owner_id)
    .bind(node.parent_id)
    .bind(node.name)
    .bind(node.name_key)
    .bind(node.kind.as_str())
    .bind(node.seq)
    .bind(node.now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves and/or renames a node (and undeletes it when `undelete`).
#[allow(clippy::too_many_arguments)]
pub async fn place_node(
    conn: &mut AnyConnection,
    id: &str,
    parent_id: &str,
    name: &str,
    name_key: &str,
    undelete: bool,
    seq: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE drive_nodes SET parent_id = $2, name = $3, name_key = $4, \
         deleted = CASE WHEN $5 = 1 THEN 0 ELSE deleted END, seq = $6, updated_ms = $7 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(parent_id)
    .bind(name)
    .bind(name_key)
    .bind(i64::from(undelete))
    .bind(seq)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_deleted(
    conn: &mut AnyConnection,
    id: &str,
    seq: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE drive_nodes SET deleted = 1, seq = $2, updated_ms = $3 WHERE id = $1")
        .bind(id)
        .bind(seq)
        .bind(now_ms)
        .execute(conn)
        .await?;
    Ok(())
}

/// A new version of a file, to insert (its chunks are copied from the upload).
pub struct NewVersion<'a> {
    pub id: &'a str,
    pub node_id: &'a str,
    pub base_version: Option<&'a str>,
    pub size: i64,
    pub content_id: &'a str,
    pub device: &'a str,
    pub created_by: &'a str,
    pub upload_id: &'a str,
    pub seq: i64,
    pub now_ms: i64,
}

/// Inserts the version, its chunk list, and makes it the node's current version.
pub async fn insert_version(
    conn: &mut AnyConnection,
    v: NewVersion<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO drive_versions (id, node_id, base_version, size, content_id, device, \
         created_by, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(v.id)
    .bind(v.node_id)
    .bind(v.base_version)
    .bind(v.size)
    .bind(v.content_id)
    .bind(v.device)
    .bind(v.created_by)
    .bind(v.now_ms)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO drive_version_chunks (version_id, idx, hash, size) \
         SELECT $1, idx, hash, size FROM drive_upload_chunks WHERE upload_id = $2",
    )
    .bind(v.id)
    .bind(v.upload_id)
    .execute(&mut *conn)
    .await?;
    set_current_version(conn, v.node_id, v.id, v.size, v.content_id, v.seq, v.now_ms).await
}

/// Points a file at one of its versions (a new one, or an older one restored).
pub async fn set_current_version(
    conn: &mut AnyConnection,
    node_id: &str,
    version_id: &str,
    size: i64,
    content_id: &str,
    seq: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE drive_nodes SET version_id = $2, size = $3, content_id = $4, seq = $5, \
         updated_ms = $6 WHERE id = $1",
    )
    .bind(node_id)
    .bind(version_id)
    .bind(size)
    .bind(content_id)
    .bind(seq)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

fn version_row(row: &AnyRow) -> Result<VersionInfo, sqlx::Error> {
    Ok(VersionInfo {
        id: row.try_get("id")?,
        node_id: row.try_get("node_id")?,
        base_version: row.try_get("base_version")?,
        size: row.try_get::<i64, _>("size")?.max(0) as u64,
        content_id: row.try_get("content_id")?,
        device: row.try_get("device")?,
        created_ms: row.try_get("created_ms")?,
    })
}

const VERSION_COLUMNS: &str = "id, node_id, base_version, size, content_id, device, created_ms";

pub async fn version(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<VersionInfo>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM drive_versions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(version_row).transpose()
}

/// A file's versions, newest first.
pub async fn versions(
    conn: &mut AnyConnection,
    node_id: &str,
) -> Result<Vec<VersionInfo>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM drive_versions WHERE node_id = $1 \
         ORDER BY created_ms DESC, id DESC"
    ))
    .bind(node_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(version_row).collect()
}

pub async fn version_chunks(
    conn: &mut AnyConnection,
    version_id: &str,
) -> Result<Vec<ChunkRef>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT hash, size FROM drive_version_chunks WHERE version_id = $1 ORDER BY idx",
    )
    .bind(version_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ChunkRef {
                hash: row.try_get("hash")?,
                size: row.try_get::<i64, _>("size")?.max(0) as u64,
            })
        })
        .collect()
}

/// An upload's row.
#[derive(Debug, Clone)]
pub struct UploadRow {
    pub id: String,
    pub user_id: String,
    pub owner_id: String,
    pub node_id: Option<String>,
    pub base_version: Option<String>,
    pub parent_id: String,
    pub name: Option<String>,
    pub device: String,
    pub size: i64,
    pub content_id: String,
    pub committed_version: Option<String>,
    pub committed_node: Option<String>,
    pub outcome: Option<String>,
}

pub async fn insert_upload(
    conn: &mut AnyConnection,
    up: &UploadRow,
    chunks: &[ChunkRef],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO drive_uploads (id, user_id, owner_id, node_id, base_version, parent_id, \
         name, device, size, content_id, committed_version, committed_node, outcome, \
         created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, NULL, $11)",
    )
    .bind(&up.id)
    .bind(&up.user_id)
    .bind(&up.owner_id)
    .bind(&up.node_id)
    .bind(&up.base_version)
    .bind(&up.parent_id)
    .bind(&up.name)
    .bind(&up.device)
    .bind(up.size)
    .bind(&up.content_id)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    // Many rows per statement: a 1 GB file has some 16 000 chunks.
    for (batch_no, batch) in chunks.chunks(200).enumerate() {
        let mut sql =
            String::from("INSERT INTO drive_upload_chunks (upload_id, idx, hash, size) VALUES ");
        for i in 0..batch.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            let p = i * 3;
            sql.push_str(&format!("($1, ${}, ${}, ${})", p + 2, p + 3, p + 4));
        }
        let mut query = sqlx::query(&sql).bind(&up.id);
        for (i, chunk) in batch.iter().enumerate() {
            query = query
                .bind((batch_no * 200 + i) as i64)
                .bind(&chunk.hash)
                .bind(chunk.size as i64);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

pub async fn upload(conn: &mut AnyConnection, id: &str) -> Result<Option<UploadRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, user_id, owner_id, node_id, base_version, parent_id, name, device, size, \
         content_id, committed_version, committed_node, outcome FROM drive_uploads WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(UploadRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        owner_id: row.try_get("owner_id")?,
        node_id: row.try_get("node_id")?,
        base_version: row.try_get("base_version")?,
        parent_id: row.try_get("parent_id")?,
        name: row.try_get("name")?,
        device: row.try_get("device")?,
        size: row.try_get("size")?,
        content_id: row.try_get("content_id")?,
        committed_version: row.try_get("committed_version")?,
        committed_node: row.try_get("committed_node")?,
        outcome: row.try_get("outcome")?,
    }))
}

/// The upload's chunks the store does not hold yet, or holds but is collecting (dying:
/// see `retention`), each once, in manifest order.
pub async fn missing_chunks(
    conn: &mut AnyConnection,
    upload_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let hashes: Vec<String> = sqlx::query_scalar(
        "SELECT u.hash FROM drive_upload_chunks u LEFT JOIN drive_chunks c ON c.hash = u.hash \
         WHERE u.upload_id = $1 AND (c.hash IS NULL OR c.dying_ms IS NOT NULL) ORDER BY u.idx",
    )
    .bind(upload_id)
    .fetch_all(conn)
    .await?;
    let mut seen = std::collections::HashSet::new();
    Ok(hashes
        .into_iter()
        .filter(|h| seen.insert(h.clone()))
        .collect())
}

/// The size the upload's manifest gives `hash`, if the hash is in it.
pub async fn upload_chunk_size(
    conn: &mut AnyConnection,
    upload_id: &str,
    hash: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT size FROM drive_upload_chunks WHERE upload_id = $1 AND hash = $2 LIMIT 1",
    )
    .bind(upload_id)
    .bind(hash)
    .fetch_optional(conn)
    .await
}

/// Records that the store holds a chunk (after it was written there), in the caller's
/// transaction: lists it, or clears its dying mark, then takes over a deletion of its
/// bytes still queued. The caller writes the bytes again before committing (they may
/// have been deleted since it wrote them); from then until the commit no deletion of
/// them can start, as the row is locked and listed.
pub async fn chunk_stored(
    conn: &mut AnyConnection,
    hash: &str,
    size: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO drive_chunks (hash, size, created_ms, dying_ms) VALUES ($1, $2, $3, NULL) \
         ON CONFLICT (hash) DO UPDATE SET dying_ms = NULL",
    )
    .bind(hash)
    .bind(size)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    // Waits for a deletion of the bytes in progress (it locks this row).
    sqlx::query("DELETE FROM drive_chunk_deletions WHERE hash = $1")
        .bind(hash)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn mark_committed(
    conn: &mut AnyConnection,
    upload_id: &str,
    version_id: &str,
    node_id: &str,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE drive_uploads SET committed_version = $2, committed_node = $3, outcome = $4 \
         WHERE id = $1",
    )
    .bind(upload_id)
    .bind(version_id)
    .bind(node_id)
    .bind(outcome)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn upsert_share(
    conn: &mut AnyConnection,
    folder_id: &str,
    user_id: &str,
    mode: ShareMode,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO drive_shares (folder_id, user_id, mode, created_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (folder_id, user_id) DO UPDATE SET mode = excluded.mode",
    )
    .bind(folder_id)
    .bind(user_id)
    .bind(mode.as_str())
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn remove_share(
    conn: &mut AnyConnection,
    folder_id: &str,
    user_id: &str,
) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM drive_shares WHERE folder_id = $1 AND user_id = $2")
            .bind(folder_id)
            .bind(user_id)
            .execute(conn)
            .await?
            .rows_affected()
            > 0,
    )
}

/// A folder's shares, with usernames.
pub async fn shares(
    conn: &mut AnyConnection,
    folder_id: &str,
) -> Result<Vec<(String, String, ShareMode)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT s.user_id, u.username, s.mode FROM drive_shares s JOIN users u ON u.id = s.user_id \
         WHERE s.folder_id = $1 ORDER BY u.username",
    )
    .bind(folder_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let mode: String = row.try_get("mode")?;
            Ok((
                row.try_get("user_id")?,
                row.try_get("username")?,
                ShareMode::parse(&mode).ok_or_else(|| decode_error(format!("mode {mode:?}")))?,
            ))
        })
        .collect()
}

/// The folders shared with `user_id`, with their owners' usernames.
pub async fn shared_with(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<(NodeRow, String, ShareMode)>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {NODE_COLUMNS}, u.username AS owner_username, s.mode AS share_mode \
         FROM drive_shares s JOIN drive_nodes n ON n.id = s.folder_id \
         JOIN users u ON u.id = n.owner_id WHERE s.user_id = $1 AND n.deleted = 0 \
         ORDER BY n.name_key"
    ))
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let mode: String = row.try_get("share_mode")?;
            Ok((
                node_row(row)?,
                row.try_get("owner_username")?,
                ShareMode::parse(&mode).ok_or_else(|| decode_error(format!("mode {mode:?}")))?,
            ))
        })
        .collect()
}

/// All nodes of a drive stamped with one change.
pub async fn changes_at(
    conn: &mut AnyConnection,
    owner_id: &str,
    seq: i64,
) -> Result<Vec<NodeRow>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {NODE_COLUMNS} FROM drive_nodes n WHERE n.owner_id = $1 AND n.seq = $2 \
         ORDER BY n.id"
    ))
    .bind(owner_id)
    .bind(seq)
    .fetch_all(conn)
    .await?;
    rows.iter().map(node_row).collect()
}
