//! Collaborative documents in a real browser: headless Chromium against the server
//! (in-process on 127.0.0.1:0, SQLite) serving the built web UI.
//!
//! - Two tabs type at once into the same paragraph: both end with the same text, holding
//!   every character typed, and each shows the other's cursor; a closed tab's cursor
//!   leaves at once.
//! - Offline: a tab taken off the network keeps editing (its status says offline, the
//!   other tabs of its browser follow through BroadcastChannel, another browser does
//!   not); back online, the edits reach the other browser.
//! - Bold and a heading made with the toolbar survive a reload (and are on the server).
//! - A saved version previews read-only and, restored, reaches every tab; deleting the
//!   document ends the sessions that have it open.
//!
//! The selectors are the documents pages' test contract (frontend/src/docs/pages/mod.rs)
//! and the editor's (frontend/src/docs/editor.rs). Every wait polls the page with a
//! bound; nothing sleeps for a fixed time.

use std::time::{Duration, Instant};

use fantoccini::key::Key;
use fantoccini::wd::WindowHandle;
use meridian_shared::docs::rich::{blocks, Block, Run};
use meridian_shared::docs::{schema, Version};
use meridian_tests::browser::{start_web_server, Browser, WAIT_TIMEOUT};
use meridian_tests::client::Client;
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::server::TestServer;
use serde_json::{json, Value};
use yrs::updates::decoder::Decode;
use yrs::{Transact, Update};

const PASSWORD: &str = "many-hands-2024";
/// How often a wait that spans several tabs looks again.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// Defines `text()`: the editor's text, one line per paragraph, without the remote
/// cursors' name labels (`null` without an editor).
const EDITOR_TEXT_FN: &str = "
    const text = () => {
        const root = document.querySelector('[data-testid=doc-editor]');
        if (root === null) { return null; }
        const copy = root.cloneNode(true);
        copy.querySelectorAll('.remote-cursor').forEach(e => e.remove());
        return Array.from(copy.children)
            .map(e => e.textContent)
            .join('\\n')
            .replace(/[\\u200b\\ufeff]/g, '');
    };
";

/// Creates a document from the list page and returns its id (the page opens it).
async fn create_doc(browser: &Browser, server: &TestServer, title: &str) -> String {
    browser.goto(&server.url("/docs")).await;
    browser.fill("[data-testid=doc-create-title]", title).await;
    browser.click("[data-testid=doc-create]").await;
    let page = browser.wait_for("[data-testid=doc-page]").await;
    let id = page
        .attr("data-doc-id")
        .await
        .expect("read data-doc-id")
        .expect("the document page names its document");
    wait_until_synced(browser).await;
    id
}

async fn wait_until_synced(browser: &Browser) {
    browser.wait_for("[data-testid=doc-editor]").await;
    browser
        .wait_for_attr("[data-testid=doc-status]", "data-state", "synced")
        .await;
}

/// Opens a document in the current tab and waits until it is in sync.
async fn open_doc(browser: &Browser, server: &TestServer, id: &str) {
    browser.goto(&server.url(&format!("/docs/{id}"))).await;
    wait_until_synced(browser).await;
}

async fn editor_text(browser: &Browser) -> String {
    let script = format!("{EDITOR_TEXT_FN} return text();");
    match browser.client.execute(&script, vec![]).await {
        Ok(Value::String(text)) => text,
        other => panic!("cannot read the editor's text: {other:?}"),
    }
}

/// Types into the editor (focusing it first if it is not).
async fn type_into_editor(browser: &Browser, text: &str) {
    browser
        .wait_for("[data-testid=doc-editor]")
        .await
        .send_keys(text)
        .await
        .unwrap_or_else(|e| panic!("type {text:?} into the editor: {e}"));
}

async fn wait_for_text_containing(browser: &Browser, needle: &str) {
    browser
        .wait_until(
            &format!("the editor's text containing {needle:?}"),
            &format!("{EDITOR_TEXT_FN} return (text() || '').includes(arguments[0]);"),
            vec![json!(needle)],
            "[data-testid=doc-editor]",
        )
        .await;
}

