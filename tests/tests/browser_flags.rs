//! The feature flags page in a real browser: headless Chromium against the server
//! (in-process on 127.0.0.1:0, SQLite) serving the built web UI.
//!
//! - The kill switch: a flag on in production shows `on` in the live demo of two tabs;
//!   killing it in one tab says how many connected clients got it, and the other tab's
//!   demo turns `off` without a reload.
//! - The evaluator's test vectors, run by the page's wasm, all match.
//! - Offline, the page keeps answering from the last known configuration (kept in
//!   localStorage too), and catches up when the network is back; a viewer's read access
//!   is enough to follow the stream, and a guest does not follow it.
//! - The editor: the rollout slider saves the weights it shows, the browser's evaluation
//!   agrees with the server's preview, and the server's refusal names the rule.
//!
//! The selectors are the flags page's test contract (frontend/src/flags/mod.rs). Every
//! wait polls the page with a bound; nothing sleeps.

use meridian_shared::flags::{Flag, Serve};
use meridian_tests::browser::{start_web_server, testid, Browser};
use meridian_tests::client::Client;
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::server::TestServer;
use serde_json::{json, Value};

const PASSWORD: &str = "green-lantern-2024";

/// Creates a boolean flag (off everywhere) and turns it on in production.
async fn boolean_flag_on_in_production(api: &Client, key: &str) -> Flag {
    let created: Flag = api
        .post_json(
            "/api/flags",
            &json!({
                "key": key,
                "name": format!("Flag {key}"),
                "kind": "boolean",
                "variations": [{"name": "on", "value": true}, {"name": "off", "value": false}],
                "environments": {
                    "development": {"enabled": false, "off_variation": "off", "default_serve": {"variation": "on"}},
                    "production": {"enabled": false, "off_variation": "off", "default_serve": {"variation": "on"}}
                }
            }),
        )
        .await
        .expect(201);
    assert!(!created.environments["production"].enabled);
    let outcome: Value = api
        .send(
            api.http()
                .put(api.url(&format!("/api/flags/{key}/environments/production")))
                .json(&json!({"config": {
                    "enabled": true,
                    "off_variation": "off",
                    "default_serve": {"variation": "on"}
                }})),
        )
        .await
        .expect(200);
    assert_eq!(outcome["status"], "applied", "{outcome}");
    api.get(&format!("/api/flags/{key}")).await.expect(200)
}

