//! Object storage (`--object-store`) under the real server:
//!
//! - the drive on an S3-compatible server (moto): upload, download, a chunk stored once
//!   whoever uploads it, retention deleting chunks from the bucket; both backends;
//! - tracing on S3: ingest, seal, a trace by id from blocks in the bucket (ranged GETs),
//!   also after a restart that finds the blocks by listing the bucket; and the same on a
//!   `file://` object store, which needs no moto;
//! - orphaned chunk bytes (written, then no row: a crash between the two) collected by
//!   the retention pass once older than the grace period, fresh ones and referenced
//!   ones kept; on a local directory, a `file://` store and moto; both backends.
//!
//! The moto tests need `MERIDIAN_MOTO` (`scripts/test.sh` installs moto and sets it);
//! without it they print that they skipped.

use std::collections::HashSet;

use futures_util::TryStreamExt;
use meridian_server::drive::retention::RetentionReport;
use meridian_server::objects::{ObjectStore, Objects};
use meridian_server::run_maintenance;
use meridian_shared::drive::chunking::{chunk_hash, manifest_of};
use meridian_shared::drive::{Committed, NewUpload, UploadStatus};
use meridian_shared::traces::{to_hex, TraceTree};
use meridian_tests::both_backends;
use meridian_tests::client::Client;
use meridian_tests::db::TestDatabase;
use meridian_tests::objects::Moto;
use meridian_tests::seeded_bytes;
use meridian_tests::server::TestServer;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::Value;

const PASSWORD: &str = "objects-in-buckets-7";
const HOUR: i64 = 3600 * 1000;
const DAY: i64 = 24 * HOUR;

async fn account(server: &TestServer, username: &str) -> Client {
    let client = Client::new(server);
    client.signup(username, PASSWORD).await.expect::<Value>(201);
    client
}

/// Uploads `data` as a new file `name`; answers the chunks sent and the commit.
async fn upload(client: &Client, name: &str, data: &[u8]) -> (usize, Committed) {
    let target = NewUpload {
        node_id: None,
        base_version: None,
        parent_id: None,
        name: Some(name.to_owned()),
        device: "laptop".to_owned(),
        chunks: manifest_of(data),
        chunk_edits: None,
        signatures: false,
    };
    let status: UploadStatus = client
        .post_json("/api/drive/uploads", &target)
        .await
        .expect(201);
    let missing: HashSet<&String> = status.missing.iter().collect();
    let mut offset = 0;
    for chunk in &target.chunks {
        let piece = &data[offset..offset + chunk.size as usize];
        offset += chunk.size as usize;
        if missing.contains(&chunk.hash) {
            let path = format!(
                "/api/drive/uploads/{}/chunks/{}",
                status.upload_id, chunk.hash
            );
            let reply = client
                .send(client.http().put(client.url(&path)).body(piece.to_vec()))
                .await;
            assert_eq!(reply.status.as_u16(), 204, "{}", reply.json);
        }
    }
    let committed: Committed = client
        .post_empty(&format!("/api/drive/uploads/{}/commit", status.upload_id))
        .await
        .expect(200);
    (missing.len(), committed)
}

async fn download(client: &Client, node_id: &str) -> Vec<u8> {
    let path = format!("/api/drive/nodes/{node_id}/content");
    let response = client.http().get(client.url(&path)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "{path}");
    response.bytes().await.unwrap().to_vec()
}

async fn pass(server: &TestServer) -> RetentionReport {
    run_maintenance(&server.state).await.unwrap().drive
}

async fn chunk_bytes(server: &TestServer, hash: &str) -> bool {
    server.state.drive.chunks.get(hash).await.is_ok()
}

async fn chunk_row(server: &TestServer, hash: &str) -> bool {
    let row: Option<String> = sqlx::query_scalar("SELECT hash FROM drive_chunks WHERE hash = $1")
        .bind(hash)
        .fetch_optional(&server.state.db.pool)
        .await
        .unwrap();
    row.is_some()
}

/// The keys under `prefix` of the object store at `url`, as a client of the bucket
/// sees them (not through the server).
async fn keys(url: &str, prefix: &str) -> Vec<String> {
    let store = Objects::open(url).unwrap().under(prefix);
    let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
    let mut keys: Vec<String> = listed.into_iter().map(|m| m.location.to_string()).collect();
    keys.sort();
    keys
}

