//! `meridian feed-seed --accounts N`: a power-law social graph with posts and likes,
//! bulk-loaded with multi-row inserts.
//!
//! The graph, from a seeded RNG (the same seed gives the same graph):
//! - accounts `<prefix>0 .. <prefix>N-1` are Meridian accounts, all with the password
//!   [`DEMO_PASSWORD`] (one argon2 hash, so loading needs no hashing per account);
//! - the first [`celebrities`] accounts are followed by everyone (with 1M accounts:
//!   three accounts with a million followers);
//! - every account follows on average [`MEAN_FOLLOWS`] more, picked by a Zipf law over
//!   the accounts' rank (rank = index), so followers fall off as 1/rank: with 1M
//!   accounts, more than 99% have under 100 followers;
//! - each account makes on average [`MEAN_POSTS`] posts (celebrities 20) over the last
//!   three days, and likes on average [`MEAN_LIKES`] posts of Zipf-picked authors.
//!
//! Seeded accounts have never read their feed: fanout skips them and their first read
//! rebuilds their inbox. Posts of accounts at or above the pull threshold are marked
//! pulled, as a live post of theirs would be.
//!
//! Every random choice of account `i` comes from its own RNG (seed, i), so passes over
//! the accounts can regenerate the same edges instead of holding them in memory.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::AnyConnection;

use crate::db::Db;
use crate::ids::{IdError, Ids};

/// The password of every seeded account.
pub const DEMO_PASSWORD: &str = "feed-demo-password";
/// Follows per account beyond the celebrities (mean of an exponential law).
pub const MEAN_FOLLOWS: f64 = 8.0;
/// The most follows one account draws.
pub const MAX_FOLLOWS: usize = 500;
pub const MEAN_POSTS: f64 = 2.0;
pub const CELEBRITY_POSTS: usize = 20;
pub const MEAN_LIKES: f64 = 2.0;
/// The Zipf exponent of popularity.
pub const ZIPF_EXPONENT: f64 = 1.0;
/// Posts are spread over this many milliseconds before now.
pub const POST_SPAN_MS: i64 = 3 * 24 * 3600 * 1000;
/// Rows per transaction while loading.
const ROWS_PER_TX: usize = 5_000;

/// Accounts followed by every account.
pub fn celebrities(accounts: usize) -> usize {
    match accounts {
        0 => 0,
        1..=99 => 1,
        _ => 3,
    }
}

#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub accounts: usize,
    pub seed: u64,
    /// Usernames are `<prefix><index>`.
    pub prefix: String,
    pub now_ms: i64,
    /// Posts of accounts with at least this many followers are pulled.
    pub pull_threshold: u64,
}

#[derive(Debug, Clone, Default)]
pub struct SeedReport {
    pub accounts: usize,
    pub follows: u64,
    pub posts: u64,
    pub likes: u64,
    /// The user ids, by index (`<prefix><i>` has `user_ids[i]`).
    pub user_ids: Vec<String>,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(
        "the account {0:?} exists already: seed into a fresh database or use another --prefix"
    )]
    AlreadySeeded(String),
    #[error("cannot hash the demo password: {0}")]
    Hash(String),
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Samples account ranks with probability proportional to 1/(rank+1)^s.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, exponent: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|r| {
                total += 1.0 / ((r + 1) as f64).powf(exponent);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn sample(&self, rng: &mut StdRng) -> usize {
        let total = *self.cumulative.last().unwrap_or(&0.0);
        let x = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|c| *c < x)
            .min(self.cumulative.len().saturating_sub(1))
    }
}

