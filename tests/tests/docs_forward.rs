//! Documents forward an update to the room's other connections before it is stored,
//! and acknowledge it (answer the sender's sync step 1) only once it is. These tests
//! hold the store's write lock from the test so that a commit cannot happen, and show on
//! both backends, with real server processes killed by SIGKILL:
//! - a peer receives an update while it cannot be stored, and its sender's step 1 is
//!   not answered meanwhile;
//! - after kill -9 and a restart the unstored update is gone from the server, and the
//!   sender's resend on reconnect brings every replica (the sender, the peer that had it
//!   early, a fresh one) to the same text, with nothing acknowledged lost and the
//!   update stored once.
//!
//! Nothing waits on time: the lock is taken before the edit (so its commit certainly
//! waits), the peer's receipt is read from its socket, and every later step ends on the
//! acknowledgement barrier of `meridian_tests::yjs` (`YClient::sync`).

use meridian_shared::api::Me;
use meridian_shared::docs::protocol;
use meridian_shared::docs::{CreateDoc, Doc, Role, ShareDoc};
use meridian_tests::both_backends;
use meridian_tests::client::Client;
use meridian_tests::db::TestDatabase;
use meridian_tests::process::ServerProcess;
use meridian_tests::yjs::{Received, YClient};
use sqlx::{AnyConnection, Connection};
use yrs::{ReadTxn, Transact};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const PASSWORD: &str = "forward-first-store-then-ack";

async fn account(base_url: &str, username: &str) -> Client {
    let client = Client::at(base_url);
    let _: Me = client.signup(username, PASSWORD).await.expect(201);
    client
}

async fn shared_doc(owner: &Client, title: &str, editor: &str) -> Doc {
    let doc: Doc = owner
        .post_json(
            "/api/docs",
            &CreateDoc {
                title: title.to_owned(),
            },
        )
        .await
        .expect(201);
    let _: Doc = owner
        .post_json(
            &format!("/api/docs/{}/members", doc.id),
            &ShareDoc {
                username: editor.to_owned(),
                role: Role::Editor,
            },
        )
        .await
        .expect(200);
    doc
}

async fn connect(client: &Client, doc_id: &str) -> YClient {
    YClient::connect(client, doc_id)
        .await
        .unwrap_or_else(|refused| panic!("/yjs/{doc_id} refused: {refused:?}"))
}

async fn open_connection(db: &TestDatabase) -> AnyConnection {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(&db.url)
        .await
        .expect("open the test database")
}

/// Update rows stored for a document.
async fn update_rows(conn: &mut AnyConnection, doc_id: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM doc_updates WHERE doc_id = $1")
        .bind(doc_id)
        .fetch_one(conn)
        .await
        .expect("count the stored updates")
}

both_backends!(
    an_update_reaches_peers_before_it_is_stored_and_survives_kill_9_by_resend,
    |db: TestDatabase| async move {
        let mut server = ServerProcess::start(BIN, &db).await;
        let base = server.base_url();
        let olive = account(&base, "olive").await;
        let eddie = account(&base, "eddie").await;
        let doc = shared_doc(&olive, "Early", "eddie").await;

        let mut sender = connect(&olive, &doc.id).await;
        let mut peer = connect(&eddie, &doc.id).await;
        sender.insert(0, "acknowledged. ").await;
        sender.sync().await; // stored
        peer.recv_until("the acknowledged text", |p| p.text() == "acknowledged. ")
            .await;
        let mut db_conn = open_connection(&db).await;
        let rows_acknowledged = update_rows(&mut db_conn, &doc.id).await;

        // The test takes the document row's write lock (on SQLite: the database's write
        // lock), so the server's writer cannot commit the next update until it is gone.
        let mut lock = db_conn.begin().await.expect("begin");
        sqlx::query("UPDATE docs SET updated_ms = updated_ms WHERE id = $1")
            .bind(&doc.id)
            .execute(&mut *lock)
            .await
            .expect("take the write lock");

        let early = "forwarded early";
        let at = sender.len();
        sender.insert(at, early).await;
        // The peer has it although it cannot have been stored.
        peer.recv_until("the unstored update", |p| p.text().ends_with(early))
            .await;
        // The sender's step 1 is not answered while its update is unstored. The room
        // handles a connection's frames in order and queues its answers in order: the
        // answer to a query sent after the step 1 arriving with no step 2 before it shows
        // that the step 1 was handled and held back.
        let sv = sender.doc().transact().state_vector();
        sender.send_raw(protocol::step1(&sv)).await;
        sender.send_raw(protocol::query_awareness()).await;
        let seen = sender.received().len();
        sender
            .recv_until("the answer to the awareness query", |s| {
                s.received()[seen..]
                    .iter()
                    .any(|r| matches!(r, Received::Awareness(_)))
            })
            .await;
        assert!(
            !sender.received()[seen..].contains(&Received::Step2),
            "the sender's step 1 is not answered while its update is not stored: {:?}",
            &sender.received()[seen..]
        );
        // The peer, with nothing unstored, is answered at once meanwhile.
        peer.sync().await;

        server.kill_9().await;
        lock.rollback().await.expect("release the lock");
        sender.crash();
        peer.crash();

        let restarted = ServerProcess::start(BIN, &db).await;
        let olive = olive.same_browser_at(&restarted.base_url());
        let eddie = eddie.same_browser_at(&restarted.base_url());
        // The server lost the unacknowledged update, and only that.
        let mut fresh = connect(&olive, &doc.id).await;
        assert_eq!(fresh.text(), "acknowledged. ");
        assert_eq!(update_rows(&mut db_conn, &doc.id).await, rows_acknowledged);

        // The sender reconnects: its replica answers the server's step 1 with the update
        // the server lacks, and its own step 1 is answered once that is stored.
        sender
            .reconnect(&olive)
            .await
            .expect("the sender reconnects");
        let want = format!("acknowledged. {early}");
        assert_eq!(sender.text(), want);
        fresh
            .recv_until("the resent update", |f| f.text() == want)
            .await;
        let rows_resent = update_rows(&mut db_conn, &doc.id).await;
        assert_eq!(rows_resent, rows_acknowledged + 1, "stored once, on resend");

        // The peer that had it early reconnects too: nothing new for the server (its
        // copy merges idempotently: not stored again), the same text everywhere.
        peer.reconnect(&eddie).await.expect("the peer reconnects");
        assert_eq!(peer.text(), want);
        assert_eq!(update_rows(&mut db_conn, &doc.id).await, rows_resent);
        fresh.sync().await;
        sender.sync().await;
        assert_eq!(fresh.text(), want);
        assert_eq!(sender.text(), want);
        let reread = connect(&olive, &doc.id).await;
        assert_eq!(reread.text(), want);
        db_conn.close().await.expect("close");
    }
);
