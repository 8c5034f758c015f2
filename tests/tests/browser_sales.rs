//! The flash sale page in a real browser, in two tabs of one account: the admin creates
//! a sale through the form; tab A buys (reserved, with a timer) while tab B sees the
//! figures change live and is refused past the buyer's limit; tab A pays and gets its
//! order; both tabs show it sold, the order fulfilled, and the dashboard's figures.

use meridian_shared::sales::SaleList;
use meridian_tests::browser::{start_web_server, testid, Browser};
use meridian_tests::db::{Backend, TestDatabase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_purchase_flow_in_two_tabs() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = start_web_server(&db).await;
    server.state.sales.set_payment_failure(0.0);
    let browser = Browser::start().await;
    browser.sign_up(&server, "admin", "flash-sale-pass-1").await;

    // The home page lists the system; its page shows the admin panel.
    browser.goto(&server.url("/")).await;
    browser
        .wait_for("[data-testid=system-card] a[href='/sale']")
        .await;
    browser.goto(&server.url("/sale")).await;
    browser.wait_for(&testid("sale-admin")).await;
    browser.wait_for(&testid("sale-none")).await;

    // Create a sale of one unit, one per buyer, open now.
    browser.fill("input[name=sale-stock]", "1").await;
    browser.fill("input[name=sale-starts-in]", "0").await;
    browser.fill("input[name=sale-limit]", "1").await;
    browser.click(&testid("create-sale")).await;
    browser
        .wait_for_text(&testid("sale-name"), "Lanterns at dawn")
        .await;
    browser.wait_for_text(&testid("sale-stock-left"), "1").await;
    // The server's clock is frozen at its start (before the form's "now", by however
    // long a loaded machine took to get here): move it well past the sale's start.
    server.clock.advance(600_000);
    browser
        .wait_for_attr(&testid("sale-state"), "data-state", "live")
        .await;
    let sales: SaleList = browser
        .session_client(&server)
        .await
        .get("/api/sales")
        .await
        .expect(200);
    assert_eq!(sales.sales.len(), 1);
    assert_eq!(sales.sales[0].stock, 1);

    let tab_a = browser.current_tab().await;
    let tab_b = browser.open_tab().await;
    browser.switch_to(&tab_b).await;
    browser.goto(&server.url("/sale")).await;
    browser.wait_for_text(&testid("sale-stock-left"), "1").await;

    // Tab A reserves the unit: a timer runs; tab B sees it reserved, live.
    browser.switch_to(&tab_a).await;
    browser.click(&testid("buy-button")).await;
    browser
        .wait_for_attr(&testid("purchase"), "data-state", "reserved")
        .await;
    browser.wait_for(&testid("reservation-timer")).await;
    browser.switch_to(&tab_b).await;
    browser.wait_for_text(&testid("sale-reserved"), "1").await;
    browser.wait_for_text(&testid("sale-stock-left"), "0").await;

    // Tab B (the same account) is refused past the limit of one.
    browser.click(&testid("buy-button")).await;
    browser
        .wait_for_attr(&testid("purchase"), "data-state", "limit_reached")
        .await;

    // Tab A pays: confirmed with an order id; tab B sees it sold and the order.
    browser.switch_to(&tab_a).await;
    browser.click(&testid("pay-button")).await;
    browser
        .wait_for_attr(&testid("purchase"), "data-state", "confirmed")
        .await;
    browser.wait_for(&testid("order-id")).await;
    browser.switch_to(&tab_b).await;
    browser.wait_for_text(&testid("sale-sold"), "1").await;
    browser
        .wait_for_attr(&testid("sale-state"), "data-state", "sold_out")
        .await;
    browser
        .wait_for_attr(&testid("order-row"), "data-fulfilment", "fulfilled")
        .await;
    browser.wait_for_text(&testid("dash-orders"), "1").await;
    browser.wait_for_text(&testid("dash-backlog"), "0").await;
    browser.close().await;
    server.shutdown().await;
}
