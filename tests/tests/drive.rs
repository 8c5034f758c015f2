//! File sync over HTTP on both backends:
//!
//! - uploads send only the chunks the server lacks, across files and accounts; a
//!   one-byte change sends a chunk or two; every version stays readable;
//! - no edit is lost: a stale base makes a conflicted copy, delete against edit keeps
//!   the edit, rename against edit applies both, a cycle move is refused, names that
//!   clash by case or Unicode form are refused;
//! - hostile input (bad names, wrong hashes, truncated uploads, another account's ids)
//!   gets the error shape and stores nothing half;
//! - shares read-only and read-write; the change feed and its realtime event, also
//!   across two instances on one PostgreSQL;
//! - retention, run by `run_maintenance` under the test clock: versions past the rule
//!   go and the current one stays, a file in the trash keeps its versions until it is
//!   purged, a chunk goes (row and bytes, after its grace period) only once no version
//!   and no upload in progress references it, also while uploads race the passes and
//!   after a crash between a row's deletion and its bytes'; a change feed cursor older
//!   than a purge expires, and an agent offline past it lists again and keeps its edit;
//! - small edits travel small: a manifest as chunk edits of the base version's list and
//!   changed chunks as deltas rebuild the same version as a whole upload; hostile edits
//!   and deltas are refused with nothing stored; the agent sends a one-byte edit so.

use std::collections::HashSet;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use meridian_server::drive::retention::RetentionReport;
use meridian_server::run_maintenance;
use meridian_shared::api::Me;
use meridian_shared::drive::chunking::{chunk_hash, manifest_of, MAX_CHUNK};
use meridian_shared::drive::delta::{edits_between, ChunkEdit};
use meridian_shared::drive::{
    Changes, ChunkRef, CommitOutcome, Committed, NewUpload, Node, NodeKind, NodeList, SharedList,
    UploadStatus, VersionList,
};
use meridian_shared::realtime::{ClientMessage, ServerMessage};
use meridian_tests::both_backends;
use meridian_tests::client::{Client, Realtime};
use meridian_tests::db::TestDatabase;
use meridian_tests::seeded_bytes;
use meridian_tests::server::TestServer;
use serde_json::json;

const PASSWORD: &str = "syncing-files-42";

async fn account(server: &TestServer, username: &str) -> (Client, Me) {
    let client = Client::new(server);
    let me: Me = client.signup(username, PASSWORD).await.expect(201);
    (client, me)
}

/// Uploads `data` as described by `target` (manifest filled in); answers the chunks sent
/// and the commit.
async fn upload(client: &Client, mut target: NewUpload, data: &[u8]) -> (usize, Committed) {
    target.chunks = manifest_of(data);
    let status: UploadStatus = client
        .post_json("/api/drive/uploads", &target)
        .await
        .expect(201);
    let missing: HashSet<&String> = status.missing.iter().collect();
    let mut offset = 0;
    for chunk in &target.chunks {
        let piece = &data[offset..offset + chunk.size as usize];
        offset += chunk.size as usize;
        if missing.contains(&chunk.hash) {
            let reply = put_chunk(client, &status.upload_id, &chunk.hash, piece.to_vec()).await;
            assert_eq!(reply.status.as_u16(), 204, "{}", reply.json);
        }
    }
    let committed: Committed = client
        .post_empty(&format!("/api/drive/uploads/{}/commit", status.upload_id))
        .await
        .expect(200);
    (missing.len(), committed)
}

async fn put_chunk(
    client: &Client,
    upload_id: &str,
    hash: &str,
    data: Vec<u8>,
) -> meridian_tests::client::Reply {
    client
        .send(
            client
                .http()
                .put(client.url(&format!("/api/drive/uploads/{upload_id}/chunks/{hash}")))
                .body(data),
        )
        .await
}

fn new_file(parent_id: Option<&str>, name: &str, device: &str) -> NewUpload {
    NewUpload {
        chunk_edits: None,
        signatures: false,
        node_id: None,
        base_version: None,
        parent_id: parent_id.map(str::to_owned),
        name: Some(name.to_owned()),
        device: device.to_owned(),
        chunks: Vec::new(),
    }
}

fn new_version(node_id: &str, base: Option<&str>, device: &str) -> NewUpload {
    NewUpload {
        chunk_edits: None,
        signatures: false,
        node_id: Some(node_id.to_owned()),
        base_version: base.map(str::to_owned),
        parent_id: None,
        name: None,
        device: device.to_owned(),
        chunks: Vec::new(),
    }
}

async fn download(client: &Client, path: &str) -> Vec<u8> {
    let response = client.http().get(client.url(path)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "{path}");
    response.bytes().await.unwrap().to_vec()
}

async fn folder(client: &Client, parent_id: Option<&str>, name: &str) -> Node {
    client
        .post_json(
            "/api/drive/folders",
            &json!({"parent_id": parent_id, "name": name}),
        )
        .await
        .expect(201)
}

async fn children(client: &Client, parent_id: Option<&str>) -> Vec<Node> {
    let path = match parent_id {
        Some(id) => format!("/api/drive/children?parent_id={id}"),
        None => "/api/drive/children".to_owned(),
    };
    client.get(&path).await.expect::<NodeList>(200).nodes
}

/// The scale: a 1 GB file, one byte changed, sends a handful of chunks (the
/// upload protocol is the same on both backends, which `only_missing_chunks_travel`
/// covers at 3 MB; this runs once, on SQLite, to bound the time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_byte_change_in_a_gigabyte_sends_a_handful_of_chunks() {
    let db = TestDatabase::create(meridian_tests::db::Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let (alice, _) = account(&server, "alice").await;
    let mut data = seeded_bytes(1 << 30, 7);
    let (sent, first) = upload(&alice, new_file(None, "disk.img", "laptop"), &data).await;
    assert_eq!(first.node.size, 1 << 30);
    println!("1 GB: {sent} chunks uploaded");
    data[(1 << 29) + 12_345] ^= 0x40;
    let (sent, second) = upload(
        &alice,
        new_version(&first.node.id, first.node.version_id.as_deref(), "laptop"),
        &data,
    )
    .await;
    assert_eq!(second.outcome, CommitOutcome::Updated);
    assert!(
        (1..=3).contains(&sent),
        "{sent} chunks sent for one byte of 1 GB"
    );
    assert_eq!(second.node.size, 1 << 30);
}

