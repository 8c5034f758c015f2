//! Collaborative documents under load: `cargo bench -p meridian-tests --bench docs`.
//!
//! N clients over M documents (client `i` edits document `i % M`), each a yrs replica
//! typing words at random places of its document: every keystroke is one real yrs insert
//! on the client's replica, sent as one y-websocket `update` message. The same load, with
//! the same seed, runs in the same process against
//! 1. Meridian: the `meridian` binary as a child process on SQLite; accounts and documents
//!    made through the API (document `d` owned by the first writer and shared with the
//!    others as editors), the session cookie on every WebSocket; and
//! 2. the reference server: `y-websocket@1.5.4`'s `bin/server.js` run by Node (documents
//!    in memory, no auth), each document a room at the same path `/yjs/{id}`.
//!
//! Measured over a window after a warm-up:
//! - throughput: keystrokes/s sent (acknowledged, in saturation mode) and deliveries/s,
//!   a delivery being one keystroke reaching one other client of its document;
//! - latency from a keystroke to each other client's receipt, p50/p99/max: every client
//!   lives in this process, so the sender notes `(client id, clock) -> Instant` before
//!   sending and each receiver decodes the struct ids an update carries;
//! - server memory: resident set (`VmRSS`) before any client connects and after the load,
//!   divided by M (each document with its connections);
//! - CPU used during the window (`/proc/PID/stat`), by the server and by this process
//!   (all the clients), as a share of one core: when the clients' share nears the
//!   machine's cores, the clients are the bottleneck and the throughputs say little;
//!   and the server's CPU time per delivery (µs), which stays comparable when the load
//!   generator shares the cores.
//!
//! After the window the typing stops and every client reads until it has every keystroke
//! of its document (or a drain deadline passes: what is still missing is reported, and
//! is a failure of the server, not of the bench).
//!
//! Both servers share the machine with this process, which plays all the clients; the
//! client side costs the same in both runs.
//!
//! Settings (environment): `DOCS_BENCH_CLIENTS` (N, default 200), `DOCS_BENCH_DOCS` (M,
//! default 20), `DOCS_BENCH_RATE` (keystrokes/s per client, default 5, with ±50 % jitter;
//! `0` = saturation: each client types its next keystroke as soon as the server has
//! acknowledged the last, a sync step 1 answered by a step 2 being the acknowledgement),
//! `DOCS_BENCH_SECS` (window, default 20), `DOCS_BENCH_WARMUP_SECS` (default 3),
//! `DOCS_BENCH_DRAIN_SECS` (default 15), `DOCS_BENCH_SEED` (printed),
//! `DOCS_BENCH_SERVERS` (default `meridian,reference`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use meridian_shared::docs::{protocol, schema, CreateDoc, Doc, Role, ShareDoc};
use meridian_tests::bench::{env_or, ms, percentile};
use meridian_tests::client::Client;
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::process::ServerProcess;
use meridian_tests::ybench::{cpu_time, new_insertions, rss_kib, ReferenceServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{HeaderName, HeaderValue};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::sync::SyncMessage;
use yrs::updates::decoder::Decode;
use yrs::{ReadTxn, Text, TextRef, Transact, Update};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
/// How long connecting and the first sync of one client may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Clients connect this many at a time.
const CONNECT_BATCH: usize = 50;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Clone)]
struct Settings {
    clients: usize,
    docs: usize,
    /// Keystrokes per second per client; `0.0` is saturation.
    rate: f64,
    window: Duration,
    warmup: Duration,
    drain: Duration,
    seed: u64,
    servers: Vec<String>,
}

impl Settings {
    fn from_env() -> Settings {
        let servers = std::env::var("DOCS_BENCH_SERVERS")
            .unwrap_or_else(|_| "meridian,reference".into())
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let settings = Settings {
            clients: env_or("DOCS_BENCH_CLIENTS", 200usize),
            docs: env_or("DOCS_BENCH_DOCS", 20usize),
            rate: env_or("DOCS_BENCH_RATE", 5.0f64),
            window: Duration::from_secs(env_or("DOCS_BENCH_SECS", 20u64)),
            warmup: Duration::from_secs(env_or("DOCS_BENCH_WARMUP_SECS", 3u64)),
            drain: Duration::from_secs(env_or("DOCS_BENCH_DRAIN_SECS", 15u64)),
            seed: env_or("DOCS_BENCH_SEED", rand::random::<u64>()),
            servers,
        };
        assert!(
            settings.docs >= 1 && settings.clients >= settings.docs,
            "need at least one document and one client per document: {settings:?}"
        );
        assert!(
            settings.rate >= 0.0,
            "DOCS_BENCH_RATE is keystrokes/s, or 0"
        );
        settings
    }

