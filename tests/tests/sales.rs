//! The flash sale (issue 14) through the real server, on both backends:
//!
//! - a sale sells its stock and not one unit more; those queued are told sold out the
//!   moment nothing can come back; orders are fulfilled once each;
//! - replays answer the original reservation, one buyer cannot pass its limit with
//!   several keys (tabs), bad input and refusals get their 4xx;
//! - expiry returns units and admits the queue; payment failures keep the reservation
//!   and a retried payment answers the same order;
//! - a concurrent rush with payments and expiries keeps sold + reserved ≤ stock and
//!   the rows consistent with the ledger;
//! - two instances on one PostgreSQL share a sale without overselling;
//! - kill -9 during the rush, then restart: the invariants hold and every confirmed
//!   order is there and gets fulfilled.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use meridian_server::{sales, Clock, Db};
use meridian_shared::ids::format_rfc3339_ms;
use meridian_shared::sales::{
    CheckoutAnswer, Fulfilment, OrderList, PaymentAnswer, SaleDashboard, SaleFigures, SaleState,
    SaleView,
};
use meridian_tests::both_backends;
use meridian_tests::client::{Client, Reply};
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::process::ServerProcess;
use meridian_tests::server::{eventually, TestServer};
use serde_json::{json, Value};
use sqlx::{AnyPool, Row};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const PASSWORD: &str = "flash-sale-pass-1";

async fn signed_up(base_url: &str, name: &str) -> Client {
    let client = Client::at(base_url);
    client.signup(name, PASSWORD).await.expect::<Value>(201);
    client
}

/// A guest (its session is minted by its first request).
async fn guest(base_url: &str) -> Client {
    let client = Client::at(base_url);
    client.me().await;
    client
}

fn sale_body(stock: i64, starts_at_ms: i64, limit: i64, ttl_s: i64) -> Value {
    json!({
        "name": "Lanterns at dawn",
        "product_id": "lantern",
        "stock": stock,
        "starts_at": format_rfc3339_ms(starts_at_ms),
        "per_user_limit": limit,
        "reservation_ttl_s": ttl_s,
    })
}

async fn create_sale(admin: &Client, body: &Value) -> SaleView {
    admin.post_json("/api/sales", body).await.expect(201)
}

async fn checkout(client: &Client, sale: &str, key: &str) -> Reply {
    client
        .send(
            client
                .http()
                .post(client.url(&format!("/api/sales/{sale}/checkout")))
                .header("Idempotency-Key", key),
        )
        .await
}

fn reserved(reply: &Reply) -> String {
    match reply.expect::<CheckoutAnswer>(200) {
        CheckoutAnswer::Reserved { reservation_id, .. } => reservation_id,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

async fn pay(client: &Client, reservation: &str) -> Reply {
    client
        .post_empty(&format!("/api/reservations/{reservation}/pay"))
        .await
}

async fn sale(client: &Client, id: &str) -> SaleView {
    client.get(&format!("/api/sales/{id}")).await.expect(200)
}

/// The ledger against its rows: sold + reserved ≤ stock; `reserved` equals the rows in
/// state reserved, `sold` the paid ones, the orders and their outbox rows; no buyer
/// past its limit; at most one fulfilment per order (and only of orders). Answers
/// (sold, reserved).
async fn assert_ledger(pool: &AnyPool, sale_id: &str) -> (i64, i64) {
    let row = sqlx::query("SELECT stock, sold, reserved, per_user_limit FROM sales WHERE id = $1")
        .bind(sale_id)
        .fetch_one(pool)
        .await
        .unwrap();
    let (stock, sold, reserved, limit): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert!(
        sold + reserved <= stock,
        "oversold: {sold} + {reserved} > {stock}"
    );
    let count = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .bind(sale_id)
            .fetch_one(pool)
            .await
            .unwrap()
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM sale_reservations WHERE sale_id = $1 AND state = 'reserved'")
            .await,
        reserved,
        "no reservation leaks"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM sale_reservations WHERE sale_id = $1 AND state = 'paid' AND order_id IS NOT NULL").await,
        sold
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM sale_orders WHERE sale_id = $1").await,
        sold
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM sale_outbox x JOIN sale_orders o ON o.id = x.order_id WHERE o.sale_id = $1").await,
        sold,
        "every order has its outbox row"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM sale_orders o JOIN sale_reservations r ON r.id = o.reservation_id AND r.order_id = o.id WHERE o.sale_id = $1").await,
        sold,
        "each order is its reservation's"
    );
    let fulfilled = count("SELECT COUNT(*) FROM sale_fulfilments f JOIN sale_orders o ON o.id = f.order_id WHERE o.sale_id = $1").await;
    assert!(fulfilled <= sold);
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM sale_orders WHERE sale_id = $1 AND fulfilled_at_ms IS NOT NULL"
        )
        .await,
        fulfilled,
        "an order is marked fulfilled exactly when it has its fulfilment"
    );
    let most: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM sale_reservations WHERE sale_id = $1 AND state <> 'expired' GROUP BY buyer) t",
    )
    .bind(sale_id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(most.unwrap_or(0) <= limit, "a buyer holds past its limit");
    (sold, reserved)
}

