//! Retention of the drive's history and collection of the chunks nothing uses: one pass,
//! run by the maintenance loop (`run_maintenance`) with the injected clock.
//!
//! ```text
//! rule   which versions of a live file go (pure, property-tested)
//! store  SQL: candidates, purges, marks, the deletion queue
//! ```
//!
//! A pass, each step in short transactions of at most [`BATCH`] items, at most
//! [`MAX_BATCHES`] per step (the rest waits for the next pass; cursors in `drive_gc`
//! make it resume where it stopped):
//! 1. uploads older than `drive_upload_expiry`, committed or not, are deleted (a commit
//!    answers its outcome again only within that time);
//! 2. deleted nodes in the trash longer than `drive_trash_for` are purged with their
//!    versions and shares, what was in a folder before the folder;
//! 3. the versions of live files the rule (`rule.rs`: `drive_keep_versions`,
//!    `drive_keep_for`) no longer keeps are removed; a deleted file's versions stay whole
//!    until it is purged;
//! 4. a slice of `drive_chunks` (in hash order, from a cursor) is scanned for chunks
//!    nothing references (steps 1 to 3 mark what they free at once; the scan finds the
//!    rest, e.g. what another instance's concurrent pass freed);
//! 5. chunks marked dying for `drive_chunk_grace` and still unreferenced lose their row;
//! 6. a slice of the chunk store (in hash order, from a cursor this instance keeps in
//!    memory, `Drive::orphans_after`) is listed for orphans: bytes no row lists, last
//!    written longer than `drive_chunk_grace` ago (a crash between a chunk's write and
//!    its row leaves them); they are queued for deletion like the chunks of step 5;
//! 7. the bytes of the queued chunks are deleted.
//!
//! Invariants:
//! - The current version of a file is never removed: every removal is decided and done
//!   under the drive's lock (`store::lock_drive`), which restores and commits take too.
//! - A row in `drive_chunks` always has its bytes in the chunk store. A chunk no version
//!   or upload references is first marked dying (`dying_ms`); uploads count a dying chunk
//!   as missing (so an upload is never newly told it is present, and a commit needing it
//!   is refused until it is sent again), and storing it again clears the mark. After the
//!   grace period the row is deleted in the transaction that checks, in the same
//!   statement, that nothing references it, and the hash is queued in
//!   `drive_chunk_deletions`; the bytes are deleted after that commit, while the queue
//!   row is locked, and storing the chunk again takes the queue row first
//!   (`store::chunk_stored`) and writes the bytes again if they went. A crash anywhere
//!   leaves at most a queued hash whose bytes the next pass deletes, or bytes with no
//!   row, which step 6 finds once they are older than the grace period (an upload in
//!   flight writes its bytes just before their row: the grace keeps them meanwhile, and
//!   queueing an orphan takes the chunk's key, see `store::queue_orphan`).
//! - An upload in progress keeps its chunks: its manifest references them until it
//!   expires.
//! - The change feed never skips a purged deletion silently: purging moves the drive's
//!   `purged_seq` to the deletion's change, and an older cursor is answered 410
//!   `cursor_expired` (list again from 0).

mod rule;
mod store;

use std::collections::BTreeMap;
use std::time::Duration;

pub use self::rule::{VersionRule, VersionStamp};
use crate::config::Config;
use crate::drive::store as drive_store;
use crate::drive::StoredChunk;
use crate::AppState;

/// Items per transaction.
pub const BATCH: i64 = 100;
/// Batches per step and pass.
pub const MAX_BATCHES: usize = 100;
/// Versions removed per transaction when one file has many.
const VERSIONS_PER_TX: usize = 256;

/// What the drive keeps, from the instance's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub versions: VersionRule,
    pub trash_for_ms: i64,
    pub uploads_for_ms: i64,
    pub chunk_grace_ms: i64,
}

fn ms(duration: Duration) -> i64 {
    duration.as_millis().min(i64::MAX as u128) as i64
}