fn rng_for(seed: u64, account: usize, stream: u64) -> StdRng {
    StdRng::seed_from_u64(
        seed ^ (account as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream.rotate_left(56),
    )
}

/// An exponential count with this mean, capped.
fn exp_count(rng: &mut StdRng, mean: f64, cap: usize) -> usize {
    let u: f64 = rng.random::<f64>().max(1e-12);
    ((-u.ln() * mean).round() as usize).min(cap)
}

/// The accounts `i` follows.
fn follows_of(i: usize, n: usize, zipf: &Zipf, seed: u64) -> Vec<usize> {
    let mut rng = rng_for(seed, i, 1);
    let celebs = celebrities(n);
    let mut out: Vec<usize> = (0..celebs).filter(|c| *c != i).collect();
    let want = exp_count(
        &mut rng,
        MEAN_FOLLOWS,
        MAX_FOLLOWS.min(n.saturating_sub(1 + celebs)),
    );
    let mut chosen: HashSet<usize> = out.iter().copied().collect();
    let mut tries = 0;
    let target = out.len() + want;
    while out.len() < target && tries < want * 4 + 8 {
        tries += 1;
        let target = zipf.sample(&mut rng);
        if target != i && chosen.insert(target) {
            out.push(target);
        }
    }
    out
}

fn posts_of(i: usize, n: usize, seed: u64) -> usize {
    if i < celebrities(n) {
        return CELEBRITY_POSTS;
    }
    let mut rng = rng_for(seed, i, 2);
    exp_count(&mut rng, MEAN_POSTS, 50)
}

/// The (author, post number) pairs account `i` likes.
fn likes_of(i: usize, zipf: &Zipf, post_counts: &[usize], seed: u64) -> Vec<(usize, usize)> {
    let mut rng = rng_for(seed, i, 3);
    let want = exp_count(&mut rng, MEAN_LIKES, 50);
    let mut out = HashSet::new();
    for _ in 0..want * 2 {
        if out.len() >= want {
            break;
        }
        let author = zipf.sample(&mut rng);
        if author == i || post_counts[author] == 0 {
            continue;
        }
        out.insert((author, rng.random_range(0..post_counts[author])));
    }
    let mut out: Vec<_> = out.into_iter().collect();
    out.sort_unstable();
    out
}

/// Multi-row inserts of `rows` (each `columns` values), in transactions of
/// [`ROWS_PER_TX`] rows.
struct Loader<'a> {
    db: &'a Db,
    table_sql: &'static str,
    columns: usize,
    rows: Vec<Vec<Value>>,
    written: u64,
}

#[derive(Debug, Clone)]
enum Value {
    Text(String),
    Int(i64),
    NullInt,
}

impl<'a> Loader<'a> {
    fn new(db: &'a Db, table_sql: &'static str, columns: usize) -> Loader<'a> {
        Loader {
            db,
            table_sql,
            columns,
            rows: Vec::new(),
            written: 0,
        }
    }

    async fn push(&mut self, row: Vec<Value>) -> Result<(), sqlx::Error> {
        debug_assert_eq!(row.len(), self.columns);
        self.rows.push(row);
        if self.rows.len() >= ROWS_PER_TX {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), sqlx::Error> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        let per_statement = (3000 / self.columns).max(1);
        let _turn = self.db.write_turn().await;
        let mut tx = self.db.pool.begin().await?;
        for chunk in rows.chunks(per_statement) {
            insert_rows(&mut tx, self.table_sql, self.columns, chunk).await?;
        }
        tx.commit().await?;
        self.written += rows.len() as u64;
        Ok(())
    }
}

