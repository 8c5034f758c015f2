//! `/api/wal/...`: what the page `/wal` asks of the local cluster ([`super::local`]).
//! The nodes with their `/wal/status`, kill and restart, appends and records forwarded
//! to a running node, and the key-value state as of an LSN or a time, rebuilt from a
//! running node's data directory ([`super::committed_state_at`], read-only).
//!
//! Every route answers 503 `wal_off` when the server runs no local cluster
//! (`--wal-nodes 0`), 401 to a guest, and kill and restart need [`access::OPERATE`].

use std::time::Duration;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use meridian_shared::api::ApiErrorBody;
use meridian_shared::wal::{
    WalAppendRequest, WalAppendResponse, WalLocalNode, WalNodesResponse, WalRecordsQuery,
    WalRecordsResponse, WalRole, WalStateQuery, WalStateResponse, WalStatus,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access::{self, READ};
use super::local::{LocalCluster, LocalNode};
use super::{committed_state_at, RecoverError, StdDisk, Target};
use crate::auth::Session;
use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::openapi::with_platform_errors;
use crate::AppState;

/// How long a node's status may take before the page shows it without one.
const STATUS_TIMEOUT: Duration = Duration::from_millis(800);
/// How long a forwarded append or read may take (the node's own limit is 10 s).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `/api/wal/state` waits for a node's saved commit index to catch up with
/// the one it reports (it is saved every 200 ms).
const SAVED_COMMIT_WAIT: Duration = Duration::from_secs(1);

pub fn routes() -> OpenApiRouter<AppState> {
    with_platform_errors(
        OpenApiRouter::new()
            .routes(routes!(list_nodes))
            .routes(routes!(kill_node))
            .routes(routes!(restart_node))
            .routes(routes!(append))
            .routes(routes!(records))
            .routes(routes!(state_at)),
    )
}

fn local(state: &AppState) -> ApiResult<&LocalCluster> {
    state.wal.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "wal_off",
            "this server runs no local WAL cluster (it was started with --wal-nodes 0)",
        )
    })
}

fn node_of(cluster: &LocalCluster, id: u64) -> ApiResult<&LocalNode> {
    cluster.node(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "wal_node_not_found",
            format!("the local cluster has no node {id}"),
        )
    })
}

async fn status_of(cluster: &LocalCluster, node: &LocalNode) -> Option<WalStatus> {
    let answer = cluster
        .http()
        .get(format!("http://{}/wal/status", node.addr))
        .timeout(STATUS_TIMEOUT)
        .send()
        .await
        .ok()?;
    if !answer.status().is_success() {
        return None;
    }
    answer.json().await.ok()
}

async fn view(cluster: &LocalCluster, node: &LocalNode) -> WalLocalNode {
    let running = cluster.is_running(node).await;
    WalLocalNode {
        id: node.id,
        addr: node.addr.to_string(),
        running,
        status: if running {
            status_of(cluster, node).await
        } else {
            None
        },
    }
}

async fn views(cluster: &LocalCluster) -> Vec<WalLocalNode> {
    futures_util::future::join_all(cluster.nodes().iter().map(|node| view(cluster, node))).await
}

/// The local cluster's nodes, each with its `/wal/status` when it answered.
#[utoipa::path(
    get,
    path = "/api/wal/nodes",
    tag = "wal",
    responses(
        (status = 200, description = "The nodes, by id", body = WalNodesResponse),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
        (status = 403, description = "`forbidden`", body = ApiErrorBody),
        (status = 503, description = "`wal_off`: no local cluster runs", body = ApiErrorBody),
    )
)]
async fn list_nodes(
    State(state): State<AppState>,
    session: Session,
) -> ApiResult<Json<WalNodesResponse>> {
    session.require(&READ)?;
    let cluster = local(&state)?;
    Ok(Json(WalNodesResponse {
        nodes: views(cluster).await,
    }))
}