    fn saturation(&self) -> bool {
        self.rate == 0.0
    }

    /// Clients of document `d`.
    fn writers_of(&self, d: usize) -> usize {
        (0..self.clients).filter(|i| i % self.docs == d).count()
    }
}

/// Where one client connects.
#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    cookie: Option<String>,
}

/// What the clients of one document share.
struct DocShared {
    /// When each keystroke `(client id, clock)` was typed.
    sent: Mutex<HashMap<(u64, u32), Instant>>,
    /// The last clock (exclusive) of every writer that stopped typing.
    finished: Mutex<HashMap<u64, u32>>,
    writers: usize,
}

/// The timeline every client follows.
struct Plan {
    start: Instant,
    window_start: Instant,
    window_end: Instant,
    drain_deadline: Instant,
    rate: f64,
}

impl Plan {
    fn measured(&self, at: Instant) -> bool {
        at >= self.window_start && at < self.window_end
    }
}

#[derive(Default)]
struct ClientReport {
    /// Keystroke-to-receipt latencies of keystrokes typed in the window.
    latencies: Vec<Duration>,
    /// Keystrokes typed in the window (in saturation mode: and acknowledged).
    keystrokes: u64,
    /// Keystrokes of other clients never received (whole run).
    undelivered: u64,
    error: Option<String>,
}

/// One server's row.
struct Row {
    server: String,
    keystrokes_per_s: f64,
    deliveries_per_s: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    undelivered: u64,
    errors: Vec<String>,
    rss_before_kib: u64,
    rss_after_kib: u64,
    docs: usize,
    /// CPU used during the window, as a share of one core: the server's, and this
    /// process's (every client).
    server_cpu: f64,
    clients_cpu: f64,
}

impl Row {
    fn kib_per_doc(&self) -> f64 {
        self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64 / self.docs as f64
    }

    /// The server's CPU time per delivery in the window, in µs.
    fn server_us_per_delivery(&self) -> f64 {
        if self.deliveries_per_s > 0.0 {
            self.server_cpu * 1e6 / self.deliveries_per_s
        } else {
            0.0
        }
    }
}

/// Opens a WebSocket (with the session cookie, if any) and syncs an empty replica.
async fn connect(endpoint: &Endpoint, doc: &yrs::Doc) -> Result<Socket, String> {
    let mut request = endpoint
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad URL {}: {e}", endpoint.url))?;
    if let Some(cookie) = &endpoint.cookie {
        request.headers_mut().append(
            HeaderName::from_static("cookie"),
            HeaderValue::from_str(cookie).map_err(|e| e.to_string())?,
        );
    }
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .map_err(|e| format!("connect {}: {e}", endpoint.url))?;
    // As the JavaScript client: our step 1 at once, the server's step 1 answered, synced
    // when the step 2 answering ours arrives.
    let sv = doc.transact().state_vector();
    socket
        .send(Message::binary(protocol::step1(&sv)))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let frame = socket
            .next()
            .await
            .ok_or("closed during the first sync")?
            .map_err(|e| e.to_string())?;
        let Message::Binary(bytes) = frame else {
            continue;
        };
        match yrs::sync::Message::decode_v1(&bytes).map_err(|e| e.to_string())? {
            yrs::sync::Message::Sync(SyncMessage::SyncStep1(sv)) => {
                let answer = doc.transact().encode_diff_v1(&sv);
                socket
                    .send(Message::binary(protocol::step2(answer)))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            yrs::sync::Message::Sync(SyncMessage::SyncStep2(update)) => {
                let update = Update::decode_v1(&update).map_err(|e| e.to_string())?;
                doc.transact_mut()
                    .apply_update(update)
                    .map_err(|e| e.to_string())?;
                return Ok(socket);
            }
            _ => {}
        }
    }
}

/// One typist: its replica, where it types, and what it measured.
struct Typist {
    id: u64,
    doc: yrs::Doc,
    text: TextRef,
    rng: StdRng,
    /// Where the next keystroke goes; letters left in the current word.
    cursor: u32,
    word_left: u32,
    shared: Arc<DocShared>,
    plan: Arc<Plan>,
    report: ClientReport,
}

