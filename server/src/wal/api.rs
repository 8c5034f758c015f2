//! The client API every WAL node serves: `POST /wal/append`, `GET /wal/records`,
//! `GET /wal/tail` (Server-Sent Events), `GET /wal/kv/{key}`, `GET /wal/status`,
//! `POST /wal/members`, `DELETE /wal/members/{id}`.
//!
//! Writes, linearizable reads and membership changes run on the leader: a follower
//! forwards the request to the leader it knows (once: a forwarded request that lands
//! on a non-leader is answered 503 `no_leader`, and the client retries). Records, the
//! tail and the status are served by the node asked, from what it has applied.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use meridian_shared::api::ApiErrorBody;
use meridian_shared::wal::{
    WalAddMember, WalAppendRequest, WalAppendResponse, WalFollower, WalKvResponse, WalMember,
    WalRecord, WalRecordsQuery, WalRecordsResponse, WalRole, WalStatus, WalTailQuery, WalWrite,
};
use openraft::error::ClientWriteError;
use openraft::{BasicNode, ServerState};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::kv::{self, ClientWrite};
use super::node::WalNode;
use crate::error::{ApiError, ApiResult, Json, Path, Query};

/// The most records one append or one page of records holds.
pub const MAX_RECORDS: usize = 1000;
/// The page size of `GET /wal/records` when the client names none.
const DEFAULT_LIMIT: u64 = 100;
/// How long a write or a read may wait for the cluster before 503 `timeout`.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(10);
/// Marks a request one node forwarded to the leader.
const FORWARDED: &str = "x-meridian-wal-forwarded";

/// The client API with its OpenAPI description.
pub fn routes() -> OpenApiRouter<WalNode> {
    OpenApiRouter::new()
        .routes(routes!(append))
        .routes(routes!(records))
        .routes(routes!(tail))
        .routes(routes!(read_key))
        .routes(routes!(status))
        .routes(routes!(add_member))
        .routes(routes!(remove_member))
}

/// The OpenAPI document of a node's client API (for the main server's document).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
}

/// When this node does not lead: the leader's answer to `request` posted to `path`
/// (through [`forward`]); `None` when this node leads and should answer itself.
async fn post_to_leader<T: serde::Serialize>(
    node: &WalNode,
    headers: &HeaderMap,
    path: &str,
    request: &T,
) -> Option<ApiResult<Response>> {
    let leader = leader_of(node);
    if leader.as_ref().is_some_and(|(id, _)| *id == node.id) {
        return None;
    }
    let body = match serde_json::to_vec(request) {
        Ok(body) => body,
        Err(err) => return Some(Err(ApiError::internal(err))),
    };
    Some(forward(node, headers, leader, Method::POST, path, Some(body)).await)
}

/// Sends the request to the leader and relays its answer.
async fn forward(
    node: &WalNode,
    headers: &HeaderMap,
    leader: Option<(u64, BasicNode)>,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
) -> ApiResult<Response> {
    let Some((leader_id, leader)) = leader.filter(|(id, _)| *id != node.id) else {
        return Err(unavailable("no_leader", "no leader is known yet; retry"));
    };
    if headers.contains_key(FORWARDED) {
        return Err(unavailable(
            "no_leader",
            format!(
                "forwarded here, but node {} is not the leader; retry",
                node.id
            ),
        ));
    }
    let mut request = node
        .client
        .request(method, format!("http://{}{path_and_query}", leader.addr))
        .header(FORWARDED, node.id.to_string())
        .timeout(CLUSTER_TIMEOUT);
    if let Some(body) = body {
        request = request
            .header(axum::http::header::CONTENT_TYPE, "application/json")
            .body(body);
    }
    let answer = request.send().await.map_err(|err| {
        unavailable(
            "leader_unreachable",
            format!("the leader, node {leader_id}, did not answer: {err}"),
        )
    })?;
    let status = answer.status();
    let bytes = answer
        .bytes()
        .await
        .map_err(|err| unavailable("leader_unreachable", err.to_string()))?;
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response())
}

fn leader_of(node: &WalNode) -> Option<(u64, BasicNode)> {
    let metrics = node.raft.metrics().borrow().clone();
    let leader = metrics.current_leader?;
    let address = metrics
        .membership_config
        .membership()
        .get_node(&leader)?
        .clone();
    Some((leader, address))
}

