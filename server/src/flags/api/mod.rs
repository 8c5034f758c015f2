//! The admin routes of `/api/flags`, one file per resource. Every change goes through
//! [`super::change::AuditedChange`].

pub mod approvals;
pub mod audit;
pub mod environments;
pub mod flags;
pub mod keys;
pub mod schedules;
pub mod segments;

use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

/// `{key}` of `/api/flags/{key}/...`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct FlagKey {
    /// The flag's key.
    pub key: String,
}

/// `{key}/environments/{environment}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct FlagEnvironment {
    /// The flag's key.
    pub key: String,
    /// The environment's name.
    pub environment: String,
}

/// `{name}` of `/api/flags/environments/{name}/...`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EnvironmentName {
    /// The environment's name (`production`, `development`).
    pub name: String,
}

/// `{id}` of `/api/flags/approvals/{id}/...`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ApprovalId {
    /// The approval's id.
    pub id: String,
}

/// `{key}` of `/api/flags/segments/{key}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SegmentKey {
    /// The segment's key.
    pub key: String,
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(flags::list_flags, flags::create_flag))
        .routes(routes!(
            flags::get_flag,
            flags::replace_flag,
            flags::delete_flag
        ))
        .routes(routes!(flags::preview))
        .routes(routes!(environments::change_environment))
        .routes(routes!(environments::kill))
        .routes(routes!(environments::list_environments))
        .routes(routes!(environments::set_environment))
        .routes(routes!(audit::flag_audit))
        .routes(routes!(audit::audit_log))
        .routes(routes!(approvals::list_approvals))
        .routes(routes!(approvals::approve))
        .routes(routes!(approvals::reject))
        .routes(routes!(schedules::list_schedules))
        .routes(routes!(segments::list_segments))
        .routes(routes!(segments::put_segment, segments::delete_segment))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::revoke_key))
}
