//! The ID generator over HTTP and in the database, on both backends:
//!
//! - `POST /api/ids` mints ascending, unique IDs of this instance's node id (snowflake) or
//!   RFC 9562 UUIDv7s; `GET /api/ids/{id}` decodes them; bad input gets the error shape;
//!   `GET /api/ids/leases` shows the leases; all in the OpenAPI document;
//! - the SQL lease store: compare-and-set grants, fencing tokens, expiry plus the skew
//!   margin, the high-water floor of a takeover, release, concurrent acquisitions;
//! - two real server processes on one database hold different node ids and never mint
//!   the same ID, including across a kill -9 and a restart.

use std::collections::HashSet;

use meridian_server::ids::lease::{AcquireRequest, LeaseStore, Renewal};
use meridian_server::ids::store::SqlLeaseStore;
use meridian_server::Db;
use meridian_shared::ids::{
    decode_snowflake, decode_uuid_v7, parse_uuid, IdFormat, IdLeases, IdParts, IdsRequest,
    IdsResponse, EPOCH_UNIX_MS,
};
use meridian_tests::both_backends;
use meridian_tests::client::Client;
use meridian_tests::db::TestDatabase;
use meridian_tests::process::ServerProcess;
use meridian_tests::server::TestServer;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");

async fn mint(client: &Client, count: u32, format: IdFormat) -> Vec<String> {
    let reply = client
        .post_json("/api/ids", &IdsRequest { count, format })
        .await;
    let body: IdsResponse = reply.expect(200);
    assert_eq!(body.ids.len(), count as usize);
    body.ids
}

fn snowflakes(ids: &[String]) -> Vec<u64> {
    ids.iter()
        .map(|id| id.parse().expect("a snowflake is decimal digits"))
        .collect()
}

both_backends!(snowflakes_over_http, |db: TestDatabase| async move {
    let server = TestServer::start(&db).await;
    let node_id = server
        .state
        .ids
        .node_id()
        .expect("a server starts holding a lease");
    let client = Client::new(&server);

    let ids = snowflakes(&mint(&client, 10_000, IdFormat::Snowflake).await);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending, so unique");
    for &id in &ids {
        assert!(id <= i64::MAX as u64);
        assert_eq!(decode_snowflake(id).unwrap().node, node_id);
    }
    // The in-process generator continues the same sequence.
    let next = server.state.ids.next_snowflake().unwrap();
    assert!(next > *ids.last().unwrap());

    let parts: IdParts = client
        .get(&format!("/api/ids/{}", ids[0]))
        .await
        .expect(200);
    let decoded = decode_snowflake(ids[0]).unwrap();
    assert_eq!(parts.kind, IdFormat::Snowflake);
    assert_eq!(parts.id, ids[0].to_string());
    assert_eq!(parts.node, Some(node_id));
    assert_eq!(parts.sequence, Some(decoded.sequence));
    assert_eq!(parts.unix_ms, decoded.unix_ms);
    assert!(
        parts.time.ends_with('Z') && parts.time.len() == 24,
        "{}",
        parts.time
    );
    let now_ms = server.state.ids.clock().wall_ms();
    assert!((now_ms - parts.unix_ms).abs() < 60_000, "minted just now");
    assert!(parts.unix_ms > EPOCH_UNIX_MS);

    // A request without a format mints snowflakes.
    let body: IdsResponse = client
        .post_json("/api/ids", &json!({"count": 2}))
        .await
        .expect(200);
    assert_eq!(snowflakes(&body.ids).len(), 2);
    server.shutdown().await;
});

both_backends!(uuids_over_http, |db: TestDatabase| async move {
    let server = TestServer::start(&db).await;
    let client = Client::new(&server);
    let ids = mint(&client, 5000, IdFormat::Uuidv7).await;
    let values: Vec<u128> = ids.iter().map(|id| parse_uuid(id).unwrap()).collect();
    assert!(values.windows(2).all(|w| w[0] < w[1]), "monotonic");
    for (text, value) in ids.iter().zip(&values) {
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "7", "version nibble: {text}");
        assert!("89ab".contains(&text[19..20]), "variant bits 10: {text}");
        let parts = decode_uuid_v7(*value).unwrap();
        assert_eq!((parts.version, parts.variant), (7, 0b10));
    }
    let parts: IdParts = client
        .get(&format!("/api/ids/{}", ids[0]))
        .await
        .expect(200);
    assert_eq!(parts.kind, IdFormat::Uuidv7);
    assert_eq!(parts.version, Some(7));
    assert_eq!(parts.variant, Some(2));
    assert_eq!(parts.id, ids[0]);
    assert_eq!(parts.bits.len(), 128);
    server.shutdown().await;
});

