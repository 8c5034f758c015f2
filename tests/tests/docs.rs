//! Collaborative documents against a real server on both backends: the `/api/docs` API
//! and who may use it, and the y-websocket protocol at `/yjs/{doc_id}` spoken by our
//! Rust client (`meridian_tests::yjs`): convergence of concurrent typing, read-only
//! members, malformed frames, durability across kill -9 (real processes), offline edits,
//! idle unload and compaction, presence, versions and deletion.
//!
//! Randomised tests print their seed; `MERIDIAN_TEST_SEED=<n>` replays one.

use std::future::Future;
use std::time::{Duration, Instant};

use meridian_shared::api::Me;
use meridian_shared::docs::{
    close_code, protocol, schema, CreateDoc, CreateVersion, Doc, DocList, RenameDoc, Restored,
    Role, RoomInfo, RoomStats, ShareDoc, Version, VersionKind, VersionList,
};
use meridian_tests::both_backends;
use meridian_tests::client::{assert_error_body, Client, Reply};
use meridian_tests::db::TestDatabase;
use meridian_tests::process::ServerProcess;
use meridian_tests::server::{TestServer, PATIENCE};
use meridian_tests::yjs::{
    attrs, cursor_state, sorted_chars, test_seed, text_of_update, Received, YClient,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use yrs::{Any, Number};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const PASSWORD: &str = "typing-together-42";

// ---------------------------------------------------------------------------------------
// Helpers

/// A new browser signed up as `username`: the client and the account's user id.
async fn account(base_url: &str, username: &str) -> (Client, String) {
    let client = Client::at(base_url);
    let me: Me = client.signup(username, PASSWORD).await.expect(201);
    (client, me.user.expect("signed in").id)
}

async fn create_doc(client: &Client, title: &str) -> Doc {
    client
        .post_json(
            "/api/docs",
            &CreateDoc {
                title: title.to_owned(),
            },
        )
        .await
        .expect(201)
}

async fn rename(client: &Client, doc_id: &str, title: &str) -> Reply {
    let body = RenameDoc {
        title: title.to_owned(),
    };
    let request = client
        .http()
        .patch(client.url(&format!("/api/docs/{doc_id}")))
        .json(&body);
    client.send(request).await
}

async fn share(owner: &Client, doc_id: &str, username: &str, role: Role) -> Reply {
    owner
        .post_json(
            &format!("/api/docs/{doc_id}/members"),
            &ShareDoc {
                username: username.to_owned(),
                role,
            },
        )
        .await
}

async fn list(client: &Client) -> DocList {
    client.get("/api/docs").await.expect(200)
}

async fn rooms(client: &Client) -> RoomStats {
    client.get("/api/docs/rooms").await.expect(200)
}

async fn room(client: &Client, doc_id: &str) -> Option<RoomInfo> {
    rooms(client)
        .await
        .rooms
        .into_iter()
        .find(|r| r.doc_id == doc_id)
}

async fn connect(client: &Client, doc_id: &str) -> YClient {
    YClient::connect(client, doc_id)
        .await
        .unwrap_or_else(|refused| panic!("/yjs/{doc_id} refused: {refused:?}"))
}

/// A version's content: the bytes of `.../versions/{id}/update`.
async fn version_update(client: &Client, doc_id: &str, version_id: &str) -> Vec<u8> {
    let url = client.url(&format!("/api/docs/{doc_id}/versions/{version_id}/update"));
    let response = client.http().get(url).send().await.expect("GET the update");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap()),
        Some("application/octet-stream")
    );
    response.bytes().await.expect("read the update").to_vec()
}

/// Polls `probe` until it returns something, failing the test after [`PATIENCE`]: for
/// states the server reaches on its own (an idle room unloaded, a compaction done).
async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the database holds for a document: `(update rows, snapshot seq)`. The snapshot
/// is read first: a compaction writes it and deletes the updates it covers in one
/// transaction, so a snapshot seen here is never paired with rows it already replaced.
async fn stored(pool: &sqlx::AnyPool, doc_id: &str) -> (i64, Option<i64>) {
    let snapshot: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM doc_snapshots WHERE doc_id = $1")
            .bind(doc_id)
            .fetch_optional(pool)
            .await
            .expect("read the snapshot");
    let updates: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM doc_updates WHERE doc_id = $1")
        .bind(doc_id)
        .fetch_one(pool)
        .await
        .expect("count the stored updates");
    (updates, snapshot)
}

async fn open_pool(db: &TestDatabase) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&db.url)
        .await
        .expect("open the test database")
}

// ---------------------------------------------------------------------------------------
// The API

both_backends!(
    documents_are_created_listed_renamed_and_deleted,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let (olive, olive_id) = account(&server.base_url(), "olive").await;

        let plan = create_doc(&olive, "  Plan  ").await;
        assert_eq!(plan.title, "Plan", "the title is trimmed");
        assert_eq!(plan.role, Role::Owner);
        assert_eq!(plan.owner.user_id, olive_id);
        assert_eq!(plan.owner.username, "olive");
        assert_eq!(plan.owner.role, Role::Owner);
        assert_eq!(plan.members, vec![plan.owner.clone()], "the owner first");
        assert_eq!(plan.sync_path, format!("/yjs/{}", plan.id));
        assert!(!plan.id.is_empty());

        server.clock.advance(1_000);
        let notes = create_doc(&olive, "Notes").await;
        assert_ne!(notes.id, plan.id);
        assert!(notes.created_ms > plan.created_ms);

        let got: Doc = olive
            .get(&format!("/api/docs/{}", plan.id))
            .await
            .expect(200);
        assert_eq!(got, plan);

        let listed = list(&olive).await;
        let ids: Vec<&str> = listed.docs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, [notes.id.as_str(), plan.id.as_str()], "newest first");
        assert_eq!(listed.docs[1].title, "Plan");
        assert_eq!(listed.docs[1].role, Role::Owner);
        assert_eq!(listed.docs[1].owner.username, "olive");

        server.clock.advance(1_000);
        let renamed: Doc = rename(&olive, &plan.id, " Plan v2 ").await.expect(200);
        assert_eq!(renamed.title, "Plan v2");
        assert!(renamed.updated_ms > plan.updated_ms);
        let listed = list(&olive).await;
        let ids: Vec<&str> = listed.docs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            ids,
            [plan.id.as_str(), notes.id.as_str()],
            "a renamed document was updated most recently"
        );
        assert_eq!(listed.docs[0].title, "Plan v2");

        let deleted = olive.delete(&format!("/api/docs/{}", plan.id)).await;
        assert_eq!(deleted.status.as_u16(), 204, "body: {}", deleted.json);
        olive
            .get(&format!("/api/docs/{}", plan.id))
            .await
            .assert_error(404, "doc_not_found");
        olive
            .delete(&format!("/api/docs/{}", plan.id))
            .await
            .assert_error(404, "doc_not_found");
        let ids: Vec<String> = list(&olive).await.docs.into_iter().map(|d| d.id).collect();
        assert_eq!(ids, [notes.id.as_str()]);
    }
);