both_backends!(
    a_sale_sells_its_stock_and_not_one_more,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |c| c.sale_payment_failure = 0.0).await;
        let base = server.base_url();
        let admin = signed_up(&base, "admin").await;
        let now = server.clock.now_ms();
        let created = create_sale(&admin, &sale_body(3, now - 1000, 1, 60)).await;
        assert_eq!(created.state, SaleState::Live);
        assert_eq!(
            (created.stock_left, created.sold, created.reserved),
            (3, 0, 0)
        );
        assert_eq!(created.topic, format!("public:sale-{}", created.id));

        let mut buyers = Vec::new();
        for _ in 0..7 {
            buyers.push(guest(&base).await);
        }
        let replies = futures_util::future::join_all(
            buyers.iter().map(|b| checkout(b, &created.id, "tab-1")),
        )
        .await;
        let mut holders = Vec::new();
        let mut positions = Vec::new();
        let mut gone = 0;
        for (buyer, reply) in buyers.iter().zip(&replies) {
            match reply.status.as_u16() {
                200 => holders.push((buyer, reserved(reply))),
                202 => match reply.parse::<CheckoutAnswer>() {
                    CheckoutAnswer::Queued { position } => positions.push((buyer, position)),
                    other => panic!("{other:?}"),
                },
                410 => {
                    reply.assert_error(410, "sold_out");
                    gone += 1;
                }
                other => panic!("unexpected {other}: {}", reply.json),
            }
        }
        // Three units, three reserved; up to three may wait for one to come back (each
        // reservation might expire); the seventh is told at once.
        assert_eq!(holders.len(), 3);
        let mut sorted: Vec<u64> = positions.iter().map(|(_, p)| *p).collect();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![1, 2, 3], "honest, dense positions");
        assert_eq!(gone, 1);
        let view = sale(&admin, &created.id).await;
        assert_eq!((view.stock_left, view.reserved, view.sold), (0, 3, 0));
        assert_eq!(view.queue_length, 3);

        // Two pay: only one unit may still come back, so the last two waiting learn now.
        let mut orders = Vec::new();
        for (buyer, reservation) in &holders[..2] {
            let paid: PaymentAnswer = pay(buyer, reservation).await.expect(200);
            assert_eq!(paid.status, "confirmed");
            orders.push(paid.order_id);
        }
        positions.sort_by_key(|(_, p)| *p);
        let first_waiting = checkout(positions[0].0, &created.id, "tab-1").await;
        assert_eq!(
            first_waiting.expect::<CheckoutAnswer>(202),
            CheckoutAnswer::Queued { position: 1 }
        );
        for (buyer, _) in &positions[1..] {
            checkout(buyer, &created.id, "tab-1")
                .await
                .assert_error(410, "sold_out");
        }
        // The third pays: sold out for everyone, the first waiting too.
        let (buyer, reservation) = &holders[2];
        orders.push(
            pay(buyer, reservation)
                .await
                .expect::<PaymentAnswer>(200)
                .order_id,
        );
        checkout(positions[0].0, &created.id, "tab-1")
            .await
            .assert_error(410, "sold_out");
        let view = sale(&admin, &created.id).await;
        assert_eq!(view.state, SaleState::SoldOut);
        assert_eq!(
            (view.stock_left, view.reserved, view.sold, view.queue_length),
            (0, 0, 3, 0)
        );

        // A holder's replay after paying still answers its reservation.
        match checkout(holders[0].0, &created.id, "tab-1")
            .await
            .expect::<CheckoutAnswer>(200)
        {
            CheckoutAnswer::Reserved {
                reservation_id,
                paid,
                ..
            } => {
                assert_eq!(reservation_id, holders[0].1);
                assert!(paid);
            }
            other => panic!("{other:?}"),
        }

        // Fulfilment: the worker fulfils each order once; a pass after that finds nothing.
        let pool = Db::open(&db.url).await.unwrap().pool;
        sales::fulfil::fulfil_pending(&server.state).await.unwrap();
        assert_eq!(
            sales::fulfil::fulfil_pending(&server.state).await.unwrap(),
            0
        );
        for (buyer, _) in &holders {
            let list: OrderList = buyer.get("/api/orders").await.expect(200);
            assert_eq!(list.orders.len(), 1);
            assert_eq!(list.orders[0].fulfilment, Fulfilment::Fulfilled);
            assert!(orders.contains(&list.orders[0].order_id));
        }
        assert_eq!(assert_ledger(&pool, &created.id).await, (3, 0));
        // The fulfilment told the sale's topic (so dashboards refresh their backlog),
        // with the ledger's figures.
        let (op_id, payload): (String, String) = sqlx::query_as(
            "SELECT op_id, payload FROM realtime_events WHERE topic = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(&created.topic)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(op_id.starts_with("fulfil-"), "{op_id}");
        let figures: SaleFigures = serde_json::from_str(&payload).unwrap();
        assert_eq!((figures.sold, figures.reserved), (3, 0));
        let dashboard: SaleDashboard = admin
            .get(&format!("/api/sales/{}/dashboard", created.id))
            .await
            .expect(200);
        assert_eq!(dashboard.orders, 3);
        assert_eq!(dashboard.fulfilment_backlog, 0);
        assert!(dashboard.orders_per_second > 0.0);
        server.shutdown().await;
    }
);