impl Retention {
    pub fn from_config(config: &Config) -> Retention {
        Retention {
            versions: VersionRule {
                keep_versions: config.drive_keep_versions,
                keep_for_ms: ms(config.drive_keep_for),
            },
            trash_for_ms: ms(config.drive_trash_for),
            uploads_for_ms: ms(config.drive_upload_expiry),
            chunk_grace_ms: ms(config.drive_chunk_grace),
        }
    }
}

/// What one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetentionReport {
    pub uploads_expired: u64,
    pub nodes_purged: u64,
    /// Versions removed by the rule and with purged files.
    pub versions_removed: u64,
    /// Chunks newly marked dying (by the steps that freed them, or the scan).
    pub chunks_marked: u64,
    /// Chunks whose row and bytes are gone.
    pub chunks_deleted: u64,
    /// Stored bytes found with no row, past the grace period, queued for deletion
    /// (counted in `chunks_deleted` too once deleted).
    pub orphans_found: u64,
}

impl RetentionReport {
    fn add(&mut self, removed: store::Removed) {
        self.uploads_expired += removed.uploads;
        self.nodes_purged += removed.nodes;
        self.versions_removed += removed.versions;
        self.chunks_marked += removed.chunks_marked;
    }
}

/// One pass of retention and collection (see the module's doc).
pub async fn run(state: &AppState) -> Result<RetentionReport, sqlx::Error> {
    let retention = Retention::from_config(&state.config);
    let now = state.clock.now_ms();
    let mut report = RetentionReport::default();
    expire_uploads(state, &retention, now, &mut report).await?;
    purge_trash(state, &retention, now, &mut report).await?;
    remove_versions(state, &retention, now, &mut report).await?;
    scan_chunks(state, now, &mut report).await?;
    delete_dying(state, &retention, now).await?;
    collect_orphans(state, &retention, now, &mut report).await?;
    report.chunks_deleted = delete_bytes(state).await?;
    Ok(report)
}

fn by_owner(rows: Vec<(String, String)>) -> BTreeMap<String, Vec<String>> {
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, owner) in rows {
        owners.entry(owner).or_default().push(id);
    }
    owners
}

async fn expire_uploads(
    state: &AppState,
    retention: &Retention,
    now: i64,
    report: &mut RetentionReport,
) -> Result<(), sqlx::Error> {
    let cutoff = now.saturating_sub(retention.uploads_for_ms);
    for _ in 0..MAX_BATCHES {
        let mut conn = state.db.pool.acquire().await?;
        let expired = store::expired_uploads(&mut conn, cutoff, BATCH).await?;
        drop(conn);
        if expired.is_empty() {
            break;
        }
        let mut deleted = 0;
        for (owner, ids) in by_owner(expired) {
            let _turn = state.db.write_turn().await;
            let mut tx = state.db.pool.begin().await?;
            // A commit of one of them waits, then finds it gone (or we find it done).
            store::lock_drive(&mut tx, &owner).await?;
            let removed = store::delete_uploads(&mut tx, &ids, now).await?;
            tx.commit().await?;
            deleted += removed.uploads;
            report.add(removed);
        }
        if deleted == 0 {
            break;
        }
    }
    Ok(())
}

async fn purge_trash(
    state: &AppState,
    retention: &Retention,
    now: i64,
    report: &mut RetentionReport,
) -> Result<(), sqlx::Error> {
    let cutoff = now.saturating_sub(retention.trash_for_ms);
    for _ in 0..MAX_BATCHES {
        let mut conn = state.db.pool.acquire().await?;
        let candidates = store::trash_candidates(&mut conn, cutoff, BATCH).await?;
        drop(conn);
        if candidates.is_empty() {
            break;
        }
        let mut purged = 0;
        for (owner, ids) in by_owner(candidates) {
            let _turn = state.db.write_turn().await;
            let mut tx = state.db.pool.begin().await?;
            // A restore of one of them waits, then finds it gone (or we find it live).
            store::lock_drive(&mut tx, &owner).await?;
            let removed = store::purge_nodes(&mut tx, &ids, cutoff, now).await?;
            tx.commit().await?;
            purged += removed.nodes;
            report.add(removed);
        }
        if purged == 0 {
            break;
        }
    }
    Ok(())
}