/// Appends records; answered once they are committed (durable on a majority).
#[utoipa::path(
    post,
    path = "/wal/append",
    tag = "wal",
    request_body = WalAppendRequest,
    responses(
        (status = 200, description = "Committed: the LSNs of the first and last record (the original LSN for a repeated idempotency key)", body = WalAppendResponse),
        (status = 413, description = "`record_too_large` (a key over 1 KiB, a value over 64 KiB, an idempotency key over 128 bytes) or `payload_too_large`", body = ApiErrorBody),
        (status = 422, description = "`invalid_records` (not 1 to 1,000 records), `invalid_body` (an unknown field)", body = ApiErrorBody),
        (status = 503, description = "`no_leader`, `leader_unreachable`, `timeout`: retry (with idempotency keys)", body = ApiErrorBody),
    )
)]
async fn append(
    State(node): State<WalNode>,
    headers: HeaderMap,
    Json(request): Json<WalAppendRequest>,
) -> ApiResult<Response> {
    if request.records.is_empty() || request.records.len() > MAX_RECORDS {
        return Err(ApiError::unprocessable(
            "invalid_records",
            format!(
                "an append holds 1 to {MAX_RECORDS} records, not {}",
                request.records.len()
            ),
        ));
    }
    let now_ms = node.clock.now_ms();
    let writes: Vec<WalWrite> = request
        .records
        .iter()
        .map(|record| WalWrite {
            key: record.key.clone(),
            value: record.value.clone(),
            idempotency_key: record.idempotency_key.clone(),
            leader_time_ms: now_ms,
        })
        .collect();
    for write in &writes {
        ClientWrite::from(write.clone()).validate().map_err(|err| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "record_too_large",
                err.to_string(),
            )
        })?;
    }
    if let Some(answer) = post_to_leader(&node, &headers, "/wal/append", &request).await {
        return answer;
    }
    // A retry of writes that are all applied already is answered without a new record.
    if let Some(answer) = node.machine.answer_if_applied(&writes).await {
        let term = node.raft.metrics().borrow().current_term;
        return Ok(Json(WalAppendResponse {
            first_lsn: answer.0,
            last_lsn: answer.1,
            term,
        })
        .into_response());
    }
    let proposed = {
        // One batch at a time, so a batch takes consecutive LSNs.
        let _order = node.append_order.lock().await;
        let mut receivers = Vec::with_capacity(writes.len());
        for write in writes {
            let receiver = node
                .raft
                .client_write_ff(write)
                .await
                .map_err(|err| unavailable("shutting_down", err.to_string()))?;
            receivers.push(receiver);
        }
        receivers
    };
    let committed = tokio::time::timeout(CLUSTER_TIMEOUT, async {
        let mut outcomes = Vec::with_capacity(proposed.len());
        for receiver in proposed {
            outcomes.push(receiver.await);
        }
        outcomes
    })
    .await
    .map_err(|_| unavailable("timeout", "the records were not committed in time; retry"))?;
    let mut first = None;
    let mut last = None;
    for (position, outcome) in committed.into_iter().enumerate() {
        match outcome {
            Ok(Ok(response)) => {
                first.get_or_insert(response.data.lsn);
                last = Some((response.data.lsn, response.log_id.leader_id.term));
            }
            Ok(Err(ClientWriteError::ForwardToLeader(_))) if position == 0 => {
                let body = serde_json::to_vec(&request).map_err(ApiError::internal)?;
                return forward(
                    &node,
                    &headers,
                    leader_of(&node),
                    Method::POST,
                    "/wal/append",
                    Some(body),
                )
                .await;
            }
            Ok(Err(err)) => {
                return Err(unavailable(
                    "not_committed",
                    format!("record {position} was not committed ({err}); retry"),
                ))
            }
            Err(_) => return Err(unavailable("shutting_down", "the node is stopping")),
        }
    }
    let (Some(first_lsn), Some((last_lsn, term))) = (first, last) else {
        return Err(ApiError::internal("an append without outcomes"));
    };
    Ok(Json(WalAppendResponse {
        first_lsn,
        last_lsn,
        term,
    })
    .into_response())
}