/// Waits until every tab shows the same editor text, and it satisfies `check`; returns
/// it. Switches between the tabs, so it leaves the last one current.
async fn wait_for_same_text(
    browser: &Browser,
    tabs: &[&WindowHandle],
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    loop {
        let mut texts = Vec::new();
        for tab in tabs {
            browser.switch_to(tab).await;
            texts.push(editor_text(browser).await);
        }
        if texts.windows(2).all(|w| w[0] == w[1]) && check(&texts[0]) {
            return texts.swap_remove(0);
        }
        assert!(
            Instant::now() < deadline,
            "waited {WAIT_TIMEOUT:?} for {what}; the tabs show {texts:#?}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// This tab's own client id, from the presence list.
async fn own_client_id(browser: &Browser) -> String {
    browser
        .wait_for("[data-testid=presence-item][data-me=true]")
        .await
        .attr("data-client-id")
        .await
        .expect("read data-client-id")
        .expect("a presence item has a client id")
}

/// Waits until this tab shows the cursor of client `client_id` (another tab).
async fn wait_for_remote_cursor(browser: &Browser, client_id: &str) {
    browser
        .wait_for(&format!(".remote-cursor[data-client-id='{client_id}']"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_typing_at_once_end_identical_and_see_each_others_cursor() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = start_web_server(&db).await;
    let browser = Browser::start().await;
    browser.sign_up(&server, "penwright", PASSWORD).await;
    let id = create_doc(&browser, &server, "Typing together").await;
    let tab_a = browser.current_tab().await;
    let client_a = own_client_id(&browser).await;
    let tab_b = browser.open_tab().await;
    browser.switch_to(&tab_b).await;
    open_doc(&browser, &server, &id).await;
    let client_b = own_client_id(&browser).await;
    assert_ne!(client_a, client_b, "each tab is its own replica");

    // Both type into the one paragraph, turn by turn, without waiting for each other.
    let mut typed = Vec::new();
    for round in 0..6 {
        for (tab, who) in [(&tab_a, 'a'), (&tab_b, 'b')] {
            browser.switch_to(tab).await;
            let word = format!("{who}{round}{who}");
            type_into_editor(&browser, &word).await;
            typed.push(word);
        }
    }

    let text = wait_for_same_text(
        &browser,
        &[&tab_a, &tab_b],
        "both tabs to show every word typed",
        |text| typed.iter().all(|word| text.contains(word.as_str())),
    )
    .await;
    let letters = |s: &str| s.chars().filter(|c| c.is_alphanumeric()).count();
    assert_eq!(
        letters(&text),
        typed.iter().map(|w| letters(w)).sum::<usize>(),
        "nothing lost, nothing doubled: {text:?}"
    );
    assert!(
        !text.trim_end_matches('\n').contains('\n'),
        "one paragraph: {text:?}"
    );

    // Each tab shows the other's cursor.
    browser.switch_to(&tab_a).await;
    wait_for_remote_cursor(&browser, &client_b).await;
    browser
        .wait_for("[data-testid=presence-item][data-me=false]")
        .await;
    browser.switch_to(&tab_b).await;
    wait_for_remote_cursor(&browser, &client_a).await;

    // Both are saved on the server.
    for tab in [&tab_a, &tab_b] {
        browser.switch_to(tab).await;
        browser
            .wait_for_attr("[data-testid=doc-status]", "data-state", "synced")
            .await;
    }

    // Tab B closes (it is current): its cursor and its presence leave tab A at once.
    browser.client.close_window().await.expect("close tab B");
    browser.switch_to(&tab_a).await;
    browser
        .wait_until(
            "tab B's cursor and presence to leave tab A",
            "return document.querySelector(`.remote-cursor[data-client-id='${arguments[0]}']`) === null
                && document.querySelector(`[data-testid=presence-item][data-client-id='${arguments[0]}']`) === null
                && document.querySelectorAll('[data-testid=presence-item]').length === 1;",
            vec![json!(client_b)],
            "[data-testid=doc-presence]",
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_made_offline_reach_the_others_when_back_online() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = start_web_server(&db).await;

    let owner = Browser::start().await;
    owner.sign_up(&server, "offliner", PASSWORD).await;
    let friend = Browser::start().await;
    friend.sign_up(&server, "stayer", PASSWORD).await;

    let id = create_doc(&owner, &server, "Written on a train").await;
    type_into_editor(&owner, "before ").await;
    owner.fill("[data-testid=share-username]", "stayer").await;
    owner.click("[data-testid=share-add]").await;
    owner
        .wait_for("[data-testid=share-member][data-username=stayer][data-role=editor]")
        .await;
    let owner_tab = owner.current_tab().await;
    let owner_second_tab = owner.open_tab().await;
    owner.switch_to(&owner_second_tab).await;
    open_doc(&owner, &server, &id).await;
    wait_for_text_containing(&owner, "before").await;
    owner.switch_to(&owner_tab).await;

    open_doc(&friend, &server, &id).await;
    wait_for_text_containing(&friend, "before").await;

    // Off the network: the edit shows here at once and the status says where it is.
    owner.set_offline(true).await;
    owner
        .wait_for_attr("[data-testid=doc-status]", "data-state", "offline")
        .await;
    type_into_editor(&owner, "while-offline").await;
    wait_for_text_containing(&owner, "while-offline").await;
    owner
        .wait_for_attr("[data-testid=doc-status]", "data-state", "offline")
        .await;
    // The other tab of this browser follows through BroadcastChannel...
    owner.switch_to(&owner_second_tab).await;
    wait_for_text_containing(&owner, "while-offline").await;
    // ...but nothing reached the server, so the other browser has not seen it.
    let elsewhere = editor_text(&friend).await;
    assert!(
        !elsewhere.contains("while-offline"),
        "an offline edit reached another browser: {elsewhere:?}"
    );

    // Back online: the edit goes out and the other browser gets it.
    owner.switch_to(&owner_tab).await;
    owner.set_offline(false).await;
    owner
        .wait_for_attr("[data-testid=doc-status]", "data-state", "synced")
        .await;
    wait_for_text_containing(&friend, "while-offline").await;
    let mine = editor_text(&owner).await;
    let theirs = editor_text(&friend).await;
    assert_eq!(mine, theirs, "the two browsers converge");

    owner.close().await;
    friend.close().await;
}

/// The document as the server holds it: a named version saved now, read back as
/// paragraphs.
async fn server_blocks(api: &Client, id: &str) -> Vec<Block> {
    let version: Version = api
        .post_json(
            &format!("/api/docs/{id}/versions"),
            &json!({"name": "check"}),
        )
        .await
        .expect(201);
    let path = format!("/api/docs/{id}/versions/{}/update", version.id);
    let response = api
        .http()
        .get(api.url(&path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(response.status().as_u16(), 200, "GET {path}");
    let bytes = response.bytes().await.expect("read the version's update");
    let doc = schema::new_doc();
    let text = doc.get_or_insert_text(schema::TEXT);
    doc.transact_mut()
        .apply_update(Update::decode_v1(&bytes).expect("a v1 update"))
        .expect("the version applies to a fresh document");
    let txn = doc.transact();
    blocks(&txn, &text)
}

/// Waits until the editor shows a level-1 heading `title` followed by a paragraph whose
/// bold run is `bold`.
async fn wait_for_formatting(browser: &Browser, title: &str, bold: &str) {
    browser
        .wait_until(
            "a heading and a bold run in the editor",
            "const root = document.querySelector('[data-testid=doc-editor]');
             if (root === null) { return false; }
             const blocks = Array.from(root.children);
             return blocks.length >= 2
                 && blocks[0].tagName === 'H1'
                 && blocks[0].textContent === arguments[0]
                 && blocks[1].tagName === 'P'
                 && Array.from(blocks[1].querySelectorAll('strong'))
                     .some(e => e.textContent === arguments[1]);",
            vec![json!(title), json!(bold)],
            "[data-testid=doc-editor]",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bold_and_a_heading_from_the_toolbar_survive_a_reload_and_a_rename_shows() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = start_web_server(&db).await;
    let browser = Browser::start().await;
    browser.sign_up(&server, "typesetter", PASSWORD).await;
    let id = create_doc(&browser, &server, "Formatted").await;

    type_into_editor(&browser, "Big title").await;
    browser.click("[data-testid=doc-style-h1]").await;
    browser
        .wait_for_attr("[data-testid=doc-style-h1]", "aria-pressed", "true")
        .await;
    let enter = char::from(Key::Enter).to_string();
    type_into_editor(&browser, &format!("{enter}plain ")).await;
    browser.click("[data-testid=doc-bold]").await;
    type_into_editor(&browser, "strong words").await;
    wait_for_formatting(&browser, "Big title", "strong words").await;
    browser
        .wait_for_attr("[data-testid=doc-status]", "data-state", "synced")
        .await;

    // A reload shows it again (from this browser's copy, then the server's).
    open_doc(&browser, &server, &id).await;
    wait_for_formatting(&browser, "Big title", "strong words").await;

    // And the server holds exactly that.
    let api = browser.session_client(&server).await;
    let stored = server_blocks(&api, &id).await;
    assert_eq!(
        stored.iter().take(2).cloned().collect::<Vec<_>>(),
        vec![
            Block {
                heading: Some(1),
                runs: vec![Run {
                    text: "Big title".into(),
                    ..Run::default()
                }],
            },
            Block {
                heading: None,
                runs: vec![
                    Run {
                        text: "plain ".into(),
                        ..Run::default()
                    },
                    Run {
                        text: "strong words".into(),
                        bold: true,
                        italic: false,
                    },
                ],
            },
        ],
        "{stored:#?}"
    );

    // Renamed elsewhere (here: through the API): the page shows it when it regains focus.
    api.send(
        api.http()
            .patch(api.url(&format!("/api/docs/{id}")))
            .json(&serde_json::json!({"title": "Formatted, renamed"})),
    )
    .await
    .expect::<serde_json::Value>(200);
    browser
        .wait_until(
            "the new title after the window regains focus",
            "window.dispatchEvent(new Event('focus'));
             return document.querySelector('[data-testid=doc-title]').value === arguments[0];",
            vec![json!("Formatted, renamed")],
            "[data-testid=doc-title]",
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_version_reaches_every_tab_and_a_deletion_ends_the_session() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = start_web_server(&db).await;
    let browser = Browser::start().await;
    browser.sign_up(&server, "archivist", PASSWORD).await;
    let id = create_doc(&browser, &server, "Drafts").await;
    let tab_a = browser.current_tab().await;

    type_into_editor(&browser, "first draft").await;
    browser
        .wait_for_attr("[data-testid=doc-status]", "data-state", "synced")
        .await;
    browser
        .fill("[data-testid=version-name]", "Draft one")
        .await;
    browser.click("[data-testid=version-save]").await;
    browser
        .wait_for("[data-testid=version-item][data-kind=named]")
        .await;
    type_into_editor(&browser, " and more").await;
    wait_for_text_containing(&browser, "first draft and more").await;

    let tab_b = browser.open_tab().await;
    browser.switch_to(&tab_b).await;
    open_doc(&browser, &server, &id).await;
    wait_for_text_containing(&browser, "first draft and more").await;

    // The version, previewed read-only beside the document, then restored.
    browser.switch_to(&tab_a).await;
    browser
        .click("[data-testid=version-item][data-kind=named] button")
        .await;
    browser
        .wait_until(
            "the preview to show the saved text",
            "const e = document.querySelector('[data-testid=version-preview] [data-testid=doc-editor]');
             return e !== null && e.textContent.trim() === 'first draft'
                 && e.getAttribute('contenteditable') === 'false';",
            vec![],
            "[data-testid=version-preview]",
        )
        .await;
    browser.click("[data-testid=version-restore]").await;
    wait_for_same_text(
        &browser,
        &[&tab_a, &tab_b],
        "both tabs to show the restored version",
        |text| text.trim_end() == "first draft",
    )
    .await;
    browser.switch_to(&tab_a).await;
    browser
        .wait_for("[data-testid=version-item][data-kind=before_restore]")
        .await;

    // Deleted from the list in one tab: the other tab's session ends.
    browser.switch_to(&tab_b).await;
    browser.goto(&server.url("/docs")).await;
    browser.click("[data-testid=doc-delete]").await;
    browser.click("[data-testid=doc-delete-confirm]").await;
    browser.wait_for("[data-testid=doc-list-empty]").await;
    browser.switch_to(&tab_a).await;
    browser
        .wait_for_attr("[data-testid=doc-status]", "data-state", "deleted")
        .await;
    browser.wait_for("[data-testid=doc-deleted]").await;
    browser.close().await;
}
