//! ETA under live traffic (system 10): routes in milliseconds that change as the roads
//! do.
//!
//! ```text
//! osm       the road network from an OpenStreetMap extract (osmpbf)
//! network   the prepared network: largest strongly connected part, hierarchy, indexes
//! traffic   per-arc speed estimates (decaying to free flow) and incidents → weights
//! matching  HMM map matching (Newson & Krumm), online per device and over a trace
//! engine    EtaEngine: the live weights swapped atomically, queries, probes, refresh
//! trips     trips en route: fresh ETAs, re-routing, what to push
//! cluster   traffic and incidents shared with the other instances
//! sim       the simulator: hidden true speeds, vehicles, GPS noise, MAPE
//! mod       the Eta handle, the refresher task and /api/eta/*
//! ```
//!
//! The engine proper (graph, hierarchy, Dijkstra) is `meridian_shared::eta`, which the
//! page also runs in wasm for its instant preview.
//!
//! Invariants:
//! - Queries never wait on traffic: they run on the current snapshot while the
//!   refresher (every `Config::eta_refresh_every`, when something changed) customizes
//!   the next one on a blocking thread.
//! - An incident is in the weights when its POST is answered.
//! - A trip is seen and changed only by its owner (another session gets 404); its
//!   updates go to the owner's realtime topic. Trips live in the memory of the instance
//!   that started them.
//! - Traffic is the same on every instance of one PostgreSQL: probes and incidents any
//!   instance receives reach the others as notices (`cluster`).

pub mod cluster;
pub mod engine;
pub mod matching;
pub mod network;
pub mod osm;
pub mod sim;
pub mod traffic;
pub mod trips;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use meridian_shared::api::ApiErrorBody;
use meridian_shared::eta::graph::{LatLon, NodeId};
use meridian_shared::eta::wire::{
    IncidentCreated, IncidentRequest, MapResponse, ProbeBatch, ProbesAccepted, RouteResponse,
    TrafficResponse, TripEvent, TripPosition, TripRequest, TripView, MAX_DEVICE_ID_LEN,
    MAX_PROBES_PER_BATCH, TRIP_EVENT,
};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::engine::{EtaEngine, RouteError};
use self::network::{MapSource, Network};
use self::trips::{TripError, Trips};
use crate::auth::session::Session;
use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::openapi::with_platform_errors;
use crate::realtime::events::Events;
use crate::AppState;

/// Intersections of the synthetic network used when no map file is configured.
pub const SYNTHETIC_NODES: usize = 4_000;
pub const SYNTHETIC_SEED: u64 = 2026;
/// The longest incident.
const MAX_INCIDENT_S: f64 = 24.0 * 3600.0;
const MAX_INCIDENT_RADIUS_M: f64 = 5_000.0;

/// The system's handle in `AppState`: the engine once prepared, and the trips.
#[derive(Clone, Default)]
pub struct Eta {
    inner: Arc<EtaInner>,
}

#[derive(Default)]
struct EtaInner {
    engine: OnceLock<Arc<EtaEngine>>,
    trips: Trips,
    map_json: OnceLock<String>,
    /// The network's digest, which notices to other instances carry.
    digest: OnceLock<String>,
}

impl Eta {
    /// The engine, or 503 while it is being prepared at start.
    pub fn engine(&self) -> ApiResult<&Arc<EtaEngine>> {
        self.inner.engine.get().ok_or_else(|| ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "eta_starting",
                "the road network is still being prepared; retry shortly",
            )
        })
    }

    pub fn trips(&self) -> &Trips {
        &self.inner.trips
    }
}

/// Networks already prepared in this process, by map file (`None`: synthetic): servers
/// started by one test binary share them.
static NETWORKS: LazyLock<Mutex<HashMap<Option<PathBuf>, Arc<Network>>>> =
    LazyLock::new(Mutex::default);