async fn insert_rows(
    conn: &mut AnyConnection,
    table_sql: &str,
    columns: usize,
    rows: &[Vec<Value>],
) -> Result<(), sqlx::Error> {
    let values = (0..rows.len())
        .map(|r| {
            let cells = (0..columns)
                .map(|c| format!("${}", r * columns + c + 1))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({cells})")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("{table_sql} VALUES {values}");
    let mut query = sqlx::query(&sql);
    for row in rows {
        for value in row {
            query = match value {
                Value::Text(t) => query.bind(t.clone()),
                Value::Int(i) => query.bind(*i),
                Value::NullInt => query.bind(None::<i64>),
            };
        }
    }
    query.execute(conn).await?;
    Ok(())
}

/// Loads the graph into `db`.
pub async fn seed(db: &Db, ids: &Ids, options: &SeedOptions) -> Result<SeedReport, SeedError> {
    let started = Instant::now();
    let n = options.accounts;
    let first = format!("{}0", options.prefix);
    if sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM users WHERE username_key = $1")
        .bind(first.to_lowercase())
        .fetch_one(&db.pool)
        .await?
        > 0
    {
        return Err(SeedError::AlreadySeeded(first));
    }
    let hash = crate::auth::password::hash_password(DEMO_PASSWORD)
        .map_err(|e| SeedError::Hash(e.to_string()))?;
    let zipf = Zipf::new(n, ZIPF_EXPONENT);

    // Pass 1 (memory only): counts.
    let mut followers = vec![0u64; n];
    let mut following = vec![0u64; n];
    for (i, count) in following.iter_mut().enumerate() {
        let out = follows_of(i, n, &zipf, options.seed);
        *count = out.len() as u64;
        for t in out {
            followers[t] += 1;
        }
    }
    let post_counts: Vec<usize> = (0..n).map(|i| posts_of(i, n, options.seed)).collect();
    let mut first_post = Vec::with_capacity(n + 1);
    let mut total_posts = 0usize;
    for c in &post_counts {
        first_post.push(total_posts);
        total_posts += c;
    }
    first_post.push(total_posts);
    let mut post_likes = vec![0u32; total_posts];
    for i in 0..n {
        for (author, k) in likes_of(i, &zipf, &post_counts, options.seed) {
            post_likes[first_post[author] + k] += 1;
        }
    }

    // Every id first: loading takes minutes, and its long transactions can hold up the
    // lease renewal that minting needs.
    let mut post_ids = Vec::with_capacity(total_posts);
    for chunk_start in (0..total_posts).step_by(1024) {
        let count = (total_posts - chunk_start).min(1024);
        post_ids.extend(ids.next_snowflakes(count)?.into_iter().map(|id| id as i64));
    }

    // Accounts.
    let mut user_ids = Vec::with_capacity(n);
    for chunk_start in (0..n).step_by(1024) {
        let count = (n - chunk_start).min(1024);
        user_ids.extend(
            ids.next_snowflakes(count)?
                .into_iter()
                .map(|id| id.to_string()),
        );
    }
    let mut users = Loader::new(
        db,
        "INSERT INTO users (id, username, username_key, password_hash, created_at_ms, role)",
        6,
    );
    for (i, id) in user_ids.iter().enumerate() {
        let name = format!("{}{i}", options.prefix);
        users
            .push(vec![
                Value::Text(id.clone()),
                Value::Text(name.clone()),
                Value::Text(name.to_lowercase()),
                Value::Text(hash.clone()),
                Value::Int(options.now_ms),
                Value::Text("viewer".into()),
            ])
            .await?;
    }
    users.flush().await?;
    let mut accounts = Loader::new(
        db,
        "INSERT INTO feed_accounts (user_id, followers, following, posts, last_read_ms)",
        5,
    );
    for (i, id) in user_ids.iter().enumerate() {
        accounts
            .push(vec![
                Value::Text(id.clone()),
                Value::Int(followers[i] as i64),
                Value::Int(following[i] as i64),
                Value::Int(post_counts[i] as i64),
                Value::NullInt,
            ])
            .await?;
    }
    accounts.flush().await?;

    // Follows (pass 2 regenerates pass 1's edges).
    let mut follows = Loader::new(
        db,
        "INSERT INTO feed_follows (follower_id, followee_id, created_at_ms)",
        3,
    );
    for i in 0..n {
        for t in follows_of(i, n, &zipf, options.seed) {
            follows
                .push(vec![
                    Value::Text(user_ids[i].clone()),
                    Value::Text(user_ids[t].clone()),
                    Value::Int(options.now_ms),
                ])
                .await?;
        }
    }
    follows.flush().await?;

    // Posts, with their like counts.
    let mut posts = Loader::new(
        db,
        "INSERT INTO feed_posts (id, author_id, text, reply_to, created_at_ms, likes, replies, pulled)",
        8,
    );
    for i in 0..n {
        let mut rng = rng_for(options.seed, i, 4);
        let pulled = followers[i] >= options.pull_threshold;
        for k in 0..post_counts[i] {
            let g = first_post[i] + k;
            let age = rng.random_range(0..POST_SPAN_MS);
            let text = format!(
                "{} #{k} from {}{i}: {}",
                WORDS[rng.random_range(0..WORDS.len())],
                options.prefix,
                WORDS[rng.random_range(0..WORDS.len())]
            );
            posts
                .push(vec![
                    Value::Int(post_ids[g]),
                    Value::Text(user_ids[i].clone()),
                    Value::Text(text),
                    Value::NullInt,
                    Value::Int(options.now_ms - age),
                    Value::Int(i64::from(post_likes[g])),
                    Value::Int(0),
                    Value::Int(i64::from(pulled)),
                ])
                .await?;
        }
    }
    posts.flush().await?;

    // Likes and the affinity they make (pass 2 of the likes).
    let mut likes = Loader::new(
        db,
        "INSERT INTO feed_likes (user_id, post_id, created_at_ms)",
        3,
    );
    let mut affinity = Loader::new(
        db,
        "INSERT INTO feed_affinity (user_id, author_id, interactions)",
        3,
    );
    for i in 0..n {
        let mut per_author: HashMap<usize, i64> = HashMap::new();
        for (author, k) in likes_of(i, &zipf, &post_counts, options.seed) {
            *per_author.entry(author).or_default() += 1;
            likes
                .push(vec![
                    Value::Text(user_ids[i].clone()),
                    Value::Int(post_ids[first_post[author] + k]),
                    Value::Int(options.now_ms),
                ])
                .await?;
        }
        let mut authors: Vec<_> = per_author.into_iter().collect();
        authors.sort_unstable();
        for (author, count) in authors {
            affinity
                .push(vec![
                    Value::Text(user_ids[i].clone()),
                    Value::Text(user_ids[author].clone()),
                    Value::Int(count),
                ])
                .await?;
        }
    }
    likes.flush().await?;
    affinity.flush().await?;

    Ok(SeedReport {
        accounts: n,
        follows: follows.written,
        posts: posts.written,
        likes: likes.written,
        user_ids,
        seconds: started.elapsed().as_secs_f64(),
    })
}

const WORDS: &[&str] = &[
    "morning",
    "coffee",
    "release",
    "benchmark",
    "river",
    "garden",
    "deploy",
    "concert",
    "recipe",
    "mountain",
    "library",
    "match",
    "sunset",
    "question",
    "update",
    "idea",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_is_a_power_law_and_reproducible() {
        let n = 5000;
        let zipf = Zipf::new(n, ZIPF_EXPONENT);
        let mut followers = vec![0u64; n];
        for i in 0..n {
            let out = follows_of(i, n, &zipf, 7);
            let unique: HashSet<_> = out.iter().collect();
            assert_eq!(unique.len(), out.len(), "no repeated follow");
            assert!(!out.contains(&i), "nobody follows themselves");
            assert_eq!(out, follows_of(i, n, &zipf, 7), "same seed, same edges");
            for t in out {
                followers[t] += 1;
            }
        }
        for (c, count) in followers.iter().enumerate().take(celebrities(n)) {
            assert_eq!(
                *count,
                n as u64 - 1,
                "celebrity {c} is followed by everyone"
            );
        }
        let under_100 = followers.iter().filter(|f| **f < 100).count();
        assert!(under_100 * 100 >= n * 95, "{under_100} of {n} under 100");
        assert_ne!(follows_of(10, n, &zipf, 7), follows_of(10, n, &zipf, 8));
    }
}
