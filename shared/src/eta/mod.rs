//! ETA under live traffic: the routing engine, pure and shared by the server (live
//! weights from traffic) and the browser (the instant route preview in wasm).
//!
//! - [`graph`]: the road network (nodes, directed arcs, free-flow travel times).
//! - [`order`]: the nested-dissection node order (weight-independent).
//! - [`cch`]: customizable contraction hierarchies: prepared once per network,
//!   customized in about a second when the weights change, queried in well under a
//!   millisecond; every answer equals plain Dijkstra's.
//! - [`dijkstra`]: plain Dijkstra, the oracle of the tests and the naive peer.
//! - [`spatial`]: the nearest node to a coordinate.
//! - [`synth`]: synthetic city-shaped networks for large scales, from one seed.
//! - [`turns`]: turn restrictions, by splitting the restricted junctions.
//! - [`wire`]: the wire types of `/api/eta/*`.

pub mod cch;
pub mod dijkstra;
pub mod graph;
pub mod order;
pub mod spatial;
pub mod synth;
pub mod turns;
pub mod wire;

/// A route through the graph: its cost (travel time, ms) and its nodes, source first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub cost: graph::Weight,
    pub nodes: Vec<graph::NodeId>,
}
