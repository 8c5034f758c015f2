//! The OpenFeature Remote Evaluation Protocol: any OpenFeature SDK with an OFREP provider
//! evaluates our flags here, with a delivery key (server or client) as
//! `Authorization: Bearer KEY` (the stock provider's `headers` option sends it); the
//! key's environment is the one evaluated. The page may call it signed in (`flags:read`);
//! then the environment is the `X-Meridian-Environment` header (or `?environment=`),
//! `production` when absent. Evaluation bodies and their errors are OFREP's; refusals
//! (401 `key_required`, 403 `forbidden`) are Meridian's `{"code", "message"}`.
//!
//! Answers carry evaluated values only, never rules or segment members.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use meridian_shared::api::ApiErrorBody;
use meridian_shared::flags::{
    ErrorCode, EvaluationContext, OfrepBulkEvaluationFailure, OfrepBulkEvaluationSuccess,
    OfrepEvaluationFailure, OfrepEvaluationRequest, OfrepEvaluationSuccess, OfrepFlagResult,
};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::keys;
use super::live::EnvSnapshot;
use crate::auth::Session;
use crate::error::ApiError;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(evaluate_one))
        .routes(routes!(evaluate_all))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EnvironmentQuery {
    /// Signed in: the environment (or the `X-Meridian-Environment` header), `production`
    /// when absent. With a key: its own environment (naming another is refused).
    environment: Option<String>,
}

/// The environment the request names, if any.
fn requested_environment(headers: &HeaderMap, query: &EnvironmentQuery) -> Option<String> {
    headers
        .get("x-meridian-environment")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.environment.clone())
}

/// The environment the caller may evaluate: its key's, or (signed in) the one it names.
async fn environment(
    state: &AppState,
    headers: &HeaderMap,
    query: &EnvironmentQuery,
    session: Option<&Session>,
) -> Result<String, ApiError> {
    let caller = keys::authenticate(state, headers, session).await?;
    let requested = requested_environment(headers, query);
    Ok(caller.evaluations(requested.as_deref())?.environment)
}

/// Every flag of an environment evaluated for `context`, by key: OFREP's bulk answer,
/// also what the evaluated stream sends.
pub fn evaluate_all_flags(
    flags: &EnvSnapshot,
    context: &EvaluationContext,
) -> OfrepBulkEvaluationSuccess {
    let mut keys: Vec<&String> = flags.compiled.keys().collect();
    keys.sort();
    OfrepBulkEvaluationSuccess {
        flags: keys
            .into_iter()
            .map(|key| flags.compiled[key].evaluate(context).to_ofrep(key))
            .collect(),
    }
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let text = serde_json::to_string(body).expect("serialises");
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        text,
    )
        .into_response()
}

/// An empty body is an empty context; anything else must be `{"context": {...}}`.
fn parse(body: &Bytes) -> Result<OfrepEvaluationRequest, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(OfrepEvaluationRequest::default());
    }
    serde_json::from_slice(body).map_err(|e| format!("the body is not an OFREP request: {e}"))
}

