//! Several server processes on one PostgreSQL database (PostgreSQL only: SQLite is one
//! process's file). Instances tell each other about events and session revocations
//! through LISTEN/NOTIFY, so what a client does through one instance reaches clients
//! connected to another:
//!
//! - an event published through B reaches a subscriber on A (and back), with the same
//!   sequence numbers everywhere;
//! - sessions live in the shared database, so a cookie from A works on B, and revoking a
//!   session through B closes its WebSocket on A with 4001;
//! - closing an account's connections (its role changed) through B closes them on every
//!   instance.

use meridian_shared::api::{Me, SessionKind, SessionList};
use meridian_shared::realtime::{close_code, ClientMessage, Event, ServerMessage};
use meridian_tests::client::{Client, Realtime};
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::process::ServerProcess;
use meridian_tests::server::TestServer;
use reqwest::StatusCode;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const PASSWORD: &str = "two-of-them-77";
const TOPIC: &str = "public:cluster";

async fn publish(socket: &mut Realtime, op_id: &str, text: &str) -> u64 {
    socket
        .send(&ClientMessage::Publish {
            op_id: op_id.into(),
            topic: TOPIC.into(),
            payload: json!({ "text": text }),
        })
        .await;
    socket
        .recv_until("the ack", |message| match message {
            ServerMessage::Ack { op_id: o, seq, .. } if o == op_id => Some(*seq),
            ServerMessage::Error { .. } => panic!("publish refused: {message:?}"),
            _ => None,
        })
        .await
}

