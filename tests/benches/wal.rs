//! The replicated WAL's durable appends: `cargo bench -p meridian-tests --bench wal`.
//!
//! Three `meridian wal-node` processes on 127.0.0.1, all on this machine's one disk. At
//! 1, 16 and 64 concurrent clients, each client appends one record (a 16-byte key and a
//! 100-byte value) per request to the leader (`POST /wal/append`, answered once a
//! majority holds it durably), as fast as answers come back, for a bounded time per
//! level. Prints appends/s, p50/p99 latency and the nodes' CPU time per append (all
//! three processes, `/proc/PID/stat`).
//!
//! In the same run, the peers:
//! - PostgreSQL (when `MERIDIAN_TEST_PG_URL` is set) with `synchronous_commit = on`: the
//!   same records as one autocommitted `INSERT` per request from 1, 16 and 64
//!   connections — one durable copy where the WAL keeps three;
//! - the disk itself: one thread writing 4 KiB and calling `fdatasync` in a loop, the
//!   single-node ceiling both stand on.
//!
//! Settings (environment): `WAL_BENCH_SECS` (per level, default 5), `WAL_BENCH_LEVELS`
//! (default `1,16,64`).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_shared::wal::WalAppendResponse;
use meridian_tests::bench::{env_or, ms, percentile};
use meridian_tests::db::{Backend, TestDatabase, PG_URL_VAR};
use meridian_tests::wal::Cluster;
use meridian_tests::ybench::cpu_time;
use serde_json::json;
use sqlx::any::AnyPoolOptions;
use sqlx::Executor;

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const VALUE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdefWXYZ";

/// What one level measured.
struct Level {
    clients: usize,
    latencies: Vec<Duration>,
    elapsed: Duration,
    errors: usize,
    cpu: Option<Duration>,
}

impl Level {
    fn print(&mut self, name: &str) {
        self.latencies.sort();
        let count = self.latencies.len();
        let rate = count as f64 / self.elapsed.as_secs_f64();
        let cpu = match self.cpu {
            Some(cpu) if count > 0 => format!(
                "  CPU {:.1} us/append ({:.0} % of a core)",
                cpu.as_secs_f64() * 1e6 / count as f64,
                100.0 * cpu.as_secs_f64() / self.elapsed.as_secs_f64()
            ),
            _ => String::new(),
        };
        println!(
            "  {name:<24} {:>3} clients: {rate:>8.0} appends/s  p50 {:>9}  p99 {:>9}{cpu}  ({count} in {:.1} s, {} errors)",
            self.clients,
            ms(percentile(&self.latencies, 50.0)),
            ms(percentile(&self.latencies, 99.0)),
            self.elapsed.as_secs_f64(),
            self.errors,
        );
    }
}

/// Runs `clients` loops of `op` for `secs`, each op timed.
async fn drive<F, Fut>(clients: usize, secs: f64, op: F) -> (Vec<Duration>, Duration, usize)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for client in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors, mut n) = (Vec::new(), 0, 0u64);
            while Instant::now() < until {
                let at = Instant::now();
                if op(client, n).await {
                    latencies.push(at.elapsed());
                } else {
                    errors += 1;
                }
                n += 1;
            }
            (latencies, errors)
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (l, e) = task.await.expect("a client task");
        latencies.extend(l);
        errors += e;
    }
    (latencies, started.elapsed(), errors)
}