/// Evaluate one flag for a context.
#[utoipa::path(
    post,
    path = "/ofrep/v1/evaluate/flags/{key}",
    tag = "ofrep",
    params(("key" = String, Path, description = "The flag's key"), EnvironmentQuery),
    security(("delivery_key" = [])),
    request_body = OfrepEvaluationRequest,
    responses(
        (status = 200, description = "The evaluation", body = OfrepEvaluationSuccess),
        (status = 400, description = "PARSE_ERROR, TARGETING_KEY_MISSING, INVALID_CONTEXT or TYPE_MISMATCH", body = OfrepEvaluationFailure),
        (status = 401, description = "`key_required`: no key, or an unknown or revoked one (and not signed in)", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: the key is for another environment", body = ApiErrorBody),
        (status = 404, description = "FLAG_NOT_FOUND", body = OfrepEvaluationFailure),
    )
)]
async fn evaluate_one(
    State(state): State<AppState>,
    session: Option<Session>,
    Path(key): Path<String>,
    Query(query): Query<EnvironmentQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let env = match environment(&state, &headers, &query, session.as_ref()).await {
        Ok(env) => env,
        Err(err) => return err.into_response(),
    };
    let failure = |status: StatusCode, code: ErrorCode, details: String| {
        json(
            status,
            &OfrepEvaluationFailure {
                key: key.clone(),
                error_code: code,
                error_details: Some(details),
            },
        )
    };
    let request = match parse(&body) {
        Ok(request) => request,
        Err(details) => return failure(StatusCode::BAD_REQUEST, ErrorCode::ParseError, details),
    };
    let snapshot = state.flags.snapshot();
    let Some(evaluation) = snapshot.evaluate(&env, &key, &request.context) else {
        return failure(
            StatusCode::NOT_FOUND,
            ErrorCode::FlagNotFound,
            format!("no flag {key:?} in environment {env:?}"),
        );
    };
    match evaluation.to_ofrep(&key) {
        OfrepFlagResult::Success(success) => json(StatusCode::OK, &success),
        OfrepFlagResult::Failure(failure) => {
            let status = match failure.error_code {
                ErrorCode::FlagNotFound => StatusCode::NOT_FOUND,
                ErrorCode::General => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            json(status, &failure)
        }
    }
}

/// Evaluate every flag of the environment for a context. The `ETag` names the
/// configuration version and the context; `If-None-Match` with it answers 304.
#[utoipa::path(
    post,
    path = "/ofrep/v1/evaluate/flags",
    tag = "ofrep",
    params(EnvironmentQuery),
    security(("delivery_key" = [])),
    request_body = OfrepEvaluationRequest,
    responses(
        (status = 200, description = "Every flag's evaluation (failures included, per flag)", body = OfrepBulkEvaluationSuccess),
        (status = 304, description = "Not modified since the ETag"),
        (status = 400, description = "PARSE_ERROR", body = OfrepBulkEvaluationFailure),
        (status = 401, description = "`key_required`: no key, or an unknown or revoked one (and not signed in)", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: the key is for another environment", body = ApiErrorBody),
    )
)]
async fn evaluate_all(
    State(state): State<AppState>,
    session: Option<Session>,
    Query(query): Query<EnvironmentQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let env = match environment(&state, &headers, &query, session.as_ref()).await {
        Ok(env) => env,
        Err(err) => return err.into_response(),
    };
    let request = match parse(&body) {
        Ok(request) => request,
        Err(details) => {
            return json(
                StatusCode::BAD_REQUEST,
                &OfrepBulkEvaluationFailure {
                    error_code: ErrorCode::ParseError,
                    error_details: Some(details),
                },
            )
        }
    };
    let snapshot = state.flags.snapshot();
    let Some(flags) = snapshot.environments.get(&env) else {
        return json(
            StatusCode::BAD_REQUEST,
            &OfrepBulkEvaluationFailure {
                error_code: ErrorCode::General,
                error_details: Some(format!("there is no environment {env:?}")),
            },
        );
    };
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(&request.context)
        .unwrap_or_default()
        .hash(&mut hasher);
    let etag = format!("\"{env}-{}-{:016x}\"", snapshot.version, hasher.finish());
    let etag_value = HeaderValue::from_str(&etag).expect("an ETag is ASCII");
    let matches = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, [(ETAG, etag_value)]).into_response();
    }
    let mut response = json(StatusCode::OK, &evaluate_all_flags(flags, &request.context));
    response.headers_mut().insert(ETAG, etag_value);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_body_is_an_empty_context_and_garbage_is_a_parse_error() {
        assert_eq!(
            parse(&Bytes::from_static(b"  ")).unwrap(),
            OfrepEvaluationRequest::default()
        );
        assert!(parse(&Bytes::from_static(b"{\"context\": 3}")).is_err());
        let ok = parse(&Bytes::from_static(
            b"{\"context\": {\"targetingKey\": \"u1\", \"plan\": \"pro\"}}",
        ))
        .unwrap();
        assert_eq!(ok.context.targeting_key.as_deref(), Some("u1"));
    }
}
