//! The `/drive` page in a real browser: the home page lists it; a folder is made and
//! opened; files are uploaded through the file picker (chunked and hashed in wasm) and
//! downloaded; a text file edited while offline is saved once the browser is back
//! online; a conflicted copy made elsewhere appears, marked as such, without a reload;
//! a folder synced by `meridian sync` gets the tab's files, and the tab shows the
//! folder's new file.

use fantoccini::Locator;
use meridian_shared::drive::{Committed, NewUpload, NodeList, UploadStatus};
use meridian_tests::browser::{start_web_server, testid, Browser};
use meridian_tests::client::Client;
use meridian_tests::db::{Backend, TestDatabase};
use serde_json::json;

const PASSWORD: &str = "syncing-files-42";
const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");

fn row(name: &str) -> String {
    format!("[data-testid=drive-row][data-name='{name}']")
}

async fn content(client: &Client, id: &str) -> Vec<u8> {
    let response = client
        .http()
        .get(client.url(&format!("/api/drive/nodes/{id}/content")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.bytes().await.unwrap().to_vec()
}

async fn commit(client: &Client, target: NewUpload, data: &[u8]) -> Committed {
    let target = NewUpload {
        chunk_edits: None,
        signatures: false,
        chunks: meridian_shared::drive::chunking::manifest_of(data),
        ..target
    };
    let status: UploadStatus = client
        .post_json("/api/drive/uploads", &target)
        .await
        .expect(201);
    let mut offset = 0;
    for chunk in &target.chunks {
        let piece = &data[offset..offset + chunk.size as usize];
        offset += chunk.size as usize;
        if status.missing.contains(&chunk.hash) {
            let url = client.url(&format!(
                "/api/drive/uploads/{}/chunks/{}",
                status.upload_id, chunk.hash
            ));
            client
                .send(client.http().put(url).body(piece.to_vec()))
                .await;
        }
    }
    client
        .post_empty(&format!("/api/drive/uploads/{}/commit", status.upload_id))
        .await
        .expect(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_download_offline_edit_and_conflicts() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = start_web_server(&db).await;
    let browser = Browser::start().await;
    browser.sign_up(&server, "alice", PASSWORD).await;
    let api = browser.session_client(&server).await;

    browser.goto(&server.url("/")).await;
    browser
        .wait_for("[data-testid=system-card] a[href='/drive']")
        .await;
    browser
        .click("[data-testid=system-card] a[href='/drive']")
        .await;
    browser.wait_for(&testid("drive-empty")).await;

    // A folder, opened.
    browser.fill(&testid("drive-folder-name"), "Projects").await;
    browser.click(&testid("drive-new-folder")).await;
    browser.wait_for(&row("Projects")).await;
    browser
        .click(&format!("{} {}", row("Projects"), testid("drive-open")))
        .await;
    browser.wait_for(&testid("drive-empty")).await;

    // Upload through the file picker: a text file and a larger binary one.
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "hello from disk").unwrap();
    let big = dir.path().join("big.bin");
    let big_bytes: Vec<u8> = (0..700_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&big, &big_bytes).unwrap();
    for path in [&notes, &big] {
        browser
            .client
            .find(Locator::Css(&testid("drive-upload")))
            .await
            .unwrap()
            .send_keys(path.to_str().unwrap())
            .await
            .unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        browser.wait_for(&row(name)).await;
    }
    let folder = api
        .get("/api/drive/children")
        .await
        .expect::<NodeList>(200)
        .nodes
        .remove(0);
    let files = api
        .get(&format!("/api/drive/children?parent_id={}", folder.id))
        .await
        .expect::<NodeList>(200)
        .nodes;
    let notes_node = files
        .iter()
        .find(|n| n.name == "notes.txt")
        .unwrap()
        .clone();
    let big_node = files.iter().find(|n| n.name == "big.bin").unwrap().clone();
    assert_eq!(content(&api, &notes_node.id).await, b"hello from disk");
    assert_eq!(
        content(&api, &big_node.id).await,
        big_bytes,
        "chunked in the browser, whole on the server"
    );

    // Download: the link serves the bytes.
    let downloaded = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const link = document.querySelector(arguments[0]);
             fetch(link.href).then(r => r.text()).then(done, e => done('error ' + e));",
            vec![json!(format!(
                "{} {}",
                row("notes.txt"),
                testid("drive-download")
            ))],
        )
        .await
        .unwrap();
    assert_eq!(downloaded, json!("hello from disk"));

    // Edit offline: the save waits, then goes once the browser is back online.
    browser
        .click(&format!("{} {}", row("notes.txt"), testid("drive-edit")))
        .await;
    browser
        .wait_for_text(&testid("drive-editor-text"), "")
        .await;
    browser
        .wait_until(
            "the editor holds the file",
            "return document.querySelector(arguments[0]).value === 'hello from disk';",
            vec![json!(testid("drive-editor-text"))],
            &testid("drive-editor-text"),
        )
        .await;
    browser.set_offline(true).await;
    browser
        .fill(&testid("drive-editor-text"), "edited on a train")
        .await;
    browser.click(&testid("drive-save")).await;
    browser.wait_for(&testid("drive-pending")).await;
    assert_eq!(
        content(&api, &notes_node.id).await,
        b"hello from disk",
        "nothing sent while offline"
    );
    browser.set_offline(false).await;
    browser.wait_for_absence(&testid("drive-pending")).await;
    assert_eq!(content(&api, &notes_node.id).await, b"edited on a train");

    // Two devices edit one base elsewhere: the conflicted copy shows up, marked.
    let base = api
        .get(&format!("/api/drive/nodes/{}", notes_node.id))
        .await
        .expect::<serde_json::Value>(200);
    let base_version = base["version_id"].as_str().map(str::to_owned);
    let edit = |device: &str| NewUpload {
        chunk_edits: None,
        signatures: false,
        node_id: Some(notes_node.id.clone()),
        base_version: base_version.clone(),
        parent_id: None,
        name: None,
        device: device.to_owned(),
        chunks: vec![],
    };
    commit(&api, edit("laptop"), b"laptop's words").await;
    let copy = commit(&api, edit("phone"), b"phone's words").await;
    assert!(copy.node.name.contains("conflicted copy, phone"));
    browser
        .wait_for(&format!(
            "{} {}",
            row(&copy.node.name),
            testid("drive-conflict")
        ))
        .await;

    // A laptop folder synced by the agent and this tab stay in step.
    let laptop = tempfile::tempdir().unwrap();
    let sync_once = || {
        std::process::Command::new(BIN)
            .arg("sync")
            .arg(laptop.path())
            .args([
                "--server",
                &format!("http://{}", server.addr),
                "--username",
                "alice",
                "--device",
                "laptop",
                "--once",
            ])
            .env("MERIDIAN_PASSWORD", PASSWORD)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    assert!(sync_once().status.success());
    assert_eq!(
        std::fs::read(laptop.path().join("Projects/big.bin")).unwrap(),
        big_bytes
    );
    std::fs::write(
        laptop.path().join("Projects/from-laptop.txt"),
        "written on the laptop",
    )
    .unwrap();
    assert!(sync_once().status.success());
    browser.wait_for(&row("from-laptop.txt")).await;
    browser.close().await;
}