/// The network for `map` (prepared once per process).
pub fn network_for(map: Option<&std::path::Path>) -> Arc<Network> {
    let key = map.map(|p| p.to_path_buf());
    let mut cache = NETWORKS.lock().expect("network cache");
    if let Some(net) = cache.get(&key) {
        return net.clone();
    }
    let net = match map {
        Some(path) => match Network::from_osm(path) {
            Ok(net) => net,
            Err(err) => {
                tracing::error!(%err, "cannot load the ETA map; using a synthetic network");
                Network::synthetic(SYNTHETIC_NODES, SYNTHETIC_SEED)
            }
        },
        None => Network::synthetic(SYNTHETIC_NODES, SYNTHETIC_SEED),
    };
    tracing::info!(
        source = %net.source.describe(),
        nodes = net.graph.node_count(),
        arcs = net.graph.arc_count(),
        turn_restrictions_applied = net.turn_restrictions_applied,
        turn_restrictions_ignored = net.turn_restrictions_ignored,
        "ETA network prepared"
    );
    let net = Arc::new(net);
    cache.insert(key, net.clone());
    net
}

/// Prepares the network on a blocking thread and then keeps the weights fresh.
pub fn start(state: &AppState) {
    let state = state.clone();
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        let map = state.config.eta_map.clone();
        let now = state.clock.now_ms();
        let prepared = tokio::task::spawn_blocking(move || {
            Arc::new(EtaEngine::new(network_for(map.as_deref()), now))
        });
        let engine = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            engine = prepared => match engine {
                Ok(engine) => engine,
                Err(err) => {
                    tracing::error!(%err, "preparing the ETA network failed");
                    return;
                }
            },
        };
        let digest = cluster::network_digest(&engine);
        let _ = state.eta.inner.digest.set(digest.clone());
        // With other instances, traffic is shared with them (see `cluster`).
        let mut notices = state.hub.remote().is_some().then(|| {
            engine.share_observations();
            state.hub.notices(cluster::SYSTEM)
        });
        let _ = state.eta.inner.engine.set(engine.clone());
        let mut every = tokio::time::interval(state.config.eta_refresh_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = every.tick() => {
                    cluster::send_observations(&state.hub, &engine, &digest);
                    refresh(&state, &engine).await;
                }
                Some(body) = async {
                    match notices.as_mut() {
                        Some(notices) => notices.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    cluster::apply(&engine, &digest, body);
                }
            }
        }
    });
}

/// Customizes new weights if traffic changed, then pushes trips whose ETA moved.
async fn refresh(state: &AppState, engine: &Arc<EtaEngine>) {
    let now = state.clock.now_ms();
    let worker = engine.clone();
    let done = tokio::task::spawn_blocking(move || worker.refresh(now)).await;
    if let Ok(Some(_)) = done {
        push_trip_updates(state, engine).await;
    }
}

async fn push_trip_updates(state: &AppState, engine: &Arc<EtaEngine>) {
    let now = state.clock.now_ms();
    for (topic, push, trip) in state.eta.trips().refreshed(engine, now) {
        let op_id = format!("eta-trip:{}:{push}", trip.trip_id);
        let payload = serde_json::to_value(TripEvent {
            kind: TRIP_EVENT.to_owned(),
            trip,
        })
        .expect("a trip serialises");
        if let Err(err) =
            Events::publish(&state.db, &state.hub, &topic, &op_id, payload, None).await
        {
            tracing::warn!(%err, "cannot push a trip's ETA");
        }
    }
}

/// The points of a node path, `[lat, lon]`, rounded to 1e-6 degrees.
pub fn path_points(net: &Network, nodes: &[NodeId]) -> Vec<[f64; 2]> {
    let round = |x: f64| (x * 1e6).round() / 1e6;
    nodes
        .iter()
        .map(|&v| {
            let c = net.graph.coord(v);
            [round(c.lat), round(c.lon)]
        })
        .collect()
}

pub fn routes() -> OpenApiRouter<AppState> {
    with_platform_errors(
        OpenApiRouter::new()
            .routes(routes!(get_route))
            .routes(routes!(post_probes))
            .routes(routes!(post_incident))
            .routes(routes!(post_trip))
            .routes(routes!(get_trip))
            .routes(routes!(post_position))
            .routes(routes!(get_map))
            .routes(routes!(get_traffic)),
    )
}

impl From<RouteError> for ApiError {
    fn from(err: RouteError) -> ApiError {
        match err {
            RouteError::OffMap { .. } => ApiError::unprocessable("off_map", err.to_string()),
            RouteError::NoRoute => ApiError::unprocessable("no_route", err.to_string()),
        }
    }
}