both_backends!(only_missing_chunks_travel, |db: TestDatabase| async move {
    let server = TestServer::start(&db).await;
    let (alice, _) = account(&server, "alice").await;
    let data = seeded_bytes(3 * 1024 * 1024, 1);
    let chunks = manifest_of(&data);
    let (sent, first) = upload(&alice, new_file(None, "big.bin", "laptop"), &data).await;
    assert_eq!(first.outcome, CommitOutcome::Created);
    assert_eq!(sent, chunks.len());
    assert_eq!(first.node.size, data.len() as u64);
    assert_eq!(
        download(
            &alice,
            &format!("/api/drive/nodes/{}/content", first.node.id)
        )
        .await,
        data
    );

    // The same content elsewhere, even by another account: nothing travels.
    let (bob, _) = account(&server, "bob").await;
    let (sent, copy) = upload(&bob, new_file(None, "same.bin", "desktop"), &data).await;
    assert_eq!((sent, copy.outcome), (0, CommitOutcome::Created));
    assert_eq!(
        download(&bob, &format!("/api/drive/nodes/{}/content", copy.node.id)).await,
        data
    );

    // One byte changed: a chunk or two.
    let mut edited = data.clone();
    edited[1_500_000] ^= 1;
    let (sent, second) = upload(
        &alice,
        new_version(&first.node.id, first.node.version_id.as_deref(), "laptop"),
        &edited,
    )
    .await;
    assert_eq!(second.outcome, CommitOutcome::Updated);
    assert!((1..=2).contains(&sent), "{sent} chunks sent for one byte");
    let versions: VersionList = alice
        .get(&format!("/api/drive/nodes/{}/versions", first.node.id))
        .await
        .expect(200);
    assert_eq!(versions.versions.len(), 2);
    assert_eq!(versions.versions[1].id, first.version.id);
    assert_eq!(
        download(
            &alice,
            &format!("/api/drive/versions/{}/content", first.version.id)
        )
        .await,
        data,
        "every version stays readable"
    );
    assert_eq!(
        download(
            &alice,
            &format!("/api/drive/nodes/{}/content", first.node.id)
        )
        .await,
        edited
    );

    // Restoring the first version is a new change; both stay in history.
    let restored: Node = alice
        .post_empty(&format!("/api/drive/versions/{}/restore", first.version.id))
        .await
        .expect(200);
    assert_eq!(restored.version_id, Some(first.version.id.clone()));

    // An empty file has no chunks.
    let (sent, empty) = upload(&alice, new_file(None, "empty.txt", "laptop"), b"").await;
    assert_eq!((sent, empty.node.size), (0, 0));
    assert!(download(
        &alice,
        &format!("/api/drive/nodes/{}/content", empty.node.id)
    )
    .await
    .is_empty());

    // Committing again answers the same, and changes nothing.
    let upload_again: UploadStatus = alice
        .post_json(
            "/api/drive/uploads",
            &NewUpload {
                chunk_edits: None,
                signatures: false,
                chunks: chunks.clone(),
                ..new_file(None, "x.bin", "laptop")
            },
        )
        .await
        .expect(201);
    let once: Committed = alice
        .post_empty(&format!(
            "/api/drive/uploads/{}/commit",
            upload_again.upload_id
        ))
        .await
        .expect(200);
    let twice: Committed = alice
        .post_empty(&format!(
            "/api/drive/uploads/{}/commit",
            upload_again.upload_id
        ))
        .await
        .expect(200);
    assert_eq!(once, twice);
});

both_backends!(no_edit_is_lost, |db: TestDatabase| async move {
    let server = TestServer::start(&db).await;
    let (alice, _) = account(&server, "alice").await;
    let (_, v1) = upload(&alice, new_file(None, "notes.txt", "laptop"), b"one").await;
    let id = v1.node.id.clone();
    let base = v1.version.id.clone();

    // Two devices edit the same base: the first wins the name, the second is a copy.
    let (_, laptop) = upload(
        &alice,
        new_version(&id, Some(&base), "laptop"),
        b"laptop edit",
    )
    .await;
    assert_eq!(laptop.outcome, CommitOutcome::Updated);
    let (_, phone) = upload(
        &alice,
        new_version(&id, Some(&base), "phone"),
        b"phone edit",
    )
    .await;
    assert_eq!(phone.outcome, CommitOutcome::ConflictCopy);
    assert_ne!(phone.node.id, id);
    assert!(
        phone
            .node
            .name
            .starts_with("notes (conflicted copy, phone, ")
            && phone.node.name.ends_with(").txt"),
        "{}",
        phone.node.name
    );
    assert_eq!(
        download(&alice, &format!("/api/drive/nodes/{id}/content")).await,
        b"laptop edit"
    );
    assert_eq!(
        download(
            &alice,
            &format!("/api/drive/nodes/{}/content", phone.node.id)
        )
        .await,
        b"phone edit"
    );

    // Delete against edit: the edit survives.
    let current = laptop.version.id.clone();
    assert_eq!(
        alice
            .delete(&format!("/api/drive/nodes/{id}"))
            .await
            .status
            .as_u16(),
        204
    );
    let (_, revived) = upload(
        &alice,
        new_version(&id, Some(&current), "phone"),
        b"edited while deleted",
    )
    .await;
    assert_eq!(revived.outcome, CommitOutcome::Restored);
    assert!(!revived.node.deleted);
    assert_eq!(
        download(&alice, &format!("/api/drive/nodes/{id}/content")).await,
        b"edited while deleted"
    );

    // Rename against edit: both apply (ids, not paths).
    let docs = folder(&alice, None, "Docs").await;
    let moved: Node = alice
        .send(
            alice
                .http()
                .patch(alice.url(&format!("/api/drive/nodes/{id}")))
                .json(&json!({"parent_id": docs.id, "name": "renamed.txt"})),
        )
        .await
        .expect(200);
    assert_eq!(moved.parent_id.as_deref(), Some(docs.id.as_str()));
    let (_, edited) = upload(
        &alice,
        new_version(&id, Some(&revived.version.id), "laptop"),
        b"edit after rename",
    )
    .await;
    assert_eq!(edited.outcome, CommitOutcome::Updated);
    assert_eq!(
        (edited.node.name.as_str(), edited.node.parent_id.as_deref()),
        ("renamed.txt", Some(docs.id.as_str()))
    );

    // A move that would make a cycle is refused.
    let inner = folder(&alice, Some(&docs.id), "Inner").await;
    for target in [&inner.id, &docs.id] {
        alice
            .send(
                alice
                    .http()
                    .patch(alice.url(&format!("/api/drive/nodes/{}", docs.id)))
                    .json(&json!({"parent_id": target, "name": "Docs"})),
            )
            .await
            .assert_error(409, "cycle");
    }

    // Names that clash by case or Unicode normalisation: refused for explicit changes,
    // a conflicted copy for a file created on two devices; same content is one file.
    alice
        .post_json(
            "/api/drive/folders",
            &json!({"parent_id": docs.id, "name": "RENAMED.TXT"}),
        )
        .await
        .assert_error(409, "name_taken");
    let cafe = folder(&alice, None, "Caf\u{e9}").await;
    alice
        .post_json("/api/drive/folders", &json!({"name": "Cafe\u{301}"}))
        .await
        .assert_error(409, "name_taken");
    assert_eq!(cafe.name, "Caf\u{e9}");
    let (_, same) = upload(
        &alice,
        new_file(Some(&docs.id), "Renamed.txt", "tablet"),
        b"edit after rename",
    )
    .await;
    assert_eq!(
        (same.outcome, same.node.id.as_str()),
        (CommitOutcome::Unchanged, id.as_str())
    );
    let (_, other) = upload(
        &alice,
        new_file(Some(&docs.id), "Renamed.txt", "tablet"),
        b"other content",
    )
    .await;
    assert_eq!(other.outcome, CommitOutcome::ConflictCopy);
    assert!(
        other
            .node
            .name
            .starts_with("Renamed (conflicted copy, tablet, "),
        "{}",
        other.node.name
    );

    // Deleting a folder deletes what is in it; restoring brings it all back.
    assert_eq!(
        alice
            .delete(&format!("/api/drive/nodes/{}", docs.id))
            .await
            .status
            .as_u16(),
        204
    );
    assert!(children(&alice, Some(&docs.id)).await.is_empty());
    let back: Node = alice
        .post_empty(&format!("/api/drive/nodes/{}/restore", docs.id))
        .await
        .expect(200);
    assert!(!back.deleted);
    let names: HashSet<String> = children(&alice, Some(&docs.id))
        .await
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert!(
        names.contains("renamed.txt") && names.contains("Inner"),
        "{names:?}"
    );
});

