//! Who may do what with feature flags (issue 19), on both backends: roles on the admin
//! API (viewers read, editors change, approval by another editor), and delivery keys on
//! the SDK endpoints (anonymous 401, a server key streams the whole configuration, a
//! client key gets evaluated values only, a revoked key is refused at once, on every
//! instance of one PostgreSQL).

use std::time::Duration;

use meridian_shared::flags::admin::{
    ChangeOutcome, ChangeStatus, FlagList, FlagSnapshot, KeyList, KillOutcome,
};
use meridian_tests::both_backends;
use meridian_tests::client::{Client, FlagStream, Reply};
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::process::ServerProcess;
use meridian_tests::server::TestServer;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const PASSWORD: &str = "flag-access-pass-1";
const WAIT: Duration = Duration::from_secs(5);
/// A segment member's address: it must never reach a client key.
const MEMBER: &str = "alice@example.com";

async fn signed_up(base_url: &str, name: &str) -> Client {
    let client = Client::at(base_url);
    client.signup(name, PASSWORD).await.expect::<Value>(201);
    client
}

/// A boolean flag whose production rule targets the segment `beta`.
fn targeted_flag(key: &str) -> Value {
    json!({
        "key": key,
        "name": format!("Flag {key}"),
        "kind": "boolean",
        "variations": [{"name": "on", "value": true}, {"name": "off", "value": false}],
        "environments": {
            "production": {
                "enabled": true,
                "off_variation": "off",
                "default_serve": {"variation": "off"},
                "rules": [{"clauses": [{"operator": "in_segment", "values": ["beta"]}], "serve": {"variation": "on"}}]
            }
        }
    })
}

/// An admin (the first account) with the segment `beta` and the flag `checkout`.
async fn admin_with_flag(base_url: &str) -> Client {
    let admin = signed_up(base_url, "admin").await;
    let segment = json!({"key": "beta", "name": "Beta", "included": [MEMBER, "u-1"]});
    put(&admin, "/api/flags/segments/beta", &segment)
        .await
        .expect::<Value>(200);
    admin
        .post_json("/api/flags", &targeted_flag("checkout"))
        .await
        .expect::<Value>(201);
    admin
}

async fn put(client: &Client, path: &str, body: &Value) -> Reply {
    client
        .send(client.http().put(client.url(path)).json(body))
        .await
}

/// `POST /ofrep/v1/evaluate/flags[/flag]` with `key` as the bearer (if any).
async fn ofrep(client: &Client, key: Option<&str>, flag: Option<&str>, context: Value) -> Reply {
    let path = match flag {
        Some(flag) => format!("/ofrep/v1/evaluate/flags/{flag}"),
        None => "/ofrep/v1/evaluate/flags".to_owned(),
    };
    let mut request = client
        .http()
        .post(client.url(&path))
        .json(&json!({ "context": context }));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    client.send(request).await
}

async fn refused_stream(client: &Client, path: &str, key: Option<&str>) -> Reply {
    match FlagStream::open(client, path, key, None).await {
        Ok(_) => panic!("{path} was open to this caller"),
        Err(reply) => reply,
    }
}

async fn open_stream(client: &Client, path: &str, key: Option<&str>) -> FlagStream {
    match FlagStream::open(client, path, key, None).await {
        Ok(stream) => stream,
        Err(reply) => panic!("{path} refused: {} {}", reply.status, reply.json),
    }
}

/// The evaluated stream's `{context}` parameter.
fn context_query(context: &Value) -> String {
    let text = context.to_string();
    let encoded: String = text
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("/api/flags/stream/evaluated?context={encoded}")
}

/// Fails the test if `text` carries anything of the configuration: rules, clauses,
/// segments or a segment's member.
fn assert_no_configuration(text: &str) {
    for leak in ["rules", "clauses", "segment", "included", MEMBER] {
        assert!(!text.contains(leak), "{leak:?} leaked: {text}");
    }
}

