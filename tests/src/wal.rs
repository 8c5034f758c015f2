//! A cluster of real `meridian wal-node` processes on 127.0.0.1, for the WAL's tests and
//! its benchmark: started with free ports and temporary data directories, killed with
//! SIGKILL on demand and when dropped, and waited on by polling `/wal/status` against a
//! deadline (never by sleeping for "long enough").

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use meridian_shared::wal::{WalRecordsResponse, WalStatus};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const START_TIMEOUT: Duration = Duration::from_secs(30);
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);

/// One `wal-node` process (killed when dropped).
pub struct Node {
    pub id: u64,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub peers: String,
    /// The `meridian` executable and the arguments after `wal-node`'s own.
    pub bin: PathBuf,
    pub extra_args: Vec<String>,
    pub child: Option<Child>,
}

impl Node {
    pub async fn start(&mut self) {
        let stderr = std::fs::File::create(self.dir.with_extension("stderr")).expect("stderr file");
        let mut child = Command::new(&self.bin)
            .args(["wal-node", "--id", &self.id.to_string(), "--listen"])
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--peers", &self.peers])
            .args(&self.extra_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn wal-node");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let listening = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if line.starts_with("Meridian listening on") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            listening,
            Ok(true),
            "node {} did not start: {}",
            self.id,
            self.stderr()
        );
        self.child = Some(child);
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("stderr")).unwrap_or_default()
    }

    /// kill -9.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL");
            child.wait().await.expect("wait for the killed node");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub http: reqwest::Client,
    /// Holds the nodes' data directories (and scratch files of the tests).
    pub dir: tempfile::TempDir,
}

/// A free port below the ephemeral range (32768 and up on Linux), bound and released:
/// the node binds it again a moment later. An ephemeral port could meanwhile be taken
/// as the source port of an outbound connection (the nodes already started connect to
/// each other), and the node then fails with "address in use".
pub fn free_addr() -> SocketAddr {
    for _ in 0..1000 {
        let port = rand::random_range(20_000..32_000);
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().expect("local addr");
        }
    }
    panic!("no free port between 20000 and 32000 on 127.0.0.1");
}

impl Cluster {
    /// `size` nodes of `bin`, each also given `extra_args` (e.g. `--snapshot-every 50`);
    /// returns once they agree on a leader.
    pub async fn start(bin: &std::path::Path, size: u64, extra_args: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let addrs: Vec<SocketAddr> = (0..size).map(|_| free_addr()).collect();
        let peers = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("{}={addr}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let mut node = Node {
                id: i as u64 + 1,
                addr: *addr,
                dir: dir.path().join(format!("node{}", i + 1)),
                peers: peers.clone(),
                bin: bin.to_path_buf(),
                extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
                child: None,
            };
            node.start().await;
            nodes.push(node);
        }
        let cluster = Cluster {
            nodes,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("client"),
            dir,
        };
        cluster.wait_for_leader(None).await;
        cluster
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[id as usize - 1]
    }

    pub async fn status(&self, id: u64) -> Option<WalStatus> {
        let response = self
            .http
            .get(self.node(id).url("/wal/status"))
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// The leader all running nodes agree on, other than `not`.
    pub async fn wait_for_leader(&self, not: Option<u64>) -> u64 {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        loop {
            let mut leaders = Vec::new();
            for node in self.nodes.iter().filter(|node| node.child.is_some()) {
                leaders.push(self.status(node.id).await.and_then(|status| status.leader));
            }
            if let Some(Some(leader)) = leaders.first().copied() {
                if Some(leader) != not && leaders.iter().all(|l| *l == Some(leader)) {
                    let status = self.status(leader).await;
                    if status.is_some_and(|s| s.role == meridian_shared::wal::WalRole::Leader) {
                        return leader;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader agreed within {CLUSTER_TIMEOUT:?}: {leaders:?}"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running node has applied `index`.
    pub async fn wait_applied(&self, index: u64) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        for node in self.nodes.iter().filter(|node| node.child.is_some()) {
            loop {
                let applied = self.status(node.id).await.and_then(|s| s.apply_index);
                if applied.is_some_and(|applied| applied >= index) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {} applied {applied:?}, not {index}",
                    node.id
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    pub async fn append(&self, id: u64, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.node(id).url("/wal/append"))
            .json(&body)
            .send()
            .await
            .expect("send an append")
    }

    /// Every record on node `id`, in LSN order.
    pub async fn records(&self, id: u64) -> Vec<meridian_shared::wal::WalRecord> {
        let mut from = 0;
        let mut out = Vec::new();
        loop {
            let page: WalRecordsResponse = self
                .http
                .get(
                    self.node(id)
                        .url(&format!("/wal/records?from={from}&limit=1000")),
                )
                .send()
                .await
                .expect("records")
                .json()
                .await
                .expect("records json");
            out.extend(page.records);
            if page.next == from || page.applied.is_none_or(|applied| page.next > applied) {
                return out;
            }
            from = page.next;
        }
    }
}
