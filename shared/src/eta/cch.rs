//! Customizable contraction hierarchies (Dibbelt, Strasser, Wagner: "Customizable
//! Contraction Hierarchies", 2016): the routing engine's speed-up for live weights.
//!
//! Three phases:
//! 1. **Preparation** ([`Cch::new`]), once per network and independent of weights: nodes
//!    are ranked by nested dissection ([`super::order`]) and contracted in that order;
//!    contracting a node joins all its higher-ranked neighbours (the chordal completion),
//!    computed by merging each node's upper neighbours into its lowest one.
//! 2. **Customization** ([`Cch::customize`]), whenever the weights change (live
//!    traffic): every edge of the hierarchy gets an upward and a downward weight, first
//!    from the road's own arcs, then lowered through every lower triangle, nodes taken
//!    in rank order. It touches no query state: the new [`Metric`] replaces the old one
//!    while queries go on.
//! 3. **Query** ([`CchQuery::route`]): the elimination-tree search. The nodes an upward
//!    search from `s` can reach are exactly `s`'s ancestors in the elimination tree (a
//!    node's parent is its lowest higher neighbour), so both searches walk up their tree
//!    paths in rank order, without a priority queue, and meet on the common ancestors.
//!    Shortcuts are unpacked through the middle node customization recorded.
//!
//! Invariant: under any weights, a query's cost equals plain Dijkstra's on the road
//! graph, and its unpacked path is made of the graph's arcs and costs exactly that.
//! The property tests check this against [`super::dijkstra`], before and after weight
//! changes.

use super::graph::{ArcId, NodeId, RoadGraph, Weight, INFINITY};
use super::order;
use super::Route;

/// No node, no edge.
const NONE: u32 = u32::MAX;

/// The weight-independent hierarchy: ranks, and the upward edges of each node (in rank
/// space: node `r` is the node of rank `r`).
#[derive(Debug, Clone)]
pub struct Cch {
    /// `order[rank]`: the graph's node of that rank.
    order: Vec<NodeId>,
    /// `rank[node]`.
    rank: Vec<u32>,
    /// Upward edges of rank `r`: `first_up[r]..first_up[r + 1]`, sorted by head.
    first_up: Vec<u32>,
    up_head: Vec<u32>,
    /// The lower end of each edge.
    up_tail: Vec<u32>,
    /// The elimination tree: the lowest upper neighbour, or `NONE` for a root.
    parent: Vec<u32>,
    /// For each arc of the graph, its hierarchy edge, and whether the arc runs up it
    /// (from its lower end to its higher).
    arc_edge: Vec<u32>,
    arc_up: Vec<bool>,
}

/// The weights of the hierarchy's edges for one traffic state.
#[derive(Debug, Clone)]
pub struct Metric {
    /// Cost from an edge's lower end to its higher one, and back.
    up: Vec<Weight>,
    down: Vec<Weight>,
    /// The lower node a shortcut passes through (`NONE`: the road's own arc).
    up_mid: Vec<u32>,
    down_mid: Vec<u32>,
}

impl Cch {
    /// Prepares the hierarchy of `graph` (nested-dissection order).
    pub fn new(graph: &RoadGraph) -> Cch {
        Cch::with_order(graph, order::nested_dissection(graph))
    }

