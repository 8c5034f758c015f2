//! The page `/wal` in a real browser, over an in-process server whose local cluster is
//! three real `wal-node` processes: the home page lists the system, the page shows the
//! three nodes and a leader, an appended record shows in the list and in the state at
//! the slider's LSN, and killing the leader from the page shows it down and another
//! node leading.

use meridian_tests::browser::{built_static_dir, testid, Browser};
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::server::TestServer;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_cluster_appends_and_a_failover() {
    let static_dir = built_static_dir();
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = TestServer::start_with(&db, move |config| {
        config.static_dir = static_dir;
        config.wal_nodes = 3;
        config.wal_executable = Some(BIN.into());
    })
    .await;
    let browser = Browser::start().await;
    // The first account of the installation is its admin, who may kill nodes.
    browser
        .sign_up(&server, "waladmin", "correct horse battery")
        .await;

    browser.goto(&server.url("/")).await;
    browser
        .click("[data-testid=system-card] a[href='/wal']")
        .await;

    // Three nodes, one of them leading, the others following it.
    browser
        .wait_until(
            "three nodes, one leader",
            "const nodes = [...document.querySelectorAll('[data-testid=wal-node]')];
             return nodes.length === 3
                 && nodes.filter(n => n.dataset.role === 'leader').length === 1
                 && nodes.filter(n => n.dataset.role === 'follower').length === 2;",
            vec![],
            &testid("wal-node"),
        )
        .await;
    browser
        .wait_for_text_containing(&testid("wal-leader"), "Leader: node")
        .await;

    // Append a record: it shows in the list, and in the state at the latest LSN.
    browser.fill(&testid("wal-key"), "colour").await;
    browser.fill(&testid("wal-value"), "red").await;
    browser.click(&testid("wal-append")).await;
    browser
        .wait_for_text_containing(&testid("wal-appended"), "Committed at LSN")
        .await;
    browser
        .wait_for_text_containing(&testid("wal-record"), "colour = red")
        .await;
    browser
        .wait_for_text_containing(&testid("wal-state-entry"), "red")
        .await;

    // Kill the leader from the page: it shows down, and another node leads.
    let leader = browser
        .wait_for("[data-testid=wal-node][data-role=leader]")
        .await
        .attr("data-node")
        .await
        .expect("read data-node")
        .expect("the leader's card names its node");
    browser.click(&testid(&format!("wal-kill-{leader}"))).await;
    browser
        .wait_for(&format!(
            "[data-testid=wal-node][data-node='{leader}'][data-running=false][data-role=down]"
        ))
        .await;
    browser
        .wait_until(
            "another node leading",
            "const leader = document.querySelector('[data-testid=wal-node][data-role=leader]');
             return leader !== null && leader.dataset.node !== arguments[0];",
            vec![json!(leader)],
            &testid("wal-node"),
        )
        .await;

    browser.close().await;
    server.shutdown().await;
}
