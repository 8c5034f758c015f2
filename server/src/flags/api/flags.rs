//! Flags themselves: list, create, read, replace, delete, and the preview of one
//! evaluation with its reason.

use axum::extract::State;
use axum::http::StatusCode;
use meridian_shared::api::ApiErrorBody;
use meridian_shared::flags::admin::{
    EnvironmentSettings, FlagDefinition, FlagList, Preview, PreviewRequest,
};
use meridian_shared::flags::{Flag, FlagEnvironmentConfig, Serve};

use super::FlagKey;
use crate::auth::Session;
use crate::error::{ApiError, ApiResult, Json, Path};
use crate::flags::access::{READ, WRITE};
use crate::flags::change::{Actor, AuditedChange};
use crate::flags::store::{self, NewAudit};
use crate::flags::{flag_not_found, invalid, segments_of, to_json, RESERVED};
use crate::AppState;

/// The flag a definition makes, with every environment present (those left out start
/// off, serving the first variation).
pub(crate) fn into_flag(
    definition: FlagDefinition,
    environments: &[String],
    created: i64,
    updated: i64,
) -> Flag {
    let mut configs = definition.environments;
    if let Some(first) = definition.variations.first() {
        for env in environments {
            configs
                .entry(env.clone())
                .or_insert_with(|| FlagEnvironmentConfig {
                    enabled: false,
                    killed: false,
                    off_variation: first.name.clone(),
                    default_serve: Serve::Variation(first.name.clone()),
                    rules: Vec::new(),
                });
        }
    }
    Flag {
        key: definition.key,
        name: definition.name,
        description: definition.description,
        kind: definition.kind,
        variations: definition.variations,
        environments: configs,
        tags: definition.tags,
        created_at_ms: created,
        updated_at_ms: updated,
    }
}

/// 400 `unknown_environment` if the flag names an environment that is not `known`.
fn check_environments(known: &[EnvironmentSettings], flag: &Flag) -> ApiResult<()> {
    for env in flag.environments.keys() {
        if !known.iter().any(|k| &k.name == env) {
            return Err(ApiError::bad_request(
                "unknown_environment",
                format!("environments.{env}: there is no environment {env:?}"),
            ));
        }
    }
    Ok(())
}

fn names(environments: &[EnvironmentSettings]) -> Vec<String> {
    environments.iter().map(|e| e.name.clone()).collect()
}

/// Every flag with its configuration in every environment.
#[utoipa::path(
    get,
    path = "/api/flags",
    tag = "flags",
    responses(
        (status = 200, description = "Every flag", body = FlagList),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:read`", body = ApiErrorBody),
    )
)]
pub(super) async fn list_flags(
    State(state): State<AppState>,
    session: Session,
) -> ApiResult<Json<FlagList>> {
    session.require(&READ)?;
    let stored = store::load_all(&state.db.pool).await?;
    Ok(Json(FlagList {
        flags: stored.flags,
        version: stored.version,
    }))
}

/// Create a flag.
#[utoipa::path(
    post,
    path = "/api/flags",
    tag = "flags",
    request_body = FlagDefinition,
    responses(
        (status = 201, description = "Created", body = Flag),
        (status = 400, description = "`invalid_flag` (the message names the rule), `unknown_environment` or `invalid_json`", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:write` (editor or admin)", body = ApiErrorBody),
        (status = 409, description = "`flag_exists`", body = ApiErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ApiErrorBody),
        (status = 422, description = "`invalid_body`: the JSON does not have the expected shape", body = ApiErrorBody),
    )
)]
pub(super) async fn create_flag(
    State(state): State<AppState>,
    session: Session,
    Json(definition): Json<FlagDefinition>,
) -> ApiResult<(StatusCode, Json<Flag>)> {
    let user = session.require(&WRITE)?;
    if RESERVED.contains(&definition.key.as_str()) {
        return Err(ApiError::bad_request(
            "invalid_flag",
            format!("key: {:?} is reserved", definition.key),
        ));
    }
    // Read before the change begins: a change holds the write lock and reads only
    // through its own transaction.
    let environments = store::environments(&state.db.pool).await?;
    let mut change = AuditedChange::begin(&state, Actor::user(user)).await?;
    let now = change.now_ms();
    let flag = into_flag(definition, &names(&environments), now, now);
    check_environments(&environments, &flag)?;
    flag.validate(&segments_of(change.tx()).await?)
        .map_err(invalid)?;
    if store::flag(change.tx(), &flag.key).await?.is_some() {
        return Err(ApiError::conflict(
            "flag_exists",
            format!("a flag {:?} exists", flag.key),
        ));
    }
    store::insert_flag(change.tx(), &flag).await?;
    change
        .audit(
            NewAudit::new("create")
                .flag(&flag.key)
                .change(None, Some(to_json(&flag))),
        )
        .await?;
    change.commit_and_publish().await?;
    Ok((StatusCode::CREATED, Json(flag)))
}