impl Typist {
    /// Types one character: a real insert on the replica, encoded as this transaction's
    /// update. Returns the update and when the keystroke happened.
    fn keystroke(&mut self) -> (Vec<u8>, Instant) {
        let len = self.text.len(&self.doc.transact());
        if self.word_left == 0 {
            // A new word somewhere in the document, then a space.
            self.cursor = self.rng.random_range(0..=len);
            self.word_left = self.rng.random_range(3..=8) + 1;
        }
        self.cursor = self.cursor.min(len);
        let ch = if self.word_left == 1 {
            ' '
        } else {
            self.rng.random_range(b'a'..=b'z') as char
        };
        let at = Instant::now();
        let clock = self
            .doc
            .transact()
            .state_vector()
            .get(&yrs::block::ClientID::new(self.id));
        self.shared
            .sent
            .lock()
            .expect("sent map")
            .insert((self.id, clock), at);
        let update = {
            let mut txn = self.doc.transact_mut();
            self.text
                .insert(&mut txn, self.cursor, ch.encode_utf8(&mut [0; 4]));
            txn.encode_update_v1()
        };
        self.cursor += 1;
        self.word_left -= 1;
        (update, at)
    }

    /// Applies an update that arrived at `at`, noting the keystrokes it delivers.
    fn receive(&mut self, update: &[u8], at: Instant) -> Result<(), String> {
        let update = Update::decode_v1(update).map_err(|e| format!("bad update: {e}"))?;
        let known = self.doc.transact().state_vector();
        let fresh = new_insertions(&update, &known);
        if fresh.iter().any(|(client, _)| *client != self.id) {
            let sent = self.shared.sent.lock().expect("sent map");
            for (client, clocks) in fresh {
                if client == self.id {
                    continue;
                }
                for clock in clocks {
                    if let Some(&typed) = sent.get(&(client, clock)) {
                        if self.plan.measured(typed) {
                            self.report
                                .latencies
                                .push(at.saturating_duration_since(typed));
                        }
                    }
                }
            }
        }
        self.doc
            .transact_mut()
            .apply_update(update)
            .map_err(|e| format!("update does not apply: {e}"))
    }

    /// Stops typing: tells the others how far this client's keystrokes go.
    fn finish(&self) {
        let clock = self
            .doc
            .transact()
            .state_vector()
            .get(&yrs::block::ClientID::new(self.id));
        self.shared
            .finished
            .lock()
            .expect("finished map")
            .insert(self.id, clock);
    }

    /// Keystrokes of the others this replica still lacks; `None` while someone types.
    fn missing(&self) -> Option<u64> {
        let finished = self.shared.finished.lock().expect("finished map");
        (finished.len() >= self.shared.writers).then(|| self.lacking(&finished))
    }

    /// Keystrokes of the writers that stopped which this replica lacks.
    fn lacking(&self, finished: &HashMap<u64, u32>) -> u64 {
        let sv = self.doc.transact().state_vector();
        finished
            .iter()
            .filter(|(client, _)| **client != self.id)
            .map(|(client, end)| {
                end.saturating_sub(sv.get(&yrs::block::ClientID::new(*client))) as u64
            })
            .sum()
    }
}

async fn send(sink: &mut SplitSink<Socket, Message>, bytes: Vec<u8>) -> Result<(), String> {
    sink.send(Message::binary(bytes))
        .await
        .map_err(|e| format!("send: {e}"))
}

/// One client's run from the start of typing to the end of the drain. Returns its
/// report and its socket (kept open until the server's memory has been read).
async fn type_and_read(mut typist: Typist, socket: Socket) -> (ClientReport, Socket) {
    let (mut sink, mut stream) = socket.split();
    let result = run_loop(&mut typist, &mut sink, &mut stream).await;
    if let Err(e) = result {
        typist.report.error = Some(e);
    }
    if !typist
        .shared
        .finished
        .lock()
        .expect("finished map")
        .contains_key(&typist.id)
    {
        typist.finish();
    }
    // What is still missing after the drain (or after an error).
    typist.report.undelivered = {
        let finished = typist.shared.finished.lock().expect("finished map");
        typist.lacking(&finished)
    };
    let socket = sink.reunite(stream).expect("halves of one socket");
    (typist.report, socket)
}