both_backends!(
    replays_limits_and_bad_input,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |c| c.sale_payment_failure = 0.0).await;
        let base = server.base_url();
        let admin = signed_up(&base, "admin").await;
        let viewer = signed_up(&base, "viewer").await;
        let now = server.clock.now_ms();
        let live = create_sale(&admin, &sale_body(10, now - 1000, 2, 60)).await;

        // Permissions: a guest must sign in, a viewer is refused by name.
        let stranger = guest(&base).await;
        stranger
            .post_json("/api/sales", &sale_body(1, now, 1, 60))
            .await
            .assert_error(401, "sign_in_required");
        let refused = viewer
            .post_json("/api/sales", &sale_body(1, now, 1, 60))
            .await;
        refused.assert_error(403, "forbidden");
        assert!(refused.json["message"]
            .as_str()
            .unwrap()
            .contains("sales:admin"));
        viewer
            .get(&format!("/api/sales/{}/dashboard", live.id))
            .await
            .assert_error(403, "forbidden");

        // Bad input.
        for (body, code) in [
            (sale_body(-1, now, 1, 60), "invalid_stock"),
            (sale_body(5, now, 0, 60), "invalid_per_user_limit"),
            (sale_body(5, now, 1, 0), "invalid_reservation_ttl"),
            (
                json!({"name": "x", "product_id": "p", "stock": 1, "starts_at": "noon", "per_user_limit": 1, "reservation_ttl_s": 1}),
                "invalid_starts_at",
            ),
        ] {
            admin
                .post_json("/api/sales", &body)
                .await
                .assert_error(422, code);
        }
        admin
            .post_json("/api/sales", &json!({"name": "x"}))
            .await
            .assert_error(422, "invalid_body");
        checkout(&viewer, "4242", "k")
            .await
            .assert_error(404, "not_found");
        admin
            .get("/api/sales/4242")
            .await
            .assert_error(404, "not_found");
        viewer
            .post_empty(&format!("/api/sales/{}/checkout", live.id))
            .await
            .assert_error(400, "missing_idempotency_key");
        checkout(&viewer, &live.id, &"k".repeat(129))
            .await
            .assert_error(400, "invalid_idempotency_key");
        let later = create_sale(&admin, &sale_body(10, now + 60_000, 1, 60)).await;
        assert_eq!(later.state, SaleState::Scheduled);
        checkout(&viewer, &later.id, "k")
            .await
            .assert_error(409, "not_started");
        server.clock.advance(61_000);
        reserved(&checkout(&viewer, &later.id, "k").await);

        // Replays answer the original reservation; the limit holds across keys (tabs) and
        // devices (another client of the same account).
        let first = reserved(&checkout(&viewer, &live.id, "tab-1").await);
        assert_eq!(reserved(&checkout(&viewer, &live.id, "tab-1").await), first);
        let laptop = Client::at(&base);
        laptop.signin("viewer", PASSWORD).await.expect::<Value>(200);
        let second = reserved(&checkout(&laptop, &live.id, "laptop-1").await);
        assert_ne!(first, second);
        checkout(&viewer, &live.id, "tab-2")
            .await
            .assert_error(409, "limit_reached");
        checkout(&laptop, &live.id, "laptop-2")
            .await
            .assert_error(409, "limit_reached");

        // A foreign reservation is not found for anyone else; an unknown one neither.
        pay(&stranger, &first).await.assert_error(404, "not_found");
        pay(&stranger, "12345").await.assert_error(404, "not_found");
        // Paying twice (a retry) answers the same order.
        let order: PaymentAnswer = pay(&viewer, &first).await.expect(200);
        let again: PaymentAnswer = pay(&laptop, &first).await.expect(200);
        assert_eq!(order, again);
        let list: OrderList = laptop.get("/api/orders").await.expect(200);
        assert_eq!(list.orders.len(), 1);

        // Per-buyer rate limit.
        let limited = TestServer::start_with(&db, |c| c.sale_checkouts_per_buyer = 2).await;
        // One time for both instances: the first one's clock is past this one's by the
        // hold it skipped, and its writer would expire this one's fresh reservations.
        limited.clock.set(server.clock.now_ms());
        let quick = guest(&limited.base_url()).await;
        for key in ["a", "b"] {
            let status = checkout(&quick, &live.id, key).await.status.as_u16();
            assert!(matches!(status, 200 | 409), "{status}");
        }
        let reply = checkout(&quick, &live.id, "c").await;
        reply.assert_error(429, "too_many_attempts");
        assert!(reply.header("retry-after").is_some());
        // Asking again with an admitted key follows that checkout (a queued buyer does it
        // to learn its place): answered, not limited. A refused key stays refused.
        let again = checkout(&quick, &live.id, "a").await.status.as_u16();
        assert!(matches!(again, 200 | 409), "{again}");
        checkout(&quick, &live.id, "c")
            .await
            .assert_error(429, "too_many_attempts");
        limited.shutdown().await;

        let pool = Db::open(&db.url).await.unwrap().pool;
        assert_ledger(&pool, &live.id).await;
        server.shutdown().await;
    }
);

