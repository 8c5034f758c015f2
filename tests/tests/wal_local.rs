//! The local WAL cluster of `meridian serve` and its routes `/api/wal/...` (issue 13,
//! the page's API), on an in-process server whose three nodes are real child processes
//! (`meridian-under-test wal-node`):
//!
//! - the nodes come up and elect a leader; appends through `/api/wal/append` show in
//!   `/api/wal/records`; the state at each LSN equals what was written up to it;
//! - killing the leader through the API (SIGKILL) leads to a new leader in a higher
//!   term, writes go on, and the restarted node catches up as a follower;
//! - refusals: a guest (401), a viewer killing a node (403), an unknown node (404), a
//!   bad LSN or target (4xx), and 503 `wal_off` on a server without a cluster;
//! - no node outlives the server.
//!
//! Every wait polls against a deadline; nothing sleeps as synchronisation.

use std::future::Future;
use std::time::{Duration, Instant};

use meridian_shared::wal::{
    WalAppendResponse, WalNodesResponse, WalRecordsResponse, WalRole, WalStateResponse,
};
use meridian_tests::client::{Client, Reply};
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::server::TestServer;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const PASSWORD: &str = "correct horse battery";
const CLUSTER_PATIENCE: Duration = Duration::from_secs(60);

/// Polls `probe` until it returns `Some`, failing after [`CLUSTER_PATIENCE`].
async fn within<T, F: Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + CLUSTER_PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {CLUSTER_PATIENCE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn signed_up(server: &TestServer, name: &str) -> Client {
    let client = Client::new(server);
    client.signup(name, PASSWORD).await.expect::<Value>(201);
    client
}

async fn nodes(client: &Client) -> WalNodesResponse {
    client.get("/api/wal/nodes").await.expect(200)
}

/// The leader every running node agrees on, with its term, once there is one.
fn agreed_leader(nodes: &WalNodesResponse) -> Option<(u64, u64)> {
    let statuses: Vec<_> = nodes
        .nodes
        .iter()
        .filter(|node| node.running)
        .map(|node| node.status.as_ref())
        .collect::<Option<_>>()?;
    let leader = statuses
        .iter()
        .find(|status| status.role == WalRole::Leader)?;
    statuses
        .iter()
        .all(|status| status.leader == Some(leader.id) && status.term == leader.term)
        .then_some((leader.id, leader.term))
}

/// Appends one record, retrying while the cluster answers 503 (an election).
async fn append(client: &Client, key: &str, value: &str) -> WalAppendResponse {
    let body = json!({"records": [{"key": key, "value": value, "idempotency_key": format!("{key}={value}")}]});
    within(&format!("the append of {key}={value}"), || async {
        let reply = client.post_json("/api/wal/append", &body).await;
        match reply.status.as_u16() {
            200 => Some(reply.parse()),
            503 => None,
            _ => panic!("append {key}: {} {}", reply.status, reply.json),
        }
    })
    .await
}

async fn state_at(client: &Client, lsn: u64) -> WalStateResponse {
    // The commit index a node saves trails its status by up to 200 ms.
    within(&format!("the state at lsn {lsn}"), || async {
        let state: WalStateResponse = client
            .get(&format!("/api/wal/state?lsn={lsn}"))
            .await
            .expect(200);
        state
            .commit_index
            .is_some_and(|c| c >= lsn)
            .then_some(state)
    })
    .await
}

fn entries(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_cluster_fails_over_and_recovers_past_states() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = TestServer::start_with(&db, |config| {
        config.wal_nodes = 3;
        config.wal_executable = Some(BIN.into());
    })
    .await;
    let guest = Client::new(&server);
    guest
        .get("/api/wal/nodes")
        .await
        .assert_error(401, "sign_in_required");
    let admin = signed_up(&server, "waladmin").await;
    let viewer = signed_up(&server, "walviewer").await;

    let (leader, term) = within("three nodes agreeing on a leader", || async {
        let nodes = nodes(&viewer).await;
        assert_eq!(nodes.nodes.len(), 3);
        agreed_leader(&nodes)
    })
    .await;

    // Appends, and the state at each LSN.
    let first = append(&viewer, "colour", "red").await;
    let second = append(&viewer, "shape", "round").await;
    let third = append(&viewer, "colour", "blue").await;
    assert!(first.last_lsn < second.first_lsn && second.last_lsn < third.first_lsn);
    let records: WalRecordsResponse = viewer
        .get(&format!("/api/wal/records?from={}", first.first_lsn))
        .await
        .expect(200);
    let written: Vec<_> = records
        .records
        .iter()
        .map(|r| (r.lsn, r.write.key.as_str(), r.write.value.as_str()))
        .collect();
    assert_eq!(
        written,
        [
            (first.first_lsn, "colour", "red"),
            (second.first_lsn, "shape", "round"),
            (third.first_lsn, "colour", "blue"),
        ]
    );
    assert_eq!(
        state_at(&viewer, first.last_lsn).await.entries,
        entries(&[("colour", "red")])
    );
    assert_eq!(
        state_at(&viewer, second.last_lsn).await.entries,
        entries(&[("colour", "red"), ("shape", "round")])
    );
    let latest = state_at(&viewer, third.last_lsn).await;
    assert_eq!(
        latest.entries,
        entries(&[("colour", "blue"), ("shape", "round")])
    );
    assert_eq!(latest.lsn, Some(third.last_lsn));
    // Before the first write: nothing.
    assert!(state_at(&viewer, first.first_lsn - 1)
        .await
        .entries
        .is_empty());

    // Refusals.
    viewer
        .post_empty(&format!("/api/wal/nodes/{leader}/kill"))
        .await
        .assert_error(403, "forbidden");
    admin
        .post_empty("/api/wal/nodes/9/kill")
        .await
        .assert_error(404, "wal_node_not_found");
    admin
        .post_empty("/api/wal/nodes/9/restart")
        .await
        .assert_error(404, "wal_node_not_found");
    viewer
        .get("/api/wal/state?lsn=minus-one")
        .await
        .assert_error(400, "invalid_query");
    viewer
        .get("/api/wal/state?lsn=-1")
        .await
        .assert_error(400, "invalid_query");
    viewer
        .get("/api/wal/state")
        .await
        .assert_error(422, "invalid_target");
    viewer
        .get("/api/wal/state?lsn=1&time=2026-01-01T00:00:00Z")
        .await
        .assert_error(422, "invalid_target");
    viewer
        .get("/api/wal/state?time=yesterday")
        .await
        .assert_error(422, "invalid_time");
    viewer
        .post_json("/api/wal/append", &json!({"records": []}))
        .await
        .assert_error(422, "invalid_records");
    viewer
        .post_json(
            "/api/wal/append",
            &json!({"records": [{"key": "k", "value": "v", "extra": 1}]}),
        )
        .await
        .assert_error(422, "invalid_body");

    // Kill the leader: the others elect a new one in a higher term.
    let killed: Value = admin
        .post_empty(&format!("/api/wal/nodes/{leader}/kill"))
        .await
        .expect(200);
    assert_eq!(killed["running"], json!(false));
    let (new_leader, new_term) = within("a new leader after the kill", || async {
        let nodes = nodes(&viewer).await;
        let killed = nodes.nodes.iter().find(|n| n.id == leader).unwrap();
        assert!(!killed.running && killed.status.is_none());
        agreed_leader(&nodes).filter(|(id, _)| *id != leader)
    })
    .await;
    assert!(new_term > term, "term {new_term} after {term}");
    let fourth = append(&viewer, "after", "failover").await;
    assert!(fourth.first_lsn > third.last_lsn);

    // Restart it: it rejoins as a follower of the new leader and catches up.
    let restarted: Value = admin
        .post_empty(&format!("/api/wal/nodes/{leader}/restart"))
        .await
        .expect(200);
    assert_eq!(restarted["running"], json!(true));
    within("the restarted node caught up", || async {
        let nodes = nodes(&viewer).await;
        let node = nodes.nodes.iter().find(|n| n.id == leader)?;
        let status = node.status.as_ref()?;
        (status.role == WalRole::Follower
            && status.leader == Some(new_leader)
            && status.apply_index >= Some(fourth.last_lsn))
        .then_some(())
    })
    .await;
    assert_eq!(
        state_at(&viewer, fourth.last_lsn).await.entries,
        entries(&[
            ("after", "failover"),
            ("colour", "blue"),
            ("shape", "round")
        ])
    );

    // No node outlives the server.
    let addrs: Vec<String> = nodes(&viewer)
        .await
        .nodes
        .into_iter()
        .map(|n| n.addr)
        .collect();
    server.shutdown().await;
    let http = reqwest::Client::new();
    for addr in addrs {
        let answer = http
            .get(format!("http://{addr}/wal/status"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        assert!(answer.is_err(), "node at {addr} still answers");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_a_cluster_says_so() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let viewer = signed_up(&server, "walalone").await;
    let refusals: Vec<Reply> = vec![
        viewer.get("/api/wal/nodes").await,
        viewer.get("/api/wal/state?lsn=1").await,
        viewer.get("/api/wal/records").await,
        viewer
            .post_json(
                "/api/wal/append",
                &json!({"records": [{"key": "k", "value": "v"}]}),
            )
            .await,
    ];
    for reply in refusals {
        reply.assert_error(503, "wal_off");
    }
    server.shutdown().await;
}
