//! The replicated write-ahead log's wire types (issue 13): the client API of every node
//! (`/wal/append`, `/wal/records`, `/wal/tail`, `/wal/kv/{key}`, `/wal/status`,
//! `/wal/members`) and the write a leader puts in the log, which also crosses between
//! nodes inside Raft's messages.
//!
//! LSNs are numbers: the Raft index of the record that carries a write.

use serde::{Deserialize, Serialize};

/// `POST /wal/append`: records appended in order, answered once committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WalAppendRequest {
    /// 1 to 1,000 records.
    pub records: Vec<WalRecordInput>,
}

/// One record of an append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WalRecordInput {
    /// At most 1,024 bytes.
    pub key: String,
    /// At most 65,536 bytes.
    pub value: String,
    /// At most 128 bytes; a key seen before answers the LSN that first carried it.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// The answer to `POST /wal/append`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalAppendResponse {
    pub first_lsn: u64,
    pub last_lsn: u64,
    /// The leader's term when it committed the records.
    pub term: u64,
}

/// A client write as the leader logs it (and as `GET /wal/records` shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalWrite {
    pub key: String,
    pub value: String,
    pub idempotency_key: Option<String>,
    /// The leader's wall clock when it accepted the write, ms since the epoch.
    pub leader_time_ms: i64,
}

/// One committed record of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalRecord {
    pub lsn: u64,
    pub term: u64,
    #[serde(flatten)]
    pub write: WalWrite,
}

/// `GET /wal/records?from=LSN&limit=N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
pub struct WalRecordsQuery {
    /// The first LSN wanted (default 0).
    #[serde(default)]
    pub from: u64,
    /// 1 to 1,000 (default 100).
    #[serde(default)]
    pub limit: Option<u64>,
}

/// The answer to `GET /wal/records`: committed client writes from `from` on (Raft's
/// own entries are skipped), and where to continue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalRecordsResponse {
    pub records: Vec<WalRecord>,
    /// The LSN to ask for next.
    pub next: u64,
    /// The node's apply index: records up to here are committed.
    pub applied: Option<u64>,
}

/// `GET /wal/tail?from=LSN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
pub struct WalTailQuery {
    #[serde(default)]
    pub from: u64,
}

/// The answer to `GET /wal/kv/{key}`, read through the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalKvResponse {
    pub key: String,
    pub value: Option<String>,
    /// The apply index the read was served at.
    pub applied: Option<u64>,
}

/// A node's role in Raft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WalRole {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

/// A follower as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalFollower {
    pub id: u64,
    /// The last LSN the leader knows the follower holds.
    pub matched: Option<u64>,
    /// How many records the follower is behind the leader's log.
    pub lag: u64,
}

/// A cluster member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalMember {
    pub id: u64,
    pub addr: String,
    /// A voter, or a learner (replicated to, not counted).
    pub voter: bool,
}

/// The answer to `GET /wal/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalStatus {
    pub id: u64,
    pub role: WalRole,
    pub term: u64,
    pub leader: Option<u64>,
    pub commit_index: Option<u64>,
    pub apply_index: Option<u64>,
    pub last_log_index: Option<u64>,
    /// The last index a snapshot covers.
    pub snapshot_index: Option<u64>,
    pub members: Vec<WalMember>,
    /// Only on the leader.
    pub followers: Vec<WalFollower>,
}

/// `POST /wal/members`: adds a node as a learner, then makes it a voter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WalAddMember {
    pub id: u64,
    /// `HOST:PORT` of its Raft and client API.
    pub addr: String,
}

/// One node of the local cluster `meridian serve` runs (`GET /api/wal/nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalLocalNode {
    pub id: u64,
    /// `HOST:PORT` of its Raft traffic and client API.
    pub addr: String,
    /// Whether its process runs (it was not killed from the page, or was restarted).
    pub running: bool,
    /// Its `/wal/status`, when it answered.
    pub status: Option<WalStatus>,
}

/// The answer to `GET /api/wal/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalNodesResponse {
    pub nodes: Vec<WalLocalNode>,
}

/// `GET /api/wal/state?lsn=N` or `?time=RFC3339`: exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
pub struct WalStateQuery {
    /// The state right after this LSN (capped at the commit index).
    #[serde(default)]
    pub lsn: Option<u64>,
    /// The state after every write the leader stamped at or before this time.
    #[serde(default)]
    pub time: Option<String>,
}

/// The key-value state as of a point of the log (`GET /api/wal/state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalStateResponse {
    /// The node whose data directory it was rebuilt from.
    pub node: u64,
    /// The last LSN applied to this state (`None`: the empty log).
    pub lsn: Option<u64>,
    /// That node's saved commit index, which bounds every answer.
    pub commit_index: Option<u64>,
    pub entries: std::collections::BTreeMap<String, String>,
}
