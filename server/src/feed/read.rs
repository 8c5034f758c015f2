//! Reading the feed: candidates, ranking, the snapshot a cursor pages through.
//!
//! A first page (no cursor) gathers candidates at or below the newest post id (the
//! high-water mark): the reader's inbox (pushed), the posts of followed large accounts
//! (pulled) and popular posts of the last day from outside the network. It ranks them
//! with `meridian_shared::feed::rank` at the clock's time, stores the ranked ids and
//! their reasons as a snapshot (one row), and answers its first items. A cursor names a
//! snapshot and an offset, so later pages come from the same ranked list: they never
//! repeat or skip an item while posts arrive or likes change. The posts themselves
//! (text, counts, liked) are read fresh; items of an account the reader has since
//! unfollowed are left out.
//!
//! A reader who has not read within `inactive_after` (or never) is inactive: fanout
//! skipped them. Their read first marks them active (committed), then rebuilds their
//! inbox from the posts of the accounts they follow; a post committed after the mark is
//! pushed by fanout, one before it is found by the rebuild (both: stored once).

use std::collections::{HashMap, HashSet};

use meridian_shared::feed::{
    has_link, rank, Candidate, Cursor, FeedItem, FeedPage, FeedReason, Source, SNAPSHOT_ITEMS,
};
use serde::{Deserialize, Serialize};

use super::store::{self, PostRow};
use super::{FeedError, Feeds};

/// The inbox keeps a reader's newest this many entries.
pub const INBOX_CAP: usize = 800;
/// The newest inbox entries ranked per read.
pub const INBOX_CANDIDATES: usize = 400;
/// Posts pulled from followed large accounts per read.
pub const PULL_LIMIT: usize = 100;
/// Popular posts from outside the network considered per read.
pub const POPULAR_LIMIT: usize = 30;
/// How old a popular post may be.
pub const POPULAR_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// How far back a returning reader's inbox is rebuilt.
pub const REBUILD_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;
/// A read within this of the last one does not rewrite `last_read_ms`.
pub const READ_MARK_EVERY_MS: i64 = 60 * 1000;

/// One item of a stored snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotItem {
    id: i64,
    /// 0 pushed, 1 pulled, 2 popular.
    source: u8,
    reasons: Vec<FeedReason>,
}

fn source_code(source: Source) -> u8 {
    match source {
        Source::Network => 0,
        Source::Pulled => 1,
        Source::Popular => 2,
    }
}

