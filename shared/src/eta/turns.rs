//! Turn restrictions on a node-based graph, by splitting the restricted junctions.
//!
//! A banned turn says: arriving at `via` from `from`, the road on to `to` may not be
//! taken. The contraction hierarchy only knows nodes and arcs, so a junction with banned
//! turns is split: the arcs arriving from a neighbour whose turns are restricted are
//! moved to a copy of the junction (same place), and the copy leaves only by the roads
//! that neighbour may take ("shadow" arcs, copies of the junction's own arcs). Arrivals
//! from other neighbours keep the junction itself, which keeps every way out. Copies get
//! the node ids after the originals'.
//!
//! Invariants:
//! - A route in the split graph never makes a banned turn, and every route that makes
//!   none has one of equal cost in it (`routes_equal_a_turn_aware_dijkstra` checks this
//!   against a Dijkstra over arcs that knows the banned turns).
//! - A route ends at a junction or at any of its copies ([`TurnSplit::arrivals`]);
//!   routes start, and points snap, only at original nodes.
//! - A shadow arc is the same road as its original ([`TurnSplit::canonical_arcs`]): it
//!   carries the original's weight, and traffic is observed on originals only.

use std::collections::{BTreeMap, BTreeSet};

use super::cch::{Cch, CchQuery, Metric};
use super::graph::{ArcId, ArcSpec, LatLon, NodeId, RoadGraph};
use super::Route;

/// Arriving at `via` from `from`, the arc on to `to` may not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BannedTurn {
    pub from: NodeId,
    pub via: NodeId,
    pub to: NodeId,
}

/// Which nodes are copies of a split junction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnSplit {
    originals: u32,
    /// `copy_of[i]` is the junction that node `originals + i` copies.
    copy_of: Vec<NodeId>,
    /// (original, copy), sorted.
    by_original: Vec<(NodeId, NodeId)>,
}

impl TurnSplit {
    /// A graph with no split junction among `originals` nodes.
    pub fn none(originals: usize) -> TurnSplit {
        TurnSplit::from_copies(originals, Vec::new())
    }

    /// The split described by its copies: node `originals + i` copies `copy_of[i]`.
    pub fn from_copies(originals: usize, copy_of: Vec<NodeId>) -> TurnSplit {
        let originals = originals as u32;
        let mut by_original: Vec<(NodeId, NodeId)> = copy_of
            .iter()
            .enumerate()
            .map(|(i, &v)| (v, originals + i as u32))
            .collect();
        by_original.sort_unstable();
        TurnSplit {
            originals,
            copy_of,
            by_original,
        }
    }

    /// Splits the junctions of `banned` in place: copies are appended to `coords`, arcs
    /// are redirected to them and their shadows appended to `arcs`. Banned turns naming
    /// a node that does not exist, or a turn no arc makes, change nothing.
    pub fn apply(
        coords: &mut Vec<LatLon>,
        arcs: &mut Vec<ArcSpec>,
        banned: &[BannedTurn],
    ) -> TurnSplit {
        let originals = coords.len() as u32;
        let mut by_via: BTreeMap<NodeId, BTreeMap<NodeId, BTreeSet<NodeId>>> = BTreeMap::new();
        for turn in banned {
            if [turn.from, turn.via, turn.to]
                .iter()
                .all(|&v| v < originals)
            {
                by_via
                    .entry(turn.via)
                    .or_default()
                    .entry(turn.from)
                    .or_default()
                    .insert(turn.to);
            }
        }
        let mut copy_of: Vec<NodeId> = Vec::new();
        let canon = |v: NodeId, copy_of: &[NodeId]| {
            if v < originals {
                v
            } else {
                copy_of[(v - originals) as usize]
            }
        };
        for (via, rules) in by_via {
            let outs: Vec<usize> = (0..arcs.len()).filter(|&a| arcs[a].tail == via).collect();
            // One copy per distinct set of banned ways out.
            let mut copies: BTreeMap<BTreeSet<NodeId>, NodeId> = BTreeMap::new();
            for (from, tos) in rules {
                let banned_outs: BTreeSet<NodeId> = outs
                    .iter()
                    .map(|&a| canon(arcs[a].head, &copy_of))
                    .filter(|head| tos.contains(head))
                    .collect();
                if banned_outs.is_empty() {
                    continue;
                }
                let copy = match copies.get(&banned_outs) {
                    Some(&copy) => copy,
                    None => {
                        let copy = originals + copy_of.len() as u32;
                        coords.push(coords[via as usize]);
                        copy_of.push(via);
                        for &a in &outs {
                            if !banned_outs.contains(&canon(arcs[a].head, &copy_of)) {
                                arcs.push(ArcSpec {
                                    tail: copy,
                                    ..arcs[a]
                                });
                            }
                        }
                        copies.insert(banned_outs, copy);
                        copy
                    }
                };
                for arc in arcs.iter_mut() {
                    if arc.head == via && canon(arc.tail, &copy_of) == from {
                        arc.head = copy;
                    }
                }
            }
        }
        TurnSplit::from_copies(originals as usize, copy_of)
    }