both_backends!(
    the_document_routes_are_in_the_openapi_document,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let doc = Client::new(&server).get("/api/openapi.json").await.json;
        let paths = doc["paths"].as_object().expect("paths");
        for (path, method) in [
            ("/api/docs", "get"),
            ("/api/docs", "post"),
            ("/api/docs/rooms", "get"),
            ("/api/docs/{id}", "get"),
            ("/api/docs/{id}", "patch"),
            ("/api/docs/{id}", "delete"),
            ("/api/docs/{id}/members", "post"),
            ("/api/docs/{id}/members/{user_id}", "delete"),
            ("/api/docs/{id}/versions", "get"),
            ("/api/docs/{id}/versions", "post"),
            ("/api/docs/{id}/versions/{version_id}/update", "get"),
            ("/api/docs/{id}/versions/{version_id}/restore", "post"),
            ("/yjs/{doc_id}", "get"),
        ] {
            let operation = paths
                .get(path)
                .and_then(|p| p.get(method))
                .unwrap_or_else(|| panic!("{method} {path} is not documented"));
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path} documents its responses"
            );
        }
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for name in [
            "Doc",
            "DocList",
            "CreateDoc",
            "RenameDoc",
            "ShareDoc",
            "Version",
            "VersionList",
            "Restored",
            "RoomStats",
        ] {
            assert!(schemas.contains_key(name), "schema {name} is documented");
        }
    }
);

both_backends!(titles_are_validated, |db: TestDatabase| async move {
    let server = TestServer::start(&db).await;
    let (olive, _) = account(&server.base_url(), "olive").await;
    for bad in ["", "   ", &"x".repeat(201)] {
        olive
            .post_json("/api/docs", &json!({ "title": bad }))
            .await
            .assert_error(422, "invalid_title");
    }
    let longest = "é".repeat(200);
    let doc = create_doc(&olive, &longest).await;
    assert_eq!(doc.title, longest, "200 characters are allowed");
    rename(&olive, &doc.id, " ")
        .await
        .assert_error(422, "invalid_title");
    rename(&olive, &doc.id, &"y".repeat(201))
        .await
        .assert_error(422, "invalid_title");
    let unchanged: Doc = olive
        .get(&format!("/api/docs/{}", doc.id))
        .await
        .expect(200);
    assert_eq!(unchanged.title, longest);
});

both_backends!(
    strangers_and_guests_cannot_see_a_document,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let (olive, _) = account(&server.base_url(), "olive").await;
        let (sam, _) = account(&server.base_url(), "sam").await;
        let doc = create_doc(&olive, "Private").await;
        let path = format!("/api/docs/{}", doc.id);

        // A stranger is told nothing: the document might as well not exist.
        sam.get(&path).await.assert_error(404, "doc_not_found");
        rename(&sam, &doc.id, "Mine")
            .await
            .assert_error(404, "doc_not_found");
        sam.delete(&path).await.assert_error(404, "doc_not_found");
        sam.get(&format!("{path}/versions"))
            .await
            .assert_error(404, "doc_not_found");
        assert!(list(&sam).await.docs.is_empty());
        let refused = YClient::connect(&sam, &doc.id)
            .await
            .err()
            .expect("a stranger's upgrade is refused");
        assert_eq!(refused.status, 404, "{refused:?}");
        assert_error_body(&refused.body, "doc_not_found");

        // An unknown document is the same 404.
        olive
            .get("/api/docs/no-such-doc")
            .await
            .assert_error(404, "doc_not_found");
        let refused = YClient::connect(&olive, "no-such-doc")
            .await
            .err()
            .expect("an unknown document's upgrade is refused");
        assert_eq!(refused.status, 404, "{refused:?}");
        assert_error_body(&refused.body, "doc_not_found");

        // A guest must sign in first.
        let guest = Client::new(&server);
        guest.me().await;
        guest
            .get("/api/docs")
            .await
            .assert_error(401, "sign_in_required");
        guest
            .post_json("/api/docs", &json!({ "title": "Mine" }))
            .await
            .assert_error(401, "sign_in_required");
        guest.get(&path).await.assert_error(401, "sign_in_required");
        let refused = YClient::connect(&guest, &doc.id)
            .await
            .err()
            .expect("a guest's upgrade is refused");
        assert_eq!(refused.status, 401, "{refused:?}");
        assert_error_body(&refused.body, "sign_in_required");

        // Nothing of it changed the document.
        let still: Doc = olive.get(&path).await.expect(200);
        assert_eq!(still, doc);
    }
);

