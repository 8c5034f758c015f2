//! SQL of the news feed, written once for both backends.
//!
//! Invariants:
//! - The counters in `feed_accounts` (followers, following, posts) and `feed_posts`
//!   (likes, replies) change in the transaction of the row they count, and only when
//!   that row was really inserted or deleted: a repeated follow or like counts once.
//! - `feed_inbox` is keyed `(user_id, post_id)`; every insert is `ON CONFLICT DO
//!   NOTHING`, so pushing a post twice (a replayed chunk, a rebuild) stores it once.
//! - A fanout job's `next_follower` only moves forward, by a conditional update on its
//!   old value made first in the chunk's transaction: two workers never both commit
//!   one chunk.

use meridian_shared::feed::FeedPost;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

/// Rows per multi-row `INSERT` (3 parameters each, under SQLite's limit).
pub const INSERT_BATCH: usize = 500;

/// `$first, $first+1, ...` for `count` parameters.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn ensure_account(conn: &mut AnyConnection, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO feed_accounts (user_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A user's name, if the account exists.
pub async fn username(pool: &AnyPool, user_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT username FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await
}

/// An account's follower count (0 without a feed row).
pub async fn followers(conn: &mut AnyConnection, user_id: &str) -> Result<i64, sqlx::Error> {
    Ok(
        sqlx::query_scalar("SELECT followers FROM feed_accounts WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(conn)
            .await?
            .unwrap_or(0),
    )
}

/// The author of a post, if it exists.
pub async fn post_author(
    conn: &mut AnyConnection,
    post_id: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT author_id FROM feed_posts WHERE id = $1")
        .bind(post_id)
        .fetch_optional(conn)
        .await
}

/// A new post. `pulled`: read by pull, no fanout job; otherwise a job is enqueued here.
/// The author's own inbox gets it at once.
pub struct NewPostRow<'a> {
    pub id: i64,
    pub author_id: &'a str,
    pub text: &'a str,
    pub reply_to: Option<i64>,
    pub now_ms: i64,
    pub pulled: bool,
}