    /// How many nodes are not copies (they come first).
    pub fn originals(&self) -> usize {
        self.originals as usize
    }

    /// The copies, in node order: node `originals() + i` copies `copies()[i]`.
    pub fn copies(&self) -> &[NodeId] {
        &self.copy_of
    }

    /// The junction a node stands for (itself unless it is a copy).
    pub fn original(&self, v: NodeId) -> NodeId {
        if v < self.originals {
            v
        } else {
            self.copy_of[(v - self.originals) as usize]
        }
    }

    /// The nodes a route to `v` may end at: `v` and its copies.
    pub fn arrivals(&self, v: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        let start = self.by_original.partition_point(|&(o, _)| o < v);
        std::iter::once(v).chain(
            self.by_original[start..]
                .iter()
                .take_while(move |&&(o, _)| o == v)
                .map(|&(_, copy)| copy),
        )
    }

    /// For each arc, the arc that is the same road: a shadow's original (the junction's
    /// own arc to the same node), any other arc itself.
    pub fn canonical_arcs(&self, graph: &RoadGraph) -> Vec<ArcId> {
        (0..graph.node_count() as NodeId)
            .flat_map(|v| graph.arcs_out(v).map(move |a| (v, a)))
            .map(|(tail, arc)| {
                if tail < self.originals {
                    arc
                } else {
                    graph
                        .find_arc(self.original(tail), graph.head(arc))
                        .unwrap_or(arc)
                }
            })
            .collect()
    }

    /// Gives every shadow arc its original's weight.
    pub fn share_weights(canonical: &[ArcId], weights: &mut [super::graph::Weight]) {
        for (arc, &same) in canonical.iter().enumerate() {
            if same as usize != arc {
                weights[arc] = weights[same as usize];
            }
        }
    }

    /// The quickest route from `source` to `target` or any of its copies.
    pub fn route(
        &self,
        query: &mut CchQuery,
        cch: &Cch,
        metric: &Metric,
        source: NodeId,
        target: NodeId,
    ) -> Option<Route> {
        self.arrivals(target)
            .filter_map(|t| query.route(cch, metric, source, t))
            .min_by_key(|route| route.cost)
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    use proptest::prelude::*;

    use super::*;
    use crate::eta::graph::{RoadClass, Weight};
    use crate::eta::synth::SplitMix64;

    fn arc(tail: NodeId, head: NodeId, ms: Weight) -> ArcSpec {
        ArcSpec {
            tail,
            head,
            length_m: 1.0,
            free_flow_ms: ms,
            class: RoadClass::Residential,
        }
    }

    /// Dijkstra over arcs that knows the banned turns (the oracle): the cost from
    /// `source` to every node.
    fn turn_aware_costs(
        n: usize,
        arcs: &[ArcSpec],
        banned: &[BannedTurn],
        source: NodeId,
    ) -> Vec<Option<Weight>> {
        let banned: BTreeSet<BannedTurn> = banned.iter().copied().collect();
        let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, a) in arcs.iter().enumerate() {
            out[a.tail as usize].push(i);
        }
        let mut to_node = vec![None; n];
        to_node[source as usize] = Some(0);
        let mut best = vec![Weight::MAX; arcs.len()];
        let mut heap = BinaryHeap::new();
        for &i in &out[source as usize] {
            best[i] = arcs[i].free_flow_ms;
            heap.push(Reverse((arcs[i].free_flow_ms, i)));
        }
        while let Some(Reverse((d, i))) = heap.pop() {
            if d > best[i] {
                continue;
            }
            let at = arcs[i];
            let reached = &mut to_node[at.head as usize];
            if reached.is_none_or(|r| d < r) {
                *reached = Some(d);
            }
            for &j in &out[at.head as usize] {
                let turn = BannedTurn {
                    from: at.tail,
                    via: at.head,
                    to: arcs[j].head,
                };
                if banned.contains(&turn) {
                    continue;
                }
                let nd = d + arcs[j].free_flow_ms;
                if nd < best[j] {
                    best[j] = nd;
                    heap.push(Reverse((nd, j)));
                }
            }
        }
        to_node
    }

