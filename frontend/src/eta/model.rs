//! The page's pure model: the road graph rebuilt from `/api/eta/map`, the live weights
//! from `/api/eta/traffic`, the canvas projection and the traffic colours.
//!
//! Invariant: the graph keeps the server's arc order (arcs arrive grouped by tail and
//! sorted by head, which is the order `RoadGraph` keeps), so `speed_pct[i]` and the
//! weights line up with arc `i` on both sides, and a preview under the same weights
//! costs what the server's route costs.

use meridian_shared::eta::cch::{Cch, CchQuery, Metric};
use meridian_shared::eta::graph::{
    ArcSpec, GraphError, LatLon, NodeId, RoadClass, RoadGraph, Weight, INFINITY,
};
use meridian_shared::eta::spatial::NearestIndex;
use meridian_shared::eta::turns::TurnSplit;
use meridian_shared::eta::wire::MapResponse;

/// A dragged end snaps to a node no farther than this.
pub const SNAP_M: f64 = 300.0;

/// The network as the page routes on it.
pub struct Engine {
    pub graph: RoadGraph,
    pub cch: Cch,
    pub nearest: NearestIndex,
    pub metric: Metric,
    pub weights: Vec<Weight>,
    /// The junctions split by turn restrictions (as the server split them).
    pub turns: TurnSplit,
    query: CchQuery,
}

/// A route the page computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    pub eta_s: f64,
    pub distance_m: f64,
    pub path: Vec<[f64; 2]>,
}

/// The graph of a map payload.
pub fn graph_of(map: &MapResponse) -> Result<RoadGraph, GraphError> {
    let coords = map
        .nodes
        .chunks_exact(2)
        .map(|c| LatLon::new(c[0] as f64 / 1e6, c[1] as f64 / 1e6))
        .collect::<Vec<_>>();
    let arcs = map
        .arcs
        .chunks_exact(3)
        .map(|a| {
            let length = coords
                .get(a[0] as usize)
                .zip(coords.get(a[1] as usize))
                .map(|(x, y)| x.distance_m(*y))
                .unwrap_or(0.0);
            ArcSpec {
                tail: a[0],
                head: a[1],
                length_m: length as f32,
                free_flow_ms: a[2],
                class: RoadClass::Residential,
            }
        })
        .collect();
    RoadGraph::new(coords, arcs)
}

/// Live weights from speed percentages (0 closes a road).
pub fn live_weights(free_flow: &[Weight], speed_pct: &[u8]) -> Vec<Weight> {
    free_flow
        .iter()
        .enumerate()
        .map(|(i, &w)| match speed_pct.get(i).copied().unwrap_or(100) {
            0 => INFINITY,
            pct => ((w as f64 * 100.0 / pct as f64).round() as Weight).max(1),
        })
        .collect()
}

impl Engine {
    pub fn new(map: &MapResponse) -> Result<Engine, GraphError> {
        let graph = graph_of(map)?;
        let cch = Cch::new(&graph);
        let weights = graph.free_flow_weights().to_vec();
        let metric = cch.customize(&weights);
        let originals = graph.node_count().saturating_sub(map.turn_copies.len());
        let turns = TurnSplit::from_copies(originals, map.turn_copies.clone());
        Ok(Engine {
            nearest: NearestIndex::new(&graph.coords()[..originals]),
            turns,
            query: CchQuery::new(&cch),
            graph,
            cch,
            metric,
            weights,
        })
    }

    /// Takes the server's latest speeds (customizing the hierarchy again).
    pub fn set_traffic(&mut self, speed_pct: &[u8]) {
        let weights = live_weights(self.graph.free_flow_weights(), speed_pct);
        if weights != self.weights {
            self.metric = self.cch.customize(&weights);
            self.weights = weights;
        }
    }

    pub fn snap(&self, at: [f64; 2]) -> Option<NodeId> {
        self.nearest
            .nearest(LatLon::new(at[0], at[1]), SNAP_M)
            .map(|(v, _)| v)
    }

    /// The quickest route between two points under the current weights.
    pub fn preview(&mut self, from: [f64; 2], to: [f64; 2]) -> Option<Preview> {
        let (s, t) = (self.snap(from)?, self.snap(to)?);
        let route = self
            .turns
            .route(&mut self.query, &self.cch, &self.metric, s, t)?;
        let distance_m = route
            .nodes
            .windows(2)
            .filter_map(|p| self.graph.find_arc(p[0], p[1]))
            .map(|a| self.graph.length_m(a) as f64)
            .sum();
        Some(Preview {
            eta_s: route.cost as f64 / 1000.0,
            distance_m,
            path: route
                .nodes
                .iter()
                .map(|&v| {
                    let c = self.graph.coord(v);
                    [c.lat, c.lon]
                })
                .collect(),
        })
    }
}