both_backends!(
    bad_input_gets_the_error_shape,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);
        for body in [
            json!({"count": 0}),
            json!({"count": 10_001}),
            json!({"count": -3}),
        ] {
            client
                .post_json("/api/ids", &body)
                .await
                .assert_error(422, "invalid_count");
        }
        client
            .post_json("/api/ids", &json!({"count": 1, "format": "ulid"}))
            .await
            .assert_error(422, "invalid_format");
        client
            .post_json("/api/ids", &json!({"count": "ten"}))
            .await
            .assert_error(422, "invalid_body");
        for bad in [
            "abc",
            "-1",
            "9223372036854775808",
            // A version 4 UUID.
            "f47ac10b-58cc-4372-a567-0e02b2c3d479",
            "017f22e2-79b0-7cc3-98c4-dc0c0c07398",
        ] {
            client
                .get(&format!("/api/ids/{bad}"))
                .await
                .assert_error(400, "invalid_id");
        }
        // Not holding a lease: 503 with Retry-After.
        server.state.ids.generator().revoke();
        let reply = client
            .post_json("/api/ids", &json!({"count": 1, "format": "snowflake"}))
            .await;
        reply.assert_error(503, "no_lease");
        assert_eq!(reply.header("retry-after"), Some("1"));
        // UUIDs need no lease.
        mint(&client, 1, IdFormat::Uuidv7).await;
        server.shutdown().await;
    }
);

both_backends!(leases_and_openapi, |db: TestDatabase| async move {
    let server = TestServer::start(&db).await;
    let client = Client::new(&server);
    mint(&client, 3, IdFormat::Snowflake).await;
    let leases: IdLeases = client.get("/api/ids/leases").await.expect(200);
    assert_eq!(leases.holder, server.state.instance_id.to_string());
    assert_eq!(leases.node_id, server.state.ids.node_id());
    assert!(leases.issuing);
    let mine: Vec<_> = leases.leases.iter().filter(|l| l.mine).collect();
    assert_eq!(mine.len(), 1, "{leases:?}");
    assert!(mine[0].live);
    assert_eq!(Some(mine[0].node_id), leases.node_id);
    assert!(mine[0].high_water_ms > leases.now_ms, "reserved ahead");
    assert!(leases.metrics.snowflakes_issued >= 3);
    assert_eq!(leases.metrics.lease_acquisitions, 1);

    let doc: serde_json::Value = client.get("/api/openapi.json").await.expect(200);
    for path in ["/api/ids", "/api/ids/{id}", "/api/ids/leases"] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }
    assert!(doc["components"]["schemas"].get("IdParts").is_some());
    server.shutdown().await;
});

fn request(holder: &str, now_ms: i64, hint: u16) -> AcquireRequest {
    AcquireRequest {
        holder: holder.into(),
        now_ms,
        ttl_ms: 10_000,
        skew_margin_ms: 2_000,
        reserve_ms: 10_000,
        start_hint: hint,
    }
}

