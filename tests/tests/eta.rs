//! ETA under live traffic over HTTP and the realtime channel:
//!
//! - routes between points of the map, bad and off-map coordinates refused with 4xx;
//! - an incident changes both the ETA and the route, and is in force when answered;
//! - a trip gets a fresh ETA from its positions, only its owner sees it, and its owner
//!   is pushed a new ETA over the realtime channel when traffic on its route changes
//!   (on both backends: the push goes through the topic log);
//! - probes from simulated vehicles are matched and slow the roads they crawl on;
//! - two instances on one PostgreSQL share incidents and probes;
//! - the real Helsinki extract (when `ensure_helsinki` fetched it: MERIDIAN_ETA_MAP).

use meridian_server::eta::engine::EtaEngine;
use meridian_server::eta::network::Network;
use meridian_server::eta::sim::{self, Drive, World};
use meridian_shared::eta::graph::LatLon;
use meridian_shared::eta::synth::SplitMix64;
use meridian_shared::eta::wire::{
    IncidentCreated, MapResponse, Probe, ProbeBatch, ProbesAccepted, RouteResponse,
    TrafficResponse, TripEvent, TripView, TRIP_EVENT,
};
use meridian_shared::realtime::ServerMessage;
use meridian_tests::both_backends;
use meridian_tests::client::{Client, Realtime};
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::server::{eventually, TestServer};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

async fn ready(server: &TestServer) -> Arc<EtaEngine> {
    eventually("the ETA network to be prepared", || {
        server.state.eta.engine().is_ok()
    })
    .await;
    server.state.eta.engine().unwrap().clone()
}

/// Two points a fifth and four fifths across the map's diagonal.
fn corners(engine: &EtaEngine) -> (LatLon, LatLon) {
    let (sw, ne) = engine.net.bounds;
    let at = |f: f64| {
        LatLon::new(
            sw.lat + f * (ne.lat - sw.lat),
            sw.lon + f * (ne.lon - sw.lon),
        )
    };
    (at(0.2), at(0.8))
}

/// A fix every 5 s from `vehicles` simulated drives (seeded by `seed`) under `world`'s
/// true speeds, from `since_ms` on, each fix moved by GPS noise of `noise_m` if given.
fn simulated_probes(
    net: &Network,
    world: &World,
    seed: u64,
    vehicles: usize,
    since_ms: i64,
    noise_m: Option<f64>,
) -> Vec<Probe> {
    let free = net.cch.customize(net.graph.free_flow_weights());
    let mut rng = SplitMix64::new(seed);
    let mut probes = Vec::new();
    for v in 0..vehicles {
        let Some(drive) = Drive::random_in(net, &free, &mut rng, &world.true_ratio) else {
            continue;
        };
        for (t_ms, at, _) in drive.samples(net, since_ms, 5_000) {
            let at = match noise_m {
                Some(noise_m) => sim::noisy(&mut rng, at, noise_m),
                None => at,
            };
            probes.push(Probe {
                device_id: format!("sim-{v}"),
                t_ms,
                lat: at.lat,
                lon: at.lon,
            });
        }
    }
    probes
}

fn route_path(from: LatLon, to: LatLon) -> String {
    format!(
        "/api/eta/route?from={},{}&to={},{}",
        from.lat, from.lon, to.lat, to.lon
    )
}

