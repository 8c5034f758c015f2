//! File sync, measured: `cargo bench -p meridian-tests --bench drive`.
//!
//! 1. Chunking speed in native code: FastCDC cut points alone, and cut points plus the
//!    SHA-256 of every chunk (what a client does before an upload), over in-memory data.
//! 2. Bytes for a one-byte change in a 100 MB file, sent and received: Meridian as the
//!    browser uploads (the whole manifest's JSON and the chunks the server lacks), as the
//!    agent uploads (chunk edits of the base version's list, deltas of the changed chunks
//!    against the block signatures the server answers), both as request and response
//!    bodies; the real agent's whole sync pass of such an edit, counted on the wire by a
//!    relay (HTTP headers and the change feed included); against `rsync --no-whole-file`
//!    `--ignore-times` between two local folders on the same edit (its "total bytes sent" and "received":
//!    rsync's receiver sends block checksums, its sender the delta).
//! 3. Upload of a 1 GB file on loopback by the real agent (`meridian sync --once`): time,
//!    throughput, and the peak resident memory of the agent and of the server process
//!    (sampled from /proc every 20 ms), which must stay flat (tens of MB).
//! 4. Propagation between two agents in watch mode: a file written in one folder until
//!    it is whole in the other, p50/p99/max over N rounds.
//!
//! Settings (environment): `DRIVE_BENCH_CHUNK_MB` (default 256), `DRIVE_BENCH_EDIT_MB`
//! (100), `DRIVE_BENCH_UPLOAD_MB` (1024), `DRIVE_BENCH_ROUNDS` (50), `DRIVE_BENCH_PARTS`
//! (default `chunking,edit,upload,propagation`). Everything runs on 127.0.0.1, bounded in
//! size and time.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_server::drive::agent::api::Api;
use meridian_server::drive::agent::state::AgentState;
use meridian_server::drive::agent::sync::Syncer;
use meridian_shared::drive::chunking::{manifest_of, Chunker, ManifestBuilder};
use meridian_shared::drive::delta::edits_between;
use meridian_shared::drive::{ChunkRef, NewUpload, UploadStatus};
use meridian_tests::bench::{env_or, ms, percentile};
use meridian_tests::client::Client;
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::process::ServerProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const PASSWORD: &str = "syncing-files-42";
const MB: usize = 1024 * 1024;

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn chunking(mb: usize) {
    let data = bytes(mb * MB, 1);
    let started = Instant::now();
    let mut chunker = Chunker::new();
    let mut count = 0usize;
    chunker.push(&data, &mut |_| count += 1);
    chunker.finish(&mut |_| count += 1);
    let cut = started.elapsed();
    let started = Instant::now();
    let mut builder = ManifestBuilder::new();
    builder.push(&data);
    let manifest = builder.finish();
    let hashed = started.elapsed();
    let gbs = |d: Duration| data.len() as f64 / d.as_secs_f64() / 1e9;
    println!(
        "chunking {mb} MB ({count} chunks, mean {} KiB):",
        data.len() / count / 1024
    );
    println!("  FastCDC cut points:          {:.2} GB/s", gbs(cut));
    println!(
        "  cut points + SHA-256:        {:.2} GB/s ({} chunks)",
        gbs(hashed),
        manifest.len()
    );
    println!("  (wasm: the /drive page chunks with this same code; not measured here)");
}

/// Resident memory of a process in KiB; 0 once it has exited (a zombie has none).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

async fn signed_in(server: &ServerProcess) -> Client {
    let client = Client::at(&server.base_url());
    client
        .signup("bench", PASSWORD)
        .await
        .expect::<serde_json::Value>(201);
    client
}

/// Body bytes of one upload: request bodies sent, response bodies received.
#[derive(Debug, Default, Clone, Copy)]
struct Traffic {
    sent: u64,
    received: u64,
}

impl Traffic {
    fn total(&self) -> u64 {
        self.sent + self.received
    }
}

/// Sends one request, counting its body and the answer's body; answers the answer.
async fn counted(
    traffic: &mut Traffic,
    request: reqwest::RequestBuilder,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    traffic.sent += body.len() as u64;
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let answer = response.bytes().await.unwrap().to_vec();
    traffic.received += answer.len() as u64;
    (status, answer)
}

