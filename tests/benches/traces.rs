//! The span store under load: `cargo bench -p meridian-tests --bench traces`.
//!
//! 1. **Ingest over HTTP**: the real `meridian` binary (release) as a child process on a
//!    fresh SQLite database; `TRACES_BENCH_SENDERS` (default 8) connections post OTLP
//!    protobuf exports of 512 spans each, as fast as answers (each one durable: synced
//!    log) come back, for `TRACES_BENCH_SECS` (default 10). Prints spans/s and the
//!    p50/p99 export latency.
//! 2. **The engine at scale**: `TRACES_BENCH_SPANS` (default 10,000,000) spans stored
//!    through `SpanStore::ingest` (fsync on, batches of 512, 4 writers), sealed; then
//!    `TRACES_BENCH_LOOKUPS` (default 10,000) lookups of random stored trace ids: p50/p99
//!    (page cache warm: the blocks were just written), and bytes per span on disk
//!    (blocks only; the log is empty once sealed).
//! 3. **The naive peer**: the same spans in a PostgreSQL table indexed by trace id
//!    (`MERIDIAN_TEST_PG_URL`; skipped, and said so, without it):
//!    `TRACES_BENCH_PG_SPANS` (default 1,000,000) inserted in batches of 512 (one
//!    multi-row INSERT each), then the same lookups, and the table's bytes per span
//!    (`pg_total_relation_size`: heap, TOAST and index).
//!
//! Spans come from a seeded generator (`TRACES_BENCH_SEED`): traces of 20 spans across 10
//! services, with HTTP attributes, like the simulator's. Loopback only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_server::traces::store::{LocalDir, SpanStore, StoreConfig};
use meridian_server::SystemClock;
use meridian_tests::bench::{env_or, ms, percentile};
use meridian_tests::db::{Backend, TestDatabase, PG_URL_VAR};
use meridian_tests::process::ServerProcess;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const BATCH: usize = 512;
const SPANS_PER_TRACE: u64 = 20;
const SERVICES: [&str; 10] = [
    "frontend",
    "gateway",
    "auth",
    "cart",
    "checkout",
    "payment",
    "inventory",
    "shipping",
    "email",
    "postgres",
];

