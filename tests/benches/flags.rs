//! Feature flag load through the real server: `cargo bench -p meridian-tests --bench flags`.
//!
//! A server process (the `meridian` binary, SQLite) on 127.0.0.1, then:
//! 1. propagation: 1,000 and 10,000 SSE subscribers follow the production stream; an
//!    admin flips a kill switch; the time from the admin's request to each subscriber
//!    reading the new version's event, p50/p99/max over several flips, each flip's first
//!    receipt, and the server's and this load generator's CPU per 10,000 deliveries (and
//!    for one Rust SDK client, until it evaluates the new version);
//! 2. local evaluation in the Rust SDK: a flag with five rules (mixed operators) and a
//!    rollout, evaluations per second on one thread;
//! 3. OFREP: single-flag evaluations per second with 64 concurrent clients, p50/p99.
//!
//! The subscribers and the SDK read with a server key, OFREP with a client key (each
//! request's key is checked in the database, as in production).
//!
//! Settings (environment): `FLAGS_BENCH_LEVELS` (default `1000,10000`),
//! `FLAGS_BENCH_FLIPS` (default 5), `FLAGS_BENCH_SECS` (OFREP, default 5).

use std::time::{Duration, Instant};

use meridian_server::flags::sdk::{FlagClient, SdkOptions, SdkState};
use meridian_shared::flags::admin::KillOutcome;
use meridian_shared::flags::EvaluationContext;
use meridian_tests::bench::{env_or, ms, percentile};
use meridian_tests::client::Client;
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::process::ServerProcess;
use meridian_tests::ybench::cpu_time;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");

/// A boolean flag with five rules of mixed operators and a 30/70 rollout.
fn five_rule_flag(key: &str) -> Value {
    json!({
        "key": key,
        "name": "Five rules",
        "kind": "boolean",
        "variations": [{"name": "on", "value": true}, {"name": "off", "value": false}],
        "environments": {"production": {
            "enabled": true,
            "off_variation": "off",
            "rules": [
                {"clauses": [{"attribute": "email", "operator": "ends_with", "values": ["@meridian.test"]}], "serve": {"variation": "on"}},
                {"clauses": [{"attribute": "country", "operator": "in", "values": ["NZ", "IS", "PT", "UY", "KE", "VN", "CL", "EE", "SN"]}], "serve": {"variation": "off"}},
                {"clauses": [{"attribute": "app", "operator": "semver_lt", "values": ["2.0.0"]}], "serve": {"variation": "off"}},
                {"clauses": [{"attribute": "age_days", "operator": "gte", "values": [365]}, {"attribute": "plan", "operator": "equals", "values": ["pro"]}], "serve": {"variation": "on"}},
                {"clauses": [{"attribute": "name", "operator": "contains", "values": ["test"], "case_insensitive": true}], "serve": {"variation": "off"}}
            ],
            "default_serve": {"rollout": {"variations": [{"variation": "on", "weight": 30}, {"variation": "off", "weight": 70}]}}
        }}
    })
}

