//! One environment of a flag: a change (applied, proposed for approval, or scheduled),
//! the kill switch; and the environments themselves (whether each requires approval).
//!
//! Every write to one environment of a flag goes through [`apply_environment`], whether
//! it comes from a user, an approval or a schedule.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use meridian_shared::api::ApiErrorBody;
use meridian_shared::flags::admin::{
    Approval, ApprovalStatus, ChangeOutcome, ChangeStatus, EnvironmentChange, EnvironmentList,
    EnvironmentSettings, KillOutcome, KillRequest, Schedule,
};
use meridian_shared::flags::{Flag, FlagEnvironmentConfig};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{EnvironmentName, FlagEnvironment, FlagKey};
use crate::auth::Session;
use crate::error::{ApiError, ApiResult, Json, Path};
use crate::flags::access::{READ, WRITE};
use crate::flags::change::{Actor, AuditedChange};
use crate::flags::store::{self, NewAudit};
use crate::flags::{
    cluster_delivery, environment_settings, flag_not_found, invalid, new_id, segments_of, to_json,
};
use crate::AppState;

/// How long the kill switch waits for its delivery to be complete before answering.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// What a change does to one environment's config.
pub(crate) enum EnvUpdate {
    Replace(FlagEnvironmentConfig),
    /// Sets the kill switch, keeping the rest as it is when the change commits.
    Kill(bool),
}

/// Where a write to one environment comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Origin<'a> {
    /// Its author, now.
    Direct,
    /// A proposal another user approved: decided in the change's transaction, and
    /// refused if the flag changed since it was proposed.
    Approved {
        approval_id: &'a str,
        approver: &'a str,
        base_updated_ms: i64,
    },
    /// A schedule that came due: marked applied in the change's transaction, so that it
    /// runs once whichever instance gets to it.
    Scheduled { schedule_id: &'a str },
}

/// Applies a new config of one environment (validated) as one audited change. Returns
/// the flag and the version.
pub(crate) async fn apply_environment(
    state: &AppState,
    actor: Actor,
    key: &str,
    environment: &str,
    update: EnvUpdate,
    action: &str,
    origin: Origin<'_>,
) -> ApiResult<(Flag, u64)> {
    let mut change = AuditedChange::begin(state, actor).await?;
    let now = change.now_ms();
    let mut approved_by = None;
    match origin {
        Origin::Direct => {}
        Origin::Approved {
            approval_id,
            approver,
            ..
        } => {
            let decided =
                store::decide_approval(change.tx(), approval_id, "approved", approver, now).await?;
            if !decided {
                return Err(ApiError::conflict(
                    "already_decided",
                    "this change was decided already",
                ));
            }
            approved_by = Some(approver);
        }
        Origin::Scheduled { schedule_id } => {
            if !store::finish_schedule(change.tx(), schedule_id, "applied").await? {
                return Err(ApiError::conflict(
                    "schedule_done",
                    "this schedule already ran",
                ));
            }
        }
    }
    let before = store::flag(change.tx(), key)
        .await?
        .ok_or_else(|| flag_not_found(key))?;
    if let Origin::Approved {
        base_updated_ms, ..
    } = origin
    {
        if base_updated_ms != before.updated_at_ms {
            return Err(ApiError::conflict(
                "stale_approval",
                "the flag changed after this change was proposed; propose it again",
            ));
        }
    }
    // Read inside the transaction that holds the version lock: a kill never undoes a
    // change committed since its request was read.
    let config = match update {
        EnvUpdate::Replace(config) => config,
        EnvUpdate::Kill(killed) => FlagEnvironmentConfig {
            killed,
            ..before
                .environments
                .get(environment)
                .cloned()
                .ok_or_else(|| flag_not_found(key))?
        },
    };
    let mut flag = before.clone();
    flag.environments.insert(environment.to_owned(), config);
    flag.updated_at_ms = now;
    flag.validate(&segments_of(change.tx()).await?)
        .map_err(invalid)?;
    store::update_flag(change.tx(), &flag).await?;
    change
        .audit(
            NewAudit::new(action)
                .flag(key)
                .environment(environment)
                .change(
                    before.environments.get(environment).map(to_json),
                    flag.environments.get(environment).map(to_json),
                )
                .approved_by(approved_by),
        )
        .await?;
    let version = change.commit_and_publish().await?;
    Ok((flag, version))
}