fn attr(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// One batch of `BATCH` spans (whole traces), each with its service.
fn batch(rng: &mut StdRng, now_ns: u64, traces: &mut Vec<[u8; 16]>) -> Vec<(String, Span)> {
    let mut out = Vec::with_capacity(BATCH);
    while out.len() < BATCH {
        let trace: [u8; 16] = rng.random();
        traces.push(trace);
        let start = now_ns + rng.random_range(0..1_000_000_000u64);
        for i in 0..SPANS_PER_TRACE.min((BATCH - out.len()) as u64) {
            let service = SERVICES[(i as usize * 7 + 3) % SERVICES.len()];
            let parent = if i == 0 {
                0
            } else {
                rng.random_range(0..i) + 1
            };
            let begin = start + i * 1_000_000 + rng.random_range(0..100_000);
            let span = Span {
                trace_id: trace.to_vec(),
                span_id: (i + 1).to_be_bytes().to_vec(),
                parent_span_id: if parent == 0 {
                    vec![]
                } else {
                    parent.to_be_bytes().to_vec()
                },
                name: format!(
                    "{} /api/{}",
                    if i % 3 == 0 { "GET" } else { "POST" },
                    service
                ),
                kind: if i % 2 == 0 { 2 } else { 3 },
                start_time_unix_nano: begin,
                end_time_unix_nano: begin + rng.random_range(100_000..20_000_000),
                attributes: vec![
                    attr(
                        "http.method",
                        any_value::Value::StringValue(
                            if i % 3 == 0 { "GET" } else { "POST" }.into(),
                        ),
                    ),
                    attr(
                        "http.status_code",
                        any_value::Value::IntValue(if rng.random_ratio(1, 50) { 500 } else { 200 }),
                    ),
                    attr(
                        "net.peer.name",
                        any_value::Value::StringValue(format!("{service}.svc.cluster.local")),
                    ),
                ],
                ..Default::default()
            };
            out.push((service.to_owned(), span));
        }
    }
    out
}

fn export(spans: Vec<(String, Span)>) -> ExportTraceServiceRequest {
    let mut by_service: std::collections::BTreeMap<String, Vec<Span>> = Default::default();
    for (service, span) in spans {
        by_service.entry(service).or_default().push(span);
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![attr("service.name", any_value::Value::StringValue(service))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

async fn http_ingest(seed: u64) {
    let secs: u64 = env_or("TRACES_BENCH_SECS", 10);
    let senders: u64 = env_or("TRACES_BENCH_SENDERS", 8);
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = ServerProcess::start(BIN, &db).await;
    let url = format!("{}/v1/traces", server.base_url());
    // Bodies are made before the clock starts: the load generator shares the 2 cores.
    let mut rng = StdRng::seed_from_u64(seed);
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..64)
            .map(|_| export(batch(&mut rng, now_ns(), &mut Vec::new())).encode_to_vec())
            .collect(),
    );
    let spans = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for sender in 0..senders {
        let (url, bodies, spans) = (url.clone(), bodies.clone(), spans.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut latencies = Vec::new();
            let mut n = sender as usize;
            while Instant::now() < deadline {
                let body = bodies[n % bodies.len()].clone();
                n += 1;
                let started = Instant::now();
                let response = http
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await
                    .expect("post an export");
                match response.status().as_u16() {
                    200 => {
                        spans.fetch_add(BATCH as u64, Ordering::Relaxed);
                        latencies.push(started.elapsed());
                    }
                    429 => tokio::time::sleep(Duration::from_millis(50)).await,
                    other => panic!("export answered {other}"),
                }
            }
            latencies
        }));
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    println!(
        "ingest over HTTP (OTLP protobuf, {BATCH}-span exports, {senders} senders, {secs} s): {:.0} spans/s; export p50 {} p99 {}",
        spans.load(Ordering::Relaxed) as f64 / elapsed,
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
    );
}

struct Lookups {
    p50: Duration,
    p99: Duration,
}

fn lookup_ids(traces: &[[u8; 16]], count: usize, seed: u64) -> Vec<[u8; 16]> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    (0..count)
        .map(|_| traces[rng.random_range(0..traces.len())])
        .collect()
}

async fn engine(seed: u64) -> Vec<[u8; 16]> {
    let total: u64 = env_or("TRACES_BENCH_SPANS", 10_000_000);
    let lookups: usize = env_or("TRACES_BENCH_LOOKUPS", 10_000);
    let dir = tempfile::tempdir().expect("a directory for the store");
    let store = SpanStore::open(
        StoreConfig::new(dir.path().join("log")),
        Arc::new(LocalDir::open(dir.path().join("blocks")).unwrap()),
        Arc::new(SystemClock),
    )
    .expect("open the store");
    let writers = 4u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed + w);
            let mut traces = Vec::new();
            let mut stored = 0u64;
            let base = now_ns();
            while stored < total / writers {
                let spans = batch(&mut rng, base, &mut traces);
                loop {
                    match store.ingest(spans.clone()).await {
                        Ok(_) => break,
                        Err(meridian_server::traces::store::StoreError::Full) => {
                            tokio::time::sleep(Duration::from_millis(5)).await
                        }
                        Err(e) => panic!("ingest: {e}"),
                    }
                }
                stored += BATCH as u64;
            }
            traces
        }));
    }
    let mut traces = Vec::new();
    for task in tasks {
        traces.extend(task.await.unwrap());
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    store.flush().await.unwrap();
    let stats = store.stats();
    println!(
        "engine ingest (fsync, {BATCH}-span batches, {writers} writers): {} spans in {:.1} s = {:.0} spans/s; {} blocks, {:.1} bytes/span on disk",
        stats.block_spans,
        ingest_secs,
        stats.block_spans as f64 / ingest_secs,
        stats.blocks,
        stats.block_bytes as f64 / stats.block_spans as f64,
    );
    let ids = lookup_ids(&traces, lookups, seed);
    let result = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            let mut times = Vec::with_capacity(ids.len());
            for id in &ids {
                let t = Instant::now();
                let spans = store.trace(id).expect("lookup");
                times.push(t.elapsed());
                assert!(!spans.is_empty());
            }
            times.sort();
            Lookups {
                p50: percentile(&times, 50.0),
                p99: percentile(&times, 99.0),
            }
        })
        .await
        .unwrap()
    };
    println!(
        "engine trace by id at {} spans ({lookups} lookups): p50 {} p99 {}",
        stats.block_spans,
        ms(result.p50),
        ms(result.p99)
    );
    store.shutdown();
    traces
}