/// Opens the flags page and waits until it follows the stream and lists `key`.
async fn open_flags(browser: &Browser, server: &TestServer, key: &str) {
    browser.goto(&server.url("/flags")).await;
    browser.wait_for("[data-testid=flags-page]").await;
    browser
        .wait_for_attr("[data-testid=stream-state]", "data-state", "live")
        .await;
    browser.wait_for(&testid(&format!("flag-row-{key}"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_reaches_another_tab_without_a_reload() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = start_web_server(&db).await;
    let browser = Browser::start().await;
    browser.sign_up(&server, "flipper", PASSWORD).await;
    let api = browser.session_client(&server).await;
    let key = "new-checkout";
    boolean_flag_on_in_production(&api, key).await;

    // Tab A and tab B both follow production; B's demo serves the flag: on.
    open_flags(&browser, &server, key).await;
    browser
        .wait_for_attr(&testid(&format!("flag-row-{key}")), "data-killed", "false")
        .await;
    let tab_a = browser.current_tab().await;
    let tab_b = browser.open_tab().await;
    browser.switch_to(&tab_b).await;
    open_flags(&browser, &server, key).await;
    browser
        .wait_for_text("[data-testid=flag-demo-value]", "on")
        .await;
    // A mark that a reload would wipe out.
    browser
        .client
        .execute("window.__meridianNoReload = 'tab-b'; return true;", vec![])
        .await
        .expect("mark tab B");

    // The kill switch in tab A, with its confirm step: both connected clients have it
    // by the time it answers.
    browser.switch_to(&tab_a).await;
    browser.click(&testid(&format!("kill-{key}"))).await;
    browser.click(&testid(&format!("kill-confirm-{key}"))).await;
    browser
        .wait_for_text_containing(
            &testid(&format!("kill-result-{key}")),
            "delivered to 2 of 2 connected clients",
        )
        .await;
    browser
        .wait_for_attr(&testid(&format!("flag-row-{key}")), "data-killed", "true")
        .await;

    // Tab B follows without a reload.
    browser.switch_to(&tab_b).await;
    browser
        .wait_for_text("[data-testid=flag-demo-value]", "off")
        .await;
    browser
        .wait_for_attr(&testid(&format!("flag-row-{key}")), "data-killed", "true")
        .await;
    let mark = browser
        .client
        .execute("return window.__meridianNoReload || null;", vec![])
        .await
        .expect("read the mark");
    assert_eq!(mark, json!("tab-b"), "tab B was not reloaded");

    let flag: Flag = api.get(&format!("/api/flags/{key}")).await.expect(200);
    assert!(flag.environments["production"].killed, "{flag:?}");

    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_evaluator_vector_matches_in_wasm() {
    let vectors: Value =
        serde_json::from_str(include_str!("../../shared/tests/flag_vectors.json")).unwrap();
    let total: usize = ["murmur3", "buckets", "evaluations"]
        .iter()
        .map(|part| vectors[part].as_array().expect("a list of vectors").len())
        .sum();
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = start_web_server(&db).await;
    let browser = Browser::start().await;

    // A guest: the page runs the vectors, asks to sign in, and does not follow the
    // stream (the server refuses it to anonymous requests).
    browser.goto(&server.url("/flags")).await;
    browser
        .wait_for_attr("[data-testid=vector-check]", "data-state", "pass")
        .await;
    browser
        .wait_for_text(
            "[data-testid=vector-check]",
            &format!("Evaluator check: {total}/{total} vectors match"),
        )
        .await;
    browser
        .wait_for_attr(
            "[data-testid=vector-check]",
            "data-passed",
            &total.to_string(),
        )
        .await;
    browser
        .wait_for_text_containing("[data-testid=flags-sign-in]", "Sign in to manage flags")
        .await;
    browser
        .wait_for_attr("[data-testid=stream-state]", "data-state", "offline")
        .await;

    // Signed in, the page follows the stream, and the vectors still all match.
    browser.sign_up(&server, "reader", PASSWORD).await;
    browser.goto(&server.url("/flags")).await;
    browser
        .wait_for_attr("[data-testid=stream-state]", "data-state", "live")
        .await;
    browser
        .wait_for_attr("[data-testid=vector-check]", "data-state", "pass")
        .await;

    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_the_page_keeps_the_last_known_configuration() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = start_web_server(&db).await;
    let admin = Client::new(&server);
    admin.signup("admin", PASSWORD).await.expect::<Value>(201);
    let key = "search-v2";
    boolean_flag_on_in_production(&admin, key).await;
    let browser = Browser::start().await;

    // A second account, a viewer, follows the stream: reading is enough to evaluate.
    browser.sign_up(&server, "reader", PASSWORD).await;
    open_flags(&browser, &server, key).await;
    browser
        .wait_for_text("[data-testid=flag-demo-value]", "on")
        .await;
    let stored = browser
        .client
        .execute(
            "return localStorage.getItem('meridian.flags.snapshot.production');",
            vec![],
        )
        .await
        .expect("read localStorage");
    let stored: Value =
        serde_json::from_str(stored.as_str().expect("the configuration is kept")).unwrap();
    assert_eq!(stored["flags"][0]["key"], key, "{stored}");
    assert!(stored["version"].as_u64().unwrap() >= 2, "{stored}");

    // Offline: the page says so and still answers from the last known configuration.
    browser.set_offline(true).await;
    browser
        .wait_for_attr("[data-testid=stream-state]", "data-state", "offline")
        .await;
    browser
        .wait_for_text("[data-testid=flag-demo-value]", "on")
        .await;

    // Killed meanwhile; back online, the stream catches up without a reload.
    let killed: Value = admin
        .post_json(
            &format!("/api/flags/{key}/kill"),
            &json!({"environment": "production", "killed": true}),
        )
        .await
        .expect(200);
    assert!(
        killed["version"].as_u64() > stored["version"].as_u64(),
        "{killed}"
    );
    browser.set_offline(false).await;
    browser
        .wait_for_attr("[data-testid=stream-state]", "data-state", "live")
        .await;
    browser
        .wait_for_text("[data-testid=flag-demo-value]", "off")
        .await;
    browser
        .wait_for_attr(&testid(&format!("flag-row-{key}")), "data-killed", "true")
        .await;

    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_editor_saves_a_rollout_and_shows_the_servers_refusal() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = start_web_server(&db).await;
    let browser = Browser::start().await;
    browser.sign_up(&server, "editor", PASSWORD).await;
    let api = browser.session_client(&server).await;
    let key = "gradual";
    boolean_flag_on_in_production(&api, key).await;
    open_flags(&browser, &server, key).await;
    browser.wait_for("[data-testid=flag-editor]").await;

    // Default serve: a rollout, 30% on by the slider.
    browser
        .wait_for("[data-testid=serve-default]")
        .await
        .select_by_value("rollout")
        .await
        .expect("choose the rollout");
    browser.wait_for("[data-testid=rollout-slider]").await;
    browser
        .client
        .execute(
            "const slider = document.querySelector('[data-testid=rollout-slider]');
             slider.value = '30';
             slider.dispatchEvent(new Event('input', { bubbles: true }));
             return true;",
            vec![],
        )
        .await
        .expect("move the slider");
    browser
        .wait_for_text_containing("[data-testid=flag-editor]", "on 30% · off 70%")
        .await;
    browser.click("[data-testid=editor-save]").await;
    browser
        .wait_for_text_containing("[data-testid=editor-status]", "Saved")
        .await;
    let flag: Flag = api.get(&format!("/api/flags/{key}")).await.expect(200);
    let Serve::Rollout(rollout) = &flag.environments["production"].default_serve else {
        panic!("a rollout: {flag:?}");
    };
    let weights: Vec<(&str, u32)> = rollout
        .variations
        .iter()
        .map(|weighted| (weighted.variation.as_str(), weighted.weight))
        .collect();
    assert_eq!(weights, vec![("on", 30), ("off", 70)]);

    // The browser's evaluation and the server's preview agree, bucket included.
    browser
        .wait_for_attr("[data-testid=preview-agree]", "data-agree", "true")
        .await;
    browser
        .wait_for_text_containing("[data-testid=preview-local]", "SPLIT")
        .await;

    // A rule without values: the server refuses it, and says which rule.
    browser.click("[data-testid=add-rule]").await;
    browser
        .fill("[data-testid=clause-0-0-attribute]", "plan")
        .await;
    browser.click("[data-testid=editor-save]").await;
    browser
        .wait_for_text_containing(
            "[data-testid=flag-error]",
            "rules[0].clauses[0]: operator in needs at least one value",
        )
        .await;

    browser.close().await;
}
