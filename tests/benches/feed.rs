//! The news feed on a seeded power-law graph: `cargo bench -p meridian-tests --bench feed`.
//!
//! 1. `meridian feed-seed --accounts N` into a fresh SQLite database (timed): N accounts,
//!    three followed by everyone, Zipf-distributed follows, posts and likes.
//! 2. Three peers, each the real server (a child process) on that database, prepared as
//!    its strategy would have left it (posts marked pulled or not, inboxes empty, every
//!    reader returning so their first read rebuilds their inbox):
//!    - `hybrid`: authors with ≥ `FEED_BENCH_THRESHOLD` followers (default 10,000) are
//!      pulled at read, the others fanned out on write (Meridian's strategy);
//!    - `write-only`: fanout on write for everyone (threshold = ∞);
//!    - `read-only`: fanout on read for everyone (threshold 0: every post pulled).
//! 3. Per peer: `FEED_BENCH_READERS` sampled accounts (seeded RNG) sign in (each from its
//!    own 127.0.0.x, so the sign-in limiter does not count them together), read once
//!    (the rebuild; timed apart), then read first pages (limit 20: candidates, ranking,
//!    a snapshot row): one at a time for half of `FEED_BENCH_SECS` (latency without
//!    queueing), then all at once in a closed loop for `FEED_BENCH_SECS` (p50/p99,
//!    reads/s, server CPU per 1,000 reads from `/proc/PID/stat` of the child).
//! 4. Fanout: every account is marked active; the 20 largest authors under the hybrid
//!    threshold (the same in every peer) post (deliveries/s until their jobs are done); then `demo0` (followed by
//!    every account) posts, and a typical author (10 to 100 followers) right after it: the time until the
//!    big post is readable by every follower (pulled: at commit; pushed: when its job is
//!    done, at most `FEED_BENCH_FANOUT_WAIT` s, else the rate so far extrapolated), and
//!    the ordinary post's fanout time meanwhile.
//!
//! Settings: `FEED_BENCH_ACCOUNTS` (default 1,000,000; e.g. 20000 for a quick run),
//! `FEED_BENCH_SECS` (10), `FEED_BENCH_READERS` (16), `FEED_BENCH_SEED` (1),
//! `FEED_BENCH_PEERS` (`hybrid,write-only,read-only`), `FEED_BENCH_FANOUT_WAIT` (120).
//! SQLite only: the figures are for the embedded default on this machine's cores.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use meridian_shared::feed::{FeedPage, FeedPost};
use meridian_tests::bench::{env_or, ms, percentile};
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::ybench::cpu_time;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::AnyPool;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const PASSWORD: &str = meridian_server::feed::seed::DEMO_PASSWORD;

struct Server {
    child: Child,
    base: String,
}

async fn start_server(db: &TestDatabase, threshold: u64) -> Server {
    let static_dir = db.data_dir().join("static-empty");
    std::fs::create_dir_all(&static_dir).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--static-dir"])
        .arg(&static_dir)
        .arg("--data-dir")
        .arg(db.data_dir())
        .env("DATABASE_URL", &db.url)
        .env("MERIDIAN_FEED_PULL_THRESHOLD", threshold.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the server");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(addr) = line.strip_prefix("Meridian listening on ") {
            return Server {
                child,
                base: addr.to_owned(),
            };
        }
    }
    panic!("the server exited before listening");
}

/// A browser signed in as `username`, connecting from `127.0.0.<n>`.
async fn signed_in(base: &str, username: &str, n: usize) -> reqwest::Client {
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, (n / 250) as u8, 2 + (n % 250) as u8));
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .local_address(ip)
        .build()
        .unwrap();
    let reply = client
        .post(format!("{base}/api/auth/signin"))
        .json(&serde_json::json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(
        reply.status().is_success(),
        "sign in {username}: {}",
        reply.status()
    );
    client
}

async fn read_feed(client: &reqwest::Client, base: &str) -> FeedPage {
    let reply = client
        .get(format!("{base}/api/feed?limit=20"))
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success(), "feed: {}", reply.status());
    reply.json().await.unwrap()
}