both_backends!(
    anonymous_sdk_requests_are_refused,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let admin = admin_with_flag(&server.base_url()).await;
        let anonymous = Client::new(&server);
        for path in [
            "/api/flags/stream?environment=production",
            "/api/flags/stream",
            "/api/flags/stream/evaluated",
        ] {
            refused_stream(&anonymous, path, None)
                .await
                .assert_error(401, "key_required");
            refused_stream(&anonymous, path, Some("mk_srv_not-a-key"))
                .await
                .assert_error(401, "key_required");
        }
        let unknown = format!("mk_srv_{}", "0".repeat(32));
        refused_stream(&anonymous, "/api/flags/stream", Some(&unknown))
            .await
            .assert_error(401, "key_required");
        ofrep(
            &anonymous,
            None,
            Some("checkout"),
            json!({"targetingKey": "u"}),
        )
        .await
        .assert_error(401, "key_required");
        ofrep(&anonymous, None, None, json!({"targetingKey": "u"}))
            .await
            .assert_error(401, "key_required");
        ofrep(&anonymous, Some(&unknown), None, json!({}))
            .await
            .assert_error(401, "key_required");
        // A guest's session cookie is no credential either.
        let guest = Client::new(&server);
        guest.me().await;
        refused_stream(&guest, "/api/flags/stream", None)
            .await
            .assert_error(401, "key_required");

        // The page: a signed-in viewer reads the stream and OFREP with its cookie.
        let viewer = signed_up(&server.base_url(), "viewer").await;
        let mut stream = open_stream(&viewer, "/api/flags/stream", None).await;
        let (_, data) = stream.next_put(WAIT).await.expect("the config");
        let snapshot: FlagSnapshot = serde_json::from_str(&data).unwrap();
        assert_eq!(snapshot.environment, "production");
        let answer: Value = ofrep(
            &viewer,
            None,
            Some("checkout"),
            json!({"targetingKey": "u-1"}),
        )
        .await
        .expect(200);
        assert_eq!(answer["value"], true);

        // Keys read their own environment only; a client key never the configuration.
        let client_key = admin.create_flag_key("production", "client").await.key;
        refused_stream(&anonymous, "/api/flags/stream", Some(&client_key))
            .await
            .assert_error(403, "forbidden");
        let dev_key = admin.create_flag_key("development", "server").await.key;
        refused_stream(
            &anonymous,
            "/api/flags/stream?environment=production",
            Some(&dev_key),
        )
        .await
        .assert_error(403, "forbidden");
        let other_environment = anonymous
            .http()
            .post(anonymous.url("/ofrep/v1/evaluate/flags/checkout"))
            .bearer_auth(&client_key)
            .header("X-Meridian-Environment", "development")
            .json(&json!({"context": {"targetingKey": "u"}}));
        anonymous
            .send(other_environment)
            .await
            .assert_error(403, "forbidden");
        // Without `environment`, the key's decides.
        let mut dev = open_stream(&anonymous, "/api/flags/stream", Some(&dev_key)).await;
        let (_, data) = dev.next_put(WAIT).await.expect("the config");
        let snapshot: FlagSnapshot = serde_json::from_str(&data).unwrap();
        assert_eq!(snapshot.environment, "development");
        server.shutdown().await;
    }
);

both_backends!(
    a_server_key_streams_the_full_configuration,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let admin = admin_with_flag(&server.base_url()).await;
        let key = admin.create_flag_key("production", "server").await;
        assert!(key.key.starts_with("mk_srv_"), "{}", key.key);
        let sdk = Client::new(&server);
        let mut stream = open_stream(&sdk, "/api/flags/stream", Some(&key.key)).await;
        let (_, data) = stream.next_put(WAIT).await.expect("the config");
        let snapshot: FlagSnapshot = serde_json::from_str(&data).unwrap();
        assert_eq!(snapshot.environment, "production");
        let flag = snapshot.flags.iter().find(|f| f.key == "checkout").unwrap();
        assert_eq!(
            flag.environment.rules.len(),
            1,
            "rules, for local evaluation"
        );
        assert_eq!(snapshot.segments[0].included, [MEMBER, "u-1"]);
        // A server key evaluates too.
        let answer: Value = ofrep(
            &sdk,
            Some(&key.key),
            Some("checkout"),
            json!({"targetingKey": "u-1"}),
        )
        .await
        .expect(200);
        assert_eq!(answer["reason"], "TARGETING_MATCH");
        server.shutdown().await;
    }
);