both_backends!(routes_and_refusals, |db: TestDatabase| async move {
    let server = TestServer::start(&db).await;
    let client = Client::new(&server);
    let engine = ready(&server).await;
    let (from, to) = corners(&engine);

    let route: RouteResponse = client.get(&route_path(from, to)).await.expect(200);
    assert!(route.eta_s > 10.0 && route.distance_m > 100.0, "{route:?}");
    assert!(route.path.len() > 5);
    let start = LatLon::new(route.path[0][0], route.path[0][1]);
    assert!(start.distance_m(from) < 300.0);
    let end = route.path.last().unwrap();
    assert!(LatLon::new(end[0], end[1]).distance_m(to) < 300.0);
    // The same answer as the engine in process.
    let direct = engine.route(from, to).unwrap();
    assert_eq!(route.eta_s, direct.route.cost as f64 / 1000.0);

    for bad in [
        "/api/eta/route",
        "/api/eta/route?from=60.17,24.94",
        "/api/eta/route?from=abc&to=60.17,24.94",
        "/api/eta/route?from=60.17;24.94&to=60.17,24.94",
        "/api/eta/route?from=91,24.94&to=60.17,24.94",
        "/api/eta/route?from=NaN,24.94&to=60.17,24.94",
    ] {
        client
            .get(bad)
            .await
            .assert_error(400, "invalid_coordinates");
    }
    client
        .get(&route_path(LatLon::new(0.0, 0.0), to))
        .await
        .assert_error(422, "off_map");
    client
        .get(&route_path(from, LatLon::new(60.5, 25.5)))
        .await
        .assert_error(422, "off_map");

    let bad_probe = json!({"probes": [{"device_id": "", "t_ms": 1, "lat": 60.17, "lon": 24.94}]});
    client
        .post_json("/api/eta/probes", &bad_probe)
        .await
        .assert_error(422, "invalid_probe");
    let bad_probe = json!({"probes": [{"device_id": "a", "t_ms": 1, "lat": 95.0, "lon": 24.94}]});
    client
        .post_json("/api/eta/probes", &bad_probe)
        .await
        .assert_error(422, "invalid_probe");
    client
        .post_json("/api/eta/probes", &json!({"probes": "no"}))
        .await
        .assert_error(422, "invalid_body");
    for bad in [
        json!({"lat": from.lat, "lon": from.lon, "radius_m": 100, "speed_factor": 1.5, "duration_s": 60}),
        json!({"lat": from.lat, "lon": from.lon, "radius_m": -1, "speed_factor": 0.5, "duration_s": 60}),
        json!({"lat": from.lat, "lon": from.lon, "radius_m": 100, "speed_factor": 0.5, "duration_s": 0}),
    ] {
        client
            .post_json("/api/eta/incidents", &bad)
            .await
            .assert_error(422, "invalid_incident");
    }
    let nowhere =
        json!({"lat": 10.0, "lon": 10.0, "radius_m": 100, "speed_factor": 0.5, "duration_s": 60});
    client
        .post_json("/api/eta/incidents", &nowhere)
        .await
        .assert_error(422, "off_map");

    // The map and its traffic, in the same arc order.
    let map: MapResponse = client.get("/api/eta/map").await.expect(200);
    assert!(map.synthetic, "no map file configured: {}", map.source);
    assert_eq!(map.nodes.len(), 2 * engine.net.graph.node_count());
    assert_eq!(map.arcs.len(), 3 * engine.net.graph.arc_count());
    let traffic: TrafficResponse = client.get("/api/eta/traffic").await.expect(200);
    assert_eq!(traffic.speed_pct.len(), engine.net.graph.arc_count());
    assert!(traffic.speed_pct.iter().all(|&p| p == 100));
    server.shutdown().await;
});

both_backends!(
    an_incident_changes_the_eta_and_the_route,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);
        let engine = ready(&server).await;
        let (from, to) = corners(&engine);
        let before: RouteResponse = client.get(&route_path(from, to)).await.expect(200);
        let middle = before.path[before.path.len() / 2];
        let incident: IncidentCreated = client
        .post_json(
            "/api/eta/incidents",
            &json!({"lat": middle[0], "lon": middle[1], "radius_m": 60, "speed_factor": 0.05, "duration_s": 600}),
        )
        .await
        .expect(201);
        assert!(incident.roads_affected > 0);
        // In force when answered: no waiting for the refresher.
        let after: RouteResponse = client.get(&route_path(from, to)).await.expect(200);
        assert!(
            after.eta_s > before.eta_s,
            "{} -> {}",
            before.eta_s,
            after.eta_s
        );
        assert_ne!(after.path, before.path, "the route avoids the incident");
        let traffic: TrafficResponse = client.get("/api/eta/traffic").await.expect(200);
        assert!(traffic.version > 0);
        assert!(traffic.speed_pct.iter().any(|&p| p <= 5));
        server.shutdown().await;
    }
);