/// Change one environment of a flag: applied now (200), or — when the environment
/// requires approval — proposed for a second user's approval (202), or scheduled for
/// `at_ms` (202).
#[utoipa::path(
    put,
    path = "/api/flags/{key}/environments/{environment}",
    tag = "flags",
    params(FlagEnvironment),
    request_body = EnvironmentChange,
    responses(
        (status = 200, description = "Applied", body = ChangeOutcome),
        (status = 202, description = "Waiting for approval or for its time", body = ChangeOutcome),
        (status = 400, description = "`invalid_flag` (names the rule) or `invalid_json`", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:write` (editor or admin)", body = ApiErrorBody),
        (status = 404, description = "`flag_not_found` or `unknown_environment`", body = ApiErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ApiErrorBody),
        (status = 422, description = "`invalid_body`: the JSON does not have the expected shape", body = ApiErrorBody),
        (status = 503, description = "`unavailable`: no id can be issued for the approval or schedule right now", body = ApiErrorBody),
    )
)]
pub(super) async fn change_environment(
    State(state): State<AppState>,
    session: Session,
    Path(FlagEnvironment { key, environment }): Path<FlagEnvironment>,
    Json(change): Json<EnvironmentChange>,
) -> ApiResult<Response> {
    let user = session.require(&WRITE)?.clone();
    let settings = environment_settings(&state, &environment).await?;
    let mut conn = state.db.pool.acquire().await?;
    let current = store::flag(&mut conn, &key)
        .await?
        .ok_or_else(|| flag_not_found(&key))?;
    // Refuse an invalid config now, not when it is approved or due.
    let mut candidate = current.clone();
    candidate
        .environments
        .insert(environment.clone(), change.config.clone());
    candidate
        .validate(&segments_of(&mut conn).await?)
        .map_err(invalid)?;
    drop(conn);
    let version = state.flags.snapshot().version;
    if let Some(at_ms) = change.at_ms.filter(|&t| t > state.clock.now_ms()) {
        let schedule = Schedule {
            id: new_id(&state)?,
            flag_key: key.clone(),
            environment: environment.clone(),
            proposed: change.config,
            run_at_ms: at_ms,
            requested_name: user.username.clone(),
            status: "pending".into(),
        };
        store::insert_schedule(&state.db.pool, &schedule, &user.id).await?;
        let outcome = ChangeOutcome {
            status: ChangeStatus::Scheduled,
            flag: current,
            version,
            approval: None,
            schedule: Some(schedule),
        };
        return Ok((StatusCode::ACCEPTED, Json(outcome)).into_response());
    }
    if settings.require_approval {
        let approval = Approval {
            id: new_id(&state)?,
            flag_key: key.clone(),
            environment: environment.clone(),
            proposed: change.config,
            requested_by: user.id.clone(),
            requested_name: user.username.clone(),
            requested_at_ms: state.clock.now_ms(),
            status: ApprovalStatus::Pending,
            decided_by: None,
            decided_at_ms: None,
        };
        store::insert_approval(
            &state.db.pool,
            store::NewApproval {
                id: &approval.id,
                flag_key: &key,
                environment: &environment,
                proposed: &approval.proposed,
                base_updated_ms: current.updated_at_ms,
                requested_by: &user.id,
                requested_name: &user.username,
                at_ms: approval.requested_at_ms,
            },
        )
        .await?;
        let outcome = ChangeOutcome {
            status: ChangeStatus::PendingApproval,
            flag: current,
            version,
            approval: Some(approval),
            schedule: None,
        };
        return Ok((StatusCode::ACCEPTED, Json(outcome)).into_response());
    }
    let (flag, version) = apply_environment(
        &state,
        Actor::user(&user),
        &key,
        &environment,
        EnvUpdate::Replace(change.config),
        "update_environment",
        Origin::Direct,
    )
    .await?;
    let outcome = ChangeOutcome {
        status: ChangeStatus::Applied,
        flag,
        version,
        approval: None,
        schedule: None,
    };
    Ok(Json(outcome).into_response())
}

/// The kill switch: the flag serves its off variation in this environment, whatever its
/// rules say, at once and without approval. Answers when every subscriber of the
/// environment's stream, on every instance, has the change (or after 2 s, saying how
/// many have it). `"killed": false` lifts it.
#[utoipa::path(
    post,
    path = "/api/flags/{key}/kill",
    tag = "flags",
    params(FlagKey),
    request_body = KillRequest,
    responses(
        (status = 200, description = "Killed (or revived); with its delivery", body = KillOutcome),
        (status = 400, description = "`invalid_json`", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:write` (editor or admin)", body = ApiErrorBody),
        (status = 404, description = "`flag_not_found` or `unknown_environment`", body = ApiErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ApiErrorBody),
        (status = 422, description = "`invalid_body`: the JSON does not have the expected shape", body = ApiErrorBody),
    )
)]
pub(super) async fn kill(
    State(state): State<AppState>,
    session: Session,
    Path(FlagKey { key }): Path<FlagKey>,
    Json(request): Json<KillRequest>,
) -> ApiResult<Json<KillOutcome>> {
    let user = session.require(&WRITE)?.clone();
    environment_settings(&state, &request.environment).await?;
    let action = if request.killed { "kill" } else { "unkill" };
    let (flag, version) = apply_environment(
        &state,
        Actor::user(&user),
        &key,
        &request.environment,
        EnvUpdate::Kill(request.killed),
        action,
        Origin::Direct,
    )
    .await?;
    let deadline = tokio::time::Instant::now() + KILL_WAIT;
    let delivery = loop {
        let delivery = cluster_delivery(&state, &request.environment, version).await?;
        if delivery.complete || tokio::time::Instant::now() >= deadline {
            break delivery;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tracing::warn!(flag = %key, environment = %request.environment, killed = request.killed, delivered = delivery.delivered, subscribers = delivery.subscribers, "kill switch");
    Ok(Json(KillOutcome {
        flag,
        version,
        delivery,
    }))
}

/// The environments and whether each requires approval.
#[utoipa::path(
    get,
    path = "/api/flags/environments",
    tag = "flags",
    responses(
        (status = 200, description = "Environments", body = EnvironmentList),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:read`", body = ApiErrorBody),
    )
)]
pub(super) async fn list_environments(
    State(state): State<AppState>,
    session: Session,
) -> ApiResult<Json<EnvironmentList>> {
    session.require(&READ)?;
    Ok(Json(EnvironmentList {
        environments: store::environments(&state.db.pool).await?,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EnvironmentUpdate {
    pub require_approval: bool,
}

/// Turn approval on or off for an environment (an audited change, like any other).
#[utoipa::path(
    put,
    path = "/api/flags/environments/{name}",
    tag = "flags",
    params(EnvironmentName),
    request_body = EnvironmentUpdate,
    responses(
        (status = 200, description = "The environment", body = EnvironmentSettings),
        (status = 400, description = "`invalid_json`", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:write` (editor or admin)", body = ApiErrorBody),
        (status = 404, description = "`unknown_environment`", body = ApiErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ApiErrorBody),
        (status = 422, description = "`invalid_body`: the JSON does not have the expected shape", body = ApiErrorBody),
    )
)]
pub(super) async fn set_environment(
    State(state): State<AppState>,
    session: Session,
    Path(EnvironmentName { name }): Path<EnvironmentName>,
    Json(update): Json<EnvironmentUpdate>,
) -> ApiResult<Json<EnvironmentSettings>> {
    let user = session.require(&WRITE)?;
    let before = environment_settings(&state, &name).await?;
    let after = EnvironmentSettings {
        require_approval: update.require_approval,
        ..before.clone()
    };
    let mut change = AuditedChange::begin(&state, Actor::user(user)).await?;
    store::set_require_approval(change.tx(), &name, update.require_approval).await?;
    change
        .audit(
            NewAudit::new("environment_update")
                .environment(&name)
                .change(Some(to_json(&before)), Some(to_json(&after))),
        )
        .await?;
    change.commit_and_publish().await?;
    Ok(Json(after))
}
