//! The realtime channel against a real server on both backends: who may connect, the
//! welcome, publish and delivery, idempotent op ids, replay with `since`, topic
//! permissions, protocol errors and their close codes, slow consumers, heartbeats and
//! graceful shutdown.

use std::time::Duration;

use meridian_server::realtime::{Events, Published};
use meridian_server::AppState;

/// Appends one event in a transaction of its own, as a system would.
async fn publish(
    state: &AppState,
    topic: &str,
    op_id: &str,
    payload: serde_json::Value,
    session_id: Option<&str>,
) -> Result<Published, sqlx::Error> {
    Events::publish(&state.db, &state.hub, topic, op_id, payload, session_id).await
}
use meridian_server::Clock;
use meridian_shared::api::Me;
use meridian_shared::realtime::{close_code, ClientMessage, Event, ServerMessage};
use meridian_tests::both_backends;
use meridian_tests::client::{assert_error_body, Client, Frame, Realtime, SilentSocket};
use meridian_tests::db::TestDatabase;
use meridian_tests::server::TestServer;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const PASSWORD: &str = "correct-horse-battery";

fn publish_message(op_id: &str, topic: &str, payload: Value) -> ClientMessage {
    ClientMessage::Publish {
        op_id: op_id.to_owned(),
        topic: topic.to_owned(),
        payload,
    }
}