both_backends!(
    sharing_gives_roles_that_the_api_enforces,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let base = server.base_url();
        let (olive, olive_id) = account(&base, "olive").await;
        let (eddie, eddie_id) = account(&base, "eddie").await;
        let (vera, vera_id) = account(&base, "vera").await;
        let doc = create_doc(&olive, "Shared").await;
        let path = format!("/api/docs/{}", doc.id);

        let shared: Doc = share(&olive, &doc.id, "eddie", Role::Editor)
            .await
            .expect(200);
        assert_eq!(shared.members.len(), 2);
        let shared: Doc = share(&olive, &doc.id, "vera", Role::Viewer)
            .await
            .expect(200);
        let members: Vec<(&str, &str, Role)> = shared
            .members
            .iter()
            .map(|m| (m.user_id.as_str(), m.username.as_str(), m.role))
            .collect();
        assert_eq!(members[0], (olive_id.as_str(), "olive", Role::Owner));
        let mut rest = members[1..].to_vec();
        rest.sort_by_key(|m| m.1);
        let want = vec![
            (eddie_id.as_str(), "eddie", Role::Editor),
            (vera_id.as_str(), "vera", Role::Viewer),
        ];
        assert_eq!(rest, want);

        // Each sees the document with their own role.
        let as_eddie: Doc = eddie.get(&path).await.expect(200);
        assert_eq!(as_eddie.role, Role::Editor);
        assert_eq!(as_eddie.members, shared.members);
        let as_vera: Doc = vera.get(&path).await.expect(200);
        assert_eq!(as_vera.role, Role::Viewer);
        let listed = list(&vera).await;
        assert_eq!(listed.docs.len(), 1);
        assert_eq!(listed.docs[0].role, Role::Viewer);
        assert_eq!(listed.docs[0].owner.username, "olive");

        // Editors rename; viewers do not; only the owner shares and deletes.
        let renamed: Doc = rename(&eddie, &doc.id, "Renamed by eddie")
            .await
            .expect(200);
        assert_eq!(renamed.title, "Renamed by eddie");
        rename(&vera, &doc.id, "Mine")
            .await
            .assert_error(403, "read_only");
        share(&eddie, &doc.id, "vera", Role::Editor)
            .await
            .assert_error(403, "owner_only");
        eddie.delete(&path).await.assert_error(403, "owner_only");
        vera.delete(&path).await.assert_error(403, "owner_only");
        eddie
            .delete(&format!("{path}/members/{vera_id}"))
            .await
            .assert_error(403, "owner_only");
        vera.post_json(&format!("{path}/versions"), &json!({ "name": "mine" }))
            .await
            .assert_error(403, "read_only");

        // Validation.
        share(&olive, &doc.id, "nobody-here", Role::Editor)
            .await
            .assert_error(404, "unknown_user");
        share(&olive, &doc.id, "eddie", Role::Owner)
            .await
            .assert_error(422, "invalid_role");
        share(&olive, &doc.id, "olive", Role::Editor)
            .await
            .assert_error(422, "cannot_share_with_owner");

        // Sharing again changes the role.
        let promoted: Doc = share(&olive, &doc.id, "vera", Role::Editor)
            .await
            .expect(200);
        assert_eq!(promoted.members.len(), 3, "no second row for vera");
        let as_vera: Doc = vera.get(&path).await.expect(200);
        assert_eq!(as_vera.role, Role::Editor);
        let renamed: Doc = rename(&vera, &doc.id, "Renamed by vera").await.expect(200);
        assert_eq!(renamed.title, "Renamed by vera");

        // The owner may remove anyone.
        let after: Doc = olive
            .delete(&format!("{path}/members/{eddie_id}"))
            .await
            .expect(200);
        assert!(after.members.iter().all(|m| m.user_id != eddie_id));
        assert_eq!(after.members.len(), 2);
        eddie.get(&path).await.assert_error(404, "doc_not_found");
        assert!(list(&eddie).await.docs.is_empty());
        let refused = YClient::connect(&eddie, &doc.id)
            .await
            .err()
            .expect("a removed member's upgrade is refused");
        assert_eq!(refused.status, 404, "{refused:?}");

        // A member may leave; the answer is the document as it is now, without them.
        let left: Doc = vera
            .delete(&format!("{path}/members/{vera_id}"))
            .await
            .expect(200);
        vera.get(&path).await.assert_error(404, "doc_not_found");
        assert!(list(&vera).await.docs.is_empty());
        let now: Doc = olive.get(&path).await.expect(200);
        assert_eq!(now.members.len(), 1);
        assert!(
            left.members.iter().all(|m| m.user_id != vera_id),
            "the leaver is still listed: {:?}",
            left.members
        );
    }
);

both_backends!(
    role_changes_reach_open_connections,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let base = server.base_url();
        let (olive, _) = account(&base, "olive").await;
        let (eddie, _) = account(&base, "eddie").await;
        let (vera, vera_id) = account(&base, "vera").await;
        let doc = create_doc(&olive, "Roles").await;
        share(&olive, &doc.id, "eddie", Role::Editor)
            .await
            .expect::<Doc>(200);
        share(&olive, &doc.id, "vera", Role::Editor)
            .await
            .expect::<Doc>(200);

        let mut owner = connect(&olive, &doc.id).await;
        let mut editor = connect(&eddie, &doc.id).await;
        let mut leaving = connect(&vera, &doc.id).await;
        editor.insert(0, "eddie may write\n").await;
        editor.sync().await;

        // Downgraded while connected: the next write is refused and never applied.
        share(&olive, &doc.id, "eddie", Role::Viewer)
            .await
            .expect::<Doc>(200);
        editor.insert(0, "NOT ANY MORE ").await;
        let (code, reason) = editor.recv_close().await;
        assert_eq!(code, close_code::READ_ONLY, "reason {reason:?}");
        assert!(
            editor.denied().is_some(),
            "received {:?}",
            editor.received()
        );

        // Removed while connected: the connection closes.
        olive
            .delete(&format!("/api/docs/{}/members/{vera_id}", doc.id))
            .await
            .expect::<Doc>(200);
        let (code, reason) = leaving.recv_close().await;
        assert_eq!(code, close_code::READ_ONLY, "reason {reason:?}");

        owner.sync().await;
        assert_eq!(owner.text(), "eddie may write\n");
        let fresh = connect(&olive, &doc.id).await;
        assert_eq!(fresh.text(), "eddie may write\n");
    }
);

// ---------------------------------------------------------------------------------------
// Editing together

const ALPHABET_A: &[char] = &[
    'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's',
    't', 'u', 'v', 'w', 'x', 'y', 'z', 'é', ' ',
];
const ALPHABET_B: &[char] = &[
    'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', 'P', 'Q', 'R', 'S',
    'T', 'U', 'V', 'W', 'X', 'Y', 'Z', '0', '1', '2', '3', 'ß', '·',
];

fn word(rng: &mut StdRng, alphabet: &[char]) -> String {
    let len = rng.random_range(1..=3);
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())])
        .collect()
}

