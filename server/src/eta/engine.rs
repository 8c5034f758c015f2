//! The live routing engine of one network: the current weights as an immutable
//! [`Live`] snapshot swapped atomically, queries against whichever snapshot is current,
//! probes matched per device, incidents, and [`EtaEngine::refresh`], which customizes
//! a new snapshot off the query path. No HTTP here.
//!
//! Invariants:
//! - A query never waits for a customization: it clones the current `Arc<Live>` and
//!   runs on it; a refresh builds the next one aside and swaps it in.
//! - One refresh at a time (`refreshing`), and a refresh publishes only newer traffic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use meridian_shared::eta::cch::{CchQuery, Metric};
use meridian_shared::eta::graph::{ArcId, LatLon, NodeId, Weight, INFINITY};
use meridian_shared::eta::turns::TurnSplit;
use meridian_shared::eta::wire::Probe;
use meridian_shared::eta::Route;

use super::matching::{Fix, MatchParams, Track};
use super::network::Network;
use super::traffic::{Incident, Traffic};

/// A route endpoint farther than this from every node is off the map.
pub const MAX_SNAP_M: f64 = 300.0;
/// Devices whose last fix is older than this are forgotten when the table is full.
const DEVICE_IDLE_MS: i64 = 600_000;
const MAX_DEVICES: usize = 200_000;
/// Observations kept for other instances between two refreshes; past it the oldest are
/// dropped (and counted): other instances then see less of this one's traffic, never
/// wrong traffic.
const MAX_OUTBOX: usize = 100_000;

/// Why a route cannot be answered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteError {
    #[error("{which} ({lat}, {lon}) is off the map (no road within {MAX_SNAP_M} m)")]
    OffMap {
        which: &'static str,
        lat: f64,
        lon: f64,
    },
    #[error("no road leads from `from` to `to` under the current traffic")]
    NoRoute,
}

/// The weights of one moment and their customized hierarchy.
pub struct Live {
    pub metric: Metric,
    pub weights: Vec<Weight>,
    /// The traffic version these weights include.
    pub traffic_version: u64,
    pub at_ms: i64,
    /// Counts customizations (0: free flow at start).
    pub seq: u64,
}

/// A route with its figures under one snapshot.
#[derive(Debug, Clone)]
pub struct Answer {
    pub route: Route,
    pub arcs: Vec<ArcId>,
    pub distance_m: f64,
    pub live_seq: u64,
}

/// What a probe batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ingested {
    pub accepted: usize,
    pub matched: usize,
    pub observations: usize,
}

/// What a refresh did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refreshed {
    pub seq: u64,
    pub customize_ms: f64,
}

#[derive(Default)]
pub struct Counters {
    pub probes: AtomicU64,
    pub matched: AtomicU64,
    pub customizations: AtomicU64,
    pub last_customize_us: AtomicU64,
    /// Observations sent to other instances (one per arc and tick).
    pub shared_observations: AtomicU64,
    /// Observations other instances sent that this one applied.
    pub remote_observations: AtomicU64,
    /// Observations not shared because the outbox was full.
    pub outbox_dropped: AtomicU64,
}

/// Observations made here for other instances (see `cluster`), once sharing is on.
#[derive(Default)]
struct Outbox {
    enabled: bool,
    observations: Vec<(ArcId, f64, i64)>,
}

pub struct EtaEngine {
    pub net: Arc<Network>,
    live: RwLock<Arc<Live>>,
    traffic: Mutex<Traffic>,
    tracks: Mutex<HashMap<String, Track>>,
    queries: Mutex<Vec<CchQuery>>,
    refreshing: Mutex<()>,
    outbox: Mutex<Outbox>,
    pub params: MatchParams,
    pub counters: Counters,
}