/// The next message, which must be an event.
async fn recv_event(socket: &mut Realtime) -> Event {
    match socket.recv().await {
        ServerMessage::Event(event) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// The next message, which must be an ack: `(op_id, seq, duplicate)`.
async fn recv_ack(socket: &mut Realtime) -> (String, u64, bool) {
    match socket.recv().await {
        ServerMessage::Ack {
            op_id,
            seq,
            duplicate,
            ..
        } => (op_id, seq, duplicate),
        other => panic!("expected an ack, got {other:?}"),
    }
}

/// The next message, which must be an error: `(code, op_id, topic)`.
async fn recv_error(socket: &mut Realtime) -> (String, Option<String>, Option<String>) {
    match socket.recv().await {
        ServerMessage::Error {
            code,
            message,
            op_id,
            topic,
        } => {
            assert!(!message.is_empty());
            (code, op_id, topic)
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Publishes from the client and returns the ack's `(seq, duplicate)`.
async fn publish_acked(
    socket: &mut Realtime,
    op_id: &str,
    topic: &str,
    payload: Value,
) -> (u64, bool) {
    socket.send(&publish_message(op_id, topic, payload)).await;
    let (acked, seq, duplicate) = recv_ack(socket).await;
    assert_eq!(acked, op_id);
    (seq, duplicate)
}

/// Answers a ping with the same nonce: the connection is alive and in order.
async fn assert_alive(socket: &mut Realtime, nonce: u64) {
    socket.send(&ClientMessage::Ping { nonce }).await;
    assert_eq!(socket.recv().await, ServerMessage::Pong { nonce });
}

both_backends!(
    the_upgrade_needs_a_session_cookie_and_the_same_origin,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;

        let refused = Realtime::try_connect(&server.ws_url(), &[])
            .await
            .err()
            .expect("no cookie, no upgrade");
        assert_eq!(refused.status, 401);
        assert_error_body(&refused.body, "no_session");

        let bogus = format!("meridian_session={}", "0".repeat(32));
        let refused = Realtime::try_connect(&server.ws_url(), &[("cookie", &bogus)])
            .await
            .err()
            .expect("an unknown token is no session");
        assert_eq!(refused.status, 401);

        let client = Client::new(&server);
        client.me().await;
        let cookie = client.cookie_header().unwrap();
        let refused = Realtime::try_connect(
            &server.ws_url(),
            &[("cookie", &cookie), ("origin", "http://evil.test")],
        )
        .await
        .err()
        .expect("a cross-origin page may not connect");
        assert_eq!(refused.status, 403);
        assert_error_body(&refused.body, "cross_origin");

        let own_origin = server.base_url();
        let mut socket = Realtime::try_connect(
            &server.ws_url(),
            &[("cookie", &cookie), ("origin", &own_origin)],
        )
        .await
        .unwrap_or_else(|refused| panic!("same origin refused: {refused:?}"));
        socket.recv_welcome().await;
        assert_eq!(server.state.hub.connection_count(), 1);
    }
);

both_backends!(
    welcome_comes_first_and_names_the_session,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |config| {
            config.heartbeat = Duration::from_millis(7_000);
        })
        .await;
        let client = Client::new(&server);
        let me = client.me().await;

        let mut socket = Realtime::open(&client).await;
        let welcome = socket.recv_welcome().await;
        assert_eq!(welcome.session_id, me.session_id);
        assert_eq!(welcome.instance_id, &*server.state.instance_id);
        assert_eq!(welcome.heartbeat_ms, 7_000);
        assert!(!welcome.connection_id.is_empty());

        let (_second, second_welcome) = Realtime::connect(&client).await;
        assert_ne!(second_welcome.connection_id, welcome.connection_id);
        assert_eq!(second_welcome.session_id, me.session_id);
        assert_alive(&mut socket, 1).await;
    }
);

both_backends!(
    a_publish_is_acked_and_delivered_to_other_sessions_once,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let alice = Client::new(&server);
        alice.me().await;
        let bob = Client::new(&server);
        bob.me().await;
        let (mut publisher, _) = Realtime::connect(&alice).await;
        let (mut watcher, _) = Realtime::connect(&bob).await;
        let topic = "public:lobby";
        assert_eq!(watcher.subscribe(topic, None).await, (0, false));

        let payload = json!({"text": "hello", "n": 1});
        let acked = publish_acked(&mut publisher, "op-1", topic, payload.clone()).await;
        assert_eq!(acked, (1, false));
        let event = recv_event(&mut watcher).await;
        assert_eq!(
            event,
            Event {
                topic: topic.into(),
                seq: 1,
                op_id: "op-1".into(),
                payload,
                at_ms: server.clock.now_ms(),
            }
        );

        // The same op again: acknowledged with its first seq, neither stored nor sent.
        let again = publish_acked(&mut publisher, "op-1", topic, json!({"text": "changed"})).await;
        assert_eq!(again, (1, true));
        let next = publish_acked(&mut publisher, "op-2", topic, json!({"text": "second"})).await;
        assert_eq!(next, (2, false));
        let event = recv_event(&mut watcher).await;
        assert_eq!((event.seq, event.op_id.as_str()), (2, "op-2"));
        assert_eq!(event.payload, json!({"text": "second"}));

        // A late subscriber sees the head, which counts op-1 once.
        let (mut late, _) = Realtime::connect(&bob).await;
        assert_eq!(late.subscribe(topic, None).await, (2, false));

        // After unsubscribing, nothing more arrives: the ping is answered next.
        watcher
            .send(&ClientMessage::Unsubscribe {
                topic: topic.into(),
            })
            .await;
        assert_eq!(
            watcher.recv().await,
            ServerMessage::Unsubscribed {
                topic: topic.into()
            }
        );
        publish_acked(&mut publisher, "op-3", topic, json!({})).await;
        assert_eq!(recv_event(&mut late).await.seq, 3);
        assert_alive(&mut watcher, 7).await;
    }
);

both_backends!(
    concurrent_publishers_are_delivered_in_sequence_order_once,
    |db: TestDatabase| async move {
        const WRITERS: u64 = 8;
        const EACH: u64 = 25;
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);
        client.me().await;
        let (mut socket, _) = Realtime::connect(&client).await;
        let topic = "public:race";
        socket.subscribe(topic, None).await;

        // Writers on one instance, each with its own transactions and nothing in the
        // process ordering them: the topic row orders their commits, the hub their
        // deliveries. Each also replays one of its ops, which changes nothing.
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let state = server.state.clone();
                tokio::spawn(async move {
                    let mut seqs = Vec::new();
                    for i in 0..EACH {
                        let op = format!("w{w}-{i}");
                        let done = publish(&state, topic, &op, json!({"op": op}), None)
                            .await
                            .unwrap();
                        assert!(!done.duplicate);
                        seqs.push(done.seq);
                    }
                    let again = publish(&state, topic, &format!("w{w}-0"), json!({}), None)
                        .await
                        .unwrap();
                    assert_eq!(
                        again,
                        Published {
                            seq: seqs[0],
                            duplicate: true
                        }
                    );
                    seqs
                })
            })
            .collect();
        let mut acked = Vec::new();
        for writer in writers {
            acked.extend(writer.await.unwrap());
        }
        acked.sort_unstable();
        let total = WRITERS * EACH;
        assert_eq!(acked, (1..=total).collect::<Vec<_>>(), "dense, each once");

        for seq in 1..=total {
            let event = recv_event(&mut socket).await;
            assert_eq!(event.seq, seq, "in order, none twice, none skipped");
        }
        assert_alive(&mut socket, 1).await;
    }
);

