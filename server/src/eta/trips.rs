//! Trips: a vehicle heading to a destination, its positions posted en route. Each
//! position (and each refresh of the weights) gets a fresh ETA along the route being
//! driven, and a better route replaces it when one saves enough time. The handlers
//! push an updated [`TripView`] to the owner's realtime topic when it changed enough.
//!
//! Trips live in the memory of the instance that created them (a restart ends them).

use std::collections::HashMap;
use std::sync::Mutex;

use meridian_shared::eta::graph::{LatLon, NodeId};
use meridian_shared::eta::wire::TripView;

use super::engine::{EtaEngine, Live, RouteError};

/// A new route replaces the driven one when it is at least this much quicker.
const REROUTE_GAIN: f64 = 0.05;
/// A position farther than this from the route's nodes is off it.
const OFF_ROUTE_M: f64 = 60.0;
/// Within this of the destination node, the trip has arrived.
const ARRIVED_M: f64 = 30.0;
/// An update is pushed when the ETA moved by at least this share, or these seconds.
const PUSH_SHARE: f64 = 0.05;
const PUSH_S: f64 = 10.0;
const MAX_TRIPS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct Trip {
    pub id: String,
    /// The owner's realtime topic (`session:…` or `user:…`): only it may see the trip.
    pub owner_topic: String,
    pub to: NodeId,
    /// The route being driven, from the last position on.
    pub nodes: Vec<NodeId>,
    pub eta_ms: u64,
    pub reroutes: u32,
    pub arrived: bool,
    pub updated_at_ms: i64,
    /// The ETA last pushed to the owner.
    pub pushed_eta_ms: u64,
    /// Counts pushes (the realtime op id).
    pub pushes: u64,
}

/// Why a trip request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TripError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("no trip {0}")]
    NotFound(String),
    #[error("too many active trips")]
    Full,
}

#[derive(Default)]
pub struct Trips {
    trips: Mutex<HashMap<String, Trip>>,
}

impl Trips {
    pub fn start(
        &self,
        eta: &EtaEngine,
        id: String,
        owner_topic: String,
        from: LatLon,
        to: LatLon,
        now_ms: i64,
    ) -> Result<TripView, TripError> {
        let (s, t) = (eta.snap("from", from)?, eta.snap("to", to)?);
        let answer = eta.route_nodes(&eta.live(), s, t)?;
        let trip = Trip {
            id: id.clone(),
            owner_topic,
            to: t,
            eta_ms: answer.route.cost as u64,
            pushed_eta_ms: answer.route.cost as u64,
            nodes: answer.route.nodes,
            reroutes: 0,
            arrived: s == t,
            updated_at_ms: now_ms,
            pushes: 0,
        };
        let view = view(eta, &trip);
        let mut trips = self.trips.lock().expect("trips lock");
        if trips.len() >= MAX_TRIPS {
            trips.retain(|_, t| !t.arrived);
            if trips.len() >= MAX_TRIPS {
                return Err(TripError::Full);
            }
        }
        trips.insert(id, trip);
        Ok(view)
    }

    /// The trip `id` if `owner_topic` owns it (another owner gets `NotFound`).
    pub fn get(&self, eta: &EtaEngine, id: &str, owner_topic: &str) -> Result<TripView, TripError> {
        let trips = self.trips.lock().expect("trips lock");
        trips
            .get(id)
            .filter(|t| t.owner_topic == owner_topic)
            .map(|t| view(eta, t))
            .ok_or_else(|| TripError::NotFound(id.to_owned()))
    }

    /// The vehicle is at `at`: the route from there on, and a better one if any.
    pub fn position(
        &self,
        eta: &EtaEngine,
        id: &str,
        owner_topic: &str,
        at: LatLon,
        now_ms: i64,
    ) -> Result<TripView, TripError> {
        let live = eta.live();
        let mut trips = self.trips.lock().expect("trips lock");
        let trip = trips
            .get_mut(id)
            .filter(|t| t.owner_topic == owner_topic)
            .ok_or_else(|| TripError::NotFound(id.to_owned()))?;
        // Where on the route the vehicle is: the route node nearest to it.
        let graph = &eta.net.graph;
        let nearest = trip
            .nodes
            .iter()
            .enumerate()
            .map(|(i, &v)| (i, graph.coord(v).distance_m(at)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        match nearest {
            Some((i, d)) if d <= OFF_ROUTE_M => {
                trip.nodes.drain(..i);
            }
            _ => {
                let here = eta.snap("position", at)?;
                let answer = eta.route_nodes(&live, here, trip.to)?;
                trip.nodes = answer.route.nodes;
                trip.reroutes += 1;
            }
        }
        trip.arrived = graph.coord(trip.to).distance_m(at) <= ARRIVED_M;
        reconsider(eta, &live, trip);
        trip.updated_at_ms = now_ms;
        Ok(view(eta, trip))
    }

    /// After new weights: every active trip's ETA again (and a better route if any);
    /// answers the trips whose ETA moved enough to push, marked as pushed.
    pub fn refreshed(&self, eta: &EtaEngine, now_ms: i64) -> Vec<(String, u64, TripView)> {
        let live = eta.live();
        let mut out = Vec::new();
        let mut trips = self.trips.lock().expect("trips lock");
        for trip in trips.values_mut().filter(|t| !t.arrived) {
            let before = trip.eta_ms;
            reconsider(eta, &live, trip);
            let moved = (trip.eta_ms as f64 - trip.pushed_eta_ms as f64).abs();
            if trip.eta_ms != before
                && (moved >= PUSH_S * 1000.0 || moved >= PUSH_SHARE * trip.pushed_eta_ms as f64)
            {
                trip.updated_at_ms = now_ms;
                trip.pushed_eta_ms = trip.eta_ms;
                trip.pushes += 1;
                out.push((trip.owner_topic.clone(), trip.pushes, view(eta, trip)));
            }
        }
        out
    }
}

/// The ETA of the route being driven under `live`, or a better route.
fn reconsider(eta: &EtaEngine, live: &Live, trip: &mut Trip) {
    let Some(&here) = trip.nodes.first() else {
        return;
    };
    let current = eta.path_cost(live, &trip.nodes);
    match eta.route_nodes(live, here, trip.to) {
        Ok(best) => {
            let best_cost = best.route.cost as u64;
            let better =
                current.is_none_or(|c| (best_cost as f64) < c as f64 * (1.0 - REROUTE_GAIN));
            if better && best.route.nodes != trip.nodes {
                trip.nodes = best.route.nodes;
                trip.reroutes += 1;
                trip.eta_ms = best_cost;
            } else {
                trip.eta_ms = current.unwrap_or(best_cost);
            }
        }
        Err(_) => trip.eta_ms = current.unwrap_or(trip.eta_ms),
    }
}

fn view(eta: &EtaEngine, trip: &Trip) -> TripView {
    TripView {
        trip_id: trip.id.clone(),
        eta_s: if trip.arrived {
            0.0
        } else {
            trip.eta_ms as f64 / 1000.0
        },
        distance_m: if trip.arrived {
            0.0
        } else {
            eta.net.path_length_m(&trip.nodes).round()
        },
        path: super::path_points(&eta.net, &trip.nodes),
        reroutes: trip.reroutes,
        arrived: trip.arrived,
        updated_at_ms: trip.updated_at_ms,
    }
}
