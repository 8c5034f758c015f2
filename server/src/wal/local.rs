//! The local cluster `meridian serve` runs for the page `/wal`: `Config::wal_nodes`
//! child processes of the server's own executable (`meridian wal-node`), each with its
//! data directory at `<data>/wal/node-N` and a loopback port chosen free on the first
//! start and saved in `<data>/wal/addresses`, so a restarted node (or server) comes
//! back at the address the cluster's membership holds.
//!
//! Invariants:
//! - No child outlives the server: every child is spawned with `kill_on_drop`, the task
//!   [`LocalCluster::start`] leaves in the server's tracker kills (SIGKILL) and reaps
//!   them all when the server shuts down, and on Linux a server killed with SIGKILL
//!   takes them with it (`PR_SET_PDEATHSIG`; they are spawned from runtime threads,
//!   which live as long as the server).
//! - Kill is SIGKILL (a crash, as the fault tests do it), never a graceful stop.
//! - A node's process is touched by one request at a time (its own lock).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;

/// Why the local cluster could not start or a node could not be restarted.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot find the server's executable: {0}")]
    Executable(#[source] std::io::Error),
    #[error("cannot pick a free port for a WAL node: {0}")]
    Port(#[source] std::io::Error),
    #[error("cannot prepare {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start WAL node {id}: {source}")]
    Spawn {
        id: u64,
        #[source]
        source: std::io::Error,
    },
}

/// The local cluster's nodes. Cheap to clone.
#[derive(Clone)]
pub struct LocalCluster {
    inner: Arc<Inner>,
}

struct Inner {
    executable: PathBuf,
    /// For the nodes' client API.
    http: reqwest::Client,
    /// `1=ADDR,2=ADDR,...`, as every node is given it.
    peers: String,
    nodes: Vec<LocalNode>,
}

/// One node of the local cluster.
pub struct LocalNode {
    pub id: u64,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    process: Mutex<Option<Child>>,
}

fn free_loopback_addr() -> Result<SocketAddr, LocalError> {
    // Bound and released: the node binds it again a moment later.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(LocalError::Port)
}

impl LocalCluster {
    /// Starts `config.wal_nodes` nodes (none: `Ok(None)`), and a task in `tasks` that
    /// kills them when `shutdown` is cancelled.
    pub fn start(
        config: &Config,
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Option<LocalCluster>, LocalError> {
        if config.wal_nodes == 0 {
            return Ok(None);
        }
        let executable = match &config.wal_executable {
            Some(path) => path.clone(),
            None => std::env::current_exe().map_err(LocalError::Executable)?,
        };
        let addrs = addresses(&config.data_dir, config.wal_nodes)?;
        let mut nodes = Vec::with_capacity(config.wal_nodes);
        for (index, addr) in addrs.into_iter().enumerate() {
            let id = index as u64 + 1;
            let data_dir = node_dir(&config.data_dir, id);
            std::fs::create_dir_all(&data_dir).map_err(|source| LocalError::Dir {
                path: data_dir.clone(),
                source,
            })?;
            nodes.push(LocalNode {
                id,
                addr,
                data_dir,
                process: Mutex::new(None),
            });
        }
        let peers = nodes
            .iter()
            .map(|node| format!("{}={}", node.id, node.addr))
            .collect::<Vec<_>>()
            .join(",");
        let cluster = LocalCluster {
            inner: Arc::new(Inner {
                executable,
                http: reqwest::Client::new(),
                peers,
                nodes,
            }),
        };
        for node in &cluster.inner.nodes {
            let child = cluster.spawn(node)?;
            // Not yet shared: nothing else holds the lock.
            if let Ok(mut process) = node.process.try_lock() {
                *process = Some(child);
            }
        }
        tracing::info!(nodes = %cluster.inner.peers, "local WAL cluster started");
        let stopping = cluster.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            shutdown.cancelled().await;
            stopping.kill_all().await;
        });
        Ok(Some(cluster))
    }

    fn spawn(&self, node: &LocalNode) -> Result<Child, LocalError> {
        let log = node.data_dir.with_extension("log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|source| LocalError::Dir { path: log, source })?;
        let mut command = Command::new(&self.inner.executable);
        #[cfg(target_os = "linux")]
        // SAFETY: between fork and exec only prctl, which is async-signal-safe, runs.
        unsafe {
            // A server killed with SIGKILL runs no destructor: the kernel kills the
            // children when the thread that spawned them dies.
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
            .arg("wal-node")
            .args(["--id", &node.id.to_string()])
            .args(["--listen", &node.addr.to_string()])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--peers", &self.inner.peers])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| LocalError::Spawn {
                id: node.id,
                source,
            })
    }

    /// The client the page's routes reach the nodes with.
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The nodes, by id.
    pub fn nodes(&self) -> &[LocalNode] {
        &self.inner.nodes
    }

    pub fn node(&self, id: u64) -> Option<&LocalNode> {
        self.inner.nodes.iter().find(|node| node.id == id)
    }

    /// Whether the node's process runs (reaping it if it exited on its own).
    pub async fn is_running(&self, node: &LocalNode) -> bool {
        let mut process = node.process.lock().await;
        match process.as_mut().map(|child| child.try_wait()) {
            Some(Ok(None)) => true,
            Some(Ok(Some(exit))) => {
                tracing::warn!(id = node.id, %exit, "WAL node exited");
                *process = None;
                false
            }
            Some(Err(err)) => {
                tracing::warn!(id = node.id, %err, "cannot tell whether a WAL node runs");
                false
            }
            None => false,
        }
    }

    /// SIGKILL: the node crashes, its unsynced writes lost as in a power cut.
    pub async fn kill(&self, node: &LocalNode) {
        let mut process = node.process.lock().await;
        if let Some(mut child) = process.take() {
            kill_and_reap(node.id, &mut child).await;
        }
    }

    /// Kills the node if it runs and starts it again at the same address and directory.
    pub async fn restart(&self, node: &LocalNode) -> Result<(), LocalError> {
        let mut process = node.process.lock().await;
        if let Some(mut child) = process.take() {
            kill_and_reap(node.id, &mut child).await;
        }
        *process = Some(self.spawn(node)?);
        Ok(())
    }

    async fn kill_all(&self) {
        for node in &self.inner.nodes {
            self.kill(node).await;
        }
        tracing::info!("local WAL cluster stopped");
    }
}