pub async fn insert_post(conn: &mut AnyConnection, p: &NewPostRow<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO feed_posts (id, author_id, text, reply_to, created_at_ms, pulled) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(p.id)
    .bind(p.author_id)
    .bind(p.text)
    .bind(p.reply_to)
    .bind(p.now_ms)
    .bind(i64::from(p.pulled))
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE feed_accounts SET posts = posts + 1 WHERE user_id = $1")
        .bind(p.author_id)
        .execute(&mut *conn)
        .await?;
    if let Some(parent) = p.reply_to {
        sqlx::query("UPDATE feed_posts SET replies = replies + 1 WHERE id = $1")
            .bind(parent)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(
        "INSERT INTO feed_inbox (user_id, post_id, author_id) VALUES ($1, $2, $1) \
         ON CONFLICT DO NOTHING",
    )
    .bind(p.author_id)
    .bind(p.id)
    .execute(&mut *conn)
    .await?;
    if !p.pulled {
        sqlx::query(
            "INSERT INTO feed_fanout (post_id, author_id, created_at_ms) VALUES ($1, $2, $3)",
        )
        .bind(p.id)
        .bind(p.author_id)
        .bind(p.now_ms)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Adds `by` to the reader's affinity with `author` (a like, a reply; -1 to undo a like).
pub async fn add_affinity(
    conn: &mut AnyConnection,
    user_id: &str,
    author_id: &str,
    by: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO feed_affinity (user_id, author_id, interactions) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, author_id) \
         DO UPDATE SET interactions = feed_affinity.interactions + $3",
    )
    .bind(user_id)
    .bind(author_id)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}

/// Posts of an author copied into a new follower's inbox.
pub const FOLLOW_BACKFILL: usize = 20;

/// Follows (and backfills the author's newest pushed posts); false if it already did.
/// Both accounts' rows must exist.
pub async fn follow(
    conn: &mut AnyConnection,
    follower: &str,
    followee: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO feed_follows (follower_id, followee_id, created_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(follower)
    .bind(followee)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if inserted {
        adjust_follow_counts(conn, follower, followee, 1).await?;
        // Backfill: the author's newest pushed posts, as a rebuild would find them.
        sqlx::query(
            "INSERT INTO feed_inbox (user_id, post_id, author_id) \
             SELECT $1, p.id, p.author_id FROM feed_posts p \
             WHERE p.author_id = $2 AND p.pulled = 0 \
             ORDER BY p.id DESC LIMIT $3 \
             ON CONFLICT DO NOTHING",
        )
        .bind(follower)
        .bind(followee)
        .bind(FOLLOW_BACKFILL as i64)
        .execute(&mut *conn)
        .await?;
    }
    Ok(inserted)
}

/// Unfollows and removes the author's posts from the follower's inbox; false if it did
/// not follow.
pub async fn unfollow(
    conn: &mut AnyConnection,
    follower: &str,
    followee: &str,
) -> Result<bool, sqlx::Error> {
    let deleted =
        sqlx::query("DELETE FROM feed_follows WHERE follower_id = $1 AND followee_id = $2")
            .bind(follower)
            .bind(followee)
            .execute(&mut *conn)
            .await?
            .rows_affected()
            > 0;
    if deleted {
        adjust_follow_counts(conn, follower, followee, -1).await?;
    }
    sqlx::query("DELETE FROM feed_inbox WHERE user_id = $1 AND author_id = $2")
        .bind(follower)
        .bind(followee)
        .execute(&mut *conn)
        .await?;
    Ok(deleted)
}

async fn adjust_follow_counts(
    conn: &mut AnyConnection,
    follower: &str,
    followee: &str,
    by: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE feed_accounts SET following = following + $2 WHERE user_id = $1")
        .bind(follower)
        .bind(by)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE feed_accounts SET followers = followers + $2 WHERE user_id = $1")
        .bind(followee)
        .bind(by)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Likes (`liked`) or unlikes a post; whether anything changed.
pub async fn set_like(
    conn: &mut AnyConnection,
    user_id: &str,
    post_id: i64,
    liked: bool,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let changed = if liked {
        sqlx::query(
            "INSERT INTO feed_likes (user_id, post_id, created_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(post_id)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?
    } else {
        sqlx::query("DELETE FROM feed_likes WHERE user_id = $1 AND post_id = $2")
            .bind(user_id)
            .bind(post_id)
            .execute(&mut *conn)
            .await?
    }
    .rows_affected()
        > 0;
    if changed {
        sqlx::query("UPDATE feed_posts SET likes = likes + $2 WHERE id = $1")
            .bind(post_id)
            .bind(if liked { 1i64 } else { -1 })
            .execute(&mut *conn)
            .await?;
    }
    Ok(changed)
}

pub async fn likes_of(conn: &mut AnyConnection, post_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT likes FROM feed_posts WHERE id = $1")
        .bind(post_id)
        .fetch_one(conn)
        .await
}

/// An account's counters: (followers, following, posts).
pub async fn counts(pool: &AnyPool, user_id: &str) -> Result<(i64, i64, i64), sqlx::Error> {
    let row =
        sqlx::query("SELECT followers, following, posts FROM feed_accounts WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
    match row {
        Some(row) => Ok((
            row.try_get("followers")?,
            row.try_get("following")?,
            row.try_get("posts")?,
        )),
        None => Ok((0, 0, 0)),
    }
}

pub async fn follows(pool: &AnyPool, follower: &str, followee: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM feed_follows WHERE follower_id = $1 AND followee_id = $2",
    )
    .bind(follower)
    .bind(followee)
    .fetch_one(pool)
    .await?
        > 0)
}

/// The accounts `user_id` follows.
pub async fn following(pool: &AnyPool, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT followee_id FROM feed_follows WHERE follower_id = $1")
        .bind(user_id)
        .fetch_all(pool)
        .await
}

const POST_COLUMNS: &str = "p.id, p.author_id, u.username AS author_name, p.text, p.reply_to, \
     p.created_at_ms, p.likes, p.replies, p.pulled, \
     CAST(CASE WHEN l.user_id IS NULL THEN 0 ELSE 1 END AS BIGINT) AS liked";

/// A post with what ranking needs about it.
#[derive(Debug, Clone)]
pub struct PostRow {
    pub post: FeedPost,
    pub id: i64,
    pub pulled: bool,
}

fn post_row(row: &AnyRow) -> Result<PostRow, sqlx::Error> {
    let id: i64 = row.try_get("id")?;
    let reply_to: Option<i64> = row.try_get("reply_to")?;
    let liked: i64 = row.try_get("liked")?;
    let pulled: i64 = row.try_get("pulled")?;
    Ok(PostRow {
        id,
        pulled: pulled != 0,
        post: FeedPost {
            id: id.to_string(),
            author_id: row.try_get("author_id")?,
            author_name: row.try_get("author_name")?,
            text: row.try_get("text")?,
            reply_to: reply_to.map(|r| r.to_string()),
            created_at_ms: row.try_get("created_at_ms")?,
            likes: row.try_get::<i64, _>("likes")?.max(0) as u64,
            replies: row.try_get::<i64, _>("replies")?.max(0) as u64,
            liked: liked != 0,
        },
    })
}

/// The posts with these ids (in no particular order), as `reader` sees them.
pub async fn posts_by_ids(
    pool: &AnyPool,
    ids: &[i64],
    reader: &str,
) -> Result<Vec<PostRow>, sqlx::Error> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(INSERT_BATCH) {
        let sql = format!(
            "SELECT {POST_COLUMNS} FROM feed_posts p JOIN users u ON u.id = p.author_id \
             LEFT JOIN feed_likes l ON l.post_id = p.id AND l.user_id = $1 \
             WHERE p.id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(reader);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(pool).await? {
            out.push(post_row(&row)?);
        }
    }
    Ok(out)
}

/// An author's newest posts, newest first.
pub async fn posts_of(
    pool: &AnyPool,
    author_id: &str,
    reader: &str,
    limit: usize,
) -> Result<Vec<FeedPost>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {POST_COLUMNS} FROM feed_posts p JOIN users u ON u.id = p.author_id \
         LEFT JOIN feed_likes l ON l.post_id = p.id AND l.user_id = $2 \
         WHERE p.author_id = $1 ORDER BY p.id DESC LIMIT $3"
    ))
    .bind(author_id)
    .bind(reader)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| post_row(row).map(|r| r.post))
        .collect()
}

