//! The unique ID page in a real browser: the home page lists it, IDs are minted and
//! decoded (bits coloured by field), and the live lease view shows this instance's node.

use meridian_tests::browser::{built_static_dir, Browser};
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::process::ServerProcess;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");

/// Waits until exactly `n` elements match `css`.
async fn wait_for_count(browser: &Browser, css: &str, n: usize) {
    browser
        .wait_until(
            &format!("{n} elements matching {css}"),
            "return document.querySelectorAll(arguments[0]).length === arguments[1];",
            vec![json!(css), json!(n)],
            css,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_minted_decoded_and_their_leases_shown() {
    let static_dir = built_static_dir();
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = ServerProcess::start_with(BIN, &db.url, db.data_dir(), &static_dir).await;
    let browser = Browser::start().await;

    // The home page lists the system and links to it.
    browser.goto(&server.url("/")).await;
    browser
        .wait_for("[data-testid=system-card] a[href='/ids']")
        .await;
    browser
        .click("[data-testid=system-card] a[href='/ids']")
        .await;

    // The live lease view names this instance's node.
    browser.wait_for("[data-testid=lease-row]").await;
    browser
        .wait_until(
            "this instance's node id",
            "const e = document.querySelector('[data-testid=ids-my-node]');
             return e !== null && /^[0-9]+$/.test(e.textContent.trim());",
            vec![],
            "[data-testid=ids-my-node]",
        )
        .await;

    // Five snowflakes.
    browser.fill("input[data-testid=ids-count]", "5").await;
    browser
        .click("input[data-testid=ids-format-snowflake]")
        .await;
    browser.click("button[data-testid=ids-generate]").await;
    wait_for_count(&browser, "[data-testid=id-value]", 5).await;

    // Decode the first: minted by this instance's node, 64 bits shown.
    browser.click("[data-testid=id-value]").await;
    browser
        .wait_until(
            "the decoded node equals this instance's node",
            "const node = document.querySelector('[data-testid=ids-parts] [data-field=node]');
             const mine = document.querySelector('[data-testid=ids-my-node]');
             return node !== null && mine !== null
                 && node.textContent.trim() === mine.textContent.trim();",
            vec![],
            "[data-testid=ids-parts]",
        )
        .await;
    wait_for_count(&browser, "[data-testid=ids-bits] .bit", 64).await;

    // A UUIDv7 decodes as version 7, with 128 bits.
    browser.click("input[data-testid=ids-format-uuidv7]").await;
    browser.fill("input[data-testid=ids-count]", "2").await;
    browser.click("button[data-testid=ids-generate]").await;
    browser
        .wait_until(
            "two UUIDs",
            "const ids = document.querySelectorAll('[data-testid=id-value]');
             return ids.length === 2 && ids[0].textContent.includes('-');",
            vec![],
            "[data-testid=ids-result]",
        )
        .await;
    browser.click("[data-testid=id-value]").await;
    browser
        .wait_for_text("[data-testid=ids-parts] [data-field=version]", "7")
        .await;
    wait_for_count(&browser, "[data-testid=ids-bits] .bit", 128).await;

    // Nonsense is refused with the server's message.
    browser
        .fill("input[data-testid=ids-decode-input]", "not-an-id")
        .await;
    browser.click("button[data-testid=ids-decode]").await;
    browser.wait_for("[data-testid=ids-error]").await;

    browser.close().await;
}