both_backends!(
    two_clients_typing_into_one_paragraph_converge,
    |db: TestDatabase| async move {
        let seed = test_seed("two_clients_typing_into_one_paragraph_converge");
        let mut rng = StdRng::seed_from_u64(seed);
        let server = TestServer::start(&db).await;
        let base = server.base_url();
        let (olive, _) = account(&base, "olive").await;
        let (eddie, _) = account(&base, "eddie").await;
        let doc = create_doc(&olive, "Together").await;
        share(&olive, &doc.id, "eddie", Role::Editor)
            .await
            .expect::<Doc>(200);

        let mut a = connect(&olive, &doc.id).await;
        let mut b = connect(&eddie, &doc.id).await;
        let start = "Together: \n";
        a.insert(0, start).await;
        a.sync().await;
        b.sync().await;
        assert_eq!(b.text(), start);

        // Every character is one UTF-16 unit, and the paragraph's "\n" stays last: an
        // insert lands at most just before it.
        let mut typed = start.to_owned();
        for _round in 0..150 {
            let pos_a = rng.random_range(0..a.len());
            let pos_b = if rng.random_bool(0.5) {
                pos_a.min(b.len() - 1) // the same place, concurrently
            } else {
                rng.random_range(0..b.len())
            };
            let word_a = word(&mut rng, ALPHABET_A);
            let word_b = word(&mut rng, ALPHABET_B);
            a.insert(pos_a, &word_a).await;
            b.insert(pos_b, &word_b).await;
            typed.push_str(&word_a);
            typed.push_str(&word_b);
            // Now and then a replica catches up with what has arrived: a mix of
            // concurrent and causally ordered edits.
            if rng.random_bool(0.2) {
                a.drain().await;
            }
            if rng.random_bool(0.2) {
                b.drain().await;
            }
        }
        a.sync().await;
        b.sync().await;
        a.sync().await;

        let text = a.text();
        assert_eq!(b.text(), text, "seed {seed}");
        assert_eq!(
            sorted_chars(&text),
            sorted_chars(&typed),
            "every typed character is there exactly once (seed {seed})"
        );
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        assert_eq!(a.blocks(), b.blocks());
        assert_eq!(a.blocks().len(), 1, "still one paragraph");

        let late = connect(&olive, &doc.id).await;
        assert_eq!(late.text(), text, "a client joining later (seed {seed})");
        assert_eq!(late.blocks(), a.blocks());
    }
);

both_backends!(
    formatting_travels_as_quill_attributes,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let (olive, _) = account(&server.base_url(), "olive").await;
        let doc = create_doc(&olive, "Rich").await;
        let mut a = connect(&olive, &doc.id).await;
        let mut b = connect(&olive, &doc.id).await;
        a.insert(0, "Title\nHello world\n").await;
        a.sync().await;
        b.sync().await;
        // Concurrently: A makes the first line a heading and "world" bold, B makes
        // "Hello" italic.
        a.format(5, 1, attrs(schema::HEADER, Any::Number(Number::Int(2))))
            .await;
        a.format(12, 5, attrs(schema::BOLD, Any::Bool(true))).await;
        b.format(6, 5, attrs(schema::ITALIC, Any::Bool(true))).await;
        a.sync().await;
        b.sync().await;
        a.sync().await;
        assert_eq!(a.blocks(), b.blocks());
        let blocks = a.blocks();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].heading, Some(2));
        assert_eq!(blocks[0].text(), "Title");
        assert_eq!(blocks[1].heading, None);
        let runs: Vec<(&str, bool, bool)> = blocks[1]
            .runs
            .iter()
            .map(|r| (r.text.as_str(), r.bold, r.italic))
            .collect();
        assert_eq!(
            runs,
            [
                ("Hello", false, true),
                (" ", false, false),
                ("world", true, false)
            ]
        );
        let late = connect(&olive, &doc.id).await;
        assert_eq!(late.blocks(), blocks);
    }
);

both_backends!(
    a_viewer_receives_but_cannot_write,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let base = server.base_url();
        let (olive, _) = account(&base, "olive").await;
        let (vera, _) = account(&base, "vera").await;
        let doc = create_doc(&olive, "Read me").await;
        share(&olive, &doc.id, "vera", Role::Viewer)
            .await
            .expect::<Doc>(200);

        let mut owner = connect(&olive, &doc.id).await;
        owner.insert(0, "Owner's words\n").await;
        owner.sync().await;

        // The viewer receives the document. Its answer to the server's step 1 (an empty
        // step 2) was sent before the step 1 that `sync` sends, so the server handled
        // it and did not close the connection.
        let mut viewer = connect(&vera, &doc.id).await;
        assert_eq!(viewer.text(), "Owner's words\n");
        viewer.sync().await;
        assert!(viewer.is_connected());

        // Live updates reach it as well.
        owner.insert(14, "More words\n").await;
        viewer
            .recv_until("the owner's second line", |v| v.text().contains("More"))
            .await;
        viewer.sync().await;

        // A non-empty update: "permission denied", then 4403, and nothing applied.
        viewer.insert(0, "VIEWER WAS HERE ").await;
        let (code, reason) = viewer.recv_close().await;
        assert_eq!(code, close_code::READ_ONLY, "reason {reason:?}");
        assert!(!reason.is_empty());
        let denied = viewer
            .denied()
            .unwrap_or_else(|| panic!("an auth message first: {:?}", viewer.received()))
            .to_owned();
        assert!(!denied.is_empty());
        assert!(
            matches!(viewer.received().last(), Some(Received::Auth(Some(_)))),
            "the auth message is the last frame before the close: {:?}",
            viewer.received()
        );

        owner.sync().await;
        assert_eq!(owner.text(), "Owner's words\nMore words\n");
        let fresh = connect(&olive, &doc.id).await;
        assert_eq!(fresh.text(), "Owner's words\nMore words\n");
        assert!(
            !fresh.text().contains("VIEWER"),
            "the refused update was never applied"
        );
    }
);