/// One flag.
#[utoipa::path(
    get,
    path = "/api/flags/{key}",
    tag = "flags",
    params(FlagKey),
    responses(
        (status = 200, description = "The flag", body = Flag),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:read`", body = ApiErrorBody),
        (status = 404, description = "`flag_not_found`", body = ApiErrorBody),
    )
)]
pub(super) async fn get_flag(
    State(state): State<AppState>,
    session: Session,
    Path(FlagKey { key }): Path<FlagKey>,
) -> ApiResult<Json<Flag>> {
    session.require(&READ)?;
    let mut conn = state.db.pool.acquire().await?;
    store::flag(&mut conn, &key)
        .await?
        .map(Json)
        .ok_or_else(|| flag_not_found(&key))
}

/// Replace a flag's definition (name, variations, every environment). Refused with 409
/// `approval_required` if it changes an environment that requires approval: change that
/// environment through its own route.
#[utoipa::path(
    put,
    path = "/api/flags/{key}",
    tag = "flags",
    params(FlagKey),
    request_body = FlagDefinition,
    responses(
        (status = 200, description = "The flag as it now is", body = Flag),
        (status = 400, description = "`invalid_flag`, `key_mismatch`, `unknown_environment` or `invalid_json`", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:write` (editor or admin)", body = ApiErrorBody),
        (status = 404, description = "`flag_not_found`", body = ApiErrorBody),
        (status = 409, description = "`approval_required`", body = ApiErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ApiErrorBody),
        (status = 422, description = "`invalid_body`: the JSON does not have the expected shape", body = ApiErrorBody),
    )
)]
pub(super) async fn replace_flag(
    State(state): State<AppState>,
    session: Session,
    Path(FlagKey { key }): Path<FlagKey>,
    Json(definition): Json<FlagDefinition>,
) -> ApiResult<Json<Flag>> {
    let user = session.require(&WRITE)?;
    if definition.key != key {
        return Err(ApiError::bad_request(
            "key_mismatch",
            "a flag's key cannot change",
        ));
    }
    let environments = store::environments(&state.db.pool).await?;
    let mut change = AuditedChange::begin(&state, Actor::user(user)).await?;
    let before = store::flag(change.tx(), &key)
        .await?
        .ok_or_else(|| flag_not_found(&key))?;
    let flag = into_flag(
        definition,
        &names(&environments),
        before.created_at_ms,
        change.now_ms(),
    );
    check_environments(&environments, &flag)?;
    flag.validate(&segments_of(change.tx()).await?)
        .map_err(invalid)?;
    for env in environments.iter().filter(|e| e.require_approval) {
        let changed = flag.config(&env.name) != before.config(&env.name);
        if changed {
            return Err(ApiError::conflict(
                "approval_required",
                format!(
                    "changing {} needs approval: use PUT /api/flags/{key}/environments/{}",
                    env.name, env.name
                ),
            ));
        }
    }
    store::update_flag(change.tx(), &flag).await?;
    change
        .audit(
            NewAudit::new("update")
                .flag(&key)
                .change(Some(to_json(&before)), Some(to_json(&flag))),
        )
        .await?;
    change.commit_and_publish().await?;
    Ok(Json(flag))
}

