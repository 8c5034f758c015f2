//! Synthetic road networks for scales the real extracts do not reach (a million nodes).
//!
//! Shaped like a city rather than a lattice, because the routing engine's speed depends
//! on the shape: square neighbourhoods of local streets (some missing, some one-way),
//! joined to their neighbours only by a few gateway streets; secondary roads every
//! fourth neighbourhood line and a motorway grid every sixteenth run straight through.
//! The coordinates sit around Helsinki's latitude so that distances are realistic.
//! Everything comes from one seed.

use super::graph::{travel_ms, ArcSpec, LatLon, NodeId, RoadClass, RoadGraph};

/// A small, fast, seedable generator (SplitMix64); the crate has no `rand`.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// About this many nodes (a square of side ⌈√nodes⌉).
    pub nodes: usize,
    pub seed: u64,
    /// Side of a neighbourhood, in intersections.
    pub block: usize,
    /// Share of local streets present.
    pub street_density: f64,
    /// Share of local streets that are one-way.
    pub one_way_share: f64,
    /// Distance between neighbouring intersections, in metres.
    pub spacing_m: f64,
}

impl SynthOptions {
    pub fn with_nodes(nodes: usize, seed: u64) -> SynthOptions {
        SynthOptions {
            nodes,
            seed,
            block: 16,
            street_density: 0.85,
            one_way_share: 0.1,
            spacing_m: 120.0,
        }
    }
}

/// The network for `options`.
pub fn generate(options: &SynthOptions) -> RoadGraph {
    let side = (options.nodes as f64).sqrt().ceil().max(2.0) as usize;
    let block = options.block.max(2);
    let mut rng = SplitMix64::new(options.seed);
    let origin = LatLon::new(60.0, 24.0);
    let dlat = options.spacing_m / 111_195.0;
    let dlon = dlat / origin.lat.to_radians().cos();
    let id = |row: usize, col: usize| (row * side + col) as NodeId;
    let coords: Vec<LatLon> = (0..side * side)
        .map(|i| {
            let (row, col) = (i / side, i % side);
            // Intersections are not on a perfect lattice.
            let jitter = |rng: &mut SplitMix64| (rng.unit() - 0.5) * 0.3;
            LatLon::new(
                origin.lat + (row as f64 + jitter(&mut rng)) * dlat,
                origin.lon + (col as f64 + jitter(&mut rng)) * dlon,
            )
        })
        .collect();

    // The class of the road along a line (a row or a column) and across a boundary.
    let line_class = |line: usize| {
        if line % (block * 16) == block / 2 {
            Some(RoadClass::Motorway)
        } else if line % (block * 4) == block / 2 {
            Some(RoadClass::Secondary)
        } else {
            None
        }
    };
    let mut arcs = Vec::with_capacity(side * side * 4);
    let mut road =
        |a: NodeId, b: NodeId, class: RoadClass, one_way: Option<bool>, rng: &mut SplitMix64| {
            let length = coords[a as usize].distance_m(coords[b as usize]);
            let ms = travel_ms(length, class.default_speed_kmh() * (0.9 + 0.2 * rng.unit()));
            let spec = |tail, head| ArcSpec {
                tail,
                head,
                length_m: length as f32,
                free_flow_ms: ms,
                class,
            };
            match one_way {
                None => {
                    arcs.push(spec(a, b));
                    arcs.push(spec(b, a));
                }
                Some(true) => arcs.push(spec(a, b)),
                Some(false) => arcs.push(spec(b, a)),
            }
        };
    for row in 0..side {
        for col in 0..side {
            // East along the row, then north along the column.
            for (line, position, next) in [
                (row, col, (col + 1 < side).then(|| id(row, col + 1))),
                (col, row, (row + 1 < side).then(|| id(row + 1, col))),
            ] {
                let Some(next) = next else { continue };
                let here = id(row, col);
                let crosses_boundary = (position + 1) % block == 0;
                let class = match line_class(line) {
                    Some(class) => class,
                    // A gateway street joins two neighbourhoods at the middle of their
                    // side; other streets stop at the boundary.
                    None if crosses_boundary && line % block != block / 2 => continue,
                    None if crosses_boundary => RoadClass::Tertiary,
                    None if rng.unit() >= options.street_density => continue,
                    None => RoadClass::Residential,
                };
                let one_way = (class == RoadClass::Residential
                    && rng.unit() < options.one_way_share)
                    .then(|| rng.unit() < 0.5);
                road(here, next, class, one_way, &mut rng);
            }
        }
    }
    RoadGraph::new(coords, arcs).expect("the generator names only its own nodes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_network() {
        let a = generate(&SynthOptions::with_nodes(1_000, 3));
        let b = generate(&SynthOptions::with_nodes(1_000, 3));
        let c = generate(&SynthOptions::with_nodes(1_000, 4));
        assert_eq!(a.node_count(), 32 * 32);
        assert_eq!(a.free_flow_weights(), b.free_flow_weights());
        assert_ne!(a.free_flow_weights(), c.free_flow_weights());
    }

    #[test]
    fn splitmix_draws_stay_in_range() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..10_000 {
            assert!(rng.below(7) < 7);
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
