//! The network the server routes on: the road graph (the largest strongly connected part
//! of the map, so that every snapped point can reach every other), its customizable
//! hierarchy, and the two spatial indexes map matching and snapping use. Turn
//! restrictions split their junctions ([`TurnSplit`]): routes end at a junction or any of
//! its copies, points snap to original nodes only, and map matching and traffic see
//! original roads only (a shadow arc takes its original's weight).

use std::path::Path;

use meridian_shared::eta::cch::Cch;
use meridian_shared::eta::graph::{ArcId, ArcSpec, LatLon, NodeId, RoadGraph};
use meridian_shared::eta::spatial::NearestIndex;
use meridian_shared::eta::synth::{self, SynthOptions};
use meridian_shared::eta::turns::{BannedTurn, TurnSplit};

use super::osm::{self, OsmError};

/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_195.0;

/// Where the network came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapSource {
    /// An OpenStreetMap extract (the file's name).
    Osm(String),
    /// A seeded synthetic city over central Helsinki (no map file configured).
    Synthetic { nodes: usize, seed: u64 },
}

impl MapSource {
    pub fn describe(&self) -> String {
        match self {
            MapSource::Osm(file) => format!("OpenStreetMap extract {file}"),
            MapSource::Synthetic { nodes, seed } => format!(
                "synthetic network of {nodes} nodes (seed {seed}) over central Helsinki: no map file configured"
            ),
        }
    }
}

/// A prepared network: everything that does not change with traffic.
pub struct Network {
    pub graph: RoadGraph,
    pub cch: Cch,
    pub nodes: NearestIndex,
    pub segments: SegmentIndex,
    /// `tails[arc]` (the graph finds a tail by binary search).
    pub tails: Vec<NodeId>,
    pub source: MapSource,
    /// The junctions split by turn restrictions.
    pub turns: TurnSplit,
    /// `canonical[arc]`: the arc that is the same road (a shadow's original, else itself).
    pub canonical: Vec<ArcId>,
    pub turn_restrictions_applied: usize,
    pub turn_restrictions_ignored: usize,
    /// South-west and north-east corners of the nodes.
    pub bounds: (LatLon, LatLon),
}

