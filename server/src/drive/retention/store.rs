//! SQL of retention and chunk collection, for both backends.
//!
//! A chunk is referenced while a row of `drive_version_chunks` or `drive_upload_chunks`
//! names it. Every statement here that marks or deletes a chunk checks that, in the
//! statement itself.

use std::collections::HashSet;

use sqlx::AnyConnection;

/// What a removal took away: rows, and the chunks it left unreferenced (marked dying).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub uploads: u64,
    pub nodes: u64,
    pub versions: u64,
    pub chunks_marked: u64,
}

/// Hashes or ids bound per statement (well under SQLite's limit of parameters).
const PER_STATEMENT: usize = 500;

/// `$from, $from+1, ...`: `n` numbered parameters.
fn params(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

const UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM drive_version_chunks v \
         WHERE v.hash = drive_chunks.hash) \
     AND NOT EXISTS (SELECT 1 FROM drive_upload_chunks u WHERE u.hash = drive_chunks.hash)";

/// Takes the drive's lock without a new sequence number (see `store::next_seq`): the
/// drive's changes wait for the caller's transaction, and it for theirs.
pub async fn lock_drive(conn: &mut AnyConnection, owner_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE drive_heads SET seq = seq WHERE owner_id = $1")
        .bind(owner_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Where the pass resumes: `(versions_after, chunks_after)`.
pub async fn cursors(conn: &mut AnyConnection) -> Result<(String, String), sqlx::Error> {
    let row: (String, String) =
        sqlx::query_as("SELECT versions_after, chunks_after FROM drive_gc WHERE id = 1")
            .fetch_one(conn)
            .await?;
    Ok(row)
}

pub async fn set_versions_after(conn: &mut AnyConnection, after: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE drive_gc SET versions_after = $1 WHERE id = 1")
        .bind(after)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_chunks_after(conn: &mut AnyConnection, after: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE drive_gc SET chunks_after = $1 WHERE id = 1")
        .bind(after)
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks dying those of `hashes` that nothing references and that are not dying yet;
/// answers how many.
pub async fn mark_unreferenced(
    conn: &mut AnyConnection,
    hashes: &[String],
    now_ms: i64,
) -> Result<u64, sqlx::Error> {
    let mut marked = 0;
    for batch in hashes.chunks(PER_STATEMENT) {
        let sql = format!(
            "UPDATE drive_chunks SET dying_ms = $1 WHERE dying_ms IS NULL \
             AND hash IN ({}) AND {UNREFERENCED}",
            params(2, batch.len())
        );
        let mut query = sqlx::query(&sql).bind(now_ms);
        for hash in batch {
            query = query.bind(hash);
        }
        marked += query.execute(&mut *conn).await?.rows_affected();
    }
    Ok(marked)
}

/// The distinct chunks that `table`'s rows with `column` among `ids` name (a version's or
/// an upload's manifest), sorted.
async fn chunks_named_by(
    conn: &mut AnyConnection,
    table: &str,
    column: &str,
    ids: &[impl AsRef<str> + Sync],
) -> Result<Vec<String>, sqlx::Error> {
    let mut hashes = Vec::new();
    for batch in ids.chunks(PER_STATEMENT) {
        let sql = format!(
            "SELECT DISTINCT hash FROM {table} WHERE {column} IN ({})",
            params(1, batch.len())
        );
        let mut query = sqlx::query_scalar(&sql);
        for id in batch {
            query = query.bind(id.as_ref());
        }
        hashes.extend(query.fetch_all(&mut *conn).await?);
    }
    hashes.sort();
    hashes.dedup();
    Ok(hashes)
}

/// Runs `DELETE FROM <table> WHERE <column> IN (ids)` in batches; answers the rows.
async fn delete_in(
    conn: &mut AnyConnection,
    table: &str,
    column: &str,
    ids: &[String],
) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    for batch in ids.chunks(PER_STATEMENT) {
        let sql = format!(
            "DELETE FROM {table} WHERE {column} IN ({})",
            params(1, batch.len())
        );
        let mut query = sqlx::query(&sql);
        for id in batch {
            query = query.bind(id);
        }
        deleted += query.execute(&mut *conn).await?.rows_affected();
    }
    Ok(deleted)
}

/// Deletes versions and their chunk lists, and marks dying the chunks nothing else
/// references any more.
pub async fn delete_versions(
    conn: &mut AnyConnection,
    version_ids: &[String],
    now_ms: i64,
) -> Result<Removed, sqlx::Error> {
    let hashes = chunks_named_by(conn, "drive_version_chunks", "version_id", version_ids).await?;
    delete_in(conn, "drive_version_chunks", "version_id", version_ids).await?;
    let deleted = delete_in(conn, "drive_versions", "id", version_ids).await?;
    Ok(Removed {
        versions: deleted,
        chunks_marked: mark_unreferenced(conn, &hashes, now_ms).await?,
        ..Removed::default()
    })
}

/// Live files, after `after` in id order, that may have versions to remove: more than
/// one version, and more than `keep_versions` or one made at or before `cutoff_ms`.
pub async fn version_candidates(
    conn: &mut AnyConnection,
    after: &str,
    keep_versions: i64,
    cutoff_ms: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT v.node_id, n.owner_id FROM drive_versions v \
         JOIN drive_nodes n ON n.id = v.node_id \
         WHERE n.deleted = 0 AND v.node_id > $1 \
         GROUP BY v.node_id, n.owner_id \
         HAVING COUNT(*) > 1 AND (COUNT(*) > $2 OR MIN(v.created_ms) <= $3) \
         ORDER BY v.node_id LIMIT $4",
    )
    .bind(after)
    .bind(keep_versions)
    .bind(cutoff_ms)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Deleted nodes whose deletion is at or before `cutoff_ms` and that have no children
/// left (folders go after what was in them), oldest first: `(id, owner)`.
pub async fn trash_candidates(
    conn: &mut AnyConnection,
    cutoff_ms: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT n.id, n.owner_id FROM drive_nodes n \
         WHERE n.deleted = 1 AND n.updated_ms <= $1 \
         AND NOT EXISTS (SELECT 1 FROM drive_nodes c WHERE c.parent_id = n.id) \
         ORDER BY n.updated_ms, n.id LIMIT $2",
    )
    .bind(cutoff_ms)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Purges deleted, childless nodes of one drive deleted at or before `cutoff_ms` (checked
/// again here, under the drive's lock): their versions, shares and rows; the drive's
/// `purged_seq` moves up to their deletion.
pub async fn purge_nodes(
    conn: &mut AnyConnection,
    ids: &[String],
    cutoff_ms: i64,
    now_ms: i64,
) -> Result<Removed, sqlx::Error> {
    let mut gone = Vec::new();
    let mut newest_seq = 0;
    for batch in ids.chunks(PER_STATEMENT) {
        let sql = format!(
            "SELECT n.id, n.seq FROM drive_nodes n WHERE n.id IN ({}) AND n.deleted = 1 \
             AND n.updated_ms <= $1 \
             AND NOT EXISTS (SELECT 1 FROM drive_nodes c WHERE c.parent_id = n.id)",
            params(2, batch.len())
        );
        let mut query = sqlx::query_as::<_, (String, i64)>(&sql).bind(cutoff_ms);
        for id in batch {
            query = query.bind(id);
        }
        for (id, seq) in query.fetch_all(&mut *conn).await? {
            newest_seq = newest_seq.max(seq);
            gone.push(id);
        }
    }
    if let Some(owner_id) = owner_of_first(conn, &gone).await? {
        sqlx::query(
            "UPDATE drive_heads SET purged_seq = $2 WHERE owner_id = $1 AND purged_seq < $2",
        )
        .bind(owner_id)
        .bind(newest_seq)
        .execute(&mut *conn)
        .await?;
    }
    let mut versions = Vec::new();
    for batch in gone.chunks(PER_STATEMENT) {
        let sql = format!(
            "SELECT id FROM drive_versions WHERE node_id IN ({})",
            params(1, batch.len())
        );
        let mut query = sqlx::query_scalar(&sql);
        for id in batch {
            query = query.bind(id);
        }
        versions.extend(query.fetch_all(&mut *conn).await?);
    }
    let removed = delete_versions(conn, &versions, now_ms).await?;
    delete_in(conn, "drive_shares", "folder_id", &gone).await?;
    Ok(Removed {
        nodes: delete_in(conn, "drive_nodes", "id", &gone).await?,
        ..removed
    })
}

async fn owner_of_first(
    conn: &mut AnyConnection,
    ids: &[String],
) -> Result<Option<String>, sqlx::Error> {
    let Some(id) = ids.first() else {
        return Ok(None);
    };
    sqlx::query_scalar("SELECT owner_id FROM drive_nodes WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Uploads made at or before `cutoff_ms` (committed or not), oldest first: `(id, owner)`.
pub async fn expired_uploads(
    conn: &mut AnyConnection,
    cutoff_ms: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, owner_id FROM drive_uploads WHERE created_ms <= $1 \
         ORDER BY created_ms, id LIMIT $2",
    )
    .bind(cutoff_ms)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Deletes uploads and their manifests, marking dying the chunks nothing else references.
pub async fn delete_uploads(
    conn: &mut AnyConnection,
    ids: &[String],
    now_ms: i64,
) -> Result<Removed, sqlx::Error> {
    let hashes = chunks_named_by(conn, "drive_upload_chunks", "upload_id", ids).await?;
    delete_in(conn, "drive_upload_chunks", "upload_id", ids).await?;
    let uploads = delete_in(conn, "drive_uploads", "id", ids).await?;
    Ok(Removed {
        uploads,
        chunks_marked: mark_unreferenced(conn, &hashes, now_ms).await?,
        ..Removed::default()
    })
}

/// Stored chunks after `after` in hash order, at most `limit`.
pub async fn chunks_after(
    conn: &mut AnyConnection,
    after: &str,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT hash FROM drive_chunks WHERE hash > $1 ORDER BY hash LIMIT $2")
        .bind(after)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Chunks dying since `cutoff_ms` or earlier, longest dying first.
pub async fn dying_chunks(
    conn: &mut AnyConnection,
    cutoff_ms: i64,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT hash FROM drive_chunks WHERE dying_ms IS NOT NULL AND dying_ms <= $1 \
         ORDER BY dying_ms, hash LIMIT $2",
    )
    .bind(cutoff_ms)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Of `hashes`, deletes the rows of the chunks still dying since `cutoff_ms` or earlier
/// and still unreferenced, queueing their bytes for deletion (`drive_chunk_deletions`),
/// and clears the mark of the others that are referenced again. Answers the hashes whose
/// rows went.
pub async fn delete_dying(
    conn: &mut AnyConnection,
    hashes: &[String],
    cutoff_ms: i64,
    now_ms: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let mut gone: Vec<String> = Vec::new();
    for batch in hashes.chunks(PER_STATEMENT) {
        let list = params(2, batch.len());
        let sql = format!(
            "DELETE FROM drive_chunks WHERE hash IN ({list}) AND dying_ms IS NOT NULL \
             AND dying_ms <= $1 AND {UNREFERENCED} RETURNING hash"
        );
        let mut query = sqlx::query_scalar(&sql).bind(cutoff_ms);
        for hash in batch {
            query = query.bind(hash);
        }
        let deleted: Vec<String> = query.fetch_all(&mut *conn).await?;
        let sql = format!(
            "UPDATE drive_chunks SET dying_ms = NULL WHERE hash IN ({list}) \
             AND dying_ms IS NOT NULL AND dying_ms <= $1"
        );
        let mut query = sqlx::query(&sql).bind(cutoff_ms);
        for hash in batch {
            query = query.bind(hash);
        }
        query.execute(&mut *conn).await?;
        gone.extend(deleted);
    }
    for hash in &gone {
        sqlx::query(
            "INSERT INTO drive_chunk_deletions (hash, since_ms) VALUES ($1, $2) \
             ON CONFLICT (hash) DO NOTHING",
        )
        .bind(hash)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    }
    Ok(gone)
}

/// Chunks whose bytes are queued for deletion, oldest first.
pub async fn queued_deletions(
    conn: &mut AnyConnection,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT hash FROM drive_chunk_deletions ORDER BY since_ms, hash LIMIT $1")
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Takes a queued deletion off the queue (locking its row until the transaction ends);
/// answers whether the caller should delete the bytes: it was queued, and no row lists
/// the chunk (one stored again took the deletion over, see `store::chunk_stored`).
pub async fn take_deletion(conn: &mut AnyConnection, hash: &str) -> Result<bool, sqlx::Error> {
    let taken = sqlx::query("DELETE FROM drive_chunk_deletions WHERE hash = $1")
        .bind(hash)
        .execute(&mut *conn)
        .await?
        .rows_affected()
        > 0;
    if !taken {
        return Ok(false);
    }
    let listed: Option<String> =
        sqlx::query_scalar("SELECT hash FROM drive_chunks WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(listed.is_none())
}

/// Of `hashes`, those `drive_chunks` lists.
pub async fn listed_chunks(
    conn: &mut AnyConnection,
    hashes: &[&str],
) -> Result<HashSet<String>, sqlx::Error> {
    let listed = chunks_named_by(conn, "drive_chunks", "hash", hashes).await?;
    Ok(listed.into_iter().collect())
}

/// Queues the bytes of `hash`, stored with no row (orphaned by a crash between its
/// write and its row), for deletion, unless a row lists it by now; answers whether it
/// was queued. The row inserted and deleted again here takes the chunk's key for the
/// transaction: an upload listing the chunk concurrently (`store::chunk_stored`) waits
/// for it, then takes the deletion over and writes the bytes again; one that listed it
/// first makes the insert a no-op.
pub async fn queue_orphan(
    conn: &mut AnyConnection,
    hash: &str,
    size: i64,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query(
        "INSERT INTO drive_chunks (hash, size, created_ms, dying_ms) VALUES ($1, $2, $3, $3) \
         ON CONFLICT (hash) DO NOTHING",
    )
    .bind(hash)
    .bind(size)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if !claimed {
        return Ok(false);
    }
    sqlx::query("DELETE FROM drive_chunks WHERE hash = $1")
        .bind(hash)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO drive_chunk_deletions (hash, since_ms) VALUES ($1, $2) \
         ON CONFLICT (hash) DO NOTHING",
    )
    .bind(hash)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(true)
}
