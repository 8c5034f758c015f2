//! The unique ID generator: time-sortable 64-bit IDs for thousands of nodes, and UUIDv7.
//!
//! ```text
//! generator  SnowflakeGenerator, UuidV7Generator, the IdClock they read (hot path: no I/O)
//! lease      node id leases: LeaseStore, LeaseKeeper, the in-memory store
//! store      the lease table in the database (both backends)
//! metrics    counters of issues, refusals, waits, renewals, losses
//! sim        the deterministic simulation (1,000 nodes, seeded faults)
//! ```
//!
//! The layout and the wire types live in `meridian_shared::ids`. Other systems take IDs
//! in-process from `state.ids` ([`Ids::next_snowflake`]); browsers and other clients use
//! `POST /api/ids`.
//!
//! Invariants (each tested in `generator.rs`, `lease.rs`, the simulation, or
//! `tests/tests/ids.rs`):
//! - No two snowflakes are equal, whatever the clocks, pauses, restarts and outages: a
//!   node id's holders mint from disjoint ranges of time (`floor_ms`, `high_water_ms`],
//!   and within one holder IDs strictly increase.
//! - Issuing never waits for the network. A node that cannot renew stops issuing before
//!   its lease can expire, and a lease passes to another node only after it expired plus
//!   a margin for clock skew.
//! - Errors are refusals with a reason and a metric, never a duplicate.

pub mod generator;
pub mod lease;
pub mod metrics;
pub mod sim;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use meridian_shared::api::ApiErrorBody;
use meridian_shared::ids::{
    format_uuid, IdFormat, IdLeases, IdMetrics, IdParts, IdsRequest, IdsResponse, LeaseInfo,
    MAX_IDS_PER_REQUEST, SEQUENCES_PER_MS,
};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::generator::GeneratorConfig;
pub use self::generator::{IdClock, IdError, SnowflakeGenerator, SystemIdClock, UuidV7Generator};
use self::lease::{LeaseConfig, LeaseKeeper, LeaseStore};
use self::metrics::IdCounters;
use self::store::SqlLeaseStore;
use crate::error::{ApiError, ApiResult, Json, Path};
use crate::openapi::with_platform_errors;
use crate::AppState;

/// This instance's ID generators. Cheap to clone; every clone is the same generator.
#[derive(Clone)]
pub struct Ids {
    inner: Arc<IdsInner>,
}

struct IdsInner {
    snowflakes: Arc<SnowflakeGenerator>,
    uuids: UuidV7Generator,
    counters: Arc<IdCounters>,
    clock: Arc<dyn IdClock>,
    holder: String,
    lease: LeaseConfig,
}

impl Ids {
    /// Generators on the machine's clocks with the default timings, holding no lease until
    /// [`start_keeper`](Self::start_keeper). `holder` names this instance in the lease
    /// table.
    ///
    /// IDs take their time from the machine, not from `AppState::clock`: a test's frozen
    /// clock would stop the sequence after 1,024 IDs. Tests of time go through
    /// [`with_clock`](Self::with_clock) and the engine's fake clocks instead.
    pub fn new(holder: &str) -> Ids {
        Ids::with_clock(
            holder,
            Arc::new(SystemIdClock::new()),
            GeneratorConfig::default(),
            LeaseConfig::default(),
        )
    }

    pub fn with_clock(
        holder: &str,
        clock: Arc<dyn IdClock>,
        generator: GeneratorConfig,
        lease: LeaseConfig,
    ) -> Ids {
        let counters = Arc::new(IdCounters::default());
        Ids {
            inner: Arc::new(IdsInner {
                snowflakes: Arc::new(SnowflakeGenerator::new(
                    clock.clone(),
                    generator,
                    counters.clone(),
                )),
                uuids: UuidV7Generator::new(clock.clone(), generator, counters.clone()),
                counters,
                clock,
                holder: holder.to_owned(),
                lease,
            }),
        }
    }

    /// A new 64-bit ID. Waits at most a few milliseconds (a used-up sequence, a small
    /// clock regression); refuses when this instance holds no valid lease.
    pub fn next_snowflake(&self) -> Result<u64, IdError> {
        self.inner.snowflakes.next_snowflake()
    }