both_backends!(
    a_client_key_gets_evaluated_values_only,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let admin = admin_with_flag(&server.base_url()).await;
        admin
            .post_json("/api/flags", &targeted_flag("search"))
            .await
            .expect::<Value>(201);
        let key = admin.create_flag_key("production", "client").await.key;
        assert!(key.starts_with("mk_cli_"), "{key}");
        let sdk = Client::new(&server);

        let member = json!({"targetingKey": MEMBER});
        let one = ofrep(&sdk, Some(&key), Some("checkout"), member.clone()).await;
        assert_eq!(one.status.as_u16(), 200, "{}", one.json);
        assert_eq!(
            (one.json["value"].clone(), one.json["reason"].clone()),
            (json!(true), json!("TARGETING_MATCH"))
        );
        let mut keys: Vec<&str> = one
            .json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["key", "metadata", "reason", "value", "variant"]);
        let text = serde_json::to_string(&one.json["metadata"]).unwrap();
        assert_eq!(text, "{}");
        let bulk = ofrep(&sdk, Some(&key), None, member.clone()).await;
        assert_eq!(bulk.status.as_u16(), 200);
        assert_eq!(bulk.json["flags"].as_array().unwrap().len(), 2);
        let bulk_text = bulk.json.to_string();
        assert!(bulk_text.contains("\"checkout\""), "{bulk_text}");
        assert_no_configuration(&bulk_text);

        // The evaluated stream for one context: values at connect...
        let mut stream = open_stream(
            &sdk,
            &context_query(&json!({"targetingKey": "u-2"})),
            Some(&key),
        )
        .await;
        let (first_version, data) = stream.next_put(WAIT).await.expect("the values");
        assert_no_configuration(&data);
        let values: Value = serde_json::from_str(&data).unwrap();
        let flags = values["flags"].as_array().unwrap();
        assert_eq!(flags.len(), 2);
        assert!(flags
            .iter()
            .all(|f| f["value"] == false && f["reason"] == "DEFAULT"));
        // ...a change that does not change this context's values sends nothing; the
        // next one that does is the next event.
        let unrelated = json!({"key": "beta", "name": "Beta", "included": [MEMBER, "u-1", "u-3"]});
        put(&admin, "/api/flags/segments/beta", &unrelated)
            .await
            .expect::<Value>(200);
        let with_u2 = json!({"key": "beta", "name": "Beta", "included": [MEMBER, "u-1", "u-2"]});
        put(&admin, "/api/flags/segments/beta", &with_u2)
            .await
            .expect::<Value>(200);
        let current: FlagList = admin.get("/api/flags").await.expect(200);
        let (version, data) = stream.next_put(WAIT).await.expect("the change");
        assert_eq!(
            version, current.version,
            "the unrelated change sent nothing"
        );
        assert!(version >= first_version + 2);
        assert_no_configuration(&data);
        let values: Value = serde_json::from_str(&data).unwrap();
        assert!(values["flags"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["value"] == true));

        // The kill switch counts the evaluated stream among its subscribers.
        let killed: KillOutcome = admin
            .post_json(
                "/api/flags/checkout/kill",
                &json!({"environment": "production"}),
            )
            .await
            .expect(200);
        assert_eq!(
            (killed.delivery.subscribers, killed.delivery.delivered),
            (1, 1)
        );
        let (version, data) = stream.next_put(WAIT).await.expect("the kill");
        assert_eq!(version, killed.version);
        let values: Value = serde_json::from_str(&data).unwrap();
        let checkout = values["flags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == "checkout")
            .unwrap()
            .clone();
        assert_eq!(
            (checkout["value"].clone(), checkout["reason"].clone()),
            (json!(false), json!("DISABLED"))
        );

        // A context that is not JSON is refused.
        refused_stream(
            &sdk,
            "/api/flags/stream/evaluated?context=%7Bnope",
            Some(&key),
        )
        .await
        .assert_error(400, "invalid_context");
        server.shutdown().await;
    }
);