impl EtaEngine {
    /// The engine of `net` at free flow.
    pub fn new(net: Arc<Network>, now_ms: i64) -> EtaEngine {
        let weights = net.graph.free_flow_weights().to_vec();
        let metric = net.cch.customize(&weights);
        EtaEngine {
            traffic: Mutex::new(Traffic::new(net.graph.arc_count())),
            live: RwLock::new(Arc::new(Live {
                metric,
                weights,
                traffic_version: 0,
                at_ms: now_ms,
                seq: 0,
            })),
            tracks: Mutex::default(),
            queries: Mutex::default(),
            refreshing: Mutex::new(()),
            outbox: Mutex::default(),
            params: MatchParams::default(),
            counters: Counters::default(),
            net,
        }
    }

    /// The current snapshot.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().expect("live lock").clone()
    }

    /// The node nearest to `point`, or why it is off the map.
    pub fn snap(&self, which: &'static str, point: LatLon) -> Result<NodeId, RouteError> {
        self.net.snap(point, MAX_SNAP_M).ok_or(RouteError::OffMap {
            which,
            lat: point.lat,
            lon: point.lon,
        })
    }

    /// The quickest route between two nodes under `live`.
    pub fn route_nodes(&self, live: &Live, from: NodeId, to: NodeId) -> Result<Answer, RouteError> {
        let mut query = self
            .queries
            .lock()
            .expect("query pool")
            .pop()
            .unwrap_or_else(|| CchQuery::new(&self.net.cch));
        let route = self
            .net
            .turns
            .route(&mut query, &self.net.cch, &live.metric, from, to);
        self.queries.lock().expect("query pool").push(query);
        let route = route.ok_or(RouteError::NoRoute)?;
        let arcs = self.net.path_arcs(&route.nodes);
        let distance_m = arcs
            .iter()
            .map(|&a| self.net.graph.length_m(a) as f64)
            .sum();
        Ok(Answer {
            route,
            arcs,
            distance_m,
            live_seq: live.seq,
        })
    }

    /// The quickest route between two points under the current traffic.
    pub fn route(&self, from: LatLon, to: LatLon) -> Result<Answer, RouteError> {
        let (s, t) = (self.snap("from", from)?, self.snap("to", to)?);
        self.route_nodes(&self.live(), s, t)
    }

    /// The cost of driving `nodes` under `live`, ms (`None` if a road on it is closed).
    pub fn path_cost(&self, live: &Live, nodes: &[NodeId]) -> Option<u64> {
        let mut total = 0u64;
        for arc in self.net.path_arcs(nodes) {
            let w = live.weights[arc as usize];
            if w == INFINITY {
                return None;
            }
            total += w as u64;
        }
        Some(total)
    }

    /// Matches a batch of probes (each device's in time order) and records the speeds
    /// they show. Blocking: run it off the async threads.
    pub fn ingest(&self, probes: &[Probe], now_ms: i64) -> Ingested {
        let mut report = Ingested {
            accepted: probes.len(),
            ..Ingested::default()
        };
        let mut observations: Vec<(ArcId, f64, i64)> = Vec::new();
        {
            let mut tracks = self.tracks.lock().expect("tracks lock");
            if tracks.len() > MAX_DEVICES {
                tracks.retain(|_, t| t.last_t_ms().is_some_and(|t| now_ms - t < DEVICE_IDLE_MS));
            }
            // Each device's fixes in time order (a stable sort keeps equal times as sent).
            let mut ordered: Vec<&Probe> = probes.iter().collect();
            ordered.sort_by_key(|p| p.t_ms);
            for probe in ordered {
                if tracks.len() >= MAX_DEVICES && !tracks.contains_key(&probe.device_id) {
                    continue;
                }
                let track = tracks.entry(probe.device_id.clone()).or_default();
                let fix = Fix {
                    t_ms: probe.t_ms,
                    at: LatLon::new(probe.lat, probe.lon),
                };
                let Some(m) = track.push(&self.net, &self.params, fix) else {
                    continue;
                };
                report.matched += 1;
                if let Some(ratio) = m.speed_ratio() {
                    let at_ms = probe.t_ms.min(now_ms);
                    for &arc in &m.driven {
                        observations.push((arc, ratio, at_ms));
                    }
                    report.observations += 1;
                }
            }
        }
        if !observations.is_empty() {
            let mut traffic = self.traffic.lock().expect("traffic lock");
            for &(arc, ratio, at_ms) in &observations {
                traffic.observe(arc, ratio, at_ms);
            }
            drop(traffic);
            self.keep_for_others(observations);
        }
        self.counters
            .probes
            .fetch_add(report.accepted as u64, Ordering::Relaxed);
        self.counters
            .matched
            .fetch_add(report.matched as u64, Ordering::Relaxed);
        report
    }

    /// From now on, keeps this instance's observations for [`EtaEngine::take_observations`].
    pub fn share_observations(&self) {
        self.outbox.lock().expect("outbox lock").enabled = true;
    }

    pub(super) fn keep_for_others(&self, mut observations: Vec<(ArcId, f64, i64)>) {
        let mut outbox = self.outbox.lock().expect("outbox lock");
        if !outbox.enabled {
            return;
        }
        outbox.observations.append(&mut observations);
        let over = outbox.observations.len().saturating_sub(MAX_OUTBOX);
        if over > 0 {
            outbox.observations.drain(..over);
            self.counters
                .outbox_dropped
                .fetch_add(over as u64, Ordering::Relaxed);
        }
    }

    /// Observations kept for other instances and not yet taken.
    pub fn pending_observations(&self) -> usize {
        self.outbox.lock().expect("outbox lock").observations.len()
    }

    /// The observations made here since the last call, one per arc: the mean ratio of
    /// its observations and the latest time, in arc order.
    /// Counted in `shared_observations` before the outbox is released, so that an empty
    /// outbox means the count includes everything taken.
    pub fn take_observations(&self) -> Vec<(ArcId, f64, i64)> {
        let mut outbox = self.outbox.lock().expect("outbox lock");
        let mut per_arc: std::collections::BTreeMap<ArcId, (f64, u32, i64)> = Default::default();
        for (arc, ratio, at_ms) in outbox.observations.drain(..) {
            let entry = per_arc.entry(arc).or_insert((0.0, 0, at_ms));
            entry.0 += ratio;
            entry.1 += 1;
            entry.2 = entry.2.max(at_ms);
        }
        self.counters
            .shared_observations
            .fetch_add(per_arc.len() as u64, Ordering::Relaxed);
        drop(outbox);
        per_arc
            .into_iter()
            .map(|(arc, (sum, count, at_ms))| (arc, sum / f64::from(count), at_ms))
            .collect()
    }

    /// Applies observations another instance made on the same network (arcs outside it
    /// are skipped); answers how many applied. In force from the next refresh.
    pub fn observe_remote(&self, observations: &[(ArcId, f64, i64)]) -> usize {
        let arcs = self.net.graph.arc_count();
        let mut traffic = self.traffic.lock().expect("traffic lock");
        let mut applied = 0;
        for &(arc, ratio, at_ms) in observations {
            if (arc as usize) < arcs && ratio.is_finite() && ratio >= 0.0 {
                traffic.observe(arc, ratio, at_ms);
                applied += 1;
            }
        }
        self.counters
            .remote_observations
            .fetch_add(applied as u64, Ordering::Relaxed);
        applied
    }

    /// The traffic version (bumped by every observation, incident and expiry).
    pub fn traffic_version(&self) -> u64 {
        self.traffic.lock().expect("traffic lock").version()
    }

    /// Slows every arc with an end within `radius_m` of `at` by `speed_factor` until
    /// `until_ms`; answers how many arcs. In force from the next refresh.
    pub fn add_incident(
        &self,
        id: String,
        at: LatLon,
        radius_m: f64,
        speed_factor: f64,
        until_ms: i64,
    ) -> usize {
        let graph = &self.net.graph;
        let mut arcs: Vec<ArcId> = self
            .net
            .segments
            .near(at, radius_m)
            .into_iter()
            .map(|p| p.arc)
            .collect();
        arcs.sort_unstable();
        arcs.dedup();
        debug_assert!(arcs.iter().all(|&a| (a as usize) < graph.arc_count()));
        let count = arcs.len();
        self.traffic
            .lock()
            .expect("traffic lock")
            .add_incident(Incident {
                id,
                arcs,
                speed_factor,
                until_ms,
            });
        count
    }

    /// Customizes the weights of `now_ms` and swaps them in, if traffic changed since
    /// the current snapshot or is live (decaying). Blocking (the customization).
    pub fn refresh(&self, now_ms: i64) -> Option<Refreshed> {
        let _one = self.refreshing.lock().expect("refresh lock");
        let (weights, version) = {
            let mut traffic = self.traffic.lock().expect("traffic lock");
            traffic.expire(now_ms);
            let current = self.live();
            if traffic.version() == current.traffic_version && !traffic.is_live() {
                return None;
            }
            let mut weights = traffic.weights(&self.net.graph, now_ms);
            TurnSplit::share_weights(&self.net.canonical, &mut weights);
            (weights, traffic.version())
        };
        let current = self.live();
        if weights == current.weights {
            // Same weights (e.g. an estimate decayed by less than a millisecond).
            let mut live = self.live.write().expect("live lock");
            if version != live.traffic_version {
                *live = Arc::new(Live {
                    metric: live.metric.clone(),
                    weights,
                    traffic_version: version,
                    at_ms: now_ms,
                    seq: live.seq,
                });
            }
            return None;
        }
        let started = Instant::now();
        let metric = self.net.cch.customize(&weights);
        let took = started.elapsed();
        let seq = current.seq + 1;
        *self.live.write().expect("live lock") = Arc::new(Live {
            metric,
            weights,
            traffic_version: version,
            at_ms: now_ms,
            seq,
        });
        self.counters.customizations.fetch_add(1, Ordering::Relaxed);
        self.counters
            .last_customize_us
            .store(took.as_micros() as u64, Ordering::Relaxed);
        Some(Refreshed {
            seq,
            customize_ms: took.as_secs_f64() * 1000.0,
        })
    }

    /// Every arc's speed now as a percentage of free flow (0 = closed).
    pub fn speed_pct(&self, live: &Live) -> Vec<u8> {
        let ff = self.net.graph.free_flow_weights();
        ff.iter()
            .zip(&live.weights)
            .map(|(&f, &w)| {
                if w == INFINITY {
                    0
                } else {
                    ((f as f64 / w as f64) * 100.0).round().clamp(0.0, 255.0) as u8
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use meridian_shared::eta::dijkstra::Dijkstra;
    use meridian_shared::eta::synth::SplitMix64;

    use super::*;
    use crate::eta::sim::{self, Drive, World};

    fn engine(nodes: usize, seed: u64) -> EtaEngine {
        EtaEngine::new(Arc::new(Network::synthetic(nodes, seed)), 0)
    }

    #[test]
    fn routes_equal_dijkstra_before_and_after_traffic() {
        let eta = engine(3_000, 2);
        let mut rng = SplitMix64::new(1);
        let n = eta.net.graph.node_count() as u64;
        let mut dijkstra = Dijkstra::new(&eta.net.graph);
        let check = |eta: &EtaEngine, dijkstra: &mut Dijkstra, rng: &mut SplitMix64| {
            let live = eta.live();
            for _ in 0..500 {
                let (s, t) = (rng.below(n) as NodeId, rng.below(n) as NodeId);
                let ours = eta.route_nodes(&live, s, t).map(|a| a.route.cost).ok();
                let oracle = dijkstra
                    .route(&eta.net.graph, &live.weights, s, t)
                    .map(|r| r.cost);
                assert_eq!(ours, oracle, "{s} -> {t}");
            }
        };
        check(&eta, &mut dijkstra, &mut rng);
        let c = eta.net.graph.coord(17);
        eta.add_incident("i".into(), c, 300.0, 0.2, 60_000);
        for arc in 0..200 {
            eta.traffic.lock().unwrap().observe(arc * 7, 0.3, 1_000);
        }
        assert!(eta.refresh(1_000).is_some());
        assert_ne!(eta.live().weights, eta.net.graph.free_flow_weights());
        check(&eta, &mut dijkstra, &mut rng);
        // Once the incident ends and the estimates are forgotten, free flow again.
        eta.refresh(1_000 + super::super::traffic::FORGET_MS + 60_000);
        assert_eq!(eta.live().weights, eta.net.graph.free_flow_weights());
    }

    #[test]
    fn a_refresh_without_change_does_nothing() {
        let eta = engine(500, 3);
        assert!(eta.refresh(5).is_none());
        assert_eq!(eta.live().seq, 0);
    }

    #[test]
    fn a_closing_incident_changes_the_route() {
        let eta = engine(3_000, 5);
        let (sw, ne) = eta.net.bounds;
        let from = LatLon::new(
            sw.lat + 0.1 * (ne.lat - sw.lat),
            sw.lon + 0.1 * (ne.lon - sw.lon),
        );
        let to = LatLon::new(
            sw.lat + 0.9 * (ne.lat - sw.lat),
            sw.lon + 0.9 * (ne.lon - sw.lon),
        );
        let before = eta.route(from, to).unwrap();
        let mid = eta
            .net
            .graph
            .coord(before.route.nodes[before.route.nodes.len() / 2]);
        eta.add_incident("x".into(), mid, 80.0, 0.0, 60_000);
        eta.refresh(10).unwrap();
        let after = eta.route(from, to).unwrap();
        assert!(after.route.cost > before.route.cost);
        assert_ne!(after.route.nodes, before.route.nodes);
    }

    #[test]
    fn probes_from_a_simulated_fleet_bring_etas_closer_to_the_truth() {
        let eta = engine(2_500, 6);
        let net = eta.net.clone();
        let world = World::new(&net, 7, 6);
        let free = net.cch.customize(net.graph.free_flow_weights());
        let mut rng = SplitMix64::new(8);
        let mut probes = Vec::new();
        for v in 0..300 {
            let Some(drive) = Drive::random_in(&net, &free, &mut rng, &world.true_ratio) else {
                continue;
            };
            for (t_ms, at, _) in drive.samples(&net, 1_000, 5_000) {
                let at = sim::noisy(&mut rng, at, 6.0);
                probes.push(Probe {
                    device_id: format!("v{v}"),
                    t_ms,
                    lat: at.lat,
                    lon: at.lon,
                });
            }
        }
        let measure = |eta: &EtaEngine, rng: &mut SplitMix64| {
            let live = eta.live();
            let n = net.graph.node_count() as u64;
            let mut pairs = Vec::new();
            while pairs.len() < 300 {
                let (s, t) = (rng.below(n) as NodeId, rng.below(n) as NodeId);
                let Ok(a) = eta.route_nodes(&live, s, t) else {
                    continue;
                };
                if a.arcs.len() < 10 {
                    continue;
                }
                pairs.push((a.route.cost as f64, world.true_ms(&net, &a.arcs)));
            }
            sim::mape(&pairs)
        };
        let before = measure(&eta, &mut SplitMix64::new(9));
        let report = eta.ingest(&probes, 1_000);
        assert!(
            report.matched as f64 > 0.95 * report.accepted as f64,
            "{report:?}"
        );
        eta.refresh(1_000).unwrap();
        let after = measure(&eta, &mut SplitMix64::new(9));
        eprintln!("MAPE free flow {before:.1} %, with probes {after:.1} %");
        assert!(after < before * 0.7, "MAPE {before:.1} % -> {after:.1} %");
    }
}
