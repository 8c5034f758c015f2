//! Clients of a test server, as browsers are: [`Client`] is one browser's HTTP side (a
//! reqwest client with its own cookie jar), [`Realtime`] one of its WebSocket
//! connections to `/api/realtime`, authenticated by that jar's session cookie. A client
//! talks to an in-process [`TestServer`] ([`Client::new`]) or to any server by its base
//! URL ([`Client::at`]), such as a [`ServerProcess`](crate::process::ServerProcess).
//!
//! [`SilentSocket`] is a connection whose client has frozen: after its handshake it never
//! writes again, so it answers no heartbeat (tungstenite answers pings whenever it reads,
//! so this one reads frames itself).
//!
//! Every wait is bounded by [`RECV_TIMEOUT`] and fails the test when it runs out: a
//! missing message is a failure, never a hang.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use meridian_shared::api::{Credentials, Me};
use meridian_shared::realtime::{ClientMessage, ServerMessage};
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::server::TestServer;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "meridian_session";
/// How long a client waits for an answer or a message before failing the test.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP answer: status, headers and the JSON body (`Null` when empty).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

impl Reply {
    async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("read the response body");
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!(
                    "{status}: the body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&body)
                )
            })
        };
        Reply {
            status,
            headers,
            json,
        }
    }

    /// The body as a wire type.
    pub fn parse<T: DeserializeOwned>(&self) -> T {
        serde_json::from_value(self.json.clone())
            .unwrap_or_else(|e| panic!("{}: unexpected body ({e}): {}", self.status, self.json))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("a text header"))
    }

    /// Asserts the status, then parses the body.
    pub fn expect<T: DeserializeOwned>(&self, status: u16) -> T {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.json);
        self.parse()
    }

    /// Asserts that this is the one error shape: `status` and exactly
    /// `{"code": code, "message": <some text>}`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.json);
        assert_error_body(&self.json, code);
    }
}

/// Asserts that `body` is exactly `{"code": code, "message": <non-empty text>}`.
pub fn assert_error_body(body: &Value, code: &str) {
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("an error body is an object: {body}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message"], "error body: {body}");
    assert_eq!(object["code"], code, "error body: {body}");
    assert!(
        object["message"].as_str().is_some_and(|m| !m.is_empty()),
        "an error message is non-empty text: {body}"
    );
}

/// One browser: a cookie jar and the HTTP client that uses it.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    jar: Arc<Jar>,
    base: Url,
}

impl Client {
    /// A new browser (no cookies yet) for `server`.
    pub fn new(server: &TestServer) -> Client {
        Client::at(&server.base_url())
    }

    /// A new browser (no cookies yet) for the server at `base_url` (`http://host:port`):
    /// an in-process [`TestServer`] or a [`ServerProcess`](crate::process::ServerProcess).
    pub fn at(base_url: &str) -> Client {
        Client::with_user_agent_at(base_url, "meridian-tests")
    }

    /// A new browser that sends this `User-Agent`.
    pub fn with_user_agent(server: &TestServer, user_agent: &str) -> Client {
        Client::with_user_agent_at(&server.base_url(), user_agent)
    }

    /// A new browser for the server at `base_url` that sends this `User-Agent`.
    pub fn with_user_agent_at(base_url: &str, user_agent: &str) -> Client {
        Client::build(base_url, user_agent, Arc::new(Jar::default()))
    }

    /// A new browser holding someone's session token (a copied or replayed cookie).
    pub fn with_session_token(server: &TestServer, token: &str) -> Client {
        Client::with_session_token_at(&server.base_url(), token)
    }

    /// A new browser for the server at `base_url` holding someone's session token.
    pub fn with_session_token_at(base_url: &str, token: &str) -> Client {
        let jar = Arc::new(Jar::default());
        jar.add_cookie_str(
            &format!("{SESSION_COOKIE}={token}; Path=/"),
            &parse_base(base_url),
        );
        Client::build(base_url, "meridian-tests", jar)
    }

    /// The same browser (the same cookie jar, shared, and the same HTTP client) talking
    /// to the server at `base_url`: another instance, or a restarted one. Its cookies
    /// are host-only, so those of `127.0.0.1` go to every port of it.
    pub fn same_browser_at(&self, base_url: &str) -> Client {
        Client {
            http: self.http.clone(),
            jar: self.jar.clone(),
            base: parse_base(base_url),
        }
    }

