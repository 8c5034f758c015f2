//! Approvals: in an environment that requires it, a change is proposed by one user and
//! applied when another approves it (or dropped when another rejects it).
//!
//! Invariants: the author never approves their own change (`self_approval`); an approval
//! is decided once (`already_decided`), and an approved change is applied in the same
//! transaction that decides it, only if the flag did not change since it was proposed
//! (`stale_approval`).

use axum::extract::State;
use meridian_shared::api::ApiErrorBody;
use meridian_shared::flags::admin::{
    Approval, ApprovalList, ApprovalStatus, ChangeOutcome, ChangeStatus,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::environments::{apply_environment, EnvUpdate, Origin};
use super::ApprovalId;
use crate::auth::Session;
use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::flags::access::{READ, WRITE};
use crate::flags::change::Actor;
use crate::flags::{flag_not_found, store};
use crate::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ApprovalQuery {
    /// `pending`, `approved` or `rejected`; all when absent.
    status: Option<String>,
}

/// Changes waiting for (or decided by) a second user.
#[utoipa::path(
    get,
    path = "/api/flags/approvals",
    tag = "flags",
    params(ApprovalQuery),
    responses(
        (status = 200, description = "Approvals, newest first", body = ApprovalList),
        (status = 400, description = "`invalid_query`", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:read`", body = ApiErrorBody),
    )
)]
pub(super) async fn list_approvals(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<ApprovalQuery>,
) -> ApiResult<Json<ApprovalList>> {
    session.require(&READ)?;
    let approvals = store::approvals(&state.db.pool, query.status.as_deref()).await?;
    Ok(Json(ApprovalList { approvals }))
}

fn already_decided() -> ApiError {
    ApiError::conflict("already_decided", "this change was decided already")
}

async fn decide(
    state: &AppState,
    session: &Session,
    id: &str,
    approve: bool,
) -> ApiResult<ChangeOutcome> {
    let user = session.require(&WRITE)?.clone();
    let mut conn = state.db.pool.acquire().await?;
    let (approval, base) = store::pending_approval(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("there is no approval {id:?}")))?;
    drop(conn);
    if approval.status != ApprovalStatus::Pending {
        return Err(already_decided());
    }
    if approval.requested_by == user.id {
        return Err(ApiError::forbidden(
            "self_approval",
            "a change needs the approval of another user than its author",
        ));
    }
    let now = state.clock.now_ms();
    if !approve {
        let mut conn = state.db.pool.acquire().await?;
        if !store::decide_approval(&mut conn, id, "rejected", &user.username, now).await? {
            return Err(already_decided());
        }
        let flag = store::flag(&mut conn, &approval.flag_key)
            .await?
            .ok_or_else(|| flag_not_found(&approval.flag_key))?;
        return Ok(ChangeOutcome {
            status: ChangeStatus::PendingApproval,
            flag,
            version: state.flags.snapshot().version,
            approval: Some(Approval {
                status: ApprovalStatus::Rejected,
                decided_by: Some(user.username),
                decided_at_ms: Some(now),
                ..approval
            }),
            schedule: None,
        });
    }
    let (flag, version) = apply_environment(
        state,
        Actor::new(Some(&approval.requested_by), &approval.requested_name),
        &approval.flag_key,
        &approval.environment,
        EnvUpdate::Replace(approval.proposed.clone()),
        "update_environment",
        Origin::Approved {
            approval_id: id,
            approver: &user.username,
            base_updated_ms: base,
        },
    )
    .await?;
    Ok(ChangeOutcome {
        status: ChangeStatus::Applied,
        flag,
        version,
        approval: Some(Approval {
            status: ApprovalStatus::Approved,
            decided_by: Some(user.username),
            decided_at_ms: Some(now),
            ..approval
        }),
        schedule: None,
    })
}

/// Approve a proposed change (by another user than its author): it is applied now.
#[utoipa::path(
    post,
    path = "/api/flags/approvals/{id}/approve",
    tag = "flags",
    params(ApprovalId),
    responses(
        (status = 200, description = "Applied", body = ChangeOutcome),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:write` (editor or admin); `self_approval`: the author cannot approve", body = ApiErrorBody),
        (status = 404, description = "`not_found`: no such approval", body = ApiErrorBody),
        (status = 409, description = "`already_decided` or `stale_approval`", body = ApiErrorBody),
    )
)]
pub(super) async fn approve(
    State(state): State<AppState>,
    session: Session,
    Path(ApprovalId { id }): Path<ApprovalId>,
) -> ApiResult<Json<ChangeOutcome>> {
    Ok(Json(decide(&state, &session, &id, true).await?))
}

/// Reject a proposed change.
#[utoipa::path(
    post,
    path = "/api/flags/approvals/{id}/reject",
    tag = "flags",
    params(ApprovalId),
    responses(
        (status = 200, description = "Rejected", body = ChangeOutcome),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:write` (editor or admin); `self_approval`: the author cannot reject", body = ApiErrorBody),
        (status = 404, description = "`not_found`: no such approval", body = ApiErrorBody),
        (status = 409, description = "`already_decided`", body = ApiErrorBody),
    )
)]
pub(super) async fn reject(
    State(state): State<AppState>,
    session: Session,
    Path(ApprovalId { id }): Path<ApprovalId>,
) -> ApiResult<Json<ChangeOutcome>> {
    Ok(Json(decide(&state, &session, &id, false).await?))
}