async fn remove_versions(
    state: &AppState,
    retention: &Retention,
    now: i64,
    report: &mut RetentionReport,
) -> Result<(), sqlx::Error> {
    let rule = retention.versions;
    let keep = rule.keep_versions.map_or(i64::MAX, i64::from);
    let cutoff = now.saturating_sub(rule.keep_for_ms);
    let mut after = {
        let mut conn = state.db.pool.acquire().await?;
        store::cursors(&mut conn).await?.0
    };
    for _ in 0..MAX_BATCHES {
        let mut conn = state.db.pool.acquire().await?;
        let files = store::version_candidates(&mut conn, &after, keep, cutoff, BATCH).await?;
        drop(conn);
        for (node_id, owner) in &files {
            report.add(remove_file_versions(state, &rule, node_id, owner, now).await?);
        }
        match files.last() {
            Some((last, _)) if files.len() as i64 == BATCH => after.clone_from(last),
            _ => {
                after.clear();
                break;
            }
        }
    }
    let _turn = state.db.write_turn().await;
    let mut conn = state.db.pool.acquire().await?;
    store::set_versions_after(&mut conn, &after).await
}

/// The versions of a live file that the rule removes now (none for a deleted file).
async fn doomed_versions(
    conn: &mut sqlx::AnyConnection,
    rule: &VersionRule,
    node_id: &str,
    now: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let Some(node) = drive_store::node(conn, node_id).await? else {
        return Ok(Vec::new());
    };
    if node.deleted {
        return Ok(Vec::new());
    }
    let stamps: Vec<VersionStamp> = drive_store::versions(conn, node_id)
        .await?
        .into_iter()
        .map(|v| VersionStamp {
            id: v.id,
            created_ms: v.created_ms,
        })
        .collect();
    Ok(rule.versions_to_remove(&stamps, node.version_id.as_deref(), now))
}

/// Removes what the rule no longer keeps of one live file, deciding again under the
/// drive's lock in each transaction.
async fn remove_file_versions(
    state: &AppState,
    rule: &VersionRule,
    node_id: &str,
    owner: &str,
    now: i64,
) -> Result<store::Removed, sqlx::Error> {
    let mut removed = store::Removed::default();
    // Most candidates keep everything: decided without a write first.
    let mut conn = state.db.pool.acquire().await?;
    if doomed_versions(&mut conn, rule, node_id, now)
        .await?
        .is_empty()
    {
        return Ok(removed);
    }
    drop(conn);
    loop {
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        store::lock_drive(&mut tx, owner).await?;
        let doomed = doomed_versions(&mut tx, rule, node_id, now).await?;
        let this_time = &doomed[..doomed.len().min(VERSIONS_PER_TX)];
        let these = store::delete_versions(&mut tx, this_time, now).await?;
        tx.commit().await?;
        removed.versions += these.versions;
        removed.chunks_marked += these.chunks_marked;
        if doomed.len() <= VERSIONS_PER_TX {
            return Ok(removed);
        }
    }
}

async fn scan_chunks(
    state: &AppState,
    now: i64,
    report: &mut RetentionReport,
) -> Result<(), sqlx::Error> {
    let mut after = {
        let mut conn = state.db.pool.acquire().await?;
        store::cursors(&mut conn).await?.1
    };
    for _ in 0..MAX_BATCHES {
        let mut conn = state.db.pool.acquire().await?;
        let hashes = store::chunks_after(&mut conn, &after, BATCH).await?;
        drop(conn);
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        report.chunks_marked += store::mark_unreferenced(&mut tx, &hashes, now).await?;
        let wrapped = (hashes.len() as i64) < BATCH;
        after = if wrapped {
            String::new()
        } else {
            hashes.last().cloned().unwrap_or_default()
        };
        store::set_chunks_after(&mut tx, &after).await?;
        tx.commit().await?;
        if wrapped {
            break;
        }
    }
    Ok(())
}