impl From<TripError> for ApiError {
    fn from(err: TripError) -> ApiError {
        match err {
            TripError::Route(route) => route.into(),
            TripError::NotFound(_) => ApiError::not_found(err.to_string()),
            TripError::Full => ApiError::unavailable(err.to_string()),
        }
    }
}

fn valid_point(lat: f64, lon: f64) -> bool {
    lat.is_finite()
        && lon.is_finite()
        && (-90.0..=90.0).contains(&lat)
        && (-180.0..=180.0).contains(&lon)
}

/// `LAT,LON` in degrees.
pub fn parse_point(name: &str, text: Option<&str>) -> ApiResult<LatLon> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_coordinates",
            format!("`{name}` is LAT,LON in degrees, e.g. 60.17,24.94"),
        )
    };
    let text = text.ok_or_else(invalid)?;
    let (lat, lon) = text.split_once(',').ok_or_else(invalid)?;
    let lat: f64 = lat.trim().parse().map_err(|_| invalid())?;
    let lon: f64 = lon.trim().parse().map_err(|_| invalid())?;
    if !valid_point(lat, lon) {
        return Err(invalid());
    }
    Ok(LatLon::new(lat, lon))
}

fn parse_pair(name: &str, pair: [f64; 2]) -> ApiResult<LatLon> {
    if !valid_point(pair[0], pair[1]) {
        return Err(ApiError::unprocessable(
            "invalid_coordinates",
            format!("`{name}` is [lat, lon] in degrees"),
        ));
    }
    Ok(LatLon::new(pair[0], pair[1]))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RouteParams {
    /// `LAT,LON`
    from: Option<String>,
    /// `LAT,LON`
    to: Option<String>,
}

/// The quickest route under the current traffic.
#[utoipa::path(
    get,
    path = "/api/eta/route",
    tag = "eta",
    params(RouteParams),
    responses(
        (status = 200, description = "The route: travel time, length and points", body = RouteResponse),
        (status = 400, description = "`invalid_coordinates`: `from`/`to` missing or not LAT,LON", body = ApiErrorBody),
        (status = 422, description = "`off_map` (no road within 300 m) or `no_route`", body = ApiErrorBody),
        (status = 503, description = "`eta_starting`: the network is being prepared", body = ApiErrorBody),
    )
)]
async fn get_route(
    State(state): State<AppState>,
    Query(params): Query<RouteParams>,
) -> ApiResult<Json<RouteResponse>> {
    let from = parse_point("from", params.from.as_deref())?;
    let to = parse_point("to", params.to.as_deref())?;
    let engine = state.eta.engine()?;
    let answer = engine.route(from, to)?;
    Ok(Json(RouteResponse {
        eta_s: answer.route.cost as f64 / 1000.0,
        distance_m: answer.distance_m.round(),
        path: path_points(&engine.net, &answer.route.nodes),
    }))
}

/// GPS pings of moving devices: map-matched, they update the roads' speeds.
#[utoipa::path(
    post,
    path = "/api/eta/probes",
    tag = "eta",
    request_body = ProbeBatch,
    responses(
        (status = 200, description = "How many were matched and what they observed", body = ProbesAccepted),
        (status = 422, description = "`invalid_probe` (device id, coordinates) or `too_many_probes`", body = ApiErrorBody),
        (status = 503, description = "`eta_starting`", body = ApiErrorBody),
    )
)]
async fn post_probes(
    State(state): State<AppState>,
    Json(batch): Json<ProbeBatch>,
) -> ApiResult<Json<ProbesAccepted>> {
    if batch.probes.len() > MAX_PROBES_PER_BATCH {
        return Err(ApiError::unprocessable(
            "too_many_probes",
            format!("at most {MAX_PROBES_PER_BATCH} probes a batch"),
        ));
    }
    for (i, p) in batch.probes.iter().enumerate() {
        if p.device_id.is_empty()
            || p.device_id.len() > MAX_DEVICE_ID_LEN
            || !valid_point(p.lat, p.lon)
        {
            return Err(ApiError::unprocessable(
                "invalid_probe",
                format!(
                    "probes[{i}]: device_id is 1 to {MAX_DEVICE_ID_LEN} characters; lat/lon are degrees"
                ),
            ));
        }
    }
    let engine = state.eta.engine()?.clone();
    let now = state.clock.now_ms();
    let report = tokio::task::spawn_blocking(move || engine.ingest(&batch.probes, now))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(ProbesAccepted {
        accepted: report.accepted,
        matched: report.matched,
        observations: report.observations,
    }))
}