both_backends!(
    expiry_returns_units_and_admits_the_queue,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |c| c.sale_payment_failure = 0.0).await;
        let base = server.base_url();
        let admin = signed_up(&base, "admin").await;
        let now = server.clock.now_ms();
        let created = create_sale(&admin, &sale_body(1, now - 1000, 1, 30)).await;
        let (ann, bob) = (guest(&base).await, guest(&base).await);
        let held = reserved(&checkout(&ann, &created.id, "a").await);
        assert_eq!(
            checkout(&bob, &created.id, "b")
                .await
                .expect::<CheckoutAnswer>(202),
            CheckoutAnswer::Queued { position: 1 }
        );
        // Nothing is due yet.
        assert_eq!(sales::expire_due(&server.state).await.unwrap(), 0);
        server.clock.advance(30_001);
        assert_eq!(sales::expire_due(&server.state).await.unwrap(), 1);
        // The unit went to the head of the queue: its replay answers the reservation.
        let bobs = reserved(&checkout(&bob, &created.id, "b").await);
        assert_ne!(bobs, held);
        // The expired holder can neither pay nor get it back with its old key.
        pay(&ann, &held)
            .await
            .assert_error(410, "reservation_expired");
        checkout(&ann, &created.id, "a")
            .await
            .assert_error(410, "reservation_expired");
        let pool = Db::open(&db.url).await.unwrap().pool;
        assert_eq!(assert_ledger(&pool, &created.id).await, (0, 1));
        // Bob's reservation expires too: the unit is back on sale for a new key.
        server.clock.advance(30_001);
        let report = meridian_server::run_maintenance(&server.state)
            .await
            .unwrap();
        assert_eq!(report.sale_reservations_expired, 1);
        assert_eq!(sale(&admin, &created.id).await.stock_left, 1);
        reserved(&checkout(&ann, &created.id, "a-again").await);
        assert_eq!(assert_ledger(&pool, &created.id).await, (0, 1));
        server.shutdown().await;
    }
);