both_backends!(sql_lease_store, |db: TestDatabase| async move {
    let opened = Db::open(&db.url).await.expect("open the database");
    let store = SqlLeaseStore::new(opened.pool.clone(), std::time::Duration::from_secs(10));
    let t0 = EPOCH_UNIX_MS + 1_000_000;

    // Two nodes asking with the same hint get different node ids.
    let a = store.acquire(&request("a", t0, 7)).await.unwrap().unwrap();
    let b = store.acquire(&request("b", t0, 7)).await.unwrap().unwrap();
    assert_eq!((a.node_id, a.fencing_token), (7, 1));
    assert_ne!(b.node_id, a.node_id);
    assert_eq!(a.high_water_ms, t0 + 10_000);
    assert_eq!(a.floor_ms, t0);

    // Renewal raises the high-water mark; it never lowers it.
    let renewed = store
        .renew(a.node_id, 1, t0 + 3_000, t0 + 13_000, t0 + 13_000)
        .await
        .unwrap();
    assert_eq!(
        renewed,
        Renewal::Renewed {
            high_water_ms: t0 + 13_000
        }
    );
    let renewed = store
        .renew(a.node_id, 1, t0 + 3_500, t0 + 13_500, t0 + 100)
        .await
        .unwrap();
    assert_eq!(
        renewed,
        Renewal::Renewed {
            high_water_ms: t0 + 13_000
        }
    );

    // Expired (13.5 s) but within the skew margin: not taken; someone else gets a fresh id.
    let c = store
        .acquire(&request("c", t0 + 15_000, 7))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(c.node_id, a.node_id);
    // Past expiry plus margin: taken over, with the next fencing token and a floor at
    // or above a's high-water mark.
    let d = store
        .acquire(&request("d", t0 + 15_600, 7))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.node_id, d.fencing_token), (a.node_id, 2));
    assert!(d.floor_ms >= t0 + 13_000);
    // a's renewal now finds the token moved on.
    assert_eq!(
        store
            .renew(a.node_id, 1, t0 + 15_700, t0 + 25_700, t0 + 25_700)
            .await
            .unwrap(),
        Renewal::Lost
    );

    // A release ends the lease at once but keeps its high-water mark.
    store.release(d.node_id, 2, t0 + 16_000).await.unwrap();
    let rows = store.list().await.unwrap();
    let row = rows.iter().find(|r| r.node_id == d.node_id).unwrap();
    assert_eq!(row.expires_at_ms, t0 + 16_000);
    assert_eq!(row.high_water_ms, d.high_water_ms);
    assert_eq!(row.holder, "d");

    // Many acquisitions at once: every node gets its own node id.
    let store = &store;
    let grants = futures_util::future::join_all((0..12).map(|i| async move {
        store
            .acquire(&request(&format!("n{i}"), t0 + 16_000, 100))
            .await
            .unwrap()
            .unwrap()
    }))
    .await;
    let distinct: HashSet<u16> = grants.iter().map(|g| g.node_id).collect();
    assert_eq!(distinct.len(), grants.len(), "{grants:?}");
    opened.pool.close().await;
});

both_backends!(
    two_processes_hold_different_leases,
    |db: TestDatabase| async move {
        let mut first = ServerProcess::start(BIN, &db).await;
        let second = ServerProcess::start(BIN, &db).await;
        let (a, b) = (
            Client::at(&first.base_url()),
            Client::at(&second.base_url()),
        );
        let la: IdLeases = a.get("/api/ids/leases").await.expect(200);
        let lb: IdLeases = b.get("/api/ids/leases").await.expect(200);
        let (na, nb) = (la.node_id.unwrap(), lb.node_id.unwrap());
        assert_ne!(na, nb);
        assert_ne!(la.holder, lb.holder);
        assert_eq!(lb.leases.iter().filter(|l| l.live).count(), 2);

        let (ids_a, ids_b) = tokio::join!(
            mint(&a, 10_000, IdFormat::Snowflake),
            mint(&b, 10_000, IdFormat::Snowflake)
        );
        let mut seen = HashSet::new();
        for (ids, node) in [(snowflakes(&ids_a), na), (snowflakes(&ids_b), nb)] {
            for id in ids {
                assert_eq!(decode_snowflake(id).unwrap().node, node);
                assert!(seen.insert(id), "{id} minted twice");
            }
        }

        // kill -9 the first and restart it: its lease is still live, so the new process
        // takes another node id, and mints nothing seen before.
        first.kill_9().await;
        let third = ServerProcess::start(BIN, &db).await;
        let c = Client::at(&third.base_url());
        let lc: IdLeases = c.get("/api/ids/leases").await.expect(200);
        let nc = lc.node_id.unwrap();
        assert!(nc != na && nc != nb, "{nc} vs {na}, {nb}");
        for id in snowflakes(&mint(&c, 5_000, IdFormat::Snowflake).await) {
            assert_eq!(decode_snowflake(id).unwrap().node, nc);
            assert!(seen.insert(id), "{id} minted twice");
        }
    }
);