both_backends!(
    a_flooding_connection_is_closed_and_the_room_carries_on,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let (olive, _) = account(&server.base_url(), "olive").await;
        let doc = create_doc(&olive, "Busy").await;
        let mut writer = connect(&olive, &doc.id).await;
        let mut flooder = connect(&olive, &doc.id).await;
        // An empty update is valid and changes nothing: only the rate stops it.
        let sent = flooder.flood(protocol::update(vec![0, 0]), 20_000).await;
        let (code, reason) = flooder.recv_close().await;
        assert_eq!(
            code,
            close_code::RATE_LIMITED,
            "after {sent} frames: {reason:?}"
        );
        assert!(
            sent > 2_000,
            "the burst allowance was honoured ({sent} frames sent)"
        );
        writer.insert(0, "still here").await;
        writer.sync().await;
        assert_eq!(connect(&olive, &doc.id).await.text(), "still here");
    }
);

both_backends!(
    a_malformed_frame_closes_only_its_connection,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let base = server.base_url();
        let (olive, _) = account(&base, "olive").await;
        let (eddie, _) = account(&base, "eddie").await;
        let doc = create_doc(&olive, "Sturdy").await;
        share(&olive, &doc.id, "eddie", Role::Editor)
            .await
            .expect::<Doc>(200);
        let mut editor = connect(&eddie, &doc.id).await;
        let mut watcher = connect(&olive, &doc.id).await;

        // Garbage: a sync message of a sub-type that does not exist.
        let garbage = vec![0x00, 0x05, 0xde, 0xad, 0xbe, 0xef];
        assert!(matches!(
            protocol::decode_frame(&garbage),
            Err(protocol::FrameError::Undecodable(_))
        ));
        let mut two = protocol::query_awareness();
        two.extend(protocol::query_awareness());
        let bad_update = protocol::update(vec![200, 1, 2, 3]);
        assert!(matches!(
            protocol::decode_frame(&bad_update),
            Err(protocol::FrameError::BadUpdate(_))
        ));
        let unknown_type = vec![7, 0];

        enum Bad {
            Binary(Vec<u8>),
            Text(&'static str),
        }
        let cases = [
            ("garbage bytes", Bad::Binary(garbage)),
            ("two messages in one frame", Bad::Binary(two)),
            ("a text frame", Bad::Text("hello, server")),
            ("an update that does not decode", Bad::Binary(bad_update)),
            ("an unknown message type", Bad::Binary(unknown_type)),
            ("an empty frame", Bad::Binary(Vec::new())),
        ];
        let mut reasons = Vec::new();
        for (round, (what, bad)) in cases.into_iter().enumerate() {
            let mut offender = connect(&olive, &doc.id).await;
            match bad {
                Bad::Binary(bytes) => offender.send_raw(bytes).await,
                Bad::Text(text) => offender.send_text(text).await,
            }
            let (code, reason) = offender.recv_close().await;
            assert_eq!(code, close_code::MALFORMED, "{what}: reason {reason:?}");
            assert!(!reason.is_empty(), "{what}: the close names the problem");
            println!("{what}: 4400 {reason:?}");
            reasons.push(reason);

            // Everyone else carries on.
            let marker = format!("[{round}]");
            editor.insert(0, &marker).await;
            editor.sync().await;
            watcher
                .recv_until(&format!("{marker} after {what}"), |w| {
                    w.text().contains(&marker)
                })
                .await;
        }
        let mut distinct = reasons.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            reasons.len(),
            "each problem has its own reason: {reasons:?}"
        );
        watcher.sync().await;
        assert_eq!(watcher.text(), "[5][4][3][2][1][0]");
        assert_eq!(editor.text(), watcher.text());
    }
);

// ---------------------------------------------------------------------------------------
// Durability

both_backends!(
    kill_9_loses_no_acknowledged_keystroke,
    |db: TestDatabase| async move {
        let mut server = ServerProcess::start(BIN, &db).await;
        let (olive, _) = account(&server.base_url(), "olive").await;
        let doc = create_doc(&olive, "Durable").await;

        let mut typist = connect(&olive, &doc.id).await;
        let line = "The quick brown fox jumps over the lazy dog. ".repeat(5);
        for (i, ch) in line.chars().enumerate() {
            typist.insert(i as u32, &ch.to_string()).await;
        }
        typist.sync().await; // acknowledged: every keystroke is stored
        server.kill_9().await;
        typist.crash();

        let restarted = ServerProcess::start(BIN, &db).await;
        let olive = olive.same_browser_at(&restarted.base_url());
        let reader = connect(&olive, &doc.id).await;
        assert_eq!(reader.text(), line);
        assert_eq!(typist.text(), line);
    }
);

both_backends!(
    what_a_client_received_survives_kill_9,
    |db: TestDatabase| async move {
        let mut server = ServerProcess::start(BIN, &db).await;
        let base = server.base_url();
        let (olive, _) = account(&base, "olive").await;
        let (eddie, _) = account(&base, "eddie").await;
        let doc = create_doc(&olive, "Broadcast").await;
        share(&olive, &doc.id, "eddie", Role::Editor)
            .await
            .expect::<Doc>(200);

        let mut typist = connect(&olive, &doc.id).await;
        let mut reader = connect(&eddie, &doc.id).await;
        let all: String = (0..400)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        for (i, ch) in all.chars().enumerate() {
            typist.insert(i as u32, &ch.to_string()).await;
        }
        // No acknowledgement: the server is killed as soon as the reader has seen a
        // hundred keystrokes. What it saw was forwarded, perhaps before it was stored:
        // it survives through the replicas that hold it.
        reader
            .recv_until("a hundred keystrokes", |r| r.len() >= 100)
            .await;
        server.kill_9().await;
        let seen = reader.text();
        assert!(all.starts_with(&seen), "the reader saw a prefix: {seen:?}");
        typist.crash();
        reader.crash();

        let restarted = ServerProcess::start(BIN, &db).await;
        let olive = olive.same_browser_at(&restarted.base_url());
        let eddie = eddie.same_browser_at(&restarted.base_url());
        let stored = connect(&olive, &doc.id).await.text();
        assert!(all.starts_with(&stored), "stored {stored:?}");
        // The reader reconnects first: what it saw is stored, whatever the server had.
        reader
            .reconnect(&eddie)
            .await
            .expect("the reader reconnects");
        let recovered = connect(&olive, &doc.id).await.text();
        println!(
            "seen {} keystrokes, stored {} before and {} after the reader's reconnect, of {}",
            seen.len(),
            stored.len(),
            recovered.len(),
            all.len()
        );
        assert!(
            recovered.starts_with(&seen),
            "everything the reader saw was stored: seen {} chars, recovered {recovered:?}",
            seen.len()
        );
        assert!(all.starts_with(&recovered), "recovered {recovered:?}");
        // The typist reconnects: everything it typed is stored, once.
        typist
            .reconnect(&olive)
            .await
            .expect("the typist reconnects");
        reader.sync().await;
        assert_eq!(typist.text(), all);
        assert_eq!(reader.text(), all);
        assert_eq!(connect(&olive, &doc.id).await.text(), all);
    }
);

