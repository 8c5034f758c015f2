//! File sync, measured: `cargo bench -p meridian-tests --bench drive`.
//!
//! 1. Chunking speed in native code: FastCDC cut points alone, and cut points plus the
//!    SHA-256 of every chunk (what a client does before an upload), over in-memory data.
//! 2. Bytes sent for a one-byte change in a 100 MB file: Meridian (the manifest's JSON
//!    plus the chunks the server lacks, request bodies) against `rsync --no-whole-file`
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
use std::time::{Duration, Instant};

use meridian_shared::drive::chunking::{manifest_of, Chunker, ManifestBuilder};
use meridian_shared::drive::{NewUpload, UploadStatus};
use meridian_tests::bench::{env_or, ms, percentile};
use meridian_tests::client::Client;
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::process::ServerProcess;
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

/// Uploads `data` and answers the request body bytes sent (manifest JSON + chunks).
async fn upload_counting(
    client: &Client,
    target: NewUpload,
    data: &[u8],
) -> (u64, serde_json::Value) {
    let mut target = target;
    target.chunks = manifest_of(data);
    let manifest_json = serde_json::to_vec(&target).unwrap();
    let mut sent = manifest_json.len() as u64;
    let status: UploadStatus = client
        .send(
            client
                .http()
                .post(client.url("/api/drive/uploads"))
                .header("content-type", "application/json")
                .body(manifest_json),
        )
        .await
        .expect(201);
    let missing: HashSet<&String> = status.missing.iter().collect();
    let mut offset = 0;
    for chunk in &target.chunks {
        let piece = &data[offset..offset + chunk.size as usize];
        offset += chunk.size as usize;
        if missing.contains(&chunk.hash) {
            let url = client.url(&format!(
                "/api/drive/uploads/{}/chunks/{}",
                status.upload_id, chunk.hash
            ));
            client
                .send(client.http().put(url).body(piece.to_vec()))
                .await;
            sent += piece.len() as u64;
        }
    }
    let committed = client
        .post_empty(&format!("/api/drive/uploads/{}/commit", status.upload_id))
        .await
        .expect::<serde_json::Value>(200);
    (sent, committed)
}

async fn edit(mb: usize) {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = ServerProcess::start(BIN, &db).await;
    let client = signed_in(&server).await;
    let data = bytes(mb * MB, 2);
    let target = NewUpload {
        chunk_edits: None,
        signatures: false,
        node_id: None,
        base_version: None,
        parent_id: None,
        name: Some("big.bin".into()),
        device: "bench".into(),
        chunks: vec![],
    };
    let (_, first) = upload_counting(&client, target, &data).await;
    let mut edited = data.clone();
    edited[mb * MB / 2] ^= 1;
    let again = NewUpload {
        chunk_edits: None,
        signatures: false,
        node_id: first["node"]["id"].as_str().map(Into::into),
        base_version: first["version"]["id"].as_str().map(Into::into),
        parent_id: None,
        name: None,
        device: "bench".into(),
        chunks: vec![],
    };
    let (sent, _) = upload_counting(&client, again, &edited).await;
    println!("one byte changed in a {mb} MB file:");
    println!("  Meridian: {sent} bytes sent (manifest JSON + new chunks)");
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