both_backends!(drive_on_s3, |db: TestDatabase| async move {
    let Some(moto) = Moto::start("drive_on_s3").await else {
        return;
    };
    let url = moto.bucket("meridian", "site-a").await;
    let server = TestServer::start_with(&db, |c| c.object_store = Some(url.clone())).await;
    let alice = account(&server, "alice").await;
    let bob = account(&server, "bob").await;

    let data = seeded_bytes(900 * 1024, 41);
    let unique: HashSet<String> = manifest_of(&data).into_iter().map(|c| c.hash).collect();
    assert!(unique.len() > 2, "several chunks");
    let (sent, a) = upload(&alice, "film.bin", &data).await;
    assert_eq!(sent, unique.len());
    assert_eq!(download(&alice, &a.node.id).await, data);
    // Bob's copy sends nothing: the chunks are in the bucket already.
    let (sent, b) = upload(&bob, "same.bin", &data).await;
    assert_eq!(sent, 0);
    assert_eq!(download(&bob, &b.node.id).await, data);

    // In the bucket under the site's prefix, `drive/chunks/ab/cd/<hash>`; none on disk.
    let expected: Vec<String> = {
        let mut keys: Vec<String> = unique
            .iter()
            .map(|h| format!("{}/{}/{h}", &h[..2], &h[2..4]))
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&url, "drive/chunks").await, expected);
    assert!(!db.data_dir().join("drive").join("chunks").exists());

    // Retention: both files deleted, purged from the trash, then their chunks after the
    // grace period, from the bucket.
    for (client, id) in [(&alice, &a.node.id), (&bob, &b.node.id)] {
        let reply = client.delete(&format!("/api/drive/nodes/{id}")).await;
        assert!(reply.status.is_success(), "{}", reply.json);
    }
    server.clock.advance(31 * DAY);
    let report = pass(&server).await;
    assert_eq!(report.nodes_purged, 2, "{report:?}");
    assert_eq!(report.chunks_deleted, 0, "{report:?}");
    assert_eq!(keys(&url, "drive/chunks").await.len(), unique.len());
    server.clock.advance(HOUR + 1);
    let report = pass(&server).await;
    assert_eq!(report.chunks_deleted, unique.len() as u64, "{report:?}");
    assert!(keys(&url, "drive/chunks").await.is_empty());
    for hash in &unique {
        assert!(!chunk_row(&server, hash).await);
    }
    drop(moto);
});

fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// A two-service trace: `api` calls `db`.
fn two_span_trace(trace: [u8; 16]) -> ExportTraceServiceRequest {
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let span = |id: u64, parent: Option<u64>, name: &str| Span {
        trace_id: trace.to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
        name: name.into(),
        kind: 2,
        start_time_unix_nano: t0 + id * 1_000_000,
        end_time_unix_nano: t0 + 50_000_000,
        ..Default::default()
    };
    let group = |service: &str, spans: Vec<Span>| ResourceSpans {
        resource: Some(Resource {
            attributes: vec![attr("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            group("api", vec![span(1, None, "GET /basket")]),
            group("db", vec![span(2, Some(1), "SELECT basket")]),
        ],
    }
}

async fn trace_by_id(server: &TestServer, trace: [u8; 16]) -> TraceTree {
    let reader = account(server, "tracer").await;
    reader
        .get(&format!("/api/tracing/traces/{}", to_hex(&trace)))
        .await
        .expect(200)
}

/// Ingest, seal, read back from blocks in the object store at `url`; then again from a
/// new instance, which finds the blocks by listing the store.
async fn traces_round_trip(db: &TestDatabase, url: &str) {
    let trace = [7u8; 16];
    let server = TestServer::start_with(db, |c| c.object_store = Some(url.to_owned())).await;
    let agent = Client::new(&server);
    let response = agent
        .http()
        .post(agent.url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(two_span_trace(trace).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    server.state.traces.store.flush().await.unwrap();
    let blocks = keys(url, "traces/blocks").await;
    assert!(
        !blocks.is_empty() && blocks.iter().all(|k| k.ends_with(".blk")),
        "{blocks:?}"
    );
    assert!(!db.data_dir().join("traces").join("blocks").exists());
    let tree = trace_by_id(&server, trace).await;
    assert_eq!(tree.spans.len(), 2);
    assert_eq!(tree.root_name, "GET /basket");
    assert_eq!(tree.services, ["api", "db"]);
    server.shutdown().await;

    let again = TestServer::start_with(db, |c| c.object_store = Some(url.to_owned())).await;
    let reader = Client::new(&again);
    reader.signin("tracer", PASSWORD).await.expect::<Value>(200);
    let tree: TraceTree = reader
        .get(&format!("/api/tracing/traces/{}", to_hex(&trace)))
        .await
        .expect(200);
    assert_eq!(tree.spans.len(), 2);
    assert_eq!(keys(url, "traces/blocks").await, blocks);
}

both_backends!(traces_on_s3, |db: TestDatabase| async move {
    let Some(moto) = Moto::start("traces_on_s3").await else {
        return;
    };
    let url = moto.bucket("meridian", "site-b").await;
    traces_round_trip(&db, &url).await;
    drop(moto);
});

both_backends!(
    traces_on_a_file_object_store,
    |db: TestDatabase| async move {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        traces_round_trip(&db, &url).await;
    }
);

/// Orphaned bytes go once older than the grace period; fresh ones and referenced ones
/// stay. `object_store`: the server's `--object-store`, `None` for its local directory.
async fn orphans_are_collected(db: &TestDatabase, object_store: Option<String>) {
    let server = TestServer::start_with(db, |c| c.object_store = object_store).await;
    let alice = account(&server, "alice").await;
    let data = seeded_bytes(300 * 1024, 5);
    let (_, kept) = upload(&alice, "kept.bin", &data).await;
    let referenced: Vec<String> = manifest_of(&data).into_iter().map(|c| c.hash).collect();

    // Bytes stored with no row, as a crash between the write and the row leaves them.
    let orphans: Vec<String> = (0..3u64)
        .map(|i| {
            let chunk = seeded_bytes(1000 + i as usize, 100 + i);
            chunk_hash(&chunk)
        })
        .collect();
    for (i, hash) in orphans.iter().enumerate() {
        let chunk = seeded_bytes(1000 + i, 100 + i as u64);
        server.state.drive.chunks.put(hash, chunk).await.unwrap();
    }

    // Inside the grace period: kept.
    let report = pass(&server).await;
    assert_eq!(report.orphans_found, 0, "{report:?}");
    assert_eq!(report.chunks_deleted, 0, "{report:?}");
    for hash in &orphans {
        assert!(chunk_bytes(&server, hash).await);
    }

    // Past it (the clock started before they were written): gone, in this pass; the
    // referenced chunks stay, row and bytes.
    server.clock.advance(2 * HOUR);
    let report = pass(&server).await;
    assert_eq!(report.orphans_found, orphans.len() as u64, "{report:?}");
    assert_eq!(report.chunks_deleted, orphans.len() as u64, "{report:?}");
    for hash in &orphans {
        assert!(!chunk_bytes(&server, hash).await, "{hash}");
        assert!(!chunk_row(&server, hash).await, "{hash}");
    }
    for hash in &referenced {
        assert!(chunk_bytes(&server, hash).await, "{hash}");
        assert!(chunk_row(&server, hash).await, "{hash}");
    }
    assert_eq!(download(&alice, &kept.node.id).await, data);

    // An orphan stored again by an upload is a chunk like any other.
    let (sent, again) = upload(&alice, "again.bin", &seeded_bytes(1000, 100)).await;
    assert_eq!(sent, 1);
    server.clock.advance(2 * HOUR);
    let report = pass(&server).await;
    assert_eq!(report.orphans_found, 0, "{report:?}");
    assert_eq!(
        download(&alice, &again.node.id).await,
        seeded_bytes(1000, 100)
    );
}

both_backends!(
    orphans_in_a_local_directory,
    |db: TestDatabase| async move {
        orphans_are_collected(&db, None).await;
    }
);

both_backends!(
    orphans_in_a_file_object_store,
    |db: TestDatabase| async move {
        let dir = tempfile::tempdir().unwrap();
        orphans_are_collected(&db, Some(format!("file://{}", dir.path().display()))).await;
    }
);

both_backends!(orphans_on_s3, |db: TestDatabase| async move {
    let Some(moto) = Moto::start("orphans_on_s3").await else {
        return;
    };
    let url = moto.bucket("meridian", "site-c").await;
    orphans_are_collected(&db, Some(url)).await;
    drop(moto);
});

/// `wal-node --archive` runs with its uploader, and `wal recover --archive --node`
/// fetches the node's archive and replays it with the local log. (A node archives a
/// segment only once 64 MiB segments fill and are purged: the segments' way to the
/// store and back is tested in `server/src/wal/archive.rs` and `recover.rs`.)
#[tokio::test]
async fn wal_recover_fetches_the_archive_from_object_storage() {
    use meridian_shared::wal::WalAppendResponse;
    use meridian_tests::wal::Cluster;
    const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("bucket").display());
    let cluster = Cluster::start(
        std::path::Path::new(BIN),
        1,
        &["--snapshot-every", "20", "--archive", &url],
    )
    .await;
    let mut last = 0;
    for i in 0..30 {
        let answer: WalAppendResponse = cluster
            .append(1, serde_json::json!({"records": [{"key": format!("k{}", i % 4), "value": i.to_string()}]}))
            .await
            .json()
            .await
            .expect("append");
        last = answer.last_lsn;
    }
    let out = dir.path().join("recovered.json");
    let recover = |extra: &[&str]| {
        std::process::Command::new(BIN)
            .args(["wal", "recover", "--data-dir"])
            .arg(&cluster.node(1).dir)
            .args(["--to-lsn", &last.to_string(), "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .expect("run wal recover")
    };
    // --archive needs --node.
    assert!(!recover(&["--archive", &url]).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let run = recover(&["--archive", &url, "--node", "1"]);
        let json: Option<Value> = run
            .status
            .success()
            .then(|| serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap());
        if let Some(json) = json.filter(|json| json["lsn"] == last) {
            assert_eq!(json["entries"]["k1"], "29", "{json}");
            assert!(
                String::from_utf8_lossy(&run.stderr).contains("archived segments of node 1"),
                "{}",
                String::from_utf8_lossy(&run.stderr)
            );
            break;
        }
        // The node saves its commit index every 200 ms.
        assert!(
            std::time::Instant::now() < deadline,
            "never recovered lsn {last}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
