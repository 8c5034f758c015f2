//! How far a configuration version has reached the stream's subscribers: counted live on
//! this instance ([`super::Live::delivery`]) and, on PostgreSQL, reported by every
//! instance to the others through the `flag_delivery` table. The kill switch waits on
//! it; the page shows it.
//!
//! Invariant: an instance whose report is older than a few seconds is taken for stopped
//! and left out of the count.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use meridian_shared::api::{ApiErrorBody, DatabaseBackend};
use meridian_shared::flags::admin::Delivery;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::store;
use crate::auth::Session;
use crate::error::{ApiResult, Json, Query};
use crate::flags::access::READ;
use crate::AppState;

/// How often an instance reports its subscribers' deliveries, and how old a report may
/// be before its instance is taken for stopped.
const REPORT_EVERY: Duration = Duration::from_millis(100);
const REPORT_REFRESH_MS: i64 = 2_000;
const REPORT_FRESH_MS: i64 = 6_000;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(delivery))
}

/// PostgreSQL (several instances): reports this instance's deliveries when they change
/// (and every 2 s), so that any instance can tell when a change reached every client.
pub(super) async fn report_deliveries(state: AppState) {
    let mut every = tokio::time::interval(REPORT_EVERY);
    let mut last: BTreeMap<String, (Delivery, i64)> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let snapshot = state.flags.snapshot();
        let now = state.clock.now_ms();
        for env in snapshot.environments.keys() {
            let delivery = state.flags.delivery(env, snapshot.version);
            let stale = last
                .get(env)
                .is_none_or(|(d, at)| *d != delivery || now - at >= REPORT_REFRESH_MS);
            if !stale {
                continue;
            }
            match store::report_delivery(&state.db.pool, &state.instance_id, &delivery, now).await {
                Ok(()) => {
                    last.insert(env.clone(), (delivery, now));
                }
                Err(err) => tracing::warn!(%err, "could not report flag deliveries"),
            }
        }
    }
}

/// How far `version` has reached the subscribers of `environment` on every instance
/// (this one counted live; the others by their reports of the last few seconds).
pub async fn cluster_delivery(
    state: &AppState,
    environment: &str,
    version: u64,
) -> Result<Delivery, sqlx::Error> {
    let mut delivery = state.flags.delivery(environment, version);
    if state.db.backend == DatabaseBackend::Postgres {
        let since = state.clock.now_ms() - REPORT_FRESH_MS;
        let others =
            store::other_deliveries(&state.db.pool, &state.instance_id, environment, since).await?;
        for (reported, subscribers, delivered) in others {
            delivery.subscribers += subscribers;
            if reported >= version {
                delivery.delivered += delivered;
            }
        }
        delivery.complete = delivery.delivered == delivery.subscribers;
    }
    Ok(delivery)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveryQuery {
    environment: String,
    version: u64,
}

/// How many stream subscribers of an environment (on this instance) have a version.
#[utoipa::path(
    get,
    path = "/api/flags/delivery",
    tag = "flags",
    params(DeliveryQuery),
    responses(
        (status = 200, description = "The delivery", body = Delivery),
        (status = 400, description = "`invalid_query`", body = ApiErrorBody),
        (status = 401, description = "`sign_in_required`: sign in first", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `flags:read`", body = ApiErrorBody),
    )
)]
async fn delivery(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<DeliveryQuery>,
) -> ApiResult<Json<Delivery>> {
    session.require(&READ)?;
    Ok(Json(
        state.flags.delivery(&query.environment, query.version),
    ))
}