both_backends!(
    subscribing_with_since_replays_what_was_missed_in_order,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let alice = Client::new(&server);
        alice.me().await;
        let bob = Client::new(&server);
        bob.me().await;
        let topic = "public:log";
        let (mut publisher, _) = Realtime::connect(&alice).await;

        let (mut reader, _) = Realtime::connect(&bob).await;
        assert_eq!(reader.subscribe(topic, None).await, (0, false));
        for n in 1..=2 {
            publish_acked(&mut publisher, &format!("op-{n}"), topic, json!({"n": n})).await;
            assert_eq!(recv_event(&mut reader).await.seq, n);
        }
        reader.close().await;
        server.wait_for_connections(1).await;

        for n in 3..=5 {
            publish_acked(&mut publisher, &format!("op-{n}"), topic, json!({"n": n})).await;
        }

        let (mut reader, _) = Realtime::connect(&bob).await;
        assert_eq!(reader.subscribe(topic, Some(2)).await, (5, false));
        for n in 3..=5 {
            let event = recv_event(&mut reader).await;
            assert_eq!(event.seq, n);
            assert_eq!(event.op_id, format!("op-{n}"));
            assert_eq!(event.payload, json!({"n": n}));
        }
        // Then live events, with nothing replayed twice.
        publish_acked(&mut publisher, "op-6", topic, json!({"n": 6})).await;
        assert_eq!(recv_event(&mut reader).await.seq, 6);

        // Up to date: nothing to replay.
        let (mut current, _) = Realtime::connect(&bob).await;
        assert_eq!(current.subscribe(topic, Some(6)).await, (6, false));
        assert_alive(&mut current, 1).await;
    }
);

both_backends!(
    topic_namespaces_limit_who_subscribes_and_publishes,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let alice = Client::new(&server);
        let alice_me: Me = alice.signup("alice", PASSWORD).await.expect(201);
        let alice_id = alice_me.user.unwrap().id;
        let bob = Client::new(&server);
        let bob_me: Me = bob.signup("bob", PASSWORD).await.expect(201);
        let bob_id = bob_me.user.unwrap().id;
        let (mut socket, _) = Realtime::connect(&alice).await;

        // Clients publish only to public topics.
        for topic in [
            format!("user:{alice_id}"),
            "user:x".into(),
            format!("session:{}", alice_me.session_id),
        ] {
            socket
                .send(&publish_message("op-1", &topic, json!({})))
                .await;
            let (code, op_id, answered) = recv_error(&mut socket).await;
            assert_eq!(code, "forbidden_topic", "{topic}");
            assert_eq!(op_id.as_deref(), Some("op-1"));
            assert_eq!(answered.as_deref(), Some(&*topic));
        }

        // Another account's or session's topics are off limits.
        for topic in [
            format!("user:{bob_id}"),
            format!("session:{}", bob_me.session_id),
        ] {
            socket
                .send(&ClientMessage::Subscribe {
                    topic: topic.clone(),
                    since: None,
                })
                .await;
            let (code, op_id, answered) = recv_error(&mut socket).await;
            assert_eq!(code, "forbidden_topic", "{topic}");
            assert_eq!(op_id, None);
            assert_eq!(answered.as_deref(), Some(&*topic));
        }
        for topic in ["lobby", "admin:x", "public:with space"] {
            socket
                .send(&ClientMessage::Subscribe {
                    topic: topic.into(),
                    since: None,
                })
                .await;
            assert_eq!(recv_error(&mut socket).await.0, "invalid_topic", "{topic}");
        }

        // One's own account and session topics work, and the server reaches them.
        let user_topic = format!("user:{alice_id}");
        let session_topic = format!("session:{}", alice_me.session_id);
        assert_eq!(socket.subscribe(&user_topic, None).await, (0, false));
        assert_eq!(socket.subscribe(&session_topic, None).await, (0, false));
        let published = publish(
            &server.state,
            &session_topic,
            "server-op-1",
            json!({"notice": "for this session"}),
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            published,
            Published {
                seq: 1,
                duplicate: false
            }
        );
        let event = recv_event(&mut socket).await;
        assert_eq!(event.topic, session_topic);
        assert_eq!((event.seq, event.op_id.as_str()), (1, "server-op-1"));
        assert_eq!(event.payload, json!({"notice": "for this session"}));
        assert_eq!(event.at_ms, server.clock.now_ms());

        // Server-side publishes are idempotent too.
        let again = publish(
            &server.state,
            &session_topic,
            "server-op-1",
            json!({}),
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            again,
            Published {
                seq: 1,
                duplicate: true
            }
        );
        assert_alive(&mut socket, 2).await;
    }
);

