//! The shopping cart over HTTP and the realtime channel, on both backends:
//!
//! - the catalog; ops applied all or nothing, replayed op ids applied once, every
//!   limit refused with its code and nothing half-applied;
//! - Dynamo's rule across devices (a remove never deletes an add it had not seen), last
//!   writer wins for `set`, concurrent adds from two tabs and two devices all counted;
//! - guest adds → sign up / sign in → merged cart (max, or sum when configured), once,
//!   even for a retried or concurrent sign-in; the account's cart follows the user;
//!   signing out leaves a fresh guest cart;
//! - live updates to the other tabs and devices of a cart;
//! - the append-only history with its cursor; idle guest carts expire;
//! - kill -9 after an acknowledged op: the op is there after a restart.

use meridian_shared::cart::{
    CartEvent, CartHistory, CartOpInput, CartOpType, CartOpsRequest, CartOwner, CartView,
    HistoryKind, MergeMode, ProductList, MAX_LINES,
};
use meridian_shared::realtime::ServerMessage;
use meridian_tests::both_backends;
use meridian_tests::client::{Client, Realtime};
use meridian_tests::db::TestDatabase;
use meridian_tests::process::ServerProcess;
use meridian_tests::server::TestServer;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const PASSWORD: &str = "cart-tests-pass-1";
const DAY_MS: i64 = 24 * 3600 * 1000;

fn op(
    op_id: &str,
    op_type: CartOpType,
    product: Option<&str>,
    quantity: Option<u32>,
) -> CartOpInput {
    CartOpInput {
        op_id: op_id.to_owned(),
        op_type,
        product_id: product.map(str::to_owned),
        quantity,
        hlc: None,
        observed: None,
    }
}

fn add(op_id: &str, product: &str, quantity: u32) -> CartOpInput {
    op(op_id, CartOpType::Add, Some(product), Some(quantity))
}

async fn send(client: &Client, ops: Vec<CartOpInput>) -> CartView {
    client
        .post_json("/api/cart/ops", &CartOpsRequest { ops })
        .await
        .expect(200)
}

async fn cart(client: &Client) -> CartView {
    client.get("/api/cart").await.expect(200)
}

/// Product id → quantity.
fn quantities(view: &CartView) -> Vec<(String, u32)> {
    view.lines
        .iter()
        .map(|l| (l.product_id.clone(), l.quantity))
        .collect()
}

async fn products(client: &Client) -> Vec<String> {
    let list: ProductList = client.get("/api/products").await.expect(200);
    list.products.into_iter().map(|p| p.id).collect()
}

/// Reads realtime messages until a cart event of at least `version`.
async fn cart_event(socket: &mut Realtime, version: u64) -> CartView {
    socket
        .recv_until("a cart event", |message| match message {
            ServerMessage::Event(event) => {
                let CartEvent::Cart { cart } =
                    serde_json::from_value(event.payload.clone()).ok()?;
                (cart.version >= version).then_some(cart)
            }
            _ => None,
        })
        .await
}

both_backends!(catalog_and_a_guest_cart, |db: TestDatabase| async move {
    let server = TestServer::start(&db).await;
    let guest = Client::new(&server);
    let list: ProductList = guest.get("/api/products").await.expect(200);
    assert!(list.products.len() >= 50);
    assert!(list.products.iter().all(|p| p.unit_price_cents > 0));
    let (a, b) = (&list.products[0], &list.products[1]);

    let empty = cart(&guest).await;
    assert_eq!(empty.owner, CartOwner::Guest);
    assert_eq!((empty.version, empty.total_cents), (0, 0));
    assert!(empty.lines.is_empty());

    let view = send(&guest, vec![add("o1", &a.id, 2), add("o2", &b.id, 1)]).await;
    assert_eq!(view.version, 1, "one request, one version");
    assert_eq!(view.item_count, 3);
    assert_eq!(
        view.total_cents,
        2 * a.unit_price_cents + b.unit_price_cents
    );
    let line = &view.lines[0];
    assert_eq!(
        (line.name.as_str(), line.unit_price_cents),
        (a.name.as_str(), a.unit_price_cents)
    );
    assert_eq!(cart(&guest).await, view, "GET shows what POST answered");

    // The JSON shape of the contract.
    let raw: serde_json::Value = guest.get("/api/cart").await.expect(200);
    for field in ["lines", "total_cents", "version", "owner"] {
        assert!(raw.get(field).is_some(), "{field} in {raw}");
    }
    assert_eq!(raw["owner"], "guest");
    assert!(raw["lines"][0]["product_id"].is_string());

    // Steppers: set, remove, clear.
    let view = send(
        &guest,
        vec![op("o3", CartOpType::Set, Some(&a.id), Some(5))],
    )
    .await;
    assert_eq!(quantities(&view)[0], (a.id.clone(), 5));
    let view = send(
        &guest,
        vec![op("o4", CartOpType::Remove, Some(&b.id), None)],
    )
    .await;
    assert_eq!(quantities(&view), vec![(a.id.clone(), 5)]);
    let view = send(&guest, vec![op("o5", CartOpType::Clear, None, None)]).await;
    assert!(view.lines.is_empty());
    assert_eq!(view.version, 4);
    assert!(
        view.ops.len() <= 1,
        "superseded ops are compacted: {:?}",
        view.ops
    );

    // Another browser has its own cart.
    assert!(cart(&Client::new(&server)).await.lines.is_empty());
    server.shutdown().await;
});

