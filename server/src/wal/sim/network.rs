//! The simulated network: Raft's RPCs as direct calls into the target node's `Raft`,
//! each request and answer delayed, lost or (requests) duplicated as the schedule's
//! RNG decides, and refused across a partition.
//!
//! A request that is lost, or whose answer is, leaves the caller waiting until its
//! RPC timeout, as a real network would; a node on the other side of a partition, or
//! not running, is `Unreachable` after the request's delay (a refused connection).
//! A duplicate is delivered again after its own delay and its answer thrown away:
//! with the spread of delays, it arrives after later messages (reordering).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, RaftNetwork, RaftNetworkFactory};

use super::world::World;
use crate::wal::raft::{NodeId, WalConfig};

/// The network as node `from` sees it.
#[derive(Clone)]
pub struct SimNetwork {
    pub from: NodeId,
    pub world: Arc<World>,
}

impl RaftNetworkFactory<WalConfig> for SimNetwork {
    type Network = SimPeer;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> SimPeer {
        SimPeer {
            from: self.from,
            target,
            world: self.world.clone(),
        }
    }
}

/// One link, `from` → `target`.
pub struct SimPeer {
    from: NodeId,
    target: NodeId,
    world: Arc<World>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

fn unreachable<E: std::error::Error>(
    why: &str,
) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        why.to_owned(),
    )))
}

/// What happens to one message, drawn before it leaves.
struct Fate {
    request_delay: Duration,
    request_lost: bool,
    duplicate_after: Option<Duration>,
    answer_delay: Duration,
    answer_lost: bool,
}

impl SimPeer {
    fn fate(&self) -> Fate {
        let net = self.world.net().clone();
        let delay = || self.world.millis(0..=net.max_delay.as_millis() as u64);
        Fate {
            request_delay: delay(),
            request_lost: self.world.chance(net.loss),
            duplicate_after: self.world.chance(net.duplication).then(delay),
            answer_delay: delay(),
            answer_lost: self.world.chance(net.loss),
        }
    }

    async fn deliver<Req, Resp, E, Call, Answer>(
        &self,
        request: Req,
        ttl: Duration,
        call: Call,
    ) -> RpcResult<Resp, E>
    where
        Req: Clone + Send + 'static,
        Resp: Send + 'static,
        E: std::error::Error + Send + 'static,
        Call: Fn(Raft<WalConfig>, Req) -> Answer + Send + 'static,
        Answer: Future<Output = Result<Resp, RaftError<NodeId, E>>> + Send + 'static,
    {
        let fate = self.fate();
        let (from, target, world) = (self.from, self.target, self.world.clone());
        let exchange = async move {
            tokio::time::sleep(fate.request_delay).await;
            if fate.request_lost {
                std::future::pending::<()>().await;
            }
            let reachable = move |world: &World| {
                world
                    .node(target)
                    .filter(|_| world.net().connected(from, target))
            };
            let Some(node) = reachable(&world) else {
                return Err(unreachable("the node is down or across a partition"));
            };
            if let Some(after) = fate.duplicate_after {
                let (world, again, call) = (world.clone(), request.clone(), &call);
                let late = call(node.raft.clone(), again);
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    if reachable(&world).is_some() {
                        let _ = late.await;
                    }
                });
            }
            let answer = call(node.raft, request).await;
            tokio::time::sleep(fate.answer_delay).await;
            if fate.answer_lost || !world.net().connected(from, target) {
                std::future::pending::<()>().await;
            }
            answer.map_err(|err| RPCError::RemoteError(RemoteError::new(target, err)))
        };
        match tokio::time::timeout(ttl, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(unreachable("no answer before the timeout")),
        }
    }
}

impl RaftNetwork<WalConfig> for SimPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<WalConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        if !crate::wal::raft::append_from_its_leader(&rpc) {
            return Err(crate::wal::network::stale_replication());
        }
        self.deliver(rpc, option.hard_ttl(), |raft, rpc| async move {
            raft.append_entries(rpc).await
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<WalConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.deliver(rpc, option.hard_ttl(), |raft, rpc| async move {
            raft.install_snapshot(rpc).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.deliver(rpc, option.hard_ttl(), |raft, rpc| async move {
            raft.vote(rpc).await
        })
        .await
    }
}
