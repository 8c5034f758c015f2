//! Live traffic: per-arc speed estimates from matched probes, decaying back to free
//! flow, and incidents that slow every arc within a radius for a while. [`Traffic::weights`]
//! turns them into the routing weights of one moment.
//!
//! Invariants:
//! - An arc nobody observed, and no incident covers, has its free-flow weight exactly.
//! - An estimate's effect decays exponentially with its age (time constant
//!   [`DECAY_MS`]) and is forgotten after [`FORGET_MS`].
//! - Weights only grow under incidents (a factor in (0, 1] divides, overlapping incidents
//!   multiply; 0 closes the road).

use meridian_shared::eta::graph::{ArcId, RoadGraph, Weight, INFINITY};

/// How fast an estimate returns to free flow (its effect is e^-age/DECAY_MS).
pub const DECAY_MS: i64 = 300_000;
/// An estimate older than this is dropped.
pub const FORGET_MS: i64 = 5 * DECAY_MS;
/// The weight of a new observation in an arc's running estimate.
const SMOOTHING: f64 = 0.4;
/// Speed ratios (observed over free flow) are clamped to this range.
pub const MIN_RATIO: f64 = 0.05;
pub const MAX_RATIO: f64 = 1.5;

#[derive(Debug, Clone, Copy)]
struct Estimate {
    ratio: f64,
    at_ms: i64,
}

/// An incident in force.
#[derive(Debug, Clone)]
pub struct Incident {
    pub id: String,
    pub arcs: Vec<ArcId>,
    pub speed_factor: f64,
    pub until_ms: i64,
}

/// The traffic state of one network.
pub struct Traffic {
    estimates: Vec<Option<Estimate>>,
    /// Arcs with an estimate, to visit only those.
    observed: Vec<ArcId>,
    incidents: Vec<Incident>,
    /// Bumped on every change; the refresher customizes when it moved.
    version: u64,
}