both_backends!(
    a_trip_is_pushed_its_new_eta,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let owner = Client::new(&server);
        let engine = ready(&server).await;
        let (from, to) = corners(&engine);
        let me = owner.me().await;
        let mut socket = Realtime::open(&owner).await;
        socket.recv_welcome().await;
        socket
            .subscribe(&format!("session:{}", me.session_id), None)
            .await;

        let trip: TripView = owner
            .post_json(
                "/api/eta/trips",
                &json!({"from": [from.lat, from.lon], "to": [to.lat, to.lon]}),
            )
            .await
            .expect(201);
        assert!(trip.eta_s > 0.0 && !trip.arrived);
        // A few nodes along, the ETA is shorter.
        let along = trip.path[trip.path.len() / 4];
        let moved: TripView = owner
            .post_json(
                &format!("/api/eta/trips/{}/positions", trip.trip_id),
                &json!({"lat": along[0], "lon": along[1]}),
            )
            .await
            .expect(200);
        assert!(
            moved.eta_s < trip.eta_s,
            "{} -> {}",
            trip.eta_s,
            moved.eta_s
        );
        assert_eq!(moved.path[0], along);

        // Another session cannot see or move it.
        let stranger = Client::new(&server);
        stranger
            .get(&format!("/api/eta/trips/{}", trip.trip_id))
            .await
            .assert_error(404, "not_found");
        stranger
            .post_json(
                &format!("/api/eta/trips/{}/positions", trip.trip_id),
                &json!({"lat": along[0], "lon": along[1]}),
            )
            .await
            .assert_error(404, "not_found");
        owner
            .post_json(
                "/api/eta/trips",
                &json!({"from": [200.0, 0.0], "to": [to.lat, to.lon]}),
            )
            .await
            .assert_error(422, "invalid_coordinates");

        // Traffic on its route changes: the owner is pushed the new ETA.
        let ahead = moved.path[moved.path.len() / 2];
        owner
        .post_json(
            "/api/eta/incidents",
            &json!({"lat": ahead[0], "lon": ahead[1], "radius_m": 80, "speed_factor": 0.1, "duration_s": 600}),
        )
        .await
        .expect::<IncidentCreated>(201);
        let pushed = socket
            .recv_until("a trip update", |message| match message {
                ServerMessage::Event(event) => {
                    let update: TripEvent = serde_json::from_value(event.payload.clone()).ok()?;
                    (update.kind == TRIP_EVENT && update.trip.trip_id == trip.trip_id)
                        .then_some(update.trip)
                }
                _ => None,
            })
            .await;
        assert!(
            pushed.eta_s > moved.eta_s || pushed.reroutes > moved.reroutes,
            "{moved:?} -> {pushed:?}"
        );
        let now: TripView = owner
            .get(&format!("/api/eta/trips/{}", trip.trip_id))
            .await
            .expect(200);
        assert_eq!(now.eta_s, pushed.eta_s);
        server.shutdown().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_from_simulated_vehicles_slow_the_roads() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let client = Client::new(&server);
    let engine = ready(&server).await;
    let net = engine.net.clone();
    let world = World::new(&net, 11, 5);
    let now = server.state.clock.now_ms();
    let probes = simulated_probes(&net, &world, 12, 200, now - 600_000, Some(5.0));
    let mut matched = 0;
    for chunk in probes.chunks(5_000) {
        let report: ProbesAccepted = client
            .post_json(
                "/api/eta/probes",
                &ProbeBatch {
                    probes: chunk.to_vec(),
                },
            )
            .await
            .expect(200);
        assert_eq!(report.accepted, chunk.len());
        matched += report.matched;
    }
    assert!(
        matched as f64 > 0.95 * probes.len() as f64,
        "{matched} of {}",
        probes.len()
    );
    // The refresher customizes the new weights on its own.
    eventually("the probes' weights", || engine.live().seq > 0).await;
    let traffic: TrafficResponse = client.get("/api/eta/traffic").await.expect(200);
    let slowed: Vec<usize> = (0..traffic.speed_pct.len())
        .filter(|&a| traffic.speed_pct[a] < 70)
        .collect();
    assert!(!slowed.is_empty());
    // Most of what looks slow is slow in truth.
    let truly_slow = slowed
        .iter()
        .filter(|&&a| world.true_ratio[a] < 0.75)
        .count();
    assert!(
        truly_slow as f64 >= 0.7 * slowed.len() as f64,
        "{truly_slow} of {} slowed arcs are slow in truth",
        slowed.len()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helsinki_from_the_openstreetmap_extract() {
    let Ok(map) = std::env::var("MERIDIAN_ETA_MAP") else {
        eprintln!("MERIDIAN_ETA_MAP is not set (scripts/lib.sh ensure_helsinki): skipped");
        return;
    };
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = TestServer::start_with(&db, |config| config.eta_map = Some(map.into())).await;
    let client = Client::new(&server);
    ready(&server).await;
    let info: MapResponse = client.get("/api/eta/map").await.expect(200);
    assert!(!info.synthetic, "{}", info.source);
    assert!(info.nodes.len() / 2 > 1_000);
    // The extract's no_*/only_* relations through a via node are routed around, each
    // banned turn's junction split into copies.
    assert!(
        info.turn_restrictions_applied > 10,
        "{}",
        info.turn_restrictions_applied
    );
    assert!(!info.turn_copies.is_empty());
    // From the railway station square to the market square.
    let (station, market) = (LatLon::new(60.1710, 24.9425), LatLon::new(60.1677, 24.9525));
    let route: RouteResponse = client.get(&route_path(station, market)).await.expect(200);
    assert!(
        route.distance_m > 500.0 && route.distance_m < 3_000.0,
        "{route:?}"
    );
    assert!(route.eta_s > 30.0 && route.eta_s < 600.0, "{route:?}");
    // Outside the extract (it covers 60.164–60.179 N, 24.935–24.953 E).
    client
        .get(&route_path(LatLon::new(60.25, 24.85), market))
        .await
        .assert_error(422, "off_map");
    server.shutdown().await;
}

/// Two instances on one PostgreSQL: an incident posted to A, and probes sent to A, slow
/// B's roads too (shared as notices, `eta::cluster`), and B's routes avoid the incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_incidents_and_probes() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let a = TestServer::start(&db).await;
    let b = TestServer::start(&db).await;
    let (engine_a, engine_b) = (ready(&a).await, ready(&b).await);
    let (client_a, client_b) = (Client::new(&a), Client::new(&b));
    let (from, to) = corners(&engine_b);
    let before: RouteResponse = client_b.get(&route_path(from, to)).await.expect(200);
    let middle = before.path[before.path.len() / 2];
    let version = engine_b.traffic_version();
    let _: IncidentCreated = client_a
        .post_json(
            "/api/eta/incidents",
            &json!({"lat": middle[0], "lon": middle[1], "radius_m": 60, "speed_factor": 0.05, "duration_s": 600}),
        )
        .await
        .expect(201);
    eventually("B to apply A's incident", || {
        engine_b.traffic_version() > version
    })
    .await;
    let applied = engine_b.traffic_version();
    eventually("B's weights to include it", || {
        engine_b.live().traffic_version >= applied
    })
    .await;
    let after: RouteResponse = client_b.get(&route_path(from, to)).await.expect(200);
    assert!(
        after.eta_s > before.eta_s,
        "{} -> {}",
        before.eta_s,
        after.eta_s
    );
    assert_ne!(after.path, before.path, "B's route avoids A's incident");

    // Probes of simulated vehicles, all sent to A.
    let net = engine_a.net.clone();
    let world = World::new(&net, 21, 5);
    let now = a.state.clock.now_ms();
    let probes = simulated_probes(&net, &world, 22, 40, now - 300_000, None);
    for chunk in probes.chunks(5_000) {
        let _: ProbesAccepted = client_a
            .post_json(
                "/api/eta/probes",
                &ProbeBatch {
                    probes: chunk.to_vec(),
                },
            )
            .await
            .expect(200);
    }
    // Every observation A sent (one per arc and tick, after its outbox empties) is
    // applied on B.
    let counts = || {
        (
            engine_a.pending_observations(),
            engine_a
                .counters
                .shared_observations
                .load(Ordering::Relaxed),
            engine_b
                .counters
                .remote_observations
                .load(Ordering::Relaxed),
        )
    };
    eventually("B to apply every observation A sent", || {
        let (pending, sent, applied) = counts();
        pending == 0 && sent > 0 && applied == sent
    })
    .await;
    let applied = engine_b.traffic_version();
    eventually("B's weights to include them", || {
        engine_b.live().traffic_version >= applied
    })
    .await;
    let on_a: TrafficResponse = client_a.get("/api/eta/traffic").await.expect(200);
    let on_b: TrafficResponse = client_b.get("/api/eta/traffic").await.expect(200);
    let slowed_on_b: Vec<usize> = (0..on_b.speed_pct.len())
        .filter(|&arc| on_b.speed_pct[arc] < 70)
        .collect();
    assert!(!slowed_on_b.is_empty(), "B sees A's probes");
    let also_on_a = slowed_on_b
        .iter()
        .filter(|&&arc| on_a.speed_pct[arc] < 100)
        .count();
    assert!(
        also_on_a as f64 >= 0.9 * slowed_on_b.len() as f64,
        "{also_on_a} of {} arcs slowed on B are slowed on A",
        slowed_on_b.len()
    );
    a.shutdown().await;
    b.shutdown().await;
}
