//! The shopping cart in a real browser: headless Chromium against the server (in-process
//! on 127.0.0.1:0, SQLite) serving the built web UI.
//!
//! - Two tabs of one guest: a change in either shows in the other.
//! - Offline: an add shows at once and waits (the sync indicator says so), then reaches
//!   the server exactly once when the network is back, and survives a reload.
//! - Signing up merges the guest cart: the page shows the account's cart with the
//!   guest's lines and the merge notice, which stays dismissed once dismissed.
//!
//! The selectors are the cart page's test contract (frontend/src/cart/page.rs). Every
//! wait polls the page with a bound; nothing sleeps.

use meridian_shared::cart::{CartHistory, CartOwner, CartView, HistoryKind, Product, ProductList};
use meridian_tests::browser::{start_web_server, testid, Browser};
use meridian_tests::client::Client;
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::server::TestServer;

const USERNAME: &str = "shopper";
const PASSWORD: &str = "basket-case-2024";

/// Two products that are in stock.
async fn two_products(server: &TestServer) -> (Product, Product) {
    let list: ProductList = Client::new(server).get("/api/products").await.expect(200);
    let mut in_stock = list.products.into_iter().filter(|p| p.stock > 0);
    let first = in_stock.next().expect("a product in stock");
    let second = in_stock.next().expect("a second product in stock");
    (first, second)
}

/// Waits until the line of `product` shows `quantity`.
async fn wait_for_quantity(browser: &Browser, product: &str, quantity: u32) {
    browser
        .wait_for_text(&testid(&format!("qty-{product}")), &quantity.to_string())
        .await;
}

async fn wait_for_sync(browser: &Browser, state: &str) {
    browser
        .wait_for_attr("[data-testid=cart-sync]", "data-state", state)
        .await;
}

/// Opens the cart page and waits until it shows the server's cart, in sync.
async fn open_cart(browser: &Browser, server: &TestServer) {
    browser.goto(&server.url("/cart")).await;
    browser
        .wait_for("[data-testid=catalog] [data-testid^=add-]")
        .await;
    wait_for_sync(browser, "synced").await;
}