both_backends!(
    a_malformed_frame_closes_that_connection_only,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);
        client.me().await;
        let (mut bystander, _) = Realtime::connect(&client).await;

        for text in ["not json", r#"{"type":"dance"}"#, r#"{"type":"subscribe"}"#] {
            let (mut broken, _) = Realtime::connect(&client).await;
            broken.send_raw(Message::text(text)).await;
            let (code, reason) = broken.recv_close().await;
            assert_eq!(code, close_code::PROTOCOL_ERROR, "{text}: {reason}");
            assert!(
                reason.starts_with("not a protocol message"),
                "{text}: {reason}"
            );
        }
        server.wait_for_connections(1).await;
        assert_alive(&mut bystander, 42).await;
        let (seq, _) = publish_acked(&mut bystander, "op-1", "public:still-here", json!(1)).await;
        assert_eq!(seq, 1);
    }
);

both_backends!(
    a_binary_frame_closes_with_1003,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);
        client.me().await;
        let (mut socket, _) = Realtime::connect(&client).await;

        socket.send_raw(Message::binary(vec![1, 2, 3])).await;
        let (code, reason) = socket.recv_close().await;
        assert_eq!(code, 1003);
        assert_eq!(reason, "binary frames are not part of this protocol");
        server.wait_for_connections(0).await;
    }
);

both_backends!(
    a_frame_over_64_kib_closes_with_1009,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);
        client.me().await;
        let (mut bystander, _) = Realtime::connect(&client).await;
        let (mut socket, _) = Realtime::connect(&client).await;

        // A frame just under the limit is read (unknown fields are ignored): a pong.
        let payload = "x".repeat(64 * 1024 - 100);
        let at_limit = format!(r#"{{"type":"ping","nonce":1,"pad":"{payload}"}}"#);
        assert!(at_limit.len() <= 64 * 1024);
        socket.send_raw(Message::text(at_limit)).await;
        assert_eq!(socket.recv().await, ServerMessage::Pong { nonce: 1 });

        let oversize = format!(
            r#"{{"type":"ping","nonce":2,"pad":"{}"}}"#,
            "x".repeat(70_000)
        );
        socket.send_raw(Message::text(oversize)).await;
        let (code, reason) = socket.recv_close().await;
        assert_eq!(code, close_code::TOO_BIG);
        assert_eq!(reason, "frame larger than 65536 bytes");
        server.wait_for_connections(1).await;
        assert_alive(&mut bystander, 3).await;
    }
);

both_backends!(
    ping_is_answered_with_the_same_nonce,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);
        client.me().await;
        let (mut socket, _) = Realtime::connect(&client).await;
        for nonce in [0, 1, u64::MAX] {
            assert_alive(&mut socket, nonce).await;
        }
    }
);

