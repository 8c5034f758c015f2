//! Cart load through the real server: `cargo bench -p meridian-tests --bench cart`.
//!
//! For each backend (SQLite always; PostgreSQL when `MERIDIAN_TEST_PG_URL` is set), two
//! servers, each a child process on a fresh database, one after the other:
//! 1. Meridian (the `meridian` binary; `CART_BENCH_SERVER_BIN` runs another build of it,
//!    e.g. main's, for a before/after comparison);
//! 2. the naive peer: this benchmark's own executable re-run as a tiny HTTP server that
//!    keeps each cart as one JSON row (`naive_carts(cart_id, json)`) and serves a request
//!    by a read-modify-write of that row in one transaction — no op log, no history, no
//!    realtime event, no idempotency. Same database settings (SQLite: WAL,
//!    `synchronous=FULL`, one writer at a time; PostgreSQL: the row locked first).
//!
//! Then 1, 64 and 512 sessions (each its own cookie jar, so its own cart) send cart ops
//! (one op per request: add, set or remove of a random product) as fast as answers come
//! back, for a bounded time per level. Prints ops/s, p50/p99 latency, the server's CPU
//! time per op (`/proc/PID/stat`, the child only; not the PostgreSQL backends') and the
//! load generator's (this process: HTTP client, cookie jars, parsing the answers, which
//! share the machine's cores with the server) per level, then the time to merge a 100-line guest cart into a 100-line
//! account cart (in-process server).
//!
//! Settings (environment): `CART_BENCH_SECS` (per level, default 5), `CART_BENCH_SEED`
//! (the op mix; printed), `CART_BENCH_LEVELS` (default `1,64,512`), `CART_BENCH_MERGES`
//! (default 10), `CART_BENCH_PEERS` (default `meridian,naive`).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_shared::cart::{CartOpInput, CartOpType, CartOpsRequest, CartView, MAX_LINES};
use meridian_tests::bench::{env_or, ms, percentile};
use meridian_tests::client::Client;
use meridian_tests::db::{Backend, TestDatabase, PG_URL_VAR};
use meridian_tests::process::ServerProcess;
use meridian_tests::server::TestServer;
use meridian_tests::ybench::cpu_time;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
/// Set in the child that serves the naive peer: the database URL.
const NAIVE_SERVE_VAR: &str = "CART_BENCH_NAIVE_SERVE";
const NAIVE_LISTENING: &str = "naive cart listening on ";

/// Which server a level runs against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peer {
    Meridian,
    Naive,
}

/// One session's loop: random ops until the deadline. Returns its latencies.
async fn session(
    client: Client,
    path: String,
    products: Arc<Vec<String>>,
    seed: u64,
    deadline: Instant,
) -> (Vec<Duration>, u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let product = products[rng.random_range(0..products.len().min(20))].clone();
        let (op_type, quantity) = match rng.random_range(0..10) {
            0..=5 => (CartOpType::Add, Some(rng.random_range(1..=3))),
            6..=8 => (CartOpType::Set, Some(rng.random_range(1..=9))),
            _ => (CartOpType::Remove, None),
        };
        let request = CartOpsRequest {
            ops: vec![CartOpInput {
                op_id: format!("bench-{seed}-{n}"),
                op_type,
                product_id: Some(product),
                quantity,
                hlc: None,
                observed: None,
            }],
        };
        let started = Instant::now();
        let reply = client.post_json(&path, &request).await;
        latencies.push(started.elapsed());
        if reply.status != 200 {
            errors += 1;
        }
    }
    (latencies, errors)
}

