//! Plain Dijkstra on the road graph under any weights: the oracle the fast engine is
//! tested against, and the naive peer of the benchmark.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::graph::{NodeId, RoadGraph, Weight, INFINITY};
use super::Route;

/// A reusable Dijkstra search (its arrays are sized to the graph once).
pub struct Dijkstra {
    dist: Vec<Weight>,
    pred: Vec<NodeId>,
    touched: Vec<NodeId>,
    heap: BinaryHeap<Reverse<(Weight, NodeId)>>,
}

const NONE: NodeId = NodeId::MAX;

impl Dijkstra {
    pub fn new(graph: &RoadGraph) -> Dijkstra {
        Dijkstra {
            dist: vec![INFINITY; graph.node_count()],
            pred: vec![NONE; graph.node_count()],
            touched: Vec::new(),
            heap: BinaryHeap::new(),
        }
    }

    /// The quickest route from `source` to `target` under `weights` (indexed by arc),
    /// or `None` when `target` cannot be reached.
    pub fn route(
        &mut self,
        graph: &RoadGraph,
        weights: &[Weight],
        source: NodeId,
        target: NodeId,
    ) -> Option<Route> {
        for &v in &self.touched {
            self.dist[v as usize] = INFINITY;
            self.pred[v as usize] = NONE;
        }
        self.touched.clear();
        self.heap.clear();
        self.dist[source as usize] = 0;
        self.touched.push(source);
        self.heap.push(Reverse((0, source)));
        while let Some(Reverse((d, v))) = self.heap.pop() {
            if d > self.dist[v as usize] {
                continue;
            }
            if v == target {
                break;
            }
            for arc in graph.arcs_out(v) {
                let w = weights[arc as usize];
                if w == INFINITY {
                    continue;
                }
                let head = graph.head(arc);
                let candidate = d.saturating_add(w);
                if candidate < self.dist[head as usize] {
                    if self.dist[head as usize] == INFINITY {
                        self.touched.push(head);
                    }
                    self.dist[head as usize] = candidate;
                    self.pred[head as usize] = v;
                    self.heap.push(Reverse((candidate, head)));
                }
            }
        }
        let cost = self.dist[target as usize];
        if cost == INFINITY {
            return None;
        }
        let mut nodes = vec![target];
        let mut v = target;
        while v != source {
            v = self.pred[v as usize];
            nodes.push(v);
        }
        nodes.reverse();
        Some(Route { cost, nodes })
    }
}
