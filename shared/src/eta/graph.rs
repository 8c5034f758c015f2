//! The road network: nodes with coordinates and directed arcs in compressed sparse rows
//! (the arcs leaving node `v` are `first_out[v]..first_out[v + 1]`), each with its
//! length and its free-flow travel time. A two-way road is two arcs.
//!
//! Invariants: arcs are grouped by tail and sorted by head within a tail; no arc joins a
//! node to itself; of parallel arcs (same tail and head) only the fastest is kept, so an
//! arc is named by its tail and head alone.

use std::fmt;

/// A node's index in a [`RoadGraph`].
pub type NodeId = u32;
/// An arc's index in a [`RoadGraph`].
pub type ArcId = u32;
/// Travel time in milliseconds. [`INFINITY`] means "no way through".
pub type Weight = u32;

/// The weight of an arc that cannot be used, and the distance to a node not reached.
pub const INFINITY: Weight = Weight::MAX;

/// A point on the map, in degrees (WGS 84).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

impl LatLon {
    pub fn new(lat: f64, lon: f64) -> LatLon {
        LatLon { lat, lon }
    }

    /// The great-circle distance to `other`, in metres (haversine, mean Earth radius).
    pub fn distance_m(self, other: LatLon) -> f64 {
        const EARTH_RADIUS_M: f64 = 6_371_008.8;
        let (phi1, phi2) = (self.lat.to_radians(), other.lat.to_radians());
        let dphi = phi2 - phi1;
        let dlambda = (other.lon - self.lon).to_radians();
        let a =
            (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().asin()
    }
}

/// The class of a road, from motorway down to a residential street; it sets the
/// free-flow speed when the data names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoadClass {
    Motorway,
    Trunk,
    Primary,
    Secondary,
    Tertiary,
    Residential,
    Service,
}

impl RoadClass {
    /// Free-flow speed in km/h when the road has no speed limit of its own.
    pub fn default_speed_kmh(self) -> f64 {
        match self {
            RoadClass::Motorway => 100.0,
            RoadClass::Trunk => 80.0,
            RoadClass::Primary => 60.0,
            RoadClass::Secondary => 50.0,
            RoadClass::Tertiary => 40.0,
            RoadClass::Residential => 30.0,
            RoadClass::Service => 15.0,
        }
    }
}

/// Travel time in milliseconds for `length_m` at `speed_kmh` (at least 1 ms: a zero-cost
/// arc would make distinct routes tie in ways that hide mistakes).
pub fn travel_ms(length_m: f64, speed_kmh: f64) -> Weight {
    let ms = length_m / (speed_kmh / 3.6) * 1000.0;
    (ms.round() as u64).clamp(1, (INFINITY - 1) as u64) as Weight
}

/// One directed road segment, as a builder takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArcSpec {
    pub tail: NodeId,
    pub head: NodeId,
    pub length_m: f32,
    pub free_flow_ms: Weight,
    pub class: RoadClass,
}

/// Why a graph could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphError {
    /// An arc names a node that does not exist.
    UnknownNode { arc: usize, node: NodeId },
    /// More nodes or arcs than 32-bit ids can name.
    TooLarge,
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphError::UnknownNode { arc, node } => {
                write!(f, "arc {arc} names node {node}, which does not exist")
            }
            GraphError::TooLarge => write!(f, "more nodes or arcs than 32-bit ids can name"),
        }
    }
}

impl std::error::Error for GraphError {}

/// A directed road network.
#[derive(Debug, Clone)]
pub struct RoadGraph {
    coords: Vec<LatLon>,
    first_out: Vec<u32>,
    head: Vec<NodeId>,
    length_m: Vec<f32>,
    free_flow_ms: Vec<Weight>,
    class: Vec<RoadClass>,
}

impl RoadGraph {
    /// Builds the graph from its nodes' coordinates and its arcs (in any order). Loops
    /// are dropped; of parallel arcs the fastest stays.
    pub fn new(coords: Vec<LatLon>, mut arcs: Vec<ArcSpec>) -> Result<RoadGraph, GraphError> {
        let n = coords.len();
        if n >= u32::MAX as usize || arcs.len() >= u32::MAX as usize {
            return Err(GraphError::TooLarge);
        }
        for (i, arc) in arcs.iter().enumerate() {
            for node in [arc.tail, arc.head] {
                if node as usize >= n {
                    return Err(GraphError::UnknownNode { arc: i, node });
                }
            }
        }
        arcs.retain(|a| a.tail != a.head);
        arcs.sort_by_key(|a| (a.tail, a.head, a.free_flow_ms));
        arcs.dedup_by_key(|a| (a.tail, a.head));
        let mut first_out = vec![0u32; n + 1];
        for arc in &arcs {
            first_out[arc.tail as usize + 1] += 1;
        }
        for v in 0..n {
            first_out[v + 1] += first_out[v];
        }
        Ok(RoadGraph {
            coords,
            first_out,
            head: arcs.iter().map(|a| a.head).collect(),
            length_m: arcs.iter().map(|a| a.length_m).collect(),
            free_flow_ms: arcs.iter().map(|a| a.free_flow_ms).collect(),
            class: arcs.iter().map(|a| a.class).collect(),
        })
    }