/// Reads the committed client writes from `from`, at most `limit` LSNs on.
fn read_records(node: &WalNode, from: u64, limit: u64) -> ApiResult<WalRecordsResponse> {
    let applied = *node.machine.applied().borrow();
    let Some(applied_index) = applied.filter(|&applied| applied >= from) else {
        return Ok(WalRecordsResponse {
            records: Vec::new(),
            next: from,
            applied,
        });
    };
    let end = from.saturating_add(limit).min(applied_index + 1);
    let stored = node
        .store
        .log()
        .read(from..end)
        .map_err(ApiError::internal)?;
    let mut records = Vec::with_capacity(stored.len());
    for record in stored {
        if let kv::Entry::Write(write) =
            kv::Entry::decode(&record.payload).map_err(ApiError::internal)?
        {
            records.push(WalRecord {
                lsn: record.index,
                term: record.term,
                write: write.into(),
            });
        }
    }
    Ok(WalRecordsResponse {
        records,
        next: end,
        applied,
    })
}

/// Committed client writes from an LSN on (Raft's own entries are left out).
#[utoipa::path(
    get,
    path = "/wal/records",
    tag = "wal",
    params(WalRecordsQuery),
    responses(
        (status = 200, body = WalRecordsResponse),
        (status = 400, description = "`invalid_query` (not a number, an unknown parameter)", body = ApiErrorBody),
        (status = 422, description = "`bad_range`: `limit` not 1 to 1,000", body = ApiErrorBody),
    )
)]
async fn records(
    State(node): State<WalNode>,
    Query(query): Query<WalRecordsQuery>,
) -> ApiResult<Json<WalRecordsResponse>> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_RECORDS as u64 {
        return Err(ApiError::unprocessable(
            "bad_range",
            format!("limit must be 1 to {MAX_RECORDS}, not {limit}"),
        ));
    }
    read_records(&node, query.from, limit).map(Json)
}

/// Committed client writes from an LSN on, then each as it commits (event `record`,
/// id the LSN, data a [`WalRecord`]).
#[utoipa::path(
    get,
    path = "/wal/tail",
    tag = "wal",
    params(WalTailQuery),
    responses(
        (status = 200, description = "text/event-stream of `record` events", content_type = "text/event-stream", body = WalRecord),
        (status = 400, description = "`invalid_query`", body = ApiErrorBody),
    )
)]
async fn tail(
    State(node): State<WalNode>,
    Query(query): Query<WalTailQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let applied = node.machine.applied();
    let pages = stream::unfold(
        (node, query.from, applied),
        |(node, from, mut applied)| async move {
            loop {
                if applied
                    .borrow_and_update()
                    .is_some_and(|index| index >= from)
                {
                    break;
                }
                applied.changed().await.ok()?;
            }
            let page = read_records(&node, from, DEFAULT_LIMIT).ok()?;
            let events: Vec<Result<Event, Infallible>> = page
                .records
                .iter()
                .filter_map(|record| {
                    Event::default()
                        .event("record")
                        .id(record.lsn.to_string())
                        .json_data(record)
                        .ok()
                })
                .map(Ok)
                .collect();
            Some((stream::iter(events), (node, page.next, applied)))
        },
    );
    Sse::new(pages.flatten()).keep_alive(KeepAlive::default())
}

/// The value of a key, read through the leader (linearizable).
#[utoipa::path(
    get,
    path = "/wal/kv/{key}",
    tag = "wal",
    params(("key" = String, Path, description = "The key")),
    responses(
        (status = 200, description = "The value (null when the key was never written)", body = WalKvResponse),
        (status = 503, description = "`no_leader`, `leader_unreachable`, `timeout`", body = ApiErrorBody),
    )
)]
async fn read_key(
    State(node): State<WalNode>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> ApiResult<Response> {
    let read = tokio::time::timeout(CLUSTER_TIMEOUT, node.raft.ensure_linearizable())
        .await
        .map_err(|_| unavailable("timeout", "the leader could not confirm its lease in time"))?;
    if let Err(err) = read {
        if err.forward_to_leader::<BasicNode>().is_some() {
            let path = format!("/wal/kv/{}", encode_path_segment(&key));
            return forward(&node, &headers, leader_of(&node), Method::GET, &path, None).await;
        }
        return Err(unavailable("no_quorum", err.to_string()));
    }
    let (value, applied) = node.machine.get(&key).await;
    Ok(Json(WalKvResponse {
        key,
        value,
        applied,
    })
    .into_response())
}

fn encode_path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// This node as Raft sees it: role, term, leader, commit and apply index, members, and
/// on the leader each follower's lag.
#[utoipa::path(
    get,
    path = "/wal/status",
    tag = "wal",
    responses((status = 200, body = WalStatus))
)]
async fn status(State(node): State<WalNode>) -> Json<WalStatus> {
    Json(node.status())
}