async fn delete_dying(
    state: &AppState,
    retention: &Retention,
    now: i64,
) -> Result<(), sqlx::Error> {
    let cutoff = now.saturating_sub(retention.chunk_grace_ms);
    for _ in 0..MAX_BATCHES {
        let mut conn = state.db.pool.acquire().await?;
        let dying = store::dying_chunks(&mut conn, cutoff, BATCH).await?;
        drop(conn);
        if dying.is_empty() {
            break;
        }
        let _turn = state.db.write_turn().await;
        let mut tx = state.db.pool.begin().await?;
        store::delete_dying(&mut tx, &dying, cutoff, now).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Lists the chunk store from this instance's cursor for orphaned bytes (step 6). A
/// store that cannot be listed now is logged and left for the next pass.
async fn collect_orphans(
    state: &AppState,
    retention: &Retention,
    now: i64,
    report: &mut RetentionReport,
) -> Result<(), sqlx::Error> {
    let cutoff = now.saturating_sub(retention.chunk_grace_ms);
    let cursor = &state.drive.orphans_after;
    let mut after = cursor.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for _ in 0..MAX_BATCHES {
        let page = match state.drive.chunks.list(&after, BATCH as usize).await {
            Ok(page) => page,
            Err(err) => {
                tracing::warn!(%err, "the chunk store cannot be listed for orphans now");
                break;
            }
        };
        let old: Vec<&StoredChunk> = page.iter().filter(|c| c.modified_ms <= cutoff).collect();
        if !old.is_empty() {
            let hashes: Vec<&str> = old.iter().map(|c| c.hash.as_str()).collect();
            let mut conn = state.db.pool.acquire().await?;
            let listed = store::listed_chunks(&mut conn, &hashes).await?;
            drop(conn);
            let orphans: Vec<&&StoredChunk> =
                old.iter().filter(|c| !listed.contains(&c.hash)).collect();
            if !orphans.is_empty() {
                let _turn = state.db.write_turn().await;
                let mut tx = state.db.pool.begin().await?;
                for orphan in orphans {
                    let size = i64::try_from(orphan.size).unwrap_or(i64::MAX);
                    if store::queue_orphan(&mut tx, &orphan.hash, size, now).await? {
                        report.orphans_found += 1;
                    }
                }
                tx.commit().await?;
            }
        }
        let wrapped = page.len() < BATCH as usize;
        after = if wrapped {
            String::new()
        } else {
            page.last().map(|c| c.hash.clone()).unwrap_or_default()
        };
        *cursor.lock().unwrap_or_else(|p| p.into_inner()) = after.clone();
        if wrapped {
            break;
        }
    }
    Ok(())
}

/// Deletes the bytes of queued chunks; answers how many. A chunk whose bytes cannot be
/// deleted stays queued (logged) for the next pass.
async fn delete_bytes(state: &AppState) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    for _ in 0..MAX_BATCHES {
        let mut conn = state.db.pool.acquire().await?;
        let queued = store::queued_deletions(&mut conn, BATCH).await?;
        drop(conn);
        if queued.is_empty() {
            break;
        }
        let mut failed = false;
        for hash in &queued {
            let _turn = state.db.write_turn().await;
            let mut tx = state.db.pool.begin().await?;
            if !store::take_deletion(&mut tx, hash).await? {
                tx.commit().await?;
                continue;
            }
            match state.drive.chunks.delete(hash).await {
                Ok(()) => {
                    tx.commit().await?;
                    deleted += 1;
                }
                Err(err) => {
                    tracing::warn!(%err, %hash, "a collected chunk's bytes cannot be deleted yet");
                    tx.rollback().await?;
                    failed = true;
                }
            }
        }
        if failed {
            break;
        }
    }
    Ok(deleted)
}