/// A raw SSE subscriber: reports `(version, arrival)` for every event id it reads.
async fn subscriber(
    address: std::net::SocketAddr,
    key: String,
    ready: tokio::sync::mpsc::UnboundedSender<()>,
    arrivals: tokio::sync::mpsc::UnboundedSender<(u64, Instant)>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect a subscriber");
    stream.set_nodelay(true).expect("nodelay");
    let request = format!(
        "GET /api/flags/stream?environment=production HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\nAuthorization: Bearer {key}\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    // Only the bytes that may begin an `id:` line are kept from one read to the next
    // (a few dozen at most); the events' data is searched where it was read, never copied.
    let id_line = memchr::memmem::Finder::new(b"\nid: ");
    let mut buf = vec![0u8; 8 * 1024];
    let mut carried = 0;
    let mut announced = false;
    loop {
        let n = match stream.read(&mut buf[carried..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = Instant::now();
        let end = carried + n;
        let mut at = 0;
        // A `\nid: ` cut by the end of the read is carried (its first 4 bytes at most).
        let mut keep_from = end.saturating_sub(4);
        while let Some(hit) = id_line.find(&buf[at..end]) {
            let value = at + hit + 5;
            let Some(len) = memchr::memchr(b'\n', &buf[value..end]) else {
                // The line goes on in the next read; a longer one is not an id.
                if end - (at + hit) <= 64 {
                    keep_from = at + hit;
                }
                break;
            };
            let version: u64 = std::str::from_utf8(&buf[value..value + len])
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            at = value + len;
            keep_from = keep_from.max(at);
            if !announced {
                announced = true;
                let _ = ready.send(());
            } else {
                let _ = arrivals.send((version, now));
            }
        }
        buf.copy_within(keep_from..end, 0);
        carried = end - keep_from;
    }
}

async fn propagation(bench: &Bench, subscribers: usize, flips: usize) {
    let Bench { server, admin, .. } = bench;
    let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel();
    let (arrival_tx, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(subscribers);
    // Connect in waves so that the listen backlog is never the bottleneck.
    for wave in (0..subscribers).collect::<Vec<_>>().chunks(500) {
        for _ in wave {
            tasks.push(tokio::spawn(subscriber(
                server.addr,
                bench.server_key.clone(),
                ready_tx.clone(),
                arrival_tx.clone(),
            )));
        }
        for _ in wave {
            if tokio::time::timeout(Duration::from_secs(30), ready.recv())
                .await
                .is_err()
            {
                panic!(
                    "subscriber {} of {subscribers} did not get the config within 30 s",
                    tasks.len() - wave.len()
                );
            }
        }
    }
    let mut latencies = Vec::with_capacity(subscribers * flips);
    // Per flip, the first subscriber's receipt: the write, the reload and one delivery,
    // before the fan-out to the others.
    let mut firsts = Vec::with_capacity(flips);
    let mut answers = Vec::new();
    // CPU spent from each kill until its last receipt: the server's (write, wake-ups,
    // frames) and this load generator's (reading every socket), which share the cores.
    let server_cpu_before = cpu_time(server.pid());
    let generator_cpu_before = cpu_time(std::process::id());
    for flip in 0..flips {
        let started = Instant::now();
        let outcome: KillOutcome = admin
            .post_json(
                "/api/flags/bench/kill",
                &json!({"environment": "production", "killed": flip % 2 == 0}),
            )
            .await
            .expect(200);
        answers.push((
            started.elapsed(),
            outcome.delivery.delivered,
            outcome.delivery.subscribers,
        ));
        let mut received = 0;
        while received < subscribers {
            let (version, at) = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
                .await
                .expect("the change arrives")
                .expect("subscribers are running");
            assert_eq!(
                version, outcome.version,
                "every subscriber gets every version"
            );
            if received == 0 {
                firsts.push(at.duration_since(started));
            }
            latencies.push(at.duration_since(started));
            received += 1;
        }
    }
    let server_cpu = cpu_time(server.pid()).saturating_sub(server_cpu_before);
    let generator_cpu = cpu_time(std::process::id()).saturating_sub(generator_cpu_before);
    latencies.sort();
    firsts.sort();
    let deliveries = latencies.len() as f64;
    let per_10k = |cpu: Duration| cpu.mul_f64(10_000.0 / deliveries);
    let answer_times: Vec<String> = answers
        .iter()
        .map(|(t, d, s)| format!("{} ({d}/{s})", ms(*t)))
        .collect();
    println!(
        "  {subscribers:>6} subscribers: p50 {}  p99 {}  max {}  ({} receipts over {flips} flips; a flip's first receipt p50 {}); kill answered after {}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(*latencies.last().unwrap()),
        latencies.len(),
        ms(percentile(&firsts, 50.0)),
        answer_times.join(", "),
    );
    println!(
        "  {subscribers:>6} subscribers: CPU per 10,000 deliveries: server {}, load generator {}",
        ms(per_10k(server_cpu)),
        ms(per_10k(generator_cpu)),
    );
    for task in tasks {
        task.abort();
    }
}

async fn sdk_propagation(bench: &Bench, flips: usize) {
    let Bench { server, admin, .. } = bench;
    let sdk = FlagClient::connect(SdkOptions::new(server.base_url(), &bench.server_key));
    sdk.wait_for_state(SdkState::Live).await;
    let mut latencies = Vec::new();
    for flip in 0..flips {
        let current = sdk.version();
        let started = Instant::now();
        let _: KillOutcome = admin
            .post_json(
                "/api/flags/bench/kill",
                &json!({"environment": "production", "killed": flip % 2 == 0}),
            )
            .await
            .expect(200);
        sdk.wait_for_version(current + 1).await;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "  one Rust SDK client (receipt, parse and compile): p50 {}  max {}",
        ms(percentile(&latencies, 50.0)),
        ms(*latencies.last().unwrap())
    );
}

fn local_evaluations(client: &FlagClient) {
    let contexts: Vec<EvaluationContext> = (0..1024)
        .map(|i| {
            EvaluationContext::new(format!("user-{i}"))
                .with("email", format!("person{i}@example.com"))
                .with("country", ["NZ", "US", "DE", "FR"][i % 4])
                .with("app", format!("{}.{}.0", 1 + i % 3, i % 10))
                .with("age_days", (i * 7 % 800) as i64)
                .with("plan", if i % 5 == 0 { "pro" } else { "free" })
                .with("name", format!("Person {i}"))
        })
        .collect();
    let n = 10_000_000usize;
    let mut on = 0usize;
    let started = Instant::now();
    for i in 0..n {
        let context = &contexts[i & 1023];
        on += client.with_evaluation("five-rules", context, |e| {
            usize::from(e.is_some_and(|e| e.variant == "on"))
        });
    }
    let took = started.elapsed();
    println!(
        "  SDK local evaluation through the client, five rules + rollout: {:.1} M evaluations/s on one thread ({n} in {:.2} s, {on} on)",
        n as f64 / took.as_secs_f64() / 1e6,
        took.as_secs_f64()
    );
    let view = client.view();
    let mut on = 0usize;
    let started = Instant::now();
    for i in 0..n {
        let context = &contexts[i & 1023];
        on += usize::from(
            view.evaluate("five-rules", context)
                .is_some_and(|e| e.variant == "on"),
        );
    }
    let took = started.elapsed();
    println!(
        "  SDK local evaluation through a view (one per request), same flag: {:.1} M evaluations/s ({on} on)",
        n as f64 / took.as_secs_f64() / 1e6,
    );
}

async fn ofrep_load(bench: &Bench, secs: u64) {
    let server = &bench.server;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let url = server.url("/ofrep/v1/evaluate/flags/five-rules");
            let key = bench.client_key.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let body = json!({"context": {"targetingKey": format!("u-{i}-{n}"), "country": "US", "app": "2.1.0"}});
                    let started = Instant::now();
                    let response = http
                        .post(&url)
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .await
                        .expect("OFREP answers");
                    assert_eq!(response.status(), 200);
                    let _ = response.bytes().await;
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    let started = Instant::now();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("a load task"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "  OFREP single-flag, 64 clients: {:.0} requests/s  p50 {}  p99 {}",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
    );
}

fn main() {
    let levels: Vec<usize> = std::env::var("FLAGS_BENCH_LEVELS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let flips = env_or("FLAGS_BENCH_FLIPS", 5usize);
    let secs = env_or("FLAGS_BENCH_SECS", 5u64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        println!("flag propagation (admin write → receipt), loopback, a fresh server process on SQLite per level:");
        for &subscribers in &levels {
            let bench = start().await;
            propagation(&bench, subscribers, flips).await;
        }
        let bench = start().await;
        sdk_propagation(&bench, flips).await;
        let sdk = FlagClient::connect(SdkOptions::new(bench.server.base_url(), &bench.server_key));
        sdk.wait_for_version(2).await;
        println!("evaluation:");
        local_evaluations(&sdk);
        ofrep_load(&bench, secs).await;
    });
}

/// A server process with an admin, the two flags of the benchmark, and a server and a
/// client key of production.
struct Bench {
    server: ServerProcess,
    admin: Client,
    server_key: String,
    client_key: String,
    /// Dropped last, after the server process.
    _db: TestDatabase,
}

async fn start() -> Bench {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = ServerProcess::start(BIN, &db).await;
    let admin = Client::at(&server.base_url());
    admin
        .signup("operator", "flag-bench-pass-1")
        .await
        .expect::<Value>(201);
    let mut flag = five_rule_flag("bench");
    flag["environments"]["production"]["default_serve"] = json!({"variation": "on"});
    admin
        .post_json("/api/flags", &flag)
        .await
        .expect::<Value>(201);
    admin
        .post_json("/api/flags", &five_rule_flag("five-rules"))
        .await
        .expect::<Value>(201);
    let server_key = admin.create_flag_key("production", "server").await.key;
    let client_key = admin.create_flag_key("production", "client").await.key;
    Bench {
        server,
        admin,
        server_key,
        client_key,
        _db: db,
    }
}