impl Network {
    /// The network of an OpenStreetMap extract.
    pub fn from_osm(path: &Path) -> Result<Network, OsmError> {
        let map = osm::load(path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut network = Network::build(
            map.coords,
            map.arcs,
            &map.banned_turns,
            MapSource::Osm(name),
        );
        network.turn_restrictions_applied = map.turn_restrictions_applied;
        network.turn_restrictions_ignored = map.turn_restrictions - map.turn_restrictions_applied;
        Ok(network)
    }

    /// A synthetic city of about `nodes` intersections over central Helsinki.
    pub fn synthetic(nodes: usize, seed: u64) -> Network {
        let mut options = SynthOptions::with_nodes(nodes, seed);
        options.spacing_m = 60.0;
        let graph = synth::generate(&options);
        // The generator places its city at (60.0, 24.0); move it to central Helsinki.
        let (dlat, dlon) = (60.164 - 60.0, 24.935 - 24.0);
        let coords = graph
            .coords()
            .iter()
            .map(|c| LatLon::new(c.lat + dlat, c.lon + dlon))
            .collect();
        Network::build(
            coords,
            arc_specs(&graph),
            &[],
            MapSource::Synthetic { nodes, seed },
        )
    }

    /// Builds the network of the largest strongly connected part of `coords`/`arcs`,
    /// with the `banned` turns (in the ids of `coords`) that stay inside it.
    pub fn build(
        coords: Vec<LatLon>,
        arcs: Vec<ArcSpec>,
        banned: &[BannedTurn],
        source: MapSource,
    ) -> Network {
        let (mut coords, mut arcs, new_id) = largest_component_renumbered(coords, arcs);
        let banned: Vec<BannedTurn> = banned
            .iter()
            .filter_map(|t| {
                let id = |v: NodeId| new_id.get(v as usize).copied().flatten();
                Some(BannedTurn {
                    from: id(t.from)?,
                    via: id(t.via)?,
                    to: id(t.to)?,
                })
            })
            .collect();
        let turns = TurnSplit::apply(&mut coords, &mut arcs, &banned);
        let graph = RoadGraph::new(coords, arcs).expect("arcs name kept nodes only");
        let tails: Vec<NodeId> = (0..graph.node_count() as NodeId)
            .flat_map(|v| graph.arcs_out(v).map(move |_| v))
            .collect();
        let canonical = turns.canonical_arcs(&graph);
        let cch = Cch::new(&graph);
        let nodes = NearestIndex::new(&graph.coords()[..turns.originals()]);
        let segments = SegmentIndex::new(&graph, turns.originals());
        let mut bounds = (LatLon::new(90.0, 180.0), LatLon::new(-90.0, -180.0));
        for c in graph.coords() {
            bounds.0 = LatLon::new(bounds.0.lat.min(c.lat), bounds.0.lon.min(c.lon));
            bounds.1 = LatLon::new(bounds.1.lat.max(c.lat), bounds.1.lon.max(c.lon));
        }
        Network {
            graph,
            cch,
            nodes,
            segments,
            tails,
            source,
            turns,
            canonical,
            turn_restrictions_applied: 0,
            turn_restrictions_ignored: 0,
            bounds,
        }
    }

    /// The node a coordinate snaps to, if it is on the map (within `max_m` of a node).
    pub fn snap(&self, point: LatLon, max_m: f64) -> Option<NodeId> {
        self.nodes.nearest(point, max_m).map(|(node, _)| node)
    }

    /// A digest of the graph (nodes, arcs, free-flow times), the same on every build
    /// and instance that prepared the same map: instances share traffic by arc id only
    /// when their digests agree.
    pub fn fingerprint(&self) -> u64 {
        // FNV-1a, 64-bit.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |value: u64| {
            for byte in value.to_le_bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        let graph = &self.graph;
        eat(graph.node_count() as u64);
        eat(graph.arc_count() as u64);
        for c in graph.coords() {
            eat(c.lat.to_bits());
            eat(c.lon.to_bits());
        }
        for (arc, &weight) in graph.free_flow_weights().iter().enumerate() {
            eat(u64::from(graph.head(arc as ArcId)));
            eat(u64::from(weight));
        }
        hash
    }

    /// The arcs of a node path (consecutive nodes are joined by an arc).
    pub fn path_arcs(&self, nodes: &[NodeId]) -> Vec<ArcId> {
        nodes
            .windows(2)
            .filter_map(|p| self.graph.find_arc(p[0], p[1]))
            .collect()
    }

    /// The length of a node path in metres.
    pub fn path_length_m(&self, nodes: &[NodeId]) -> f64 {
        self.path_arcs(nodes)
            .iter()
            .map(|&a| self.graph.length_m(a) as f64)
            .sum()
    }

    pub fn memory_bytes(&self) -> usize {
        self.graph.memory_bytes()
            + self.cch.memory_bytes()
            + self.segments.memory_bytes()
            + self.tails.len() * 4
            + self.graph.node_count() * 24
    }
}

/// The arcs of `graph` as a builder takes them.
pub fn arc_specs(graph: &RoadGraph) -> Vec<ArcSpec> {
    (0..graph.node_count() as NodeId)
        .flat_map(|v| {
            graph.arcs_out(v).map(move |arc| ArcSpec {
                tail: v,
                head: graph.head(arc),
                length_m: graph.length_m(arc),
                free_flow_ms: graph.free_flow_weights()[arc as usize],
                class: graph.class(arc),
            })
        })
        .collect()
}

/// Keeps the largest strongly connected component (Kosaraju, iterative), renumbered.
pub fn largest_component(coords: Vec<LatLon>, arcs: Vec<ArcSpec>) -> (Vec<LatLon>, Vec<ArcSpec>) {
    let (coords, arcs, _) = largest_component_renumbered(coords, arcs);
    (coords, arcs)
}

/// [`largest_component`], with each old node's new id (`None`: left out).
fn largest_component_renumbered(
    coords: Vec<LatLon>,
    arcs: Vec<ArcSpec>,
) -> (Vec<LatLon>, Vec<ArcSpec>, Vec<Option<NodeId>>) {
    let n = coords.len();
    let adjacency = |reverse: bool| {
        let mut first = vec![0u32; n + 1];
        for a in &arcs {
            let from = if reverse { a.head } else { a.tail };
            first[from as usize + 1] += 1;
        }
        for v in 0..n {
            first[v + 1] += first[v];
        }
        let mut next = first.clone();
        let mut to = vec![0u32; arcs.len()];
        for a in &arcs {
            let (from, dest) = if reverse {
                (a.head, a.tail)
            } else {
                (a.tail, a.head)
            };
            to[next[from as usize] as usize] = dest;
            next[from as usize] += 1;
        }
        (first, to)
    };
    let (first, to) = adjacency(false);
    // Pass 1: finishing order of a depth-first search on the graph.
    let mut visited = vec![false; n];
    let mut finished = Vec::with_capacity(n);
    let mut stack: Vec<(u32, u32)> = Vec::new();
    for start in 0..n as u32 {
        if visited[start as usize] {
            continue;
        }
        visited[start as usize] = true;
        stack.push((start, first[start as usize]));
        while let Some(&mut (v, ref mut at)) = stack.last_mut() {
            if *at < first[v as usize + 1] {
                let w = to[*at as usize];
                *at += 1;
                if !visited[w as usize] {
                    visited[w as usize] = true;
                    stack.push((w, first[w as usize]));
                }
            } else {
                finished.push(v);
                stack.pop();
            }
        }
    }
    // Pass 2: components on the reversed graph, in reverse finishing order.
    let (rfirst, rto) = adjacency(true);
    const NONE: u32 = u32::MAX;
    let mut component = vec![NONE; n];
    let mut sizes = Vec::new();
    let mut plain = Vec::new();
    for &start in finished.iter().rev() {
        if component[start as usize] != NONE {
            continue;
        }
        let id = sizes.len() as u32;
        let mut size = 0usize;
        component[start as usize] = id;
        plain.push(start);
        while let Some(v) = plain.pop() {
            size += 1;
            for i in rfirst[v as usize]..rfirst[v as usize + 1] {
                let w = rto[i as usize];
                if component[w as usize] == NONE {
                    component[w as usize] = id;
                    plain.push(w);
                }
            }
        }
        sizes.push(size);
    }
    let Some(biggest) = (0..sizes.len()).max_by_key(|&c| sizes[c]) else {
        return (coords, arcs, Vec::new());
    };
    let mut new_id = vec![NONE; n];
    let mut kept = Vec::new();
    for v in 0..n {
        if component[v] == biggest as u32 {
            new_id[v] = kept.len() as u32;
            kept.push(coords[v]);
        }
    }
    let arcs = arcs
        .into_iter()
        .filter(|a| new_id[a.tail as usize] != NONE && new_id[a.head as usize] != NONE)
        .map(|a| ArcSpec {
            tail: new_id[a.tail as usize],
            head: new_id[a.head as usize],
            ..a
        })
        .collect();
    let new_id = new_id
        .into_iter()
        .map(|v| (v != NONE).then_some(v))
        .collect();
    (kept, arcs, new_id)
}

/// A point near an arc: how far, and where along it (metres from the tail).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    pub arc: ArcId,
    pub distance_m: f64,
    pub offset_m: f64,
}