/// The reader's previous feed read, marking this one (`None`: never read before).
pub async fn mark_read(
    conn: &mut AnyConnection,
    user_id: &str,
    now_ms: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let before: Option<Option<i64>> =
        sqlx::query_scalar("SELECT last_read_ms FROM feed_accounts WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
    sqlx::query("UPDATE feed_accounts SET last_read_ms = $2 WHERE user_id = $1")
        .bind(user_id)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    Ok(before.flatten())
}

pub async fn last_read(pool: &AnyPool, user_id: &str) -> Result<Option<i64>, sqlx::Error> {
    let before: Option<Option<i64>> =
        sqlx::query_scalar("SELECT last_read_ms FROM feed_accounts WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
    Ok(before.flatten())
}

/// Refills a returning reader's inbox: the pushed posts of the accounts they follow made
/// since `since_ms`, the newest `limit`.
pub async fn rebuild_inbox(
    conn: &mut AnyConnection,
    user_id: &str,
    since_ms: i64,
    limit: usize,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "INSERT INTO feed_inbox (user_id, post_id, author_id) \
         SELECT $1, p.id, p.author_id FROM feed_follows f \
         JOIN feed_posts p ON p.author_id = f.followee_id \
         WHERE f.follower_id = $1 AND p.pulled = 0 AND p.created_at_ms >= $2 \
         ORDER BY p.id DESC LIMIT $3 \
         ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(since_ms)
    .bind(limit as i64)
    .execute(conn)
    .await?
    .rows_affected())
}

/// The newest inbox entries of a reader at or below `high_water`, whose authors the
/// reader still follows (or is): `(post_id, author_id)`.
pub async fn inbox(
    pool: &AnyPool,
    user_id: &str,
    high_water: i64,
    limit: usize,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT i.post_id FROM feed_inbox i \
         LEFT JOIN feed_follows f ON f.follower_id = i.user_id AND f.followee_id = i.author_id \
         WHERE i.user_id = $1 AND i.post_id <= $2 \
           AND (f.follower_id IS NOT NULL OR i.author_id = $1) \
         ORDER BY i.post_id DESC LIMIT $3",
    )
    .bind(user_id)
    .bind(high_water)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
}

/// Keeps a reader's inbox to its newest `keep` entries.
pub async fn trim_inbox(
    conn: &mut AnyConnection,
    user_id: &str,
    below: i64,
) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM feed_inbox WHERE user_id = $1 AND post_id < $2")
            .bind(user_id)
            .bind(below)
            .execute(conn)
            .await?
            .rows_affected(),
    )
}

/// Posts of followed large accounts (read by pull), newest first, at or below
/// `high_water`.
pub async fn pulled(
    pool: &AnyPool,
    user_id: &str,
    high_water: i64,
    limit: usize,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT p.id FROM feed_follows f \
         JOIN feed_posts p ON p.author_id = f.followee_id AND p.pulled = 1 \
         WHERE f.follower_id = $1 AND p.id <= $2 \
         ORDER BY p.id DESC LIMIT $3",
    )
    .bind(user_id)
    .bind(high_water)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
}

/// The most liked posts made since `since_ms`, at or below `high_water`.
pub async fn popular(
    pool: &AnyPool,
    since_ms: i64,
    high_water: i64,
    limit: usize,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM feed_posts \
         WHERE likes > 0 AND created_at_ms >= $1 AND id <= $2 AND reply_to IS NULL \
         ORDER BY likes DESC, id DESC LIMIT $3",
    )
    .bind(since_ms)
    .bind(high_water)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
}