both_backends!(replayed_op_ids_apply_once, |db: TestDatabase| async move {
    let server = TestServer::start(&db).await;
    let guest = Client::new(&server);
    let ids = products(&guest).await;
    let ops = vec![add("r1", &ids[0], 2), add("r2", &ids[0], 3)];
    let first = send(&guest, ops.clone()).await;
    let again = send(&guest, ops).await;
    assert_eq!(quantities(&again), vec![(ids[0].clone(), 5)]);
    assert_eq!(again.version, first.version, "a replay changes nothing");
    // Same op id, different content: still the first one's effect.
    let changed = send(&guest, vec![add("r1", &ids[0], 9)]).await;
    assert_eq!(quantities(&changed), vec![(ids[0].clone(), 5)]);
    // A batch repeating an op id applies it once.
    let view = send(&guest, vec![add("r3", &ids[1], 1), add("r3", &ids[1], 1)]).await;
    assert_eq!(quantities(&view)[1], (ids[1].clone(), 1));
    server.shutdown().await;
});

both_backends!(bad_ops_are_refused_whole, |db: TestDatabase| async move {
    let server = TestServer::start(&db).await;
    let guest = Client::new(&server);
    let ids = products(&guest).await;
    send(&guest, vec![add("ok", &ids[0], 1)]).await;

    let cases: Vec<(Vec<CartOpInput>, &str)> = vec![
        (
            vec![add("b1", &ids[1], 1), add("b2", "no-such-product", 1)],
            "unknown_product",
        ),
        (vec![add("b3", &ids[1], 0)], "quantity_out_of_range"),
        (vec![add("b4", &ids[1], 100)], "quantity_out_of_range"),
        (
            vec![op("b5", CartOpType::Set, Some(&ids[1]), None)],
            "quantity_out_of_range",
        ),
        (
            vec![op("b6", CartOpType::Remove, None, None)],
            "missing_product",
        ),
        (vec![add("bad id", &ids[1], 1)], "invalid_op_id"),
        (
            (0..101)
                .map(|i| add(&format!("m{i}"), &ids[1], 1))
                .collect(),
            "too_many_ops",
        ),
    ];
    for (ops, code) in cases {
        guest
            .post_json("/api/cart/ops", &CartOpsRequest { ops })
            .await
            .assert_error(422, code);
    }
    let reply = guest
        .post_json(
            "/api/cart/ops",
            &json!({"ops": [{"op_id": "x", "type": "explode", "product_id": ids[0]}]}),
        )
        .await;
    assert!(
        reply.status == 400 || reply.status == 422,
        "{}",
        reply.status
    );
    let reply = guest.post_json("/api/cart/ops", &json!({"nope": 1})).await;
    assert!(
        reply.status == 400 || reply.status == 422,
        "{}",
        reply.status
    );
    guest
        .get("/api/cart/history?limit=0")
        .await
        .assert_error(422, "invalid_limit");

    let view = cart(&guest).await;
    assert_eq!(
        quantities(&view),
        vec![(ids[0].clone(), 1)],
        "nothing half-applied"
    );
    assert_eq!(view.version, 1);

    // The line limit, at the boundary: quantities are capped, a 101st line is refused.
    assert!(ids.len() > MAX_LINES);
    let fill: Vec<CartOpInput> = ids[1..MAX_LINES]
        .iter()
        .enumerate()
        .map(|(i, id)| add(&format!("f{i}"), id, 98))
        .collect();
    let full = send(&guest, fill).await;
    assert_eq!(full.lines.len(), MAX_LINES);
    guest
        .post_json(
            "/api/cart/ops",
            &CartOpsRequest {
                ops: vec![add("one-more", &ids[MAX_LINES], 1)],
            },
        )
        .await
        .assert_error(422, "too_many_lines");
    let capped = send(&guest, vec![add("cap", &ids[1], 5)]).await;
    assert_eq!(capped.lines[1].quantity, 99, "a line shows at most 99");
    assert_eq!(capped.lines.len(), MAX_LINES);
    server.shutdown().await;
});

both_backends!(
    a_remove_never_deletes_an_unseen_add,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let phone = Client::new(&server);
        phone
            .signup("dynamo", PASSWORD)
            .await
            .expect::<serde_json::Value>(201);
        let laptop = Client::new(&server);
        laptop
            .signin("dynamo", PASSWORD)
            .await
            .expect::<serde_json::Value>(200);
        let ids = products(&phone).await;
        let p = ids[0].as_str();

        let seen = send(&phone, vec![add("phone-1", p, 1)]).await;
        // The laptop adds while the phone, not having seen it, removes the line: the phone's
        // remove observed only its own add.
        send(&laptop, vec![add("laptop-1", p, 2)]).await;
        let mut remove = op("phone-rm", CartOpType::Remove, Some(p), None);
        remove.observed = Some(seen.ops.iter().map(|o| o.op_id.clone()).collect());
        remove.hlc = Some(seen.ops[0].hlc.clone());
        let after = send(&phone, vec![remove]).await;
        assert_eq!(
            quantities(&after),
            vec![(p.to_owned(), 2)],
            "the unseen add survives"
        );

        // A remove without `observed` takes what the server has seen: the line goes.
        let gone = send(
            &laptop,
            vec![op("laptop-rm", CartOpType::Remove, Some(p), None)],
        )
        .await;
        assert!(gone.lines.is_empty());
        // Sets are last-writer-wins by their clock, whatever the arrival order.
        let mut late = op("s-late", CartOpType::Set, Some(p), Some(7));
        late.hlc = Some(meridian_shared::cart::Hlc {
            wall_ms: u64::MAX / 2,
            counter: 0,
            node: "b".into(),
        });
        late.observed = Some(Vec::new());
        let mut early = op("s-early", CartOpType::Set, Some(p), Some(3));
        early.hlc = Some(meridian_shared::cart::Hlc {
            wall_ms: u64::MAX / 2 - 1,
            counter: 0,
            node: "a".into(),
        });
        early.observed = Some(Vec::new());
        send(&phone, vec![late]).await;
        let view = send(&laptop, vec![early]).await;
        assert_eq!(quantities(&view), vec![(p.to_owned(), 7)]);
        server.shutdown().await;
    }
);

