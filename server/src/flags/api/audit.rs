//! The audit log: every change with who, when, before and after, newest first, in pages
//! (`next_before` names the next page).

use axum::extract::State;
use meridian_shared::api::ApiErrorBody;
use meridian_shared::flags::admin::AuditLog;
use serde::Deserialize;
use utoipa::IntoParams;

use super::FlagKey;
use crate::auth::Session;
use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::flags::access::READ;
use crate::flags::store;
use crate::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Entries older than this version (`next_before` of the previous page).
    before: Option<u64>,
    /// 1 to 200 (50 by default).
    limit: Option<usize>,
}

async fn audit_page(state: &AppState, key: Option<&str>, query: AuditQuery) -> ApiResult<AuditLog> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::unprocessable(
            "invalid_limit",
            format!("limit is 1 to 200, not {limit}"),
        ));
    }
    let mut entries = store::audit_log(
        &state.db.pool,
        key,
        query.before.unwrap_or(u64::MAX),
        limit + 1,
    )
    .await?;
    let next_before = (entries.len() > limit).then(|| entries[limit - 1].version);
    entries.truncate(limit);
    Ok(AuditLog {
        entries,
        next_before,
    })
}

/// The audit log of every change, newest first.
#[utoipa::path(
    get,
    path = "/api/flags/audit",
    tag = "flags",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of the log", body = AuditLog),
        (status = 400, description = "`invalid_query`", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:read`", body = ApiErrorBody),
        (status = 422, description = "`invalid_limit`", body = ApiErrorBody),
    )
)]
pub(super) async fn audit_log(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<AuditLog>> {
    session.require(&READ)?;
    Ok(Json(audit_page(&state, None, query).await?))
}

/// The audit log of one flag, newest first.
#[utoipa::path(
    get,
    path = "/api/flags/{key}/audit",
    tag = "flags",
    params(FlagKey, AuditQuery),
    responses(
        (status = 200, description = "A page of the log", body = AuditLog),
        (status = 400, description = "`invalid_query`", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:read`", body = ApiErrorBody),
        (status = 422, description = "`invalid_limit`", body = ApiErrorBody),
    )
)]
pub(super) async fn flag_audit(
    State(state): State<AppState>,
    session: Session,
    Path(FlagKey { key }): Path<FlagKey>,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<AuditLog>> {
    session.require(&READ)?;
    Ok(Json(audit_page(&state, Some(&key), query).await?))
}
