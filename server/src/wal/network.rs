//! Raft's messages between nodes over HTTP: `POST /wal/raft/{append,vote,snapshot}`
//! with JSON bodies; the answer is openraft's `Result<Response, RaftError>` as JSON.
//!
//! A node that cannot be reached (connection refused, a timeout) is `Unreachable`, so
//! openraft backs off; an error the peer answered is a `RemoteError`.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::raft::{NodeId, WalConfig};

/// Makes an [`HttpPeer`] for each node openraft replicates to.
#[derive(Clone)]
pub struct HttpNetwork {
    client: reqwest::Client,
}

impl HttpNetwork {
    pub fn new(client: reqwest::Client) -> HttpNetwork {
        HttpNetwork { client }
    }
}

impl RaftNetworkFactory<WalConfig> for HttpNetwork {
    type Network = HttpPeer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> HttpPeer {
        HttpPeer {
            client: self.client.clone(),
            target,
            base: format!("http://{}/wal/raft", node.addr),
        }
    }
}

/// One peer's Raft endpoints.
pub struct HttpPeer {
    client: reqwest::Client,
    target: NodeId,
    base: String,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl HttpPeer {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let response = self
            .client
            .post(format!("{}/{path}", self.base))
            .timeout(timeout)
            .json(request)
            .send()
            .await
            .map_err(|err| {
                if err.is_connect() || err.is_timeout() {
                    RPCError::Unreachable(Unreachable::new(&err))
                } else {
                    RPCError::Network(NetworkError::new(&err))
                }
            })?;
        let answer: Result<Resp, RaftError<NodeId, E>> = response
            .json()
            .await
            .map_err(|err| RPCError::Network(NetworkError::new(&err)))?;
        answer.map_err(|err| RPCError::RemoteError(RemoteError::new(self.target, err)))
    }
}

/// What a stale leader's replication stream gets instead of sending (see
/// [`super::raft::append_from_its_leader`]): unreachable, so it backs off until openraft
/// drops it.
pub(super) fn stale_replication<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(
        "a replication stream of an earlier leadership",
    )))
}

impl RaftNetwork<WalConfig> for HttpPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<WalConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        if !super::raft::append_from_its_leader(&rpc) {
            return Err(stale_replication());
        }
        self.call("append", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<WalConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call("snapshot", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call("vote", &rpc, option.hard_ttl()).await
    }
}
