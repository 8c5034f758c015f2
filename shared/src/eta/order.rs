//! The node order of the contraction hierarchy: nested dissection by geometric cuts.
//!
//! A set of nodes is cut in two by a straight line; the nodes on one side that touch the
//! other (a separator) are ranked above both halves, and each half is cut again. Road
//! networks have small cuts (a river with few bridges, neighbourhoods joined by a few
//! arterials), so each level looks along four directions (north, east and the two
//! diagonals, as inertial flow does) at every cut position that leaves at least a quarter
//! of the set on each side, counts the roads each would cross in one sweep (a prefix sum
//! over the nodes sorted along the direction), and keeps the cut crossing the fewest,
//! preferring balance on ties. The order
//! depends on the network's shape only, never on its weights: it is computed once and
//! serves every traffic state.

use super::graph::{LatLon, NodeId, RoadGraph};

/// Below this many nodes a set is ranked as it is, without cutting.
const LEAF_SIZE: usize = 4;
/// The cut may leave between this share and its complement of the set on one side.
const MIN_SIDE: f64 = 0.25;

/// The graph's arcs as undirected neighbour lists (both directions, no duplicates).
pub struct Undirected {
    first: Vec<u32>,
    neighbours: Vec<NodeId>,
}

impl Undirected {
    pub fn of(graph: &RoadGraph) -> Undirected {
        let n = graph.node_count();
        let mut pairs: Vec<(NodeId, NodeId)> = Vec::with_capacity(graph.arc_count() * 2);
        for v in 0..n as NodeId {
            for arc in graph.arcs_out(v) {
                let w = graph.head(arc);
                pairs.push((v, w));
                pairs.push((w, v));
            }
        }
        pairs.sort_unstable();
        pairs.dedup();
        let mut first = vec![0u32; n + 1];
        for &(v, _) in &pairs {
            first[v as usize + 1] += 1;
        }
        for v in 0..n {
            first[v + 1] += first[v];
        }
        Undirected {
            first,
            neighbours: pairs.into_iter().map(|(_, w)| w).collect(),
        }
    }

    pub fn of_node(&self, v: NodeId) -> &[NodeId] {
        &self.neighbours[self.first[v as usize] as usize..self.first[v as usize + 1] as usize]
    }
}

/// The nested-dissection order: `order[rank]` is the node of that rank (rank 0 is
/// contracted first, the top separator last).
pub fn nested_dissection(graph: &RoadGraph) -> Vec<NodeId> {
    let adjacency = Undirected::of(graph);
    let n = graph.node_count();
    let mut dissector = Dissector {
        coords: graph.coords(),
        adjacency: &adjacency,
        stamp: vec![0; n],
        position: vec![0; n],
        next_stamp: 0,
        order: Vec::with_capacity(n),
    };
    // An explicit stack: a set is split into (left, right, separator); the separator is
    // ranked after both halves, so it waits on the stack beneath them.
    enum Task {
        Dissect(Vec<NodeId>),
        Emit(Vec<NodeId>),
    }
    let mut stack = vec![Task::Dissect((0..n as NodeId).collect())];
    while let Some(task) = stack.pop() {
        match task {
            Task::Emit(nodes) => dissector.order.extend(nodes),
            Task::Dissect(nodes) if nodes.len() <= LEAF_SIZE => dissector.order.extend(nodes),
            Task::Dissect(nodes) => {
                let (left, right, separator) = dissector.split(nodes);
                stack.push(Task::Emit(separator));
                stack.push(Task::Dissect(right));
                stack.push(Task::Dissect(left));
            }
        }
    }
    dissector.order
}

struct Dissector<'a> {
    coords: &'a [LatLon],
    adjacency: &'a Undirected,
    /// Which side of the cut under consideration a node is on (a fresh stamp per side
    /// and candidate, so nothing needs clearing).
    stamp: Vec<u32>,
    /// A node's place in the set sorted along the direction under consideration.
    position: Vec<u32>,
    next_stamp: u32,
    order: Vec<NodeId>,
}

