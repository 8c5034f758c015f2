//! Meridian's trace API under `/api/tracing/`: the assembled trace by id, search,
//! services and the service dependency graph. Reading needs `tracing:read`.

use axum::extract::State;
use meridian_shared::api::ApiErrorBody;
use meridian_shared::traces::{
    assemble_trace, to_hex, AssembleOptions, ServiceDependenciesResponse, ServiceDependency,
    TraceSearchResponse, TraceTree, TracedService, TracedServicesResponse,
};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access::READ;
use super::blocking;
use super::convert::{summarise, to_trace_span};
use super::store::{SpanQuery, SpanStore};
use crate::auth::Session;
use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_trace))
        .routes(routes!(search))
        .routes(routes!(services))
        .routes(routes!(dependencies))
}

/// The most traces one search returns.
pub const MAX_SEARCH_LIMIT: usize = 200;

/// A trace id in a path: up to 32 hex digits (shorter ones are left-padded, as Tempo
/// and Zipkin's 64-bit ids need).
pub fn parse_path_trace_id(text: &str) -> Result<[u8; 16], ApiError> {
    let bad = || ApiError::bad_request("invalid_trace_id", "a trace id is 1 to 32 hex digits");
    if text.is_empty() || text.len() > 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    meridian_shared::traces::parse_trace_id(&format!("{text:0>32}")).ok_or_else(bad)
}

/// The assembled trace, or `None` when no span of it is stored.
pub async fn load_tree(
    store: &SpanStore,
    trace_id: [u8; 16],
    options: AssembleOptions,
) -> ApiResult<Option<TraceTree>> {
    let store = store.clone();
    blocking(move || {
        let records = store.trace(&trace_id)?;
        if records.is_empty() {
            return Ok(None);
        }
        let spans = records
            .iter()
            .map(to_trace_span)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(assemble_trace(&to_hex(&trace_id), spans, options)))
    })
    .await
}

/// Splits logfmt (`a=b c="d e"`) into pairs.
pub fn parse_logfmt(text: &str) -> Result<Vec<(String, String)>, ApiError> {
    let bad = |why: &str| ApiError::bad_request("invalid_tags", format!("tags: {why}"));
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or_else(|| bad("expected key=value"))?;
        let key = rest[..eq].trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(bad("expected key=value"));
        }
        rest = &rest[eq + 1..];
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').ok_or_else(|| bad("unterminated quote"))?;
            value = quoted[..end].to_owned();
            rest = &quoted[end + 1..];
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            value = rest[..end].to_owned();
            rest = &rest[end..];
        }
        out.push((key.to_owned(), value));
        rest = rest.trim_start();
    }
    Ok(out)
}

/// Adds a `key=value` condition: `service.name`, `name` and `status` are the span's own
/// fields, any other key an attribute.
pub fn add_tag(query: &mut SpanQuery, key: String, value: String) -> Result<(), ApiError> {
    match key.as_str() {
        "service.name" => query.service = Some(value),
        "name" => query.operation = Some(value),
        "status" => query.error = Some(parse_status(&value)?),
        _ => query.attributes.push((key, value)),
    }
    Ok(())
}

fn parse_status(value: &str) -> Result<bool, ApiError> {
    match value {
        "error" => Ok(true),
        "ok" | "unset" => Ok(false),
        other => Err(ApiError::bad_request(
            "invalid_status",
            format!("status {other:?}: use error or ok"),
        )),
    }
}

