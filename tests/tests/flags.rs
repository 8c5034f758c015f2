//! Feature flags through the real server, on both backends: the admin API (validation
//! that names the rule, segments, the audit log, approvals by a second user, scheduled
//! changes), OFREP (every error code, ETag and 304), and the SSE stream (the kill switch
//! reaching subscribers, catch-up with `Last-Event-ID`, two instances on one
//! PostgreSQL). SDK endpoints are called with delivery keys; who may do what is in
//! `flags_access.rs`.

use std::time::Duration;

use meridian_shared::flags::admin::{
    AuditLog, ChangeOutcome, ChangeStatus, FlagList, FlagSnapshot, KillOutcome, Preview,
};
use meridian_shared::flags::{Flag, Reason};
use meridian_tests::both_backends;
use meridian_tests::client::{Client, FlagStream, Reply};
use meridian_tests::db::TestDatabase;
use meridian_tests::process::ServerProcess;
use meridian_tests::server::TestServer;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const PASSWORD: &str = "flag-tests-pass-1";

async fn put(client: &Client, path: &str, body: &Value) -> Reply {
    client
        .send(client.http().put(client.url(path)).json(body))
        .await
}

async fn admin(server_url: &str, name: &str) -> Client {
    let client = Client::at(server_url);
    client.signup(name, PASSWORD).await.expect::<Value>(201);
    client
}

fn boolean_flag(key: &str) -> Value {
    json!({
        "key": key,
        "name": format!("Flag {key}"),
        "kind": "boolean",
        "variations": [{"name": "on", "value": true}, {"name": "off", "value": false}],
        "environments": {
            "production": {"enabled": true, "off_variation": "off", "default_serve": {"variation": "on"}}
        }
    })
}

fn env_config(rules: Value, default_serve: Value) -> Value {
    json!({"config": {"enabled": true, "off_variation": "off", "default_serve": default_serve, "rules": rules}})
}

/// OFREP's evaluation of `flag` for `context`, with the delivery key `key`.
async fn ofrep(client: &Client, key: &str, flag: &str, context: Value) -> Reply {
    client
        .send(
            client
                .http()
                .post(client.url(&format!("/ofrep/v1/evaluate/flags/{flag}")))
                .bearer_auth(key)
                .json(&json!({ "context": context })),
        )
        .await
}

/// The configuration stream of one environment, read with a server key.
struct Stream(FlagStream);

impl Stream {
    async fn open(
        base_url: &str,
        environment: &str,
        key: &str,
        last_event_id: Option<u64>,
    ) -> Stream {
        let path = format!("/api/flags/stream?environment={environment}");
        match FlagStream::open(&Client::at(base_url), &path, Some(key), last_event_id).await {
            Ok(stream) => Stream(stream),
            Err(reply) => panic!("the stream was refused: {} {}", reply.status, reply.json),
        }
    }

    /// The next `put` event (id, snapshot), or `None` if none comes within `wait`.
    async fn next_put(&mut self, wait: Duration) -> Option<(u64, FlagSnapshot)> {
        let (id, data) = self.0.next_put(wait).await?;
        Some((id, serde_json::from_str(&data).expect("a snapshot")))
    }
}

fn killed(snapshot: &FlagSnapshot, key: &str) -> bool {
    snapshot
        .flags
        .iter()
        .find(|f| f.key == key)
        .is_some_and(|f| f.environment.killed)
}

