//! The replicated WAL against real `meridian wal-node` processes on 127.0.0.1:
//!
//! - appends through any node are readable on all; kill -9 of the leader, then of a
//!   follower, during a write load (4 writers, bounded): a new leader is elected, and
//!   after the restart every acknowledged write is on every node exactly once by its
//!   idempotency key, at the LSN it was acknowledged with;
//! - a repeated idempotency key answers the original LSN;
//! - a read through a follower after a write through another sees the write;
//! - bad input (unknown fields, oversized records, bad LSN ranges) gets a 4xx JSON code;
//! - `wal recover --to-lsn N` equals the state after the writes up to N, and
//!   `--to-time T` the state after the writes the leader stamped at or before T.
//!
//! Nothing waits by sleeping: each wait polls `/wal/status` (or the command) against a
//! deadline. The load's randomness is seeded; the seed is printed (WAL_TEST_SEED
//! replays it).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_shared::ids::format_rfc3339_ms;
use meridian_shared::wal::{WalAppendResponse, WalKvResponse};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::Mutex;

use meridian_tests::wal::{Cluster, Node, CLUSTER_TIMEOUT};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");

fn seed() -> u64 {
    let seed = std::env::var("WAL_TEST_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("WAL_TEST_SEED={seed}");
    seed
}

/// Writes `count` records from each of `writers` tasks through random live nodes,
/// retrying each (same idempotency key) until acknowledged. Returns the acknowledged
/// LSN of each idempotency key.
async fn write_load(
    cluster: Arc<Mutex<Cluster>>,
    phase: &str,
    writers: usize,
    count: usize,
    seed: u64,
    acknowledged: Arc<std::sync::Mutex<usize>>,
) -> HashMap<String, (String, u64)> {
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let cluster = cluster.clone();
        let phase = phase.to_owned();
        let acknowledged = acknowledged.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ ((writer as u64 + 1) * 0x9E37_79B9));
            let mut acked = HashMap::new();
            for i in 0..count {
                let key = format!("{phase}-{writer}-{i}");
                let value = format!("v{}", rng.random::<u32>());
                let deadline = Instant::now() + CLUSTER_TIMEOUT;
                loop {
                    let (target, http) = {
                        let cluster = cluster.lock().await;
                        let live: Vec<&Node> =
                            cluster.nodes.iter().filter(|n| n.child.is_some()).collect();
                        let node = live[rng.random_range(0..live.len())];
                        (node.url("/wal/append"), cluster.http.clone())
                    };
                    let body =
                        json!({"records": [{"key": key, "value": value, "idempotency_key": key}]});
                    let answer = http.post(target).json(&body).send().await;
                    if let Ok(response) = answer {
                        if response.status().is_success() {
                            let answer: WalAppendResponse =
                                response.json().await.expect("append json");
                            acked.insert(key.clone(), (value.clone(), answer.first_lsn));
                            *acknowledged.lock().unwrap() += 1;
                            break;
                        }
                        assert!(
                            response.status().is_server_error(),
                            "an append answered {}",
                            response.status()
                        );
                    }
                    assert!(Instant::now() < deadline, "{key} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            acked
        }));
    }
    let mut all = HashMap::new();
    for task in tasks {
        all.extend(task.await.expect("writer task"));
    }
    all
}