both_backends!(
    payment_failures_keep_the_reservation,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |c| c.sale_payment_failure = 1.0).await;
        let base = server.base_url();
        let admin = signed_up(&base, "admin").await;
        let created = create_sale(&admin, &sale_body(2, server.clock.now_ms(), 1, 60)).await;
        let buyer = guest(&base).await;
        let reservation = reserved(&checkout(&buyer, &created.id, "k").await);
        for _ in 0..3 {
            pay(&buyer, &reservation)
                .await
                .assert_error(402, "payment_failed");
        }
        let view = sale(&admin, &created.id).await;
        assert_eq!((view.reserved, view.sold), (1, 0), "the reservation stays");
        server.state.sales.set_payment_failure(0.0);
        let order: PaymentAnswer = pay(&buyer, &reservation).await.expect(200);
        let retried: PaymentAnswer = pay(&buyer, &reservation).await.expect(200);
        assert_eq!(
            order.order_id, retried.order_id,
            "a retry never makes a second order"
        );
        let pool = Db::open(&db.url).await.unwrap().pool;
        assert_eq!(assert_ledger(&pool, &created.id).await, (1, 0));
        server.shutdown().await;
    }
);

/// Many buyers, each with several tabs, check out, pay, replay and let reservations
/// expire, concurrently; afterwards the ledger matches its rows and never oversold.
async fn rush(servers: &[String], sale_id: &str, buyers: usize, seed: u64) -> Vec<String> {
    let mut tasks = Vec::new();
    for i in 0..buyers {
        let base = servers[i % servers.len()].clone();
        let sale_id = sale_id.to_owned();
        tasks.push(tokio::spawn(async move {
            let client = guest(&base).await;
            let mut confirmed = Vec::new();
            for tab in 0..3u64 {
                let key = format!("buyer-{i}-tab-{tab}");
                let reply = checkout(&client, &sale_id, &key).await;
                let status = reply.status.as_u16();
                assert!(
                    matches!(status, 200 | 202 | 409 | 410),
                    "{status}: {}",
                    reply.json
                );
                if status == 200 {
                    let reservation = reserved(&reply);
                    // Some pay at once, some never (they expire), by the seed.
                    if (i as u64 + tab + seed) % 3 != 0 {
                        let paid = pay(&client, &reservation).await;
                        if paid.status.as_u16() == 200 {
                            confirmed.push(paid.parse::<PaymentAnswer>().order_id);
                        }
                    }
                }
                // A replay answers the same way or moves on (queued → reserved / sold out).
                let again = checkout(&client, &sale_id, &key).await.status.as_u16();
                assert!(matches!(again, 200 | 202 | 409 | 410), "{again}");
            }
            confirmed
        }));
    }
    let mut confirmed = Vec::new();
    for task in tasks {
        confirmed.extend(task.await.expect("a buyer's task"));
    }
    confirmed
}

both_backends!(
    a_concurrent_rush_never_oversells,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |c| {
            c.sale_payment_failure = 0.2;
            c.sale_checkouts_per_address = 1_000_000;
        })
        .await;
        let base = server.base_url();
        let admin = signed_up(&base, "admin").await;
        let created = create_sale(&admin, &sale_body(25, server.clock.now_ms(), 2, 30)).await;
        let pool = Db::open(&db.url).await.unwrap().pool;
        let confirmed = rush(std::slice::from_ref(&base), &created.id, 40, 7).await;
        let (sold, _) = assert_ledger(&pool, &created.id).await;
        assert_eq!(sold as usize, confirmed.len());
        // Reservations left unpaid expire; their units go to those queued (who then hold
        // them unpaid, and expire in turn) until no one waits and every unit is back.
        let mut rounds = 0;
        loop {
            server.clock.advance(30_001);
            sales::expire_due(&server.state).await.unwrap();
            let (sold_after, reserved) = assert_ledger(&pool, &created.id).await;
            assert_eq!(sold_after, sold, "expiry never touches what was sold");
            if reserved == 0 {
                break;
            }
            rounds += 1;
            assert!(rounds < 40, "the queue drains");
        }
        assert_eq!(sale(&admin, &created.id).await.stock_left, 25 - sold);
        server.shutdown().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_share_a_sale() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let configure = |c: &mut meridian_server::Config| {
        c.sale_payment_failure = 0.0;
        c.sale_checkouts_per_address = 1_000_000;
    };
    let a = TestServer::start_with(&db, configure).await;
    let b = TestServer::start_with(&db, configure).await;
    let admin = signed_up(&a.base_url(), "admin").await;
    let created = create_sale(&admin, &sale_body(30, a.clock.now_ms(), 1, 60)).await;
    let confirmed = rush(&[a.base_url(), b.base_url()], &created.id, 60, 1).await;
    let pool = Db::open(&db.url).await.unwrap().pool;
    let (sold, reserved) = assert_ledger(&pool, &created.id).await;
    assert_eq!(sold as usize, confirmed.len());
    assert_eq!(
        sold + reserved,
        30,
        "sixty buyers take every unit between them"
    );
    let unique: HashSet<_> = confirmed.iter().collect();
    assert_eq!(unique.len(), confirmed.len());
    // Both instances' fulfilment workers drain the outbox, each order once.
    sales::fulfil::fulfil_pending(&a.state).await.unwrap();
    sales::fulfil::fulfil_pending(&b.state).await.unwrap();
    let fulfilled: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sale_fulfilments")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(fulfilled, sold);
    a.shutdown().await;
    b.shutdown().await;
}

