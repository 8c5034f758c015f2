//! One WAL cluster node (`meridian wal-node`): openraft over our [`Log`] and [`Kv`],
//! Raft's RPC endpoints (`/wal/raft/...`) and the client API ([`super::api`]) on one
//! address.
//!
//! The node with the lowest id among `--peers` initializes the cluster when it has no
//! Raft state yet (a restarted node finds its vote and log and does not); the others
//! wait to hear from a leader.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::network::HttpNetwork;
use super::raft::{LogStore, NodeId, StateMachine, WalConfig};
use super::{Disk, Log, LogOptions, StdDisk, WalError};
use crate::clock::{Clock, SystemClock};
use crate::error::api_not_found;

/// What `meridian wal-node` is given.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub id: NodeId,
    pub data_dir: PathBuf,
    /// Every voter of the initial cluster, this node included: id → `HOST:PORT`.
    pub peers: BTreeMap<NodeId, String>,
    /// A snapshot (a Kv checkpoint) after this many applied entries; the log behind it
    /// is purged (archived while a kept checkpoint needs it).
    pub snapshot_every: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("--peers must name this node ({0})")]
    NotAPeer(NodeId),
}

/// A running node's handles, shared by its handlers.
#[derive(Clone)]
pub struct WalNode {
    pub id: NodeId,
    pub raft: Raft<WalConfig>,
    pub store: LogStore,
    pub machine: StateMachine,
    pub client: reqwest::Client,
    pub clock: Arc<dyn Clock>,
    /// Held while a batch is proposed, so its records take consecutive LSNs.
    pub append_order: Arc<tokio::sync::Mutex<()>>,
}

impl WalNode {
    /// Opens the node's log and state machine and starts Raft (and the cluster, from
    /// the lowest id, the first time).
    pub async fn start(options: &NodeOptions) -> Result<WalNode, NodeError> {
        if !options.peers.contains_key(&options.id) {
            return Err(NodeError::NotAPeer(options.id));
        }
        let disk: Arc<dyn Disk> = Arc::new(StdDisk::new());
        disk.create_dir_all(&options.data_dir)
            .map_err(WalError::io("create directory", &options.data_dir))?;
        let (log, report) = Log::open(disk.clone(), &options.data_dir, LogOptions::default())?;
        if let Some(torn) = &report.torn_tail {
            tracing::warn!(?torn, "the log's torn tail was cut off");
        }
        let machine = StateMachine::open(disk, &options.data_dir, log.clone())?;
        let store = LogStore::open(log)?.gate_purges_on(machine.snapshots());
        let config = openraft::Config {
            cluster_name: "meridian-wal".into(),
            heartbeat_interval: 100,
            election_timeout_min: 400,
            election_timeout_max: 800,
            install_snapshot_timeout: 2000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_every),
            max_in_snapshot_log_to_keep: options.snapshot_every / 2,
            ..Default::default()
        }
        .validate()
        .map_err(|err| NodeError::Raft(err.to_string()))?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .build()
            .map_err(|err| NodeError::Raft(err.to_string()))?;
        let raft = Raft::new(
            options.id,
            Arc::new(config),
            HttpNetwork::new(client.clone()),
            store.clone(),
            machine.clone(),
        )
        .await
        .map_err(|err| NodeError::Raft(err.to_string()))?;
        let lowest = options.peers.keys().next() == Some(&options.id);
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|err| NodeError::Raft(err.to_string()))?;
        if lowest && !initialized {
            let members: BTreeMap<NodeId, BasicNode> = options
                .peers
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
                .collect();
            if let Err(err) = raft.initialize(members).await {
                tracing::info!(%err, "the cluster was initialized before");
            }
        }
        Ok(WalNode {
            id: options.id,
            raft,
            store,
            machine,
            client,
            clock: Arc::new(SystemClock),
            append_order: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Raft's endpoints and the client API.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/wal/raft/append", post(raft_append))
            .route("/wal/raft/vote", post(raft_vote))
            .route("/wal/raft/snapshot", post(raft_snapshot))
            .merge(Router::from(super::api::routes()))
            .fallback(api_not_found)
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown`, saving the commit index as it moves; then
    /// stops Raft.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let store = self.store.clone();
        let flusher_stop = shutdown.clone();
        let flusher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = flusher_stop.cancelled() => break,
                }
                if let Err(err) = store.flush_committed() {
                    tracing::warn!(%err, "cannot save the commit index");
                }
            }
        });
        let stop = shutdown.clone();
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        shutdown.cancel();
        let _ = flusher.await;
        if let Err(err) = self.store.flush_committed() {
            tracing::warn!(%err, "cannot save the commit index");
        }
        if let Err(err) = self.raft.shutdown().await {
            tracing::warn!(%err, "raft did not stop cleanly");
        }
        result
    }
}

type RaftJson<T, E = openraft::error::Infallible> = axum::Json<Result<T, RaftError<NodeId, E>>>;

async fn raft_append(
    State(node): State<WalNode>,
    axum::Json(request): axum::Json<AppendEntriesRequest<WalConfig>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !super::raft::append_from_its_leader(&request) {
        let refusal = serde_json::json!({
            "code": "stale_replication",
            "message": "entries of a later term than the sender's vote: a replication stream of an earlier leadership",
        });
        return (axum::http::StatusCode::CONFLICT, axum::Json(refusal)).into_response();
    }
    let answer: RaftJson<AppendEntriesResponse<NodeId>> =
        axum::Json(node.raft.append_entries(request).await);
    answer.into_response()
}

async fn raft_vote(
    State(node): State<WalNode>,
    axum::Json(request): axum::Json<VoteRequest<NodeId>>,
) -> RaftJson<VoteResponse<NodeId>> {
    axum::Json(node.raft.vote(request).await)
}

async fn raft_snapshot(
    State(node): State<WalNode>,
    axum::Json(request): axum::Json<InstallSnapshotRequest<WalConfig>>,
) -> RaftJson<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
    axum::Json(node.raft.install_snapshot(request).await)
}