/// Waits until `acknowledged` reaches `at`.
async fn wait_acks(acknowledged: &std::sync::Mutex<usize>, at: usize) {
    let deadline = Instant::now() + CLUSTER_TIMEOUT;
    while *acknowledged.lock().unwrap() < at {
        assert!(Instant::now() < deadline, "the load stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9_of_the_leader_and_of_a_follower() {
    let seed = seed();
    let cluster = Arc::new(Mutex::new(
        Cluster::start(Path::new(BIN), 3, &["--snapshot-every", "50"]).await,
    ));
    let mut acked = HashMap::new();

    for phase in ["leader", "follower"] {
        let leader = cluster.lock().await.wait_for_leader(None).await;
        let victim = if phase == "leader" {
            leader
        } else {
            leader % 3 + 1
        };
        let acknowledged = Arc::new(std::sync::Mutex::new(0));
        let load = tokio::spawn(write_load(
            cluster.clone(),
            phase,
            4,
            75,
            seed,
            acknowledged.clone(),
        ));
        wait_acks(&acknowledged, 60).await;
        cluster.lock().await.nodes[victim as usize - 1].kill().await;
        println!(
            "{phase}: killed node {victim} after {} acks",
            acknowledged.lock().unwrap()
        );
        if phase == "leader" {
            let new_leader = cluster.lock().await.wait_for_leader(Some(victim)).await;
            println!("node {new_leader} leads");
        }
        acked.extend(load.await.expect("the load"));
        cluster.lock().await.nodes[victim as usize - 1]
            .start()
            .await;
    }

    let cluster = cluster.lock().await;
    let leader = cluster.wait_for_leader(None).await;
    let commit = cluster
        .status(leader)
        .await
        .and_then(|s| s.commit_index)
        .expect("a commit index");
    cluster.wait_applied(commit).await;
    assert_eq!(acked.len(), 600);
    for node in 1..=3 {
        // The node's own state (read from its data directory beside it): every
        // acknowledged write, with its value.
        let out = cluster.dir.path().join(format!("state-{node}.json"));
        let dir = &cluster.node(node).dir;
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        let state = loop {
            match recover(dir, commit, &out) {
                Some(json) if json["lsn"] == commit => break json,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "node {node} never saved commit {commit}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let entries: BTreeMap<String, String> =
            serde_json::from_value(state["entries"].clone()).expect("entries");
        for (key, (value, _)) in &acked {
            assert_eq!(entries.get(key), Some(value), "node {node}: {key}");
        }
        // Its log (from where it starts: a node that caught up from a snapshot holds
        // the log after it): each key first at the LSN it was acknowledged with.
        let records = cluster.records(node).await;
        let start = records.first().map_or(u64::MAX, |record| record.lsn);
        let mut first_lsn: BTreeMap<String, u64> = BTreeMap::new();
        for record in &records {
            let key = record
                .write
                .idempotency_key
                .clone()
                .expect("every write has a key");
            first_lsn.entry(key).or_insert(record.lsn);
        }
        for (key, (value, lsn)) in acked.iter().filter(|(_, (_, lsn))| *lsn >= start) {
            assert_eq!(
                first_lsn.get(key),
                Some(lsn),
                "node {node} (log from {start}): {key} acknowledged at {lsn}"
            );
            let held: Vec<_> = records
                .iter()
                .filter(|r| r.lsn == *lsn)
                .map(|r| r.write.value.clone())
                .collect();
            assert_eq!(held, vec![value.clone()], "node {node}: {key} at {lsn}");
        }
        println!("node {node}: log from {start}, {} records", records.len());
    }
    for (key, (value, _)) in acked.iter().take(20) {
        let read: WalKvResponse = cluster
            .http
            .get(cluster.node(1).url(&format!("/wal/kv/{key}")))
            .send()
            .await
            .expect("kv")
            .json()
            .await
            .expect("kv json");
        assert_eq!(read.value.as_ref(), Some(value), "{key}");
    }
}

#[tokio::test]
async fn a_repeated_idempotency_key_answers_the_original_lsn() {
    let cluster = Cluster::start(Path::new(BIN), 3, &["--snapshot-every", "50"]).await;
    let body = json!({"records": [{"key": "k", "value": "first", "idempotency_key": "once"}]});
    let first: WalAppendResponse = cluster.append(2, body.clone()).await.json().await.unwrap();
    let again: WalAppendResponse = cluster
        .append(
            3,
            json!({"records": [{"key": "k", "value": "second", "idempotency_key": "once"}]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first.first_lsn, again.first_lsn);
    let read: WalKvResponse = cluster
        .http
        .get(cluster.node(1).url("/wal/kv/k"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read.value.as_deref(), Some("first"));
}

#[tokio::test]
async fn a_read_through_a_follower_sees_a_write_through_another() {
    let cluster = Cluster::start(Path::new(BIN), 3, &["--snapshot-every", "50"]).await;
    let leader = cluster.wait_for_leader(None).await;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    for round in 0..20 {
        let value = format!("value-{round}");
        let response = cluster
            .append(
                followers[0],
                json!({"records": [{"key": "register", "value": value}]}),
            )
            .await;
        assert!(response.status().is_success(), "{}", response.status());
        let read: WalKvResponse = cluster
            .http
            .get(cluster.node(followers[1]).url("/wal/kv/register"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(read.value, Some(value));
    }
}

async fn expect_error(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status().as_u16(), status);
    let body: serde_json::Value = response.json().await.expect("a JSON error");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].is_string());
}

#[tokio::test]
async fn bad_input_gets_a_4xx_with_a_json_code() {
    let cluster = Cluster::start(Path::new(BIN), 3, &["--snapshot-every", "50"]).await;
    let leader = cluster.wait_for_leader(None).await;
    let follower = leader % 3 + 1;
    for node in [leader, follower] {
        let unknown = cluster
            .append(
                node,
                json!({"records": [{"key": "a", "value": "b", "colour": "red"}]}),
            )
            .await;
        expect_error(unknown, 422, "invalid_body").await;
        let unknown_top = cluster
            .append(node, json!({"records": [], "extra": true}))
            .await;
        expect_error(unknown_top, 422, "invalid_body").await;
        let empty = cluster.append(node, json!({"records": []})).await;
        expect_error(empty, 422, "invalid_records").await;
        let big_value = "x".repeat(70 * 1024);
        let oversized = cluster
            .append(node, json!({"records": [{"key": "a", "value": big_value}]}))
            .await;
        expect_error(oversized, 413, "record_too_large").await;
        let huge_body = "x".repeat(3 * 1024 * 1024);
        // A client of its own: the server answers before reading the body and closes.
        let huge = reqwest::Client::new()
            .post(cluster.node(node).url("/wal/append"))
            .json(&json!({"records": [{"key": "a", "value": huge_body}]}))
            .send()
            .await
            .expect("send a huge append");
        expect_error(huge, 413, "payload_too_large").await;
        for (query, status, code) in [
            ("from=0&limit=0", 422, "bad_range"),
            ("from=0&limit=100000", 422, "bad_range"),
            ("from=-1", 400, "invalid_query"),
            ("from=abc", 400, "invalid_query"),
        ] {
            let response = cluster
                .http
                .get(cluster.node(node).url(&format!("/wal/records?{query}")))
                .send()
                .await
                .unwrap();
            expect_error(response, status, code).await;
        }
    }
}

fn recover(dir: &Path, lsn: u64, out: &Path) -> Option<serde_json::Value> {
    recover_to(dir, ["--to-lsn".into(), lsn.to_string()], out)
}

fn recover_to(dir: &Path, target: [String; 2], out: &Path) -> Option<serde_json::Value> {
    let status = std::process::Command::new(BIN)
        .args(["wal", "recover", "--data-dir"])
        .arg(dir)
        .args(target)
        .arg("--out")
        .arg(out)
        .stderr(Stdio::null())
        .status()
        .expect("run wal recover");
    if !status.success() {
        return None;
    }
    serde_json::from_slice(&std::fs::read(out).ok()?).ok()
}

#[tokio::test]
async fn recover_to_an_lsn_equals_the_state_after_the_writes_up_to_it() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let cluster = Cluster::start(Path::new(BIN), 3, &["--snapshot-every", "50"]).await;
    let mut state = BTreeMap::new();
    let mut states = Vec::new();
    for i in 0..120 {
        let key = format!("key-{}", rng.random_range(0..10));
        let value = format!("{i}");
        let answer: WalAppendResponse = cluster
            .append(1, json!({"records": [{"key": key, "value": value}]}))
            .await
            .json()
            .await
            .expect("append");
        state.insert(key, value);
        states.push((answer.last_lsn, state.clone()));
    }
    let out = cluster.dir.path().join("recovered.json");
    let last = states.last().expect("writes").0;
    // Wait for every node to have saved a commit index covering the last write.
    for node in 1..=3 {
        let dir = &cluster.node(node).dir;
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        while recover(dir, last, &out).is_none_or(|json| json["lsn"] != last) {
            assert!(
                Instant::now() < deadline,
                "node {node} never saved commit {last}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for pick in [0, 1, 17, 49, 50, 51, 99, 119] {
            let (lsn, expected) = &states[pick];
            let json = recover(dir, *lsn, &out).expect("recover");
            assert_eq!(json["lsn"], *lsn);
            let entries: BTreeMap<String, String> =
                serde_json::from_value(json["entries"].clone()).expect("entries");
            assert_eq!(&entries, expected, "node {node} at lsn {lsn}");
        }
    }
    // To a time: the state after every write whose leader time is at or before it.
    let records = cluster.records(1).await;
    let out_time = cluster.dir.path().join("recovered-time.json");
    for pick in [0, 30, 60, 119] {
        let time = records[pick].write.leader_time_ms;
        let last_at_time = records
            .iter()
            .filter(|record| record.write.leader_time_ms <= time)
            .map(|record| record.lsn)
            .max()
            .expect("a record");
        let expected = &states
            .iter()
            .find(|(lsn, _)| *lsn == last_at_time)
            .expect("a state at that lsn")
            .1;
        let target = ["--to-time".into(), format_rfc3339_ms(time)];
        let json = recover_to(&cluster.node(1).dir, target, &out_time).expect("recover to a time");
        let entries: BTreeMap<String, String> =
            serde_json::from_value(json["entries"].clone()).expect("entries");
        assert_eq!(&entries, expected, "at {time} ms (lsn {last_at_time})");
    }
}
