//! Tempo's HTTP API, so that Grafana's Tempo data source works against Meridian:
//! trace by id (OTLP JSON, or protobuf when asked), search by tags and duration or by
//! TraceQL (the subset in `traceql`), tag names and values, and the echo health check.
//! Open like an agent endpoint: Grafana carries no session.

use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use meridian_shared::api::ApiErrorBody;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::blocking;
use super::convert::to_resource_spans;
use super::query::{add_tag, parse_logfmt, parse_path_trace_id, run_search, MAX_SEARCH_LIMIT};
use super::store::SpanQuery;
use super::traceql::{self, Satisfiable};
use crate::error::{ApiError, ApiResult, Path, Query};
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(trace_v1))
        .routes(routes!(trace_v2))
        .routes(routes!(search))
        .routes(routes!(tag_names))
        .routes(routes!(tag_values))
        .routes(routes!(echo))
}

fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/protobuf") || a.contains("application/x-protobuf"))
}

async fn load(state: &AppState, trace_id: &str) -> ApiResult<ExportTraceServiceRequest> {
    let id = parse_path_trace_id(trace_id)?;
    let store = state.traces.store.clone();
    let resource_spans = blocking(move || {
        let records = store.trace(&id)?;
        to_resource_spans(&records)
    })
    .await?;
    if resource_spans.is_empty() {
        return Err(ApiError::not_found(format!("trace not found: {trace_id}")));
    }
    Ok(ExportTraceServiceRequest { resource_spans })
}

fn protobuf(bytes: Vec<u8>) -> Response {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("application/protobuf"),
        )],
        bytes,
    )
        .into_response()
}

/// A trace as Tempo's v1 API answers it: `{"batches": [ResourceSpans...]}` in OTLP JSON,
/// or the `tempopb.Trace` protobuf (the same bytes as OTLP's `TracesData`).
#[utoipa::path(
    get,
    path = "/api/traces/{trace_id}",
    tag = "tracing",
    params(("trace_id" = String, Path, description = "1 to 32 hex digits")),
    responses(
        (status = 200, description = "The trace; protobuf when `Accept: application/protobuf`"),
        (status = 400, description = "`invalid_trace_id`", body = ApiErrorBody),
        (status = 404, description = "Not found", body = ApiErrorBody),
    )
)]
async fn trace_v1(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(trace_id): Path<String>,
) -> ApiResult<Response> {
    let trace = load(&state, &trace_id).await?;
    if wants_protobuf(&headers) {
        return Ok(protobuf(trace.encode_to_vec()));
    }
    Ok(axum::Json(serde_json::json!({ "batches": trace.resource_spans })).into_response())
}

/// A trace as Tempo's v2 API answers it: `{"trace": {"resourceSpans": [...]}}`, or the
/// `TraceByIDResponse` protobuf (field 1: the trace).
#[utoipa::path(
    get,
    path = "/api/v2/traces/{trace_id}",
    tag = "tracing",
    params(("trace_id" = String, Path, description = "1 to 32 hex digits")),
    responses(
        (status = 200, description = "The trace; protobuf when `Accept: application/protobuf`"),
        (status = 400, description = "`invalid_trace_id`", body = ApiErrorBody),
        (status = 404, description = "Not found", body = ApiErrorBody),
    )
)]
async fn trace_v2(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(trace_id): Path<String>,
) -> ApiResult<Response> {
    let trace = load(&state, &trace_id).await?;
    if wants_protobuf(&headers) {
        let inner = trace.encode_to_vec();
        let mut out = Vec::with_capacity(inner.len() + 11);
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(inner.len() as u64, &mut out);
        out.extend_from_slice(&inner);
        return Ok(protobuf(out));
    }
    Ok(axum::Json(serde_json::json!({
        "trace": { "resourceSpans": trace.resource_spans }
    }))
    .into_response())
}