both_backends!(
    two_tabs_and_two_devices_stay_live,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let tab_a = Client::new(&server);
        let ids = products(&tab_a).await;
        let view = cart(&tab_a).await;
        // The second tab shares the browser's cookie.
        let tab_b = tab_a.same_browser_at(&server.base_url());
        let (mut socket_b, _) = Realtime::connect(&tab_b).await;
        socket_b.subscribe(&view.topic, None).await;

        let sent = send(&tab_a, vec![add("tab-a-1", &ids[0], 1)]).await;
        let seen = cart_event(&mut socket_b, sent.version).await;
        assert_eq!(quantities(&seen), quantities(&sent));

        // Concurrent adds from both tabs: every one counts.
        let a = async {
            for i in 0..10 {
                send(&tab_a, vec![add(&format!("a{i}"), &ids[1], 1)]).await;
            }
        };
        let b = async {
            for i in 0..10 {
                send(&tab_b, vec![add(&format!("b{i}"), &ids[1], 2)]).await;
            }
        };
        tokio::join!(a, b);
        let both = cart(&tab_a).await;
        assert_eq!(both.lines[1].quantity, 30);
        assert_eq!(both.version, 21, "each request is one version, none lost");
        let last = cart_event(&mut socket_b, 21).await;
        assert_eq!(
            last,
            CartView {
                merge: None,
                ..both
            }
        );

        // Two devices of one account: the user's topic reaches both.
        let phone = Client::new(&server);
        phone
            .signup("twodevices", PASSWORD)
            .await
            .expect::<serde_json::Value>(201);
        let laptop = Client::new(&server);
        laptop
            .signin("twodevices", PASSWORD)
            .await
            .expect::<serde_json::Value>(200);
        let user_cart = cart(&laptop).await;
        assert_eq!(user_cart.owner, CartOwner::User);
        let (mut laptop_socket, _) = Realtime::connect(&laptop).await;
        laptop_socket.subscribe(&user_cart.topic, None).await;
        let (from_phone, from_laptop) = tokio::join!(
            send(&phone, vec![add("phone", &ids[2], 1)]),
            send(&laptop, vec![add("laptop", &ids[2], 1)])
        );
        assert!(from_phone.version != from_laptop.version);
        let seen = cart_event(&mut laptop_socket, 2).await;
        assert_eq!(seen.lines[0].quantity, 2);
        assert_eq!(cart(&phone).await.lines[0].quantity, 2);
        server.shutdown().await;
    }
);

/// Guest adds, the account has a cart already; signing in merges by `mode`.
async fn merge_scenario(db: &TestDatabase, mode: MergeMode) {
    let server = TestServer::start_with(db, |c| c.cart_merge_mode = mode).await;
    let first = Client::new(&server);
    first
        .signup("merger", PASSWORD)
        .await
        .expect::<serde_json::Value>(201);
    let ids = products(&first).await;
    send(&first, vec![add("acct-p0", &ids[0], 3)]).await;
    first.signout().await.expect::<serde_json::Value>(200);
    assert!(
        cart(&first).await.lines.is_empty(),
        "signing out leaves a fresh guest cart"
    );

    let guest = Client::new(&server);
    send(
        &guest,
        vec![add("g-p0", &ids[0], 2), add("g-p1", &ids[1], 4)],
    )
    .await;
    guest
        .signin("merger", PASSWORD)
        .await
        .expect::<serde_json::Value>(200);
    let merged = cart(&guest).await;
    assert_eq!(merged.owner, CartOwner::User);
    let p0 = if mode == MergeMode::Max { 3 } else { 5 };
    assert_eq!(
        quantities(&merged),
        vec![(ids[0].clone(), p0), (ids[1].clone(), 4)]
    );
    let summary = merged.merge.clone().expect("the merge notice");
    assert_eq!((summary.guest_lines, summary.guest_items), (2, 6));
    assert_eq!(
        summary.added_items,
        if mode == MergeMode::Max { 4 } else { 6 }
    );
    assert_eq!(summary.mode, mode);

    // A retried sign-in from the same browser changes nothing.
    guest
        .signin("merger", PASSWORD)
        .await
        .expect::<serde_json::Value>(200);
    assert_eq!(quantities(&cart(&guest).await), quantities(&merged));

    // The account's cart follows the user to another browser.
    let elsewhere = Client::new(&server);
    elsewhere
        .signin("merger", PASSWORD)
        .await
        .expect::<serde_json::Value>(200);
    let there = cart(&elsewhere).await;
    assert_eq!(quantities(&there), quantities(&merged));
    assert!(there.merge.is_none(), "an empty guest cart merges nothing");

    // The history shows the merge and its ops.
    let history: CartHistory = guest.get("/api/cart/history").await.expect(200);
    assert!(history
        .entries
        .iter()
        .any(|e| e.kind == HistoryKind::Merge && e.merge.as_ref() == Some(&summary)));
    server.shutdown().await;
}

both_backends!(guest_cart_merges_by_max, |db: TestDatabase| async move {
    merge_scenario(&db, MergeMode::Max).await;
});

both_backends!(guest_cart_merges_by_sum, |db: TestDatabase| async move {
    merge_scenario(&db, MergeMode::Sum).await;
});

both_backends!(
    concurrent_sign_ins_merge_once,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |c| c.cart_merge_mode = MergeMode::Sum).await;
        let owner = Client::new(&server);
        owner
            .signup("racer", PASSWORD)
            .await
            .expect::<serde_json::Value>(201);
        let ids = products(&owner).await;
        send(&owner, vec![add("acct", &ids[0], 1)]).await;

        // Two tabs of one guest sign in at once (same cookie): the guest's 2 units are
        // added once, in sum mode where a double merge would show.
        let tab_a = Client::new(&server);
        send(&tab_a, vec![add("guest", &ids[0], 2)]).await;
        let tab_b = tab_a.same_browser_at(&server.base_url());
        let (a, b) = tokio::join!(
            tab_a.signin("racer", PASSWORD),
            tab_b.signin("racer", PASSWORD)
        );
        assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
        assert_eq!(quantities(&cart(&owner).await), vec![(ids[0].clone(), 3)]);

        // Merging the same guest cart again (a crash after the merge committed, then a
        // retry) changes nothing.
        let guest_id = tab_a
            .me()
            .await
            .guest_session_id
            .expect("linked to the guest session");
        let user_id = tab_a.me().await.user.expect("signed in").id;
        let again = meridian_server::cart::merge_on_sign_in(&server.state, &guest_id, &user_id)
            .await
            .unwrap()
            .expect("the earlier merge");
        assert_eq!(again.added_items, 2);
        assert_eq!(quantities(&cart(&owner).await), vec![(ids[0].clone(), 3)]);
        server.shutdown().await;
    }
);