both_backends!(
    compacted_documents_survive_kill_9,
    |db: TestDatabase| async move {
        // The process runs with the default compaction threshold; enough updates are
        // typed to cross it several times, and the test checks that it did compact.
        let mut server = ServerProcess::start(BIN, &db).await;
        let (olive, _) = account(&server.base_url(), "olive").await;
        let doc = create_doc(&olive, "Compacted").await;
        let pool = open_pool(&db).await;

        let mut typist = connect(&olive, &doc.id).await;
        let mut want = String::new();
        for i in 0..COMPACTION_KEYSTROKES {
            let ch = char::from(b'A' + (i % 26) as u8);
            typist.insert(i as u32, &ch.to_string()).await;
            want.push(ch);
        }
        typist.sync().await;
        let (pool_ref, doc_id) = (&pool, doc.id.as_str());
        let (updates, snapshot) = wait_for("a compaction", || async move {
            let (updates, snapshot) = stored(pool_ref, doc_id).await;
            let compacted =
                snapshot.is_some_and(|seq| seq > 0) && updates < COMPACTION_KEYSTROKES as i64;
            compacted.then_some((updates, snapshot))
        })
        .await;
        println!("before kill -9: {updates} update rows, snapshot at {snapshot:?}");
        // More after the compaction, so the restart needs snapshot and updates.
        typist.insert(0, "tail ").await;
        typist.sync().await;
        server.kill_9().await;
        typist.crash();
        pool.close().await;

        let restarted = ServerProcess::start(BIN, &db).await;
        let olive = olive.same_browser_at(&restarted.base_url());
        let reader = connect(&olive, &doc.id).await;
        assert_eq!(reader.text(), format!("tail {want}"));
    }
);

/// Enough keystrokes to cross the default compaction threshold of a server process
/// (`Config::doc_compact_every`, 500 by default) twice.
const COMPACTION_KEYSTROKES: usize = 1_100;

both_backends!(
    offline_edits_merge_on_reconnect,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let base = server.base_url();
        let (olive, _) = account(&base, "olive").await;
        let (eddie, _) = account(&base, "eddie").await;
        let doc = create_doc(&olive, "Offline").await;
        share(&olive, &doc.id, "eddie", Role::Editor)
            .await
            .expect::<Doc>(200);

        let mut a = connect(&olive, &doc.id).await;
        let mut b = connect(&eddie, &doc.id).await;
        a.insert(0, "first line\nsecond line\n").await;
        a.sync().await;
        b.sync().await;

        a.disconnect().await;
        // Offline, A edits its replica; online, B edits the server's.
        a.insert(0, "A offline: ").await;
        a.format(0, 9, attrs(schema::BOLD, Any::Bool(true))).await;
        a.delete(a.len() - 5, 4).await; // "second line\n" -> "second \n"
        b.insert(11, "B online ").await;
        b.sync().await;
        assert!(!a.text().contains("B online"));

        a.reconnect(&olive).await.expect("reconnect");
        // `reconnect` answered the server's step 1 (A's offline edits are stored) and
        // received B's edit.
        assert!(a.text().contains("B online"), "{:?}", a.text());
        b.recv_until("A's offline edits", |b| b.text().contains("A offline"))
            .await;
        b.sync().await;
        assert_eq!(a.text(), b.text());
        assert_eq!(a.text(), "A offline: first line\nB online second \n");
        assert_eq!(a.blocks(), b.blocks());
        assert!(a.blocks()[0].runs[0].bold);

        let fresh = connect(&olive, &doc.id).await;
        assert_eq!(fresh.text(), a.text());
        assert_eq!(fresh.blocks(), a.blocks());
    }
);

both_backends!(
    idle_documents_unload_and_reload,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |config| {
            config.doc_idle_unload = Duration::from_millis(300);
        })
        .await;
        let base = server.base_url();
        let (olive, _) = account(&base, "olive").await;
        let (eddie, _) = account(&base, "eddie").await;
        let doc = create_doc(&olive, "Idle").await;
        share(&olive, &doc.id, "eddie", Role::Editor)
            .await
            .expect::<Doc>(200);

        let mut a = connect(&olive, &doc.id).await;
        let mut b = connect(&eddie, &doc.id).await;
        a.insert(0, "from a\n").await;
        b.insert(0, "from b\n").await;
        a.sync().await;
        b.sync().await;
        a.sync().await;
        let text = a.text();
        assert_eq!(b.text(), text);
        let loaded = room(&olive, &doc.id).await.expect("the room is loaded");
        assert_eq!(loaded.connections, 2);
        assert!(loaded.state_bytes > 0);

        a.close().await;
        b.close().await;
        let (owner, doc_id) = (&olive, doc.id.as_str());
        wait_for("the room to see both leave", || async move {
            let room = room(owner, doc_id).await.expect("still loaded");
            (room.connections == 0).then_some(())
        })
        .await;
        // The server's clock (which only the test moves) passes `doc_idle_unload`.
        server.clock.advance(301);
        wait_for("the idle room to unload", || async move {
            room(owner, doc_id).await.is_none().then_some(())
        })
        .await;
        let stats = rooms(&olive).await;
        assert_eq!(stats.loaded_rooms, 0, "{stats:?}");
        assert_eq!(stats.connections, 0, "{stats:?}");

        let again = connect(&eddie, &doc.id).await;
        assert_eq!(again.text(), text, "reloaded from the database");
        let reloaded = room(&olive, &doc.id).await.expect("loaded again");
        assert_eq!(reloaded.connections, 1);
    }
);

