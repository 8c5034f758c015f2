//! The first load: a person opening Meridian for the first time, on a cold cache over
//! an emulated 20 Mbit/s link with 40 ms of latency, gets an interactive home page after
//! at most [`FIRST_LOAD_BUDGET_BYTES`] transferred. The test prints what each resource
//! cost and when the page became interactive (the app's `meridian:interactive` mark),
//! and fails when the budget is passed: a system that makes every page heavier to open
//! has to pay for itself first (load its code on demand, trim a dependency).
//!
//! The budget is on bytes, which are the same on every machine; the time is printed for
//! the record and never asserted.

use meridian_tests::browser::{start_web_server, Browser};
use meridian_tests::db::{Backend, TestDatabase};
use serde_json::{json, Value};

/// The most the home page may transfer (HTML, script, wasm, style and the API calls
/// made before it is interactive), headers included.
const FIRST_LOAD_BUDGET_BYTES: u64 = 1_000_000;
/// The emulated link: 20 Mbit/s each way, 40 ms added to every request.
const LINK_BITS_PER_S: u64 = 20_000_000;
const LINK_LATENCY_MS: u64 = 40;
/// The performance mark the app sets once its first page is on screen
/// (`frontend/src/app.rs`, `INTERACTIVE_MARK`).
const INTERACTIVE_MARK: &str = "meridian:interactive";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_page_is_interactive_within_the_byte_budget() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = start_web_server(&db).await;
    let browser = Browser::start().await;
    browser
        .emulate_network(LINK_LATENCY_MS, LINK_BITS_PER_S)
        .await;

    browser.goto(&server.url("/")).await;
    browser.wait_for("[data-testid=system-card]").await;
    browser
        .wait_until(
            "the app's interactive mark",
            "return performance.getEntriesByName(arguments[0], 'mark').length > 0;",
            vec![json!(INTERACTIVE_MARK)],
            "#app",
        )
        .await;

    // Everything requested before the page was interactive, the document included.
    let report = browser
        .client
        .execute(
            "const mark = performance.getEntriesByName(arguments[0], 'mark')[0];
             const entries = [
                 ...performance.getEntriesByType('navigation'),
                 ...performance.getEntriesByType('resource'),
             ].filter(e => e.startTime <= mark.startTime);
             return {
                 interactive_ms: mark.startTime,
                 resources: entries.map(e => ({
                     name: new URL(e.name).pathname,
                     transfer: e.transferSize,
                     encoded: e.encodedBodySize,
                     decoded: e.decodedBodySize,
                 })),
             };",
            vec![json!(INTERACTIVE_MARK)],
        )
        .await
        .expect("read the page's resource timings");

    let resources = report["resources"].as_array().cloned().unwrap_or_default();
    let field = |resource: &Value, name: &str| resource[name].as_f64().unwrap_or(0.0) as u64;
    println!(
        "first load over {} Mbit/s with {LINK_LATENCY_MS} ms latency, cold cache:",
        LINK_BITS_PER_S / 1_000_000
    );
    println!(
        "  {:<48} {:>10} {:>10} {:>10}",
        "resource", "transfer", "body", "decoded"
    );
    let mut total = 0;
    for resource in &resources {
        let transfer = field(resource, "transfer");
        total += transfer;
        println!(
            "  {:<48} {:>10} {:>10} {:>10}",
            resource["name"].as_str().unwrap_or("?"),
            transfer,
            field(resource, "encoded"),
            field(resource, "decoded"),
        );
    }
    let interactive_ms = report["interactive_ms"].as_f64().unwrap_or(f64::NAN);
    println!(
        "  total {total} bytes transferred (budget {FIRST_LOAD_BUDGET_BYTES}); interactive after {interactive_ms:.0} ms"
    );

    // The wasm is the bulk: it must have been counted, and must have come compressed.
    let wasm = resources
        .iter()
        .find(|r| r["name"].as_str().is_some_and(|n| n.ends_with(".wasm")))
        .expect("the wasm module was fetched before the page was interactive");
    assert!(
        field(wasm, "transfer") > 0 && field(wasm, "encoded") < field(wasm, "decoded"),
        "the wasm came uncompressed or uncounted: {wasm}"
    );
    assert!(
        total <= FIRST_LOAD_BUDGET_BYTES,
        "the first load transferred {total} bytes, past the budget of {FIRST_LOAD_BUDGET_BYTES}: \
         trim the bundle or load a system's code on demand"
    );

    browser.close().await;
}
