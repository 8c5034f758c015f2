//! The routing engine against its peers, same run, same machine:
//! `cargo bench -p meridian-shared --bench eta`.
//!
//! For each network (synthetic city-shaped networks of `ETA_BENCH_NODES` nodes, default
//! `100000,1000000`, and Bremen from the `fast_paths` 0.2.0 package when the cargo
//! registry has it): preparation, memory, customization after a traffic update, and
//! query p50/p99 for our customizable contraction hierarchy (path unpacked), plain
//! Dijkstra and `fast_paths` (a classic contraction hierarchy, prepared again after the
//! update with its old order: its fastest way to take new weights). Every sampled
//! pair's cost is checked to be the same for all three.
//!
//! `ETA_BENCH_QUERIES` (default 2000) and `ETA_BENCH_SEED` (default 7) set the sample.

use std::time::{Duration, Instant};

use meridian_shared::eta::cch::{Cch, CchQuery};
use meridian_shared::eta::dijkstra::Dijkstra;
use meridian_shared::eta::graph::{
    ArcSpec, LatLon, NodeId, RoadClass, RoadGraph, Weight, INFINITY,
};
use meridian_shared::eta::order;
use meridian_shared::eta::synth::{self, SplitMix64, SynthOptions};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at]
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else if d < Duration::from_secs(1) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

fn summary(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (percentile(&times, 50.0), percentile(&times, 99.0))
}

/// Bremen's travel-time graph (DIMACS `.gr`) from the `fast_paths` 0.2.0 package in the
/// cargo registry. The file has no coordinates; two breadth-first sweeps from far-apart
/// nodes stand in for them, which is all the nested dissection needs.
fn bremen() -> Option<RoadGraph> {
    let home = std::env::var("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let src = std::fs::read_dir(home.join("registry/src")).ok()?;
    let file = src
        .filter_map(Result::ok)
        .map(|entry| {
            entry
                .path()
                .join("fast_paths-0.2.0/meta/test_maps/bremen_time.gr")
        })
        .find(|path| path.is_file())?;
    let text = std::fs::read_to_string(&file).ok()?;
    let mut arcs = Vec::new();
    let mut n = 0;
    for line in text.lines().filter(|l| l.starts_with("a ")) {
        let mut fields = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse::<u64>().ok());
        let (Some(Some(tail)), Some(Some(head)), Some(Some(weight))) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        n = n.max(tail.max(head) as usize + 1);
        arcs.push(ArcSpec {
            tail: tail as NodeId,
            head: head as NodeId,
            length_m: 0.0,
            free_flow_ms: (weight as Weight).max(1),
            class: RoadClass::Residential,
        });
    }
    // Breadth-first hops from far-apart nodes, ignoring one-way rules, as coordinates
    // (hops cut Bremen better than travel times do).
    let flat = RoadGraph::new(vec![LatLon::new(0.0, 0.0); n], arcs.clone()).ok()?;
    let adjacency = order::Undirected::of(&flat);
    let sweep = |from: NodeId| {
        let mut hops = vec![u32::MAX; n];
        let mut queue = std::collections::VecDeque::from([from]);
        hops[from as usize] = 0;
        let mut last = from;
        while let Some(v) = queue.pop_front() {
            last = v;
            for &w in adjacency.of_node(v) {
                if hops[w as usize] == u32::MAX {
                    hops[w as usize] = hops[v as usize] + 1;
                    queue.push_back(w);
                }
            }
        }
        // Nodes the sweep cannot reach sit at its far end.
        let far = hops
            .iter()
            .filter(|&&h| h != u32::MAX)
            .max()
            .copied()
            .unwrap_or(0);
        (
            hops.into_iter().map(|h| h.min(far)).collect::<Vec<_>>(),
            last,
        )
    };
    let (_, far) = sweep(0);
    let (from_far, farther) = sweep(far);
    let (from_farther, _) = sweep(farther);
    let coords = (0..n)
        .map(|v| LatLon::new(from_far[v] as f64, from_farther[v] as f64))
        .collect();
    println!("  (Bremen from {})", file.display());
    RoadGraph::new(coords, arcs).ok()
}

/// A traffic update: arcs in a band of the network slowed 2–4×, one in fifty closed.
fn traffic(graph: &RoadGraph, rng: &mut SplitMix64) -> Vec<Weight> {
    let mut weights = graph.free_flow_weights().to_vec();
    let lats: Vec<f64> = graph.coords().iter().map(|c| c.lat).collect();
    let (lo, hi) = lats
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &l| (lo.min(l), hi.max(l)));
    let band = (lo + (hi - lo) * 0.4, lo + (hi - lo) * 0.6);
    for arc in 0..graph.arc_count() as u32 {
        let lat = graph.coord(graph.head(arc)).lat;
        if lat >= band.0 && lat <= band.1 && rng.below(3) == 0 {
            weights[arc as usize] = if rng.below(50) == 0 {
                INFINITY
            } else {
                weights[arc as usize].saturating_mul(2 + rng.below(3) as u32)
            };
        }
    }
    weights
}

fn fast_paths_graph(graph: &RoadGraph, weights: &[Weight]) -> fast_paths::InputGraph {
    let mut input = fast_paths::InputGraph::new();
    for tail in 0..graph.node_count() as NodeId {
        for arc in graph.arcs_out(tail) {
            let w = weights[arc as usize];
            if w != INFINITY {
                input.add_edge(tail as usize, graph.head(arc) as usize, w as usize);
            }
        }
    }
    input.freeze();
    input
}