both_backends!(
    flags_are_validated_and_audited,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let anonymous = Client::new(&server);
        anonymous
            .get("/api/flags")
            .await
            .assert_error(401, "sign_in_required");
        let alice = admin(&server.base_url(), "alice").await;

        let created: Flag = alice
            .post_json("/api/flags", &boolean_flag("new-checkout"))
            .await
            .expect(201);
        assert_eq!(
            created.environments.len(),
            2,
            "development is filled in, off"
        );
        assert!(!created.environments["development"].enabled);
        alice
            .post_json("/api/flags", &boolean_flag("new-checkout"))
            .await
            .assert_error(409, "flag_exists");
        alice
            .post_json("/api/flags", &boolean_flag("audit"))
            .await
            .assert_error(400, "invalid_flag");

        // A bad rule is refused with a message that names it.
        let bad = env_config(
            json!([
                {"clauses": [{"attribute": "plan", "operator": "equals", "values": ["pro"]}], "serve": {"variation": "on"}},
                {"clauses": [{"attribute": "version", "operator": "semver_gte", "values": ["1.x"]}], "serve": {"variation": "on"}}
            ]),
            json!({"variation": "off"}),
        );
        let reply = put(
            &alice,
            "/api/flags/new-checkout/environments/production",
            &bad,
        )
        .await;
        reply.assert_error(400, "invalid_flag");
        let message = reply.json["message"].as_str().unwrap();
        assert!(message.contains("rules[1].clauses[0]"), "{message}");
        let unknown = env_config(json!([]), json!({"variation": "maybe"}));
        put(
            &alice,
            "/api/flags/new-checkout/environments/production",
            &unknown,
        )
        .await
        .assert_error(400, "invalid_flag");
        put(&alice, "/api/flags/nope/environments/production", &unknown)
            .await
            .assert_error(404, "flag_not_found");

        // Targeting with a segment and a semver rule, checked by preview and OFREP.
        let segment = json!({"key": "beta", "name": "Beta testers", "included": ["u-1"]});
        let _: Value = put(&alice, "/api/flags/segments/beta", &segment)
            .await
            .expect(200);
        let good = env_config(
            json!([
                {"clauses": [{"operator": "in_segment", "values": ["beta"]}], "serve": {"variation": "on"}},
                {"clauses": [{"attribute": "app", "operator": "semver_gte", "values": ["2.1.0"]}], "serve": {"variation": "on"}}
            ]),
            json!({"variation": "off"}),
        );
        let outcome: ChangeOutcome = put(
            &alice,
            "/api/flags/new-checkout/environments/production",
            &good,
        )
        .await
        .expect(200);
        assert_eq!(outcome.status, ChangeStatus::Applied);
        let preview: Preview = alice
        .post_json(
            "/api/flags/new-checkout/preview",
            &json!({"environment": "production", "context": {"targetingKey": "u-2", "app": "2.10.0"}}),
        )
        .await
        .expect(200);
        assert_eq!(
            (preview.variant.as_str(), preview.reason, preview.rule_index),
            ("on", Reason::TargetingMatch, Some(1))
        );
        let sdk = Client::new(&server);
        let key = alice.create_flag_key("production", "client").await.key;
        let beta: Value = ofrep(&sdk, &key, "new-checkout", json!({"targetingKey": "u-1"}))
            .await
            .expect(200);
        assert_eq!(
            (beta["value"].clone(), beta["reason"].clone()),
            (json!(true), json!("TARGETING_MATCH"))
        );
        let old_app: Value = ofrep(
            &sdk,
            &key,
            "new-checkout",
            json!({"targetingKey": "u-3", "app": "2.1.0-rc.1"}),
        )
        .await
        .expect(200);
        assert_eq!(
            (old_app["variant"].clone(), old_app["reason"].clone()),
            (json!("off"), json!("DEFAULT"))
        );

        // A segment in use cannot go.
        alice
            .delete("/api/flags/segments/beta")
            .await
            .assert_error(409, "segment_in_use");

        // The audit log: who, what, before and after, newest first.
        let log: AuditLog = alice.get("/api/flags/new-checkout/audit").await.expect(200);
        let actions: Vec<&str> = log.entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, vec!["update_environment", "create"]);
        let change = &log.entries[0];
        assert_eq!(change.actor_name, "alice");
        assert_eq!(change.environment.as_deref(), Some("production"));
        assert_eq!(
            change.before.as_ref().unwrap()["default_serve"],
            json!({"variation": "on"})
        );
        assert_eq!(
            change.after.as_ref().unwrap()["default_serve"],
            json!({"variation": "off"})
        );
        let all: AuditLog = alice.get("/api/flags/audit?limit=2").await.expect(200);
        assert_eq!(all.entries.len(), 2);
        assert!(all.next_before.is_some());
        let list: FlagList = alice.get("/api/flags").await.expect(200);
        assert_eq!(list.flags.len(), 1);
        assert_eq!(list.version, 4, "create, segment, change, and the key");
        server.shutdown().await;
    }
);