impl Traffic {
    pub fn new(arc_count: usize) -> Traffic {
        Traffic {
            estimates: vec![None; arc_count],
            observed: Vec::new(),
            incidents: Vec::new(),
            version: 0,
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether weights differ from free flow (and so change with time as estimates
    /// decay and incidents end).
    pub fn is_live(&self) -> bool {
        !self.observed.is_empty() || !self.incidents.is_empty()
    }

    /// Records that `arc` was driven at `ratio` times its free-flow speed at `at_ms`.
    pub fn observe(&mut self, arc: ArcId, ratio: f64, at_ms: i64) {
        let ratio = ratio.clamp(MIN_RATIO, MAX_RATIO);
        let slot = &mut self.estimates[arc as usize];
        match slot {
            Some(e) => {
                let prior = 1.0 + (e.ratio - 1.0) * decay(at_ms - e.at_ms);
                e.ratio = prior + SMOOTHING * (ratio - prior);
                e.at_ms = e.at_ms.max(at_ms);
            }
            None => {
                // A first observation counts fully: free flow is a poor prior on a jam.
                *slot = Some(Estimate { ratio, at_ms });
                self.observed.push(arc);
            }
        }
        self.version += 1;
    }

    pub fn add_incident(&mut self, incident: Incident) {
        self.incidents.push(incident);
        self.version += 1;
    }

    pub fn incidents(&self) -> &[Incident] {
        &self.incidents
    }

    /// Drops what has expired by `now_ms`.
    pub fn expire(&mut self, now_ms: i64) {
        let before = (self.incidents.len(), self.observed.len());
        self.incidents.retain(|i| i.until_ms > now_ms);
        let estimates = &mut self.estimates;
        self.observed.retain(|&arc| {
            let keep = estimates[arc as usize].is_some_and(|e| now_ms - e.at_ms < FORGET_MS);
            if !keep {
                estimates[arc as usize] = None;
            }
            keep
        });
        if before != (self.incidents.len(), self.observed.len()) {
            self.version += 1;
        }
    }

    /// The speed ratio of `arc` at `now_ms` (1 = free flow), incidents included.
    pub fn ratio(&self, arc: ArcId, now_ms: i64) -> f64 {
        let observed = self.estimates[arc as usize]
            .map(|e| 1.0 + (e.ratio - 1.0) * decay(now_ms - e.at_ms))
            .unwrap_or(1.0);
        let incident = self
            .incidents
            .iter()
            .filter(|i| i.until_ms > now_ms && i.arcs.contains(&arc))
            .map(|i| i.speed_factor)
            .product::<f64>();
        observed * incident
    }

    /// Every arc's weight at `now_ms`.
    pub fn weights(&self, graph: &RoadGraph, now_ms: i64) -> Vec<Weight> {
        let mut weights = graph.free_flow_weights().to_vec();
        for &arc in &self.observed {
            if let Some(e) = self.estimates[arc as usize] {
                let ratio = 1.0 + (e.ratio - 1.0) * decay(now_ms - e.at_ms);
                weights[arc as usize] = scale(weights[arc as usize], ratio);
            }
        }
        for incident in self.incidents.iter().filter(|i| i.until_ms > now_ms) {
            for &arc in &incident.arcs {
                weights[arc as usize] = scale(weights[arc as usize], incident.speed_factor);
            }
        }
        weights
    }
}

fn decay(age_ms: i64) -> f64 {
    (-(age_ms.max(0) as f64) / DECAY_MS as f64).exp()
}

/// A travel time at `ratio` times the speed it was measured at.
fn scale(weight: Weight, ratio: f64) -> Weight {
    if weight == INFINITY || ratio <= 0.0 {
        return INFINITY;
    }
    ((weight as f64 / ratio).round() as u64).clamp(1, (INFINITY - 1) as u64) as Weight
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eta::network::Network;

    #[test]
    fn free_flow_without_observations() {
        let net = Network::synthetic(400, 1);
        let traffic = Traffic::new(net.graph.arc_count());
        assert_eq!(
            traffic.weights(&net.graph, 0),
            net.graph.free_flow_weights()
        );
        assert!(!traffic.is_live());
    }

    #[test]
    fn an_observation_slows_its_arc_and_decays_back() {
        let net = Network::synthetic(400, 1);
        let mut traffic = Traffic::new(net.graph.arc_count());
        traffic.observe(5, 0.5, 1_000);
        let ff = net.graph.free_flow_weights()[5];
        let w = traffic.weights(&net.graph, 1_000);
        assert_eq!(w[5], scale(ff, 0.5));
        assert_eq!(w[4], net.graph.free_flow_weights()[4]);
        let later = traffic.weights(&net.graph, 1_000 + DECAY_MS);
        assert!(later[5] < w[5] && later[5] > ff);
        traffic.expire(1_000 + FORGET_MS);
        assert!(!traffic.is_live());
        assert_eq!(
            traffic.weights(&net.graph, 1_000 + FORGET_MS),
            net.graph.free_flow_weights()
        );
    }

    #[test]
    fn incidents_slow_or_close_and_expire() {
        let net = Network::synthetic(400, 1);
        let mut traffic = Traffic::new(net.graph.arc_count());
        traffic.add_incident(Incident {
            id: "a".into(),
            arcs: vec![1, 2],
            speed_factor: 0.25,
            until_ms: 10_000,
        });
        traffic.add_incident(Incident {
            id: "b".into(),
            arcs: vec![2],
            speed_factor: 0.0,
            until_ms: 5_000,
        });
        let w = traffic.weights(&net.graph, 0);
        assert_eq!(w[1], scale(net.graph.free_flow_weights()[1], 0.25));
        assert_eq!(w[2], INFINITY);
        let w = traffic.weights(&net.graph, 6_000);
        assert_eq!(w[2], scale(net.graph.free_flow_weights()[2], 0.25));
        traffic.expire(10_000);
        assert!(!traffic.is_live());
    }
}