async fn wal_levels(levels: &[usize], secs: f64) {
    let cluster = Cluster::start(Path::new(BIN), 3, &[]).await;
    let leader = cluster.wait_for_leader(None).await;
    let pids: Vec<u32> = cluster
        .nodes
        .iter()
        .filter_map(|n| n.child.as_ref().and_then(|c| c.id()))
        .collect();
    let url = cluster.node(leader).url("/wal/append");
    println!("Meridian WAL, three nodes (leader {leader}):");
    for &clients in levels {
        let cpu_before: Duration = pids.iter().map(|&p| cpu_time(p)).sum();
        let http = cluster.http.clone();
        let url = url.clone();
        let (latencies, elapsed, errors) = drive(clients, secs, move |client, n| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let body =
                    json!({"records": [{"key": format!("c{client:03}-{n:010}"), "value": VALUE}]});
                match http.post(&url).json(&body).send().await {
                    Ok(response) if response.status().is_success() => {
                        response.json::<WalAppendResponse>().await.is_ok()
                    }
                    _ => false,
                }
            }
        })
        .await;
        let cpu: Duration = pids.iter().map(|&p| cpu_time(p)).sum();
        Level {
            clients,
            latencies,
            elapsed,
            errors,
            cpu: Some(cpu.saturating_sub(cpu_before)),
        }
        .print("WAL (3 copies)");
    }
}

async fn postgres_levels(levels: &[usize], secs: f64) {
    let db = TestDatabase::create(Backend::Postgres).await;
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(levels.iter().copied().max().unwrap_or(1) as u32)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("SET synchronous_commit = on").await?;
                Ok(())
            })
        })
        .connect(&db.url)
        .await
        .expect("connect to the benchmark database");
    pool.execute(
        "CREATE TABLE wal_peer (lsn BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, value TEXT NOT NULL)",
    )
    .await
    .expect("create the peer's table");
    // The test cluster of scripts/lib.sh runs with fsync off (set on its command line, so
    // no ALTER SYSTEM can turn it on): equal durability needs MERIDIAN_TEST_PG_URL to name
    // a server with fsync on. The figure says which it was.
    let fsync = show_fsync(&pool).await;
    if fsync != "on" {
        println!("  (fsync is off on this PostgreSQL: not equal durability; point {PG_URL_VAR} at one with fsync on)");
    }
    println!("PostgreSQL, synchronous_commit = on, fsync = {fsync} (one copy):");
    for &clients in levels {
        let pool = pool.clone();
        let (latencies, elapsed, errors) = drive(clients, secs, move |client, n| {
            let pool = pool.clone();
            async move {
                sqlx::query("INSERT INTO wal_peer (key, value) VALUES ($1, $2)")
                    .bind(format!("c{client:03}-{n:010}"))
                    .bind(VALUE)
                    .execute(&pool)
                    .await
                    .is_ok()
            }
        })
        .await;
        Level {
            clients,
            latencies,
            elapsed,
            errors,
            cpu: None,
        }
        .print("PostgreSQL (1 copy)");
    }
    pool.close().await;
}

async fn show_fsync(pool: &sqlx::AnyPool) -> String {
    sqlx::query_scalar("SHOW fsync")
        .fetch_one(pool)
        .await
        .expect("SHOW fsync")
}

/// `fdatasync`s per second of one thread on one file, each after a 4 KiB write.
fn disk_fsyncs(secs: f64) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut file = std::fs::File::create(dir.path().join("fsync")).expect("a file");
    let block = [7u8; 4096];
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        file.write_all(&block).expect("write");
        file.sync_data().expect("fdatasync");
        count += 1;
    }
    count as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let secs: f64 = env_or("WAL_BENCH_SECS", 5.0);
    let levels: Vec<usize> = env_or("WAL_BENCH_LEVELS", "1,16,64".to_owned())
        .split(',')
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    println!(
        "WAL durable appends: {secs} s per level, one record (16-byte key, 100-byte value) per request, loopback, one disk"
    );
    println!(
        "  the disk: {:.0} fdatasyncs/s (one thread, 4 KiB each)",
        disk_fsyncs(2.0)
    );
    wal_levels(&levels, secs).await;
    if std::env::var(PG_URL_VAR).is_ok() {
        postgres_levels(&levels, secs).await;
    } else {
        println!("PostgreSQL: skipped ({PG_URL_VAR} is not set)");
    }
}