    /// Prepares the hierarchy of `graph` for a given order (`order[rank]` = node).
    pub fn with_order(graph: &RoadGraph, order: Vec<NodeId>) -> Cch {
        let n = graph.node_count();
        assert_eq!(order.len(), n, "the order ranks every node once");
        let mut rank = vec![NONE; n];
        for (r, &v) in order.iter().enumerate() {
            assert_eq!(rank[v as usize], NONE, "node {v} is ranked twice");
            rank[v as usize] = r as u32;
        }

        // Upper neighbours in rank space, then the chordal completion: contracting `x`
        // makes its upper neighbours a clique, which merging them into the lowest one
        // (`x`'s parent) achieves once that one is contracted in turn.
        let adjacency = order::Undirected::of(graph);
        let mut upper: Vec<Vec<u32>> = vec![Vec::new(); n];
        for v in 0..n as NodeId {
            let rv = rank[v as usize];
            for &w in adjacency.of_node(v) {
                let rw = rank[w as usize];
                if rv < rw {
                    upper[rv as usize].push(rw);
                }
            }
        }
        let mut parent = vec![NONE; n];
        for x in 0..n {
            let mut mine = std::mem::take(&mut upper[x]);
            mine.sort_unstable();
            mine.dedup();
            if let Some((&p, rest)) = mine.split_first() {
                parent[x] = p;
                upper[p as usize].extend_from_slice(rest);
            }
            upper[x] = mine;
        }

        let mut first_up = Vec::with_capacity(n + 1);
        first_up.push(0u32);
        let total: usize = upper.iter().map(Vec::len).sum();
        let mut up_head = Vec::with_capacity(total);
        let mut up_tail = Vec::with_capacity(total);
        for (x, heads) in upper.into_iter().enumerate() {
            up_tail.extend(std::iter::repeat_n(x as u32, heads.len()));
            up_head.extend(heads);
            first_up.push(up_head.len() as u32);
        }

        let mut cch = Cch {
            order,
            rank,
            first_up,
            up_head,
            up_tail,
            parent,
            arc_edge: Vec::with_capacity(graph.arc_count()),
            arc_up: Vec::with_capacity(graph.arc_count()),
        };
        for tail in 0..n as NodeId {
            for arc in graph.arcs_out(tail) {
                let (rt, rh) = (cch.rank[tail as usize], cch.rank[graph.head(arc) as usize]);
                let (low, high) = (rt.min(rh), rt.max(rh));
                let edge = cch
                    .find_edge(low, high)
                    .expect("every arc of the graph is an edge of the hierarchy");
                cch.arc_edge.push(edge);
                cch.arc_up.push(rt < rh);
            }
        }
        cch
    }

    pub fn node_count(&self) -> usize {
        self.order.len()
    }

    /// The number of edges of the hierarchy (the graph's, undirected, plus shortcuts).
    pub fn edge_count(&self) -> usize {
        self.up_head.len()
    }

    fn up_edges(&self, x: u32) -> std::ops::Range<u32> {
        self.first_up[x as usize]..self.first_up[x as usize + 1]
    }

    /// The edge between ranks `low < high`, if any.
    fn find_edge(&self, low: u32, high: u32) -> Option<u32> {
        let range = self.up_edges(low);
        self.up_head[range.start as usize..range.end as usize]
            .binary_search(&high)
            .ok()
            .map(|i| range.start + i as u32)
    }

    /// The weights of every hierarchy edge for `weights` (one per arc of the graph the
    /// hierarchy was prepared for; [`INFINITY`] closes an arc).
    pub fn customize(&self, weights: &[Weight]) -> Metric {
        assert_eq!(weights.len(), self.arc_edge.len(), "one weight per arc");
        let m = self.edge_count();
        let mut metric = Metric {
            up: vec![INFINITY; m],
            down: vec![INFINITY; m],
            up_mid: vec![NONE; m],
            down_mid: vec![NONE; m],
        };
        for (arc, &w) in weights.iter().enumerate() {
            let edge = self.arc_edge[arc] as usize;
            let slot = if self.arc_up[arc] {
                &mut metric.up[edge]
            } else {
                &mut metric.down[edge]
            };
            *slot = (*slot).min(w);
        }
        // Lower triangles {x, u, v} with x lowest, x in rank order: the edges at x are
        // final by then (their own lower triangles have lower bottoms).
        for x in 0..self.node_count() as u32 {
            let edges = self.up_edges(x);
            for i in edges.clone() {
                let u = self.up_head[i as usize];
                let (x_to_u, u_to_x) = (metric.up[i as usize], metric.down[i as usize]);
                if x_to_u == INFINITY && u_to_x == INFINITY {
                    continue;
                }
                for j in i + 1..edges.end {
                    let v = self.up_head[j as usize];
                    let (x_to_v, v_to_x) = (metric.up[j as usize], metric.down[j as usize]);
                    let uv = self
                        .find_edge(u, v)
                        .expect("the upper neighbours of a node form a clique")
                        as usize;
                    let u_to_v = u_to_x.saturating_add(x_to_v);
                    if u_to_v < metric.up[uv] {
                        metric.up[uv] = u_to_v;
                        metric.up_mid[uv] = x;
                    }
                    let v_to_u = v_to_x.saturating_add(x_to_u);
                    if v_to_u < metric.down[uv] {
                        metric.down[uv] = v_to_u;
                        metric.down_mid[uv] = x;
                    }
                }
            }
        }
        metric
    }

