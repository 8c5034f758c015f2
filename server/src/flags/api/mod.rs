//! The admin routes of `/api/flags`, one file per resource. Every change goes through
//! [`super::change::AuditedChange`].

pub mod approvals;
pub mod audit;
pub mod environments;
pub mod flags;
pub mod schedules;
pub mod segments;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

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
}
