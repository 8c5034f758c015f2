//! Faults against real server processes, on both backends:
//!
//! - kill -9: what the server acknowledged (an account, its session, a realtime event)
//!   survives SIGKILL and is there after a restart on the same database;
//! - SIGTERM: the server closes every WebSocket with 1001 (going away) and exits with
//!   status 0 within a bounded time.

use meridian_shared::api::{Me, SessionKind};
use meridian_shared::realtime::{close_code, ClientMessage, ServerMessage};
use meridian_tests::both_backends;
use meridian_tests::client::{Client, Realtime};
use meridian_tests::process::{ServerProcess, STOP_TIMEOUT};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const PASSWORD: &str = "crash-proof-42";

both_backends!(
    acknowledged_state_survives_kill_9,
    |db: meridian_tests::db::TestDatabase| async move {
        let mut first = ServerProcess::start(BIN, &db).await;
        let alice = Client::at(&first.base_url());
        let me: Me = alice.signup("alice", PASSWORD).await.expect(201);
        let session_id = me.session_id.clone();

        let (mut socket, _welcome) = Realtime::connect(&alice).await;
        socket
            .send(&ClientMessage::Publish {
                op_id: "op-before-crash".into(),
                topic: "public:faults".into(),
                payload: json!({"text": "written before kill -9"}),
            })
            .await;
        let seq = socket
            .recv_until("the ack", |message| match message {
                ServerMessage::Ack {
                    op_id,
                    seq,
                    duplicate,
                    ..
                } if op_id == "op-before-crash" => {
                    assert!(!duplicate, "a first publish is not a duplicate");
                    Some(*seq)
                }
                _ => None,
            })
            .await;
        assert_eq!(seq, 1, "the first event of a topic is seq 1");

        let status = first.kill_9().await;
        assert!(!status.success(), "SIGKILL ends the process: {status}");
        drop(socket);

        let second = ServerProcess::start(BIN, &db).await;

        // The session acknowledged before the crash still authenticates.
        let still = alice.same_browser_at(&second.base_url()).me().await;
        assert_eq!(still.session_id, session_id);
        assert_eq!(still.kind, SessionKind::User);

        // The account signs in from a new client.
        let again = Client::at(&second.base_url());
        let me: Me = again.signin("alice", PASSWORD).await.expect(200);
        assert_eq!(me.user.as_ref().map(|u| u.username.as_str()), Some("alice"));

        // The acknowledged event is replayed.
        let (mut socket, _welcome) = Realtime::connect(&again).await;
        socket
            .send(&ClientMessage::Subscribe {
                topic: "public:faults".into(),
                since: Some(0),
            })
            .await;
        match socket.recv().await {
            ServerMessage::Subscribed {
                topic,
                head,
                truncated,
            } => {
                assert_eq!(topic, "public:faults");
                assert_eq!(head, 1);
                assert!(!truncated);
            }
            other => panic!("expected subscribed, got {other:?}"),
        }
        match socket.recv().await {
            ServerMessage::Event(event) => {
                assert_eq!(event.topic, "public:faults");
                assert_eq!(event.seq, 1);
                assert_eq!(event.op_id, "op-before-crash");
                assert_eq!(event.payload, json!({"text": "written before kill -9"}));
            }
            other => panic!("expected the replayed event, got {other:?}"),
        }

        // Replaying the op after the crash is recognised, not applied twice.
        socket
            .send(&ClientMessage::Publish {
                op_id: "op-before-crash".into(),
                topic: "public:faults".into(),
                payload: json!({"text": "written before kill -9"}),
            })
            .await;
        match socket.recv().await {
            ServerMessage::Ack { seq, duplicate, .. } => {
                assert_eq!(seq, 1);
                assert!(duplicate, "the op was applied before the crash");
            }
            other => panic!("expected a duplicate ack, got {other:?}"),
        }
    }
);

both_backends!(
    sigterm_closes_sockets_with_going_away_and_exits_cleanly,
    |db: meridian_tests::db::TestDatabase| async move {
        let mut server = ServerProcess::start(BIN, &db).await;
        let guest = Client::at(&server.base_url());
        guest.me().await;
        let (mut socket, _welcome) = Realtime::connect(&guest).await;
        // A round trip, so that the connection is fully set up on the server.
        socket
            .send(&ClientMessage::Subscribe {
                topic: "public:shutdown".into(),
                since: None,
            })
            .await;
        assert!(matches!(
            socket.recv().await,
            ServerMessage::Subscribed { .. }
        ));

        server.send_sigterm();
        let (code, reason) = socket.recv_close_and_answer().await;
        assert_eq!(
            code,
            close_code::GOING_AWAY,
            "close code on shutdown (reason {reason:?})"
        );
        let status = server.wait_exit(STOP_TIMEOUT).await;
        assert_eq!(
            status.code(),
            Some(0),
            "a graceful shutdown exits with 0, got {status}\n--- server stderr ---\n{}",
            server.stderr_log()
        );
    }
);