async fn naive_postgres(seed: u64) {
    let Ok(admin) = std::env::var(PG_URL_VAR) else {
        println!("naive PostgreSQL peer: skipped ({PG_URL_VAR} is not set)");
        return;
    };
    let _ = admin;
    let total: u64 = env_or("TRACES_BENCH_PG_SPANS", 1_000_000);
    let lookups: usize = env_or("TRACES_BENCH_LOOKUPS", 10_000);
    let db = TestDatabase::create(Backend::Postgres).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&db.url)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(
        "CREATE TABLE naive_spans (trace_id BYTEA NOT NULL, span_id BYTEA NOT NULL, \
         parent_span_id BYTEA, service TEXT NOT NULL, start_ns BIGINT NOT NULL, \
         end_ns BIGINT NOT NULL, body BYTEA NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("CREATE INDEX naive_spans_trace ON naive_spans (trace_id)")
        .execute(&pool)
        .await
        .unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut traces = Vec::new();
    let started = Instant::now();
    let mut stored = 0u64;
    let base = now_ns();
    while stored < total {
        let spans = batch(&mut rng, base, &mut traces);
        let mut builder = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "INSERT INTO naive_spans (trace_id, span_id, parent_span_id, service, start_ns, end_ns, body) ",
        );
        builder.push_values(spans, |mut row, (service, span)| {
            row.push_bind(span.trace_id.clone())
                .push_bind(span.span_id.clone())
                .push_bind(span.parent_span_id.clone())
                .push_bind(service)
                .push_bind(span.start_time_unix_nano as i64)
                .push_bind(span.end_time_unix_nano as i64)
                .push_bind(span.encode_to_vec());
        });
        builder
            .build()
            .execute(&pool)
            .await
            .expect("insert a batch");
        stored += BATCH as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('naive_spans')")
        .fetch_one(&pool)
        .await
        .unwrap();
    println!(
        "naive PostgreSQL (one connection, {BATCH}-row INSERTs): {stored} spans in {secs:.1} s = {:.0} spans/s; {:.1} bytes/span (heap + index)",
        stored as f64 / secs,
        bytes as f64 / stored as f64
    );
    let ids = lookup_ids(&traces, lookups, seed);
    let mut times = Vec::with_capacity(ids.len());
    for id in &ids {
        let t = Instant::now();
        let rows: Vec<(Vec<u8>,)> =
            sqlx::query_as("SELECT body FROM naive_spans WHERE trace_id = $1")
                .bind(id.to_vec())
                .fetch_all(&pool)
                .await
                .unwrap();
        times.push(t.elapsed());
        assert!(!rows.is_empty());
    }
    times.sort();
    println!(
        "naive PostgreSQL trace by id at {stored} spans: p50 {} p99 {}",
        ms(percentile(&times, 50.0)),
        ms(percentile(&times, 99.0))
    );
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not use.
    let seed: u64 = env_or("TRACES_BENCH_SEED", 20_261_207);
    println!("traces bench, seed {seed} (TRACES_BENCH_SEED replays it)");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        http_ingest(seed).await;
        engine(seed).await;
        naive_postgres(seed).await;
    });
}