fn run(name: &str, graph: &RoadGraph, queries: usize, seed: u64) {
    println!(
        "\n{name}: {} nodes, {} arcs",
        graph.node_count(),
        graph.arc_count()
    );
    let (node_order, order_time) = timed(|| order::nested_dissection(graph));
    let (cch, contract_time) = timed(|| Cch::with_order(graph, node_order));
    let (free_metric, free_time) = timed(|| cch.customize(graph.free_flow_weights()));
    let mut rng = SplitMix64::new(seed);
    let jammed = traffic(graph, &mut rng);
    let (metric, customize_time) = timed(|| cch.customize(&jammed));
    drop(free_metric);
    println!(
        "  CCH: order {}, contraction {} ({} edges, {:.2} per arc); customization {} (free flow {}); memory {:.1} MB (graph {:.1} + hierarchy {:.1} + metric {:.1})",
        fmt(order_time),
        fmt(contract_time),
        cch.edge_count(),
        cch.edge_count() as f64 / graph.arc_count().max(1) as f64,
        fmt(customize_time),
        fmt(free_time),
        (graph.memory_bytes() + cch.memory_bytes() + metric.memory_bytes()) as f64 / 1e6,
        graph.memory_bytes() as f64 / 1e6,
        cch.memory_bytes() as f64 / 1e6,
        metric.memory_bytes() as f64 / 1e6,
    );

    let n = graph.node_count() as u64;
    let pairs: Vec<(NodeId, NodeId)> = (0..queries)
        .map(|_| (rng.below(n) as NodeId, rng.below(n) as NodeId))
        .collect();

    let mut query = CchQuery::new(&cch);
    let mut ours = Vec::with_capacity(queries);
    let mut costs = Vec::with_capacity(queries);
    for &(s, t) in &pairs {
        let (route, took) = timed(|| query.route(&cch, &metric, s, t));
        ours.push(took);
        costs.push(route.map(|r| r.cost));
    }
    let reachable = costs.iter().filter(|c| c.is_some()).count();
    let (p50, p99) = summary(ours);
    println!(
        "  CCH query (path unpacked): p50 {}  p99 {}  ({queries} pairs, {reachable} reachable)",
        fmt(p50),
        fmt(p99)
    );

    // Dijkstra on a prefix of the pairs: it is slow on large networks.
    let dijkstra_pairs = if graph.node_count() > 200_000 {
        40
    } else {
        300
    }
    .min(queries);
    let mut oracle = Dijkstra::new(graph);
    let mut plain = Vec::new();
    for (i, &(s, t)) in pairs.iter().take(dijkstra_pairs).enumerate() {
        let (route, took) = timed(|| oracle.route(graph, &jammed, s, t));
        plain.push(took);
        assert_eq!(
            route.map(|r| r.cost),
            costs[i],
            "Dijkstra disagrees on {s} -> {t}"
        );
    }
    let (d50, d99) = summary(plain);
    println!(
        "  Dijkstra: p50 {}  p99 {}  ({dijkstra_pairs} pairs)  → CCH is {:.0}× faster at p50",
        fmt(d50),
        fmt(d99),
        d50.as_secs_f64() / p50.as_secs_f64().max(1e-9)
    );

    // fast_paths: prepared from free flow, then again for the update with its order.
    let (fp_free, fp_prepare) =
        timed(|| fast_paths::prepare(&fast_paths_graph(graph, graph.free_flow_weights())));
    let fp_order = fast_paths::get_node_ordering(&fp_free);
    drop(fp_free);
    let jammed_input = fast_paths_graph(graph, &jammed);
    let (fp, fp_reprepare) = timed(|| {
        fast_paths::prepare_with_order(&jammed_input, &fp_order).expect("the old order fits")
    });
    let mut calculator = fast_paths::create_calculator(&fp);
    let mut theirs = Vec::with_capacity(queries);
    for (i, &(s, t)) in pairs.iter().enumerate() {
        let (path, took) = timed(|| calculator.calc_path(&fp, s as usize, t as usize));
        theirs.push(took);
        let cost = path.map(|p| p.get_weight() as Weight);
        assert_eq!(cost, costs[i], "fast_paths disagrees on {s} -> {t}");
    }
    let (f50, f99) = summary(theirs);
    println!(
        "  fast_paths: prepare {}, again after the update {} (vs our customization {}: {:.1}×); query p50 {}  p99 {}  (ours/theirs at p99: {:.2})",
        fmt(fp_prepare),
        fmt(fp_reprepare),
        fmt(customize_time),
        fp_reprepare.as_secs_f64() / customize_time.as_secs_f64().max(1e-9),
        fmt(f50),
        fmt(f99),
        p99.as_secs_f64() / f99.as_secs_f64().max(1e-12),
    );
}

fn main() {
    let levels: Vec<usize> = std::env::var("ETA_BENCH_NODES")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let queries = env_or("ETA_BENCH_QUERIES", 2000usize);
    let seed = env_or("ETA_BENCH_SEED", 7u64);
    println!("ETA routing engine benchmark (seed {seed})");
    if let Some(graph) = bremen() {
        run("Bremen (DIMACS travel times)", &graph, queries, seed);
    } else {
        println!("\n(Bremen skipped: fast_paths-0.2.0 is not in the cargo registry's sources)");
    }
    for nodes in levels {
        let (graph, took) = timed(|| synth::generate(&SynthOptions::with_nodes(nodes, seed)));
        println!("\n(generated in {})", fmt(took));
        run(&format!("synthetic {nodes}"), &graph, queries, seed);
    }
}