both_backends!(
    hostile_input_is_refused_whole,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let guest = Client::new(&server);
        guest
            .get("/api/drive/changes")
            .await
            .assert_error(401, "sign_in_required");
        let (alice, _) = account(&server, "alice").await;
        for bad in [
            "../etc",
            "a/b",
            "..",
            "CON",
            "nul.txt",
            "x:y",
            "trailing.",
            &"n".repeat(300),
            ".meridian-sync",
        ] {
            alice
                .post_json("/api/drive/folders", &json!({"name": bad}))
                .await
                .assert_error(422, "invalid_name");
            alice
                .post_json("/api/drive/uploads", &new_file(None, bad, "laptop"))
                .await
                .assert_error(422, "invalid_name");
        }
        let bad_manifest = NewUpload {
            chunk_edits: None,
            signatures: false,
            chunks: vec![meridian_shared::drive::ChunkRef {
                hash: "../../x".into(),
                size: 3,
            }],
            ..new_file(None, "a.txt", "laptop")
        };
        alice
            .post_json("/api/drive/uploads", &bad_manifest)
            .await
            .assert_error(422, "invalid_manifest");
        let huge = NewUpload {
            chunk_edits: None,
            signatures: false,
            chunks: vec![meridian_shared::drive::ChunkRef {
                hash: chunk_hash(b"x"),
                size: MAX_CHUNK as u64 + 1,
            }],
            ..new_file(None, "a.txt", "laptop")
        };
        alice
            .post_json("/api/drive/uploads", &huge)
            .await
            .assert_error(422, "invalid_manifest");
        alice
            .post_json("/api/drive/uploads", &new_file(None, "a.txt", ""))
            .await
            .assert_error(422, "invalid_device");

        // A truncated upload: one chunk of two sent, then a commit: refused, nothing stored.
        let data = seeded_bytes(600 * 1024, 9);
        let target = NewUpload {
            chunk_edits: None,
            signatures: false,
            chunks: manifest_of(&data),
            ..new_file(None, "half.bin", "laptop")
        };
        assert!(target.chunks.len() >= 2);
        let status: UploadStatus = alice
            .post_json("/api/drive/uploads", &target)
            .await
            .expect(201);
        let first = &target.chunks[0];
        let piece = data[..first.size as usize].to_vec();
        // Wrong bytes for a hash, a hash not in the manifest, a chunk too big.
        let mut wrong = piece.clone();
        wrong[0] ^= 1;
        put_chunk(&alice, &status.upload_id, &first.hash, wrong)
            .await
            .assert_error(400, "hash_mismatch");
        put_chunk(
            &alice,
            &status.upload_id,
            &chunk_hash(b"other"),
            b"other".to_vec(),
        )
        .await
        .assert_error(422, "not_in_upload");
        put_chunk(&alice, &status.upload_id, "..%2F..%2Fescape", b"x".to_vec())
            .await
            .assert_error(422, "not_in_upload");
        put_chunk(
            &alice,
            &status.upload_id,
            &first.hash,
            vec![0; MAX_CHUNK + 1],
        )
        .await
        .assert_error(413, "chunk_too_large");
        assert_eq!(
            put_chunk(&alice, &status.upload_id, &first.hash, piece)
                .await
                .status
                .as_u16(),
            204
        );
        alice
            .post_empty(&format!("/api/drive/uploads/{}/commit", status.upload_id))
            .await
            .assert_error(409, "missing_chunks");
        assert!(
            children(&alice, None).await.is_empty(),
            "nothing stored half"
        );
        // Resuming: the server names what is still missing.
        let resumed: UploadStatus = alice
            .get(&format!("/api/drive/uploads/{}", status.upload_id))
            .await
            .expect(200);
        assert_eq!(resumed.missing.len(), status.missing.len() - 1);

        // Another account's ids: as if they did not exist.
        let (_, file) = upload(&alice, new_file(None, "private.txt", "laptop"), b"secret").await;
        let (mallory, _) = account(&server, "mallory").await;
        for path in [
            format!("/api/drive/nodes/{}", file.node.id),
            format!("/api/drive/nodes/{}/content", file.node.id),
            format!("/api/drive/nodes/{}/versions", file.node.id),
            format!("/api/drive/children?parent_id={}", file.node.id),
        ] {
            mallory.get(&path).await.assert_error(404, "node_not_found");
        }
        mallory
            .get(&format!("/api/drive/versions/{}/content", file.version.id))
            .await
            .assert_error(404, "version_not_found");
        mallory
            .get(&format!("/api/drive/uploads/{}", status.upload_id))
            .await
            .assert_error(404, "upload_not_found");
        mallory
            .delete(&format!("/api/drive/nodes/{}", file.node.id))
            .await
            .assert_error(404, "node_not_found");
        mallory
            .post_json(
                "/api/drive/uploads",
                &new_version(&file.node.id, Some(&file.version.id), "evil"),
            )
            .await
            .assert_error(404, "node_not_found");
        mallory
            .post_json(
                "/api/drive/folders",
                &json!({"parent_id": file.node.id, "name": "x"}),
            )
            .await
            .assert_error(404, "node_not_found");
        assert_eq!(
            download(
                &alice,
                &format!("/api/drive/nodes/{}/content", file.node.id)
            )
            .await,
            b"secret"
        );
    }
);

both_backends!(shares_and_the_change_feed, |db: TestDatabase| async move {
    let server = TestServer::start(&db).await;
    let (alice, alice_me) = account(&server, "alice").await;
    let (bob, bob_me) = account(&server, "bob").await;
    let alice_id = alice_me.user.unwrap().id;
    let bob_id = bob_me.user.unwrap().id;
    let (mut bob_live, _) = Realtime::connect(&bob).await;
    bob_live
        .send(&ClientMessage::Subscribe {
            topic: format!("user:{bob_id}"),
            since: None,
        })
        .await;
    assert!(matches!(
        bob_live.recv().await,
        ServerMessage::Subscribed { .. }
    ));

    let team = folder(&alice, None, "Team").await;
    let (_, plan) = upload(
        &alice,
        new_file(Some(&team.id), "plan.txt", "laptop"),
        b"v1",
    )
    .await;
    bob.get(&format!("/api/drive/children?parent_id={}", team.id))
        .await
        .assert_error(404, "node_not_found");
    alice
        .post_json(
            &format!("/api/drive/nodes/{}/shares", team.id),
            &json!({"username": "bob", "mode": "read"}),
        )
        .await
        .expect::<serde_json::Value>(200);
    alice
        .post_json(
            &format!("/api/drive/nodes/{}/shares", team.id),
            &json!({"username": "alice", "mode": "read"}),
        )
        .await
        .assert_error(422, "cannot_share_with_owner");
    alice
        .post_json(
            &format!("/api/drive/nodes/{}/shares", team.id),
            &json!({"username": "nobody", "mode": "read"}),
        )
        .await
        .assert_error(404, "unknown_user");
    // Bob hears of it on his user topic.
    loop {
        if let ServerMessage::Event(event) = bob_live.recv().await {
            assert_eq!(event.payload["system"], "drive");
            assert_eq!(event.payload["drive"], alice_id.as_str());
            break;
        }
    }
    let shared: SharedList = bob.get("/api/drive/shared").await.expect(200);
    assert_eq!(shared.folders.len(), 1);
    assert_eq!(shared.folders[0].owner_username, "alice");
    assert_eq!(children(&bob, Some(&team.id)).await.len(), 1);
    assert_eq!(
        download(&bob, &format!("/api/drive/nodes/{}/content", plan.node.id)).await,
        b"v1"
    );
    // Read-only: no changes.
    bob.post_json(
        "/api/drive/uploads",
        &new_version(&plan.node.id, Some(&plan.version.id), "bob"),
    )
    .await
    .assert_error(403, "read_only");
    bob.delete(&format!("/api/drive/nodes/{}", plan.node.id))
        .await
        .assert_error(403, "read_only");
    bob.post_json(
        &format!("/api/drive/nodes/{}/shares", team.id),
        &json!({"username": "bob", "mode": "write"}),
    )
    .await
    .assert_error(403, "owner_only");

    // Read-write: bob's edit lands in alice's drive and her change feed.
    let before: Changes = alice.get("/api/drive/changes").await.expect(200);
    alice
        .post_json(
            &format!("/api/drive/nodes/{}/shares", team.id),
            &json!({"username": "bob", "mode": "write"}),
        )
        .await
        .expect::<serde_json::Value>(200);
    let (_, edit) = upload(
        &bob,
        new_version(&plan.node.id, Some(&plan.version.id), "bob-laptop"),
        b"v2 by bob",
    )
    .await;
    assert_eq!(edit.outcome, CommitOutcome::Updated);
    assert_eq!(edit.node.owner_id, alice_id);
    let after: Changes = alice
        .get(&format!("/api/drive/changes?since={}", before.cursor))
        .await
        .expect(200);
    assert!(after.cursor > before.cursor);
    assert_eq!(
        after
            .nodes
            .iter()
            .map(|n| n.id.as_str())
            .collect::<Vec<_>>(),
        vec![plan.node.id.as_str()]
    );
    assert!(!after.more);
    // Bob's own drive is untouched by it.
    let bobs: Changes = bob.get("/api/drive/changes").await.expect(200);
    assert!(bobs.nodes.is_empty());

    // Deletes are tombstones in the feed.
    alice.delete(&format!("/api/drive/nodes/{}", team.id)).await;
    let gone: Changes = alice
        .get(&format!("/api/drive/changes?since={}", after.cursor))
        .await
        .expect(200);
    assert_eq!(gone.nodes.len(), 2);
    assert!(gone.nodes.iter().all(|n| n.deleted));
    assert!(gone.nodes.iter().any(|n| n.kind == NodeKind::Folder));
    let nothing: Changes = alice
        .get(&format!("/api/drive/changes?since={}", gone.cursor))
        .await
        .expect(200);
    assert!(nothing.nodes.is_empty());
    assert_eq!(nothing.cursor, gone.cursor);

    // Unsharing hides it again.
    assert_eq!(
        alice
            .delete(&format!("/api/drive/nodes/{}/shares/{bob_id}", team.id))
            .await
            .status
            .as_u16(),
        204
    );
    bob.get(&format!("/api/drive/nodes/{}", plan.node.id))
        .await
        .assert_error(404, "node_not_found");
});

