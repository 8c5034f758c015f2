//! The flash sale under a rush: `cargo bench -p meridian-tests --bench sales`
//! (`-- --quick`, or `SALE_BENCH_QUICK=1`, for a short run). Needs PostgreSQL
//! (`MERIDIAN_TEST_PG_URL`): the naive peer is a PostgreSQL row.
//!
//! Two servers, each a child process on a fresh PostgreSQL database, one after the
//! other, facing the same load:
//! 1. Meridian (the `meridian` binary): checkout (a session cookie, an idempotency key),
//!    then pay for each reservation (simulated payments that never fail here);
//! 2. the naive peer: this benchmark's executable re-run as a tiny axum server with one
//!    row, `UPDATE naive_sale SET stock = stock - 1 WHERE id = 1 AND stock > 0` per
//!    request (autocommit; 16 connections, as Meridian's pool): a decrement is an order.
//!
//! The load: `SALE_BENCH_ATTEMPTS` (500,000) checkout attempts scheduled evenly over
//! `SALE_BENCH_SECS` (10) for `SALE_BENCH_UNITS` (10,000) units, from
//! `SALE_BENCH_BUYERS` (20,000) buyers (guest sessions made before the clock starts; one
//! unit per buyer) over `SALE_BENCH_WORKERS` (256) connections spread across the source
//! addresses 127.0.0.1–127.0.0.4. An attempt is sent at its time or, when the server
//! falls behind, as soon as a connection is free; every attempt is answered.
//!
//! Then the ledgers alone, in this process and without HTTP (`SALE_BENCH_PARTS`, default
//! `http,ledger`): `SALE_BENCH_WORKERS` tasks check out and pay through the sale's writer
//! of an in-process server, against as many tasks running the naive `UPDATE` on 16
//! connections, on the same PostgreSQL, until the units are sold. This is the part that
//! does not scale out with front ends (one row per sale), so it is what a cluster's
//! orders per second are bounded by. The PostgreSQL's `fsync` setting is printed: the
//! test cluster of scripts/lib.sh runs with it off; point `MERIDIAN_TEST_PG_URL` at one
//! with it on for durable commits.
//!
//! Printed per server: time to sell out (the last unit's order confirmed), admitted
//! checkouts' p50/p99 latency, orders per second (units / time to sell out), answers by
//! status, oversold units (must be 0: checked against the database), and the server's
//! CPU time per 1,000 attempts (`/proc/PID/stat` of the child; the load generator is
//! this process). Then the ratio of orders per second.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use meridian_shared::ids::format_rfc3339_ms;
use meridian_shared::sales::{CheckoutAnswer, SaleView};
use meridian_tests::bench::{env_or, ms, percentile};
use meridian_tests::client::{Client, SESSION_COOKIE};
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::process::ServerProcess;
use meridian_tests::ybench::cpu_time;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
/// Set in the child that serves the naive peer: the database URL.
const NAIVE_SERVE_VAR: &str = "SALE_BENCH_NAIVE_SERVE";
const NAIVE_LISTENING: &str = "naive sale listening on ";
const SOURCES: u8 = 4;

#[derive(Clone, Copy)]
struct Settings {
    attempts: usize,
    units: i64,
    buyers: usize,
    window: Duration,
    workers: usize,
}

/// What one run measured.
#[derive(Default)]
struct Outcome {
    /// (status, count) of every checkout answer; 0 for a transport error.
    statuses: std::collections::BTreeMap<u16, u64>,
    admitted: Vec<Duration>,
    /// When each unit was reserved (answered 200), since the start.
    reserved: Vec<Duration>,
    /// When each order was confirmed, since the start.
    orders: Vec<Duration>,
    elapsed: Duration,
    cpu: Duration,
}

fn clients() -> Vec<reqwest::Client> {
    (1..=SOURCES)
        .map(|n| {
            reqwest::Client::builder()
                .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
                .pool_max_idle_per_host(1024)
                .timeout(Duration::from_secs(60))
                .build()
                .expect("a client")
        })
        .collect()
}

