//! Map matching with a hidden Markov model (Newson & Krumm, "Hidden Markov Map Matching
//! Through Noise and Sparseness", 2009): the hidden states of a GPS fix are the road
//! arcs within [`MatchParams::radius_m`]; a state's emission is Gaussian in the fix's
//! distance to the arc; a transition's probability falls exponentially with the
//! difference between the route distance along the roads and the great-circle distance
//! between the fixes. Viterbi finds the likeliest sequence.
//!
//! [`Track`] runs it online, one fix at a time per device, and reports the transition
//! into the currently likeliest state: the arcs driven since the previous fix and how
//! long that took, which is a speed observation. [`match_trace`] runs it over a whole
//! trace with back-tracking (the tests measure its accuracy on noisy simulated traces).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use meridian_shared::eta::graph::{ArcId, LatLon, NodeId};

use super::network::{Network, Projection};

/// The model's parameters.
#[derive(Debug, Clone, Copy)]
pub struct MatchParams {
    /// Standard deviation of GPS noise, metres.
    pub sigma_m: f64,
    /// Scale of the transition's exponential, metres.
    pub beta_m: f64,
    /// Candidate arcs are within this distance of the fix.
    pub radius_m: f64,
    pub max_candidates: usize,
    /// Fixes further apart in time start a new track.
    pub max_gap_ms: i64,
    /// Faster than this (m/s) between two fixes is not a road transition.
    pub max_speed_mps: f64,
}

impl Default for MatchParams {
    fn default() -> MatchParams {
        MatchParams {
            sigma_m: 10.0,
            beta_m: 15.0,
            radius_m: 50.0,
            max_candidates: 8,
            max_gap_ms: 120_000,
            max_speed_mps: 60.0,
        }
    }
}

/// One GPS fix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    pub t_ms: i64,
    pub at: LatLon,
}

#[derive(Debug, Clone)]
struct State {
    proj: Projection,
    /// Log-probability of the likeliest path ending here.
    score: f64,
    /// The previous step's state on that path, and the arcs driven from it (the
    /// previous state's arc first, this state's arc last) with their length in metres.
    back: Option<(usize, Vec<ArcId>, f64)>,
}

#[derive(Debug, Clone)]
struct Step {
    fix: Fix,
    states: Vec<State>,
}

/// What one fix told: the arc it is on, and what was driven since the previous fix.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    pub arc: ArcId,
    /// Arcs driven since the previous fix (partially at both ends), in order; empty
    /// for the first fix of a track.
    pub driven: Vec<ArcId>,
    /// The distance driven since the previous fix, metres.
    pub driven_m: f64,
    /// The free-flow time of that distance, ms.
    pub free_flow_ms: f64,
    /// The time between the fixes, ms.
    pub elapsed_ms: i64,
}

impl Matched {
    /// The observed speed as a share of free flow, when there was a movement to time.
    pub fn speed_ratio(&self) -> Option<f64> {
        (self.driven_m >= 5.0 && self.elapsed_ms > 0)
            .then(|| self.free_flow_ms / self.elapsed_ms as f64)
    }
}

fn emission(params: &MatchParams, distance_m: f64) -> f64 {
    let z = distance_m / params.sigma_m;
    -0.5 * z * z
}

/// The next step of the lattice after `prev` for `fix` (scores not yet normalised).
fn advance(net: &Network, params: &MatchParams, prev: Option<&Step>, fix: Fix) -> Option<Step> {
    let mut candidates = net.segments.near(fix.at, params.radius_m);
    candidates.truncate(params.max_candidates);
    if candidates.is_empty() {
        return None;
    }
    let first = |candidates: Vec<Projection>| Step {
        fix,
        states: candidates
            .into_iter()
            .map(|proj| State {
                score: emission(params, proj.distance_m),
                proj,
                back: None,
            })
            .collect(),
    };
    let Some(prev) = prev.filter(|p| {
        let dt = fix.t_ms - p.fix.t_ms;
        dt > 0 && dt <= params.max_gap_ms
    }) else {
        return Some(first(candidates));
    };
    let dt_s = (fix.t_ms - prev.fix.t_ms) as f64 / 1000.0;
    let great_circle = prev.fix.at.distance_m(fix.at);
    let bound =
        (params.max_speed_mps * dt_s).min(great_circle * 2.0 + 4.0 * params.radius_m + 200.0);
    let mut states: Vec<State> = candidates
        .iter()
        .map(|&proj| State {
            proj,
            score: f64::NEG_INFINITY,
            back: None,
        })
        .collect();
    for (i, from) in prev.states.iter().enumerate() {
        if from.score == f64::NEG_INFINITY {
            continue;
        }
        let routes = routes_from(net, &from.proj, &candidates, bound);
        for (j, route) in routes.into_iter().enumerate() {
            let Some((length, arcs)) = route else {
                continue;
            };
            let transition = -(length - great_circle).abs() / params.beta_m;
            let score = from.score + transition + emission(params, candidates[j].distance_m);
            if score > states[j].score {
                states[j].score = score;
                states[j].back = Some((i, arcs, length));
            }
        }
    }
    if states.iter().all(|s| s.score == f64::NEG_INFINITY) {
        // No road leads from any earlier state here in time: the track breaks.
        return Some(first(candidates));
    }
    states.retain(|s| s.score > f64::NEG_INFINITY);
    let best = states
        .iter()
        .map(|s| s.score)
        .fold(f64::NEG_INFINITY, f64::max);
    for s in &mut states {
        s.score -= best;
    }
    Some(Step { fix, states })
}