both_backends!(
    history_is_append_only_and_paged,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let guest = Client::new(&server);
        let ids = products(&guest).await;
        for i in 0..7 {
            send(
                &guest,
                vec![
                    add(&format!("h{i}a"), &ids[0], 1),
                    add(&format!("h{i}b"), &ids[1], 1),
                ],
            )
            .await;
        }
        send(&guest, vec![op("h-clear", CartOpType::Clear, None, None)]).await;
        let mut seen = Vec::new();
        let mut path = "/api/cart/history?limit=4".to_owned();
        loop {
            let page: CartHistory = guest.get(&path).await.expect(200);
            assert!(page.entries.len() <= 4);
            seen.extend(
                page.entries
                    .iter()
                    .map(|e| e.op.as_ref().unwrap().op_id.clone()),
            );
            match page.next_before {
                Some(cursor) => path = format!("/api/cart/history?limit=4&before={cursor}"),
                None => break,
            }
        }
        assert_eq!(seen.len(), 15, "every op once: {seen:?}");
        assert_eq!(seen[0], "h-clear", "newest first");
        assert_eq!(seen.last().unwrap(), "h0a");
        // Compaction keeps the row small, the history keeps everything.
        assert!(cart(&guest).await.ops.len() <= 1);
        server.shutdown().await;
    }
);

both_backends!(idle_guest_carts_expire, |db: TestDatabase| async move {
    let server = TestServer::start(&db).await;
    let idle = Client::new(&server);
    let ids = products(&idle).await;
    send(&idle, vec![add("idle", &ids[0], 1)]).await;
    server.clock.advance(20 * DAY_MS);
    let active = Client::new(&server);
    send(&active, vec![add("active", &ids[0], 1)]).await;
    server.clock.advance(11 * DAY_MS);

    let report = meridian_server::run_maintenance(&server.state)
        .await
        .unwrap();
    assert_eq!(report.guest_carts_deleted, 1);
    assert_eq!(
        cart(&active).await.lines.len(),
        1,
        "a cart changed 11 days ago stays"
    );
    server.shutdown().await;
});

both_backends!(
    acknowledged_ops_survive_kill_9,
    |db: TestDatabase| async move {
        let mut first = ServerProcess::start(BIN, &db).await;
        let guest = Client::at(&first.base_url());
        let ids = products(&guest).await;
        let acked = send(&guest, vec![add("k1", &ids[0], 2), add("k2", &ids[1], 1)]).await;
        let status = first.kill_9().await;
        assert!(!status.success());

        let second = ServerProcess::start(BIN, &db).await;
        let guest = guest.same_browser_at(&second.base_url());
        let after = cart(&guest).await;
        assert_eq!(quantities(&after), quantities(&acked));
        assert_eq!(after.version, acked.version);
        // The replay of the acknowledged request is recognised after the restart.
        let replay = send(&guest, vec![add("k1", &ids[0], 2)]).await;
        assert_eq!(replay.version, acked.version);
    }
);

/// Two instances on one PostgreSQL: a change made through one reaches a device watching
/// through the other, and concurrent ops through both are all kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_is_shared_across_instances() {
    let db = TestDatabase::create(meridian_tests::db::Backend::Postgres).await;
    let a = ServerProcess::start(BIN, &db).await;
    let b = ServerProcess::start(BIN, &db).await;
    let phone = Client::at(&a.base_url());
    phone
        .signup("twoinstances", PASSWORD)
        .await
        .expect::<serde_json::Value>(201);
    let laptop = Client::at(&b.base_url());
    laptop
        .signin("twoinstances", PASSWORD)
        .await
        .expect::<serde_json::Value>(200);
    let ids = products(&phone).await;
    let view = cart(&laptop).await;
    let (mut socket, _) = Realtime::connect(&laptop).await;
    socket.subscribe(&view.topic, None).await;

    let sent = send(&phone, vec![add("via-a", &ids[0], 2)]).await;
    let seen = cart_event(&mut socket, sent.version).await;
    assert_eq!(quantities(&seen), vec![(ids[0].clone(), 2)]);

    let through_a = async {
        for i in 0..10 {
            send(&phone, vec![add(&format!("a{i}"), &ids[1], 1)]).await;
        }
    };
    let through_b = async {
        for i in 0..10 {
            send(&laptop, vec![add(&format!("b{i}"), &ids[1], 1)]).await;
        }
    };
    tokio::join!(through_a, through_b);
    let both = cart(&phone).await;
    assert_eq!(both.lines[1].quantity, 20);
    assert_eq!(both.version, 21);
    assert_eq!(cart_event(&mut socket, 21).await.lines[1].quantity, 20);
}

