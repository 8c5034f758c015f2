//! Faults against real server processes, on both backends:
//!
//! - kill -9: what the server acknowledged (an account, its session, a realtime event)
//!   survives SIGKILL and is there after a restart on the same database;
//! - SIGTERM: the server closes every WebSocket with 1001 (going away) and exits with
//!   status 0 within a bounded time.

use meridian_shared::api::SessionKind;
use meridian_shared::realtime::{close_code, ClientMessage, ServerMessage};
use meridian_tests::both_backends;
use meridian_tests::process::{ServerProcess, STOP_TIMEOUT};
use serde_json::json;

use self::support::{Client, Socket};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const PASSWORD: &str = "crash-proof-42";

both_backends!(
    acknowledged_state_survives_kill_9,
    |db: meridian_tests::db::TestDatabase| async move {
        let mut first = ServerProcess::start(BIN, &db).await;
        let alice = Client::new();
        let me = alice.signup(&first, "alice", PASSWORD).await;
        let session_id = me.session_id.clone();

        let mut socket = alice.connect(&first).await;
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
        let still = alice.me(&second).await;
        assert_eq!(still.session_id, session_id);
        assert_eq!(still.kind, SessionKind::User);

        // The account signs in from a new client.
        let again = Client::new();
        let me = again.signin(&second, "alice", PASSWORD).await;
        assert_eq!(me.user.as_ref().map(|u| u.username.as_str()), Some("alice"));

        // The acknowledged event is replayed.
        let mut socket = again.connect(&second).await;
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
        let guest = Client::new();
        guest.me(&server).await;
        let mut socket: Socket = guest.connect(&server).await;
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
        let (code, reason) = socket.recv_close().await;
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

/// A small HTTP + WebSocket client with its own cookie jar.
mod support {
    use std::sync::Arc;
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use meridian_shared::api::{Credentials, Me};
    use meridian_shared::realtime::{ClientMessage, ServerMessage};
    use meridian_tests::process::ServerProcess;
    use reqwest::cookie::{CookieStore, Jar};
    use reqwest::StatusCode;
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

    /// How long a socket waits for the server's next message.
    const RECV_TIMEOUT: Duration = Duration::from_secs(10);

    pub struct Client {
        http: reqwest::Client,
        jar: Arc<Jar>,
    }

    impl Client {
        pub fn new() -> Client {
            let jar = Arc::new(Jar::default());
            let http = reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("build an HTTP client");
            Client { http, jar }
        }

        /// `GET /api/auth/me` (which also gives a new client its guest session).
        pub async fn me(&self, server: &ServerProcess) -> Me {
            let response = self
                .http
                .get(server.url("/api/auth/me"))
                .send()
                .await
                .expect("GET /api/auth/me");
            assert_eq!(response.status(), StatusCode::OK);
            response.json().await.expect("a Me body")
        }

        pub async fn signup(&self, server: &ServerProcess, username: &str, password: &str) -> Me {
            self.credentials(
                server,
                "/api/auth/signup",
                username,
                password,
                StatusCode::CREATED,
            )
            .await
        }

        pub async fn signin(&self, server: &ServerProcess, username: &str, password: &str) -> Me {
            self.credentials(
                server,
                "/api/auth/signin",
                username,
                password,
                StatusCode::OK,
            )
            .await
        }

        async fn credentials(
            &self,
            server: &ServerProcess,
            path: &str,
            username: &str,
            password: &str,
            expected: StatusCode,
        ) -> Me {
            let response = self
                .http
                .post(server.url(path))
                .json(&Credentials {
                    username: username.into(),
                    password: password.into(),
                })
                .send()
                .await
                .unwrap_or_else(|e| panic!("POST {path}: {e}"));
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            assert_eq!(status, expected, "POST {path}: {body}");
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("POST {path}: {e}: {body}"))
        }

        /// Opens `/api/realtime` with this client's session cookie and reads the welcome.
        pub async fn connect(&self, server: &ServerProcess) -> Socket {
            let page = server.base_url().parse().expect("a valid URL");
            let cookie = self
                .jar
                .cookies(&page)
                .expect("the client has a session cookie (call me() first)");
            let mut request = server
                .ws_url("/api/realtime")
                .into_client_request()
                .expect("a WebSocket request");
            request.headers_mut().insert(
                "cookie",
                cookie
                    .to_str()
                    .expect("an ASCII cookie")
                    .parse()
                    .expect("a header value"),
            );
            let (stream, _) = tokio_tungstenite::connect_async(request)
                .await
                .expect("open the realtime WebSocket");
            let mut socket = Socket { stream };
            match socket.recv().await {
                ServerMessage::Welcome { .. } => socket,
                other => panic!("expected welcome, got {other:?}"),
            }
        }
    }

    pub struct Socket {
        stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    }

    impl Socket {
        pub async fn send(&mut self, message: &ClientMessage) {
            let text = serde_json::to_string(message).expect("serialise");
            self.stream
                .send(Message::Text(text.into()))
                .await
                .expect("send on the WebSocket");
        }

        /// The next protocol message; fails on a close or a timeout.
        pub async fn recv(&mut self) -> ServerMessage {
            loop {
                let frame = tokio::time::timeout(RECV_TIMEOUT, self.stream.next())
                    .await
                    .unwrap_or_else(|_| panic!("no message within {RECV_TIMEOUT:?}"));
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        return serde_json::from_str(&text)
                            .unwrap_or_else(|e| panic!("not a server message: {e}: {text}"))
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    other => panic!("expected a message, got {other:?}"),
                }
            }
        }

        /// Reads messages until `pick` returns something.
        pub async fn recv_until<T>(
            &mut self,
            what: &str,
            mut pick: impl FnMut(&ServerMessage) -> Option<T>,
        ) -> T {
            let mut skipped = Vec::new();
            loop {
                let message = tokio::time::timeout(RECV_TIMEOUT * 2, self.recv())
                    .await
                    .unwrap_or_else(|_| panic!("no {what}; got only {skipped:?}"));
                match pick(&message) {
                    Some(found) => return found,
                    None => skipped.push(message),
                }
            }
        }

        /// Reads until the server's close frame, answers it, and returns its code and
        /// reason; protocol messages before it are ignored.
        pub async fn recv_close(&mut self) -> (u16, String) {
            loop {
                let frame = tokio::time::timeout(RECV_TIMEOUT, self.stream.next())
                    .await
                    .unwrap_or_else(|_| panic!("no close frame within {RECV_TIMEOUT:?}"));
                match frame {
                    Some(Ok(Message::Close(Some(frame)))) => {
                        // Keep reading so that tungstenite answers the close handshake.
                        let _ = tokio::time::timeout(RECV_TIMEOUT, async {
                            while let Some(Ok(_)) = self.stream.next().await {}
                        })
                        .await;
                        return (u16::from(frame.code), frame.reason.to_string());
                    }
                    Some(Ok(Message::Close(None))) => panic!("a close frame without a code"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => panic!("the WebSocket failed before a close frame: {e}"),
                    None => panic!("the WebSocket ended without a close frame"),
                }
            }
        }
    }
}