/// Slows every road within a radius, for a while (in the weights when answered).
#[utoipa::path(
    post,
    path = "/api/eta/incidents",
    tag = "eta",
    request_body = IncidentRequest,
    responses(
        (status = 201, description = "In force", body = IncidentCreated),
        (status = 422, description = "`invalid_incident` or `off_map` (no road within the radius)", body = ApiErrorBody),
        (status = 503, description = "`eta_starting`", body = ApiErrorBody),
    )
)]
async fn post_incident(
    State(state): State<AppState>,
    Json(body): Json<IncidentRequest>,
) -> ApiResult<Response> {
    let valid = valid_point(body.lat, body.lon)
        && body.radius_m.is_finite()
        && body.radius_m > 0.0
        && body.radius_m <= MAX_INCIDENT_RADIUS_M
        && (0.0..=1.0).contains(&body.speed_factor)
        && body.duration_s.is_finite()
        && body.duration_s > 0.0
        && body.duration_s <= MAX_INCIDENT_S;
    if !valid {
        return Err(ApiError::unprocessable(
            "invalid_incident",
            format!(
                "lat/lon in degrees, 0 < radius_m <= {MAX_INCIDENT_RADIUS_M}, 0 <= speed_factor <= 1, 0 < duration_s <= {MAX_INCIDENT_S}"
            ),
        ));
    }
    let engine = state.eta.engine()?.clone();
    let id = state.ids.next_id()?;
    let now = state.clock.now_ms();
    let until_ms = now + (body.duration_s * 1000.0) as i64;
    let at = LatLon::new(body.lat, body.lon);
    let roads = engine.add_incident(id.clone(), at, body.radius_m, body.speed_factor, until_ms);
    if roads == 0 {
        return Err(ApiError::unprocessable(
            "off_map",
            "no road lies within the incident's radius",
        ));
    }
    if let Some(digest) = state.eta.inner.digest.get() {
        cluster::send_incident(
            &state.hub,
            digest,
            &id,
            at,
            body.radius_m,
            body.speed_factor,
            until_ms,
        );
    }
    let worker = engine.clone();
    tokio::task::spawn_blocking(move || worker.refresh(now))
        .await
        .map_err(ApiError::internal)?;
    push_trip_updates(&state, &engine).await;
    Ok((
        StatusCode::CREATED,
        Json(IncidentCreated {
            id,
            roads_affected: roads,
            until_ms,
        }),
    )
        .into_response())
}

/// The realtime topic of whoever owns this session's trips.
fn owner_topic(session: &Session) -> String {
    match &session.user {
        Some(user) => format!("user:{}", user.id),
        None => format!("session:{}", session.id),
    }
}