// Group commit: many sessions sending at once, each op sent twice (the replay racing the
// original, so the two often land in different batches): every op applies exactly once.
both_backends!(
    concurrent_carts_apply_every_op_exactly_once,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let ids = products(&Client::new(&server)).await;
        const SESSIONS: usize = 24;
        const OPS: usize = 8;
        let mut clients = Vec::new();
        for _ in 0..SESSIONS {
            let client = Client::new(&server);
            cart(&client).await;
            clients.push(client);
        }
        let runs = clients.iter().enumerate().map(|(s, client)| {
            let ids = ids.clone();
            async move {
                for i in 0..OPS {
                    let ops = vec![add(&format!("c{s}-{i}"), &ids[i % 4], 1)];
                    let (a, b) = tokio::join!(send(client, ops.clone()), send(client, ops));
                    assert_eq!(a.cart_id, b.cart_id);
                }
            }
        });
        futures_util::future::join_all(runs).await;
        for client in &clients {
            let view = cart(client).await;
            assert_eq!(view.item_count as usize, OPS, "every op once: {view:?}");
            assert_eq!(view.version as usize, OPS, "one version per op");
            let history: CartHistory = client.get("/api/cart/history?limit=200").await.expect(200);
            assert_eq!(history.entries.len(), OPS, "one history entry per op");
        }
        server.shutdown().await;
    }
);

fn request(
    cart_id: &meridian_server::cart::CartRef,
    op_id: &str,
    product: &str,
    quantity: u32,
) -> meridian_server::cart::batch::Request {
    let op = meridian_shared::cart::CartOp {
        hlc: meridian_shared::cart::Hlc {
            wall_ms: 1,
            counter: 0,
            node: "batch-test".into(),
        },
        observed: Vec::new(),
        op_id: op_id.to_owned(),
        op_type: CartOpType::Add,
        product_id: Some(product.to_owned()),
        quantity: Some(quantity),
    };
    meridian_server::cart::batch::Request {
        cart: cart_id.clone(),
        ops: vec![(op, false)],
        session_id: None,
    }
}

// One batch holding a refused request: it alone is refused (and changes nothing of its
// cart: version, lines, history), the others in the same transaction commit.
both_backends!(
    a_refused_request_fails_alone_in_its_batch,
    |db: TestDatabase| async move {
        use meridian_server::cart::batch::write_batch;
        use meridian_server::cart::store::WriteError;
        use meridian_server::cart::CartRef;
        let server = TestServer::start(&db).await;
        let full_client = Client::new(&server);
        let ids = products(&full_client).await;
        let fill: Vec<_> = (0..MAX_LINES)
            .map(|i| add(&format!("f{i}"), &ids[i], 1))
            .collect();
        let full_view = send(&full_client, fill).await;
        let full = CartRef::guest(&full_client.me().await.session_id);
        assert_eq!(full.id, full_view.cart_id);

        let a = CartRef::guest("batch-a");
        let b = CartRef::guest("batch-b");
        let outcomes = write_batch(
            &server.state,
            vec![
                request(&a, "a1", &ids[0], 1),
                // A new line in a full cart: refused by the cart's rules, inside the batch.
                request(&full, "over", &ids[MAX_LINES], 1),
                request(&b, "b1", &ids[1], 2),
                request(&a, "a2", &ids[0], 3),
            ],
        )
        .await;
        assert_eq!(outcomes.len(), 4);
        let (stored, changed) = outcomes[0].as_ref().expect("a1 applied");
        assert!(changed);
        assert_eq!(stored.version, 1);
        assert!(
            matches!(&outcomes[1], Err(WriteError::Op(0, err)) if err.code() == "too_many_lines"),
            "{:?}",
            outcomes[1]
        );
        let (stored, _) = outcomes[2].as_ref().expect("b1 applied");
        assert_eq!(stored.live.lines().get(&ids[1]), Some(&2));
        let (stored, _) = outcomes[3].as_ref().expect("a2 applied after a1");
        assert_eq!(stored.version, 2);
        assert_eq!(stored.live.lines().get(&ids[0]), Some(&4));

        let after = cart(&full_client).await;
        assert_eq!(
            after.version, full_view.version,
            "the refused request changed nothing"
        );
        assert_eq!(quantities(&after), quantities(&full_view));
        // A batch of nothing but replays changes nothing.
        let replays = write_batch(&server.state, vec![request(&b, "b1", &ids[1], 2)]).await;
        let (stored, changed) = replays[0].as_ref().expect("a replay is fine");
        assert!(!changed);
        assert_eq!(stored.version, 1);
        server.shutdown().await;
    }
);

/// A complete op for [`write_batch`](meridian_server::cart::batch::write_batch), at
/// HLC `wall_ms`.
fn batch_op(
    op_id: &str,
    op_type: CartOpType,
    product: Option<&str>,
    quantity: Option<u32>,
    observed: &[&str],
    wall_ms: u64,
) -> meridian_shared::cart::CartOp {
    meridian_shared::cart::CartOp {
        hlc: meridian_shared::cart::Hlc {
            wall_ms,
            counter: 0,
            node: "batch-test".into(),
        },
        observed: observed.iter().map(|id| (*id).to_owned()).collect(),
        op_id: op_id.to_owned(),
        op_type,
        product_id: product.map(str::to_owned),
        quantity,
    }
}

fn change(
    cart: &meridian_server::cart::CartRef,
    ops: Vec<(meridian_shared::cart::CartOp, bool)>,
) -> meridian_server::cart::batch::Request {
    meridian_server::cart::batch::Request {
        cart: cart.clone(),
        ops,
        session_id: None,
    }
}

/// `(op id, version, superseded on arrival)` of a cart's whole history, oldest first.
async fn history_of(server: &TestServer, cart_id: &str) -> Vec<(String, u64, bool)> {
    let mut entries =
        meridian_server::cart::store::history(&server.state.db.pool, cart_id, u64::MAX, 1000)
            .await
            .expect("the history");
    entries.reverse();
    entries
        .into_iter()
        .map(|(_, e)| {
            let id = e.op.map(|op| op.op_id).unwrap_or_else(|| "merge".into());
            (id, e.version, e.superseded_on_arrival)
        })
        .collect()
}

