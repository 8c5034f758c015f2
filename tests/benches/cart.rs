//! Cart load through the real server: `cargo bench -p meridian-tests --bench cart`.
//!
//! For each backend (SQLite always; PostgreSQL when `MERIDIAN_TEST_PG_URL` is set) a
//! server is started on 127.0.0.1:0 on a fresh database; then 1, 64 and 512 sessions
//! (each its own cookie jar, so its own cart) send cart ops (one op per request: add,
//! set or remove of a random product) as fast as answers come back, for a bounded time
//! per level. Prints ops/s and p50/p99 latency per level, then the time to merge a
//! 100-line guest cart into a 100-line account cart.
//!
//! Settings (environment): `CART_BENCH_SECS` (per level, default 5), `CART_BENCH_SEED`
//! (the op mix; printed), `CART_BENCH_LEVELS` (default `1,64,512`), `CART_BENCH_MERGES`
//! (default 10).

use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_shared::cart::{CartOpInput, CartOpType, CartOpsRequest, CartView, MAX_LINES};
use meridian_tests::bench::{env_or, ms, percentile};
use meridian_tests::client::Client;
use meridian_tests::db::{Backend, TestDatabase, PG_URL_VAR};
use meridian_tests::server::TestServer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One session's loop: random ops until the deadline. Returns its latencies.
async fn session(
    client: Client,
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
        let reply = client.post_json("/api/cart/ops", &request).await;
        latencies.push(started.elapsed());
        if reply.status != 200 {
            errors += 1;
        }
    }
    (latencies, errors)
}

async fn load_level(
    server: &TestServer,
    products: &Arc<Vec<String>>,
    sessions: usize,
    secs: u64,
    seed: u64,
) {
    // Sessions are made (guest cookie issued) before the clock starts.
    let mut clients = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        let client = Client::new(server);
        let _: CartView = client.get("/api/cart").await.expect(200);
        clients.push(client);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            tokio::spawn(session(
                client,
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
    latencies.sort();
    println!(
        "  {sessions:>4} sessions: {:>8.0} ops/s  p50 {:>10}  p99 {:>10}  ({} ops in {:.1} s, {errors} errors)",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
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

async fn bench(backend: Backend, levels: &[usize], secs: u64, seed: u64, merge_runs: usize) {
    let db = TestDatabase::create(backend).await;
    let server = TestServer::start(&db).await;
    let products: Arc<Vec<String>> = Arc::new(
        server
            .state
            .carts
            .catalog()
            .products()
            .iter()
            .map(|p| p.id.clone())
            .collect(),
    );
    println!("{backend:?}:");
    for &sessions in levels {
        load_level(&server, &products, sessions, secs, seed).await;
    }
    merges(&server, &products, merge_runs).await;
    server.shutdown().await;
    drop(db);
}

fn main() {
    let secs = env_or("CART_BENCH_SECS", 5u64);
    let merge_runs = env_or("CART_BENCH_MERGES", 10usize);
    let seed = env_or("CART_BENCH_SEED", rand::random::<u64>());
    let levels: Vec<usize> = std::env::var("CART_BENCH_LEVELS")
        .unwrap_or_else(|_| "1,64,512".into())
        .split(',')
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    println!("cart load: seed={seed} (CART_BENCH_SEED), {secs} s per level, one op per request, loopback");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        bench(Backend::Sqlite, &levels, secs, seed, merge_runs).await;
        if std::env::var(PG_URL_VAR).is_ok() {
            bench(Backend::Postgres, &levels, secs, seed, merge_runs).await;
        } else {
            println!("PostgreSQL: skipped ({PG_URL_VAR} is not set)");
        }
    });
}
