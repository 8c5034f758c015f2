//! The ETA page in a real browser: the map is drawn from our own data, a route end is
//! dragged halfway towards the other (mouse events on the canvas), the preview computed in wasm follows the drag,
//! and the server's ETA for the new route arrives when the drag ends; a simulated trip
//! shows its ETA.

use meridian_tests::browser::{built_static_dir, Browser};
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::process::ServerProcess;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");

async fn attr(browser: &Browser, testid: &str, name: &str) -> String {
    let value = browser
        .client
        .execute(
            "const e = document.querySelector(`[data-testid=${arguments[0]}]`);
             return e === null ? '' : (e.getAttribute(arguments[1]) || '');",
            vec![json!(testid), json!(name)],
        )
        .await
        .expect("read an attribute");
    value.as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dragging_a_route_end_gives_a_new_eta() {
    let static_dir = built_static_dir();
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = ServerProcess::start_with(BIN, &db.url, db.data_dir(), &static_dir).await;
    let browser = Browser::start().await;

    browser.goto(&server.url("/")).await;
    browser
        .wait_for("[data-testid=system-card] a[href='/eta']")
        .await;
    browser
        .click("[data-testid=system-card] a[href='/eta']")
        .await;
    browser
        .wait_for_attr("[data-testid=eta-map]", "data-ready", "true")
        .await;
    browser.wait_for("[data-testid=eta-source]").await;
    browser
        .wait_until(
            "the preview and the server's ETA",
            "const p = document.querySelector('[data-testid=eta-preview]');
             const s = document.querySelector('[data-testid=eta-server]');
             return p && s && p.dataset.etaS !== '' && s.dataset.etaS !== '';",
            vec![],
            "[data-testid=eta-server]",
        )
        .await;
    let preview_before = attr(&browser, "eta-preview", "data-eta-s").await;
    let server_before = attr(&browser, "eta-server", "data-eta-s").await;
    // The preview (wasm, under the same weights) agrees with the server.
    let (p, s): (f64, f64) = (
        preview_before.parse().unwrap(),
        server_before.parse().unwrap(),
    );
    assert!((p - s).abs() < 0.01, "preview {p} s, server {s} s");

    // Drag B halfway towards A (a point on the map: the ends sit on its diagonal).
    let ends = attr(&browser, "eta-map", "data-ends").await;
    let px: Vec<f64> = ends.split(',').map(|v| v.parse().unwrap()).collect();
    let drag: Value = browser
        .client
        .execute(
            "const c = document.querySelector('[data-testid=eta-map]');
             const r = c.getBoundingClientRect();
             const fire = (type, x, y) => c.dispatchEvent(new MouseEvent(type,
                 {bubbles: true, clientX: r.left + x, clientY: r.top + y}));
             const [ax, ay, bx, by] = arguments;
             const [tx, ty] = [(ax + bx) / 2, (ay + by) / 2];
             fire('mousedown', bx, by);
             for (let i = 1; i <= 10; i++) {
                 fire('mousemove', bx + (tx - bx) * i / 10, by + (ty - by) * i / 10);
             }
             fire('mouseup', tx, ty);
             return true;",
            vec![json!(px[0]), json!(px[1]), json!(px[2]), json!(px[3])],
        )
        .await
        .expect("drag");
    assert_eq!(drag, json!(true));
    browser
        .wait_until(
            "a new ETA from the server",
            "const s = document.querySelector('[data-testid=eta-server]');
             return s && s.dataset.etaS !== '' && s.dataset.etaS !== arguments[0];",
            vec![json!(server_before)],
            "[data-testid=eta-server]",
        )
        .await;
    let preview_after = attr(&browser, "eta-preview", "data-eta-s").await;
    let server_after = attr(&browser, "eta-server", "data-eta-s").await;
    assert_ne!(
        preview_after, preview_before,
        "the preview followed the drag"
    );
    let (p, s): (f64, f64) = (
        preview_after.parse().unwrap(),
        server_after.parse().unwrap(),
    );
    assert!(
        (p - s).abs() < 0.01,
        "preview {p} s, server {s} s after the drag"
    );

    // A simulated trip shows its ETA, which falls as it drives.
    browser.click("[data-testid=eta-trip-start]").await;
    browser.wait_for("[data-testid=eta-trip]").await;
    let first: f64 = attr(&browser, "eta-trip", "data-eta-s")
        .await
        .parse()
        .unwrap();
    browser
        .wait_until(
            "the trip's ETA to fall",
            "const t = document.querySelector('[data-testid=eta-trip]');
             return t && parseFloat(t.dataset.etaS) < arguments[0];",
            vec![json!(first)],
            "[data-testid=eta-trip]",
        )
        .await;
    browser.close().await;
}