/// Uploads `data` as a new version of `target`'s file (or a new file): with `base` (the
/// base version's chunk list) as chunk edits and deltas, as the agent does; without, as
/// the whole list and whole chunks, as the browser does. Answers the body bytes both
/// ways and the commit.
async fn upload_counting(
    client: &Client,
    mut target: NewUpload,
    data: &[u8],
    base: Option<&[ChunkRef]>,
) -> (Traffic, serde_json::Value) {
    let mut traffic = Traffic::default();
    let chunks = manifest_of(data);
    match base {
        Some(base) => {
            target.chunk_edits = Some(edits_between(base, &chunks));
            target.signatures = true;
        }
        None => target.chunks = chunks.clone(),
    }
    let post = client
        .http()
        .post(client.url("/api/drive/uploads"))
        .header("content-type", "application/json");
    let (status, answer) = counted(&mut traffic, post, serde_json::to_vec(&target).unwrap()).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
    let status: UploadStatus = serde_json::from_slice(&answer).unwrap();
    let mut missing: HashSet<&String> = status.missing.iter().collect();
    let mut offset = 0;
    for chunk in &chunks {
        let piece = &data[offset..offset + chunk.size as usize];
        offset += chunk.size as usize;
        if !missing.remove(&chunk.hash) {
            continue;
        }
        let offer = status.bases.iter().find(|b| b.hash == chunk.hash);
        let (url, body) = match offer.and_then(|b| Some((b, b.delta_of(piece)?))) {
            Some((offer, delta)) => (
                format!(
                    "/api/drive/uploads/{}/deltas/{}?base={}",
                    status.upload_id, chunk.hash, offer.base
                ),
                delta,
            ),
            None => (
                format!(
                    "/api/drive/uploads/{}/chunks/{}",
                    status.upload_id, chunk.hash
                ),
                piece.to_vec(),
            ),
        };
        let put = client.http().put(client.url(&url));
        let (code, answer) = counted(&mut traffic, put, body).await;
        assert_eq!(code, 204, "{}", String::from_utf8_lossy(&answer));
    }
    let commit = client
        .http()
        .post(client.url(&format!("/api/drive/uploads/{}/commit", status.upload_id)));
    let (code, answer) = counted(&mut traffic, commit, Vec::new()).await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&answer));
    (traffic, serde_json::from_slice(&answer).unwrap())
}

/// A TCP relay to `target` that counts the bytes each way (HTTP headers included).
async fn counting_relay(target: std::net::SocketAddr) -> (String, Arc<[AtomicU64; 2]>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let counts: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let shared = counts.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counts = shared.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up_counts = counts.clone();
                let up = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = client_read.read(&mut buf).await {
                        up_counts[0].fetch_add(n as u64, SeqCst);
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = server_write.shutdown().await;
                };
                let down = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = server_read.read(&mut buf).await {
                        counts[1].fetch_add(n as u64, SeqCst);
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = client_write.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (url, counts)
}

/// A `NewUpload` naming nothing yet, by the bench device.
fn new_version_of_nothing() -> NewUpload {
    NewUpload {
        chunk_edits: None,
        signatures: false,
        node_id: None,
        base_version: None,
        parent_id: None,
        name: None,
        device: "bench".into(),
        chunks: vec![],
    }
}

fn kb(bytes: u64) -> String {
    format!("{:.1} KB", bytes as f64 / 1000.0)
}

async fn edit(mb: usize) {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = ServerProcess::start(BIN, &db).await;
    let client = signed_in(&server).await;
    let data = bytes(mb * MB, 2);
    let base = manifest_of(&data);
    let target = NewUpload {
        name: Some("big.bin".into()),
        ..new_version_of_nothing()
    };
    let (_, first) = upload_counting(&client, target, &data, None).await;
    let mut edited = data.clone();
    edited[mb * MB / 2] ^= 1;
    let again = NewUpload {
        node_id: first["node"]["id"].as_str().map(Into::into),
        base_version: first["version"]["id"].as_str().map(Into::into),
        ..new_version_of_nothing()
    };
    // As the agent sends it: edits of the base's list, the changed chunk as a delta.
    let (small, second) = upload_counting(&client, again, &edited, Some(&base)).await;
    assert_eq!(second["outcome"], "updated");
    // As the browser sends it: one more byte changed, on the new version.
    let mut edited_again = edited.clone();
    edited_again[mb * MB / 2 + 1] ^= 1;
    let on_second = NewUpload {
        base_version: second["version"]["id"].as_str().map(Into::into),
        node_id: second["node"]["id"].as_str().map(Into::into),
        ..new_version_of_nothing()
    };
    let (whole, third) = upload_counting(&client, on_second, &edited_again, None).await;
    assert_eq!(third["outcome"], "updated");
    println!(
        "one byte changed in a {mb} MB file ({} chunks):",
        base.len()
    );
    println!(
        "  Meridian, whole list + whole chunks (the browser):  {} sent, {} received ({} total; bodies)",
        kb(whole.sent),
        kb(whole.received),
        kb(whole.total())
    );
    println!(
        "  Meridian, chunk edits + deltas (the agent):         {} sent, {} received ({} total; bodies)",
        kb(small.sent),
        kb(small.received),
        kb(small.total())
    );

    // The real agent, through a relay that counts every byte on the wire.
    let agent_dir = tempfile::tempdir().unwrap();
    let server_addr: std::net::SocketAddr = server
        .base_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let (relay, counts) = counting_relay(server_addr).await;
    let api = Api::sign_in(&relay, "bench", PASSWORD).await.unwrap();
    let root = agent_dir.path().canonicalize().unwrap();
    let state = AgentState::load(&root, &relay, "bench").unwrap();
    let mut syncer = Syncer::new(api, root.clone(), "bench-agent".into(), state);
    syncer.pass().await.unwrap(); // downloads big.bin (its list is kept)
    let mut local = std::fs::read(root.join("big.bin")).unwrap();
    local[mb * MB / 3] ^= 1;
    std::fs::write(root.join("big.bin"), &local).unwrap();
    let before = [counts[0].load(SeqCst), counts[1].load(SeqCst)];
    let report = syncer.pass().await.unwrap();
    let agent_sent = counts[0].load(SeqCst) - before[0];
    let agent_received = counts[1].load(SeqCst) - before[1];
    assert_eq!(report.uploaded, 1, "{report:?}");
    println!(
        "  Meridian, the agent's whole sync pass (wire, HTTP headers included): {} sent, {} received ({} total; {} chunk(s), {} as deltas)",
        kb(agent_sent),
        kb(agent_received),
        kb(agent_sent + agent_received),
        report.chunks_sent,
        report.deltas_sent
    );
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(src.join("big.bin"), &data).unwrap();
    std::fs::write(dst.join("big.bin"), &data).unwrap();
    std::fs::write(src.join("big.bin"), &edited).unwrap();
    match std::process::Command::new("rsync")
        .args(["-a", "--no-whole-file", "--ignore-times", "--stats"])
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dst.display()))
        .output()
    {
        Ok(out) => {
            let stats = String::from_utf8_lossy(&out.stdout);
            for line in stats
                .lines()
                .filter(|l| l.starts_with("Total bytes") || l.starts_with("Literal data"))
            {
                println!("  rsync:    {line}");
            }
            assert!(
                std::fs::read(dst.join("big.bin")).unwrap() == edited,
                "rsync copied the edit"
            );
        }
        Err(err) => println!("  rsync:    not run ({err}); `apt-get install rsync`"),
    }
}