    /// A random graph without parallel arcs, and random banned turns it can make.
    fn random_case(n: usize, seed: u64) -> (Vec<LatLon>, Vec<ArcSpec>, Vec<BannedTurn>) {
        let mut rng = SplitMix64::new(seed);
        let coords: Vec<LatLon> = (0..n)
            .map(|_| LatLon::new(60.0 + rng.unit() * 0.1, 24.0 + rng.unit() * 0.2))
            .collect();
        let mut pairs = BTreeMap::new();
        for v in 0..n as u32 {
            for _ in 0..3 {
                let w = rng.below(n as u64) as u32;
                if v == w {
                    continue;
                }
                let ms = 1 + rng.below(1_000) as Weight;
                pairs.entry((v, w)).or_insert(ms);
                if rng.unit() < 0.7 {
                    pairs.entry((w, v)).or_insert(ms);
                }
            }
        }
        let arcs: Vec<ArcSpec> = pairs.iter().map(|(&(t, h), &ms)| arc(t, h, ms)).collect();
        let mut banned = Vec::new();
        for a in &arcs {
            for b in &arcs {
                if a.head == b.tail && rng.unit() < 0.3 {
                    banned.push(BannedTurn {
                        from: a.tail,
                        via: a.head,
                        to: b.head,
                    });
                }
            }
        }
        (coords, arcs, banned)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn routes_equal_a_turn_aware_dijkstra(seed in any::<u64>(), n in 2usize..30) {
            let (mut coords, mut arcs, banned) = random_case(n, seed);
            let original_arcs = arcs.clone();
            let split = TurnSplit::apply(&mut coords, &mut arcs, &banned);
            let graph = RoadGraph::new(coords, arcs).unwrap();
            let cch = Cch::new(&graph);
            let canonical = split.canonical_arcs(&graph);
            let mut weights = graph.free_flow_weights().to_vec();
            TurnSplit::share_weights(&canonical, &mut weights);
            prop_assert_eq!(&weights[..], graph.free_flow_weights(), "a shadow weighs what its original does");
            let metric = cch.customize(&weights);
            let mut query = CchQuery::new(&cch);
            for s in 0..n as u32 {
                let costs = turn_aware_costs(n, &original_arcs, &banned, s);
                for t in 0..n as u32 {
                    let route = split.route(&mut query, &cch, &metric, s, t);
                    let expected = costs[t as usize];
                    prop_assert_eq!(route.as_ref().map(|r| r.cost), expected, "seed {} {}→{}", seed, s, t);
                    if let Some(route) = route {
                        let path: Vec<NodeId> = route.nodes.iter().map(|&v| split.original(v)).collect();
                        for w in path.windows(3) {
                            let turn = BannedTurn { from: w[0], via: w[1], to: w[2] };
                            prop_assert!(!banned.contains(&turn), "seed {}: the route turns {:?}", seed, turn);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_banned_left_turn_sends_the_route_around_the_block() {
        // 0 → 1 → 2 is quick but turning at 1 towards 2 is banned when coming from 0;
        // the way round is 0 → 1 → 3 → 2.
        let mut coords = vec![LatLon::new(60.0, 24.0); 4];
        let mut arcs = vec![arc(0, 1, 10), arc(1, 2, 10), arc(1, 3, 10), arc(3, 2, 10)];
        let banned = [BannedTurn {
            from: 0,
            via: 1,
            to: 2,
        }];
        let split = TurnSplit::apply(&mut coords, &mut arcs, &banned);
        assert_eq!(split.copies(), &[1]);
        assert_eq!(split.arrivals(1).collect::<Vec<_>>(), vec![1, 4]);
        let graph = RoadGraph::new(coords, arcs).unwrap();
        let cch = Cch::new(&graph);
        let metric = cch.customize(graph.free_flow_weights());
        let mut query = CchQuery::new(&cch);
        let route = split.route(&mut query, &cch, &metric, 0, 2).unwrap();
        assert_eq!(route.cost, 30);
        let path: Vec<NodeId> = route.nodes.iter().map(|&v| split.original(v)).collect();
        assert_eq!(path, vec![0, 1, 3, 2]);
        // Starting at the junction itself, the turn is free.
        assert_eq!(
            split.route(&mut query, &cch, &metric, 1, 2).unwrap().cost,
            10
        );
        // Arriving at the junction counts whichever copy the arrival uses.
        assert_eq!(
            split.route(&mut query, &cch, &metric, 0, 1).unwrap().cost,
            10
        );
    }

    #[test]
    fn turns_naming_no_arc_or_no_node_change_nothing() {
        let mut coords = vec![LatLon::new(60.0, 24.0); 3];
        let mut arcs = vec![arc(0, 1, 10), arc(1, 2, 10)];
        let before = arcs.clone();
        let banned = [
            BannedTurn {
                from: 2,
                via: 1,
                to: 0,
            },
            BannedTurn {
                from: 0,
                via: 1,
                to: 9,
            },
        ];
        let split = TurnSplit::apply(&mut coords, &mut arcs, &banned);
        assert!(split.copies().is_empty());
        assert_eq!(arcs, before);
        assert_eq!(coords.len(), 3);
    }
}