    /// The approximate memory of the hierarchy, in bytes (a [`Metric`] adds
    /// [`Metric::memory_bytes`]).
    pub fn memory_bytes(&self) -> usize {
        4 * (self.order.len()
            + self.rank.len()
            + self.first_up.len()
            + self.up_head.len()
            + self.up_tail.len()
            + self.parent.len()
            + self.arc_edge.len())
            + self.arc_up.len()
    }
}

impl Metric {
    pub fn memory_bytes(&self) -> usize {
        4 * (self.up.len() + self.down.len() + self.up_mid.len() + self.down_mid.len())
    }
}

/// The scratch space of queries on one hierarchy; one per thread.
pub struct CchQuery {
    fwd: Vec<Weight>,
    bwd: Vec<Weight>,
    fwd_pred: Vec<u32>,
    bwd_pred: Vec<u32>,
}

/// One traversal of a hierarchy edge while unpacking.
#[derive(Clone, Copy)]
enum Step {
    /// From the edge's lower end to its higher one.
    Up(u32),
    /// From its higher end to its lower one.
    Down(u32),
}

impl CchQuery {
    pub fn new(cch: &Cch) -> CchQuery {
        let n = cch.node_count();
        CchQuery {
            fwd: vec![INFINITY; n],
            bwd: vec![INFINITY; n],
            fwd_pred: vec![NONE; n],
            bwd_pred: vec![NONE; n],
        }
    }

    /// The cost of the quickest route from `source` to `target`, without the path.
    pub fn cost(
        &mut self,
        cch: &Cch,
        metric: &Metric,
        source: NodeId,
        target: NodeId,
    ) -> Option<Weight> {
        let (best, _) = self.search(cch, metric, source, target);
        let cost = (best != INFINITY).then_some(best);
        self.reset(cch, source, target);
        cost
    }

    /// The quickest route from `source` to `target` (nodes of the graph), or `None`
    /// when there is none.
    pub fn route(
        &mut self,
        cch: &Cch,
        metric: &Metric,
        source: NodeId,
        target: NodeId,
    ) -> Option<Route> {
        let (best, meet) = self.search(cch, metric, source, target);
        let route = (best != INFINITY).then(|| {
            let (s, t) = (cch.rank[source as usize], cch.rank[target as usize]);
            let mut steps = Vec::new();
            let mut x = meet;
            while x != s {
                let edge = self.fwd_pred[x as usize];
                steps.push(Step::Up(edge));
                x = cch.up_tail[edge as usize];
            }
            steps.reverse();
            let mut x = meet;
            while x != t {
                let edge = self.bwd_pred[x as usize];
                steps.push(Step::Down(edge));
                x = cch.up_tail[edge as usize];
            }
            let mut nodes = vec![source];
            unpack(cch, metric, &steps, &mut nodes);
            Route { cost: best, nodes }
        });
        self.reset(cch, source, target);
        route
    }

    /// Both upward searches; returns the best cost and the node (rank) where they met.
    fn search(
        &mut self,
        cch: &Cch,
        metric: &Metric,
        source: NodeId,
        target: NodeId,
    ) -> (Weight, u32) {
        let (s, t) = (cch.rank[source as usize], cch.rank[target as usize]);
        self.fwd[s as usize] = 0;
        self.bwd[t as usize] = 0;
        let (mut best, mut meet) = (INFINITY, NONE);
        let (mut a, mut b) = (s, t);
        while a != NONE || b != NONE {
            // `NONE` is the largest u32, so the lower of the two is the next in rank.
            let x = a.min(b);
            let forward = a == x;
            let backward = b == x;
            if forward && backward {
                let through = self.fwd[x as usize].saturating_add(self.bwd[x as usize]);
                if through < best {
                    best = through;
                    meet = x;
                }
            }
            if forward {
                let dx = self.fwd[x as usize];
                if dx < best {
                    for e in cch.up_edges(x) {
                        let y = cch.up_head[e as usize] as usize;
                        let candidate = dx.saturating_add(metric.up[e as usize]);
                        if candidate < self.fwd[y] {
                            self.fwd[y] = candidate;
                            self.fwd_pred[y] = e;
                        }
                    }
                }
                a = cch.parent[x as usize];
            }
            if backward {
                let dx = self.bwd[x as usize];
                if dx < best {
                    for e in cch.up_edges(x) {
                        let y = cch.up_head[e as usize] as usize;
                        let candidate = dx.saturating_add(metric.down[e as usize]);
                        if candidate < self.bwd[y] {
                            self.bwd[y] = candidate;
                            self.bwd_pred[y] = e;
                        }
                    }
                }
                b = cch.parent[x as usize];
            }
        }
        (best, meet)
    }