impl Dissector<'_> {
    fn fresh_stamp(&mut self) -> u32 {
        self.next_stamp += 1;
        self.next_stamp
    }

    /// `nodes` sorted along `axis` (ties by id, so the same set sorts the same way).
    fn sorted_along(&self, nodes: &[NodeId], axis: Axis) -> Vec<NodeId> {
        let mut sorted = nodes.to_vec();
        sorted.sort_unstable_by(|&a, &b| {
            axis.of(self.coords[a as usize])
                .total_cmp(&axis.of(self.coords[b as usize]))
                .then(a.cmp(&b))
        });
        sorted
    }

    /// Splits `nodes` into two halves and the separator between them.
    fn split(&mut self, nodes: Vec<NodeId>) -> (Vec<NodeId>, Vec<NodeId>, Vec<NodeId>) {
        let len = nodes.len();
        let member = self.fresh_stamp();
        for &v in &nodes {
            self.stamp[v as usize] = member;
        }
        let lo = ((len as f64 * MIN_SIDE) as usize).max(1);
        let hi = (len - lo).max(lo);
        // (crossing roads, distance from the middle, direction, cut position)
        let mut best: Option<(u32, usize, Axis, usize)> = None;
        let mut crossing = vec![0i64; len + 1];
        for axis in [Axis::Lat, Axis::Lon, Axis::Rising, Axis::Falling] {
            let sorted = self.sorted_along(&nodes, axis);
            for (i, &v) in sorted.iter().enumerate() {
                self.position[v as usize] = i as u32;
            }
            // A road between positions a < b crosses every cut k with a < k <= b.
            crossing.iter_mut().for_each(|c| *c = 0);
            for &v in &sorted {
                let a = self.position[v as usize] as usize;
                for &w in self.adjacency.of_node(v) {
                    if self.stamp[w as usize] != member {
                        continue;
                    }
                    let b = self.position[w as usize] as usize;
                    if a < b {
                        crossing[a + 1] += 1;
                        crossing[b + 1] -= 1;
                    }
                }
            }
            let mut running = 0i64;
            for (k, delta) in crossing.iter().enumerate().take(hi + 1) {
                running += delta;
                if k < lo {
                    continue;
                }
                let score = (running as u32, k.abs_diff(len / 2));
                if best.is_none_or(|b| score < (b.0, b.1)) {
                    best = Some((score.0, score.1, axis, k));
                }
            }
        }
        let (_, _, axis, at) = best.expect("a set of more than one node has a cut");
        let sorted = self.sorted_along(&nodes, axis);
        let (left, right) = sorted.split_at(at);
        // The separator: the nodes of the side with fewer of them that touch the other.
        let left_stamp = self.fresh_stamp();
        for &v in left {
            self.stamp[v as usize] = left_stamp;
        }
        let right_stamp = self.fresh_stamp();
        for &v in right {
            self.stamp[v as usize] = right_stamp;
        }
        let touching = |side: &[NodeId], other: u32, stamp: &[u32]| -> Vec<bool> {
            side.iter()
                .map(|&v| {
                    self.adjacency
                        .of_node(v)
                        .iter()
                        .any(|&w| stamp[w as usize] == other)
                })
                .collect()
        };
        let left_touch = touching(left, right_stamp, &self.stamp);
        let right_touch = touching(right, left_stamp, &self.stamp);
        let count = |t: &[bool]| t.iter().filter(|&&x| x).count();
        let (near, near_touch, far, left_is_near) = if count(&left_touch) <= count(&right_touch) {
            (left, left_touch, right, true)
        } else {
            (right, right_touch, left, false)
        };
        let mut separator = Vec::new();
        let mut rest = Vec::with_capacity(near.len());
        for (&v, touches) in near.iter().zip(near_touch) {
            if touches {
                separator.push(v);
            } else {
                rest.push(v);
            }
        }
        if left_is_near {
            (rest, far.to_vec(), separator)
        } else {
            (far.to_vec(), rest, separator)
        }
    }
}

/// A direction to sort along (coordinates in degrees; at the scale of a city the
/// diagonals need no correction for the meridians' convergence).
#[derive(Clone, Copy)]
enum Axis {
    Lat,
    Lon,
    Rising,
    Falling,
}

impl Axis {
    fn of(self, c: LatLon) -> f64 {
        match self {
            Axis::Lat => c.lat,
            Axis::Lon => c.lon,
            Axis::Rising => c.lat + c.lon,
            Axis::Falling => c.lat - c.lon,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eta::synth;

    #[test]
    fn the_order_is_a_permutation_of_the_nodes() {
        let graph = synth::generate(&synth::SynthOptions::with_nodes(2_000, 7));
        let order = nested_dissection(&graph);
        let mut seen = order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..graph.node_count() as NodeId).collect::<Vec<_>>());
    }
}