/// The arcs (straight segments) bucketed by a uniform grid, for "which roads are within
/// r metres of this GPS fix".
pub struct SegmentIndex {
    origin: LatLon,
    cos_lat: f64,
    cell_m: f64,
    cols: usize,
    rows: usize,
    first: Vec<u32>,
    arcs: Vec<ArcId>,
    /// Each arc's ends in local metres.
    ends: Vec<[(f64, f64); 2]>,
}

impl SegmentIndex {
    /// Indexes the arcs whose tail is one of the first `originals` nodes (the shadow
    /// arcs of split junctions are left out: map matching places points on real roads).
    pub fn new(graph: &RoadGraph, originals: usize) -> SegmentIndex {
        const CELL_M: f64 = 100.0;
        let coords = graph.coords();
        let mut origin = LatLon::new(90.0, 180.0);
        let mut max = LatLon::new(-90.0, -180.0);
        for c in coords {
            origin = LatLon::new(origin.lat.min(c.lat), origin.lon.min(c.lon));
            max = LatLon::new(max.lat.max(c.lat), max.lon.max(c.lon));
        }
        if coords.is_empty() {
            origin = LatLon::new(0.0, 0.0);
            max = origin;
        }
        let cos_lat = ((origin.lat + max.lat) / 2.0).to_radians().cos();
        let local = |c: LatLon| {
            (
                (c.lon - origin.lon) * M_PER_DEG * cos_lat,
                (c.lat - origin.lat) * M_PER_DEG,
            )
        };
        let (w, h) = local(max);
        let cols = ((w / CELL_M).ceil() as usize).max(1);
        let rows = ((h / CELL_M).ceil() as usize).max(1);
        let mut ends = Vec::with_capacity(graph.arc_count());
        let mut cells_of = Vec::with_capacity(graph.arc_count());
        for v in 0..graph.node_count() as NodeId {
            for arc in graph.arcs_out(v) {
                let (a, b) = (
                    local(coords[v as usize]),
                    local(graph.coord(graph.head(arc))),
                );
                ends.push([a, b]);
                if v as usize >= originals {
                    cells_of.push(None);
                    continue;
                }
                let cell = |x: f64, y: f64| {
                    (
                        ((x / CELL_M).floor().max(0.0) as usize).min(cols - 1),
                        ((y / CELL_M).floor().max(0.0) as usize).min(rows - 1),
                    )
                };
                let (c0, r0) = cell(a.0.min(b.0), a.1.min(b.1));
                let (c1, r1) = cell(a.0.max(b.0), a.1.max(b.1));
                cells_of.push(Some((c0, r0, c1, r1)));
            }
        }
        let mut first = vec![0u32; cols * rows + 1];
        for &(c0, r0, c1, r1) in cells_of.iter().flatten() {
            for r in r0..=r1 {
                for c in c0..=c1 {
                    first[r * cols + c + 1] += 1;
                }
            }
        }
        for i in 0..cols * rows {
            first[i + 1] += first[i];
        }
        let mut next = first.clone();
        let mut arcs = vec![0; first[cols * rows] as usize];
        for (arc, cells) in cells_of.iter().enumerate() {
            let Some((c0, r0, c1, r1)) = *cells else {
                continue;
            };
            for r in r0..=r1 {
                for c in c0..=c1 {
                    let slot = &mut next[r * cols + c];
                    arcs[*slot as usize] = arc as ArcId;
                    *slot += 1;
                }
            }
        }
        SegmentIndex {
            origin,
            cos_lat,
            cell_m: CELL_M,
            cols,
            rows,
            first,
            arcs,
            ends,
        }
    }