    /// Clears what a search wrote: only ancestors of its two ends.
    fn reset(&mut self, cch: &Cch, source: NodeId, target: NodeId) {
        for start in [cch.rank[source as usize], cch.rank[target as usize]] {
            let mut x = start;
            while x != NONE {
                self.fwd[x as usize] = INFINITY;
                self.bwd[x as usize] = INFINITY;
                self.fwd_pred[x as usize] = NONE;
                self.bwd_pred[x as usize] = NONE;
                x = cch.parent[x as usize];
            }
        }
    }
}

/// Appends the graph nodes that `steps` pass through (after the first) to `nodes`,
/// unpacking every shortcut into the road's own arcs.
fn unpack(cch: &Cch, metric: &Metric, steps: &[Step], nodes: &mut Vec<NodeId>) {
    let mut stack: Vec<Step> = steps.iter().rev().copied().collect();
    while let Some(step) = stack.pop() {
        let (edge, mid) = match step {
            Step::Up(e) => (e, metric.up_mid[e as usize]),
            Step::Down(e) => (e, metric.down_mid[e as usize]),
        };
        let (low, high) = (cch.up_tail[edge as usize], cch.up_head[edge as usize]);
        if mid == NONE {
            let to = match step {
                Step::Up(_) => high,
                Step::Down(_) => low,
            };
            nodes.push(cch.order[to as usize]);
            continue;
        }
        let edge_to = |end: u32| {
            cch.find_edge(mid, end)
                .expect("a shortcut's triangle edges exist")
        };
        // low→high through mid is low→mid (down) then mid→high (up), and the reverse.
        let (first, second) = match step {
            Step::Up(_) => (Step::Down(edge_to(low)), Step::Up(edge_to(high))),
            Step::Down(_) => (Step::Down(edge_to(high)), Step::Up(edge_to(low))),
        };
        stack.push(second);
        stack.push(first);
    }
}