/// Starts a trip; its updates go to the owner's realtime topic (`eta_trip` events).
#[utoipa::path(
    post,
    path = "/api/eta/trips",
    tag = "eta",
    request_body = TripRequest,
    responses(
        (status = 201, description = "The trip and its first ETA", body = TripView),
        (status = 422, description = "`invalid_coordinates`, `off_map` or `no_route`", body = ApiErrorBody),
        (status = 503, description = "`eta_starting`", body = ApiErrorBody),
    )
)]
async fn post_trip(
    State(state): State<AppState>,
    session: Session,
    Json(body): Json<TripRequest>,
) -> ApiResult<Response> {
    let from = parse_pair("from", body.from)?;
    let to = parse_pair("to", body.to)?;
    let engine = state.eta.engine()?;
    let id = state.ids.next_id()?;
    let view = state.eta.trips().start(
        engine,
        id,
        owner_topic(&session),
        from,
        to,
        state.clock.now_ms(),
    )?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// A trip of this session (or its account).
#[utoipa::path(
    get,
    path = "/api/eta/trips/{id}",
    tag = "eta",
    params(("id" = String, Path, description = "The trip's id")),
    responses(
        (status = 200, description = "The trip", body = TripView),
        (status = 404, description = "No such trip of this session", body = ApiErrorBody),
        (status = 503, description = "`eta_starting`", body = ApiErrorBody),
    )
)]
async fn get_trip(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<TripView>> {
    let engine = state.eta.engine()?;
    Ok(Json(state.eta.trips().get(
        engine,
        &id,
        &owner_topic(&session),
    )?))
}

/// Where the trip's vehicle is now: a fresh ETA, and a better route if there is one.
#[utoipa::path(
    post,
    path = "/api/eta/trips/{id}/positions",
    tag = "eta",
    params(("id" = String, Path, description = "The trip's id")),
    request_body = TripPosition,
    responses(
        (status = 200, description = "The trip from here", body = TripView),
        (status = 404, description = "No such trip of this session", body = ApiErrorBody),
        (status = 422, description = "`invalid_coordinates`, `off_map` or `no_route`", body = ApiErrorBody),
        (status = 503, description = "`eta_starting`", body = ApiErrorBody),
    )
)]
async fn post_position(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Json(body): Json<TripPosition>,
) -> ApiResult<Json<TripView>> {
    let at = parse_pair("position", [body.lat, body.lon])?;
    let engine = state.eta.engine()?.clone();
    let now = state.clock.now_ms();
    let view = state
        .eta
        .trips()
        .position(&engine, &id, &owner_topic(&session), at, now)?;
    // The position is also a probe of the road the trip is on.
    let probe = meridian_shared::eta::wire::Probe {
        device_id: format!("trip:{id}"),
        t_ms: body.t_ms.unwrap_or(now),
        lat: at.lat,
        lon: at.lon,
    };
    tokio::task::spawn_blocking(move || engine.ingest(&[probe], now))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(view))
}

/// The road network, compact (fetched by the /eta page only).
#[utoipa::path(
    get,
    path = "/api/eta/map",
    tag = "eta",
    responses(
        (status = 200, description = "Nodes and arcs", body = MapResponse),
        (status = 503, description = "`eta_starting`", body = ApiErrorBody),
    )
)]
async fn get_map(State(state): State<AppState>) -> ApiResult<Response> {
    let engine = state.eta.engine()?;
    let json = state.eta.inner.map_json.get_or_init(|| {
        serde_json::to_string(&map_response(&engine.net)).expect("the map serialises")
    });
    Ok((
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (
                axum::http::header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        json.clone(),
    )
        .into_response())
}

pub fn map_response(net: &Network) -> MapResponse {
    let graph = &net.graph;
    let nodes = graph
        .coords()
        .iter()
        .flat_map(|c| [(c.lat * 1e6).round() as i32, (c.lon * 1e6).round() as i32])
        .collect();
    let ff = graph.free_flow_weights();
    let arcs = (0..graph.arc_count())
        .flat_map(|a| [net.tails[a], graph.head(a as u32), ff[a]])
        .collect();
    let (sw, ne) = net.bounds;
    MapResponse {
        source: net.source.describe(),
        synthetic: matches!(net.source, MapSource::Synthetic { .. }),
        bounds: [sw.lat, sw.lon, ne.lat, ne.lon],
        nodes,
        arcs,
        turn_copies: net.turns.copies().to_vec(),
        turn_restrictions_applied: net.turn_restrictions_applied,
        turn_restrictions_ignored: net.turn_restrictions_ignored,
    }
}

/// Every road's current speed as a percentage of free flow.
#[utoipa::path(
    get,
    path = "/api/eta/traffic",
    tag = "eta",
    responses(
        (status = 200, description = "Speeds in the map's arc order", body = TrafficResponse),
        (status = 503, description = "`eta_starting`", body = ApiErrorBody),
    )
)]
async fn get_traffic(State(state): State<AppState>) -> ApiResult<Json<TrafficResponse>> {
    let engine = state.eta.engine()?;
    let live = engine.live();
    Ok(Json(TrafficResponse {
        version: live.seq,
        updated_at_ms: live.at_ms,
        speed_pct: engine.speed_pct(&live),
    }))
}
