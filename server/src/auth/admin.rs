//! The admin area's API: every account with its role and sessions, role changes, and
//! the log of every change (`/api/admin/users`).
//!
//! Invariants:
//! - Only an account holding [`MANAGE_ROLES`] sees or changes roles.
//! - Every change is logged (who, when, before, after) in the transaction that makes it.
//! - There is always an admin: demoting the last one is refused (409 `last_admin`),
//!   counted under a lock so that two admins demoting each other cannot both succeed.
//! - A change takes effect on the account's next request on every instance (the role
//!   is read with the session), and its realtime connections are closed with
//!   `ACCESS_CHANGED` everywhere, so that they reconnect with what the new role allows.

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use meridian_shared::api::{AdminUser, AdminUserList, ApiErrorBody, RoleChange};
use meridian_shared::realtime::close_code;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access::MANAGE_ROLES;
use super::store::{self, RoleChangeError, RoleChangeRow};
use super::{Auth, Session};
use crate::error::{ApiError, ApiResult, Json, Path};

/// How many role changes `GET /api/admin/users` shows.
const AUDIT_SHOWN: i64 = 200;

pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Auth: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(set_role))
}

impl From<RoleChangeError> for ApiError {
    fn from(err: RoleChangeError) -> ApiError {
        match err {
            RoleChangeError::NoSuchUser(_) => ApiError::not_found(err.to_string()),
            RoleChangeError::LastAdmin(_) => ApiError::conflict("last_admin", err.to_string()),
            RoleChangeError::Db(err) => err.into(),
        }
    }
}

/// Every account with its role, live sessions and last activity; what each role may do;
/// the latest role changes.
#[utoipa::path(
    get,
    path = "/api/admin/users",
    tag = "admin",
    responses(
        (status = 200, body = AdminUserList),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `admin:roles`", body = ApiErrorBody),
    )
)]
async fn list_users(State(state): State<Auth>, session: Session) -> ApiResult<Json<AdminUserList>> {
    session.require(&MANAGE_ROLES)?;
    Ok(Json(AdminUserList {
        users: store::users_with_roles(&state.db.pool).await?,
        permissions: state
            .platform
            .declared_permissions()
            .iter()
            .map(|p| p.info())
            .collect(),
        audit: store::role_changes(&state.db.pool, AUDIT_SHOWN).await?,
    }))
}

/// Grant or revoke a role. Effective on the account's next request on every instance;
/// its open realtime connections are closed with 4003 (`access_changed`) and reconnect.
#[utoipa::path(
    put,
    path = "/api/admin/users/{user_id}/role",
    tag = "admin",
    params(("user_id" = String, Path, description = "The account's id (`user.id` of `/api/auth/me`)")),
    request_body = RoleChange,
    responses(
        (status = 200, description = "The account as it now is", body = AdminUser),
        (status = 400, description = "`invalid_json`: the body is not JSON", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `admin:roles`", body = ApiErrorBody),
        (status = 404, description = "`not_found`: no such account", body = ApiErrorBody),
        (status = 409, description = "`last_admin`: it would leave no admin", body = ApiErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ApiErrorBody),
        (status = 422, description = "`invalid_body`: not a role", body = ApiErrorBody),
    )
)]
async fn set_role(
    State(state): State<Auth>,
    session: Session,
    Path(user_id): Path<String>,
    Json(change): Json<RoleChange>,
) -> ApiResult<Json<AdminUser>> {
    let admin = session.require(&MANAGE_ROLES)?;
    let before = store::set_role(
        &state.db.pool,
        state.db.backend,
        RoleChangeRow {
            id: &state.ids.next_id()?,
            at_ms: state.clock.now_ms(),
            user_id: &user_id,
            actor_id: Some(&admin.id),
            actor_name: &admin.username,
            before: None,
            after: change.role,
        },
    )
    .await?;
    if before != change.role {
        tracing::info!(%user_id, %before, after = %change.role, by = %admin.id, "role changed");
        close_connections(&state, &user_id).await?;
    }
    store::users_with_roles(&state.db.pool)
        .await?
        .into_iter()
        .find(|u| u.id == user_id)
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "the account is gone"))
}

/// Closes every realtime connection of the account, on every instance.
async fn close_connections(state: &Auth, user_id: &str) -> ApiResult<()> {
    state
        .hub
        .close_user(user_id, close_code::ACCESS_CHANGED, "your role changed")
        .await;
    Ok(())
}

/// Why `meridian admin grant` failed.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("there is no account named {0:?}")]
    NoSuchAccount(String),
    #[error(transparent)]
    Refused(#[from] RoleChangeError),
    #[error("cannot mint an id for the role log: {0}")]
    Id(#[from] crate::ids::IdError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The operator's way in (`meridian admin grant`): sets the role of the account named
/// `username` directly in the database, logged as made from the command line. Works
/// whether or not a server runs; the last admin still cannot be demoted.
pub async fn grant_from_command_line(
    db: &crate::Db,
    ids: &crate::ids::Ids,
    now_ms: i64,
    username: &str,
    role: meridian_shared::api::Role,
) -> Result<meridian_shared::api::Role, GrantError> {
    let key = super::password::username_key(username);
    let user_id = store::user_id_by_username_key(&db.pool, &key)
        .await?
        .ok_or_else(|| GrantError::NoSuchAccount(username.to_owned()))?;
    let before = store::set_role(
        &db.pool,
        db.backend,
        RoleChangeRow {
            id: &ids.next_id()?,
            at_ms: now_ms,
            user_id: &user_id,
            actor_id: None,
            actor_name: "command line",
            before: None,
            after: role,
        },
    )
    .await?;
    Ok(before)
}
