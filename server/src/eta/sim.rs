//! The traffic simulator: a world of hidden true speeds (congested districts and
//! free-flowing ones, from one seed), vehicles driving routes through it, and noisy GPS
//! fixes along the way. The server sees only the fixes; the tests and the load command
//! compare its ETAs with the world's ground truth (MAPE).

use meridian_shared::eta::cch::{CchQuery, Metric};
use meridian_shared::eta::graph::{ArcId, LatLon, NodeId, Weight};
use meridian_shared::eta::synth::SplitMix64;

use super::network::Network;

/// A standard normal sample (Box–Muller).
pub fn gaussian(rng: &mut SplitMix64) -> f64 {
    let u1 = rng.unit().max(1e-12);
    let u2 = rng.unit();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The hidden truth: every arc's real speed as a share of free flow.
pub struct World {
    pub true_ratio: Vec<f64>,
}

impl World {
    /// A world where arcs within `districts` random circles of ~400 m crawl at 0.2–0.5
    /// of free flow and the rest flow at 0.75–1.0.
    pub fn new(net: &Network, seed: u64, districts: usize) -> World {
        let mut rng = SplitMix64::new(seed);
        let (sw, ne) = net.bounds;
        let centres: Vec<(LatLon, f64)> = (0..districts)
            .map(|_| {
                (
                    LatLon::new(
                        sw.lat + rng.unit() * (ne.lat - sw.lat),
                        sw.lon + rng.unit() * (ne.lon - sw.lon),
                    ),
                    0.2 + 0.3 * rng.unit(),
                )
            })
            .collect();
        let true_ratio = (0..net.graph.arc_count())
            .map(|arc| {
                let at = net.graph.coord(net.tails[arc]);
                let jam = centres
                    .iter()
                    .filter(|(c, _)| c.distance_m(at) < 400.0)
                    .map(|&(_, r)| r)
                    .fold(1.0, f64::min);
                if jam < 1.0 {
                    jam
                } else {
                    0.75 + 0.25 * rng.unit()
                }
            })
            .collect();
        World { true_ratio }
    }

    /// The true time of driving `arcs`, ms.
    pub fn true_ms(&self, net: &Network, arcs: &[ArcId]) -> f64 {
        let ff = net.graph.free_flow_weights();
        arcs.iter()
            .map(|&a| ff[a as usize] as f64 / self.true_ratio[a as usize])
            .sum()
    }

    /// The true weights (for the oracle route under the truth).
    pub fn weights(&self, net: &Network) -> Vec<Weight> {
        let ff = net.graph.free_flow_weights();
        ff.iter()
            .zip(&self.true_ratio)
            .map(|(&w, &r)| ((w as f64 / r).round() as Weight).max(1))
            .collect()
    }
}

/// One vehicle's drive: the arcs of its route and how long each takes it.
#[derive(Debug, Clone)]
pub struct Drive {
    pub arcs: Vec<ArcId>,
    pub arc_ms: Vec<f64>,
}

impl Drive {
    /// A drive between two random nodes along the free-flow quickest route, at `ratio`
    /// of free flow everywhere (`None` when the pair is too close).
    pub fn random(net: &Network, rng: &mut SplitMix64, ratio: f64) -> Option<Drive> {
        let ratios = vec![ratio; net.graph.arc_count()];
        let metric = net.cch.customize(net.graph.free_flow_weights());
        Drive::random_in(net, &metric, rng, &ratios)
    }

    /// A drive between two random nodes along the free-flow quickest route, each arc at
    /// its ratio of free flow.
    /// `free_flow` is the hierarchy customized with free-flow weights.
    pub fn random_in(
        net: &Network,
        free_flow: &Metric,
        rng: &mut SplitMix64,
        ratios: &[f64],
    ) -> Option<Drive> {
        let n = net.turns.originals() as u64;
        let (s, t) = (rng.below(n) as NodeId, rng.below(n) as NodeId);
        let route = net
            .turns
            .route(&mut CchQuery::new(&net.cch), &net.cch, free_flow, s, t)?;
        // Traffic lives on original roads: a shadow arc is driven as its original.
        let arcs: Vec<ArcId> = net
            .path_arcs(&route.nodes)
            .into_iter()
            .map(|a| net.canonical[a as usize])
            .collect();
        if arcs.len() < 5 {
            return None;
        }
        let ff = net.graph.free_flow_weights();
        let arc_ms = arcs
            .iter()
            .map(|&a| ff[a as usize] as f64 / ratios[a as usize])
            .collect();
        Some(Drive { arcs, arc_ms })
    }

    pub fn duration_ms(&self) -> f64 {
        self.arc_ms.iter().sum()
    }

    /// The true position every `every_ms` from `start_ms` until arrival: (time, point,
    /// arc).
    pub fn samples(
        &self,
        net: &Network,
        start_ms: i64,
        every_ms: i64,
    ) -> Vec<(i64, LatLon, ArcId)> {
        let mut out = Vec::new();
        let (mut k, mut arc_start) = (0usize, 0.0f64);
        let mut t = 0.0f64;
        while k < self.arcs.len() {
            while k < self.arcs.len() && t > arc_start + self.arc_ms[k] {
                arc_start += self.arc_ms[k];
                k += 1;
            }
            if k == self.arcs.len() {
                break;
            }
            let arc = self.arcs[k];
            let f = ((t - arc_start) / self.arc_ms[k]).clamp(0.0, 1.0);
            let (a, b) = (
                net.graph.coord(net.tails[arc as usize]),
                net.graph.coord(net.graph.head(arc)),
            );
            out.push((
                start_ms + t as i64,
                LatLon::new(a.lat + f * (b.lat - a.lat), a.lon + f * (b.lon - a.lon)),
                arc,
            ));
            t += every_ms as f64;
        }
        out
    }
}

/// A GPS fix with noise of `sigma_m` metres.
pub fn noisy(rng: &mut SplitMix64, at: LatLon, sigma_m: f64) -> LatLon {
    let m_per_deg_lon = 111_195.0 * at.lat.to_radians().cos();
    LatLon::new(
        at.lat + gaussian(rng) * sigma_m / 111_195.0,
        at.lon + gaussian(rng) * sigma_m / m_per_deg_lon,
    )
}

/// Mean absolute percentage error of `(predicted, actual)` pairs, in percent.
pub fn mape(pairs: &[(f64, f64)]) -> f64 {
    let valid: Vec<f64> = pairs
        .iter()
        .filter(|(_, a)| *a > 0.0)
        .map(|(p, a)| ((p - a) / a).abs())
        .collect();
    100.0 * valid.iter().sum::<f64>() / valid.len().max(1) as f64
}
