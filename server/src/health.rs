//! `GET /api/health`: the server's version, database backend, uptime and realtime load.

use std::time::Instant;

use axum::extract::{FromRef, State};
use meridian_shared::api::{ApiErrorBody, HealthResponse};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult, Json};
use crate::realtime::hub::Hub;
use crate::Db;

/// What the health check reads of the instance.
#[derive(Clone)]
pub struct Instance {
    pub db: Db,
    pub hub: Hub,
    pub started_at: Instant,
    pub instance_id: std::sync::Arc<str>,
}

pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Instance: FromRef<S>,
{
    crate::openapi::with_platform_errors(OpenApiRouter::new().routes(routes!(health)))
}

/// Health of this server instance and its database.
#[utoipa::path(
    get,
    path = "/api/health",
    tag = "meta",
    responses(
        (status = 200, body = HealthResponse),
        (status = 503, description = "`unavailable`: the database does not answer", body = ApiErrorBody),
    )
)]
async fn health(State(state): State<Instance>) -> ApiResult<Json<HealthResponse>> {
    if let Err(err) = state.db.ping().await {
        tracing::warn!(%err, "health check: database unavailable");
        return Err(ApiError::unavailable("the database does not answer"));
    }
    Ok(Json(HealthResponse {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        database: state.db.backend,
        uptime_seconds: state.started_at.elapsed().as_secs(),
        instance_id: state.instance_id.to_string(),
        realtime_connections: state.hub.connection_count() as u64,
    }))
}