async fn load_level(
    peer: Peer,
    base_url: &str,
    server_pid: u32,
    products: &Arc<Vec<String>>,
    sessions: usize,
    secs: u64,
    seed: u64,
) {
    // Sessions are made (guest cookie issued) before the clock starts.
    let mut clients = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let client = Client::at(base_url);
        let path = match peer {
            Peer::Meridian => {
                let _: CartView = client.get("/api/cart").await.expect(200);
                "/api/cart/ops".to_owned()
            }
            Peer::Naive => format!("/naive/{seed}-{sessions}-{i}"),
        };
        clients.push((client, path));
    }
    let cpu_before = cpu_time(server_pid);
    let own_cpu_before = cpu_time(std::process::id());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, (client, path))| {
            tokio::spawn(session(
                client,
                path,
                products.clone(),
                seed.wrapping_add(i as u64),
                deadline,
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.expect("a session task");
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time(server_pid).saturating_sub(cpu_before);
    let own_cpu = cpu_time(std::process::id()).saturating_sub(own_cpu_before);
    latencies.sort();
    let ops = latencies.len().max(1) as f64;
    let per_op = |cpu: Duration| cpu.as_secs_f64() * 1e6 / ops;
    let of_a_core = |cpu: Duration| cpu.as_secs_f64() * 100.0 / elapsed.as_secs_f64();
    println!(
        "  {sessions:>4} sessions: {:>8.0} ops/s  p50 {:>10}  p99 {:>10}  server CPU {:>6.1} us/op ({:>3.0} % of a core)  load generator CPU {:>6.1} us/op ({:>3.0} %)  ({} ops in {:.1} s, {errors} errors)",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        per_op(cpu),
        of_a_core(cpu),
        per_op(own_cpu),
        of_a_core(own_cpu),
        latencies.len(),
        elapsed.as_secs_f64(),
    );
}

fn fill(prefix: &str, products: &[String]) -> CartOpsRequest {
    CartOpsRequest {
        ops: products
            .iter()
            .enumerate()
            .map(|(i, p)| CartOpInput {
                op_id: format!("{prefix}-{i}"),
                op_type: CartOpType::Add,
                product_id: Some(p.clone()),
                quantity: Some(1 + (i % 5) as u32),
                hlc: None,
                observed: None,
            })
            .collect(),
    }
}

/// Merges of a 100-line guest cart into a 100-line account cart (95 products in both).
async fn merges(server: &TestServer, products: &[String], runs: usize) {
    let mut times = Vec::new();
    for run in 0..runs {
        let account = Client::new(server);
        let me: meridian_shared::api::Me = account
            .signup(&format!("bench{run}"), "bench-password-1")
            .await
            .expect(201);
        let user_id = me.user.expect("signed up").id;
        let _: CartView = account
            .post_json("/api/cart/ops", &fill("acct", &products[..MAX_LINES]))
            .await
            .expect(200);
        let guest = Client::new(server);
        let _: CartView = guest
            .post_json("/api/cart/ops", &fill("guest", &products[5..5 + MAX_LINES]))
            .await
            .expect(200);
        let guest_session = guest.me().await.session_id;
        let started = Instant::now();
        let summary =
            meridian_server::cart::merge_on_sign_in(&server.state, &guest_session, &user_id)
                .await
                .expect("merge")
                .expect("a merge happened");
        times.push(started.elapsed());
        assert_eq!(summary.guest_lines as usize, MAX_LINES);
    }
    times.sort();
    println!(
        "  merge of two 100-line carts: p50 {}  min {}  max {}  ({runs} runs)",
        ms(percentile(&times, 50.0)),
        ms(times[0]),
        ms(times[times.len() - 1]),
    );
}

async fn bench(
    backend: Backend,
    peers: &[Peer],
    levels: &[usize],
    secs: u64,
    seed: u64,
    merge_runs: usize,
) {
    let server_bin = std::env::var("CART_BENCH_SERVER_BIN").unwrap_or_else(|_| BIN.to_owned());
    let products: Arc<Vec<String>> = {
        let db = TestDatabase::create(backend).await;
        let server = TestServer::start(&db).await;
        let products: Vec<String> = server
            .state
            .carts
            .catalog()
            .products()
            .iter()
            .map(|p| p.id.clone())
            .collect();
        merges(&server, &products, merge_runs).await;
        server.shutdown().await;
        Arc::new(products)
    };
    for &peer in peers {
        let db = TestDatabase::create(backend).await;
        match peer {
            Peer::Meridian => {
                println!("{backend:?}, Meridian ({server_bin}):");
                let server = ServerProcess::start(&server_bin, &db).await;
                for &sessions in levels {
                    let (url, pid) = (server.base_url(), server.pid());
                    load_level(peer, &url, pid, &products, sessions, secs, seed).await;
                }
                drop(server);
            }
            Peer::Naive => {
                println!("{backend:?}, the naive peer (one JSON row per cart, read-modify-write):");
                let (child, url) = start_naive(&db.url).await;
                let pid = child.id().expect("the naive server runs");
                for &sessions in levels {
                    load_level(peer, &url, pid, &products, sessions, secs, seed).await;
                }
                drop(child);
            }
        }
        drop(db);
    }
}

/// Starts this executable as the naive peer on `database_url`; answers it and its URL.
async fn start_naive(database_url: &str) -> (Child, String) {
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let mut child = Command::new(exe)
        .env(NAIVE_SERVE_VAR, database_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the naive peer");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    while let Some(line) = lines.next_line().await.expect("read the naive peer") {
        if let Some(addr) = line.strip_prefix(NAIVE_LISTENING) {
            return (child, format!("http://{addr}"));
        }
    }
    panic!("the naive peer exited before listening");
}

/// The naive peer's state: the pool and, on SQLite, the one-writer queue (as Meridian's).
struct Naive {
    pool: AnyPool,
    sqlite_writer: Option<tokio::sync::Mutex<()>>,
}

async fn naive_serve(database_url: &str) {
    sqlx::any::install_default_drivers();
    let sqlite = database_url.starts_with("sqlite:");
    let pool = AnyPoolOptions::new()
        .max_connections(if sqlite { 8 } else { 16 })
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if sqlite {
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = FULL",
                        "PRAGMA busy_timeout = 10000",
                    ] {
                        conn.execute(pragma).await?;
                    }
                }
                Ok(())
            })
        })
        .connect(database_url)
        .await
        .expect("the naive peer's database");
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS naive_carts (cart_id TEXT PRIMARY KEY, json TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("create naive_carts");
    let naive = Arc::new(Naive {
        pool,
        sqlite_writer: sqlite.then(|| tokio::sync::Mutex::new(())),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    println!(
        "{NAIVE_LISTENING}{}",
        listener.local_addr().expect("an address")
    );
    loop {
        let (stream, _) = listener.accept().await.expect("accept");
        tokio::spawn(naive_connection(naive.clone(), stream));
    }
}

/// One keep-alive HTTP/1.1 connection: `POST /naive/{cart}` with one `CartOpInput`.
async fn naive_connection(naive: Arc<Naive>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if read.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if read.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if read.read_exact(&mut body).await.is_err() {
            return;
        }
        let cart_id = request_line
            .split_whitespace()
            .nth(1)
            .and_then(|path| path.strip_prefix("/naive/"))
            .unwrap_or("")
            .to_owned();
        let (status, reply) = match serde_json::from_slice::<CartOpsRequest>(&body) {
            Ok(request) => match naive_apply(&naive, &cart_id, &request.ops).await {
                Ok(json) => ("200 OK", json),
                Err(err) => (
                    "500 Internal Server Error",
                    format!(
                        "{{\"code\":\"internal\",\"message\":{:?}}}",
                        err.to_string()
                    ),
                ),
            },
            Err(err) => (
                "422 Unprocessable Entity",
                format!("{{\"code\":\"invalid\",\"message\":{:?}}}", err.to_string()),
            ),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            reply.len()
        );
        if write.write_all(head.as_bytes()).await.is_err()
            || write.write_all(reply.as_bytes()).await.is_err()
        {
            return;
        }
    }
}

/// The read-modify-write: lock (create) the row, apply the ops to its JSON map of
/// product -> quantity, write it back, commit.
async fn naive_apply(
    naive: &Naive,
    cart_id: &str,
    ops: &[CartOpInput],
) -> Result<String, sqlx::Error> {
    let _turn = match &naive.sqlite_writer {
        Some(writer) => Some(writer.lock().await),
        None => None,
    };
    let mut tx = naive.pool.begin().await?;
    let json: String = sqlx::query_scalar(
        "INSERT INTO naive_carts (cart_id, json) VALUES ($1, '{}')
         ON CONFLICT (cart_id) DO UPDATE SET json = naive_carts.json RETURNING json",
    )
    .bind(cart_id)
    .fetch_one(&mut *tx)
    .await?;
    let mut lines: BTreeMap<String, u32> =
        serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    for op in ops {
        let product = op.product_id.clone().unwrap_or_default();
        match op.op_type {
            CartOpType::Add => *lines.entry(product).or_default() += op.quantity.unwrap_or(1),
            CartOpType::Set => {
                lines.insert(product, op.quantity.unwrap_or(0));
            }
            CartOpType::Remove => {
                lines.remove(&product);
            }
            CartOpType::Clear => lines.clear(),
        }
    }
    let json = serde_json::to_string(&lines).expect("serialises");
    sqlx::query("UPDATE naive_carts SET json = $2 WHERE cart_id = $1")
        .bind(cart_id)
        .bind(&json)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(json)
}

fn main() {
    if let Ok(url) = std::env::var(NAIVE_SERVE_VAR) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(naive_serve(&url));
        return;
    }
    let secs = env_or("CART_BENCH_SECS", 5u64);
    let merge_runs = env_or("CART_BENCH_MERGES", 10usize);
    let seed = env_or("CART_BENCH_SEED", rand::random::<u64>());
    let levels: Vec<usize> = std::env::var("CART_BENCH_LEVELS")
        .unwrap_or_else(|_| "1,64,512".into())
        .split(',')
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let peers: Vec<Peer> = std::env::var("CART_BENCH_PEERS")
        .unwrap_or_else(|_| "meridian,naive".into())
        .split(',')
        .filter_map(|p| match p.trim() {
            "meridian" => Some(Peer::Meridian),
            "naive" => Some(Peer::Naive),
            _ => None,
        })
        .collect();
    println!("cart load: seed={seed} (CART_BENCH_SEED), {secs} s per level, one op per request, loopback");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        bench(Backend::Sqlite, &peers, &levels, secs, seed, merge_runs).await;
        if std::env::var(PG_URL_VAR).is_ok() {
            bench(Backend::Postgres, &peers, &levels, secs, seed, merge_runs).await;
        } else {
            println!("PostgreSQL: skipped ({PG_URL_VAR} is not set)");
        }
    });
}