/// Two instances on one PostgreSQL: a file committed through one is announced to a
/// realtime connection on the other, and readable there at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_cross_instances() {
    let db = TestDatabase::create(meridian_tests::db::Backend::Postgres).await;
    let a = TestServer::start(&db).await;
    let b = TestServer::start(&db).await;
    let (on_a, me) = account(&a, "alice").await;
    let user_id = me.user.unwrap().id;
    let on_b = on_a.same_browser_at(&b.base_url());
    let (mut live_b, _) = Realtime::connect(&on_b).await;
    live_b
        .send(&ClientMessage::Subscribe {
            topic: format!("user:{user_id}"),
            since: None,
        })
        .await;
    assert!(matches!(
        live_b.recv().await,
        ServerMessage::Subscribed { .. }
    ));
    let (_, file) = upload(&on_a, new_file(None, "both.txt", "laptop"), b"on a").await;
    loop {
        if let ServerMessage::Event(event) = live_b.recv().await {
            assert_eq!(event.payload["system"], "drive");
            break;
        }
    }
    let seen: Changes = on_b.get("/api/drive/changes").await.expect(200);
    assert_eq!(seen.nodes[0].id, file.node.id);
    assert_eq!(
        download(&on_b, &format!("/api/drive/nodes/{}/content", file.node.id)).await,
        b"on a"
    );
}

const HOUR: i64 = 3600 * 1000;
const DAY: i64 = 24 * HOUR;

/// One maintenance pass, as the loop runs it; its drive part.
async fn pass(server: &TestServer) -> RetentionReport {
    run_maintenance(&server.state).await.unwrap().drive
}

/// A chunk's row: absent (`None`), listed (`Some(false)`) or listed and dying.
async fn chunk_row(server: &TestServer, hash: &str) -> Option<bool> {
    let dying: Option<Option<i64>> =
        sqlx::query_scalar("SELECT dying_ms FROM drive_chunks WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&server.state.db.pool)
            .await
            .unwrap();
    dying.map(|d| d.is_some())
}

async fn chunk_bytes(server: &TestServer, hash: &str) -> bool {
    server.state.drive.chunks.get(hash).await.is_ok()
}

fn hashes(data: &[u8]) -> HashSet<String> {
    manifest_of(data).into_iter().map(|c| c.hash).collect()
}

async fn version_ids(client: &Client, node_id: &str) -> Vec<String> {
    let list: VersionList = client
        .get(&format!("/api/drive/nodes/{node_id}/versions"))
        .await
        .expect(200);
    list.versions.into_iter().map(|v| v.id).collect()
}

both_backends!(
    retention_removes_old_versions_and_their_chunks,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |c| c.drive_keep_versions = Some(3)).await;
        let (alice, _) = account(&server, "alice").await;
        // Two versions sharing all but their last chunk.
        let first = seeded_bytes(600 * 1024, 7);
        let mut second = first.clone();
        let len = second.len();
        second[len - 10..].copy_from_slice(b"0123456789");
        let (_, v1) = upload(&alice, new_file(None, "report.txt", "laptop"), &first).await;
        server.clock.advance(DAY);
        let (_, v2) = upload(
            &alice,
            new_version(&v1.node.id, Some(&v1.version.id), "laptop"),
            &second,
        )
        .await;
        assert_eq!(v2.outcome, CommitOutcome::Updated);
        let only_first: Vec<String> = hashes(&first)
            .difference(&hashes(&second))
            .cloned()
            .collect();
        let shared: Vec<String> = hashes(&first)
            .intersection(&hashes(&second))
            .cloned()
            .collect();
        assert!(!only_first.is_empty() && !shared.is_empty());

        // A file edited five times: the count keeps its three newest.
        let (_, note) = upload(&alice, new_file(None, "notes.txt", "laptop"), b"note 0").await;
        let mut notes = vec![note.version.id.clone()];
        for i in 1..5 {
            let base = notes.last().cloned();
            let (_, c) = upload(
                &alice,
                new_version(&note.node.id, base.as_deref(), "laptop"),
                format!("note {i}").as_bytes(),
            )
            .await;
            notes.push(c.version.id);
        }

        // 29 days after its replacement the first version stays; the count applies.
        server.clock.advance(29 * DAY);
        let report = pass(&server).await;
        assert_eq!(report.versions_removed, 2, "{report:?}");
        assert_eq!(report.uploads_expired, 7, "{report:?}");
        let newest: Vec<String> = notes[2..].iter().rev().cloned().collect();
        assert_eq!(version_ids(&alice, &note.node.id).await, newest);
        assert_eq!(
            version_ids(&alice, &v1.node.id).await,
            vec![v2.version.id.clone(), v1.version.id.clone()]
        );

        // 31 days after: it goes, and the notes replaced as long ago; the current
        // versions stay.
        server.clock.advance(2 * DAY);
        let report = pass(&server).await;
        assert_eq!(report.versions_removed, 3, "{report:?}");
        assert_eq!(report.chunks_marked, only_first.len() as u64 + 2);
        assert_eq!(
            report.chunks_deleted, 2,
            "the first two notes' chunks, dying since the last pass"
        );
        assert_eq!(
            version_ids(&alice, &note.node.id).await,
            notes[4..].to_vec()
        );
        assert_eq!(
            version_ids(&alice, &v1.node.id).await,
            vec![v2.version.id.clone()]
        );
        let gone = &v1.version.id;
        for reply in [
            alice.get(&format!("/api/drive/versions/{gone}")).await,
            alice
                .get(&format!("/api/drive/versions/{gone}/content"))
                .await,
            alice
                .post_empty(&format!("/api/drive/versions/{gone}/restore"))
                .await,
        ] {
            reply.assert_error(404, "version_not_found");
        }
        // Its own chunks are dying (still stored), the shared ones are not.
        for hash in &only_first {
            assert_eq!(chunk_row(&server, hash).await, Some(true));
            assert!(chunk_bytes(&server, hash).await);
        }
        for hash in &shared {
            assert_eq!(chunk_row(&server, hash).await, Some(false));
        }

        // After the grace period, row and bytes go; what the kept version uses stays.
        server.clock.advance(HOUR + 1);
        let report = pass(&server).await;
        assert_eq!(
            report.chunks_deleted,
            only_first.len() as u64 + 2,
            "and the next two notes' {report:?}"
        );
        for hash in &only_first {
            assert_eq!(chunk_row(&server, hash).await, None);
            assert!(!chunk_bytes(&server, hash).await);
        }
        for hash in &shared {
            assert_eq!(chunk_row(&server, hash).await, Some(false));
            assert!(chunk_bytes(&server, hash).await);
        }
        assert_eq!(
            download(&alice, &format!("/api/drive/nodes/{}/content", v1.node.id)).await,
            second
        );
        assert_eq!(pass(&server).await, RetentionReport::default());
    }
);