    fn build(base_url: &str, user_agent: &str, jar: Arc<Jar>) -> Client {
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .user_agent(user_agent)
            .timeout(RECV_TIMEOUT)
            .build()
            .expect("build an HTTP client");
        Client {
            http,
            jar,
            base: parse_base(base_url),
        }
    }

    /// The reqwest client, with this browser's cookies, for requests the helpers do not
    /// cover (custom headers, raw bodies).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("a valid path")
    }

    /// `host:port` of this browser's server.
    pub fn authority(&self) -> String {
        format!(
            "{}:{}",
            self.base.host_str().expect("a host"),
            self.base.port().expect("a port")
        )
    }

    /// `ws://.../api/realtime` of this browser's server.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/realtime", self.authority())
    }

    /// Sends a request built on this client and reads the answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        Reply::read(request.send().await.expect("send the request")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post_json(&self, path: &str, body: &impl Serialize) -> Reply {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn post_empty(&self, path: &str) -> Reply {
        self.send(self.http.post(self.url(path))).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.http.delete(self.url(path))).await
    }

    pub async fn signup(&self, username: &str, password: &str) -> Reply {
        self.post_json("/api/auth/signup", &credentials(username, password))
            .await
    }

    pub async fn signin(&self, username: &str, password: &str) -> Reply {
        self.post_json("/api/auth/signin", &credentials(username, password))
            .await
    }

    pub async fn signout(&self) -> Reply {
        self.post_empty("/api/auth/signout").await
    }

    /// `GET /api/auth/me`, which must succeed.
    pub async fn me(&self) -> Me {
        self.get("/api/auth/me").await.expect(200)
    }

    /// The `Cookie` header this browser sends to its server, if any.
    pub fn cookie_header(&self) -> Option<String> {
        self.jar
            .cookies(&self.base)
            .map(|v| v.to_str().expect("cookies are text").to_owned())
    }

    /// The session token in this browser's jar, if it has one.
    pub fn session_token(&self) -> Option<String> {
        let header = self.cookie_header()?;
        header
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .map(|(_, value)| value.to_owned())
    }
}

fn parse_base(base_url: &str) -> Url {
    Url::parse(base_url).unwrap_or_else(|e| panic!("{base_url:?} is not a valid URL: {e}"))
}

fn credentials(username: &str, password: &str) -> Credentials {
    Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What arrived on a realtime connection (pings and pongs are answered and skipped).
#[derive(Debug)]
pub enum Frame {
    Message(ServerMessage),
    /// A close frame: its code and reason (1005 when it had none).
    Close(u16, String),
    /// The connection ended without a close frame.
    Ended(String),
}

/// A refused WebSocket upgrade: the HTTP status and the JSON body.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: Value,
}

/// What the server said in its `welcome`.
#[derive(Debug, Clone)]
pub struct Welcome {
    pub connection_id: String,
    pub session_id: String,
    pub instance_id: String,
    pub heartbeat_ms: u64,
}

/// One WebSocket connection to `/api/realtime`.
pub struct Realtime {
    socket: Socket,
}

impl Realtime {
    /// Connects as `client` (with its session cookie) and reads the `welcome`, which must
    /// be the first message.
    pub async fn connect(client: &Client) -> (Realtime, Welcome) {
        let mut realtime = Realtime::open(client).await;
        let welcome = realtime.recv_welcome().await;
        (realtime, welcome)
    }

    /// Connects as `client` without reading anything.
    pub async fn open(client: &Client) -> Realtime {
        let cookie = client
            .cookie_header()
            .expect("the client has a session cookie: make a request first");
        Realtime::try_connect(&client.ws_url(), &[("cookie", &cookie)])
            .await
            .unwrap_or_else(|refused| panic!("the upgrade was refused: {refused:?}"))
    }