/// Runs the attempts against `base` (`checkout(i)` builds attempt `i`'s request, `pay`
/// the payment of a reservation; `None` for the naive peer, whose 200 is the order).
async fn rush(
    settings: Settings,
    base: String,
    pid: u32,
    cookies: Arc<Vec<String>>,
    meridian_sale: Option<String>,
) -> Outcome {
    let clients = clients();
    let next = Arc::new(AtomicUsize::new(0));
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let cpu_before = cpu_time(pid);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..settings.workers {
        let client = clients[w % clients.len()].clone();
        let (next, outcome, cookies, base) =
            (next.clone(), outcome.clone(), cookies.clone(), base.clone());
        let sale = meridian_sale.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
            let mut admitted = Vec::new();
            let mut reserved = Vec::new();
            let mut orders = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= settings.attempts {
                    break;
                }
                let at = start + settings.window.mul_f64(i as f64 / settings.attempts as f64);
                tokio::time::sleep_until(at.into()).await;
                let sent = Instant::now();
                let request = match &sale {
                    Some(sale) => client
                        .post(format!("{base}/api/sales/{sale}/checkout"))
                        .header("Idempotency-Key", format!("a{i}"))
                        .header(
                            "Cookie",
                            format!("{SESSION_COOKIE}={}", cookies[i % cookies.len()]),
                        ),
                    None => client.post(format!("{base}/checkout")),
                };
                let Ok(response) = request.send().await else {
                    *statuses.entry(0).or_default() += 1;
                    continue;
                };
                let status = response.status().as_u16();
                *statuses.entry(status).or_default() += 1;
                let body = response.bytes().await.unwrap_or_default();
                if status != 200 {
                    continue;
                }
                admitted.push(sent.elapsed());
                reserved.push(start.elapsed());
                let Some(_) = &sale else {
                    orders.push(start.elapsed());
                    continue;
                };
                let Ok(CheckoutAnswer::Reserved { reservation_id, .. }) =
                    serde_json::from_slice::<CheckoutAnswer>(&body)
                else {
                    continue;
                };
                let paid = client
                    .post(format!("{base}/api/reservations/{reservation_id}/pay"))
                    .header(
                        "Cookie",
                        format!("{SESSION_COOKIE}={}", cookies[i % cookies.len()]),
                    )
                    .send()
                    .await;
                if paid.is_ok_and(|r| r.status().as_u16() == 200) {
                    orders.push(start.elapsed());
                }
            }
            let mut outcome = outcome.lock().unwrap();
            for (status, n) in statuses {
                *outcome.statuses.entry(status).or_default() += n;
            }
            outcome.admitted.extend(admitted);
            outcome.reserved.extend(reserved);
            outcome.orders.extend(orders);
        }));
    }
    for task in tasks {
        task.await.expect("a worker");
    }
    let elapsed = start.elapsed();
    let mut outcome = Arc::try_unwrap(outcome)
        .ok()
        .expect("workers done")
        .into_inner()
        .unwrap();
    outcome.elapsed = elapsed;
    outcome.cpu = cpu_time(pid).saturating_sub(cpu_before);
    outcome.admitted.sort();
    outcome.orders.sort();
    outcome.reserved.sort();
    outcome
}

fn report(name: &str, settings: Settings, outcome: &Outcome, oversold: i64) -> f64 {
    let answered: u64 = outcome.statuses.values().sum();
    let orders = outcome.orders.len();
    let sell_out = outcome.orders.last().copied().unwrap_or(outcome.elapsed);
    let per_second = orders as f64 / sell_out.as_secs_f64().max(1e-9);
    println!("== {name}");
    println!(
        "  attempts {} answered {} in {:.2} s ({:.0}/s offered and answered)",
        settings.attempts,
        answered,
        outcome.elapsed.as_secs_f64(),
        answered as f64 / outcome.elapsed.as_secs_f64()
    );
    println!(
        "  answers by status: {:?} (0 = no answer)",
        outcome.statuses
    );
    println!(
        "  orders {orders} of {} units; time to sell out {:.3} s; orders/s {:.0}",
        settings.units,
        sell_out.as_secs_f64(),
        per_second
    );
    let all_reserved = outcome.reserved.last().copied().unwrap_or(outcome.elapsed);
    println!(
        "  every unit reserved after {:.3} s ({:.0} reservations/s)",
        all_reserved.as_secs_f64(),
        outcome.reserved.len() as f64 / all_reserved.as_secs_f64().max(1e-9)
    );
    println!(
        "  admitted checkouts p50 {} p99 {}",
        ms(percentile(&outcome.admitted, 50.0)),
        ms(percentile(&outcome.admitted, 99.0))
    );
    println!(
        "  server CPU {:.2} s, {:.1} ms per 1,000 attempts",
        outcome.cpu.as_secs_f64(),
        outcome.cpu.as_secs_f64() * 1e6 / settings.attempts as f64
    );
    println!("  oversold {oversold}");
    assert_eq!(oversold, 0, "{name} oversold");
    assert_eq!(
        answered as usize, settings.attempts,
        "every attempt answered"
    );
    per_second
}