both_backends!(
    compaction_keeps_every_update,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |config| {
            config.doc_idle_unload = Duration::from_millis(300);
            config.doc_compact_every = 10;
        })
        .await;
        let (olive, _) = account(&server.base_url(), "olive").await;
        let doc = create_doc(&olive, "Compact").await;

        let mut typist = connect(&olive, &doc.id).await;
        let mut want = String::new();
        for i in 0..100u32 {
            let ch = char::from(b'a' + (i % 26) as u8);
            typist.insert(i, &ch.to_string()).await;
            want.push(ch);
        }
        typist.sync().await;
        // The document rests (on the server's clock, which only the test moves).
        server.clock.advance(2_000);
        let (pool, doc_id, owner) = (&server.state.db.pool, doc.id.as_str(), &olive);
        let (updates, snapshot) = wait_for("compaction into a snapshot", || async move {
            let (updates, snapshot) = stored(pool, doc_id).await;
            let compacted = snapshot.is_some_and(|seq| seq >= 90) && updates < 100;
            compacted.then_some((updates, snapshot))
        })
        .await;
        println!("{updates} update rows left, snapshot at {snapshot:?}");
        let compacted_room = room(&olive, &doc.id).await.expect("loaded");

        // A client joining the loaded room, then after an unload and reload.
        assert_eq!(connect(&olive, &doc.id).await.text(), want);
        typist.close().await;
        wait_for("the room to see the typist leave", || async move {
            let room = room(owner, doc_id).await.expect("still loaded");
            (room.connections == 0).then_some(())
        })
        .await;
        server.clock.advance(301);
        wait_for("the idle room to unload", || async move {
            room(owner, doc_id).await.is_none().then_some(())
        })
        .await;
        assert_eq!(connect(&olive, &doc.id).await.text(), want);

        // The room counts every update, and those since its last snapshot.
        assert!(compacted_room.seq >= 100, "{compacted_room:?}");
        assert!(
            compacted_room.since_snapshot <= 10,
            "updates since the last compaction: {compacted_room:?}"
        );
    }
);

// ---------------------------------------------------------------------------------------
// Presence

both_backends!(
    a_closed_or_crashed_client_disappears_at_once,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let base = server.base_url();
        let (olive, _) = account(&base, "olive").await;
        let (eddie, _) = account(&base, "eddie").await;
        let doc = create_doc(&olive, "Presence").await;
        share(&olive, &doc.id, "eddie", Role::Editor)
            .await
            .expect::<Doc>(200);

        let mut a = connect(&olive, &doc.id).await;
        let mut b = connect(&eddie, &doc.id).await;
        a.insert(0, "Hello, presence\n").await;
        a.sync().await;
        b.sync().await;
        let state = cursor_state(
            "olive",
            "#e06c75",
            Some((a.sticky_json(7), a.sticky_json(15))),
        );
        a.set_awareness(state.clone()).await;
        let a_id = a.client_id();
        b.recv_until("A's awareness state", |b| b.peer(a_id) == Some(&state))
            .await;
        let cursor = &b.peer(a_id).unwrap()["cursor"];
        assert_eq!(b.resolve_sticky(&cursor["anchor"]), Some(7));
        assert_eq!(b.resolve_sticky(&cursor["head"]), Some(15));

        // Someone joining later gets the states the server knows right away.
        let mut c = connect(&eddie, &doc.id).await;
        c.recv_until("A's state for a newcomer", |c| c.peer(a_id) == Some(&state))
            .await;

        // A clean close: A is removed at once (long before any timeout).
        a.close().await;
        b.recv_until("A's removal after its close", |b| b.saw_removed(a_id))
            .await;
        assert_eq!(b.peer(a_id), None);
        c.recv_until("A's removal, for C", |c| c.saw_removed(a_id))
            .await;

        // A crash: the TCP connection goes away without a close frame.
        let mut d = connect(&olive, &doc.id).await;
        let d_state = cursor_state("olive", "#98c379", None);
        d.set_awareness(d_state.clone()).await;
        let d_id = d.client_id();
        b.recv_until("D's awareness state", |b| b.peer(d_id) == Some(&d_state))
            .await;
        d.crash();
        b.recv_until("D's removal after its crash", |b| b.saw_removed(d_id))
            .await;
        assert_eq!(b.peers(), vec![]);
    }
);

both_backends!(
    a_frozen_client_disappears_after_the_timeout,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |config| {
            config.heartbeat = Duration::from_millis(100);
            config.client_timeout = Duration::from_millis(1_000);
        })
        .await;
        let (olive, _) = account(&server.base_url(), "olive").await;
        let doc = create_doc(&olive, "Frozen").await;
        let mut a = connect(&olive, &doc.id).await;
        let mut b = connect(&olive, &doc.id).await;
        let state = cursor_state("olive", "#61afef", None);
        a.set_awareness(state.clone()).await;
        let a_id = a.client_id();
        b.recv_until("A's awareness state", |b| b.peer(a_id) == Some(&state))
            .await;

        // A stops answering pings with its connection open; B keeps reading (and so
        // answering its own pings).
        let frozen = a.freeze();
        let started = Instant::now();
        b.recv_until("the frozen client's removal", |b| b.saw_removed(a_id))
            .await;
        println!("removed after {:?}", started.elapsed());
        assert!(b.is_connected());
        b.sync().await;
        drop(frozen);
    }
);

both_backends!(
    an_awareness_state_not_renewed_expires,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |config| {
            config.doc_awareness_timeout = Duration::from_millis(1_000);
        })
        .await;
        let (olive, _) = account(&server.base_url(), "olive").await;
        let doc = create_doc(&olive, "Stale").await;
        let mut a = connect(&olive, &doc.id).await;
        let mut b = connect(&olive, &doc.id).await;
        let state = cursor_state("olive", "#c678dd", None);
        a.set_awareness(state.clone()).await;
        let a_id = a.client_id();
        b.recv_until("A's awareness state", |b| b.peer(a_id) == Some(&state))
            .await;
        // The server's clock (which only the test moves) passes the timeout.
        server.clock.advance(1_500);
        b.recv_until("A's stale state to be removed", |b| b.saw_removed(a_id))
            .await;
        // A is still connected; renewing brings it back.
        a.sync().await;
        a.set_awareness(state.clone()).await;
        b.recv_until("A's renewed state", |b| b.peer(a_id) == Some(&state))
            .await;
    }
);