fn quantity_of(view: &CartView, product: &str) -> u32 {
    view.lines
        .iter()
        .find(|line| line.product_id == product)
        .map_or(0, |line| line.quantity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_of_one_guest_see_each_others_changes() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = start_web_server(&db).await;
    let (product, _) = two_products(&server).await;
    let p = product.id.as_str();
    let browser = Browser::start().await;

    open_cart(&browser, &server).await;
    browser
        .wait_for_attr("[data-testid=cart-owner]", "data-owner", "guest")
        .await;
    let tab_a = browser.current_tab().await;
    let tab_b = browser.open_tab().await;
    browser.switch_to(&tab_b).await;
    open_cart(&browser, &server).await;

    // Add in tab A: it shows there at once, then in tab B.
    browser.switch_to(&tab_a).await;
    browser.click(&testid(&format!("add-{p}"))).await;
    wait_for_quantity(&browser, p, 1).await;
    browser.switch_to(&tab_b).await;
    wait_for_quantity(&browser, p, 1).await;

    // The stepper in tab B: tab A follows.
    browser.click(&testid(&format!("inc-{p}"))).await;
    wait_for_quantity(&browser, p, 2).await;
    wait_for_sync(&browser, "synced").await;
    browser.switch_to(&tab_a).await;
    wait_for_quantity(&browser, p, 2).await;
    let cents = (2 * product.unit_price_cents).to_string();
    browser
        .wait_for_attr("[data-testid=cart-total]", "data-cents", &cents)
        .await;
    browser.wait_for_text("[data-testid=cart-count]", "2").await;

    // And back: − in tab A, tab B follows.
    browser.click(&testid(&format!("dec-{p}"))).await;
    wait_for_quantity(&browser, p, 1).await;
    wait_for_sync(&browser, "synced").await;
    browser.switch_to(&tab_b).await;
    wait_for_quantity(&browser, p, 1).await;

    let server_cart: CartView = browser
        .session_client(&server)
        .await
        .get("/api/cart")
        .await
        .expect(200);
    assert_eq!(quantity_of(&server_cart, p), 1, "{server_cart:?}");
    browser
        .wait_for_attr(
            "[data-testid=cart]",
            "data-version",
            &server_cart.version.to_string(),
        )
        .await;

    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_made_offline_waits_and_reaches_the_server_once() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = start_web_server(&db).await;
    let (product, _) = two_products(&server).await;
    let p = product.id.as_str();
    let browser = Browser::start().await;

    open_cart(&browser, &server).await;
    let api = browser.session_client(&server).await;

    browser.set_offline(true).await;
    browser.click(&testid(&format!("add-{p}"))).await;
    wait_for_quantity(&browser, p, 1).await;
    browser
        .wait_until(
            "the sync indicator says the change waits",
            "const e = document.querySelector('[data-testid=cart-sync]');
             return e !== null
                 && ['offline', 'pending'].includes(e.getAttribute('data-state'))
                 && e.textContent.includes('1 change');",
            vec![],
            "[data-testid=cart-sync]",
        )
        .await;
    let before: CartView = api.get("/api/cart").await.expect(200);
    assert_eq!(
        quantity_of(&before, p),
        0,
        "nothing reached the server while offline: {before:?}"
    );

    browser.set_offline(false).await;
    wait_for_sync(&browser, "synced").await;
    let after: CartView = api.get("/api/cart").await.expect(200);
    assert_eq!(quantity_of(&after, p), 1, "{after:?}");
    assert_eq!(after.item_count, 1, "{after:?}");
    let history: CartHistory = api.get("/api/cart/history").await.expect(200);
    let applied = history
        .entries
        .iter()
        .filter(|entry| entry.kind == HistoryKind::Op)
        .filter(|entry| {
            entry
                .op
                .as_ref()
                .is_some_and(|op| op.product_id.as_deref() == Some(p))
        })
        .count();
    assert_eq!(applied, 1, "the op applied exactly once: {history:?}");

    // A reload shows the server's cart, still once.
    open_cart(&browser, &server).await;
    wait_for_quantity(&browser, p, 1).await;
    browser.wait_for_text("[data-testid=cart-count]", "1").await;
    browser
        .wait_until(
            "a history entry for the add",
            "return document.querySelectorAll('[data-testid=cart-history] [data-testid=history-entry]').length === 1;",
            vec![],
            "[data-testid=cart-history]",
        )
        .await;

    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_up_merges_the_guest_cart_in_the_page() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = start_web_server(&db).await;
    let (first, second) = two_products(&server).await;
    let (p, q) = (first.id.as_str(), second.id.as_str());
    let browser = Browser::start().await;

    // As a guest: two products, acknowledged.
    open_cart(&browser, &server).await;
    browser.click(&testid(&format!("add-{p}"))).await;
    browser.click(&testid(&format!("add-{q}"))).await;
    wait_for_quantity(&browser, p, 1).await;
    wait_for_quantity(&browser, q, 1).await;
    wait_for_sync(&browser, "synced").await;

    // Sign up through the form.
    browser.goto(&server.url("/signup")).await;
    browser.wait_for_text("[data-testid=whoami]", "Guest").await;
    browser.fill("input[name=username]", USERNAME).await;
    browser.fill("input[name=password]", PASSWORD).await;
    browser.click("form button[type=submit]").await;
    browser
        .wait_for_text("[data-testid=whoami]", USERNAME)
        .await;

    // The account's cart holds the guest's lines, and says where they came from.
    browser.goto(&server.url("/cart")).await;
    browser
        .wait_for_attr("[data-testid=cart-owner]", "data-owner", "user")
        .await;
    browser
        .wait_for_text_containing(
            "[data-testid=merge-notice]",
            "2 items from your guest cart were added",
        )
        .await;
    wait_for_quantity(&browser, p, 1).await;
    wait_for_quantity(&browser, q, 1).await;
    browser.wait_for_text("[data-testid=cart-count]", "2").await;
    wait_for_sync(&browser, "synced").await;
    browser
        .wait_for("[data-testid=cart-history] [data-testid=history-entry][data-kind=merge]")
        .await;
    let account: CartView = browser
        .session_client(&server)
        .await
        .get("/api/cart")
        .await
        .expect(200);
    assert_eq!(account.owner, CartOwner::User);
    assert_eq!((quantity_of(&account, p), quantity_of(&account, q)), (1, 1));

    // Dismissed, the notice stays gone after a reload.
    browser.click("[data-testid=merge-dismiss]").await;
    let notice_gone = "return document.querySelector('[data-testid=merge-notice]') === null;";
    browser
        .wait_until(
            "the merge notice to go",
            notice_gone,
            vec![],
            "[data-testid=merge-notice]",
        )
        .await;
    open_cart(&browser, &server).await;
    browser
        .wait_for_attr("[data-testid=cart-owner]", "data-owner", "user")
        .await;
    wait_for_quantity(&browser, p, 1).await;
    browser
        .wait_until(
            "the merge notice to stay dismissed",
            notice_gone,
            vec![],
            "[data-testid=merge-notice]",
        )
        .await;

    browser.close().await;
}
