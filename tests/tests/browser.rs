//! The product in a real browser: headless Chromium against the real server binary
//! serving the built web UI (`static/`, with the bundle in `static/pkg/`), on SQLite.
//!
//! The selectors are the web UI's test contract (`data-testid`s in frontend/src): the
//! header's `whoami` and `connection`, the auth forms' `input[name=...]`, `signout`, the
//! status page's `health-database` and `realtime-state`, and the lobby's `lobby-input`,
//! `lobby-send` and `lobby-message` (with `data-pending`).

use meridian_tests::browser::{built_static_dir, Browser};
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::process::ServerProcess;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const USERNAME: &str = "dora";
const PASSWORD: &str = "explorer-2024";

async fn submit_credentials(browser: &Browser) {
    browser.fill("input[name=username]", USERNAME).await;
    browser.fill("input[name=password]", PASSWORD).await;
    browser.click("form button[type=submit]").await;
}

/// Waits until the lobby shows a message with `text` whose `data-pending` is `pending`.
async fn wait_for_lobby_message(browser: &Browser, text: &str, pending: &str) {
    browser
        .wait_until(
            &format!("the lobby message {text:?} with data-pending={pending}"),
            "return Array.from(document.querySelectorAll('[data-testid=lobby-message]'))
                .some(e => e.textContent.includes(arguments[0])
                    && e.getAttribute('data-pending') === arguments[1]);",
            vec![json!(text), json!(pending)],
            "[data-testid=lobby-message]",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_signs_up_signs_in_and_talks_across_tabs() {
    let static_dir = built_static_dir();
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = ServerProcess::start_with(BIN, &db.url, db.data_dir(), &static_dir).await;
    let browser = Browser::start().await;

    // A first visit: a guest, live.
    browser.goto(&server.url("/")).await;
    browser.wait_for_text("[data-testid=whoami]", "Guest").await;
    browser
        .wait_for_attr("[data-testid=connection]", "data-state", "online")
        .await;

    // Sign up.
    browser.goto(&server.url("/signup")).await;
    browser.wait_for_text("[data-testid=whoami]", "Guest").await;
    submit_credentials(&browser).await;
    browser
        .wait_for_text("[data-testid=whoami]", USERNAME)
        .await;

    // Sign out.
    browser.click("button[data-testid=signout]").await;
    browser.wait_for_text("[data-testid=whoami]", "Guest").await;

    // Sign in again.
    browser.goto(&server.url("/signin")).await;
    browser.wait_for_text("[data-testid=whoami]", "Guest").await;
    submit_credentials(&browser).await;
    browser
        .wait_for_text("[data-testid=whoami]", USERNAME)
        .await;
    browser
        .wait_for_attr("[data-testid=connection]", "data-state", "online")
        .await;

    // The status page.
    browser.goto(&server.url("/status")).await;
    browser
        .wait_for_text("[data-testid=health-database]", "sqlite")
        .await;
    browser
        .wait_for_attr("[data-testid=realtime-state]", "data-state", "online")
        .await;

    // Two tabs: a message sent in one appears in the other.
    let first_tab = browser.current_tab().await;
    let second_tab = browser.open_tab().await;
    browser.switch_to(&second_tab).await;
    browser.goto(&server.url("/status")).await;
    browser
        .wait_for_text("[data-testid=whoami]", USERNAME)
        .await;
    browser
        .wait_for_attr("[data-testid=realtime-state]", "data-state", "online")
        .await;

    let text = "hello from the first tab";
    browser.switch_to(&first_tab).await;
    browser.fill("input[data-testid=lobby-input]", text).await;
    browser.click("button[data-testid=lobby-send]").await;
    wait_for_lobby_message(&browser, text, "false").await;

    browser.switch_to(&second_tab).await;
    wait_for_lobby_message(&browser, text, "false").await;

    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_offline_waits_in_the_outbox_and_is_delivered_once() {
    let static_dir = built_static_dir();
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = ServerProcess::start_with(BIN, &db.url, db.data_dir(), &static_dir).await;
    let browser = Browser::start().await;

    browser.goto(&server.url("/status")).await;
    browser
        .wait_for_attr("[data-testid=connection]", "data-state", "online")
        .await;

    // Offline: the indicator says so and the message is kept as pending.
    browser.set_offline(true).await;
    browser
        .wait_for_attr("[data-testid=connection]", "data-state", "offline")
        .await;
    let text = "written while offline";
    browser.fill("input[data-testid=lobby-input]", text).await;
    browser.click("button[data-testid=lobby-send]").await;
    wait_for_lobby_message(&browser, text, "true").await;

    // Back online: the outbox is replayed and the server acknowledges it.
    browser.set_offline(false).await;
    browser
        .wait_for_attr("[data-testid=connection]", "data-state", "online")
        .await;
    wait_for_lobby_message(&browser, text, "false").await;

    // A fresh load replays the topic from the server: the message is there exactly once.
    browser.goto(&server.url("/status")).await;
    wait_for_lobby_message(&browser, text, "false").await;
    browser
        .wait_until(
            "exactly one copy of the offline message",
            "return Array.from(document.querySelectorAll('[data-testid=lobby-message]'))
                .filter(e => e.textContent.includes(arguments[0])).length === 1;",
            vec![json!(text)],
            "[data-testid=lobby-message]",
        )
        .await;

    browser.close().await;
}
