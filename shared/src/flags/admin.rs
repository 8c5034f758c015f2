//! Wire types of the feature flags' admin API (`/api/flags`) and of the SSE stream
//! (`/api/flags/stream`). The flags themselves, their evaluation and OFREP are in
//! [`crate::flags`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::collections::BTreeMap;

use crate::flags::{
    ErrorCode, EvaluationContext, Flag, FlagConfig, FlagEnvironmentConfig, FlagKind, Reason,
    Segment, Variation,
};

/// A flag as clients create (`POST /api/flags`) or replace (`PUT /api/flags/{key}`) it;
/// the server keeps the timestamps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlagDefinition {
    pub key: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub kind: FlagKind,
    pub variations: Vec<Variation>,
    /// Environments left out start off, serving the first variation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environments: BTreeMap<String, FlagEnvironmentConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// `GET /api/flags`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlagList {
    pub flags: Vec<Flag>,
    /// The configuration's version (grows with every change to any flag or segment).
    pub version: u64,
}

/// `PUT /api/flags/{key}/environments/{environment}`: one environment's new config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvironmentChange {
    pub config: FlagEnvironmentConfig,
    /// Apply at this time (Unix ms) instead of now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<i64>,
}

/// What became of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChangeStatus {
    /// Live now.
    Applied,
    /// Waits for a second user's approval.
    PendingApproval,
    /// Waits for its time.
    Scheduled,
}

/// The answer to a change of a flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeOutcome {
    pub status: ChangeStatus,
    /// The flag as it now is (unchanged unless `applied`).
    pub flag: Flag,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
}

/// `POST /api/flags/{key}/kill`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KillRequest {
    pub environment: String,
    /// `false` lifts the kill switch.
    #[serde(default = "yes")]
    pub killed: bool,
}

fn yes() -> bool {
    true
}

/// How far a configuration version has reached the stream's subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    pub environment: String,
    pub version: u64,
    /// Subscribers connected to this environment's stream: on this instance, and on the
    /// other instances that reported in the last few seconds (PostgreSQL).
    pub subscribers: u64,
    /// Of those, how many were sent this version or a later one.
    pub delivered: u64,
    /// Every connected subscriber has it.
    pub complete: bool,
}

/// The answer to the kill switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KillOutcome {
    pub flag: Flag,
    pub version: u64,
    /// Measured when the answer was sent (the server waits up to 2 s for it to be
    /// complete); `GET /api/flags/delivery` asks again later.
    pub delivery: Delivery,
}

/// One entry of the audit log: who changed what, when, before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// The configuration version this change produced.
    pub version: u64,
    pub at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    pub actor_name: String,
    /// `create`, `update`, `update_environment`, `kill`, `unkill`, `delete`,
    /// `segment_update`, `segment_delete`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// For a change that needed approval: who approved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

/// `GET /api/flags/audit` and `GET /api/flags/{key}/audit`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// The state of a change that waits for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
}

/// A change to an environment that requires approval, proposed by one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Approval {
    pub id: String,
    pub flag_key: String,
    pub environment: String,
    pub proposed: FlagEnvironmentConfig,
    pub requested_by: String,
    pub requested_name: String,
    pub requested_at_ms: i64,
    pub status: ApprovalStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at_ms: Option<i64>,
}

/// `GET /api/flags/approvals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalList {
    pub approvals: Vec<Approval>,
}

/// A change waiting for its time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Schedule {
    pub id: String,
    pub flag_key: String,
    pub environment: String,
    pub proposed: FlagEnvironmentConfig,
    pub run_at_ms: i64,
    pub requested_name: String,
    /// `pending`, `applied`, `failed` or `cancelled`.
    pub status: String,
}

/// `GET /api/flags/schedules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleList {
    pub schedules: Vec<Schedule>,
}

/// An environment and whether its changes need a second user's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvironmentSettings {
    pub name: String,
    pub require_approval: bool,
}

/// `GET /api/flags/environments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvironmentList {
    pub environments: Vec<EnvironmentSettings>,
}

/// `POST /api/flags/{key}/preview`: which variant a context gets, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreviewRequest {
    pub environment: String,
    #[serde(default)]
    pub context: EvaluationContext,
}

/// The answer of a preview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Preview {
    pub key: String,
    pub environment: String,
    pub value: Value,
    pub variant: String,
    pub reason: Reason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<ErrorCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_index: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<u8>,
}

/// `GET /api/flags/segments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SegmentList {
    pub segments: Vec<Segment>,
}

/// An environment's whole configuration, as the SSE stream sends it (`event: put`, `id:`
/// the version) and SDKs evaluate it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlagSnapshot {
    pub version: u64,
    pub environment: String,
    pub flags: Vec<FlagConfig>,
    pub segments: Vec<Segment>,
}

/// What a delivery key may read. A server key reads the whole configuration stream (for
/// local evaluation in an SDK); a client key gets evaluated answers only (OFREP and a
/// stream of evaluated values for one context), never rules or segment members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    Server,
    Client,
}

/// `POST /api/flags/environments/{name}/keys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewKeyRequest {
    pub kind: KeyKind,
}

/// The answer to creating a key: the secret `key` is shown this once (the server keeps
/// only its hash). It travels as `Authorization: Bearer KEY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewKey {
    pub id: String,
    pub key: String,
    pub kind: KeyKind,
    pub environment: String,
}

/// A delivery key as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyInfo {
    pub id: String,
    pub kind: KeyKind,
    pub environment: String,
    /// The first characters of the key, to tell keys apart.
    pub prefix: String,
    pub created_at_ms: i64,
    pub created_by: String,
    pub revoked_at_ms: Option<i64>,
}

/// `GET /api/flags/environments/{name}/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}