// One batch mixing refused and accepted changes of one cart and of others: a refused
// change writes nothing (its accepted first op neither, and its op id stays free), and
// the later changes of a cart see the earlier ones of the same batch (their op ids,
// what they observed, their tombstones).
both_backends!(
    a_batch_mixes_refused_and_accepted_changes,
    |db: TestDatabase| async move {
        use meridian_server::cart::batch::write_batch;
        use meridian_server::cart::store::{self, WriteError};
        use meridian_server::cart::CartRef;
        use CartOpType::{Add, Remove, Set};
        let server = TestServer::start(&db).await;
        let ids = products(&Client::new(&server)).await;
        let (p0, p1, p2) = (
            Some(ids[0].as_str()),
            Some(ids[1].as_str()),
            Some(ids[2].as_str()),
        );
        let x = CartRef::guest("mix-x");
        let y = CartRef::guest("mix-y");
        let outcomes = write_batch(
            &server.state,
            vec![
                change(&x, vec![(batch_op("x1", Add, p0, Some(1), &[], 1), false)]),
                // Its second op is refused: the first is not written either.
                change(
                    &x,
                    vec![
                        (batch_op("x2", Add, p1, Some(2), &[], 2), false),
                        (batch_op("bad", Add, p2, Some(0), &[], 3), false),
                    ],
                ),
                change(&y, vec![(batch_op("y1", Add, p0, Some(5), &[], 4), false)]),
                // The refused change's op id is free: it applies here.
                change(&x, vec![(batch_op("x2", Add, p1, Some(3), &[], 5), false)]),
                // Observes y1, accepted earlier in this batch.
                change(&y, vec![(batch_op("yr", Remove, p0, None, &[], 6), true)]),
                // A replay of this batch's x1: nothing new.
                change(&x, vec![(batch_op("x1", Add, p0, Some(1), &[], 7), false)]),
                // A set that had seen `late`, which arrives after it, dead.
                change(
                    &y,
                    vec![(batch_op("ys", Set, p1, Some(2), &["late"], 8), false)],
                ),
                change(
                    &y,
                    vec![(batch_op("late", Add, p1, Some(4), &[], 9), false)],
                ),
            ],
        )
        .await;
        let summary: Vec<String> = outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok((stored, changed)) => format!("v{} {changed}", stored.version),
                Err(WriteError::Op(index, err)) => format!("op {index}: {}", err.code()),
                Err(other) => format!("{other}"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "v1 true",
                "op 1: quantity_out_of_range",
                "v1 true",
                "v2 true",
                "v2 true",
                "v2 false",
                "v3 true",
                "v4 true",
            ]
        );
        let pool = &server.state.db.pool;
        let stored_x = store::load(pool, &x.id).await.expect("x");
        assert_eq!(stored_x.version, 2);
        let lines_x = stored_x.live.lines();
        assert_eq!(lines_x.get(&ids[0]), Some(&1));
        assert_eq!(lines_x.get(&ids[1]), Some(&3));
        assert_eq!(lines_x.len(), 2);
        let stored_y = store::load(pool, &y.id).await.expect("y");
        assert_eq!(stored_y.version, 4);
        let lines_y: Vec<_> = stored_y.live.lines().into_iter().collect();
        assert_eq!(
            lines_y,
            [(ids[1].clone(), 2)],
            "y1 removed, late arrived dead"
        );
        assert_eq!(
            history_of(&server, &x.id).await,
            [("x1".into(), 1, false), ("x2".into(), 2, false)]
        );
        assert_eq!(
            history_of(&server, &y.id).await,
            [
                ("y1".into(), 1, false),
                ("yr".into(), 2, false),
                ("ys".into(), 3, false),
                ("late".into(), 4, true),
            ]
        );
        // One realtime event per accepted change, numbered in order.
        use meridian_server::realtime::store::head;
        assert_eq!(head(pool, &x.topic).await.expect("x's topic"), 2);
        assert_eq!(head(pool, &y.topic).await.expect("y's topic"), 4);
        // The tombstone of `late` is stored: a replay in a later batch is a duplicate,
        // and a new op observed by the stored set still arrives dead.
        let again = write_batch(
            &server.state,
            vec![change(
                &y,
                vec![(batch_op("late", Add, p1, Some(4), &[], 10), false)],
            )],
        )
        .await;
        assert!(matches!(&again[0], Ok((stored, false)) if stored.version == 4));
        server.shutdown().await;
    }
);