/// Guest sessions: one request each, its cookie kept.
async fn sessions(base: &str, n: usize) -> Vec<String> {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, next, out, base) =
            (client.clone(), next.clone(), out.clone(), base.to_owned());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let response = client
                    .get(format!("{base}/api/auth/me"))
                    .send()
                    .await
                    .expect("a session");
                let token = response
                    .headers()
                    .get_all("set-cookie")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(|v| {
                        v.strip_prefix(&format!("{SESSION_COOKIE}="))
                            .and_then(|rest| rest.split(';').next())
                            .map(str::to_owned)
                    })
                    .expect("a session cookie");
                out.lock().unwrap().push(token);
            }
        }));
    }
    for task in tasks {
        task.await.expect("a session task");
    }
    Arc::try_unwrap(out).ok().unwrap().into_inner().unwrap()
}

/// Signs up the admin of the server at `base` and opens a sale of `units` that started a
/// second ago (one unit per buyer, reservations held 10 minutes).
async fn open_sale(base: &str, name: &str, units: i64) -> SaleView {
    let admin = Client::at(base);
    admin
        .signup("admin", "flash-sale-bench-1")
        .await
        .expect::<serde_json::Value>(201);
    let now = meridian_server::Clock::now_ms(&meridian_server::SystemClock);
    admin
        .post_json(
            "/api/sales",
            &json!({
                "name": name, "product_id": "lantern", "stock": units,
                "starts_at": format_rfc3339_ms(now - 1000), "per_user_limit": 1,
                "reservation_ttl_s": 600,
            }),
        )
        .await
        .expect(201)
}

/// How many transactions locked a sale's ledger row: each appended one event to its topic
/// (the writer's, which moved it, and the fulfilment worker's).
async fn ledger_transactions(pool: &PgPool, sale_id: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM realtime_events WHERE topic = $1")
        .bind(format!("public:sale-{sale_id}"))
        .fetch_one(pool)
        .await
        .expect("events")
}

async fn run_meridian(settings: Settings) -> f64 {
    let db = TestDatabase::create(Backend::Postgres).await;
    let server = ServerProcess::start(BIN, &db).await;
    let base = server.base_url();
    let sale = open_sale(&base, "bench", settings.units).await;
    let made = Instant::now();
    let cookies = Arc::new(sessions(&base, settings.buyers).await);
    println!(
        "(meridian: {} guest sessions made in {:.1} s, before the clock starts)",
        cookies.len(),
        made.elapsed().as_secs_f64()
    );
    let outcome = rush(settings, base, server.pid(), cookies, Some(sale.id.clone())).await;
    let pool = PgPool::connect(&db.url).await.expect("connect");
    let (stock, sold, reserved): (i64, i64, i64) =
        sqlx::query_as("SELECT stock, sold, reserved FROM sales WHERE id = $1")
            .bind(&sale.id)
            .fetch_one(&pool)
            .await
            .expect("the ledger");
    let orders: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sale_orders")
        .fetch_one(&pool)
        .await
        .expect("orders");
    let ledger_transactions = ledger_transactions(&pool, &sale.id).await;
    println!(
        "(meridian: the ledger row was locked by {ledger_transactions} transactions for {orders} orders)"
    );
    let oversold = (sold + reserved - stock).max(0) + (orders - stock).max(0);
    report(
        "meridian (batched single-writer ledger)",
        settings,
        &outcome,
        oversold,
    )
}

async fn start_naive(database_url: &str) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().expect("this executable"))
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