/// A Go duration (`300ms`, `1.5s`, `1m30s`, `2h`) in nanoseconds.
pub fn parse_go_duration(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    (total.is_finite() && total < u64::MAX as f64).then_some(total as u64)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct TempoSearchParams {
    /// logfmt: `service.name=api http.status_code=500`.
    tags: Option<String>,
    /// A Go duration, e.g. `100ms`.
    min_duration: Option<String>,
    max_duration: Option<String>,
    limit: Option<usize>,
    /// Unix seconds.
    start: Option<u64>,
    end: Option<u64>,
    /// TraceQL, the subset of Grafana's query builder: `{ resource.service.name = "api"
    /// && status = error && duration > 100ms && span.http.route = "/checkout" }`.
    q: Option<String>,
}

/// Tempo's tag search.
#[utoipa::path(
    get,
    path = "/api/search",
    tag = "tracing",
    params(TempoSearchParams),
    responses(
        (status = 200, description = "`{\"traces\": [...], \"metrics\": {...}}`"),
        (status = 400, description = "`invalid_tags`, `invalid_duration`, `invalid_limit`, `invalid_status`; `invalid_traceql` (not TraceQL; the message gives the offset); `traceql_unsupported` (TraceQL outside the subset: pipelines, `||`, structural operators, regexes, `kind`; the message names the construct and its offset)", body = ApiErrorBody),
    )
)]
async fn search(
    State(state): State<AppState>,
    Query(params): Query<TempoSearchParams>,
) -> ApiResult<Response> {
    let limit = params.limit.unwrap_or(20);
    if limit == 0 || limit > MAX_SEARCH_LIMIT {
        return Err(ApiError::bad_request("invalid_limit", "limit is 1 to 200"));
    }
    let duration = |text: Option<String>| -> ApiResult<Option<u64>> {
        match text.filter(|t| !t.is_empty()) {
            None => Ok(None),
            Some(t) => parse_go_duration(&t).map(Some).ok_or_else(|| {
                ApiError::bad_request("invalid_duration", format!("{t:?} is not a duration"))
            }),
        }
    };
    let mut query = SpanQuery {
        min_duration_ns: duration(params.min_duration)?,
        max_duration_ns: duration(params.max_duration)?,
        start_ns: params.start.map(|s| s.saturating_mul(1_000_000_000)),
        end_ns: params.end.map(|s| s.saturating_mul(1_000_000_000)),
        limit,
        ..Default::default()
    };
    for (key, value) in parse_logfmt(params.tags.as_deref().unwrap_or(""))? {
        add_tag(&mut query, key, value)?;
    }
    let mut satisfiable = Satisfiable::Yes;
    if let Some(q) = params.q.as_deref().filter(|q| !q.trim().is_empty()) {
        satisfiable = traceql::lower(&traceql::parse(q)?, &mut query)?;
    }
    let trees = match satisfiable {
        Satisfiable::Yes => run_search(&state.traces.store, query).await?,
        Satisfiable::No => Vec::new(),
    };
    let traces: Vec<serde_json::Value> = trees
        .iter()
        .map(|t| {
            serde_json::json!({
                "traceID": t.trace_id,
                "rootServiceName": t.root_service,
                "rootTraceName": t.root_name,
                "startTimeUnixNano": (t.start_us.max(0) as u64 * 1_000).to_string(),
                "durationMs": t.duration_us / 1_000,
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({
        "traces": traces,
        "metrics": { "inspectedTraces": trees.len() }
    }))
    .into_response())
}

/// Every attribute key seen (capped).
#[utoipa::path(
    get,
    path = "/api/search/tags",
    tag = "tracing",
    responses((status = 200, description = "`{\"tagNames\": [...]}`"))
)]
async fn tag_names(State(state): State<AppState>) -> Response {
    let mut names: Vec<String> = state.traces.store.catalog().tags.into_keys().collect();
    if !names.iter().any(|n| n == "name") {
        names.push("name".into());
    }
    names.push("status".into());
    names.sort();
    names.dedup();
    axum::Json(serde_json::json!({ "tagNames": names })).into_response()
}

/// Values seen for one attribute key (capped).
#[utoipa::path(
    get,
    path = "/api/search/tag/{tag}/values",
    tag = "tracing",
    params(("tag" = String, Path, description = "An attribute key, `name` or `status`")),
    responses((status = 200, description = "`{\"tagValues\": [...]}`"))
)]
async fn tag_values(State(state): State<AppState>, Path(tag): Path<String>) -> Response {
    let catalog = state.traces.store.catalog();
    let values: Vec<String> = match tag.as_str() {
        "name" => {
            let mut ops: Vec<String> = catalog.services.into_values().flatten().collect();
            ops.sort();
            ops.dedup();
            ops
        }
        "status" => vec!["error".into(), "ok".into(), "unset".into()],
        _ => catalog
            .tags
            .get(&tag)
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default(),
    };
    axum::Json(serde_json::json!({ "tagValues": values })).into_response()
}

/// Tempo's health check: answers `echo`.
#[utoipa::path(
    get,
    path = "/api/echo",
    tag = "tracing",
    responses((status = 200, description = "`echo`", content_type = "text/plain"))
)]
async fn echo() -> &'static str {
    "echo"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("100ms"), Some(100_000_000));
        assert_eq!(parse_go_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_go_duration("250us"), Some(250_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("abc"), None);
        assert_eq!(parse_go_duration(""), None);
    }
}