/// Whether `post_id` is anywhere in the reader's ranked feed (every page).
async fn feed_contains(client: &reqwest::Client, base: &str, post_id: &str) -> bool {
    let mut page = read_feed(client, base).await;
    loop {
        if page.items.iter().any(|i| i.post.id == post_id) {
            return true;
        }
        let Some(cursor) = page.next_cursor else {
            return false;
        };
        let reply = client
            .get(format!("{base}/api/feed?limit=100&cursor={cursor}"))
            .send()
            .await
            .unwrap();
        page = reply.json().await.unwrap();
    }
}

async fn post(client: &reqwest::Client, base: &str, text: &str) -> FeedPost {
    let reply = client
        .post(format!("{base}/api/feed/posts"))
        .json(&serde_json::json!({"text": text}))
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success(), "post: {}", reply.status());
    reply.json().await.unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Leaves the database as `threshold`'s strategy would have: posts pulled or not, no
/// inboxes, every reader returning.
async fn prepare(pool: &AnyPool, threshold: u64) {
    let threshold = i64::try_from(threshold).unwrap_or(i64::MAX);
    for sql in [
        "DELETE FROM feed_inbox",
        "DELETE FROM feed_snapshots",
        "DELETE FROM feed_fanout",
        "DELETE FROM realtime_events WHERE topic LIKE 'user:%'",
        "DELETE FROM realtime_topics WHERE topic LIKE 'user:%'",
        "UPDATE feed_accounts SET last_read_ms = NULL",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
    sqlx::query(
        "UPDATE feed_posts SET pulled = CASE WHEN author_id IN \
         (SELECT user_id FROM feed_accounts WHERE followers >= $1) THEN 1 ELSE 0 END",
    )
    .bind(threshold)
    .execute(pool)
    .await
    .unwrap();
}

async fn username_of(pool: &AnyPool, user_id: &str) -> String {
    sqlx::query_scalar("SELECT username FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn pending(pool: &AnyPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM feed_fanout WHERE done = 0")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn delivered(pool: &AnyPool) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>("SELECT SUM(delivered) FROM feed_fanout")
        .fetch_one(pool)
        .await
        .unwrap()
        .unwrap_or(0)
}

async fn job_done(pool: &AnyPool, post_id: &str) -> Option<bool> {
    sqlx::query_scalar::<_, i64>("SELECT done FROM feed_fanout WHERE post_id = $1")
        .bind(post_id.parse::<i64>().unwrap())
        .fetch_optional(pool)
        .await
        .unwrap()
        .map(|d| d == 1)
}

struct Settings {
    accounts: usize,
    secs: u64,
    readers: usize,
    seed: u64,
    threshold: u64,
    fanout_wait: u64,
}

async fn run_peer(name: &str, threshold: u64, db: &TestDatabase, pool: &AnyPool, s: &Settings) {
    println!(
        "\n== {name} (pull threshold {}) ==",
        if threshold == u64::MAX {
            "∞".to_owned()
        } else {
            threshold.to_string()
        }
    );
    prepare(pool, threshold).await;
    let mut server = start_server(db, threshold).await;
    let base = server.base.clone();
    let pid = server.child.id().unwrap();

    // Readers: a seeded sample of ordinary accounts.
    let mut rng = StdRng::seed_from_u64(s.seed);
    let mut readers = Vec::new();
    let mut rebuilds = Vec::new();
    for n in 0..s.readers {
        let index = rng.random_range(3..s.accounts);
        let client = signed_in(&base, &format!("demo{index}"), n).await;
        let started = Instant::now();
        read_feed(&client, &base).await;
        rebuilds.push(started.elapsed());
        readers.push(client);
    }
    rebuilds.sort();
    println!(
        "first read (inbox rebuild) of {} readers: p50 {} p99 {}",
        rebuilds.len(),
        ms(percentile(&rebuilds, 50.0)),
        ms(percentile(&rebuilds, 99.0))
    );

    // One read at a time (round robin over the readers): latency without queueing.
    let mut alone = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(s.secs.div_ceil(2));
    let mut k = 0;
    while Instant::now() < deadline {
        let started = Instant::now();
        read_feed(&readers[k % readers.len()], &base).await;
        alone.push(started.elapsed());
        k += 1;
    }
    alone.sort();
    println!(
        "feed reads one at a time: {} reads: p50 {} p99 {}",
        alone.len(),
        ms(percentile(&alone, 50.0)),
        ms(percentile(&alone, 99.0))
    );

    // Closed-loop reads, every reader at once.
    let cpu_before = cpu_time(pid);
    let deadline = Instant::now() + Duration::from_secs(s.secs);
    let mut tasks = Vec::new();
    for client in &readers {
        let client = client.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                read_feed(&client, &base).await;
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    latencies.sort();
    let reads = latencies.len().max(1);
    println!(
        "feed reads: {} in {} s ({:.0}/s, {} readers): p50 {} p99 {}; server CPU {:.0} ms per 1,000 reads",
        latencies.len(),
        s.secs,
        latencies.len() as f64 / s.secs as f64,
        s.readers,
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        cpu.as_secs_f64() * 1000.0 * 1000.0 / reads as f64,
    );

    // Fanout: everyone active.
    sqlx::query("UPDATE feed_accounts SET last_read_ms = $1")
        .bind(now_ms())
        .execute(pool)
        .await
        .unwrap();
    // The same ordinary authors in every peer: the largest under the hybrid threshold.
    let cap = i64::try_from(s.threshold).unwrap_or(i64::MAX);
    let authors: Vec<String> = sqlx::query_scalar(
        "SELECT user_id FROM feed_accounts WHERE followers < $1 ORDER BY followers DESC LIMIT 20",
    )
    .bind(cap)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut author_clients = Vec::new();
    for (k, id) in authors.iter().enumerate() {
        let name = username_of(pool, id).await;
        author_clients.push(signed_in(&base, &name, 1000 + k).await);
    }
    if !author_clients.is_empty() {
        let before = delivered(pool).await;
        let started = Instant::now();
        for c in &author_clients {
            post(c, &base, "bench: an ordinary post").await;
        }
        while pending(pool).await > 0 && started.elapsed() < Duration::from_secs(s.fanout_wait) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed();
        let n = delivered(pool).await - before;
        if n > 0 {
            println!(
                "fanout of {} ordinary posts: {} deliveries in {:.2} s = {:.0} deliveries/s",
                author_clients.len(),
                n,
                elapsed.as_secs_f64(),
                n as f64 / elapsed.as_secs_f64()
            );
        } else {
            println!(
                "fanout of {} ordinary posts: none (all pulled)",
                author_clients.len()
            );
        }
    }

    // The million-follower post, and a typical author's (10 to 100 followers) right after.
    let typical: Option<String> = sqlx::query_scalar(
        "SELECT user_id FROM feed_accounts WHERE followers BETWEEN 10 AND 100 \
         ORDER BY user_id LIMIT 1",
    )
    .fetch_optional(pool)
    .await
    .unwrap();
    let typical = match typical {
        Some(id) => Some(signed_in(&base, &username_of(pool, &id).await, 3000).await),
        None => None,
    };
    let celebrity = signed_in(&base, "demo0", 2000).await;
    let started = Instant::now();
    let big = post(&celebrity, &base, "bench: to every follower").await;
    let committed = started.elapsed();
    let ordinary = match typical.as_ref() {
        Some(c) => Some((
            post(c, &base, "bench: right after the big one").await,
            Instant::now(),
        )),
        None => None,
    };
    let followers: i64 =
        sqlx::query_scalar("SELECT followers FROM feed_accounts WHERE user_id = $1")
            .bind(&big.author_id)
            .fetch_one(pool)
            .await
            .unwrap();
    let mut ordinary_done: Option<Duration> = None;
    match job_done(pool, &big.id).await {
        None => {
            // Pulled: readable by every follower once committed; check a reader.
            let seen = feed_contains(&readers[0], &base, &big.id).await;
            println!(
                "post by demo0 ({followers} followers): pulled, readable by every follower at commit: {} (seen by a sampled reader on the next read: {seen})",
                ms(committed)
            );
        }
        Some(_) => {
            let limit = Duration::from_secs(s.fanout_wait);
            loop {
                if let (None, Some((p, at))) = (ordinary_done, &ordinary) {
                    if job_done(pool, &p.id).await == Some(true) {
                        ordinary_done = Some(at.elapsed());
                    }
                }
                if job_done(pool, &big.id).await == Some(true) || started.elapsed() > limit {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let done_in = started.elapsed();
            let progress: i64 =
                sqlx::query_scalar("SELECT delivered FROM feed_fanout WHERE post_id = $1")
                    .bind(big.id.parse::<i64>().unwrap())
                    .fetch_one(pool)
                    .await
                    .unwrap();
            if job_done(pool, &big.id).await == Some(true) {
                let seen = feed_contains(&readers[0], &base, &big.id).await;
                println!("a sampled follower finds it in their feed: {seen}");
                println!(
                    "post by demo0 ({followers} followers): pushed, readable by every follower after {:.2} s ({:.0} deliveries/s)",
                    done_in.as_secs_f64(),
                    progress as f64 / done_in.as_secs_f64()
                );
            } else {
                let rate = progress as f64 / done_in.as_secs_f64();
                println!(
                    "post by demo0 ({followers} followers): pushed, {progress} delivered in {:.0} s ({rate:.0}/s); all followers after about {:.0} s (extrapolated)",
                    done_in.as_secs_f64(),
                    followers as f64 / rate.max(1.0)
                );
            }
        }
    }
    if let Some((p, at)) = &ordinary {
        if ordinary_done.is_none() {
            while job_done(pool, &p.id).await == Some(false)
                && at.elapsed() < Duration::from_secs(s.fanout_wait)
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            ordinary_done = Some(at.elapsed());
        }
        match job_done(pool, &p.id).await {
            Some(_) => println!(
                "a typical author's post right after it: fanned out in {}",
                ms(ordinary_done.unwrap())
            ),
            None => println!("a typical author's post right after it: pulled (no fanout)"),
        }
    }
    let _ = server.child.kill().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let s = Settings {
        accounts: env_or("FEED_BENCH_ACCOUNTS", 1_000_000usize).max(100),
        secs: env_or("FEED_BENCH_SECS", 10u64),
        readers: env_or("FEED_BENCH_READERS", 16usize).max(1),
        seed: env_or("FEED_BENCH_SEED", 1u64),
        threshold: env_or("FEED_BENCH_THRESHOLD", 10_000u64),
        fanout_wait: env_or("FEED_BENCH_FANOUT_WAIT", 120u64),
    };
    let peers: String = env_or("FEED_BENCH_PEERS", "hybrid,write-only,read-only".to_owned());
    println!(
        "feed benchmark: {} accounts, seed {}, {} readers, {} s per read phase",
        s.accounts, s.seed, s.readers, s.secs
    );
    let db = TestDatabase::create(Backend::Sqlite).await;
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["feed-seed", "--accounts", &s.accounts.to_string()])
        .args(["--seed", &s.seed.to_string()])
        .args(["--pull-threshold", &s.threshold.to_string()])
        .arg("--data-dir")
        .arg(db.data_dir())
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run feed-seed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    println!("seed: {:.1} s", started.elapsed().as_secs_f64());
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .connect(&db.url)
        .await
        .unwrap();
    let (under_100, max_followers): (i64, i64) = sqlx::query_as(
        "SELECT SUM(CASE WHEN followers < 100 THEN 1 ELSE 0 END), MAX(followers) FROM feed_accounts",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    println!(
        "graph: {under_100} of {} accounts under 100 followers; the largest has {max_followers}",
        s.accounts
    );
    for peer in peers.split(',') {
        match peer.trim() {
            "hybrid" => run_peer("hybrid", s.threshold, &db, &pool, &s).await,
            "write-only" => run_peer("fanout on write only", u64::MAX, &db, &pool, &s).await,
            "read-only" => run_peer("fanout on read only", 0, &db, &pool, &s).await,
            other => eprintln!("unknown peer {other:?}"),
        }
    }
    pool.close().await;
}