/// The first page of `user_id`'s feed: a new snapshot.
pub async fn first_page(feeds: &Feeds, user_id: &str, limit: usize) -> Result<FeedPage, FeedError> {
    let pool = &feeds.db.pool;
    let now_ms = feeds.clock.now_ms();
    let last_read = store::last_read(pool, user_id).await?;
    let inactive_before = now_ms - feeds.config.inactive_after.as_millis() as i64;
    let returning = last_read.is_none_or(|t| t < inactive_before);
    if returning {
        // Active first (committed), then rebuild: see the module's doc.
        {
            let _turn = feeds.db.write_turn().await;
            let mut tx = pool.begin().await?;
            store::ensure_account(&mut tx, user_id).await?;
            store::mark_read(&mut tx, user_id, now_ms).await?;
            tx.commit().await?;
        }
        let _turn = feeds.db.write_turn().await;
        let mut tx = pool.begin().await?;
        store::rebuild_inbox(&mut tx, user_id, now_ms - REBUILD_WINDOW_MS, INBOX_CAP).await?;
        tx.commit().await?;
    }
    let high_water = store::high_water(pool).await?;
    let mut inbox = store::inbox(pool, user_id, high_water, INBOX_CAP + 1).await?;
    let trim_below = (inbox.len() > INBOX_CAP).then(|| inbox[INBOX_CAP - 1]);
    inbox.truncate(INBOX_CANDIDATES);
    let pulled = store::pulled(pool, user_id, high_water, PULL_LIMIT).await?;
    let popular =
        store::popular(pool, now_ms - POPULAR_WINDOW_MS, high_water, POPULAR_LIMIT).await?;
    let mut sources: Vec<(i64, Source)> = Vec::new();
    sources.extend(inbox.iter().map(|id| (*id, Source::Network)));
    sources.extend(pulled.iter().map(|id| (*id, Source::Pulled)));
    sources.extend(popular.iter().map(|id| (*id, Source::Popular)));
    let ids: Vec<i64> = {
        let mut seen = HashSet::new();
        sources
            .iter()
            .filter(|(id, _)| seen.insert(*id))
            .map(|(id, _)| *id)
            .collect()
    };
    let rows: HashMap<i64, PostRow> = store::posts_by_ids(pool, &ids, user_id)
        .await?
        .into_iter()
        .map(|row| (row.id, row))
        .collect();
    let affinity: HashMap<String, i64> =
        store::affinity(pool, user_id).await?.into_iter().collect();
    let candidates: Vec<Candidate> = sources
        .iter()
        .filter_map(|(id, source)| {
            let row = rows.get(id)?;
            // A popular post by someone followed came through the network anyway.
            Some(Candidate {
                post_id: *id as u64,
                author_id: row.post.author_id.clone(),
                author_name: row.post.author_name.clone(),
                created_at_ms: row.post.created_at_ms,
                likes: row.post.likes,
                is_reply: row.post.reply_to.is_some(),
                has_link: has_link(&row.post.text),
                source: *source,
                affinity: affinity
                    .get(&row.post.author_id)
                    .copied()
                    .unwrap_or(0)
                    .clamp(0, u32::MAX as i64) as u32,
            })
        })
        .collect();
    let source_of: HashMap<u64, Source> = candidates
        .iter()
        .rev()
        .map(|c| (c.post_id, c.source))
        .collect();
    let ranked = rank(&candidates, now_ms, SNAPSHOT_ITEMS);
    let items: Vec<SnapshotItem> = ranked
        .into_iter()
        .map(|r| SnapshotItem {
            id: r.post_id as i64,
            source: source_code(source_of[&r.post_id]),
            reasons: r.reasons,
        })
        .collect();
    let mark = !returning && last_read.is_some_and(|t| now_ms - t >= READ_MARK_EVERY_MS);
    let snapshot_id = if items.len() > limit {
        Some(feeds.ids.next_id()?)
    } else {
        None
    };
    if mark || trim_below.is_some() || snapshot_id.is_some() {
        let _turn = feeds.db.write_turn().await;
        let mut tx = pool.begin().await?;
        if mark {
            store::mark_read(&mut tx, user_id, now_ms).await?;
        }
        if let Some(below) = trim_below {
            store::trim_inbox(&mut tx, user_id, below).await?;
        }
        if let Some(id) = &snapshot_id {
            let json = serde_json::to_string(&items).expect("a snapshot serialises");
            store::insert_snapshot(&mut tx, id, user_id, now_ms, &json).await?;
        }
        tx.commit().await?;
    }
    let page: Vec<FeedItem> = items
        .into_iter()
        .take(limit)
        .filter_map(|item| {
            rows.get(&item.id).map(|row| FeedItem {
                post: row.post.clone(),
                reasons: item.reasons,
            })
        })
        .collect();
    Ok(FeedPage {
        items: page,
        next_cursor: snapshot_id.map(|snapshot| {
            Cursor {
                snapshot,
                offset: limit,
            }
            .encode()
        }),
    })
}

/// A later page: the snapshot's items from the cursor's offset.
pub async fn next_page(
    feeds: &Feeds,
    user_id: &str,
    cursor: &Cursor,
    limit: usize,
) -> Result<FeedPage, FeedError> {
    let pool = &feeds.db.pool;
    let json = store::snapshot(pool, &cursor.snapshot, user_id)
        .await?
        .ok_or(FeedError::InvalidCursor)?;
    let items: Vec<SnapshotItem> = serde_json::from_str(&json).map_err(|err| {
        tracing::error!(%err, snapshot = %cursor.snapshot, "a stored feed snapshot does not parse");
        FeedError::InvalidCursor
    })?;
    if cursor.offset > items.len() {
        return Err(FeedError::InvalidCursor);
    }
    let end = (cursor.offset + limit).min(items.len());
    let slice = &items[cursor.offset..end];
    let ids: Vec<i64> = slice.iter().map(|i| i.id).collect();
    let rows: HashMap<i64, PostRow> = store::posts_by_ids(pool, &ids, user_id)
        .await?
        .into_iter()
        .map(|row| (row.id, row))
        .collect();
    let following: HashSet<String> = store::following(pool, user_id).await?.into_iter().collect();
    let page = slice
        .iter()
        .filter_map(|item| {
            let row = rows.get(&item.id)?;
            let author = &row.post.author_id;
            let still_followed =
                item.source == 2 || author == user_id || following.contains(author);
            still_followed.then(|| FeedItem {
                post: row.post.clone(),
                reasons: item.reasons.clone(),
            })
        })
        .collect();
    Ok(FeedPage {
        items: page,
        next_cursor: (end < items.len()).then(|| {
            Cursor {
                snapshot: cursor.snapshot.clone(),
                offset: end,
            }
            .encode()
        }),
    })
}