both_backends!(
    uploads_in_progress_keep_their_chunks,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let (alice, _) = account(&server, "alice").await;
        let a = seeded_bytes(300 * 1024, 11);
        let (_, first) = upload(&alice, new_file(None, "a.bin", "laptop"), &a).await;
        upload(
            &alice,
            new_version(&first.node.id, Some(&first.version.id), "laptop"),
            &seeded_bytes(1000, 12),
        )
        .await;
        server.clock.advance(31 * DAY);

        // An upload of the same bytes starts before the pass: nothing is missing, and
        // its manifest keeps the chunks through the pass and the grace period.
        let mut copy = new_file(None, "copy.bin", "phone");
        copy.chunks = manifest_of(&a);
        let status: UploadStatus = alice
            .post_json("/api/drive/uploads", &copy)
            .await
            .expect(201);
        assert!(status.missing.is_empty());
        let report = pass(&server).await;
        assert_eq!(report.versions_removed, 1, "{report:?}");
        server.clock.advance(HOUR + 1);
        assert_eq!(pass(&server).await.chunks_deleted, 0);
        for hash in hashes(&a) {
            assert_eq!(chunk_row(&server, &hash).await, Some(false));
            assert!(chunk_bytes(&server, &hash).await);
        }
        let committed: Committed = alice
            .post_empty(&format!("/api/drive/uploads/{}/commit", status.upload_id))
            .await
            .expect(200);
        assert_eq!(committed.outcome, CommitOutcome::Created);
        assert_eq!(
            download(
                &alice,
                &format!("/api/drive/nodes/{}/content", committed.node.id)
            )
            .await,
            a
        );

        // A dying chunk counts as missing: a commit that did not send it again is
        // refused, and sending it again keeps it.
        let c = seeded_bytes(200 * 1024, 13);
        let (_, c1) = upload(&alice, new_file(None, "c.bin", "laptop"), &c).await;
        upload(
            &alice,
            new_version(&c1.node.id, Some(&c1.version.id), "laptop"),
            &seeded_bytes(1000, 14),
        )
        .await;
        server.clock.advance(31 * DAY);
        let report = pass(&server).await;
        assert_eq!(report.versions_removed, 1, "{report:?}");
        let dying = hashes(&c);
        for hash in &dying {
            assert_eq!(chunk_row(&server, hash).await, Some(true));
        }
        let mut again = new_file(None, "c again.bin", "phone");
        again.chunks = manifest_of(&c);
        let status: UploadStatus = alice
            .post_json("/api/drive/uploads", &again)
            .await
            .expect(201);
        assert_eq!(
            status.missing.iter().cloned().collect::<HashSet<_>>(),
            dying
        );
        alice
            .post_empty(&format!("/api/drive/uploads/{}/commit", status.upload_id))
            .await
            .assert_error(409, "missing_chunks");
        let mut offset = 0;
        for chunk in &again.chunks {
            let piece = c[offset..offset + chunk.size as usize].to_vec();
            offset += chunk.size as usize;
            let reply = put_chunk(&alice, &status.upload_id, &chunk.hash, piece).await;
            assert_eq!(reply.status.as_u16(), 204, "{}", reply.json);
        }
        server.clock.advance(HOUR + 1);
        assert_eq!(pass(&server).await.chunks_deleted, 0);
        let committed: Committed = alice
            .post_empty(&format!("/api/drive/uploads/{}/commit", status.upload_id))
            .await
            .expect(200);
        assert_eq!(
            download(
                &alice,
                &format!("/api/drive/nodes/{}/content", committed.node.id)
            )
            .await,
            c
        );

        // An abandoned upload expires, and the chunks only it had go with it.
        let lost = seeded_bytes(100 * 1024, 15);
        let mut abandoned = new_file(None, "lost.bin", "phone");
        abandoned.chunks = manifest_of(&lost);
        let status: UploadStatus = alice
            .post_json("/api/drive/uploads", &abandoned)
            .await
            .expect(201);
        let mut offset = 0;
        for chunk in &abandoned.chunks {
            let piece = lost[offset..offset + chunk.size as usize].to_vec();
            offset += chunk.size as usize;
            put_chunk(&alice, &status.upload_id, &chunk.hash, piece).await;
        }
        server.clock.advance(7 * DAY + 1);
        assert!(pass(&server).await.uploads_expired >= 1);
        server.clock.advance(HOUR + 1);
        pass(&server).await;
        for hash in hashes(&lost) {
            assert_eq!(chunk_row(&server, &hash).await, None);
            assert!(!chunk_bytes(&server, &hash).await);
        }
        alice
            .get(&format!("/api/drive/uploads/{}", status.upload_id))
            .await
            .assert_error(404, "upload_not_found");
    }
);

both_backends!(
    the_trash_keeps_versions_until_it_is_purged,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let (alice, _) = account(&server, "alice").await;
        let old = folder(&alice, None, "old").await;
        let x = seeded_bytes(100 * 1024, 21);
        let y = seeded_bytes(100 * 1024, 22);
        let (_, v1) = upload(&alice, new_file(Some(&old.id), "x.bin", "laptop"), &x).await;
        server.clock.advance(DAY);
        upload(
            &alice,
            new_version(&v1.node.id, Some(&v1.version.id), "laptop"),
            &y,
        )
        .await;
        server.clock.advance(15 * DAY);
        let before: Changes = alice.get("/api/drive/changes").await.expect(200);
        assert_eq!(
            alice
                .delete(&format!("/api/drive/nodes/{}", old.id))
                .await
                .status
                .as_u16(),
            204
        );

        let after: Changes = alice
            .get(&format!("/api/drive/changes?since={}", before.cursor))
            .await
            .expect(200);
        assert!(after.nodes.iter().all(|n| n.deleted));

        // 20 days in the trash: the first version, replaced 35 days ago, which the rule
        // would remove from a live file, stays with the deleted one.
        server.clock.advance(20 * DAY);
        let report = pass(&server).await;
        assert_eq!((report.versions_removed, report.nodes_purged), (0, 0));
        assert_eq!(version_ids(&alice, &v1.node.id).await.len(), 2);
        assert_eq!(
            download(
                &alice,
                &format!("/api/drive/versions/{}/content", v1.version.id)
            )
            .await,
            x
        );

        // Past 30 days in the trash: purged, the file before its folder.
        server.clock.advance(10 * DAY + 1);
        let report = pass(&server).await;
        assert_eq!(
            (report.nodes_purged, report.versions_removed),
            (2, 2),
            "{report:?}"
        );
        for id in [&old.id, &v1.node.id] {
            alice
                .get(&format!("/api/drive/nodes/{id}"))
                .await
                .assert_error(404, "node_not_found");
        }
        alice
            .get(&format!("/api/drive/versions/{}", v1.version.id))
            .await
            .assert_error(404, "version_not_found");
        let trash: NodeList = alice
            .get("/api/drive/children?include_deleted=true")
            .await
            .expect(200);
        assert!(trash.nodes.is_empty(), "{:?}", trash.nodes);
        // A change feed cursor that has not seen the deletion cannot any more: it must
        // list again; one that has seen it goes on.
        alice
            .get(&format!("/api/drive/changes?since={}", before.cursor))
            .await
            .assert_error(410, "cursor_expired");
        let fresh: Changes = alice.get("/api/drive/changes").await.expect(200);
        assert!(fresh.nodes.is_empty(), "{:?}", fresh.nodes);
        alice
            .get(&format!("/api/drive/changes?since={}", after.cursor))
            .await
            .expect::<Changes>(200);
        server.clock.advance(HOUR + 1);
        let chunks: HashSet<String> = hashes(&x).union(&hashes(&y)).cloned().collect();
        assert_eq!(pass(&server).await.chunks_deleted, chunks.len() as u64);
        for hash in &chunks {
            assert_eq!(chunk_row(&server, hash).await, None);
            assert!(!chunk_bytes(&server, hash).await);
        }
    }
);