async fn naive_checkout(State(pool): State<PgPool>) -> StatusCode {
    let row: Result<Option<(i64,)>, _> = sqlx::query_as(
        "UPDATE naive_sale SET stock = stock - 1 WHERE id = 1 AND stock > 0 RETURNING stock",
    )
    .fetch_optional(&pool)
    .await;
    match row {
        Ok(Some(_)) => StatusCode::OK,
        Ok(None) => StatusCode::GONE,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn naive_serve(database_url: &str) {
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect(database_url)
        .await
        .expect("connect");
    let app = axum::Router::new()
        .route("/checkout", post(naive_checkout))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    println!("{NAIVE_LISTENING}{}", listener.local_addr().expect("addr"));
    axum::serve(listener, app).await.expect("serve");
}

/// The naive peer's one row, holding `units`.
async fn naive_row(pool: &PgPool, units: i64) {
    sqlx::query(
        "CREATE TABLE naive_sale (id BIGINT PRIMARY KEY, stock BIGINT NOT NULL CHECK (stock >= 0))",
    )
    .execute(pool)
    .await
    .expect("create");
    sqlx::query("INSERT INTO naive_sale (id, stock) VALUES (1, $1)")
        .bind(units)
        .execute(pool)
        .await
        .expect("seed");
}

async fn run_naive(settings: Settings) -> f64 {
    let db = TestDatabase::create(Backend::Postgres).await;
    let pool = PgPool::connect(&db.url).await.expect("connect");
    naive_row(&pool, settings.units).await;
    let (child, base) = start_naive(&db.url).await;
    let pid = child.id().expect("a pid");
    let outcome = rush(settings, base, pid, Arc::new(Vec::new()), None).await;
    let left: i64 = sqlx::query_scalar("SELECT stock FROM naive_sale WHERE id = 1")
        .fetch_one(&pool)
        .await
        .expect("stock");
    let oversold = (outcome.orders.len() as i64 - settings.units).max(0) + (-left).max(0);
    drop(child);
    report(
        "naive peer (one row, UPDATE ... WHERE stock > 0)",
        settings,
        &outcome,
        oversold,
    )
}

/// The naive ledger alone: `workers` tasks decrement the row until it is empty.
async fn ledger_naive(settings: Settings) -> f64 {
    let db = TestDatabase::create(Backend::Postgres).await;
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect(&db.url)
        .await
        .expect("connect");
    naive_row(&pool, settings.units).await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..settings.workers {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut orders = Vec::new();
            loop {
                let row: Option<(i64,)> = sqlx::query_as(
                    "UPDATE naive_sale SET stock = stock - 1 WHERE id = 1 AND stock > 0 RETURNING stock",
                )
                .fetch_optional(&pool)
                .await
                .expect("the naive update");
                match row {
                    Some(_) => orders.push(start.elapsed()),
                    None => return orders,
                }
            }
        }));
    }
    let mut orders = Vec::new();
    for task in tasks {
        orders.extend(task.await.expect("a naive task"));
    }
    ledger_report("naive row", settings, &orders, start.elapsed())
}

/// Meridian's ledger alone: `workers` tasks, each a new buyer per attempt, check out and
/// pay through the sale's writer in this process until it answers sold out.
async fn ledger_meridian(settings: Settings) -> f64 {
    use meridian_server::sales::engine::Attempt;
    use meridian_server::sales::writer::{Checkout, Payment};

    let db = TestDatabase::create(Backend::Postgres).await;
    let server = meridian_tests::server::TestServer::start(&db).await;
    let sale = open_sale(&server.base_url(), "ledger", settings.units).await;
    let writer = server
        .state
        .sales
        .writer(&server.state, &sale.id)
        .await
        .expect("the sale's writer")
        .expect("the sale");
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..settings.workers {
        let (writer, next) = (writer.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut orders = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let attempt = Attempt {
                    buyer: format!("guest:ledger-{i}"),
                    key: "k".into(),
                };
                let buyer = attempt.buyer.clone();
                match writer.checkout(attempt).await.expect("a checkout") {
                    Checkout::Reserved(existing) => {
                        let paid = writer
                            .pay(existing.reservation_id, buyer)
                            .await
                            .expect("a payment");
                        assert!(matches!(paid, Payment::Confirmed(_)), "{paid:?}");
                        orders.push(start.elapsed());
                    }
                    // Every unit is reserved, some not paid yet: another buyer waits.
                    Checkout::Queued(_) => {}
                    Checkout::SoldOut => return orders,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }));
    }
    let mut orders = Vec::new();
    for task in tasks {
        orders.extend(task.await.expect("a ledger task"));
    }
    let elapsed = start.elapsed();
    let pool = PgPool::connect(&db.url).await.expect("connect");
    let (sold, reserved): (i64, i64) =
        sqlx::query_as("SELECT sold, reserved FROM sales WHERE id = $1")
            .bind(&sale.id)
            .fetch_one(&pool)
            .await
            .expect("the ledger");
    assert_eq!(
        (sold, reserved),
        (settings.units, 0),
        "sold exactly the stock"
    );
    let transactions = ledger_transactions(&pool, &sale.id).await;
    println!("  (meridian writer: {transactions} ledger transactions)");
    ledger_report("meridian writer", settings, &orders, elapsed)
}