/// Degrees to canvas pixels (equirectangular at the map's middle latitude), fitting
/// `bounds` (`[south, west, north, east]`) in `width`×`height` with a margin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    south: f64,
    west: f64,
    scale: f64,
    cos_lat: f64,
    height: f64,
    margin: f64,
}

impl Projection {
    pub fn fit(bounds: [f64; 4], width: f64, height: f64) -> Projection {
        let margin = 12.0;
        let cos_lat = ((bounds[0] + bounds[2]) / 2.0).to_radians().cos();
        let w = ((bounds[3] - bounds[1]) * cos_lat).max(1e-9);
        let h = (bounds[2] - bounds[0]).max(1e-9);
        let scale = ((width - 2.0 * margin) / w).min((height - 2.0 * margin) / h);
        Projection {
            south: bounds[0],
            west: bounds[1],
            scale,
            cos_lat,
            height,
            margin,
        }
    }

    pub fn to_px(&self, lat: f64, lon: f64) -> (f64, f64) {
        (
            self.margin + (lon - self.west) * self.cos_lat * self.scale,
            self.height - self.margin - (lat - self.south) * self.scale,
        )
    }

    pub fn to_deg(&self, x: f64, y: f64) -> [f64; 2] {
        [
            self.south + (self.height - self.margin - y) / self.scale,
            self.west + (x - self.margin) / (self.cos_lat * self.scale),
        ]
    }
}

/// The colour of a road at `pct` of its free-flow speed.
pub fn traffic_colour(pct: u8) -> &'static str {
    match pct {
        0 => "#222222",
        1..=39 => "#c62828",
        40..=69 => "#ef6c00",
        70..=89 => "#f9a825",
        _ => "#9e9e9e",
    }
}

/// "4 min 05 s" for a duration in seconds.
pub fn format_eta(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    if total < 60 {
        format!("{total} s")
    } else {
        format!("{} min {:02} s", total / 60, total % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> MapResponse {
        // A square 0-1-2-3 with one diagonal 0->2 that is slow.
        MapResponse {
            source: "test".into(),
            synthetic: true,
            bounds: [60.16, 24.93, 60.17, 24.95],
            nodes: vec![
                60_160_000, 24_930_000, 60_160_000, 24_950_000, 60_170_000, 24_950_000, 60_170_000,
                24_930_000,
            ],
            arcs: vec![
                0, 1, 10_000, 0, 2, 50_000, 0, 3, 10_000, 1, 0, 10_000, 1, 2, 10_000, 2, 1, 10_000,
                2, 3, 10_000, 3, 0, 10_000, 3, 2, 10_000,
            ],
            turn_copies: Vec::new(),
            turn_restrictions_applied: 0,
            turn_restrictions_ignored: 0,
        }
    }

    #[test]
    fn the_graph_keeps_the_servers_arc_order_and_routes_with_live_weights() {
        let mut engine = Engine::new(&map()).unwrap();
        assert_eq!(engine.graph.arc_count(), 9);
        assert_eq!(engine.graph.find_arc(0, 2), Some(1));
        let a = engine.preview([60.16, 24.93], [60.17, 24.95]).unwrap();
        assert_eq!(a.eta_s, 20.0);
        // Both sides of the square jammed to 10 %: the diagonal wins.
        let mut pct = vec![100u8; 9];
        for arc in [0usize, 2, 4, 8] {
            pct[arc] = 10;
        }
        engine.set_traffic(&pct);
        let b = engine.preview([60.16, 24.93], [60.17, 24.95]).unwrap();
        assert_eq!(b.eta_s, 50.0);
        assert_eq!(b.path.len(), 2);
        assert!(
            engine.preview([61.0, 25.0], [60.17, 24.95]).is_none(),
            "off the map"
        );
    }

    #[test]
    fn projection_round_trips() {
        let p = Projection::fit([60.16, 24.93, 60.18, 24.96], 800.0, 600.0);
        let (x, y) = p.to_px(60.17, 24.945);
        let back = p.to_deg(x, y);
        assert!((back[0] - 60.17).abs() < 1e-9 && (back[1] - 24.945).abs() < 1e-9);
        let (_, y_south) = p.to_px(60.16, 24.93);
        let (_, y_north) = p.to_px(60.18, 24.93);
        assert!(y_north < y_south, "north is up");
    }

    #[test]
    fn weights_and_words() {
        assert_eq!(
            live_weights(&[1000, 1000, 1000], &[100, 50, 0]),
            vec![1000, 2000, INFINITY]
        );
        assert_eq!(format_eta(42.4), "42 s");
        assert_eq!(format_eta(245.0), "4 min 05 s");
        assert_eq!(traffic_colour(20), "#c62828");
    }
}