/// Runs `query` and assembles a summary of each trace found.
pub async fn run_search(store: &SpanStore, query: SpanQuery) -> ApiResult<Vec<TraceTree>> {
    let store = store.clone();
    blocking(move || {
        let ids = store.search(&query)?;
        let mut trees = Vec::with_capacity(ids.len());
        for id in ids {
            let records = store.trace(&id)?;
            let spans = records
                .iter()
                .map(to_trace_span)
                .collect::<Result<Vec<_>, _>>()?;
            trees.push(assemble_trace(
                &to_hex(&id),
                spans,
                AssembleOptions::default(),
            ));
        }
        trees.sort_by_key(|t| std::cmp::Reverse(t.start_us));
        Ok(trees)
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TraceParams {
    /// Move spans of other services that do not fit in their parent (default true).
    adjust_skew: Option<bool>,
}

/// One trace, assembled: depth-first spans, skew adjusted, critical path marked.
#[utoipa::path(
    get,
    path = "/api/tracing/traces/{trace_id}",
    tag = "tracing",
    params(("trace_id" = String, Path, description = "1 to 32 hex digits"), TraceParams),
    responses(
        (status = 200, description = "The trace", body = TraceTree),
        (status = 400, description = "`invalid_trace_id`", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
        (status = 403, description = "`forbidden`", body = ApiErrorBody),
        (status = 404, description = "No span of this trace is stored", body = ApiErrorBody),
    )
)]
async fn get_trace(
    State(state): State<AppState>,
    session: Session,
    Path(trace_id): Path<String>,
    Query(params): Query<TraceParams>,
) -> ApiResult<Json<TraceTree>> {
    session.require(&READ)?;
    let id = parse_path_trace_id(&trace_id)?;
    let options = AssembleOptions {
        adjust_skew: params.adjust_skew.unwrap_or(true),
    };
    load_tree(&state.traces.store, id, options)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no trace {trace_id}")))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    service: Option<String>,
    operation: Option<String>,
    /// Attribute conditions as logfmt: `http.status_code=500 region="eu west"`.
    tags: Option<String>,
    /// `error` or `ok`.
    status: Option<String>,
    min_duration_us: Option<u64>,
    max_duration_us: Option<u64>,
    /// Spans that started at or after (µs since the epoch).
    start_us: Option<u64>,
    end_us: Option<u64>,
    /// 1 to 200 (default 20).
    limit: Option<usize>,
}

/// Traces with a span matching every condition, newest first.
#[utoipa::path(
    get,
    path = "/api/tracing/search",
    tag = "tracing",
    params(SearchParams),
    responses(
        (status = 200, description = "Matching traces", body = TraceSearchResponse),
        (status = 400, description = "`invalid_tags`, `invalid_status`, `invalid_limit`, `invalid_query`", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
        (status = 403, description = "`forbidden`", body = ApiErrorBody),
    )
)]
async fn search(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<SearchParams>,
) -> ApiResult<Json<TraceSearchResponse>> {
    session.require(&READ)?;
    let limit = params.limit.unwrap_or(20);
    if limit == 0 || limit > MAX_SEARCH_LIMIT {
        return Err(ApiError::bad_request("invalid_limit", "limit is 1 to 200"));
    }
    let mut query = SpanQuery {
        service: params.service.filter(|s| !s.is_empty()),
        operation: params.operation.filter(|s| !s.is_empty()),
        min_duration_ns: params.min_duration_us.map(|d| d.saturating_mul(1_000)),
        max_duration_ns: params.max_duration_us.map(|d| d.saturating_mul(1_000)),
        start_ns: params.start_us.map(|d| d.saturating_mul(1_000)),
        end_ns: params.end_us.map(|d| d.saturating_mul(1_000)),
        limit,
        ..Default::default()
    };
    if let Some(status) = params.status.filter(|s| !s.is_empty()) {
        query.error = Some(parse_status(&status)?);
    }
    for (key, value) in parse_logfmt(params.tags.as_deref().unwrap_or(""))? {
        add_tag(&mut query, key, value)?;
    }
    let trees = run_search(&state.traces.store, query).await?;
    Ok(Json(TraceSearchResponse {
        traces: trees.iter().map(summarise).collect(),
    }))
}

/// Every service seen and its operations.
#[utoipa::path(
    get,
    path = "/api/tracing/services",
    tag = "tracing",
    responses(
        (status = 200, description = "Services, by name", body = TracedServicesResponse),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
        (status = 403, description = "`forbidden`", body = ApiErrorBody),
    )
)]
async fn services(
    State(state): State<AppState>,
    session: Session,
) -> ApiResult<Json<TracedServicesResponse>> {
    session.require(&READ)?;
    let catalog = state.traces.store.catalog();
    Ok(Json(TracedServicesResponse {
        services: catalog
            .services
            .into_iter()
            .map(|(name, ops)| TracedService {
                name,
                operations: ops.into_iter().collect(),
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DependencyParams {
    start_us: Option<u64>,
    end_us: Option<u64>,
}

/// The service map: calls from one service to another, counted.
#[utoipa::path(
    get,
    path = "/api/tracing/dependencies",
    tag = "tracing",
    params(DependencyParams),
    responses(
        (status = 200, description = "Edges of the service map", body = ServiceDependenciesResponse),
        (status = 400, description = "`invalid_query`", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
        (status = 403, description = "`forbidden`", body = ApiErrorBody),
    )
)]
async fn dependencies(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<DependencyParams>,
) -> ApiResult<Json<ServiceDependenciesResponse>> {
    session.require(&READ)?;
    let start = params.start_us.unwrap_or(0).saturating_mul(1_000);
    let end = params.end_us.map_or(u64::MAX, |e| e.saturating_mul(1_000));
    let edges = state.traces.store.dependencies(start, end);
    Ok(Json(ServiceDependenciesResponse {
        dependencies: edges
            .into_iter()
            .map(|((parent, child), (calls, errors))| ServiceDependency {
                parent,
                child,
                call_count: calls,
                error_count: errors,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_pairs_with_quotes() {
        assert_eq!(
            parse_logfmt(r#"service.name=api  region="eu west" n=5"#).unwrap(),
            vec![
                ("service.name".into(), "api".into()),
                ("region".into(), "eu west".into()),
                ("n".into(), "5".into())
            ]
        );
        assert!(parse_logfmt("novalue").is_err());
        assert!(parse_logfmt(r#"a="open"#).is_err());
        assert!(parse_logfmt("").unwrap().is_empty());
    }

    #[test]
    fn path_trace_ids_are_padded_and_checked() {
        assert_eq!(parse_path_trace_id("ff").unwrap()[15], 0xff);
        assert!(parse_path_trace_id("xyz").is_err());
        assert!(parse_path_trace_id(&"0".repeat(32)).is_err());
        assert!(parse_path_trace_id(&"1".repeat(33)).is_err());
    }
}