    /// Opens a connection with exactly these extra request headers. A refusal (an HTTP
    /// answer instead of `101`) is `Err`; any other failure fails the test.
    pub async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<Realtime, Refused> {
        let mut request = url.into_client_request().expect("a WebSocket URL");
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        let connecting = tokio_tungstenite::connect_async(request);
        match tokio::time::timeout(RECV_TIMEOUT, connecting).await {
            Err(_) => panic!("the WebSocket handshake took over {RECV_TIMEOUT:?}"),
            Ok(Ok((socket, _response))) => Ok(Realtime { socket }),
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_deref()
                    .map(|b| serde_json::from_slice(b).expect("a refusal has a JSON body"))
                    .unwrap_or(Value::Null);
                Err(Refused { status, body })
            }
            Ok(Err(err)) => panic!("the WebSocket handshake failed: {err}"),
        }
    }

    /// Sends a protocol message.
    pub async fn send(&mut self, message: &ClientMessage) {
        let text = serde_json::to_string(message).expect("client messages serialise");
        self.send_raw(Message::text(text)).await;
    }

    /// Sends any frame, protocol or not.
    pub async fn send_raw(&mut self, message: Message) {
        tokio::time::timeout(RECV_TIMEOUT, self.socket.send(message))
            .await
            .expect("sending took too long")
            .expect("send a frame");
    }

    /// The next message, a close, or the end; fails the test after [`RECV_TIMEOUT`].
    pub async fn next_frame(&mut self) -> Frame {
        let deadline = Instant::now() + RECV_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = match tokio::time::timeout(left, self.socket.next()).await {
                Err(_) => panic!("nothing arrived within {RECV_TIMEOUT:?}"),
                Ok(frame) => frame,
            };
            match frame {
                None => return Frame::Ended("the stream ended".into()),
                Some(Err(err)) => return Frame::Ended(err.to_string()),
                Some(Ok(Message::Text(text))) => {
                    let message = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("not a server message ({e}): {text}"));
                    return Frame::Message(message);
                }
                Some(Ok(Message::Close(frame))) => {
                    return match frame {
                        Some(frame) => Frame::Close(frame.code.into(), frame.reason.to_string()),
                        None => Frame::Close(1005, String::new()),
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(bytes))) => {
                    panic!("the server sent a binary frame of {} bytes", bytes.len())
                }
            }
        }
    }

    /// The next protocol message; a close or the end fails the test.
    pub async fn recv(&mut self) -> ServerMessage {
        match self.next_frame().await {
            Frame::Message(message) => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Reads the `welcome`.
    pub async fn recv_welcome(&mut self) -> Welcome {
        match self.recv().await {
            ServerMessage::Welcome {
                connection_id,
                session_id,
                instance_id,
                heartbeat_ms,
            } => Welcome {
                connection_id,
                session_id,
                instance_id,
                heartbeat_ms,
            },
            other => panic!("expected welcome first, got {other:?}"),
        }
    }

    /// The close frame that must come next: `(code, reason)`. A message before it, or
    /// the end without one, fails the test.
    pub async fn recv_close(&mut self) -> (u16, String) {
        match self.next_frame().await {
            Frame::Close(code, reason) => (code, reason),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    /// Reads protocol messages until `pick` returns something, and returns that; the
    /// messages before it are skipped. A close, the end or [`RECV_TIMEOUT`] passing
    /// without a message fails the test.
    pub async fn recv_until<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&ServerMessage) -> Option<T>,
    ) -> T {
        let mut skipped = Vec::new();
        loop {
            let message = match self.next_frame().await {
                Frame::Message(message) => message,
                other => panic!("expected {what}, got {other:?} after {skipped:?}"),
            };
            match pick(&message) {
                Some(found) => return found,
                None => skipped.push(message),
            }
        }
    }

    /// Skips every frame (protocol messages included) until the server's close frame,
    /// which must carry a code, then keeps reading until the connection ends (at most
    /// [`RECV_TIMEOUT`]) so that the close is answered: `(code, reason)`. An error or
    /// the end before the close frame fails the test, and so does [`RECV_TIMEOUT`]
    /// passing between two frames.
    pub async fn recv_close_and_answer(&mut self) -> (u16, String) {
        loop {
            let frame = tokio::time::timeout(RECV_TIMEOUT, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no close frame within {RECV_TIMEOUT:?}"));
            match frame {
                Some(Ok(Message::Close(Some(frame)))) => {
                    // tungstenite sends its answer to a close on the next read.
                    let _ = tokio::time::timeout(RECV_TIMEOUT, async {
                        while let Some(Ok(_)) = self.socket.next().await {}
                    })
                    .await;
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Some(Ok(Message::Close(None))) => panic!("a close frame without a code"),
                Some(Ok(_)) => continue,
                Some(Err(err)) => panic!("the WebSocket failed before a close frame: {err}"),
                None => panic!("the WebSocket ended without a close frame"),
            }
        }
    }

    /// Subscribes and reads the `subscribed` answer: `(head, truncated)`.
    pub async fn subscribe(&mut self, topic: &str, since: Option<u64>) -> (u64, bool) {
        self.send(&ClientMessage::Subscribe {
            topic: topic.to_owned(),
            since,
        })
        .await;
        match self.recv().await {
            ServerMessage::Subscribed {
                topic: answered,
                head,
                truncated,
            } => {
                assert_eq!(answered, topic);
                (head, truncated)
            }
            other => panic!("expected subscribed to {topic}, got {other:?}"),
        }
    }

    /// Keeps reading (so that the server's pings are answered) until `condition` holds;
    /// a protocol message or a close meanwhile fails the test, and so does
    /// [`RECV_TIMEOUT`] passing.
    pub async fn keep_reading_until(&mut self, what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + RECV_TIMEOUT;
        while !condition() {
            assert!(
                Instant::now() < deadline,
                "timed out after {RECV_TIMEOUT:?} waiting for {what}"
            );
            let slice = tokio::time::timeout(Duration::from_millis(10), self.socket.next());
            match slice.await {
                Err(_) => {}
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(other) => panic!("while waiting for {what}: unexpected {other:?}"),
            }
        }
    }

    /// Closes the connection from the client side (a normal close).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(RECV_TIMEOUT, self.socket.close(None)).await;
    }
}

/// A frame as [`SilentSocket`] reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum RawFrame {
    Text(String),
    Binary(Vec<u8>),
    Ping,
    Pong,
    /// Code (1005 when absent) and reason.
    Close(u16, String),
}

/// A realtime connection that never writes after its handshake: it does not answer pings
/// and does not reply to a close. What a frozen tab or a vanished network looks like
/// from the server.
pub struct SilentSocket {
    stream: TcpStream,
    /// Bytes read from the socket and not yet parsed.
    buffer: Vec<u8>,
}

impl SilentSocket {
    /// Opens `/api/realtime` as `client` (with its session cookie); the upgrade must
    /// succeed.
    pub async fn connect(client: &Client) -> SilentSocket {
        let cookie = client
            .cookie_header()
            .expect("the client has a session cookie: make a request first");
        let authority = client.authority();
        let stream = tokio::time::timeout(RECV_TIMEOUT, TcpStream::connect(&authority))
            .await
            .expect("connecting took too long")
            .expect("connect to the server");
        let mut socket = SilentSocket {
            stream,
            buffer: Vec::new(),
        };
        let request = format!(
            "GET /api/realtime HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nCookie: {cookie}\r\n\r\n"
        );
        socket
            .stream
            .write_all(request.as_bytes())
            .await
            .expect("send the upgrade request");
        let head_end = loop {
            if let Some(at) = socket.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(
                socket.fill().await,
                "the server closed during the handshake"
            );
        };
        let head = String::from_utf8_lossy(&socket.buffer[..head_end]).into_owned();
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "the upgrade failed: {head}"
        );
        socket.buffer.drain(..head_end);
        socket
    }

    /// Reads more bytes; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let read = tokio::time::timeout(RECV_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("nothing arrived within {RECV_TIMEOUT:?}"))
            .expect("read from the server");
        self.buffer.extend_from_slice(&chunk[..read]);
        read > 0
    }

    async fn need(&mut self, len: usize) {
        while self.buffer.len() < len {
            assert!(
                self.fill().await,
                "the connection ended in the middle of a frame"
            );
        }
    }

    /// The next frame (server frames are unmasked and, here, unfragmented); `None` when
    /// the connection ended.
    pub async fn next_frame(&mut self) -> Option<RawFrame> {
        if self.buffer.is_empty() && !self.fill().await {
            return None;
        }
        self.need(2).await;
        let (first, second) = (self.buffer[0], self.buffer[1]);
        assert_eq!(second & 0x80, 0, "server frames are not masked");
        let (header, len) = match second & 0x7f {
            126 => {
                self.need(4).await;
                (
                    4,
                    u16::from_be_bytes([self.buffer[2], self.buffer[3]]) as usize,
                )
            }
            127 => {
                self.need(10).await;
                let bytes: [u8; 8] = self.buffer[2..10].try_into().unwrap();
                (10, u64::from_be_bytes(bytes) as usize)
            }
            short => (2, short as usize),
        };
        self.need(header + len).await;
        let payload: Vec<u8> = self.buffer.drain(..header + len).skip(header).collect();
        assert_eq!(first & 0x80, 0x80, "the server sends whole messages");
        Some(match first & 0x0f {
            0x1 => RawFrame::Text(String::from_utf8(payload).expect("text frames are UTF-8")),
            0x2 => RawFrame::Binary(payload),
            0x8 if payload.len() >= 2 => RawFrame::Close(
                u16::from_be_bytes([payload[0], payload[1]]),
                String::from_utf8_lossy(&payload[2..]).into_owned(),
            ),
            0x8 => RawFrame::Close(1005, String::new()),
            0x9 => RawFrame::Ping,
            0xa => RawFrame::Pong,
            opcode => panic!("unexpected opcode {opcode:#x}"),
        })
    }

    /// The next protocol message.
    pub async fn recv(&mut self) -> ServerMessage {
        match self.next_frame().await {
            Some(RawFrame::Text(text)) => serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("not a server message ({e}): {text}")),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Skips pings until the close frame: `(code, reason)`. Anything else fails the test.
    pub async fn recv_close(&mut self) -> (u16, String) {
        loop {
            match self.next_frame().await {
                Some(RawFrame::Ping) => continue,
                Some(RawFrame::Close(code, reason)) => return (code, reason),
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }
}

// ---- Feature flags: roles, delivery keys and the SSE streams (tests/tests/flags*.rs) ----

impl Client {
    /// As an admin: gives the account signed in on `other` the `role` (`admin`, `editor`,
    /// `viewer`) through `PUT /api/admin/users/{id}/role`, which must succeed.
    pub async fn grant_role(&self, other: &Client, role: &str) {
        let user = other
            .me()
            .await
            .user
            .expect("the other client is signed in");
        let reply = self
            .send(
                self.http
                    .put(self.url(&format!("/api/admin/users/{}/role", user.id)))
                    .json(&serde_json::json!({ "role": role })),
            )
            .await;
        assert_eq!(reply.status.as_u16(), 200, "grant {role}: {}", reply.json);
    }

    /// As an admin: a new delivery key (`server` or `client`) of `environment`.
    pub async fn create_flag_key(
        &self,
        environment: &str,
        kind: &str,
    ) -> meridian_shared::flags::admin::NewKey {
        self.post_json(
            &format!("/api/flags/environments/{environment}/keys"),
            &serde_json::json!({ "kind": kind }),
        )
        .await
        .expect(201)
    }
}

/// A raw subscription to one of the flags' Server-Sent Events streams
/// (`/api/flags/stream`, `/api/flags/stream/evaluated`): reads `put` events as they come.
pub struct FlagStream {
    response: reqwest::Response,
    buffer: String,
}

impl FlagStream {
    /// Opens `path` (with its query) on `client`'s server, with `client`'s cookies and,
    /// if given, `key` as `Authorization: Bearer`, and `Last-Event-ID`. A refusal is
    /// `Err` with the answer.
    pub async fn open(
        client: &Client,
        path: &str,
        key: Option<&str>,
        last_event_id: Option<u64>,
    ) -> Result<FlagStream, Reply> {
        // A stream stays open past the client's timeout; each read is bounded instead.
        let mut request = client
            .http
            .get(client.url(path))
            .timeout(Duration::from_secs(3600));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = tokio::time::timeout(RECV_TIMEOUT, request.send())
            .await
            .expect("the stream answered in time")
            .expect("open the stream");
        if response.status() != StatusCode::OK {
            return Err(Reply::read(response).await);
        }
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Ok(FlagStream {
            response,
            buffer: String::new(),
        })
    }

    /// The next `put` event as (id, data), `None` if none comes within `wait`. Fails the
    /// test if the stream ends.
    pub async fn next_put(&mut self, wait: Duration) -> Option<(u64, String)> {
        match self.next_put_or_end(wait).await {
            Some(Some(put)) => Some(put),
            Some(None) => panic!("the stream ended"),
            None => None,
        }
    }

    /// Waits up to `wait` for the stream to end, skipping events; false if it did not.
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_put_or_end(left).await {
                Some(Some(_)) => continue,
                Some(None) => return true,
                None => return false,
            }
        }
    }

    /// `Some(Some(put))`, `Some(None)` at the end of the stream, `None` after `wait`.
    async fn next_put_or_end(&mut self, wait: Duration) -> Option<Option<(u64, String)>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut put, mut id, mut data) = (false, 0, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        put = v.trim() == "put";
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().expect("a numeric id");
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if put {
                    return Some(Some((id, data)));
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) => return Some(None),
                Ok(Err(err)) => panic!("the stream failed: {err}"),
            }
        }
    }
}