both_backends!(
    a_revoked_key_is_refused_at_once,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let admin = admin_with_flag(&server.base_url()).await;
        let server_key = admin.create_flag_key("production", "server").await;
        let client_key = admin.create_flag_key("production", "client").await;
        let sdk = Client::new(&server);
        let mut config = open_stream(&sdk, "/api/flags/stream", Some(&server_key.key)).await;
        config.next_put(WAIT).await.expect("the config");
        let mut values = open_stream(
            &sdk,
            &context_query(&json!({"targetingKey": "u"})),
            Some(&client_key.key),
        )
        .await;
        values.next_put(WAIT).await.expect("the values");

        // Only admins see and manage keys.
        let viewer = signed_up(&server.base_url(), "viewer").await;
        viewer
            .get("/api/flags/environments/production/keys")
            .await
            .assert_error(403, "forbidden");
        viewer
            .post_json(
                "/api/flags/environments/production/keys",
                &json!({"kind": "server"}),
            )
            .await
            .assert_error(403, "forbidden");
        viewer
            .delete(&format!(
                "/api/flags/environments/production/keys/{}",
                server_key.id
            ))
            .await
            .assert_error(403, "forbidden");
        Client::new(&server)
            .get("/api/flags/environments/production/keys")
            .await
            .assert_error(401, "sign_in_required");
        let list: KeyList = admin
            .get("/api/flags/environments/production/keys")
            .await
            .expect(200);
        assert_eq!(list.keys.len(), 2);
        assert!(list
            .keys
            .iter()
            .all(|k| k.revoked_at_ms.is_none() && k.created_by == "admin"));
        assert_eq!(list.keys[0].prefix, server_key.key[..11]);
        assert!(
            !serde_json::to_string(&list)
                .unwrap()
                .contains(&server_key.key[11..]),
            "no secret listed"
        );
        admin
            .delete("/api/flags/environments/development/keys/nope")
            .await
            .assert_error(404, "key_not_found");

        let revoked = admin
            .delete(&format!(
                "/api/flags/environments/production/keys/{}",
                server_key.id
            ))
            .await;
        assert_eq!(revoked.status.as_u16(), 204);
        // Refused at once, everywhere it was accepted...
        refused_stream(&sdk, "/api/flags/stream", Some(&server_key.key))
            .await
            .assert_error(401, "key_required");
        ofrep(
            &sdk,
            Some(&server_key.key),
            Some("checkout"),
            json!({"targetingKey": "u"}),
        )
        .await
        .assert_error(401, "key_required");
        // ...and its open stream ends; the other key's goes on.
        assert!(
            config.ends_within(WAIT).await,
            "the revoked key's stream ends"
        );
        ofrep(
            &sdk,
            Some(&client_key.key),
            Some("checkout"),
            json!({"targetingKey": "u"}),
        )
        .await
        .expect::<Value>(200);
        let killed: KillOutcome = admin
            .post_json(
                "/api/flags/checkout/kill",
                &json!({"environment": "production"}),
            )
            .await
            .expect(200);
        let (version, _) = values.next_put(WAIT).await.expect("the kill's values");
        assert_eq!(version, killed.version);
        let list: KeyList = admin
            .get("/api/flags/environments/production/keys")
            .await
            .expect(200);
        assert!(list.keys[0].revoked_at_ms.is_some());
        assert!(list.keys[1].revoked_at_ms.is_none());
        // Revoking twice changes nothing; both are in the audit log.
        let again = admin
            .delete(&format!(
                "/api/flags/environments/production/keys/{}",
                server_key.id
            ))
            .await;
        assert_eq!(again.status.as_u16(), 204);
        let log: Value = admin.get("/api/flags/audit").await.expect(200);
        let actions: Vec<&str> = log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            &actions[..4],
            ["kill", "key_revoke", "key_create", "key_create"]
        );
        assert!(
            !log.to_string().contains(&server_key.key),
            "no secret in the log"
        );
        server.shutdown().await;
    }
);