both_backends!(
    a_crash_between_row_and_bytes_leaves_a_deletion_the_next_pass_finishes,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let pool = &server.state.db.pool;
        let (alice, _) = account(&server, "alice").await;
        let data = seeded_bytes(300 * 1024, 31);
        let chunks = manifest_of(&data);
        assert!(chunks.len() >= 2);
        let (_, first) = upload(&alice, new_file(None, "d.bin", "laptop"), &data).await;
        upload(
            &alice,
            new_version(&first.node.id, Some(&first.version.id), "laptop"),
            &seeded_bytes(1000, 32),
        )
        .await;
        server.clock.advance(31 * DAY);
        assert_eq!(pass(&server).await.versions_removed, 1);

        // What a crash after the sweep's commit leaves: rows gone, hashes queued, bytes
        // still stored.
        for chunk in &chunks {
            sqlx::query("DELETE FROM drive_chunks WHERE hash = $1")
                .bind(&chunk.hash)
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("INSERT INTO drive_chunk_deletions (hash, since_ms) VALUES ($1, 0)")
                .bind(&chunk.hash)
                .execute(pool)
                .await
                .unwrap();
            assert!(chunk_bytes(&server, &chunk.hash).await);
        }
        // Meanwhile an upload sends the first chunk again: it takes its deletion over.
        let mut again = new_file(None, "again.bin", "phone");
        again.chunks = vec![chunks[0].clone()];
        let status: UploadStatus = alice
            .post_json("/api/drive/uploads", &again)
            .await
            .expect(201);
        assert_eq!(status.missing, vec![chunks[0].hash.clone()]);
        let piece = data[..chunks[0].size as usize].to_vec();
        let reply = put_chunk(&alice, &status.upload_id, &chunks[0].hash, piece.clone()).await;
        assert_eq!(reply.status.as_u16(), 204, "{}", reply.json);

        // The next pass deletes the other queued bytes, and not the ones sent again.
        let report = pass(&server).await;
        assert_eq!(report.chunks_deleted, chunks.len() as u64 - 1, "{report:?}");
        assert_eq!(chunk_row(&server, &chunks[0].hash).await, Some(false));
        assert!(chunk_bytes(&server, &chunks[0].hash).await);
        for chunk in &chunks[1..] {
            assert_eq!(chunk_row(&server, &chunk.hash).await, None);
            assert!(!chunk_bytes(&server, &chunk.hash).await);
        }
        let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM drive_chunk_deletions")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(queued, 0);
        let committed: Committed = alice
            .post_empty(&format!("/api/drive/uploads/{}/commit", status.upload_id))
            .await
            .expect(200);
        assert_eq!(
            download(
                &alice,
                &format!("/api/drive/nodes/{}/content", committed.node.id)
            )
            .await,
            piece
        );
    }
);

/// Uploads `data` (a new file named `name`, or a new version of `node`) until a commit
/// succeeds: collection racing it may expire the upload (404) or collect a chunk it
/// was told of (409 `missing_chunks`); both are retried from the start.
async fn upload_through_collection(
    client: &Client,
    node: Option<&Committed>,
    name: &str,
    data: &[u8],
) -> Committed {
    let pieces: std::collections::HashMap<String, Vec<u8>> = {
        let mut offset = 0;
        manifest_of(data)
            .into_iter()
            .map(|chunk| {
                let piece = data[offset..offset + chunk.size as usize].to_vec();
                offset += chunk.size as usize;
                (chunk.hash, piece)
            })
            .collect()
    };
    'attempt: for _ in 0..200 {
        let mut target = match node {
            Some(c) => new_version(&c.node.id, Some(&c.version.id), "racer"),
            None => new_file(None, name, "racer"),
        };
        target.chunks = manifest_of(data);
        let status: UploadStatus = client
            .post_json("/api/drive/uploads", &target)
            .await
            .expect(201);
        for hash in &status.missing {
            let reply = put_chunk(client, &status.upload_id, hash, pieces[hash].clone()).await;
            match reply.status.as_u16() {
                204 => {}
                404 => continue 'attempt,
                other => panic!("PUT answered {other}: {}", reply.json),
            }
        }
        let reply = client
            .post_empty(&format!("/api/drive/uploads/{}/commit", status.upload_id))
            .await;
        match reply.status.as_u16() {
            200 => return reply.parse(),
            404 | 409 => continue,
            other => panic!("commit answered {other}: {}", reply.json),
        }
    }
    panic!("no commit of {name} in 200 attempts");
}

both_backends!(
    collection_racing_uploads_leaves_no_row_without_bytes,
    |db: TestDatabase| async move {
        // Every replaced version goes at the next pass, uploads expire after two
        // passes, dying chunks go at the pass after they were marked: the same chunks
        // are freed and used again while uploads run.
        let server = TestServer::start_with(&db, |c| {
            c.drive_keep_versions = Some(1);
            c.drive_keep_for = std::time::Duration::ZERO;
            c.drive_upload_expiry = std::time::Duration::from_secs(2 * 3600);
        })
        .await;
        let pool = &server.state.db.pool;
        let contents: Vec<Vec<u8>> = (0..24)
            .map(|i| seeded_bytes(60 * 1024 + i * 10 * 1024, 100 + i as u64))
            .collect();
        // Each racer commits about once per pass (a round waits for as many passes), so
        // that some contents fall out of use while the others are uploaded again.
        const RACERS: usize = 4;
        const ROUNDS: usize = 30;
        let done = Arc::new(AtomicUsize::new(0));
        let (passes, passed) = tokio::sync::watch::channel(0usize);
        // Rounds finished, by all racers together.
        let (finished, mut rounds_finished) = tokio::sync::watch::channel(0usize);
        let finished = Arc::new(finished);
        let mut racers = Vec::new();
        for user in 0..RACERS {
            let (client, _) = account(&server, &format!("racer{user}")).await;
            let contents = contents.clone();
            let (done, mut passed, finished) = (done.clone(), passed.clone(), finished.clone());
            racers.push(tokio::spawn(async move {
                let mut last: Option<Committed> = None;
                let mut data = Vec::new();
                for round in 0..ROUNDS {
                    passed.wait_for(|&p| p >= round).await.unwrap();
                    data = contents[(user * 6 + round) % contents.len()].clone();
                    last = Some(
                        upload_through_collection(&client, last.as_ref(), "file.bin", &data).await,
                    );
                    finished.send_modify(|f| *f += 1);
                }
                done.fetch_add(1, SeqCst);
                (client, last.unwrap(), data)
            }));
        }
        let mut collected = 0;
        let mut pass_count = 0;
        while done.load(SeqCst) < RACERS {
            server.clock.advance(HOUR + 1);
            collected += pass(&server).await.chunks_deleted;
            pass_count += 1;
            passes.send_replace(pass_count);
            // Before the next pass, every racer finishes the rounds this pass let it
            // start but one: a pass still runs during each upload, but an upload never
            // outlives its expiry (two passes), however slow the machine.
            let target = RACERS * pass_count.min(ROUNDS);
            rounds_finished
                .wait_for(|&f| f >= target)
                .await
                .expect("the racers hold the sender");
        }
        let mut files = Vec::new();
        for racer in racers {
            files.push(racer.await.unwrap());
        }

        // Settle: the uploads expire, what they alone held is collected.
        server.clock.advance(6 * HOUR);
        pass(&server).await;
        server.clock.advance(HOUR + 1);
        pass(&server).await;
        let listed: Vec<String> = sqlx::query_scalar("SELECT hash FROM drive_chunks")
            .fetch_all(pool)
            .await
            .unwrap();
        for hash in &listed {
            assert!(
                chunk_bytes(&server, hash).await,
                "{hash} listed without bytes"
            );
        }
        let unlisted: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM drive_version_chunks v \
             LEFT JOIN drive_chunks c ON c.hash = v.hash WHERE c.hash IS NULL",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(unlisted, 0, "a version's chunk is not listed");
        let used: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT hash) FROM drive_version_chunks")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(listed.len() as i64, used, "only what versions use is left");
        for (client, committed, data) in files {
            assert_eq!(version_ids(&client, &committed.node.id).await.len(), 1);
            assert_eq!(
                download(
                    &client,
                    &format!("/api/drive/nodes/{}/content", committed.node.id)
                )
                .await,
                data
            );
        }
        eprintln!(
            "{} passes raced 120 commits, collecting {collected} chunks",
            *passes.borrow()
        );
        assert!(collected > 0, "collection raced the uploads");
    }
);