fn agent(server: &ServerProcess, dir: &Path, device: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("sync")
        .arg(dir)
        .args([
            "--server",
            &server.base_url(),
            "--username",
            "bench",
            "--device",
            device,
            "--poll-ms",
            "100",
        ])
        .env("MERIDIAN_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn upload(mb: usize) {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = ServerProcess::start(BIN, &db).await;
    signed_in(&server).await;
    let dir = tempfile::tempdir().unwrap();
    {
        let mut file = std::fs::File::create(dir.path().join("huge.bin")).unwrap();
        for i in 0..mb {
            file.write_all(&bytes(MB, i as u64 + 11)).unwrap();
        }
    }
    let server_before = rss_kib(server.pid());
    let started = Instant::now();
    let mut child = agent(&server, dir.path(), "uploader")
        .arg("--once")
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let (mut agent_peak, mut server_peak) = (0, 0);
    let status = loop {
        agent_peak = agent_peak.max(rss_kib(pid));
        server_peak = server_peak.max(rss_kib(server.pid()));
        tokio::select! {
            status = child.wait() => break status.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "upload took over 15 minutes"
        );
    };
    let took = started.elapsed();
    assert!(status.success());
    println!("uploading a {mb} MB file with the agent (loopback, SQLite):");
    println!(
        "  {:.1} s, {:.0} MB/s",
        took.as_secs_f64(),
        mb as f64 / took.as_secs_f64()
    );
    println!(
        "  peak RSS: agent {} MB, server {} MB (server before: {} MB)",
        agent_peak / 1024,
        server_peak / 1024,
        server_before / 1024
    );
}

async fn propagation(rounds: usize) {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = ServerProcess::start(BIN, &db).await;
    signed_in(&server).await;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _agent_a = agent(&server, a.path(), "a").spawn().unwrap();
    let _agent_b = agent(&server, b.path(), "b").spawn().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await; // both agents signed in and idle
    let mut samples = Vec::new();
    for round in 0..rounds {
        let (from, to) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let name = format!("round-{round}.txt");
        let body = format!("round {round}").into_bytes();
        let started = Instant::now();
        std::fs::write(from.path().join(&name), &body).unwrap();
        while std::fs::read(to.path().join(&name)).ok().as_ref() != Some(&body) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{name} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    println!("propagation between two agents in watch mode ({rounds} files, poll 100 ms):");
    println!(
        "  p50 {}  p99 {}  max {}",
        ms(percentile(&samples, 50.0)),
        ms(percentile(&samples, 99.0)),
        ms(*samples.last().unwrap())
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let parts: String = env_or(
        "DRIVE_BENCH_PARTS",
        "chunking,edit,upload,propagation".to_owned(),
    );
    for part in parts.split(',') {
        match part.trim() {
            "chunking" => chunking(env_or("DRIVE_BENCH_CHUNK_MB", 256)),
            "edit" => edit(env_or("DRIVE_BENCH_EDIT_MB", 100)).await,
            "upload" => upload(env_or("DRIVE_BENCH_UPLOAD_MB", 1024)).await,
            "propagation" => propagation(env_or("DRIVE_BENCH_ROUNDS", 50)).await,
            other => eprintln!("unknown part {other:?}"),
        }
    }
}