both_backends!(ofrep_answers_and_errors, |db: TestDatabase| async move {
    let server = TestServer::start(&db).await;
    let alice = admin(&server.base_url(), "alice").await;
    let mut flag = boolean_flag("rollout");
    flag["environments"]["production"]["default_serve"] = json!({"rollout": {"variations": [{"variation": "on", "weight": 30}, {"variation": "off", "weight": 70}]}});
    alice
        .post_json("/api/flags", &flag)
        .await
        .expect::<Value>(201);
    let sdk = Client::new(&server);
    let key = alice.create_flag_key("production", "client").await.key;
    let dev_key = alice.create_flag_key("development", "client").await.key;

    let split: Value = ofrep(&sdk, &key, "rollout", json!({"targetingKey": "user-7"}))
        .await
        .expect(200);
    assert_eq!(split["reason"], "SPLIT");
    let bucket = meridian_shared::flags::bucket("rollout", "user-7");
    assert_eq!(split["variant"], if bucket <= 30 { "on" } else { "off" });

    let missing: Value = ofrep(&sdk, &key, "rollout", json!({})).await.expect(400);
    assert_eq!(missing["errorCode"], "TARGETING_KEY_MISSING");
    let unknown: Value = ofrep(&sdk, &key, "nope", json!({"targetingKey": "u"}))
        .await
        .expect(404);
    assert_eq!(
        (unknown["key"].clone(), unknown["errorCode"].clone()),
        (json!("nope"), json!("FLAG_NOT_FOUND"))
    );
    let garbage = sdk
        .send(
            sdk.http()
                .post(sdk.url("/ofrep/v1/evaluate/flags/rollout"))
                .bearer_auth(&key)
                .body("{not json"),
        )
        .await;
    assert_eq!(garbage.status.as_u16(), 400);
    assert_eq!(garbage.json["errorCode"], "PARSE_ERROR");
    let dev: Value = sdk
        .send(
            sdk.http()
                .post(sdk.url("/ofrep/v1/evaluate/flags/rollout"))
                .bearer_auth(&dev_key)
                .header("X-Meridian-Environment", "development")
                .json(&json!({"context": {"targetingKey": "u"}})),
        )
        .await
        .expect(200);
    assert_eq!(
        (dev["variant"].clone(), dev["reason"].clone()),
        (json!("on"), json!("DISABLED"))
    );

    // Bulk, with its ETag.
    let body = json!({"context": {"targetingKey": "user-7"}});
    let first = sdk
        .send(
            sdk.http()
                .post(sdk.url("/ofrep/v1/evaluate/flags"))
                .bearer_auth(&key)
                .json(&body),
        )
        .await;
    assert_eq!(first.status.as_u16(), 200);
    assert_eq!(first.json["flags"].as_array().unwrap().len(), 1);
    let etag = first.header("etag").expect("an ETag").to_owned();
    let again = sdk
        .send(
            sdk.http()
                .post(sdk.url("/ofrep/v1/evaluate/flags"))
                .bearer_auth(&key)
                .header("If-None-Match", &etag)
                .json(&body),
        )
        .await;
    assert_eq!(again.status.as_u16(), 304);
    let other_context = sdk
        .send(
            sdk.http()
                .post(sdk.url("/ofrep/v1/evaluate/flags"))
                .bearer_auth(&key)
                .header("If-None-Match", &etag)
                .json(&json!({"context": {"targetingKey": "someone-else"}})),
        )
        .await;
    assert_eq!(
        other_context.status.as_u16(),
        200,
        "another context, another ETag"
    );
    let _: KillOutcome = alice
        .post_json(
            "/api/flags/rollout/kill",
            &json!({"environment": "production"}),
        )
        .await
        .expect(200);
    let after = sdk
        .send(
            sdk.http()
                .post(sdk.url("/ofrep/v1/evaluate/flags"))
                .bearer_auth(&key)
                .header("If-None-Match", &etag)
                .json(&body),
        )
        .await;
    assert_eq!(after.status.as_u16(), 200, "a change changes the ETag");
    assert_eq!(after.json["flags"][0]["reason"], "DISABLED");
    let bad_bulk = sdk
        .send(
            sdk.http()
                .post(sdk.url("/ofrep/v1/evaluate/flags"))
                .bearer_auth(&key)
                .body("[1,2"),
        )
        .await;
    assert_eq!(bad_bulk.status.as_u16(), 400);
    assert_eq!(bad_bulk.json["errorCode"], "PARSE_ERROR");
    server.shutdown().await;
});

