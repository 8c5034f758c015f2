//! Snapping a point to the network: the node nearest to a coordinate, through a uniform
//! grid of buckets over the nodes' bounding box.

use super::graph::{LatLon, NodeId};

/// Nodes bucketed by position, for nearest-node lookups.
#[derive(Debug, Clone)]
pub struct NearestIndex {
    min: LatLon,
    cell_deg: f64,
    cols: usize,
    rows: usize,
    first: Vec<u32>,
    nodes: Vec<NodeId>,
    coords: Vec<LatLon>,
}

impl NearestIndex {
    /// An index of `coords` (node `i` at `coords[i]`), about `per_cell` nodes a bucket.
    pub fn new(coords: &[LatLon]) -> NearestIndex {
        const PER_CELL: f64 = 4.0;
        let (mut min, mut max) = (LatLon::new(90.0, 180.0), LatLon::new(-90.0, -180.0));
        for c in coords {
            min = LatLon::new(min.lat.min(c.lat), min.lon.min(c.lon));
            max = LatLon::new(max.lat.max(c.lat), max.lon.max(c.lon));
        }
        let (height, width) = ((max.lat - min.lat).max(1e-9), (max.lon - min.lon).max(1e-9));
        let cells = (coords.len() as f64 / PER_CELL).max(1.0);
        let cell_deg = ((height * width) / cells).sqrt().max(1e-7);
        let rows = ((height / cell_deg).ceil() as usize).max(1);
        let cols = ((width / cell_deg).ceil() as usize).max(1);
        let mut index = NearestIndex {
            min,
            cell_deg,
            cols,
            rows,
            first: vec![0; rows * cols + 1],
            nodes: vec![0; coords.len()],
            coords: coords.to_vec(),
        };
        let cell_of: Vec<usize> = coords.iter().map(|&c| index.cell(c)).collect();
        for &cell in &cell_of {
            index.first[cell + 1] += 1;
        }
        for i in 0..rows * cols {
            index.first[i + 1] += index.first[i];
        }
        let mut fill = index.first.clone();
        for (node, &cell) in cell_of.iter().enumerate() {
            index.nodes[fill[cell] as usize] = node as NodeId;
            fill[cell] += 1;
        }
        index
    }

    fn row_col(&self, c: LatLon) -> (i64, i64) {
        (
            ((c.lat - self.min.lat) / self.cell_deg).floor() as i64,
            ((c.lon - self.min.lon) / self.cell_deg).floor() as i64,
        )
    }

    fn cell(&self, c: LatLon) -> usize {
        let (row, col) = self.row_col(c);
        let row = row.clamp(0, self.rows as i64 - 1) as usize;
        let col = col.clamp(0, self.cols as i64 - 1) as usize;
        row * self.cols + col
    }

    /// The node nearest to `point` and its distance in metres, searching no farther than
    /// `max_m`; `None` when no node is that close.
    pub fn nearest(&self, point: LatLon, max_m: f64) -> Option<(NodeId, f64)> {
        if self.coords.is_empty() {
            return None;
        }
        let (row, col) = self.row_col(point);
        // A ring of cells is at least (ring - 1) cells away in latitude or longitude;
        // a degree of longitude is the shorter, so that bounds the distance from below.
        let cell_m = self.cell_deg * 111_195.0 * point.lat.to_radians().cos().abs().max(0.01);
        let mut best: Option<(NodeId, f64)> = None;
        let max_ring = (self.rows.max(self.cols) as i64) + row.abs().max(col.abs());
        for ring in 0..=max_ring {
            let ring_floor_m = (ring - 1).max(0) as f64 * cell_m;
            if ring_floor_m > max_m || best.is_some_and(|(_, d)| ring_floor_m > d) {
                break;
            }
            for r in row - ring..=row + ring {
                for c in col - ring..=col + ring {
                    let on_ring = (r - row).abs() == ring || (c - col).abs() == ring;
                    if !on_ring || r < 0 || c < 0 || r >= self.rows as i64 || c >= self.cols as i64
                    {
                        continue;
                    }
                    let cell = r as usize * self.cols + c as usize;
                    for &node in
                        &self.nodes[self.first[cell] as usize..self.first[cell + 1] as usize]
                    {
                        let d = self.coords[node as usize].distance_m(point);
                        if d <= max_m && best.is_none_or(|(_, bd)| d < bd) {
                            best = Some((node, d));
                        }
                    }
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eta::synth::SplitMix64;

    #[test]
    fn finds_what_a_scan_finds() {
        let mut rng = SplitMix64::new(11);
        let coords: Vec<LatLon> = (0..3_000)
            .map(|_| LatLon::new(60.16 + rng.unit() * 0.02, 24.93 + rng.unit() * 0.03))
            .collect();
        let index = NearestIndex::new(&coords);
        for _ in 0..500 {
            let p = LatLon::new(60.155 + rng.unit() * 0.03, 24.925 + rng.unit() * 0.04);
            let scan = coords
                .iter()
                .enumerate()
                .map(|(i, c)| (i as NodeId, c.distance_m(p)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            let found = index.nearest(p, 10_000.0).unwrap();
            assert!(
                (found.1 - scan.1).abs() < 1e-6,
                "{p:?}: {found:?} vs {scan:?}"
            );
        }
        assert_eq!(
            index.nearest(LatLon::new(61.0, 25.0), 1_000.0),
            None,
            "too far"
        );
    }
}