async fn kill_and_reap(id: u64, child: &mut Child) {
    if let Err(err) = child.kill().await {
        tracing::warn!(id, %err, "cannot kill a WAL node");
    }
}

/// The nodes' addresses: those `<data>/wal/addresses` names when it names `count`
/// (the membership in the nodes' logs holds them, so a server started again on the same
/// data must reuse them), else free loopback ports, written there.
fn addresses(data_dir: &Path, count: usize) -> Result<Vec<SocketAddr>, LocalError> {
    let file = data_dir.join("wal").join("addresses");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let saved: Vec<SocketAddr> = text
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect();
        if saved.len() == count {
            return Ok(saved);
        }
        tracing::warn!(
            file = %file.display(),
            "the saved WAL node addresses do not match --wal-nodes; choosing new ones \
             (a cluster whose size changed needs a fresh wal/ directory)"
        );
    }
    let addrs = (0..count)
        .map(|_| free_loopback_addr())
        .collect::<Result<Vec<_>, _>>()?;
    let dir = data_dir.join("wal");
    std::fs::create_dir_all(&dir).map_err(|source| LocalError::Dir {
        path: dir.clone(),
        source,
    })?;
    let text: String = addrs.iter().map(|addr| format!("{addr}\n")).collect();
    std::fs::write(&file, text).map_err(|source| LocalError::Dir { path: file, source })?;
    Ok(addrs)
}

/// Where the local cluster keeps node `id`'s files under a server's data directory.
pub fn node_dir(data_dir: &Path, id: u64) -> PathBuf {
    data_dir.join("wal").join(format!("node-{id}"))
}