both_backends!(
    approvals_need_a_second_user,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let alice = admin(&server.base_url(), "alice").await;
        let bob = admin(&server.base_url(), "bob").await;
        // The second account is a viewer until the admin makes it an editor.
        alice.grant_role(&bob, "editor").await;
        alice
            .post_json("/api/flags", &boolean_flag("payments"))
            .await
            .expect::<Value>(201);
        let _: Value = put(
            &alice,
            "/api/flags/environments/production",
            &json!({"require_approval": true}),
        )
        .await
        .expect(200);

        let change = env_config(json!([]), json!({"variation": "off"}));
        let proposed: ChangeOutcome = put(
            &alice,
            "/api/flags/payments/environments/production",
            &change,
        )
        .await
        .expect(202);
        assert_eq!(proposed.status, ChangeStatus::PendingApproval);
        let approval = proposed.approval.expect("an approval");
        // Not live yet.
        let sdk = Client::new(&server);
        let key = alice.create_flag_key("production", "client").await.key;
        let now: Value = ofrep(&sdk, &key, "payments", json!({"targetingKey": "u"}))
            .await
            .expect(200);
        assert_eq!(now["variant"], "on");
        // A direct replace that touches production is refused.
        let mut replaced = boolean_flag("payments");
        replaced["environments"]["production"]["default_serve"] = json!({"variation": "off"});
        put(&alice, "/api/flags/payments", &replaced)
            .await
            .assert_error(409, "approval_required");

        let path = format!("/api/flags/approvals/{}/approve", approval.id);
        alice
            .post_empty(&path)
            .await
            .assert_error(403, "self_approval");
        let approved: ChangeOutcome = bob.post_empty(&path).await.expect(200);
        assert_eq!(approved.status, ChangeStatus::Applied);
        let now: Value = ofrep(&sdk, &key, "payments", json!({"targetingKey": "u"}))
            .await
            .expect(200);
        assert_eq!(now["variant"], "off");
        bob.post_empty(&path)
            .await
            .assert_error(409, "already_decided");
        let log: AuditLog = alice.get("/api/flags/payments/audit").await.expect(200);
        assert_eq!(log.entries[0].actor_name, "alice");
        assert_eq!(log.entries[0].approved_by.as_deref(), Some("bob"));

        // Development needs no approval.
        let dev: ChangeOutcome = put(
            &alice,
            "/api/flags/payments/environments/development",
            &change,
        )
        .await
        .expect(200);
        assert_eq!(dev.status, ChangeStatus::Applied);
        server.shutdown().await;
    }
);