both_backends!(
    a_client_that_does_not_read_is_dropped_as_a_slow_consumer,
    |db: TestDatabase| async move {
        const QUEUE: usize = 4;
        const MAX_EVENTS: u64 = 200;
        let server = TestServer::start_with(&db, |config| config.outbound_queue = QUEUE).await;
        let fast_client = Client::new(&server);
        fast_client.me().await;
        let slow_client = Client::new(&server);
        slow_client.me().await;
        let topic = "public:flood";
        let (mut fast, _) = Realtime::connect(&fast_client).await;
        let (mut slow, _) = Realtime::connect(&slow_client).await;
        fast.subscribe(topic, None).await;
        slow.subscribe(topic, None).await;

        // Large events fill the slow client's socket buffers, then its queue. The fast
        // client reads each event before the next is published, so its queue never
        // holds more than one.
        let blob = "x".repeat(256 * 1024);
        let mut published = 0;
        while server.state.hub.connection_count() == 2 {
            assert!(
                published < MAX_EVENTS,
                "the slow client was not dropped after {MAX_EVENTS} large events"
            );
            published += 1;
            let payload = json!({"n": published, "blob": blob});
            let done = publish(
                &server.state,
                topic,
                &format!("op-{published}"),
                payload,
                None,
            )
            .await
            .unwrap();
            assert_eq!(done.seq, published);
            let event = recv_event(&mut fast).await;
            assert_eq!(
                (event.seq, &event.payload["n"]),
                (published, &json!(published))
            );
        }
        assert_eq!(
            server.state.hub.connection_count(),
            1,
            "only the slow one dropped"
        );
        let dropped_at = published;

        // The fast client keeps getting everything, in order.
        for _ in 0..3 {
            published += 1;
            publish(
                &server.state,
                topic,
                &format!("op-{published}"),
                json!({"n": published}),
                None,
            )
            .await
            .unwrap();
            assert_eq!(recv_event(&mut fast).await.seq, published);
        }

        // The slow client finally reads: what was sent or queued before it was dropped,
        // in order, without the event that overflowed its queue, then the close.
        let mut received = 0;
        let close = loop {
            match slow.next_frame().await {
                Frame::Message(ServerMessage::Event(event)) => {
                    received += 1;
                    assert_eq!(event.seq, received, "in order, none skipped");
                }
                Frame::Close(code, reason) => break (code, reason),
                other => panic!("expected events then a close, got {other:?}"),
            }
        };
        assert_eq!(close.0, close_code::SLOW_CONSUMER, "{close:?}");
        assert_eq!(received, dropped_at - 1, "all but the one that did not fit");
        assert_eq!(server.state.hub.connection_count(), 1);
        assert_alive(&mut fast, 9).await;
    }
);

both_backends!(
    a_client_that_does_not_answer_heartbeats_is_closed_with_4000,
    |db: TestDatabase| async move {
        let server = TestServer::start_with(&db, |config| {
            config.heartbeat = Duration::from_millis(100);
            config.client_timeout = Duration::from_millis(2_000);
        })
        .await;
        let client = Client::new(&server);
        client.me().await;
        // `alive` keeps reading, so tungstenite answers the server's pings; `silent`
        // never writes after its handshake, so it answers none.
        let (mut alive, _) = Realtime::connect(&client).await;
        let mut silent = SilentSocket::connect(&client).await;
        assert!(matches!(silent.recv().await, ServerMessage::Welcome { .. }));

        let hub = server.state.hub.clone();
        alive
            .keep_reading_until("the silent client to be dropped", || {
                hub.connection_count() == 1
            })
            .await;
        assert_eq!(
            silent.recv_close().await,
            (
                close_code::HEARTBEAT_TIMEOUT,
                "no heartbeat from the client".to_owned()
            )
        );
        assert_eq!(silent.next_frame().await, None, "then the connection ends");
        assert_alive(&mut alive, 1).await;
        assert_eq!(server.state.hub.connection_count(), 1);
    }
);

both_backends!(
    shutting_down_closes_websockets_with_1001,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let client = Client::new(&server);
        client.me().await;
        let (mut socket, _) = Realtime::connect(&client).await;
        socket.subscribe("public:lobby", None).await;
        let health_url = server.url("/api/health");

        server.shutdown().await;
        assert_eq!(
            socket.recv_close().await,
            (close_code::GOING_AWAY, "server shutting down".to_owned())
        );
        let after = reqwest::get(health_url).await;
        assert!(after.is_err(), "the server no longer accepts: {after:?}");
    }
);