/// Kills a node with SIGKILL (a crash); the others elect a new leader if it led.
#[utoipa::path(
    post,
    path = "/api/wal/nodes/{id}/kill",
    tag = "wal",
    params(("id" = u64, Path, description = "The node's id")),
    responses(
        (status = 200, description = "The node, no longer running", body = WalLocalNode),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
        (status = 403, description = "`forbidden`", body = ApiErrorBody),
        (status = 404, description = "`wal_node_not_found`", body = ApiErrorBody),
        (status = 503, description = "`wal_off`: no local cluster runs", body = ApiErrorBody),
    )
)]
async fn kill_node(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<u64>,
) -> ApiResult<Json<WalLocalNode>> {
    session.require(&access::OPERATE)?;
    let cluster = local(&state)?;
    let node = node_of(cluster, id)?;
    cluster.kill(node).await;
    Ok(Json(view(cluster, node).await))
}

/// Starts a node again (killing it first if it runs), at its address and directory.
#[utoipa::path(
    post,
    path = "/api/wal/nodes/{id}/restart",
    tag = "wal",
    params(("id" = u64, Path, description = "The node's id")),
    responses(
        (status = 200, description = "The node, running (its status comes once it serves)", body = WalLocalNode),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
        (status = 403, description = "`forbidden`", body = ApiErrorBody),
        (status = 404, description = "`wal_node_not_found`", body = ApiErrorBody),
        (status = 503, description = "`wal_off`: no local cluster runs", body = ApiErrorBody),
    )
)]
async fn restart_node(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<u64>,
) -> ApiResult<Json<WalLocalNode>> {
    session.require(&access::OPERATE)?;
    let cluster = local(&state)?;
    let node = node_of(cluster, id)?;
    cluster.restart(node).await.map_err(ApiError::internal)?;
    Ok(Json(WalLocalNode {
        id: node.id,
        addr: node.addr.to_string(),
        running: true,
        status: None,
    }))
}

/// Sends a request to the leader, or else the first running node that answers, and
/// relays its answer (a follower forwards writes to the leader itself).
async fn forward(
    cluster: &LocalCluster,
    method: Method,
    path_and_query: &str,
    body: Option<Vec<u8>>,
) -> ApiResult<Response> {
    let mut last_error = None;
    let mut running: Vec<WalLocalNode> = views(cluster)
        .await
        .into_iter()
        .filter(|node| node.running)
        .collect();
    // The leader first: it holds every committed record.
    running.sort_by_key(|node| {
        !node
            .status
            .as_ref()
            .is_some_and(|status| status.role == WalRole::Leader)
    });
    for node in running {
        let mut request = cluster
            .http()
            .request(
                method.clone(),
                format!("http://{}{path_and_query}", node.addr),
            )
            .timeout(FORWARD_TIMEOUT);
        if let Some(body) = &body {
            request = request
                .header(axum::http::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(err) => {
                last_error = Some(format!("node {}: {err}", node.id));
                continue;
            }
        };
        let status = answer.status();
        let bytes = answer
            .bytes()
            .await
            .map_err(|err| ApiError::unavailable(format!("node {}: {err}", node.id)))?;
        return Ok((
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response());
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_node",
        match last_error {
            Some(err) => format!("no node of the local cluster answered ({err})"),
            None => "no node of the local cluster runs".to_owned(),
        },
    ))
}

/// Appends records through a running node (`POST /wal/append` of the node).
#[utoipa::path(
    post,
    path = "/api/wal/append",
    tag = "wal",
    request_body = WalAppendRequest,
    responses(
        (status = 200, description = "Committed on a majority", body = WalAppendResponse),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
        (status = 403, description = "`forbidden`", body = ApiErrorBody),
        (status = 413, description = "`record_too_large`", body = ApiErrorBody),
        (status = 422, description = "`invalid_records`", body = ApiErrorBody),
        (status = 503, description = "`wal_off`, `no_node`, or the node's `no_leader`, `leader_unreachable`, `timeout`: retry", body = ApiErrorBody),
    )
)]
async fn append(
    State(state): State<AppState>,
    session: Session,
    Json(request): Json<WalAppendRequest>,
) -> ApiResult<Response> {
    session.require(&READ)?;
    let cluster = local(&state)?;
    let body = serde_json::to_vec(&request).map_err(ApiError::internal)?;
    forward(cluster, Method::POST, "/wal/append", Some(body)).await
}

