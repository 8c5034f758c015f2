//! The delivery keys of an environment (admins only): create one (its secret is shown in
//! this answer only), list them, revoke one. Creating and revoking are audited changes:
//! they take a version, so every instance's snapshot learns of a revocation and ends the
//! streams that use the key.

use axum::extract::State;
use axum::http::StatusCode;
use meridian_shared::api::ApiErrorBody;
use meridian_shared::flags::admin::{KeyInfo, KeyList, NewKey, NewKeyRequest};
use serde::Deserialize;
use utoipa::IntoParams;

use super::EnvironmentName;
use crate::auth::Session;
use crate::error::{ApiError, ApiResult, Json, Path};
use crate::flags::access::MANAGE_KEYS;
use crate::flags::change::{Actor, AuditedChange};
use crate::flags::store::{self, NewAudit};
use crate::flags::{environment_settings, keys, new_id, to_json};
use crate::AppState;

/// `{name}/keys/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EnvironmentKey {
    /// The environment's name.
    pub name: String,
    /// The key's id.
    pub id: String,
}

/// Create a delivery key: `server` (reads the whole configuration stream, for SDKs
/// that evaluate locally) or `client` (evaluated answers only). The secret `key` is in
/// this answer only; send it as `Authorization: Bearer KEY`.
#[utoipa::path(
    post,
    path = "/api/flags/environments/{name}/keys",
    tag = "flags",
    params(EnvironmentName),
    request_body = NewKeyRequest,
    responses(
        (status = 201, description = "Created; the secret is shown this once", body = NewKey),
        (status = 400, description = "`invalid_json`", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:keys` (admin)", body = ApiErrorBody),
        (status = 404, description = "`unknown_environment`", body = ApiErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ApiErrorBody),
        (status = 422, description = "`invalid_body`: `kind` is not `server` or `client`", body = ApiErrorBody),
        (status = 503, description = "`unavailable`: no id can be issued right now", body = ApiErrorBody),
    )
)]
pub(super) async fn create_key(
    State(state): State<AppState>,
    session: Session,
    Path(EnvironmentName { name }): Path<EnvironmentName>,
    Json(request): Json<NewKeyRequest>,
) -> ApiResult<(StatusCode, Json<NewKey>)> {
    let user = session.require(&MANAGE_KEYS)?;
    environment_settings(&state, &name).await?;
    let id = new_id(&state)?;
    let secret = keys::generate(request.kind, &*state.entropy);
    let mut change = AuditedChange::begin(&state, Actor::user(user)).await?;
    let info = KeyInfo {
        id,
        kind: request.kind,
        environment: name.clone(),
        prefix: keys::shown_prefix(&secret),
        created_at_ms: change.now_ms(),
        created_by: user.username.clone(),
        revoked_at_ms: None,
    };
    store::insert_key(change.tx(), &info, &keys::hash(&secret)).await?;
    change
        .audit(
            NewAudit::new("key_create")
                .environment(&name)
                .change(None, Some(to_json(&info))),
        )
        .await?;
    change.commit_and_publish().await?;
    Ok((
        StatusCode::CREATED,
        Json(NewKey {
            id: info.id,
            key: secret,
            kind: info.kind,
            environment: name,
        }),
    ))
}

/// The delivery keys of an environment, revoked ones included (never their secrets).
#[utoipa::path(
    get,
    path = "/api/flags/environments/{name}/keys",
    tag = "flags",
    params(EnvironmentName),
    responses(
        (status = 200, description = "The keys, oldest first", body = KeyList),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:keys` (admin)", body = ApiErrorBody),
        (status = 404, description = "`unknown_environment`", body = ApiErrorBody),
    )
)]
pub(super) async fn list_keys(
    State(state): State<AppState>,
    session: Session,
    Path(EnvironmentName { name }): Path<EnvironmentName>,
) -> ApiResult<Json<KeyList>> {
    session.require(&MANAGE_KEYS)?;
    environment_settings(&state, &name).await?;
    Ok(Json(KeyList {
        keys: store::keys(&state.db.pool, &name).await?,
    }))
}

/// Revoke a key: refused from now on, on every instance; streams that use it end. A key
/// revoked already stays so (204).
#[utoipa::path(
    delete,
    path = "/api/flags/environments/{name}/keys/{id}",
    tag = "flags",
    params(EnvironmentKey),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:keys` (admin)", body = ApiErrorBody),
        (status = 404, description = "`key_not_found` (in this environment)", body = ApiErrorBody),
    )
)]
pub(super) async fn revoke_key(
    State(state): State<AppState>,
    session: Session,
    Path(EnvironmentKey { name, id }): Path<EnvironmentKey>,
) -> ApiResult<StatusCode> {
    let user = session.require(&MANAGE_KEYS)?;
    let mut change = AuditedChange::begin(&state, Actor::user(user)).await?;
    let before = store::key(change.tx(), &name, &id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "key_not_found",
            format!("the environment {name:?} has no key {id:?}"),
        )
    })?;
    if before.revoked_at_ms.is_some() {
        // Nothing changes: the change is dropped (rolled back) unused.
        return Ok(StatusCode::NO_CONTENT);
    }
    let now = change.now_ms();
    store::revoke_key(change.tx(), &id, now).await?;
    let after = KeyInfo {
        revoked_at_ms: Some(now),
        ..before.clone()
    };
    change
        .audit(
            NewAudit::new("key_revoke")
                .environment(&name)
                .change(Some(to_json(&before)), Some(to_json(&after))),
        )
        .await?;
    change.commit_and_publish().await?;
    tracing::warn!(environment = %name, key = %id, "delivery key revoked");
    Ok(StatusCode::NO_CONTENT)
}