async fn run_loop(
    typist: &mut Typist,
    sink: &mut SplitSink<Socket, Message>,
    stream: &mut SplitStream<Socket>,
) -> Result<(), String> {
    let plan = typist.plan.clone();
    let saturation = plan.rate == 0.0;
    let mean_gap = if saturation {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(1.0 / plan.rate)
    };
    // Clients start at random moments of their first gap, not all at once.
    let mut next_at = plan.start + mean_gap.mul_f64(typist.rng.random::<f64>());
    let mut typing = true;
    // Saturation: the keystroke waiting for its acknowledgement.
    let mut unacked: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        let now = Instant::now();
        if typing && now >= plan.window_end {
            typing = false;
            typist.finish();
        }
        if !typing && (typist.missing() == Some(0) || now >= plan.drain_deadline) {
            return Ok(());
        }
        let may_type = typing && unacked.is_none();
        tokio::select! {
            biased;
            frame = stream.next() => {
                let at = Instant::now();
                let bytes = match frame {
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Close(close))) => return Err(format!("closed by the server: {close:?}")),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(format!("read: {e}")),
                    None => return Err("the connection ended".into()),
                };
                match yrs::sync::Message::decode_v1(&bytes).map_err(|e| format!("bad frame: {e}"))? {
                    yrs::sync::Message::Sync(SyncMessage::SyncStep1(sv)) => {
                        let answer = typist.doc.transact().encode_diff_v1(&sv);
                        send(sink, protocol::step2(answer)).await?;
                    }
                    yrs::sync::Message::Sync(SyncMessage::SyncStep2(update)) => {
                        typist.receive(&update, at)?;
                        if let Some(typed) = unacked.take() {
                            if plan.measured(typed) {
                                typist.report.keystrokes += 1;
                            }
                            next_at = at;
                        }
                    }
                    yrs::sync::Message::Sync(SyncMessage::Update(update)) => {
                        typist.receive(&update, at)?;
                    }
                    yrs::sync::Message::Auth(reason) => {
                        return Err(format!("refused by the server: {reason:?}"));
                    }
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(next_at.into()), if may_type => {
                let (update, typed) = typist.keystroke();
                send(sink, protocol::update(update)).await?;
                if saturation {
                    let sv = typist.doc.transact().state_vector();
                    send(sink, protocol::step1(&sv)).await?;
                    unacked = Some(typed);
                } else {
                    if plan.measured(typed) {
                        typist.report.keystrokes += 1;
                    }
                    next_at += mean_gap.mul_f64(typist.rng.random_range(0.5..1.5));
                }
            }
            _ = tick.tick() => {}
        }
    }
}

/// What one load run measured besides the clients' reports.
struct Outcome {
    reports: Vec<ClientReport>,
    /// The server's resident memory after the load, every connection still open.
    rss_after_kib: u64,
    /// CPU time used during the window by the server and by this process.
    server_cpu: Duration,
    clients_cpu: Duration,
}

/// Runs the load over `endpoints` (client `i` on document `i % docs`) against the
/// server process `server_pid`.
async fn load(settings: &Settings, endpoints: Vec<Endpoint>, server_pid: u32) -> Outcome {
    let shared: Vec<Arc<DocShared>> = (0..settings.docs)
        .map(|d| {
            Arc::new(DocShared {
                sent: Mutex::new(HashMap::new()),
                finished: Mutex::new(HashMap::new()),
                writers: settings.writers_of(d),
            })
        })
        .collect();

    // Everyone connects and syncs before the clock starts.
    let mut connected = Vec::with_capacity(endpoints.len());
    for (batch_start, batch) in endpoints.chunks(CONNECT_BATCH).enumerate() {
        let opening = batch.iter().enumerate().map(|(k, endpoint)| {
            let id = 1000 + (batch_start * CONNECT_BATCH + k) as u64;
            let endpoint = endpoint.clone();
            async move {
                let doc = schema::new_doc_with_client(id);
                let socket = tokio::time::timeout(CONNECT_TIMEOUT, connect(&endpoint, &doc))
                    .await
                    .unwrap_or_else(|_| Err(format!("no sync within {CONNECT_TIMEOUT:?}")))
                    .unwrap_or_else(|e| panic!("client {id} at {}: {e}", endpoint.url));
                (id, doc, socket)
            }
        });
        connected.extend(futures_util::future::join_all(opening).await);
    }

    let start = Instant::now() + Duration::from_millis(200);
    let window_start = start + settings.warmup;
    let window_end = window_start + settings.window;
    let plan = Arc::new(Plan {
        start,
        window_start,
        window_end,
        drain_deadline: window_end + settings.drain,
        rate: settings.rate,
    });
    let cpu = tokio::spawn(async move {
        let me = std::process::id();
        tokio::time::sleep_until(window_start.into()).await;
        let (server, clients) = (cpu_time(server_pid), cpu_time(me));
        tokio::time::sleep_until(window_end.into()).await;
        (cpu_time(server_pid) - server, cpu_time(me) - clients)
    });
    let tasks: Vec<_> = connected
        .into_iter()
        .enumerate()
        .map(|(i, (id, doc, socket))| {
            let text = doc.get_or_insert_text(schema::TEXT);
            let typist = Typist {
                id,
                doc,
                text,
                rng: StdRng::seed_from_u64(
                    settings.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                ),
                cursor: 0,
                word_left: 0,
                shared: shared[i % settings.docs].clone(),
                plan: plan.clone(),
                report: ClientReport::default(),
            };
            tokio::spawn(type_and_read(typist, socket))
        })
        .collect();
    let mut reports = Vec::with_capacity(tasks.len());
    let mut sockets = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (report, socket) = task.await.expect("a client task");
        reports.push(report);
        sockets.push(socket);
    }
    let rss_after_kib = rss_kib(server_pid);
    let (server_cpu, clients_cpu) = cpu.await.expect("the CPU sampler");
    // Close politely so that neither server logs a storm of resets.
    futures_util::future::join_all(sockets.iter_mut().map(|s| s.close(None))).await;
    Outcome {
        reports,
        rss_after_kib,
        server_cpu,
        clients_cpu,
    }
}