/// Delete a flag (SDKs then answer `FLAG_NOT_FOUND` and serve their defaults).
#[utoipa::path(
    delete,
    path = "/api/flags/{key}",
    tag = "flags",
    params(FlagKey),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:write` (editor or admin)", body = ApiErrorBody),
        (status = 404, description = "`flag_not_found`", body = ApiErrorBody),
    )
)]
pub(super) async fn delete_flag(
    State(state): State<AppState>,
    session: Session,
    Path(FlagKey { key }): Path<FlagKey>,
) -> ApiResult<StatusCode> {
    let user = session.require(&WRITE)?;
    let mut change = AuditedChange::begin(&state, Actor::user(user)).await?;
    let before = store::flag(change.tx(), &key)
        .await?
        .ok_or_else(|| flag_not_found(&key))?;
    store::delete_flag(change.tx(), &key).await?;
    change
        .audit(
            NewAudit::new("delete")
                .flag(&key)
                .change(Some(to_json(&before)), None),
        )
        .await?;
    change.commit_and_publish().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which variant a context gets in an environment, and why (the rule, the bucket).
#[utoipa::path(
    post,
    path = "/api/flags/{key}/preview",
    tag = "flags",
    params(FlagKey),
    request_body = PreviewRequest,
    responses(
        (status = 200, description = "The evaluation", body = Preview),
        (status = 400, description = "`invalid_json`", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:read`", body = ApiErrorBody),
        (status = 404, description = "`flag_not_found`", body = ApiErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ApiErrorBody),
        (status = 422, description = "`invalid_body`: the JSON does not have the expected shape", body = ApiErrorBody),
    )
)]
pub(super) async fn preview(
    State(state): State<AppState>,
    session: Session,
    Path(FlagKey { key }): Path<FlagKey>,
    Json(request): Json<PreviewRequest>,
) -> ApiResult<Json<Preview>> {
    session.require(&READ)?;
    let snapshot = state.flags.snapshot();
    let evaluation = snapshot
        .evaluate(&request.environment, &key, &request.context)
        .ok_or_else(|| flag_not_found(&key))?;
    Ok(Json(Preview {
        key,
        environment: request.environment,
        value: evaluation.value.clone(),
        variant: evaluation.variant.to_owned(),
        reason: evaluation.reason,
        error_code: evaluation.error_code,
        rule_index: evaluation.rule_index,
        bucket: evaluation.bucket,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::flags::{FlagKind, Variation};

    fn definition() -> FlagDefinition {
        serde_json::from_value(serde_json::json!({
            "key": "checkout",
            "name": "Checkout",
            "kind": "boolean",
            "variations": [{"name": "on", "value": true}, {"name": "off", "value": false}],
            "environments": {
                "production": {"enabled": true, "off_variation": "off", "default_serve": {"variation": "on"}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn environments_left_out_start_off_serving_the_first_variation() {
        let names = ["development".to_owned(), "production".to_owned()];
        let flag = into_flag(definition(), &names, 10, 20);
        assert_eq!((flag.created_at_ms, flag.updated_at_ms), (10, 20));
        assert_eq!(flag.kind, FlagKind::Boolean);
        assert!(flag.environments["production"].enabled, "given: kept");
        let dev = &flag.environments["development"];
        assert!(!dev.enabled && !dev.killed && dev.rules.is_empty());
        assert_eq!(dev.off_variation, "on");
        assert_eq!(dev.default_serve, Serve::Variation("on".into()));
    }

    #[test]
    fn a_flag_without_variations_gets_no_environment_filled_in() {
        let mut definition = definition();
        definition.variations = Vec::<Variation>::new();
        definition.environments.clear();
        let flag = into_flag(definition, &["production".to_owned()], 1, 1);
        assert!(flag.environments.is_empty());
    }

    #[test]
    fn route_names_are_reserved() {
        for name in ["approvals", "audit", "environments", "segments", "stream"] {
            assert!(RESERVED.contains(&name), "{name}");
        }
        assert!(!RESERVED.contains(&"checkout"));
    }
}
