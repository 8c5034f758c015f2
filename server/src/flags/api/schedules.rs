//! Scheduled changes: an environment change that applies itself at its time. Every
//! instance looks for due schedules each second; each runs once (its row is marked in
//! the change's transaction).

use std::time::Duration;

use axum::extract::State;
use meridian_shared::api::ApiErrorBody;
use meridian_shared::flags::admin::ScheduleList;

use super::environments::{apply_environment, EnvUpdate, Origin};
use crate::auth::Session;
use crate::error::{ApiResult, Json};
use crate::flags::access::READ;
use crate::flags::change::Actor;
use crate::flags::store;
use crate::AppState;

/// Scheduled changes, latest first.
#[utoipa::path(
    get,
    path = "/api/flags/schedules",
    tag = "flags",
    responses(
        (status = 200, description = "Schedules", body = ScheduleList),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:read`", body = ApiErrorBody),
    )
)]
pub(super) async fn list_schedules(
    State(state): State<AppState>,
    session: Session,
) -> ApiResult<Json<ScheduleList>> {
    session.require(&READ)?;
    Ok(Json(ScheduleList {
        schedules: store::schedules(&state.db.pool).await?,
    }))
}

/// Applies the scheduled changes that are due (every instance tries; each runs once).
/// Returns how many ran.
pub async fn run_due_schedules(state: &AppState) -> Result<usize, sqlx::Error> {
    let due = store::due_schedules(&state.db.pool, state.clock.now_ms()).await?;
    let mut ran = 0;
    for (schedule, requested_by) in due {
        let applied = apply_environment(
            state,
            Actor::new(Some(&requested_by), &schedule.requested_name),
            &schedule.flag_key,
            &schedule.environment,
            EnvUpdate::Replace(schedule.proposed.clone()),
            "scheduled_update",
            Origin::Scheduled {
                schedule_id: &schedule.id,
            },
        )
        .await;
        match applied {
            Ok(_) => ran += 1,
            Err(err) if err.code == "schedule_done" => {}
            Err(err) => {
                tracing::warn!(id = %schedule.id, error = %err.message, "a scheduled flag change failed");
                let mut conn = state.db.pool.acquire().await?;
                store::finish_schedule(&mut conn, &schedule.id, "failed").await?;
            }
        }
    }
    Ok(ran)
}

pub(crate) async fn run_schedules_loop(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        if let Err(err) = run_due_schedules(&state).await {
            tracing::warn!(%err, "scheduled flag changes failed");
        }
    }
}