    pub fn node_count(&self) -> usize {
        self.coords.len()
    }

    pub fn arc_count(&self) -> usize {
        self.head.len()
    }

    pub fn coord(&self, v: NodeId) -> LatLon {
        self.coords[v as usize]
    }

    pub fn coords(&self) -> &[LatLon] {
        &self.coords
    }

    /// The arcs leaving `v`.
    pub fn arcs_out(&self, v: NodeId) -> std::ops::Range<ArcId> {
        self.first_out[v as usize]..self.first_out[v as usize + 1]
    }

    pub fn head(&self, arc: ArcId) -> NodeId {
        self.head[arc as usize]
    }

    /// The tail of `arc` (a binary search over the rows).
    pub fn tail(&self, arc: ArcId) -> NodeId {
        (self.first_out.partition_point(|&first| first <= arc) - 1) as NodeId
    }

    pub fn length_m(&self, arc: ArcId) -> f32 {
        self.length_m[arc as usize]
    }

    pub fn class(&self, arc: ArcId) -> RoadClass {
        self.class[arc as usize]
    }

    /// Every arc's free-flow travel time, indexed by [`ArcId`]: the weights of an empty
    /// road.
    pub fn free_flow_weights(&self) -> &[Weight] {
        &self.free_flow_ms
    }

    /// The arc from `tail` to `head`, if there is one.
    pub fn find_arc(&self, tail: NodeId, head: NodeId) -> Option<ArcId> {
        let range = self.arcs_out(tail);
        let heads = &self.head[range.start as usize..range.end as usize];
        heads
            .binary_search(&head)
            .ok()
            .map(|i| range.start + i as ArcId)
    }

    /// The approximate memory the graph holds, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.coords.capacity() * std::mem::size_of::<LatLon>()
            + self.first_out.capacity() * 4
            + self.head.capacity() * 4
            + self.length_m.capacity() * 4
            + self.free_flow_ms.capacity() * 4
            + self.class.capacity() * std::mem::size_of::<RoadClass>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arc(tail: NodeId, head: NodeId, ms: Weight) -> ArcSpec {
        ArcSpec {
            tail,
            head,
            length_m: 10.0,
            free_flow_ms: ms,
            class: RoadClass::Residential,
        }
    }

    #[test]
    fn arcs_are_grouped_by_tail_with_loops_dropped_and_the_fastest_parallel_kept() {
        let coords = vec![LatLon::new(60.0, 24.0); 3];
        let graph = RoadGraph::new(
            coords,
            vec![
                arc(2, 0, 5),
                arc(0, 1, 9),
                arc(0, 1, 4),
                arc(1, 1, 1),
                arc(0, 2, 7),
            ],
        )
        .unwrap();
        assert_eq!(graph.arc_count(), 3);
        assert_eq!(graph.arcs_out(0), 0..2);
        assert_eq!(graph.arcs_out(1), 2..2);
        let a01 = graph.find_arc(0, 1).unwrap();
        assert_eq!(graph.free_flow_weights()[a01 as usize], 4);
        assert_eq!(graph.tail(graph.find_arc(2, 0).unwrap()), 2);
        assert_eq!(graph.find_arc(1, 0), None);
    }

    #[test]
    fn an_arc_to_a_missing_node_is_refused() {
        let err = RoadGraph::new(vec![LatLon::new(0.0, 0.0)], vec![arc(0, 3, 1)]).unwrap_err();
        assert_eq!(err, GraphError::UnknownNode { arc: 0, node: 3 });
    }

    #[test]
    fn distances_and_travel_times() {
        // One degree of latitude is about 111.2 km.
        let d = LatLon::new(60.0, 24.0).distance_m(LatLon::new(61.0, 24.0));
        assert!((d - 111_195.0).abs() < 50.0, "{d}");
        assert_eq!(travel_ms(100.0, 36.0), 10_000);
        assert_eq!(travel_ms(0.0, 50.0), 1);
    }
}