    fn local(&self, c: LatLon) -> (f64, f64) {
        (
            (c.lon - self.origin.lon) * M_PER_DEG * self.cos_lat,
            (c.lat - self.origin.lat) * M_PER_DEG,
        )
    }

    /// The projection of `point` on `arc`.
    pub fn project(&self, point: LatLon, arc: ArcId) -> Projection {
        let p = self.local(point);
        let [a, b] = self.ends[arc as usize];
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = dx * dx + dy * dy;
        let t = if len2 > 0.0 {
            (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let (x, y) = (a.0 + t * dx, a.1 + t * dy);
        Projection {
            arc,
            distance_m: ((p.0 - x).powi(2) + (p.1 - y).powi(2)).sqrt(),
            offset_m: t * len2.sqrt(),
        }
    }

    /// Every arc within `radius_m` of `point`, nearest first.
    pub fn near(&self, point: LatLon, radius_m: f64) -> Vec<Projection> {
        let (x, y) = self.local(point);
        let span = |v: f64, n: usize| {
            let lo = ((v - radius_m) / self.cell_m).floor();
            let hi = ((v + radius_m) / self.cell_m).floor();
            if hi < 0.0 || lo >= n as f64 {
                None
            } else {
                Some((lo.max(0.0) as usize, (hi as usize).min(n - 1)))
            }
        };
        let (Some((c0, c1)), Some((r0, r1))) = (span(x, self.cols), span(y, self.rows)) else {
            return Vec::new();
        };
        let mut found: Vec<Projection> = Vec::new();
        for r in r0..=r1 {
            for c in c0..=c1 {
                let cell = r * self.cols + c;
                for &arc in &self.arcs[self.first[cell] as usize..self.first[cell + 1] as usize] {
                    let p = self.project(point, arc);
                    if p.distance_m <= radius_m && !found.iter().any(|f| f.arc == arc) {
                        found.push(p);
                    }
                }
            }
        }
        found.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m));
        found
    }