/// The newest post id (0 when there is none).
pub async fn high_water(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    Ok(
        sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM feed_posts")
            .fetch_one(pool)
            .await?
            .unwrap_or(0),
    )
}

/// The reader's interactions per author.
pub async fn affinity(pool: &AnyPool, user_id: &str) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT author_id, interactions FROM feed_affinity WHERE user_id = $1 AND interactions > 0",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("author_id")?, r.try_get("interactions")?)))
        .collect()
}

pub async fn insert_snapshot(
    conn: &mut AnyConnection,
    id: &str,
    user_id: &str,
    now_ms: i64,
    items: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO feed_snapshots (id, user_id, created_at_ms, items) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(user_id)
    .bind(now_ms)
    .bind(items)
    .execute(conn)
    .await?;
    Ok(())
}

/// A snapshot's items, if it exists and belongs to `user_id`.
pub async fn snapshot(
    pool: &AnyPool,
    id: &str,
    user_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT items FROM feed_snapshots WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .fetch_optional(pool)
        .await
}

pub async fn delete_snapshots_before(pool: &AnyPool, before_ms: i64) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM feed_snapshots WHERE created_at_ms < $1")
            .bind(before_ms)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// A fanout job not yet done.
#[derive(Debug, Clone)]
pub struct FanoutJob {
    pub post_id: i64,
    pub author_id: String,
    pub next_follower: String,
}

pub async fn pending_jobs(pool: &AnyPool, limit: usize) -> Result<Vec<FanoutJob>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT post_id, author_id, next_follower FROM feed_fanout WHERE done = 0 \
         ORDER BY post_id LIMIT $1",
    )
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(FanoutJob {
                post_id: r.try_get("post_id")?,
                author_id: r.try_get("author_id")?,
                next_follower: r.try_get("next_follower")?,
            })
        })
        .collect()
}

/// Followers of `author` after `after` in id order, with their last feed read.
pub async fn followers_after(
    conn: &mut AnyConnection,
    author: &str,
    after: &str,
    limit: usize,
) -> Result<Vec<(String, Option<i64>)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT f.follower_id, a.last_read_ms FROM feed_follows f \
         LEFT JOIN feed_accounts a ON a.user_id = f.follower_id \
         WHERE f.followee_id = $1 AND f.follower_id > $2 \
         ORDER BY f.follower_id LIMIT $3",
    )
    .bind(author)
    .bind(after)
    .bind(limit as i64)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("follower_id")?, r.try_get("last_read_ms")?)))
        .collect()
}

/// Moves a job from `from` to `to`, first in a chunk's transaction; false when another
/// worker already moved it (then roll back).
pub async fn advance_job(
    conn: &mut AnyConnection,
    post_id: i64,
    from: &str,
    to: &str,
    delivered: i64,
    done_at_ms: Option<i64>,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE feed_fanout SET next_follower = $3, delivered = delivered + $4, \
         done = $5, done_at_ms = $6 WHERE post_id = $1 AND next_follower = $2 AND done = 0",
    )
    .bind(post_id)
    .bind(from)
    .bind(to)
    .bind(delivered)
    .bind(i64::from(done_at_ms.is_some()))
    .bind(done_at_ms)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Pushes a post into these readers' inboxes (multi-row inserts; existing entries stay).
pub async fn push_to_inboxes(
    conn: &mut AnyConnection,
    post_id: i64,
    author_id: &str,
    readers: &[&str],
) -> Result<u64, sqlx::Error> {
    let mut inserted = 0;
    for chunk in readers.chunks(INSERT_BATCH) {
        let values = (0..chunk.len())
            .map(|i| format!("(${}, $1, $2)", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO feed_inbox (user_id, post_id, author_id) VALUES {values} \
             ON CONFLICT DO NOTHING"
        );
        let mut query = sqlx::query(&sql).bind(post_id).bind(author_id);
        for reader in chunk {
            query = query.bind(*reader);
        }
        inserted += query.execute(&mut *conn).await?.rows_affected();
    }
    Ok(inserted)
}

/// A job's progress: (delivered, done).
pub async fn job_progress(
    pool: &AnyPool,
    post_id: i64,
) -> Result<Option<(i64, bool)>, sqlx::Error> {
    let row = sqlx::query("SELECT delivered, done FROM feed_fanout WHERE post_id = $1")
        .bind(post_id)
        .fetch_optional(pool)
        .await?;
    row.map(|r| Ok((r.try_get("delivered")?, r.try_get::<i64, _>("done")? != 0)))
        .transpose()
}

/// Fanout jobs not yet done.
pub async fn pending_count(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM feed_fanout WHERE done = 0")
        .fetch_one(pool)
        .await
}