async fn next_event(socket: &mut Realtime) -> Event {
    socket
        .recv_until("an event", |message| match message {
            ServerMessage::Event(event) => Some(event.clone()),
            _ => None,
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cross_instances_with_the_same_sequence_numbers() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let a = ServerProcess::start(BIN, &db).await;
    let b = ServerProcess::start(BIN, &db).await;
    assert_ne!(a.addr, b.addr);

    let on_a = Client::at(&a.base_url());
    on_a.me().await;
    let (mut socket_a, _welcome) = Realtime::connect(&on_a).await;
    socket_a.subscribe(TOPIC, None).await;
    let on_b = Client::at(&b.base_url());
    on_b.me().await;
    let (mut socket_b, _welcome) = Realtime::connect(&on_b).await;
    socket_b.subscribe(TOPIC, None).await;

    // B -> A
    let seq_1 = publish(&mut socket_b, "from-b", "hello from B").await;
    let seen_on_b = next_event(&mut socket_b).await;
    let seen_on_a = next_event(&mut socket_a).await;
    assert_eq!(seq_1, 1);
    for event in [&seen_on_a, &seen_on_b] {
        assert_eq!(event.seq, seq_1);
        assert_eq!(event.op_id, "from-b");
        assert_eq!(event.payload, json!({"text": "hello from B"}));
    }
    assert_eq!(
        seen_on_a, seen_on_b,
        "both instances deliver the same event"
    );

    // A -> B
    let seq_2 = publish(&mut socket_a, "from-a", "hello from A").await;
    let seen_on_a = next_event(&mut socket_a).await;
    let seen_on_b = next_event(&mut socket_b).await;
    assert_eq!(seq_2, 2, "one sequence per topic across instances");
    for event in [&seen_on_a, &seen_on_b] {
        assert_eq!(event.seq, seq_2);
        assert_eq!(event.op_id, "from-a");
    }
    assert_eq!(seen_on_a, seen_on_b);

    // A late subscriber on either instance replays the same log.
    for server in [&a, &b] {
        let late = Client::at(&server.base_url());
        late.me().await;
        let (mut socket, _welcome) = Realtime::connect(&late).await;
        socket
            .send(&ClientMessage::Subscribe {
                topic: TOPIC.into(),
                since: Some(0),
            })
            .await;
        assert!(matches!(
            socket.recv().await,
            ServerMessage::Subscribed { head: 2, .. }
        ));
        let replayed = [next_event(&mut socket).await, next_event(&mut socket).await];
        let seqs: Vec<(u64, &str)> = replayed.iter().map(|e| (e.seq, e.op_id.as_str())).collect();
        assert_eq!(seqs, vec![(1, "from-b"), (2, "from-a")]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_through_b_closes_the_socket_on_a() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let a = ServerProcess::start(BIN, &db).await;
    let b = ServerProcess::start(BIN, &db).await;

    // A laptop signs up on A and keeps a socket open there.
    let laptop = Client::at(&a.base_url());
    let me: Me = laptop.signup("carol", PASSWORD).await.expect(201);
    let laptop_session = me.session_id.clone();
    let laptop_token = laptop
        .session_token()
        .expect("the client has a session cookie");
    let (mut socket, _welcome) = Realtime::connect(&laptop).await;
    socket.subscribe(TOPIC, None).await;

    // Its cookie works on B: sessions live in the shared database.
    let on_b = laptop.same_browser_at(&b.base_url()).me().await;
    assert_eq!(on_b.session_id, laptop_session);
    assert_eq!(on_b.kind, SessionKind::User);

    // A phone signs in to the same account on B and revokes the laptop's session.
    let phone = Client::at(&b.base_url());
    let phone_me: Me = phone.signin("carol", PASSWORD).await.expect(200);
    let list: SessionList = phone.get("/api/auth/sessions").await.expect(200);
    let ids: Vec<(&str, bool)> = list
        .sessions
        .iter()
        .map(|s| (s.id.as_str(), s.current))
        .collect();
    assert!(
        ids.contains(&(laptop_session.as_str(), false)),
        "the laptop's session is listed: {ids:?}"
    );
    assert!(ids.contains(&(phone_me.session_id.as_str(), true)));
    let reply = phone
        .delete(&format!("/api/auth/sessions/{laptop_session}"))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);

    let (code, reason) = socket.recv_close_and_answer().await;
    assert_eq!(
        code,
        close_code::SESSION_REVOKED,
        "close code after revocation on another instance (reason {reason:?})"
    );

    // The revoked cookie no longer authenticates, on either instance: each answers
    // with a fresh guest session.
    for server in [&a, &b] {
        let after = Client::with_session_token_at(&server.base_url(), &laptop_token)
            .me()
            .await;
        assert_ne!(after.session_id, laptop_session);
        assert_eq!(after.kind, SessionKind::Guest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_an_account_through_b_closes_its_sockets_everywhere() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let a = TestServer::start(&db).await;
    let b = TestServer::start(&db).await;

    // Carol has a laptop on A and a phone on B; Dave is on A too.
    let laptop = Client::new(&a);
    let carol: Me = laptop.signup("carol", PASSWORD).await.expect(201);
    let carol_id = carol.user.expect("signed in").id;
    let phone = Client::new(&b);
    phone.signin("carol", PASSWORD).await.expect::<Me>(200);
    let dave = Client::new(&a);
    dave.signup("dave", PASSWORD).await.expect::<Me>(201);
    let (mut on_laptop, _) = Realtime::connect(&laptop).await;
    let (mut on_phone, _) = Realtime::connect(&phone).await;
    let (mut on_dave, _) = Realtime::connect(&dave).await;
    for socket in [&mut on_laptop, &mut on_phone, &mut on_dave] {
        socket.subscribe(TOPIC, None).await;
    }

    // The account's role changes through B.
    b.state
        .hub
        .close_user(&carol_id, close_code::ACCESS_CHANGED, "your role changed")
        .await;
    for socket in [&mut on_laptop, &mut on_phone] {
        assert_eq!(
            socket.recv_close_and_answer().await,
            (close_code::ACCESS_CHANGED, "your role changed".to_owned())
        );
    }
    on_dave.send(&ClientMessage::Ping { nonce: 5 }).await;
    assert_eq!(on_dave.recv().await, ServerMessage::Pong { nonce: 5 });
}