/// Route distances along the roads from `from` to each of `to` (no farther than
/// `bound` metres), with the arcs driven; a bounded Dijkstra on lengths.
fn routes_from(
    net: &Network,
    from: &Projection,
    to: &[Projection],
    bound: f64,
) -> Vec<Option<(f64, Vec<ArcId>)>> {
    let graph = &net.graph;
    let from_len = graph.length_m(from.arc) as f64;
    // Split junctions are collapsed here: matching follows the roads a vehicle drove,
    // and vehicles do make banned turns now and then.
    let start = net.turns.original(graph.head(from.arc));
    let lead = from_len - from.offset_m;
    let mut dist: HashMap<NodeId, (f64, Option<ArcId>)> = HashMap::new();
    let mut heap = BinaryHeap::new();
    dist.insert(start, (lead, None));
    heap.push(Reverse((OrdF64(lead), start)));
    let wanted: Vec<NodeId> = to.iter().map(|p| net.tails[p.arc as usize]).collect();
    let mut remaining = wanted.len();
    let mut settled: HashSet<NodeId> = HashSet::new();
    while let Some(Reverse((OrdF64(d), v))) = heap.pop() {
        if !settled.insert(v) {
            continue;
        }
        if d > bound {
            break;
        }
        remaining -= wanted.iter().filter(|&&w| w == v).count();
        if remaining == 0 {
            break;
        }
        for arc in graph.arcs_out(v) {
            let head = net.turns.original(graph.head(arc));
            let nd = d + graph.length_m(arc) as f64;
            if nd <= bound && dist.get(&head).is_none_or(|&(old, _)| nd < old) {
                dist.insert(head, (nd, Some(arc)));
                heap.push(Reverse((OrdF64(nd), head)));
            }
        }
    }
    to.iter()
        .zip(&wanted)
        .map(|(p, &tail)| {
            if p.arc == from.arc && p.offset_m + 1.0 >= from.offset_m {
                return Some(((p.offset_m - from.offset_m).max(0.0), vec![from.arc]));
            }
            let &(d, _) = dist.get(&tail)?;
            if !settled.contains(&tail) {
                return None;
            }
            let total = d + p.offset_m;
            if total > bound {
                return None;
            }
            let mut arcs = vec![p.arc];
            let mut v = tail;
            while let Some(&(_, Some(arc))) = dist.get(&v) {
                arcs.push(arc);
                v = net.tails[arc as usize];
            }
            arcs.push(from.arc);
            arcs.reverse();
            Some((total, arcs))
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct OrdF64(f64);
impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The free-flow time of driving `arcs` from `from_offset` on the first to `to_offset` on
/// the last, ms.
fn free_flow_ms(net: &Network, arcs: &[ArcId], from_offset: f64, to_offset: f64) -> f64 {
    let ff = net.graph.free_flow_weights();
    let n = arcs.len();
    arcs.iter()
        .enumerate()
        .map(|(k, &arc)| {
            let len = net.graph.length_m(arc).max(0.01) as f64;
            let start = if k == 0 { from_offset } else { 0.0 };
            let end = if k == n - 1 { to_offset } else { len };
            ((end - start).max(0.0) / len) * ff[arc as usize] as f64
        })
        .sum()
}

/// The online matcher of one device.
#[derive(Debug, Clone, Default)]
pub struct Track {
    last: Option<Step>,
}

impl Track {
    /// The time of the last fix taken.
    pub fn last_t_ms(&self) -> Option<i64> {
        self.last.as_ref().map(|s| s.fix.t_ms)
    }

    /// Takes the next fix (fixes not later than the last are ignored: `None`).
    pub fn push(&mut self, net: &Network, params: &MatchParams, fix: Fix) -> Option<Matched> {
        if self.last_t_ms().is_some_and(|t| fix.t_ms <= t) {
            return None;
        }
        let prev_fix = self.last.as_ref().map(|s| s.fix);
        let Some(step) = advance(net, params, self.last.as_ref(), fix) else {
            self.last = None;
            return None;
        };
        let best = step
            .states
            .iter()
            .max_by(|a, b| a.score.total_cmp(&b.score))
            .expect("a step has states");
        let matched = match (&best.back, prev_fix, &self.last) {
            (Some((i, arcs, length)), Some(prev_fix), Some(prev)) => Matched {
                arc: best.proj.arc,
                free_flow_ms: free_flow_ms(
                    net,
                    arcs,
                    prev.states[*i].proj.offset_m,
                    best.proj.offset_m,
                ),
                driven: arcs.clone(),
                driven_m: *length,
                elapsed_ms: fix.t_ms - prev_fix.t_ms,
            },
            _ => Matched {
                arc: best.proj.arc,
                driven: Vec::new(),
                driven_m: 0.0,
                free_flow_ms: 0.0,
                elapsed_ms: 0,
            },
        };
        self.last = Some(step);
        Some(matched)
    }
}

/// The likeliest arc of every fix of a trace (Viterbi with back-tracking); `None` for a
/// fix with no road near it.
pub fn match_trace(net: &Network, params: &MatchParams, fixes: &[Fix]) -> Vec<Option<ArcId>> {
    let mut steps: Vec<Option<Step>> = Vec::with_capacity(fixes.len());
    let mut prev: Option<usize> = None;
    for &fix in fixes {
        let step = advance(net, params, prev.and_then(|p| steps[p].as_ref()), fix);
        if step.is_some() {
            prev = Some(steps.len());
        }
        steps.push(step);
    }
    let mut result = vec![None; fixes.len()];
    // Back-track each unbroken run from its end.
    let mut k = steps.len();
    let mut follow: Option<usize> = None;
    while k > 0 {
        k -= 1;
        let Some(step) = &steps[k] else {
            continue;
        };
        let at = match follow.take() {
            Some(i) => i,
            None => (0..step.states.len())
                .max_by(|&a, &b| step.states[a].score.total_cmp(&step.states[b].score))
                .expect("a step has states"),
        };
        result[k] = Some(step.states[at].proj.arc);
        follow = step.states[at].back.as_ref().map(|(i, _, _)| *i);
    }
    result
}

#[cfg(test)]
mod tests {
    use meridian_shared::eta::synth::SplitMix64;

    use super::*;
    use crate::eta::sim::{gaussian, Drive};

    #[test]
    fn matches_noisy_traces_onto_the_driven_roads() {
        let net = Network::synthetic(3_000, 4);
        let params = MatchParams::default();
        let mut rng = SplitMix64::new(17);
        let (mut right, mut total) = (0usize, 0usize);
        let (mut online_right, mut online_total) = (0usize, 0usize);
        for _ in 0..30 {
            let drive = Drive::random(&net, &mut rng, 1.0);
            let Some(drive) = drive else { continue };
            let fixes: Vec<Fix> = drive
                .samples(&net, 0, 2_000)
                .into_iter()
                .map(|(t_ms, at, _)| Fix {
                    t_ms,
                    at: LatLon::new(
                        at.lat + gaussian(&mut rng) * 8.0 / 111_195.0,
                        at.lon + gaussian(&mut rng) * 8.0 / 55_500.0,
                    ),
                })
                .collect();
            // The true arc's place on the drive, per fix.
            let truth: Vec<usize> = drive
                .samples(&net, 0, 2_000)
                .into_iter()
                .map(|(_, _, arc)| drive.arcs.iter().position(|&a| a == arc).unwrap())
                .collect();
            // Right: the true arc, or (a fix near an intersection is as near both
            // roads) the arc before or after it on the drive; either direction of a
            // two-way street, since at a trace's start the transitions cannot tell.
            let on_drive = |arc: ArcId, k: usize| {
                drive.arcs[k.saturating_sub(1)..(k + 2).min(drive.arcs.len())]
                    .iter()
                    .any(|&t| same_road(&net, arc, t))
            };
            let matched = match_trace(&net, &params, &fixes);
            let mut track = Track::default();
            for ((fix, m), &k) in fixes.iter().zip(&matched).zip(&truth) {
                total += 1;
                right += usize::from(m.is_some_and(|a| on_drive(a, k)));
                if let Some(online) = track.push(&net, &params, *fix) {
                    online_total += 1;
                    online_right += usize::from(on_drive(online.arc, k));
                }
            }
        }
        let accuracy = right as f64 / total as f64;
        let online = online_right as f64 / online_total as f64;
        eprintln!("map matching: {accuracy:.3} offline, {online:.3} online over {total} fixes");
        assert!(total > 300);
        assert!(accuracy >= 0.95, "offline accuracy {accuracy}");
        assert!(online >= 0.85, "online accuracy {online}");
    }

    fn same_road(net: &Network, a: ArcId, b: ArcId) -> bool {
        a == b
            || (net.tails[a as usize] == net.graph.head(b)
                && net.graph.head(a) == net.tails[b as usize])
    }

    #[test]
    fn a_steady_drive_observes_its_speed() {
        let net = Network::synthetic(2_000, 8);
        let params = MatchParams::default();
        let mut rng = SplitMix64::new(5);
        let drive = loop {
            if let Some(d) = Drive::random(&net, &mut rng, 0.5) {
                break d;
            }
        };
        let mut track = Track::default();
        let mut ratios = Vec::new();
        for (t_ms, at, _) in drive.samples(&net, 0, 3_000) {
            if let Some(m) = track.push(&net, &params, Fix { t_ms, at }) {
                ratios.extend(m.speed_ratio());
            }
        }
        assert!(ratios.len() > 3);
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        assert!(
            (mean - 0.5).abs() < 0.08,
            "observed {mean}, drove at 0.5 of free flow"
        );
    }
}