impl WalNode {
    pub fn status(&self) -> WalStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let last_log = metrics.last_log_index;
        let followers = metrics
            .replication
            .iter()
            .flatten()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, matched)| {
                let matched = matched.map(|log_id| log_id.index);
                let lag = match (last_log, matched) {
                    (Some(last), Some(matched)) => last.saturating_sub(matched),
                    (Some(last), None) => last + 1,
                    (None, _) => 0,
                };
                WalFollower {
                    id: *id,
                    matched,
                    lag,
                }
            })
            .collect();
        WalStatus {
            id: self.id,
            role: match metrics.state {
                ServerState::Leader => WalRole::Leader,
                ServerState::Follower => WalRole::Follower,
                ServerState::Candidate => WalRole::Candidate,
                ServerState::Learner => WalRole::Learner,
                ServerState::Shutdown => WalRole::Shutdown,
            },
            term: metrics.current_term,
            leader: metrics.current_leader,
            commit_index: *self.store.committed().borrow(),
            apply_index: metrics.last_applied.map(|id| id.index),
            last_log_index: last_log,
            snapshot_index: metrics.snapshot.map(|id| id.index),
            members: membership
                .nodes()
                .map(|(id, member)| WalMember {
                    id: *id,
                    addr: member.addr.clone(),
                    voter: voters.contains(id),
                })
                .collect(),
            followers,
        }
    }
}

/// Adds a node: first as a learner (it catches up from a snapshot and the log), then
/// as a voter.
#[utoipa::path(
    post,
    path = "/wal/members",
    tag = "wal",
    request_body = WalAddMember,
    responses(
        (status = 200, description = "The membership changed; this node's status", body = WalStatus),
        (status = 422, description = "`invalid_body`", body = ApiErrorBody),
        (status = 503, description = "`no_leader`, `membership_change_failed`", body = ApiErrorBody),
    )
)]
async fn add_member(
    State(node): State<WalNode>,
    headers: HeaderMap,
    Json(request): Json<WalAddMember>,
) -> ApiResult<Response> {
    if let Some(answer) = post_to_leader(&node, &headers, "/wal/members", &request).await {
        return answer;
    }
    let failed =
        |err: &dyn std::fmt::Display| unavailable("membership_change_failed", err.to_string());
    node.raft
        .add_learner(request.id, BasicNode::new(request.addr.clone()), true)
        .await
        .map_err(|err| failed(&err))?;
    let mut voters: BTreeSet<u64> = node
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    voters.insert(request.id);
    node.raft
        .change_membership(voters, false)
        .await
        .map_err(|err| failed(&err))?;
    Ok(Json(node.status()).into_response())
}

/// Removes a node from the voters (and from the cluster).
#[utoipa::path(
    delete,
    path = "/wal/members/{id}",
    tag = "wal",
    params(("id" = u64, Path, description = "The node id")),
    responses(
        (status = 200, description = "The membership changed; this node's status", body = WalStatus),
        (status = 422, description = "`last_voter`: the cluster would have no voter", body = ApiErrorBody),
        (status = 503, description = "`no_leader`, `membership_change_failed`", body = ApiErrorBody),
    )
)]
async fn remove_member(
    State(node): State<WalNode>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> ApiResult<Response> {
    let leader = leader_of(&node);
    if leader
        .as_ref()
        .is_none_or(|(leader_id, _)| *leader_id != node.id)
    {
        return forward(
            &node,
            &headers,
            leader,
            Method::DELETE,
            &format!("/wal/members/{id}"),
            None,
        )
        .await;
    }
    let mut voters: BTreeSet<u64> = node
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    voters.remove(&id);
    if voters.is_empty() {
        return Err(ApiError::unprocessable(
            "last_voter",
            "the cluster needs a voter",
        ));
    }
    node.raft
        .change_membership(voters, false)
        .await
        .map_err(|err| unavailable("membership_change_failed", err.to_string()))?;
    Ok(Json(node.status()).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_document_has_every_client_route() {
        let doc = super::openapi();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "/wal/append",
                "/wal/kv/{key}",
                "/wal/members",
                "/wal/members/{id}",
                "/wal/records",
                "/wal/status",
                "/wal/tail"
            ]
        );
    }
}
