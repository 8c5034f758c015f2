//! One document served by two server processes on one PostgreSQL database (PostgreSQL
//! only: SQLite is one process's file). A y-websocket client on each instance: text typed
//! on one appears on the other, an awareness state (a cursor) set on one appears on the
//! other, and a client leaving one instance — cleanly or by crashing — is removed on the
//! other at once.

use meridian_shared::api::Me;
use meridian_shared::docs::{CreateDoc, Doc, Role, ShareDoc};
use meridian_tests::client::Client;
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::process::ServerProcess;
use meridian_tests::yjs::{cursor_state, YClient};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const PASSWORD: &str = "two-servers-one-doc";

async fn connect(client: &Client, doc_id: &str) -> YClient {
    YClient::connect(client, doc_id)
        .await
        .unwrap_or_else(|refused| panic!("/yjs/{doc_id} refused: {refused:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_serve_one_document() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let a = ServerProcess::start(BIN, &db).await;
    let b = ServerProcess::start(BIN, &db).await;
    assert_ne!(a.addr, b.addr);

    // The owner works through A, the editor through B.
    let olive = Client::at(&a.base_url());
    olive.signup("olive", PASSWORD).await.expect::<Me>(201);
    let eddie = Client::at(&b.base_url());
    eddie.signup("eddie", PASSWORD).await.expect::<Me>(201);
    let doc: Doc = olive
        .post_json(
            "/api/docs",
            &CreateDoc {
                title: "Across".into(),
            },
        )
        .await
        .expect(201);
    olive
        .post_json(
            &format!("/api/docs/{}/members", doc.id),
            &ShareDoc {
                username: "eddie".into(),
                role: Role::Editor,
            },
        )
        .await
        .expect::<Doc>(200);

    let mut on_a = connect(&olive, &doc.id).await;
    let mut on_b = connect(&eddie, &doc.id).await;

    // Text, both ways, as live updates (no sync on the receiving side).
    on_a.insert(0, "typed on A\n").await;
    on_b.recv_until("A's text on B", |c| c.text() == "typed on A\n")
        .await;
    on_b.insert(on_b.len(), "typed on B\n").await;
    on_a.recv_until("B's text on A", |c| c.text().contains("typed on B"))
        .await;
    // Concurrent keystrokes on both instances converge.
    for i in 0..50u32 {
        on_a.insert(0, &char::from(b'a' + (i % 26) as u8).to_string())
            .await;
        on_b.insert(on_b.len(), &char::from(b'A' + (i % 26) as u8).to_string())
            .await;
    }
    on_a.sync().await;
    on_b.sync().await;
    // Each has stored its own; the other's arrive through the other instance.
    let total = 22 + 100;
    on_a.recv_until("all of B's keystrokes", |c| c.len() == total)
        .await;
    on_b.recv_until("all of A's keystrokes", |c| c.len() == total)
        .await;
    assert_eq!(on_a.text(), on_b.text());
    assert!(on_a.text().contains("typed on A\ntyped on B\n"));

    // A late joiner on either instance reads the same document.
    for (server, client) in [(&a, &olive), (&b, &eddie)] {
        let late = connect(&client.same_browser_at(&server.base_url()), &doc.id).await;
        assert_eq!(late.text(), on_a.text());
    }

    // A cursor set on A appears on B, and one set on B appears on A.
    let a_state = cursor_state(
        "olive",
        "#e06c75",
        Some((on_a.sticky_json(3), on_a.sticky_json(8))),
    );
    on_a.set_awareness(a_state.clone()).await;
    let a_id = on_a.client_id();
    on_b.recv_until("A's cursor on B", |c| c.peer(a_id) == Some(&a_state))
        .await;
    let anchor = &on_b.peer(a_id).unwrap()["cursor"]["anchor"];
    assert_eq!(on_b.resolve_sticky(anchor), Some(3));
    let b_state = cursor_state(
        "eddie",
        "#61afef",
        Some((on_b.sticky_json(0), on_b.sticky_json(0))),
    );
    on_b.set_awareness(b_state.clone()).await;
    let b_id = on_b.client_id();
    on_a.recv_until("B's cursor on A", |c| c.peer(b_id) == Some(&b_state))
        .await;

    // A newcomer on B learns A's state, which lives on the other instance.
    let mut newcomer = connect(&eddie, &doc.id).await;
    newcomer
        .recv_until("A's cursor for a newcomer on B", |c| {
            c.peer(a_id) == Some(&a_state)
        })
        .await;

    // A closes cleanly: removed on B at once.
    on_a.close().await;
    on_b.recv_until("A's removal on B", |c| c.saw_removed(a_id))
        .await;
    newcomer
        .recv_until("A's removal for the newcomer", |c| c.saw_removed(a_id))
        .await;

    // A client on B crashes: removed on A.
    let mut on_a = connect(&olive, &doc.id).await;
    on_a.recv_until("B's cursor on the new A", |c| {
        c.peer(b_id) == Some(&b_state)
    })
    .await;
    on_b.crash();
    on_a.recv_until("B's removal on A after its crash", |c| c.saw_removed(b_id))
        .await;
}