/// Two instances on one PostgreSQL: a key revoked through one is refused by the other at
/// once, and the other's open stream with it ends; a viewer is refused there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_on_every_instance() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let a = ServerProcess::start(BIN, &db).await;
    let b = ServerProcess::start(BIN, &db).await;
    let admin = admin_with_flag(&a.base_url()).await;
    let key = admin.create_flag_key("production", "server").await;
    let on_b = Client::at(&b.base_url());
    let mut stream = open_stream(&on_b, "/api/flags/stream", Some(&key.key)).await;
    stream.next_put(WAIT).await.expect("the config");
    ofrep(
        &on_b,
        Some(&key.key),
        Some("checkout"),
        json!({"targetingKey": "u"}),
    )
    .await
    .expect::<Value>(200);

    let revoked = admin
        .delete(&format!(
            "/api/flags/environments/production/keys/{}",
            key.id
        ))
        .await;
    assert_eq!(revoked.status.as_u16(), 204);
    // No waiting: b reads the key from the database on every request.
    ofrep(
        &on_b,
        Some(&key.key),
        Some("checkout"),
        json!({"targetingKey": "u"}),
    )
    .await
    .assert_error(401, "key_required");
    refused_stream(&on_b, "/api/flags/stream", Some(&key.key))
        .await
        .assert_error(401, "key_required");
    assert!(
        stream.ends_within(WAIT).await,
        "b's stream ends with the revocation"
    );

    let viewer = signed_up(&b.base_url(), "viewer").await;
    viewer
        .post_json(
            "/api/flags/checkout/kill",
            &json!({"environment": "production"}),
        )
        .await
        .assert_error(403, "forbidden");
    viewer
        .delete("/api/flags/checkout")
        .await
        .assert_error(403, "forbidden");
    let _: FlagList = viewer.get("/api/flags").await.expect(200);
}

both_backends!(
    viewers_read_and_are_refused_every_change,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let admin = admin_with_flag(&server.base_url()).await;
        put(
            &admin,
            "/api/flags/environments/production",
            &json!({"require_approval": true}),
        )
        .await
        .expect::<Value>(200);
        let change = json!({"config": {"enabled": true, "off_variation": "off", "default_serve": {"variation": "on"}}});
        let proposed: ChangeOutcome = put(
            &admin,
            "/api/flags/checkout/environments/production",
            &change,
        )
        .await
        .expect(202);
        let approval = proposed.approval.unwrap().id;
        assert!(
            approval.parse::<u64>().is_ok(),
            "a snowflake id: {approval}"
        );
        let viewer = signed_up(&server.base_url(), "viewer").await;
        let guest = Client::new(&server);

        let reads = [
            "/api/flags",
            "/api/flags/checkout",
            "/api/flags/checkout/audit",
            "/api/flags/audit",
            "/api/flags/approvals",
            "/api/flags/schedules",
            "/api/flags/environments",
            "/api/flags/segments",
            "/api/flags/delivery?environment=production&version=1",
        ];
        for path in reads {
            let reply = viewer.get(path).await;
            assert_eq!(reply.status.as_u16(), 200, "{path}: {}", reply.json);
            guest.get(path).await.assert_error(401, "sign_in_required");
        }
        let preview = viewer
            .post_json(
                "/api/flags/checkout/preview",
                &json!({"environment": "production", "context": {"targetingKey": "u-1"}}),
            )
            .await;
        assert_eq!(preview.status.as_u16(), 200, "{}", preview.json);

        let mut definition = targeted_flag("checkout");
        definition["name"] = json!("Renamed");
        let segment = json!({"key": "beta", "name": "Beta", "included": []});
        let refusals = [
            viewer
                .post_json("/api/flags", &targeted_flag("other"))
                .await,
            put(&viewer, "/api/flags/checkout", &definition).await,
            put(
                &viewer,
                "/api/flags/checkout/environments/development",
                &change,
            )
            .await,
            viewer
                .post_json(
                    "/api/flags/checkout/kill",
                    &json!({"environment": "production"}),
                )
                .await,
            viewer.delete("/api/flags/checkout").await,
            put(&viewer, "/api/flags/segments/beta", &segment).await,
            put(
                &viewer,
                "/api/flags/segments/gamma",
                &json!({"key": "gamma"}),
            )
            .await,
            viewer.delete("/api/flags/segments/beta").await,
            put(
                &viewer,
                "/api/flags/environments/production",
                &json!({"require_approval": false}),
            )
            .await,
            viewer
                .post_empty(&format!("/api/flags/approvals/{approval}/approve"))
                .await,
            viewer
                .post_empty(&format!("/api/flags/approvals/{approval}/reject"))
                .await,
        ];
        for reply in &refusals {
            reply.assert_error(403, "forbidden");
            let message = reply.json["message"].as_str().unwrap();
            assert!(message.contains("flags:write"), "{message}");
        }
        // Nothing changed.
        let list: FlagList = admin.get("/api/flags").await.expect(200);
        assert_eq!(list.flags.len(), 1);
        assert_eq!(list.flags[0].name, "Flag checkout");
        assert!(!list.flags[0].environments["production"].killed);
        server.shutdown().await;
    }
);

