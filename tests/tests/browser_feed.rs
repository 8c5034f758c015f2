//! The news feed in a real browser: a post in one account's tab announces itself in a
//! follower's tab ("1 new post"), which shows it with its reasons after a click; a post
//! composed offline waits in IndexedDB and is sent when the connection is back.

use meridian_tests::browser::{start_web_server, testid, Browser};
use meridian_tests::db::{Backend, TestDatabase};

const PASSWORD: &str = "feed-browser-pass-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_appears_in_a_followers_tab_after_one_new_post() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = start_web_server(&db).await;
    let writer = Browser::start().await;
    writer.sign_up(&server, "writer", PASSWORD).await;
    let reader = Browser::start().await;
    reader.sign_up(&server, "reader", PASSWORD).await;

    // The reader follows the writer (through the writer's profile, found by HTTP).
    let writer_id = writer
        .session_client(&server)
        .await
        .me()
        .await
        .user
        .expect("signed in")
        .id;
    let reader_http = reader.session_client(&server).await;
    reader_http
        .send(
            reader_http
                .http()
                .put(reader_http.url(&format!("/api/feed/follows/{writer_id}"))),
        )
        .await
        .expect::<serde_json::Value>(200);

    reader.goto(&server.url("/feed")).await;
    reader.wait_for(&testid("feed-empty")).await;
    writer.goto(&server.url("/feed")).await;
    writer.wait_for(&testid("feed-compose")).await;

    writer
        .fill(&testid("feed-compose"), "hello from the writer's tab")
        .await;
    writer.click(&testid("feed-post-button")).await;
    writer
        .wait_for_text_containing(&testid("feed-item-text"), "hello from the writer's tab")
        .await;

    // The follower's tab: the banner first, the post after a click.
    reader
        .wait_for_text(&testid("feed-banner"), "1 new post")
        .await;
    reader.click(&testid("feed-banner")).await;
    reader
        .wait_for_text_containing(&testid("feed-item-text"), "hello from the writer's tab")
        .await;
    reader
        .wait_for("[data-testid='feed-reasons'] [data-code='followed']")
        .await;
    reader.wait_for_absence(&testid("feed-banner")).await;

    // Like it from the reader's tab.
    reader.click(&testid("feed-like")).await;
    reader
        .wait_for_text_containing(&testid("feed-like"), "1")
        .await;

    // Offline: the post waits, then goes when the connection is back.
    writer.set_offline(true).await;
    writer
        .fill(&testid("feed-compose"), "written offline")
        .await;
    writer.click(&testid("feed-post-button")).await;
    writer
        .wait_for_text_containing(&testid("feed-pending"), "written offline")
        .await;
    writer.set_offline(false).await;
    writer.wait_for_absence(&testid("feed-pending")).await;
    writer
        .wait_for_text_containing(&testid("feed-list"), "written offline")
        .await;
    reader
        .wait_for_text(&testid("feed-banner"), "1 new post")
        .await;

    writer.close().await;
    reader.close().await;
    server.shutdown().await;
}