/// An agent in this process (as the simulation in `drive_agent.rs` runs them).
async fn syncer(
    server: &TestServer,
    dir: &std::path::Path,
    device: &str,
) -> meridian_server::drive::agent::sync::Syncer {
    use meridian_server::drive::agent::{api::Api, state::AgentState};
    let url = server.base_url();
    let api = Api::sign_in(&url, "alice", PASSWORD).await.unwrap();
    let root = dir.canonicalize().unwrap();
    let state = AgentState::load(&root, &url, "alice").unwrap();
    meridian_server::drive::agent::sync::Syncer::new(api, root, device.to_owned(), state)
}

both_backends!(
    an_agent_offline_past_a_purge_lists_again_and_keeps_its_edit,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let (alice, _) = account(&server, "alice").await;
        let (laptop_dir, phone_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut laptop = syncer(&server, laptop_dir.path(), "laptop").await;
        let mut phone = syncer(&server, phone_dir.path(), "phone").await;
        for name in ["keep.txt", "gone.txt", "edited.txt"] {
            std::fs::write(laptop_dir.path().join(name), name).unwrap();
        }
        laptop.pass().await.unwrap();
        phone.pass().await.unwrap();
        assert!(phone_dir.path().join("gone.txt").exists());

        // The laptop deletes two files; the phone, offline, edits one of them; both stay
        // in the trash past its 30 days and are purged.
        std::fs::remove_file(laptop_dir.path().join("gone.txt")).unwrap();
        std::fs::remove_file(laptop_dir.path().join("edited.txt")).unwrap();
        laptop.pass().await.unwrap();
        std::fs::write(phone_dir.path().join("edited.txt"), "edited offline").unwrap();
        server.clock.advance(31 * DAY);
        assert_eq!(pass(&server).await.nodes_purged, 2);

        // Back online, the phone's cursor has expired: it lists again, removes the file it
        // had not changed, and uploads its edit as a new file.
        for _ in 0..3 {
            phone.pass().await.unwrap();
        }
        assert!(!phone_dir.path().join("gone.txt").exists());
        assert_eq!(
            std::fs::read(phone_dir.path().join("edited.txt")).unwrap(),
            b"edited offline"
        );
        let mut names: Vec<String> = children(&alice, None)
            .await
            .into_iter()
            .map(|n| n.name)
            .collect();
        names.sort();
        assert_eq!(names, ["edited.txt", "keep.txt"]);
        laptop.pass().await.unwrap();
        assert_eq!(
            std::fs::read(laptop_dir.path().join("edited.txt")).unwrap(),
            b"edited offline"
        );
    }
);

async fn put_delta(
    client: &Client,
    upload_id: &str,
    hash: &str,
    base: &str,
    delta: Vec<u8>,
) -> meridian_tests::client::Reply {
    client
        .send(
            client
                .http()
                .put(client.url(&format!(
                    "/api/drive/uploads/{upload_id}/deltas/{hash}?base={base}"
                )))
                .body(delta),
        )
        .await
}

/// A new version of `file` made of `data`, sent as chunk edits of `base` with deltas
/// where the server offers bases: answers the upload's status and the commit.
async fn upload_as_edit(
    client: &Client,
    file: &Committed,
    base: &[ChunkRef],
    data: &[u8],
) -> (UploadStatus, Committed) {
    let chunks = manifest_of(data);
    let target = NewUpload {
        chunk_edits: Some(edits_between(base, &chunks)),
        signatures: true,
        ..new_version(&file.node.id, Some(&file.version.id), "laptop")
    };
    let status: UploadStatus = client
        .post_json("/api/drive/uploads", &target)
        .await
        .expect(201);
    let mut offset = 0;
    for chunk in &chunks {
        let piece = &data[offset..offset + chunk.size as usize];
        offset += chunk.size as usize;
        if !status.missing.contains(&chunk.hash) {
            continue;
        }
        let offer = status.bases.iter().find(|b| b.hash == chunk.hash);
        let reply = match offer.and_then(|b| Some((b, b.delta_of(piece)?))) {
            Some((offer, delta)) => {
                put_delta(client, &status.upload_id, &chunk.hash, &offer.base, delta).await
            }
            None => put_chunk(client, &status.upload_id, &chunk.hash, piece.to_vec()).await,
        };
        assert_eq!(reply.status.as_u16(), 204, "{}", reply.json);
    }
    let committed: Committed = client
        .post_empty(&format!("/api/drive/uploads/{}/commit", status.upload_id))
        .await
        .expect(200);
    (status, committed)
}

both_backends!(
    small_edits_travel_as_chunk_edits_and_deltas,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let (alice, _) = account(&server, "alice").await;
        let data = seeded_bytes(3 * 1024 * 1024, 21);
        let base = manifest_of(&data);
        let (_, first) = upload(&alice, new_file(None, "big.bin", "laptop"), &data).await;

        // One byte changed, one inserted further on, a tail appended.
        let mut edited = data.clone();
        edited[1_000_000] ^= 1;
        edited.insert(2_000_000, 7);
        edited.extend_from_slice(&seeded_bytes(5000, 22));
        let (status, second) = upload_as_edit(&alice, &first, &base, &edited).await;
        assert_eq!(second.outcome, CommitOutcome::Updated);
        assert!(
            !status.missing.is_empty() && status.missing.len() <= 6,
            "{} chunks missing",
            status.missing.len()
        );
        assert!(!status.bases.is_empty(), "no delta bases offered");
        for offer in &status.bases {
            assert!(base.iter().any(|c| c.hash == offer.base));
        }
        let content = download(
            &alice,
            &format!("/api/drive/versions/{}/content", second.version.id),
        )
        .await;
        assert!(content == edited, "the rebuilt version differs");

        // The same content uploaded whole as a new file: the same version content.
        let (_, whole) = upload(&alice, new_file(None, "whole.bin", "laptop"), &edited).await;
        assert_eq!(whole.version.content_id, second.version.content_id);
        assert_eq!(whole.version.size, second.version.size);

        // An older client (the browser) asking for nothing new gets no bases.
        let plain: UploadStatus = alice
            .post_json(
                "/api/drive/uploads",
                &NewUpload {
                    chunks: manifest_of(&seeded_bytes(100_000, 23)),
                    ..new_version(&first.node.id, Some(&second.version.id), "laptop")
                },
            )
            .await
            .expect(201);
        assert!(plain.bases.is_empty());
    }
);