    /// A new 64-bit ID as the decimal string it is stored and sent as: the public id of
    /// a new row in any system.
    pub fn next_id(&self) -> Result<String, IdError> {
        self.next_snowflake().map(|id| id.to_string())
    }

    /// `count` new 64-bit IDs, ascending (1,024 per millisecond).
    pub fn next_snowflakes(&self, count: usize) -> Result<Vec<u64>, IdError> {
        self.inner.snowflakes.next_snowflakes(count)
    }

    /// A new UUIDv7 (needs no lease).
    pub fn next_uuid_v7(&self) -> Result<u128, IdError> {
        self.inner.uuids.next_uuid_v7()
    }

    /// The node id this instance holds, if any.
    pub fn node_id(&self) -> Option<u16> {
        self.inner.snowflakes.lease().map(|lease| lease.node_id)
    }

    /// Whether a snowflake could be issued right now.
    pub fn is_issuing(&self) -> bool {
        self.inner.snowflakes.is_issuing()
    }

    pub fn metrics(&self) -> IdMetrics {
        self.inner.counters.snapshot()
    }

    /// This instance's name in the lease table.
    pub fn holder(&self) -> &str {
        &self.inner.holder
    }

    pub fn clock(&self) -> &Arc<dyn IdClock> {
        &self.inner.clock
    }

    pub fn generator(&self) -> &Arc<SnowflakeGenerator> {
        &self.inner.snowflakes
    }

    /// Leases a node id from `pool` (one attempt, so that a server normally starts able
    /// to issue), then keeps it in the background: renews, re-acquires after a loss, and
    /// releases it when `shutdown` is cancelled.
    pub async fn start_keeper(
        &self,
        pool: sqlx::AnyPool,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) {
        let config = self.inner.lease;
        let store = SqlLeaseStore::new(pool, config.renew_every / 2);
        let mut keeper = LeaseKeeper::new(
            store,
            self.inner.snowflakes.clone(),
            self.inner.clock.clone(),
            config,
            self.inner.holder.clone(),
            rand::random(),
        );
        let first_delay = keeper.tick().await;
        tasks.spawn(keep_lease(keeper, first_delay, shutdown));
    }
}

async fn keep_lease<S: LeaseStore>(
    mut keeper: LeaseKeeper<S>,
    first_delay: Duration,
    shutdown: CancellationToken,
) {
    let mut delay = first_delay;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            next = keeper.tick() => delay = next,
        }
    }
    keeper.release().await;
}

pub fn routes() -> OpenApiRouter<AppState> {
    with_platform_errors(
        OpenApiRouter::new()
            .routes(routes!(generate_ids))
            .routes(routes!(id_leases))
            .routes(routes!(describe_id)),
    )
}

impl From<IdError> for ApiError {
    fn from(err: IdError) -> ApiError {
        let (code, retry_after) = match err {
            IdError::NoLease | IdError::LeaseExpired { .. } | IdError::HighWaterReached { .. } => {
                ("no_lease", 1)
            }
            IdError::ClockMovedBackwards { by_ms } | IdError::BehindHighWater { by_ms, .. } => {
                ("clock_behind", (by_ms as u64).div_ceil(1000).max(1))
            }
            IdError::TimeOutOfRange => ("clock_out_of_range", 60),
            IdError::WaitedTooLong { .. } => ("unavailable", 1),
        };
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, err.to_string())
        }
    }
}

/// The body as received: `format` as text, so that an unknown one gets its own code.
#[derive(Deserialize)]
struct IdsBody {
    count: i64,
    #[serde(default)]
    format: Option<String>,
}