both_backends!(
    scheduled_changes_run_when_due,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let alice = admin(&server.base_url(), "alice").await;
        alice
            .post_json("/api/flags", &boolean_flag("launch"))
            .await
            .expect::<Value>(201);
        let mut change = env_config(json!([]), json!({"variation": "off"}));
        change["at_ms"] = json!(meridian_server::Clock::now_ms(&server.clock) + 3_600_000);
        let scheduled: ChangeOutcome =
            put(&alice, "/api/flags/launch/environments/production", &change)
                .await
                .expect(202);
        assert_eq!(scheduled.status, ChangeStatus::Scheduled);
        assert_eq!(
            meridian_server::flags::run_due_schedules(&server.state)
                .await
                .unwrap(),
            0
        );
        server.clock.advance(3_600_001);
        assert_eq!(
            meridian_server::flags::run_due_schedules(&server.state)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            meridian_server::flags::run_due_schedules(&server.state)
                .await
                .unwrap(),
            0,
            "once"
        );
        let sdk = Client::new(&server);
        let key = alice.create_flag_key("production", "client").await.key;
        let now: Value = ofrep(&sdk, &key, "launch", json!({"targetingKey": "u"}))
            .await
            .expect(200);
        assert_eq!(now["variant"], "off");
        server.shutdown().await;
    }
);

both_backends!(
    the_kill_switch_reaches_every_subscriber,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let alice = admin(&server.base_url(), "alice").await;
        alice
            .post_json("/api/flags", &boolean_flag("search"))
            .await
            .expect::<Value>(201);
        let key = alice.create_flag_key("production", "server").await.key;

        let mut streams = Vec::new();
        for _ in 0..3 {
            let mut stream = Stream::open(&server.base_url(), "production", &key, None).await;
            let (id, snapshot) = stream
                .next_put(Duration::from_secs(5))
                .await
                .expect("the current config");
            assert_eq!(snapshot.version, id);
            assert!(!killed(&snapshot, "search"));
            streams.push(stream);
        }
        let outcome: KillOutcome = alice
            .post_json(
                "/api/flags/search/kill",
                &json!({"environment": "production"}),
            )
            .await
            .expect(200);
        assert!(outcome.flag.environments["production"].killed);
        assert_eq!(
            (outcome.delivery.subscribers, outcome.delivery.delivered),
            (3, 3)
        );
        assert!(outcome.delivery.complete);
        for stream in &mut streams {
            let (id, snapshot) = stream
                .next_put(Duration::from_secs(5))
                .await
                .expect("the kill");
            assert_eq!(id, outcome.version);
            assert!(killed(&snapshot, "search"));
        }

        // A client that reconnects with the current version gets nothing until a change;
        // one that is behind gets the current config at once.
        let mut current = Stream::open(
            &server.base_url(),
            "production",
            &key,
            Some(outcome.version),
        )
        .await;
        assert!(current.next_put(Duration::from_millis(300)).await.is_none());
        let mut behind = Stream::open(&server.base_url(), "production", &key, Some(1)).await;
        let (id, _) = behind
            .next_put(Duration::from_secs(5))
            .await
            .expect("caught up");
        assert_eq!(id, outcome.version);
        let revived: KillOutcome = alice
            .post_json(
                "/api/flags/search/kill",
                &json!({"environment": "production", "killed": false}),
            )
            .await
            .expect(200);
        let (id, snapshot) = current
            .next_put(Duration::from_secs(5))
            .await
            .expect("the change");
        assert_eq!(id, revived.version);
        assert!(!killed(&snapshot, "search"));
        server.shutdown().await;
    }
);

/// Two instances on one PostgreSQL: a change through one reaches the other's stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reaches_subscribers_of_another_instance() {
    let db = TestDatabase::create(meridian_tests::db::Backend::Postgres).await;
    let a = ServerProcess::start(BIN, &db).await;
    let b = ServerProcess::start(BIN, &db).await;
    let alice = admin(&b.base_url(), "alice").await;
    // A key made through b is good on a at once: keys are checked in the database.
    let key = alice.create_flag_key("production", "server").await.key;
    let with_key: FlagList = alice.get("/api/flags").await.expect(200);
    let mut on_a = Stream::open(&a.base_url(), "production", &key, None).await;
    // a may still be at the version before the key's: read until it has that one.
    let first = loop {
        let (id, snapshot) = on_a
            .next_put(Duration::from_secs(5))
            .await
            .expect("the config");
        if id >= with_key.version {
            break snapshot;
        }
    };
    assert!(first.flags.is_empty());
    let created: Flag = alice
        .post_json("/api/flags", &boolean_flag("cross"))
        .await
        .expect(201);
    let (_, second) = on_a
        .next_put(Duration::from_secs(5))
        .await
        .expect("the create");
    assert_eq!(second.flags[0].key, created.key, "the create crossed over");
    let outcome: KillOutcome = alice
        .post_json(
            "/api/flags/cross/kill",
            &json!({"environment": "production"}),
        )
        .await
        .expect(200);
    let (id, snapshot) = on_a
        .next_put(Duration::from_secs(5))
        .await
        .expect("the kill");
    assert_eq!(id, outcome.version);
    assert!(killed(&snapshot, "cross"));
    let sdk = Client::at(&a.base_url());
    let now: Value = ofrep(&sdk, &key, "cross", json!({"targetingKey": "u"}))
        .await
        .expect(200);
    assert_eq!(now["reason"], "DISABLED");
}