both_backends!(
    kill_9_during_the_rush_loses_nothing_confirmed,
    |db: TestDatabase| async move {
        let mut first = ServerProcess::start(BIN, &db).await;
        let base = first.base_url();
        let admin = signed_up(&base, "admin").await;
        let now = meridian_server::SystemClock.now_ms();
        let created = create_sale(&admin, &sale_body(40, now - 1000, 1, 3600)).await;
        let confirmed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let mut tasks = Vec::new();
        for i in 0..60 {
            let (base, sale_id, confirmed) = (base.clone(), created.id.clone(), confirmed.clone());
            tasks.push(tokio::spawn(async move {
                let client = Client::at(&base);
                // Answers stop when the server dies: every error is a connection error.
                let Ok(response) = client
                    .http()
                    .post(client.url(&format!("/api/sales/{sale_id}/checkout")))
                    .header("Idempotency-Key", format!("k-{i}"))
                    .send()
                    .await
                else {
                    return;
                };
                if response.status().as_u16() != 200 {
                    return;
                }
                let Ok(answer) = response.json::<CheckoutAnswer>().await else {
                    return;
                };
                let CheckoutAnswer::Reserved { reservation_id, .. } = answer else {
                    return;
                };
                for _ in 0..5 {
                    let Ok(paid) = client
                        .http()
                        .post(client.url(&format!("/api/reservations/{reservation_id}/pay")))
                        .send()
                        .await
                    else {
                        return;
                    };
                    if paid.status().as_u16() == 200 {
                        if let Ok(paid) = paid.json::<PaymentAnswer>().await {
                            confirmed.lock().unwrap().push(paid.order_id);
                        }
                        return;
                    }
                }
            }));
        }
        // Kill as soon as some orders are confirmed, while others are in flight.
        eventually("a few confirmed orders", || {
            confirmed.lock().unwrap().len() >= 3
        })
        .await;
        let status = first.kill_9().await;
        assert!(!status.success());
        for task in tasks {
            let _ = task.await;
        }
        let confirmed = confirmed.lock().unwrap().clone();
        let second = ServerProcess::start(BIN, &db).await;
        let pool = Db::open(&db.url).await.unwrap().pool;
        let (sold, _) = assert_ledger(&pool, &created.id).await;
        assert!(sold as usize >= confirmed.len());
        let stored: HashMap<String, i64> = sqlx::query("SELECT id, created_at_ms FROM sale_orders")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
            .collect();
        for order in &confirmed {
            assert!(stored.contains_key(order), "confirmed order {order} lost");
        }
        // The restarted instance's worker fulfils every order, once.
        let all = sold;
        let pool2 = pool.clone();
        let mut done = 0i64;
        for _ in 0..200 {
            done = sqlx::query_scalar("SELECT COUNT(*) FROM sale_fulfilments")
                .fetch_one(&pool2)
                .await
                .unwrap();
            if done == all {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(
            done, all,
            "every confirmed order fulfilled after the restart"
        );
        assert_ledger(&pool, &created.id).await;
        // The sale goes on: new buyers still get units after the crash.
        let late = guest(&second.base_url()).await;
        let status = checkout(&late, &created.id, "after-crash")
            .await
            .status
            .as_u16();
        assert!(matches!(status, 200 | 202 | 410), "{status}");
        assert_ledger(&pool, &created.id).await;
    }
);