/// Committed records from a running node (`GET /wal/records` of the node).
#[utoipa::path(
    get,
    path = "/api/wal/records",
    tag = "wal",
    params(WalRecordsQuery),
    responses(
        (status = 200, description = "Records from `from` on", body = WalRecordsResponse),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
        (status = 403, description = "`forbidden`", body = ApiErrorBody),
        (status = 422, description = "`bad_range`: `limit` not 1 to 1,000", body = ApiErrorBody),
        (status = 503, description = "`wal_off`, `no_node`", body = ApiErrorBody),
    )
)]
async fn records(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<WalRecordsQuery>,
) -> ApiResult<Response> {
    session.require(&READ)?;
    let cluster = local(&state)?;
    let mut path = format!("/wal/records?from={}", query.from);
    if let Some(limit) = query.limit {
        path.push_str(&format!("&limit={limit}"));
    }
    forward(cluster, Method::GET, &path, None).await
}

/// The key-value state as of an LSN or a time, capped at the commit index: rebuilt
/// (read-only) from the data directory of the leader, or of the running node that has
/// committed most.
#[utoipa::path(
    get,
    path = "/api/wal/state",
    tag = "wal",
    params(WalStateQuery),
    responses(
        (status = 200, description = "The state", body = WalStateResponse),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
        (status = 403, description = "`forbidden`", body = ApiErrorBody),
        (status = 422, description = "`invalid_target` (give exactly one of `lsn` and `time`), `invalid_time`, `lsn_unavailable` (the log before it was purged)", body = ApiErrorBody),
        (status = 503, description = "`wal_off`, `no_node`", body = ApiErrorBody),
    )
)]
async fn state_at(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<WalStateQuery>,
) -> ApiResult<Json<WalStateResponse>> {
    session.require(&READ)?;
    let cluster = local(&state)?;
    let target = match (query.lsn, &query.time) {
        (Some(lsn), None) => Target::Lsn(lsn),
        (None, Some(time)) => Target::Time(
            meridian_shared::sales::parse_rfc3339_ms(time).ok_or_else(|| {
                ApiError::unprocessable("invalid_time", format!("{time:?} is not an RFC 3339 time"))
            })?,
        ),
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_target",
                "give exactly one of lsn and time",
            ))
        }
    };
    let nodes = views(cluster).await;
    let source = nodes
        .iter()
        .filter(|node| node.running)
        .max_by_key(|node| match &node.status {
            Some(status) => (status.role == WalRole::Leader, status.commit_index),
            None => (false, None),
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_node",
                "no node of the local cluster runs",
            )
        })?;
    let id = source.id;
    let dir = node_of(cluster, id)?.data_dir.clone();
    // The commit index a node saves trails the one it reports by up to 200 ms: wait
    // (briefly) until it covers what the page was shown as committed.
    let wanted = source.status.as_ref().and_then(|status| match target {
        Target::Lsn(lsn) => status.commit_index.map(|commit| commit.min(lsn)),
        Target::Time(_) => status.commit_index,
    });
    let deadline = tokio::time::Instant::now() + SAVED_COMMIT_WAIT;
    let rebuilt = loop {
        let dir = dir.clone();
        let rebuilt =
            tokio::task::spawn_blocking(move || committed_state_at(&StdDisk::new(), &dir, target))
                .await
                .map_err(ApiError::internal)?;
        let saved = match &rebuilt {
            Ok(Some((_, committed))) => Some(*committed),
            _ => None,
        };
        if saved >= wanted || rebuilt.is_err() || tokio::time::Instant::now() >= deadline {
            break rebuilt;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    match rebuilt {
        Ok(Some((kv, committed))) => Ok(Json(WalStateResponse {
            node: id,
            lsn: kv.last_applied(),
            commit_index: Some(committed),
            entries: kv.entries().clone(),
        })),
        Ok(None) => Ok(Json(WalStateResponse {
            node: id,
            lsn: None,
            commit_index: None,
            entries: Default::default(),
        })),
        Err(err @ RecoverError::LogPurged { .. }) => {
            Err(ApiError::unprocessable("lsn_unavailable", err.to_string()))
        }
        Err(err) => Err(ApiError::internal(err)),
    }
}