fn ledger_report(name: &str, settings: Settings, orders: &[Duration], elapsed: Duration) -> f64 {
    assert_eq!(
        orders.len() as i64,
        settings.units,
        "{name}: every unit sold once"
    );
    let sell_out = orders.iter().max().copied().unwrap_or(elapsed);
    let per_second = orders.len() as f64 / sell_out.as_secs_f64().max(1e-9);
    println!(
        "  {name}: {} orders in {:.3} s, {per_second:.0} orders/s",
        orders.len(),
        sell_out.as_secs_f64()
    );
    per_second
}

async fn fsync_setting() -> String {
    let db = TestDatabase::create(Backend::Postgres).await;
    let pool = PgPool::connect(&db.url).await.expect("connect");
    sqlx::query_scalar("SHOW fsync")
        .fetch_one(&pool)
        .await
        .expect("SHOW fsync")
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
    let quick = std::env::args().any(|a| a == "--quick") || env_or("SALE_BENCH_QUICK", 0u8) == 1;
    let settings = Settings {
        attempts: env_or("SALE_BENCH_ATTEMPTS", if quick { 20_000 } else { 500_000 }),
        units: env_or("SALE_BENCH_UNITS", if quick { 1_000 } else { 10_000 }),
        buyers: env_or("SALE_BENCH_BUYERS", if quick { 2_000 } else { 20_000 }),
        window: Duration::from_secs_f64(env_or("SALE_BENCH_SECS", if quick { 2.0 } else { 10.0 })),
        workers: env_or("SALE_BENCH_WORKERS", 256),
    };
    // The server under test: payments never fail, limits far above the load. Set
    // before any thread starts; the child inherits them.
    std::env::set_var("MERIDIAN_SALE_PAYMENT_FAILURE", "0");
    std::env::set_var("MERIDIAN_SALE_CHECKOUTS_PER_BUYER", "1000000000");
    std::env::set_var("MERIDIAN_SALE_CHECKOUTS_PER_ADDRESS", "1000000000");
    std::env::set_var("RUST_LOG", "warn");
    println!(
        "flash sale: {} attempts over {:.1} s for {} units, {} buyers, {} connections from {} addresses",
        settings.attempts,
        settings.window.as_secs_f64(),
        settings.units,
        settings.buyers,
        settings.workers,
        SOURCES
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let parts = std::env::var("SALE_BENCH_PARTS").unwrap_or_else(|_| "http,ledger".into());
    runtime.block_on(async {
        println!("PostgreSQL fsync = {}", fsync_setting().await);
        if parts.contains("http") {
            let ours = run_meridian(settings).await;
            let naive = run_naive(settings).await;
            println!(
                "== orders/s through HTTP: meridian {ours:.0}, naive {naive:.0}: {:.1}x",
                ours / naive.max(1e-9)
            );
        }
        if parts.contains("ledger") {
            println!(
                "== the ledgers alone ({} units, {} tasks, no HTTP):",
                settings.units, settings.workers
            );
            let ours = ledger_meridian(settings).await;
            let naive = ledger_naive(settings).await;
            println!(
                "== orders/s of the ledger: meridian {ours:.0}, naive {naive:.0}: {:.1}x",
                ours / naive.max(1e-9)
            );
        }
    });
}
