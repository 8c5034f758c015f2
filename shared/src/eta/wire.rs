//! Wire types of `/api/eta/*`: routes, probes, incidents, trips, the map and its live
//! traffic. Coordinates are `[lat, lon]` pairs in degrees; times are seconds (`eta_s`)
//! or Unix milliseconds (`*_ms`).

use serde::{Deserialize, Serialize};

/// The largest probe batch one request may carry.
pub const MAX_PROBES_PER_BATCH: usize = 10_000;
/// The longest device id.
pub const MAX_DEVICE_ID_LEN: usize = 64;
/// The realtime event type of a trip's update (on the trip owner's topic).
pub const TRIP_EVENT: &str = "eta_trip";

/// `GET /api/eta/route?from=LAT,LON&to=LAT,LON`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteResponse {
    /// Travel time under the current traffic, seconds.
    pub eta_s: f64,
    pub distance_m: f64,
    /// The route's points, `[lat, lon]`, source first.
    pub path: Vec<[f64; 2]>,
}

/// One GPS ping of a moving device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Probe {
    pub device_id: String,
    pub t_ms: i64,
    pub lat: f64,
    pub lon: f64,
}

/// `POST /api/eta/probes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProbeBatch {
    pub probes: Vec<Probe>,
}

/// What a probe batch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProbesAccepted {
    pub accepted: usize,
    /// Probes placed on a road by map matching.
    pub matched: usize,
    /// Speed observations they gave (one per movement between two matched fixes).
    pub observations: usize,
}

/// `POST /api/eta/incidents`: slow every road within `radius_m` of a point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IncidentRequest {
    pub lat: f64,
    pub lon: f64,
    pub radius_m: f64,
    /// Speeds are multiplied by this, 0 (closed) to 1.
    pub speed_factor: f64,
    pub duration_s: f64,
}

/// An incident in force (it is in the routing weights when this is answered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IncidentCreated {
    pub id: String,
    pub roads_affected: usize,
    pub until_ms: i64,
}

/// `POST /api/eta/trips`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TripRequest {
    /// `[lat, lon]`.
    pub from: [f64; 2],
    pub to: [f64; 2],
}

/// `POST /api/eta/trips/{id}/positions`: where the vehicle is now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TripPosition {
    pub lat: f64,
    pub lon: f64,
    /// When it was there (defaults to the server's clock).
    #[serde(default)]
    pub t_ms: Option<i64>,
}

/// A trip as its owner sees it, and the payload of its realtime event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TripView {
    pub trip_id: String,
    /// Remaining travel time from the last position, seconds.
    pub eta_s: f64,
    /// Remaining distance, metres.
    pub distance_m: f64,
    /// The remaining route, `[lat, lon]`.
    pub path: Vec<[f64; 2]>,
    /// How many times a better route replaced the one driven.
    pub reroutes: u32,
    pub arrived: bool,
    pub updated_at_ms: i64,
}

/// The realtime event of a trip (`type` is [`TRIP_EVENT`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TripEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub trip: TripView,
}

/// `GET /api/eta/map`: the road network, compact, for drawing it and for the browser's
/// own route preview. Coordinates are integers in millionths of a degree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MapResponse {
    /// Where the network came from (an extract's name, or "synthetic ...").
    pub source: String,
    pub synthetic: bool,
    /// `[south, west, north, east]` in degrees.
    pub bounds: [f64; 4],
    /// `[lat_e6, lon_e6]` per node, flattened.
    pub nodes: Vec<i32>,
    /// `[tail, head, free_flow_ms]` per arc, flattened, in the server's arc order.
    pub arcs: Vec<u32>,
    /// The copies of junctions split by turn restrictions: node `nodes.len() / 2 -
    /// turn_copies.len() + i` copies node `turn_copies[i]`. Routes end at a junction or
    /// any of its copies; points snap to the other nodes only.
    pub turn_copies: Vec<u32>,
    /// Turn restrictions in the data that routing applies.
    pub turn_restrictions_applied: usize,
    /// Turn restrictions in the data that routing ignores (through a via way, or naming
    /// roads that are not on the map).
    pub turn_restrictions_ignored: usize,
}

/// `GET /api/eta/traffic`: every arc's current speed as a percentage of free flow (in
/// the map's arc order), and the version of the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrafficResponse {
    pub version: u64,
    pub updated_at_ms: i64,
    pub speed_pct: Vec<u8>,
}