both_backends!(
    hostile_chunk_edits_and_deltas_are_refused,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let (alice, _) = account(&server, "alice").await;
        let (bob, _) = account(&server, "bob").await;
        let data = seeded_bytes(600 * 1024, 31);
        let base = manifest_of(&data);
        let (_, file) = upload(&alice, new_file(None, "a.bin", "laptop"), &data).await;
        let (_, other) = upload(
            &alice,
            new_file(None, "b.bin", "laptop"),
            &seeded_bytes(300_000, 32),
        )
        .await;
        let (_, bobs) = upload(
            &bob,
            new_file(None, "c.bin", "desk"),
            &seeded_bytes(300_000, 33),
        )
        .await;
        let edit = |at, remove| ChunkEdit {
            at,
            remove,
            insert: vec![],
        };
        let edited = |edits: Vec<ChunkEdit>| NewUpload {
            chunk_edits: Some(edits),
            ..new_version(&file.node.id, Some(&file.version.id), "laptop")
        };

        // Both forms, or edits without their base: named.
        let both = NewUpload {
            chunks: base.clone(),
            ..edited(vec![])
        };
        let reply = alice.post_json("/api/drive/uploads", &both).await;
        reply.assert_error(422, "invalid_manifest");
        assert!(reply.json["message"].as_str().unwrap().contains("not both"));
        let no_base = NewUpload {
            base_version: None,
            ..edited(vec![])
        };
        alice
            .post_json("/api/drive/uploads", &no_base)
            .await
            .assert_error(422, "invalid_manifest");
        // Edits out of range, overlapping, or of someone else's version.
        for bad in [
            vec![edit(base.len() as u64, 1)],
            vec![edit(u64::MAX, u64::MAX)],
            vec![edit(1, 1), edit(0, 1)],
        ] {
            alice
                .post_json("/api/drive/uploads", &edited(bad))
                .await
                .assert_error(422, "invalid_manifest");
        }
        for foreign in [&other.version.id, &bobs.version.id, &"nope".to_owned()] {
            alice
                .post_json(
                    "/api/drive/uploads",
                    &NewUpload {
                        base_version: Some(foreign.clone()),
                        ..edited(vec![])
                    },
                )
                .await
                .assert_error(404, "version_not_found");
        }

        // A one-byte edit; its changed chunk offered as a delta.
        let mut changed = data.clone();
        changed[100] ^= 1;
        let new = manifest_of(&changed);
        let status: UploadStatus = alice
            .post_json(
                "/api/drive/uploads",
                &NewUpload {
                    signatures: true,
                    ..edited(edits_between(&base, &new))
                },
            )
            .await
            .expect(201);
        assert_eq!(status.missing.len(), 1);
        let offer = &status.bases[0];
        let hash = &offer.hash;
        let piece = &changed[..new[0].size as usize];
        let good = offer.delta_of(piece).unwrap();
        let id = &status.upload_id;
        let mut copy_past_end = vec![0x01];
        copy_past_end.extend_from_slice(&0u32.to_le_bytes());
        copy_past_end.extend_from_slice(&u32::MAX.to_le_bytes());
        let mut truncated = good.clone();
        truncated.pop();
        for (delta, status, code) in [
            (vec![0x09], 400, "invalid_delta"),
            (copy_past_end, 400, "invalid_delta"),
            (truncated, 400, "invalid_delta"),
            (vec![0x02, 1, 0, 0, 0, 1], 400, "invalid_delta"),
        ] {
            put_delta(&alice, id, hash, &offer.base, delta)
                .await
                .assert_error(status, code);
        }
        // The right length, the wrong bytes.
        let mut flipped = piece.to_vec();
        flipped[0] ^= 1;
        let mut literal = vec![0x02];
        literal.extend_from_slice(&(flipped.len() as u32).to_le_bytes());
        literal.extend_from_slice(&flipped);
        put_delta(&alice, id, hash, &offer.base, literal)
            .await
            .assert_error(400, "hash_mismatch");
        // Bases that are not chunks of the upload's base version.
        let foreign_chunk = manifest_of(&seeded_bytes(300_000, 33))[0].hash.clone();
        for base in [foreign_chunk.as_str(), "../../etc", &chunk_hash(b"none")] {
            put_delta(&alice, id, hash, base, good.clone())
                .await
                .assert_error(422, "not_in_base");
        }
        // Another account's upload, a chunk not in the upload.
        put_delta(&bob, id, hash, &offer.base, good.clone())
            .await
            .assert_error(404, "upload_not_found");
        put_delta(&alice, id, &chunk_hash(b"x"), &offer.base, good.clone())
            .await
            .assert_error(422, "not_in_upload");
        // Nothing was stored: still missing, and the commit is refused.
        let after: UploadStatus = alice
            .get(&format!("/api/drive/uploads/{id}"))
            .await
            .expect(200);
        assert_eq!(after.missing, vec![hash.clone()]);
        alice
            .post_empty(&format!("/api/drive/uploads/{id}/commit"))
            .await
            .assert_error(409, "missing_chunks");
        // The good delta lands.
        let reply = put_delta(&alice, id, hash, &offer.base, good).await;
        assert_eq!(reply.status.as_u16(), 204, "{}", reply.json);
        let committed: Committed = alice
            .post_empty(&format!("/api/drive/uploads/{id}/commit"))
            .await
            .expect(200);
        assert_eq!(committed.outcome, CommitOutcome::Updated);
        assert!(
            download(
                &alice,
                &format!("/api/drive/nodes/{}/content", file.node.id)
            )
            .await
                == changed
        );
    }
);

both_backends!(
    an_agent_sends_a_one_byte_edit_as_a_delta,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let (_alice, _) = account(&server, "alice").await;
        let (laptop_dir, phone_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut laptop = syncer(&server, laptop_dir.path(), "laptop").await;
        let mut phone = syncer(&server, phone_dir.path(), "phone").await;
        let data = seeded_bytes(2 * 1024 * 1024, 41);
        std::fs::write(laptop_dir.path().join("big.bin"), &data).unwrap();
        laptop.pass().await.unwrap();
        phone.pass().await.unwrap();

        // Edited on the phone, which got the file by download: its list is remembered.
        let mut edited = data.clone();
        edited[1_234_567] ^= 1;
        std::fs::write(phone_dir.path().join("big.bin"), &edited).unwrap();
        let report = phone.pass().await.unwrap();
        assert_eq!(report.uploaded, 1, "{report:?}");
        assert!((1..=2).contains(&report.chunks_sent), "{report:?}");
        assert_eq!(report.deltas_sent, report.chunks_sent, "{report:?}");
        laptop.pass().await.unwrap();
        assert!(std::fs::read(laptop_dir.path().join("big.bin")).unwrap() == edited);

        // And back on the laptop, which uploaded the first version.
        edited[10] ^= 1;
        std::fs::write(laptop_dir.path().join("big.bin"), &edited).unwrap();
        let report = laptop.pass().await.unwrap();
        assert_eq!(report.deltas_sent, report.chunks_sent, "{report:?}");
        assert!(report.deltas_sent >= 1, "{report:?}");
        phone.pass().await.unwrap();
        assert!(std::fs::read(phone_dir.path().join("big.bin")).unwrap() == edited);
    }
);