    pub fn memory_bytes(&self) -> usize {
        self.first.len() * 4 + self.arcs.len() * 4 + self.ends.len() * 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::eta::graph::RoadClass;
    use std::sync::Arc;

    fn arc(tail: u32, head: u32) -> ArcSpec {
        ArcSpec {
            tail,
            head,
            length_m: 100.0,
            free_flow_ms: 10_000,
            class: RoadClass::Residential,
        }
    }

    #[test]
    fn a_banned_turn_is_kept_through_renumbering_and_snapping_skips_copies() {
        // A square 1-2-3-4 plus node 0, which only leads in (dropped, so every id moves
        // down by one). Going 1 → 2 → 3 is banned: the route from 1 to 3 goes round by 4.
        let coords = vec![
            LatLon::new(60.0, 24.0),
            LatLon::new(60.170, 24.940),
            LatLon::new(60.170, 24.945),
            LatLon::new(60.175, 24.945),
            LatLon::new(60.175, 24.940),
        ];
        let both = |a, b, ms| {
            [a, b].map(|tail| ArcSpec {
                free_flow_ms: ms,
                ..arc(tail, a + b - tail)
            })
        };
        // By 2 is quicker (20 s) than by 4 (30 s).
        let mut arcs: Vec<ArcSpec> = [
            both(1, 2, 10_000),
            both(2, 3, 10_000),
            both(3, 4, 15_000),
            both(4, 1, 15_000),
        ]
        .concat();
        arcs.push(arc(0, 1));
        let banned = [BannedTurn {
            from: 1,
            via: 2,
            to: 3,
        }];
        let net = Network::build(
            coords,
            arcs,
            &banned,
            MapSource::Synthetic { nodes: 4, seed: 0 },
        );
        assert_eq!(net.turns.originals(), 4);
        assert_eq!(
            net.turns.copies(),
            &[1],
            "the junction (old 2, now 1) is split"
        );
        let copy = 4;
        assert_eq!(
            net.snap(LatLon::new(60.170, 24.945), 50.0),
            Some(1),
            "points snap to the junction, not its copy"
        );
        let engine = super::super::engine::EtaEngine::new(Arc::new(net), 0);
        let live = engine.live();
        let answer = engine.route_nodes(&live, 0, 2).unwrap();
        assert_eq!(answer.route.nodes, vec![0, 3, 2], "round by the other side");
        assert_eq!(answer.route.cost, 30_000);
        // Coming from 3 the turn at the junction is allowed.
        let answer = engine.route_nodes(&live, 2, 0).unwrap();
        assert_eq!(answer.route.cost, 20_000);
        // Every shadow arc is the same road as an original one.
        for (a, &same) in engine.net.canonical.iter().enumerate() {
            assert!(engine.net.tails[same as usize] < copy);
            assert_eq!(engine.net.graph.head(a as u32), engine.net.graph.head(same));
        }
    }

    #[test]
    fn keeps_the_largest_strongly_connected_part() {
        // 0 <-> 1 <-> 2 is strongly connected; 3 only leads in; 4 and 5 are their own pair.
        let coords = vec![LatLon::new(60.17, 24.94); 6];
        let arcs = vec![
            arc(0, 1),
            arc(1, 0),
            arc(1, 2),
            arc(2, 1),
            arc(3, 0),
            arc(4, 5),
            arc(5, 4),
        ];
        let (kept, arcs) = largest_component(coords, arcs);
        assert_eq!(kept.len(), 3);
        assert_eq!(arcs.len(), 4);
        assert!(arcs.iter().all(|a| a.tail < 3 && a.head < 3));
    }

    #[test]
    fn the_segment_index_finds_what_a_scan_finds() {
        let network = Network::synthetic(2_500, 3);
        let mut rng = synth::SplitMix64::new(9);
        let (sw, ne) = network.bounds;
        for _ in 0..200 {
            let p = LatLon::new(
                sw.lat + rng.unit() * (ne.lat - sw.lat),
                sw.lon + rng.unit() * (ne.lon - sw.lon),
            );
            let mut found: Vec<ArcId> = network
                .segments
                .near(p, 50.0)
                .iter()
                .map(|p| p.arc)
                .collect();
            let mut scan: Vec<ArcId> = (0..network.graph.arc_count() as ArcId)
                .filter(|&a| network.segments.project(p, a).distance_m <= 50.0)
                .collect();
            found.sort_unstable();
            scan.sort_unstable();
            assert_eq!(found, scan);
        }
    }

    #[test]
    fn the_synthetic_network_lies_over_central_helsinki() {
        let network = Network::synthetic(1_000, 1);
        let (sw, ne) = network.bounds;
        assert!(sw.lat > 60.16 && ne.lat < 60.2, "{sw:?} {ne:?}");
        assert!(sw.lon > 24.93 && ne.lon < 25.0, "{sw:?} {ne:?}");
        assert!(network.graph.node_count() > 900);
    }
}