fn row(server: &str, settings: &Settings, outcome: Outcome, rss_before_kib: u64) -> Row {
    let secs = settings.window.as_secs_f64();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut keystrokes = 0;
    let mut undelivered = 0;
    let mut errors = Vec::new();
    for report in outcome.reports {
        latencies.extend(report.latencies);
        keystrokes += report.keystrokes;
        undelivered += report.undelivered;
        errors.extend(report.error);
    }
    latencies.sort_unstable();
    Row {
        server: server.to_owned(),
        keystrokes_per_s: keystrokes as f64 / secs,
        deliveries_per_s: latencies.len() as f64 / secs,
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        max: latencies.last().copied().unwrap_or_default(),
        undelivered,
        errors,
        rss_before_kib,
        rss_after_kib: outcome.rss_after_kib,
        docs: settings.docs,
        server_cpu: outcome.server_cpu.as_secs_f64() / secs,
        clients_cpu: outcome.clients_cpu.as_secs_f64() / secs,
    }
}

/// Meridian as a child process on SQLite: accounts, documents and shares through the
/// API, then the load with each writer's session cookie.
async fn bench_meridian(settings: &Settings) -> (Row, Vec<String>) {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = ServerProcess::start(BIN, &db).await;
    let slots = settings.clients.div_ceil(settings.docs);
    let mut writers = Vec::with_capacity(slots);
    for j in 0..slots {
        let client = Client::at(&server.base_url());
        let _: serde_json::Value = client
            .signup(&format!("writer{j}"), "bench-password-1")
            .await
            .expect(201);
        writers.push(client);
    }
    let mut doc_ids = Vec::with_capacity(settings.docs);
    for d in 0..settings.docs {
        let doc: Doc = writers[0]
            .post_json(
                "/api/docs",
                &CreateDoc {
                    title: format!("Bench document {d}"),
                },
            )
            .await
            .expect(201);
        for j in 1..settings.writers_of(d) {
            let _: Doc = writers[0]
                .post_json(
                    &format!("/api/docs/{}/members", doc.id),
                    &ShareDoc {
                        username: format!("writer{j}"),
                        role: Role::Editor,
                    },
                )
                .await
                .expect(200);
        }
        doc_ids.push(doc.id);
    }
    let endpoints = (0..settings.clients)
        .map(|i| Endpoint {
            url: server.ws_url(&format!("/yjs/{}", doc_ids[i % settings.docs])),
            cookie: writers[i / settings.docs].cookie_header(),
        })
        .collect();
    let pid = server.pid();
    let rss_before = rss_kib(pid);
    let outcome = load(settings, endpoints, pid).await;
    let row = row("Meridian (SQLite)", settings, outcome, rss_before);
    if !row.errors.is_empty() {
        eprintln!("--- Meridian's stderr ---\n{}", server.stderr_log());
    }
    drop(server);
    drop(db);
    (row, doc_ids)
}