/// Mint IDs.
#[utoipa::path(
    post,
    path = "/api/ids",
    tag = "ids",
    request_body = IdsRequest,
    responses(
        (status = 200, description = "The IDs, ascending, as strings", body = IdsResponse),
        (status = 422, description = "`invalid_count` (not 1 to 10000), `invalid_format`, `invalid_body`", body = ApiErrorBody),
        (status = 503, description = "`no_lease` (this instance holds no valid node id lease), `clock_behind`, `clock_out_of_range` or `unavailable` (waited too long for the clock); with `Retry-After`", body = ApiErrorBody),
    )
)]
async fn generate_ids(
    State(state): State<AppState>,
    Json(body): Json<IdsBody>,
) -> ApiResult<Json<IdsResponse>> {
    let format = match body.format.as_deref() {
        None | Some("snowflake") => IdFormat::Snowflake,
        Some("uuidv7") => IdFormat::Uuidv7,
        Some(other) => {
            return Err(ApiError::unprocessable(
                "invalid_format",
                format!("unknown format {other:?}: use \"snowflake\" or \"uuidv7\""),
            ))
        }
    };
    if !(1..=MAX_IDS_PER_REQUEST as i64).contains(&body.count) {
        return Err(ApiError::unprocessable(
            "invalid_count",
            format!("count must be between 1 and {MAX_IDS_PER_REQUEST}"),
        ));
    }
    let count = body.count as usize;
    let ids = state.ids.clone();
    let mint = move || -> Result<Vec<String>, IdError> {
        match format {
            IdFormat::Snowflake => Ok(ids
                .next_snowflakes(count)?
                .into_iter()
                .map(|id| id.to_string())
                .collect()),
            IdFormat::Uuidv7 => (0..count)
                .map(|_| ids.next_uuid_v7().map(format_uuid))
                .collect(),
        }
    };
    // More than a millisecond's worth waits for the clock: off the async workers.
    let ids = if count > SEQUENCES_PER_MS as usize {
        tokio::task::spawn_blocking(mint)
            .await
            .map_err(ApiError::internal)??
    } else {
        mint()?
    };
    Ok(Json(IdsResponse { ids }))
}

/// What an ID says: its time (RFC 3339), node and sequence, or a UUIDv7's counter,
/// version and variant; and its bits by field.
#[utoipa::path(
    get,
    path = "/api/ids/{id}",
    tag = "ids",
    params(("id" = String, Path, description = "A snowflake in decimal, or a UUIDv7")),
    responses(
        (status = 200, body = IdParts),
        (status = 400, description = "`invalid_id`", body = ApiErrorBody),
    )
)]
async fn describe_id(Path(id): Path<String>) -> ApiResult<Json<IdParts>> {
    IdParts::parse(&id)
        .map(Json)
        .map_err(|err| ApiError::bad_request("invalid_id", err.to_string()))
}

/// Every node id lease, this instance's node id, and its generator's counters.
#[utoipa::path(
    get,
    path = "/api/ids/leases",
    tag = "ids",
    responses(
        (status = 200, body = IdLeases),
        (status = 503, description = "`unavailable`: the database did not answer", body = ApiErrorBody),
    )
)]
async fn id_leases(State(state): State<AppState>) -> ApiResult<Json<IdLeases>> {
    let ids = &state.ids;
    let rows = SqlLeaseStore::new(state.db.pool.clone(), Duration::from_secs(5))
        .list()
        .await
        .map_err(|err| {
            tracing::warn!(%err, "cannot list the node id leases");
            ApiError::unavailable("the database did not answer; retry shortly")
        })?;
    let now_ms = ids.clock().wall_ms();
    let leases = rows
        .into_iter()
        .map(|row| LeaseInfo {
            live: row.expires_at_ms > now_ms,
            mine: row.holder == ids.holder() && ids.node_id() == Some(row.node_id),
            node_id: row.node_id,
            holder: row.holder,
            fencing_token: row.fencing_token,
            granted_at_ms: row.granted_at_ms,
            renewed_at_ms: row.renewed_at_ms,
            expires_at_ms: row.expires_at_ms,
            high_water_ms: row.high_water_ms,
        })
        .collect();
    Ok(Json(IdLeases {
        now_ms,
        holder: ids.holder().to_owned(),
        node_id: ids.node_id(),
        issuing: ids.is_issuing(),
        lease_ttl_ms: ids.inner.lease.ttl.as_millis() as u64,
        leases,
        metrics: ids.metrics(),
    }))
}