/// The arcs of a route's nodes, in order (`None` if two consecutive nodes are not
/// joined by an arc).
pub fn route_arcs(graph: &RoadGraph, nodes: &[NodeId]) -> Option<Vec<ArcId>> {
    nodes
        .windows(2)
        .map(|pair| graph.find_arc(pair[0], pair[1]))
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::eta::dijkstra::Dijkstra;
    use crate::eta::graph::{ArcSpec, LatLon, RoadClass};
    use crate::eta::synth::{self, SynthOptions};

    /// A random graph: `n` points, arcs between near ones, some one-way, random weights.
    fn random_graph(n: usize, seed: u64) -> RoadGraph {
        let mut rng = synth::SplitMix64::new(seed);
        let coords: Vec<LatLon> = (0..n)
            .map(|_| LatLon::new(60.0 + rng.unit() * 0.1, 24.0 + rng.unit() * 0.2))
            .collect();
        let mut arcs = Vec::new();
        for v in 0..n as u32 {
            for _ in 0..3 {
                let w = rng.below(n as u64) as u32;
                let ms = 1 + rng.below(10_000) as u32;
                let spec = |tail, head| ArcSpec {
                    tail,
                    head,
                    length_m: 1.0,
                    free_flow_ms: ms,
                    class: RoadClass::Residential,
                };
                arcs.push(spec(v, w));
                if rng.unit() < 0.7 {
                    arcs.push(spec(w, v));
                }
            }
        }
        RoadGraph::new(coords, arcs).unwrap()
    }

    fn path_cost(graph: &RoadGraph, weights: &[Weight], nodes: &[NodeId]) -> Weight {
        route_arcs(graph, nodes)
            .expect("consecutive route nodes are joined by arcs")
            .into_iter()
            .map(|arc| weights[arc as usize])
            .fold(0, Weight::saturating_add)
    }

    /// Every pair's cost equals Dijkstra's, every path is made of arcs and costs it.
    fn agrees_with_dijkstra(
        graph: &RoadGraph,
        cch: &Cch,
        weights: &[Weight],
        pairs: &[(u32, u32)],
    ) {
        let metric = cch.customize(weights);
        let mut query = CchQuery::new(cch);
        let mut oracle = Dijkstra::new(graph);
        for &(s, t) in pairs {
            let expected = oracle.route(graph, weights, s, t);
            let got = query.route(cch, &metric, s, t);
            assert_eq!(
                got.as_ref().map(|r| r.cost),
                expected.as_ref().map(|r| r.cost),
                "{s} -> {t}"
            );
            assert_eq!(query.cost(cch, &metric, s, t), expected.map(|r| r.cost));
            if let Some(route) = got {
                assert_eq!(route.nodes.first(), Some(&s));
                assert_eq!(route.nodes.last(), Some(&t));
                assert_eq!(
                    path_cost(graph, weights, &route.nodes),
                    route.cost,
                    "{s} -> {t}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// On random graphs, before and after random weight changes (closures included).
        #[test]
        fn routes_cost_what_dijkstra_finds(seed in any::<u64>(), n in 2usize..120) {
            let graph = random_graph(n, seed);
            let cch = Cch::new(&graph);
            let mut rng = synth::SplitMix64::new(seed ^ 0x5eed);
            let pairs: Vec<(u32, u32)> = (0..40)
                .map(|_| (rng.below(n as u64) as u32, rng.below(n as u64) as u32))
                .collect();
            let mut weights = graph.free_flow_weights().to_vec();
            agrees_with_dijkstra(&graph, &cch, &weights, &pairs);
            for w in weights.iter_mut() {
                match rng.below(10) {
                    0 => *w = INFINITY,
                    1..=3 => *w = w.saturating_mul(1 + rng.below(5) as u32),
                    _ => {}
                }
            }
            agrees_with_dijkstra(&graph, &cch, &weights, &pairs);
        }
    }

    /// Thousands of seeded pairs on a synthetic road network, before and after traffic.
    #[test]
    fn synthetic_network_routes_match_dijkstra_before_and_after_traffic() {
        let seed = 20_261_207;
        println!("seed {seed}");
        let graph = synth::generate(&SynthOptions::with_nodes(6_000, seed));
        let cch = Cch::new(&graph);
        let mut rng = synth::SplitMix64::new(seed);
        let n = graph.node_count() as u64;
        let pairs: Vec<(u32, u32)> = (0..2_000)
            .map(|_| (rng.below(n) as u32, rng.below(n) as u32))
            .collect();
        let mut weights = graph.free_flow_weights().to_vec();
        agrees_with_dijkstra(&graph, &cch, &weights, &pairs);
        // A jam: every arc in a box slowed fivefold, a few closed.
        for arc in 0..graph.arc_count() as u32 {
            let c = graph.coord(graph.head(arc));
            if c.lat > 60.02 && c.lat < 60.05 && c.lon > 24.02 && c.lon < 24.08 {
                weights[arc as usize] = if rng.below(20) == 0 {
                    INFINITY
                } else {
                    weights[arc as usize].saturating_mul(5)
                };
            }
        }
        agrees_with_dijkstra(&graph, &cch, &weights, &pairs);
    }

    #[test]
    fn a_route_to_itself_is_free_and_an_unreachable_one_is_none() {
        let coords = vec![
            LatLon::new(60.0, 24.0),
            LatLon::new(60.001, 24.0),
            LatLon::new(60.002, 24.0),
        ];
        let spec = |tail, head| ArcSpec {
            tail,
            head,
            length_m: 100.0,
            free_flow_ms: 7,
            class: RoadClass::Primary,
        };
        let graph = RoadGraph::new(coords, vec![spec(0, 1), spec(1, 2)]).unwrap();
        let cch = Cch::new(&graph);
        let metric = cch.customize(graph.free_flow_weights());
        let mut query = CchQuery::new(&cch);
        let itself = query.route(&cch, &metric, 1, 1).unwrap();
        assert_eq!((itself.cost, itself.nodes), (0, vec![1]));
        let forward = query.route(&cch, &metric, 0, 2).unwrap();
        assert_eq!((forward.cost, forward.nodes), (14, vec![0, 1, 2]));
        assert!(query.route(&cch, &metric, 2, 0).is_none(), "one-way");
    }
}