/// The reference server: the same load on rooms at the same paths, without accounts.
async fn bench_reference(settings: &Settings, doc_ids: &[String]) -> Row {
    let server = ReferenceServer::start().await;
    let endpoints = (0..settings.clients)
        .map(|i| Endpoint {
            url: server.room_url(&format!("yjs/{}", doc_ids[i % settings.docs])),
            cookie: None,
        })
        .collect();
    let pid = server.pid();
    let rss_before = rss_kib(pid);
    let outcome = load(settings, endpoints, pid).await;
    let row = row("y-websocket 1.5.4 (Node)", settings, outcome, rss_before);
    if !row.errors.is_empty() {
        eprintln!(
            "--- the reference server's stderr ---\n{}",
            server.stderr_log()
        );
    }
    server.stop().await;
    row
}

fn print_table(settings: &Settings, rows: &[Row]) {
    println!();
    println!("| server | keystrokes/s | deliveries/s | p50 | p99 | max | undelivered | RSS before | RSS after | per document | server CPU | server CPU per delivery | clients' CPU |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {:.1} MiB | {:.1} MiB | {:.1} KiB | {:.0} % | {:.1} µs | {:.0} % |",
            r.server,
            r.keystrokes_per_s,
            r.deliveries_per_s,
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
            r.undelivered,
            r.rss_before_kib as f64 / 1024.0,
            r.rss_after_kib as f64 / 1024.0,
            r.kib_per_doc(),
            r.server_cpu * 100.0,
            r.server_us_per_delivery(),
            r.clients_cpu * 100.0,
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("\nCPU: share of one core during the window ({cores} cores on this machine).");
    for r in rows.iter().filter(|r| !r.errors.is_empty()) {
        println!(
            "\n{}: {} of {} clients failed; first: {}",
            r.server,
            r.errors.len(),
            settings.clients,
            r.errors[0]
        );
    }
    if let [ours, theirs] = rows {
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.2}×", a / b)
            } else {
                "n/a".into()
            }
        };
        println!();
        println!(
            "ours/theirs: keystrokes/s {}, deliveries/s {}, p99 {}, server CPU per delivery {}; \
             theirs/ours: memory per document {}",
            ratio(ours.keystrokes_per_s, theirs.keystrokes_per_s),
            ratio(ours.deliveries_per_s, theirs.deliveries_per_s),
            ratio(ours.p99.as_secs_f64(), theirs.p99.as_secs_f64()),
            ratio(
                ours.server_us_per_delivery(),
                theirs.server_us_per_delivery()
            ),
            ratio(theirs.kib_per_doc(), ours.kib_per_doc()),
        );
    }
}

fn main() {
    let settings = Settings::from_env();
    let mode = if settings.saturation() {
        "saturation (each client waits for its last keystroke's acknowledgement)".to_owned()
    } else {
        format!("{} keystrokes/s per client ±50 %", settings.rate)
    };
    println!(
        "documents load: seed={} (DOCS_BENCH_SEED), {} clients over {} documents, {mode}, \
         {} s warm-up, {} s measured, loopback",
        settings.seed,
        settings.clients,
        settings.docs,
        settings.warmup.as_secs(),
        settings.window.as_secs(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let rows = runtime.block_on(async {
        let mut rows = Vec::new();
        let mut doc_ids: Vec<String> = (0..settings.docs)
            .map(|d| format!("bench-{d:04}"))
            .collect();
        for server in &settings.servers {
            match server.as_str() {
                "meridian" => {
                    let (row, ids) = bench_meridian(&settings).await;
                    println!(
                        "  Meridian: done ({:.0} deliveries/s)",
                        row.deliveries_per_s
                    );
                    rows.push(row);
                    doc_ids = ids;
                }
                "reference" => {
                    let row = bench_reference(&settings, &doc_ids).await;
                    println!(
                        "  reference: done ({:.0} deliveries/s)",
                        row.deliveries_per_s
                    );
                    rows.push(row);
                }
                other => {
                    panic!("DOCS_BENCH_SERVERS: unknown server {other:?} (meridian, reference)")
                }
            }
        }
        print_table(&settings, &rows);
        rows
    });
    // Lost keystrokes or failed clients are a failure of a server, not a result.
    if rows
        .iter()
        .any(|r| r.undelivered > 0 || !r.errors.is_empty())
    {
        eprintln!("FAILED: a server lost keystrokes or dropped clients (see above)");
        std::process::exit(1);
    }
}
