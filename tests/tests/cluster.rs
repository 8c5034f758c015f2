//! Several server processes on one PostgreSQL database (PostgreSQL only: SQLite is one
//! process's file). Instances tell each other about events and session revocations
//! through LISTEN/NOTIFY, so what a client does through one instance reaches clients
//! connected to another:
//!
//! - an event published through B reaches a subscriber on A (and back), with the same
//!   sequence numbers everywhere;
//! - sessions live in the shared database, so a cookie from A works on B, and revoking a
//!   session through B closes its WebSocket on A with 4001.

use meridian_shared::api::{SessionKind, SessionList};
use meridian_shared::realtime::{close_code, ClientMessage, Event, ServerMessage};
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::process::ServerProcess;
use reqwest::StatusCode;
use serde_json::json;

use self::support::{Client, Socket};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const PASSWORD: &str = "two-of-them-77";
const TOPIC: &str = "public:cluster";

async fn subscribe(socket: &mut Socket, topic: &str) {
    socket
        .send(&ClientMessage::Subscribe {
            topic: topic.into(),
            since: None,
        })
        .await;
    match socket.recv().await {
        ServerMessage::Subscribed { topic: t, .. } if t == topic => {}
        other => panic!("expected subscribed to {topic}, got {other:?}"),
    }
}

async fn publish(socket: &mut Socket, op_id: &str, text: &str) -> u64 {
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

async fn next_event(socket: &mut Socket) -> Event {
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

    let on_a = Client::new();
    on_a.me(&a).await;
    let mut socket_a = on_a.connect(&a).await;
    subscribe(&mut socket_a, TOPIC).await;
    let on_b = Client::new();
    on_b.me(&b).await;
    let mut socket_b = on_b.connect(&b).await;
    subscribe(&mut socket_b, TOPIC).await;

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
        let late = Client::new();
        late.me(server).await;
        let mut socket = late.connect(server).await;
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
    let laptop = Client::new();
    let me = laptop.signup(&a, "carol", PASSWORD).await;
    let laptop_session = me.session_id.clone();
    let laptop_cookie = laptop.cookie(&a);
    let mut socket = laptop.connect(&a).await;
    subscribe(&mut socket, TOPIC).await;

    // Its cookie works on B: sessions live in the shared database.
    let on_b = laptop.me(&b).await;
    assert_eq!(on_b.session_id, laptop_session);
    assert_eq!(on_b.kind, SessionKind::User);

    // A phone signs in to the same account on B and revokes the laptop's session.
    let phone = Client::new();
    let phone_me = phone.signin(&b, "carol", PASSWORD).await;
    let list: SessionList = phone.get_json(&b, "/api/auth/sessions").await;
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
    let status = phone
        .delete(&b, &format!("/api/auth/sessions/{laptop_session}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (code, reason) = socket.recv_close().await;
    assert_eq!(
        code,
        close_code::SESSION_REVOKED,
        "close code after revocation on another instance (reason {reason:?})"
    );

    // The revoked cookie no longer authenticates, on either instance: each answers
    // with a fresh guest session.
    for server in [&a, &b] {
        let after = Client::with_cookie(server, &laptop_cookie).me(server).await;
        assert_ne!(after.session_id, laptop_session);
        assert_eq!(after.kind, SessionKind::Guest);
    }
}

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

        pub async fn get_json<T: serde::de::DeserializeOwned>(
            &self,
            server: &ServerProcess,
            path: &str,
        ) -> T {
            let response = self
                .http
                .get(server.url(path))
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {path}: {e}"));
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
        }

        pub async fn delete(&self, server: &ServerProcess, path: &str) -> StatusCode {
            self.http
                .delete(server.url(path))
                .send()
                .await
                .unwrap_or_else(|e| panic!("DELETE {path}: {e}"))
                .status()
        }

        /// A client whose jar starts with `cookie` (a `Cookie` header value) for `server`.
        pub fn with_cookie(server: &ServerProcess, cookie: &str) -> Client {
            let client = Client::new();
            let url = server.base_url().parse().expect("a valid URL");
            for pair in cookie.split(';') {
                client.jar.add_cookie_str(pair.trim(), &url);
            }
            client
        }

        /// This client's `Cookie` header for `server`.
        pub fn cookie(&self, server: &ServerProcess) -> String {
            let url = server.base_url().parse().expect("a valid URL");
            self.jar
                .cookies(&url)
                .expect("the client has a session cookie")
                .to_str()
                .expect("an ASCII cookie")
                .to_owned()
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