// ---------------------------------------------------------------------------------------
// Versions and deletion

both_backends!(
    versions_are_saved_viewed_and_restored,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let base = server.base_url();
        let (olive, _) = account(&base, "olive").await;
        let (eddie, _) = account(&base, "eddie").await;
        let doc = create_doc(&olive, "History").await;
        share(&olive, &doc.id, "eddie", Role::Editor)
            .await
            .expect::<Doc>(200);
        let versions_path = format!("/api/docs/{}/versions", doc.id);

        let mut a = connect(&olive, &doc.id).await;
        let mut b = connect(&eddie, &doc.id).await;
        a.insert(0, "Plan\nFirst draft\n").await;
        a.format(4, 1, attrs(schema::HEADER, Any::Number(Number::Int(1))))
            .await;
        a.format(5, 5, attrs(schema::BOLD, Any::Bool(true))).await;
        a.sync().await;
        let v1_blocks = a.blocks();

        server.clock.advance(1_000);
        let v1: Version = olive
            .post_json(
                &versions_path,
                &CreateVersion {
                    name: "v1".to_owned(),
                },
            )
            .await
            .expect(201);
        assert_eq!(v1.kind, VersionKind::Named);
        assert_eq!(v1.name.as_deref(), Some("v1"));
        assert_eq!(v1.doc_id, doc.id);
        assert_eq!(v1.created_by.as_deref(), Some("olive"));
        assert!(v1.preview.contains("First draft"), "{v1:?}");

        b.sync().await;
        b.insert(b.len(), "Second part\n").await;
        b.sync().await;
        let edited = b.text();
        assert_eq!(edited, "Plan\nFirst draft\nSecond part\n");

        let listed: VersionList = olive.get(&versions_path).await.expect(200);
        let named: Vec<&Version> = listed
            .versions
            .iter()
            .filter(|v| v.kind == VersionKind::Named)
            .collect();
        assert_eq!(named, [&v1]);
        let update = version_update(&olive, &doc.id, &v1.id).await;
        assert_eq!(text_of_update(&update), "Plan\nFirst draft\n");

        // Restore: A (still connected, not syncing) receives it as an ordinary update.
        a.recv_until("B's second part", |a| a.text() == edited)
            .await;
        let received_before = a.received().len();
        server.clock.advance(1_000);
        let restored: Restored = olive
            .post_empty(&format!("{versions_path}/{}/restore", v1.id))
            .await
            .expect(200);
        assert_eq!(restored.before.kind, VersionKind::BeforeRestore);
        a.recv_until("the restored content", |a| {
            a.text() == "Plan\nFirst draft\n"
        })
        .await;
        let frames = &a.received()[received_before..];
        assert!(
            frames.contains(&Received::Update) && !frames.contains(&Received::Step2),
            "an ordinary update, not a sync answer: {frames:?}"
        );
        assert_eq!(a.blocks(), v1_blocks, "headings and bold come back");
        b.recv_until("the restored content", |b| {
            b.text() == "Plan\nFirst draft\n"
        })
        .await;

        // The state before the restore is a version too, and the list is newest first.
        let listed: VersionList = olive.get(&versions_path).await.expect(200);
        assert_eq!(listed.versions[0], restored.before);
        assert!(listed.versions.contains(&v1));
        let created: Vec<i64> = listed.versions.iter().map(|v| v.created_ms).collect();
        let mut newest_first = created.clone();
        newest_first.sort_by(|x, y| y.cmp(x));
        assert_eq!(created, newest_first);
        let before = version_update(&olive, &doc.id, &restored.before.id).await;
        assert_eq!(text_of_update(&before), edited);

        // Editors restore; viewers read the history but change nothing.
        let (vera, _) = account(&base, "vera").await;
        share(&olive, &doc.id, "vera", Role::Viewer)
            .await
            .expect::<Doc>(200);
        let as_viewer: VersionList = vera.get(&versions_path).await.expect(200);
        assert_eq!(as_viewer.versions.len(), listed.versions.len());
        vera.post_empty(&format!("{versions_path}/{}/restore", v1.id))
            .await
            .assert_error(403, "read_only");
        let again: Restored = eddie
            .post_empty(&format!("{versions_path}/{}/restore", restored.before.id))
            .await
            .expect(200);
        assert_eq!(again.before.kind, VersionKind::BeforeRestore);
        a.recv_until("the second restore", |a| a.text() == edited)
            .await;
        let fresh = connect(&olive, &doc.id).await;
        assert_eq!(fresh.text(), edited);
    }
);

both_backends!(
    deleting_a_document_closes_its_connections,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let base = server.base_url();
        let (olive, _) = account(&base, "olive").await;
        let (eddie, _) = account(&base, "eddie").await;
        let doc = create_doc(&olive, "Doomed").await;
        let keep = create_doc(&olive, "Kept").await;
        share(&olive, &doc.id, "eddie", Role::Editor)
            .await
            .expect::<Doc>(200);
        let mut a = connect(&olive, &doc.id).await;
        let mut b = connect(&eddie, &doc.id).await;
        let mut other = connect(&olive, &keep.id).await;
        a.insert(0, "soon gone\n").await;
        a.sync().await;

        let deleted = olive.delete(&format!("/api/docs/{}", doc.id)).await;
        assert_eq!(deleted.status.as_u16(), 204, "body: {}", deleted.json);
        for (who, client) in [("the owner", &mut a), ("the editor", &mut b)] {
            let (code, reason) = client.recv_close().await;
            assert_eq!(code, close_code::DELETED, "{who}: reason {reason:?}");
        }
        // Another document's room is untouched.
        other.insert(0, "still here").await;
        other.sync().await;

        let ids: Vec<String> = list(&olive).await.docs.into_iter().map(|d| d.id).collect();
        assert_eq!(ids, [keep.id.as_str()]);
        assert!(list(&eddie).await.docs.is_empty());
        eddie
            .get(&format!("/api/docs/{}", doc.id))
            .await
            .assert_error(404, "doc_not_found");
        let refused = YClient::connect(&olive, &doc.id)
            .await
            .err()
            .expect("a deleted document's upgrade is refused");
        assert_eq!(refused.status, 404, "{refused:?}");
        assert!(room(&olive, &doc.id).await.is_none());
    }
);