both_backends!(
    the_sdk_serves_while_the_server_is_down,
    |db: TestDatabase| async move {
        use meridian_server::flags::sdk::{FlagClient, FlagSource, SdkOptions, SdkState};
        use meridian_shared::flags::EvaluationContext;

        let mut server = ServerProcess::start(BIN, &db).await;
        let addr = server.addr;
        let alice = admin(&server.base_url(), "alice").await;
        alice
            .post_json("/api/flags", &boolean_flag("resilient"))
            .await
            .expect::<Value>(201);
        let cache = db.data_dir().join("flags-cache.json");
        let key = alice.create_flag_key("production", "server").await.key;
        let mut options = SdkOptions::new(server.base_url(), key);
        options.cache_file = Some(cache.clone());
        options.max_backoff = Duration::from_millis(200);
        let sdk = FlagClient::connect(options.clone());
        let user = EvaluationContext::new("user-1");
        tokio::time::timeout(Duration::from_secs(10), sdk.wait_for_version(1))
            .await
            .expect("the config");
        assert!(sdk.bool_value("resilient", &user, false));
        assert!(
            !sdk.bool_value("no-such-flag", &user, false),
            "a missing flag is the default"
        );

        server.kill_9().await;
        tokio::time::timeout(
            Duration::from_secs(10),
            sdk.wait_for_state(SdkState::Offline),
        )
        .await
        .expect("offline");
        assert!(
            sdk.bool_value("resilient", &user, false),
            "the last known config serves"
        );
        // A program that starts while the server is down serves the cached config.
        let cold = FlagClient::connect(options.clone());
        assert_eq!(cold.version(), sdk.version());
        assert!(cold.bool_value("resilient", &user, false));

        // The server comes back where it was; a change reaches both clients.
        let server = ServerProcess::start_at(BIN, &db, addr).await;
        let alice = alice.same_browser_at(&server.base_url());
        let killed: KillOutcome = alice
            .post_json(
                "/api/flags/resilient/kill",
                &json!({"environment": "production"}),
            )
            .await
            .expect(200);
        for client in [&sdk, &cold] {
            tokio::time::timeout(
                Duration::from_secs(10),
                client.wait_for_version(killed.version),
            )
            .await
            .expect("the change after the restart");
            assert!(!client.bool_value("resilient", &user, true));
        }
    }
);

both_backends!(
    own_features_are_gated_by_flags,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let alice = admin(&server.base_url(), "alice").await;
        let _: Value = alice.get("/api/cart/history").await.expect(200);
        alice
            .post_json(
                "/api/flags",
                &boolean_flag(meridian_server::cart::HISTORY_FEATURE),
            )
            .await
            .expect::<Value>(201);
        let _: Value = alice.get("/api/cart/history").await.expect(200);
        let _: KillOutcome = alice
            .post_json(
                &format!("/api/flags/{}/kill", meridian_server::cart::HISTORY_FEATURE),
                &json!({"environment": "production"}),
            )
            .await
            .expect(200);
        alice
            .get("/api/cart/history")
            .await
            .assert_error(503, "feature_disabled");
        server.shutdown().await;
    }
);