/// Statements that make the history refuse the op id `boom` (a stand-in for a full disk
/// or a lost connection in the middle of a batch's writes), and those that undo them.
fn history_refuses_boom(
    backend: meridian_tests::db::Backend,
) -> (&'static [&'static str], &'static [&'static str]) {
    match backend {
        meridian_tests::db::Backend::Sqlite => (
            &["CREATE TRIGGER fail_boom BEFORE INSERT ON cart_history
               WHEN NEW.op_id = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END"],
            &["DROP TRIGGER fail_boom"],
        ),
        meridian_tests::db::Backend::Postgres => (
            &[
                "CREATE FUNCTION fail_boom() RETURNS trigger AS $$
                 BEGIN IF NEW.op_id = 'boom' THEN RAISE EXCEPTION 'boom'; END IF;
                 RETURN NEW; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER fail_boom BEFORE INSERT ON cart_history
                 FOR EACH ROW EXECUTE FUNCTION fail_boom()",
            ],
            &["DROP TRIGGER fail_boom ON cart_history"],
        ),
    }
}

async fn run_all(pool: &sqlx::AnyPool, statements: &[&str]) {
    for sql in statements {
        sqlx::query(sql)
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

// The committer writes on a connection it keeps from one batch to the next. A failed
// batch answers its requests with an error and closes that connection (the error may
// have been the connection's own); the next batch takes another and is written, and the
// failed request, sent again, applies once.
both_backends!(
    the_committer_carries_on_after_a_failed_batch,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let guest = Client::new(&server);
        let ids = products(&guest).await;
        assert_eq!(send(&guest, vec![add("c1", &ids[0], 1)]).await.version, 1);
        let pool = &server.state.db.pool;
        let (install, remove) = history_refuses_boom(db.backend);
        run_all(pool, install).await;
        let boom = CartOpsRequest {
            ops: vec![add("boom", &ids[1], 2)],
        };
        let failed = guest.post_json("/api/cart/ops", &boom).await;
        assert_eq!(failed.status, 500, "{}", failed.json);
        assert_eq!(failed.json["code"], "internal");
        // Still refused while the trigger stands, and nothing else is lost meanwhile.
        assert_eq!(guest.post_json("/api/cart/ops", &boom).await.status, 500);
        assert_eq!(send(&guest, vec![add("c2", &ids[0], 1)]).await.version, 2);
        run_all(pool, remove).await;
        let view = send(&guest, boom.ops.clone()).await;
        assert_eq!(view.version, 3);
        assert_eq!(
            quantities(&view),
            [(ids[0].clone(), 2), (ids[1].clone(), 2)]
        );
        assert_eq!(
            send(&guest, boom.ops.clone()).await.version,
            3,
            "applied once"
        );
        server.shutdown().await;
    }
);

// A database error while a batch is written fails every change of the batch, accepted
// or not, and leaves nothing of it: no history, no snapshot, no event; the carts read
// afterwards (and so what the next batch starts from) are those of before.
both_backends!(
    a_failed_batch_writes_nothing,
    |db: TestDatabase| async move {
        use meridian_server::cart::batch::write_batch;
        use meridian_server::cart::store::{self, WriteError};
        use meridian_server::cart::CartRef;
        use meridian_server::realtime::store::head;
        use CartOpType::Add;
        let server = TestServer::start(&db).await;
        let ids = products(&Client::new(&server)).await;
        let p0 = Some(ids[0].as_str());
        let a = CartRef::guest("fail-a");
        let b = CartRef::guest("fail-b");
        let first = write_batch(
            &server.state,
            vec![change(
                &a,
                vec![(batch_op("a1", Add, p0, Some(1), &[], 1), false)],
            )],
        )
        .await;
        assert!(matches!(&first[0], Ok((stored, true)) if stored.version == 1));
        let pool = &server.state.db.pool;
        let (install, remove) = history_refuses_boom(db.backend);
        run_all(pool, install).await;
        let failed = write_batch(
            &server.state,
            vec![
                change(&a, vec![(batch_op("a2", Add, p0, Some(2), &[], 2), false)]),
                change(
                    &b,
                    vec![(batch_op("boom", Add, p0, Some(1), &[], 3), false)],
                ),
                change(&a, vec![(batch_op("a3", Add, p0, Some(0), &[], 4), false)]),
            ],
        )
        .await;
        assert_eq!(failed.len(), 3);
        for outcome in &failed {
            assert!(matches!(outcome, Err(WriteError::Batch(_))), "{outcome:?}");
        }
        let stored_a = store::load(pool, &a.id).await.expect("a");
        assert_eq!(stored_a.version, 1);
        assert_eq!(stored_a.live.lines().get(&ids[0]), Some(&1));
        assert_eq!(store::load(pool, &b.id).await.expect("b").version, 0);
        assert_eq!(history_of(&server, &a.id).await, [("a1".into(), 1, false)]);
        assert!(history_of(&server, &b.id).await.is_empty());
        assert_eq!(head(pool, &a.topic).await.expect("a's topic"), 1);
        assert_eq!(head(pool, &b.topic).await.expect("b's topic"), 0);
        run_all(pool, remove).await;
        // The same changes again, in a batch that can commit: they apply on the cart
        // as it was before the failed batch.
        let retried = write_batch(
            &server.state,
            vec![
                change(&a, vec![(batch_op("a2", Add, p0, Some(2), &[], 2), false)]),
                change(
                    &b,
                    vec![(batch_op("boom", Add, p0, Some(1), &[], 3), false)],
                ),
            ],
        )
        .await;
        assert!(
            matches!(&retried[0], Ok((stored, true)) if stored.version == 2
            && stored.live.lines().get(&ids[0]) == Some(&3))
        );
        assert!(matches!(&retried[1], Ok((stored, true)) if stored.version == 1));
        assert_eq!(head(pool, &a.topic).await.expect("a's topic"), 2);
        server.shutdown().await;
    }
);

/// Random requests over a few carts (adds, sets, removes and clears, some refused,
/// some op ids replayed, `observed` filled by the server or sent, possibly naming ops
/// still to come).
fn random_requests(
    rng: &mut rand::rngs::StdRng,
    carts: &[meridian_server::cart::CartRef],
    products: &[String],
    count: usize,
) -> Vec<meridian_server::cart::batch::Request> {
    use rand::Rng;
    let mut wall_ms = 0;
    (0..count)
        .map(|_| {
            let cart = &carts[rng.random_range(0..carts.len())];
            let ops = (0..rng.random_range(1..=3))
                .map(|_| {
                    wall_ms += 1;
                    let op_id = format!("o{}", rng.random_range(0..24));
                    let product = Some(products[rng.random_range(0..4)].as_str());
                    // A quantity of 0 is refused (and so its whole request).
                    let quantity = Some(rng.random_range(0..=4));
                    let observed: Vec<String> = (0..rng.random_range(0..3))
                        .map(|_| format!("o{}", rng.random_range(0..24)))
                        .collect();
                    let observed: Vec<&str> = observed.iter().map(String::as_str).collect();
                    let fill = rng.random_bool(0.5);
                    let op = match rng.random_range(0..10) {
                        0..=4 => batch_op(&op_id, CartOpType::Add, product, quantity, &[], wall_ms),
                        5..=6 => batch_op(
                            &op_id,
                            CartOpType::Set,
                            product,
                            quantity,
                            &observed,
                            wall_ms,
                        ),
                        7..=8 => batch_op(
                            &op_id,
                            CartOpType::Remove,
                            product,
                            None,
                            &observed,
                            wall_ms,
                        ),
                        _ => batch_op(&op_id, CartOpType::Clear, None, None, &observed, wall_ms),
                    };
                    (op, fill)
                })
                .collect();
            change(cart, ops)
        })
        .collect()
}

// Many carts' changes in one batch end exactly as the same changes written one batch
// each, in arrival order: the same answers, carts, histories (with what arrived dead)
// and events. Seeded: CART_BATCH_SEED replays a run.
both_backends!(
    a_batch_equals_its_changes_one_by_one,
    |db: TestDatabase| async move {
        use meridian_server::cart::batch::write_batch;
        use meridian_server::cart::store;
        use meridian_server::cart::CartRef;
        use meridian_server::realtime::store::head;
        use rand::SeedableRng;
        let seed: u64 = std::env::var("CART_BATCH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x00ca_57ba_7c4e);
        println!("CART_BATCH_SEED={seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let other_db = TestDatabase::create(db.backend).await;
        let batched = TestServer::start(&db).await;
        let one_by_one = TestServer::start(&other_db).await;
        let ids = products(&Client::new(&batched)).await;
        for case in 0..12 {
            let carts: Vec<CartRef> = (0..3)
                .map(|c| CartRef::guest(&format!("prop-{case}-{c}")))
                .collect();
            let requests = random_requests(&mut rng, &carts, &ids, 24);
            let copies: Vec<_> = requests
                .iter()
                .map(|r| change(&r.cart, r.ops.clone()))
                .collect();
            let together = write_batch(&batched.state, requests).await;
            let mut alone = Vec::new();
            for request in copies {
                alone.extend(write_batch(&one_by_one.state, vec![request]).await);
            }
            let describe = |outcomes: &[meridian_server::cart::batch::Outcome]| {
                outcomes
                    .iter()
                    .map(|outcome| match outcome {
                        Ok((stored, changed)) => {
                            format!("v{} {changed} {:?}", stored.version, stored.live.lines())
                        }
                        Err(err) => format!("{err}"),
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                describe(&together),
                describe(&alone),
                "seed {seed}, case {case}"
            );
            for cart in &carts {
                let a = store::load(&batched.state.db.pool, &cart.id)
                    .await
                    .expect("a cart");
                let b = store::load(&one_by_one.state.db.pool, &cart.id)
                    .await
                    .expect("a cart");
                assert_eq!(
                    a.version, b.version,
                    "seed {seed}, case {case}, {}",
                    cart.id
                );
                assert_eq!(a.live, b.live, "seed {seed}, case {case}, {}", cart.id);
                assert_eq!(
                    history_of(&batched, &cart.id).await,
                    history_of(&one_by_one, &cart.id).await,
                    "seed {seed}, case {case}, {}",
                    cart.id
                );
                assert_eq!(
                    head(&batched.state.db.pool, &cart.topic)
                        .await
                        .expect("a topic"),
                    head(&one_by_one.state.db.pool, &cart.topic)
                        .await
                        .expect("a topic"),
                );
            }
        }
        batched.shutdown().await;
        one_by_one.shutdown().await;
    }
);

// kill -9 in the middle of load: every op the server acknowledged is there after the
// restart, on every cart.
both_backends!(
    kill_9_under_load_loses_nothing_acknowledged,
    |db: TestDatabase| async move {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let mut first = ServerProcess::start(BIN, &db).await;
        let base = first.base_url();
        let ids = products(&Client::at(&base)).await;
        const SESSIONS: usize = 16;
        // Plain HTTP clients with cookie stores: a refused connection is an answer here.
        let mut browsers = Vec::new();
        for _ in 0..SESSIONS {
            let http = reqwest::Client::builder()
                .cookie_store(true)
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("an HTTP client");
            let reply = http
                .get(format!("{base}/api/cart"))
                .send()
                .await
                .expect("GET");
            assert_eq!(reply.status(), 200);
            browsers.push(http);
        }
        let acks = Arc::new(AtomicUsize::new(0));
        let enough = Arc::new(tokio::sync::Notify::new());
        let loads: Vec<_> = browsers
            .iter()
            .enumerate()
            .map(|(s, http)| {
                let (http, ids, acks, enough, base) = (
                    http.clone(),
                    ids.clone(),
                    acks.clone(),
                    enough.clone(),
                    base.clone(),
                );
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    for i in 0.. {
                        let op_id = format!("k{s}-{i}");
                        let request = CartOpsRequest {
                            ops: vec![add(&op_id, &ids[i % 20], 1)],
                        };
                        let sent = http
                            .post(format!("{base}/api/cart/ops"))
                            .json(&request)
                            .send()
                            .await;
                        match sent {
                            Ok(reply) if reply.status() == 200 => {}
                            _ => break, // the server is gone
                        }
                        acked.push(op_id);
                        if acks.fetch_add(1, Ordering::SeqCst) + 1 == SESSIONS * 10 {
                            enough.notify_one();
                        }
                    }
                    acked
                })
            })
            .collect();
        enough.notified().await;
        assert!(!first.kill_9().await.success());
        let mut acked = Vec::new();
        for load in loads {
            acked.push(load.await.expect("a load task"));
        }
        assert!(acked.iter().map(Vec::len).sum::<usize>() >= SESSIONS * 10);

        let second = ServerProcess::start(BIN, &db).await;
        let base = second.base_url();
        for (http, acked) in browsers.iter().zip(acked) {
            let mut stored = std::collections::HashSet::new();
            let mut before: Option<u64> = None;
            loop {
                let path = match before {
                    Some(b) => format!("{base}/api/cart/history?limit=200&before={b}"),
                    None => format!("{base}/api/cart/history?limit=200"),
                };
                let page: CartHistory = http
                    .get(path)
                    .send()
                    .await
                    .expect("GET history")
                    .json()
                    .await
                    .expect("a history page");
                stored.extend(
                    page.entries
                        .into_iter()
                        .filter_map(|e| e.op.map(|op| op.op_id)),
                );
                match page.next_before {
                    Some(b) => before = Some(b),
                    None => break,
                }
            }
            for op_id in &acked {
                assert!(stored.contains(op_id), "acknowledged {op_id} was lost");
            }
        }
    }
);