both_backends!(
    editors_kill_and_approve_each_others_changes,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let admin = admin_with_flag(&server.base_url()).await;
        let bob = signed_up(&server.base_url(), "bob").await;
        let carol = signed_up(&server.base_url(), "carol").await;
        bob.post_json(
            "/api/flags/checkout/kill",
            &json!({"environment": "production"}),
        )
        .await
        .assert_error(403, "forbidden");
        // Granted editor, bob may kill at once (the role is read on every request).
        admin.grant_role(&bob, "editor").await;
        let killed: KillOutcome = bob
            .post_json(
                "/api/flags/checkout/kill",
                &json!({"environment": "production"}),
            )
            .await
            .expect(200);
        assert!(killed.flag.environments["production"].killed);

        put(
            &admin,
            "/api/flags/environments/production",
            &json!({"require_approval": true}),
        )
        .await
        .expect::<Value>(200);
        admin.grant_role(&carol, "editor").await;
        let change = json!({"config": {"enabled": true, "off_variation": "off", "default_serve": {"variation": "on"}}});
        let proposed: ChangeOutcome = put(
            &carol,
            "/api/flags/checkout/environments/production",
            &change,
        )
        .await
        .expect(202);
        assert_eq!(proposed.status, ChangeStatus::PendingApproval);
        let path = format!(
            "/api/flags/approvals/{}/approve",
            proposed.approval.unwrap().id
        );
        carol
            .post_empty(&path)
            .await
            .assert_error(403, "self_approval");
        let approved: ChangeOutcome = bob.post_empty(&path).await.expect(200);
        assert_eq!(approved.status, ChangeStatus::Applied);
        assert_eq!(
            approved.flag.environments["production"].default_serve,
            meridian_shared::flags::Serve::Variation("on".into())
        );
        bob.post_empty(&path)
            .await
            .assert_error(409, "already_decided");
        // A demoted editor is refused on the next request.
        admin.grant_role(&bob, "viewer").await;
        bob.post_json(
            "/api/flags/checkout/kill",
            &json!({"environment": "production", "killed": false}),
        )
        .await
        .assert_error(403, "forbidden");
        server.shutdown().await;
    }
);

/// Issue 11 item 9: a generated client can call every flag operation (its path
/// parameters are declared) and knows every refusal (401, 403).
#[test]
fn the_openapi_document_declares_every_parameter_and_refusal() {
    let doc: Value = serde_json::from_str(meridian_server::openapi_json_text()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        if !(path.starts_with("/api/flags") || path.starts_with("/ofrep/")) {
            continue;
        }
        let in_path: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let declared: Vec<&str> = operation["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            for name in &in_path {
                assert!(
                    declared.contains(name),
                    "{method} {path} does not declare {{{name}}}"
                );
            }
            for status in ["401", "403"] {
                let response = &operation["responses"][status];
                assert!(response.is_object(), "{method} {path} lacks {status}");
                assert!(
                    response["content"]["application/json"]["schema"].is_object(),
                    "{method} {path}: {status} has no body schema"
                );
            }
        }
    }
    assert!(operations >= 27, "only {operations} flag operations");
    let scheme = &doc["components"]["securitySchemes"]["delivery_key"];
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
}
