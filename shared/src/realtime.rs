//! The realtime channel's wire protocol: JSON text frames over the WebSocket at
//! `/api/realtime`, one message per frame.
//!
//! A topic is a durable, ordered log: every published event gets the next sequence number
//! of its topic (1, 2, 3, ...). A client subscribes with the last sequence number it has
//! seen and first receives what it missed, then live events. A publish carries a
//! client-made `op_id`; publishing the same `op_id` to the same topic again is acknowledged
//! with the original sequence number and is not applied twice, so an offline queue can
//! replay blindly after a reconnect.
//!
//! Topics are named `<namespace>:<name>`:
//! - `public:<name>`: anyone may subscribe and publish;
//! - `user:<user_id>`: the sessions of that account may subscribe; only the server
//!   publishes;
//! - `session:<session_id>`: that session may subscribe; only the server publishes.

use serde::{Deserialize, Serialize};

/// The largest accepted text frame, in bytes.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// The largest accepted `payload` of a publish, in bytes of JSON.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;
/// How many topics one connection may subscribe to.
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// How many missed events a subscribe replays at most; older ones are reported as
/// truncated.
pub const MAX_REPLAY: usize = 1000;

/// The close codes of every server WebSocket, the realtime channel and the documents'
/// `/yjs/{doc_id}` alike: one table, one name per code. 4000-4999 are application codes;
/// the y-websocket clients rely on 4400, 4403, 4404, 4429 and 1011.
pub mod close_code {
    /// The server is shutting down; reconnect to another instance or later.
    pub const GOING_AWAY: u16 = 1001;
    /// The client sent something that is not a protocol message (realtime channel).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// The client sent a kind of frame the endpoint does not speak (binary frames on the
    /// realtime channel).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// The client sent a frame over the endpoint's limit ([`super::MAX_FRAME_BYTES`] on
    /// the realtime channel).
    pub const TOO_BIG: u16 = 1009;
    /// The server could not read or store a document: reconnect and resend what was not
    /// confirmed.
    pub const STORAGE_FAILED: u16 = 1011;
    /// The client did not answer heartbeats (pings).
    pub const HEARTBEAT_TIMEOUT: u16 = 4000;
    /// The session was signed out or revoked.
    pub const SESSION_REVOKED: u16 = 4001;
    /// The account's role changed: fetch `/api/auth/me` again and reconnect at once (the
    /// new connection has what the new role allows).
    pub const ACCESS_CHANGED: u16 = 4003;
    /// The client read too slowly and its outgoing queue filled up.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// A frame that is not exactly one valid y-websocket message.
    pub const MALFORMED: u16 = 4400;
    /// A viewer sent a document update (after an auth "permission denied" message), or
    /// access to the document was removed while connected.
    pub const READ_ONLY: u16 = 4403;
    /// The document was deleted.
    pub const DELETED: u16 = 4404;
    /// More messages per second than any editor sends.
    pub const RATE_LIMITED: u16 = 4429;
}

/// The `code` of an `error` message. Codes marked retryable may succeed when the same
/// message is sent again later; the others are final for that message.
pub mod error_code {
    pub const INVALID_TOPIC: &str = "invalid_topic";
    pub const FORBIDDEN_TOPIC: &str = "forbidden_topic";
    pub const TOO_MANY_SUBSCRIPTIONS: &str = "too_many_subscriptions";
    pub const INVALID_OP_ID: &str = "invalid_op_id";
    pub const INVALID_PAYLOAD: &str = "invalid_payload";
    /// Retryable: the connection published too fast.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// Retryable: the server could not reach its database.
    pub const UNAVAILABLE: &str = "unavailable";

    pub fn is_retryable(code: &str) -> bool {
        matches!(code, RATE_LIMITED | UNAVAILABLE)
    }
}

/// A message from the browser to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Start receiving a topic's events. With `since`, first replay every event after that
    /// sequence number.
    Subscribe {
        topic: String,
        #[serde(default)]
        since: Option<u64>,
    },
    Unsubscribe {
        topic: String,
    },
    /// Append an event to a topic. Idempotent per `(topic, op_id)`.
    Publish {
        op_id: String,
        topic: String,
        payload: serde_json::Value,
    },
    /// Application-level heartbeat; answered with `pong` carrying the same nonce.
    Ping {
        nonce: u64,
    },
}

/// A message from the server to the browser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The first message on every connection.
    Welcome {
        connection_id: String,
        /// The same id as `Me::session_id` of the session that connected.
        session_id: String,
        /// The id of the server instance this connection reached.
        instance_id: String,
        /// How often the client should ping, in milliseconds.
        heartbeat_ms: u64,
    },
    /// A subscribe succeeded. `head` is the topic's latest sequence number. With `since`,
    /// the replay that follows is the newest events after `since` (at most
    /// [`MAX_REPLAY`]); `truncated` says that older ones between `since` and the first
    /// replayed event are not sent (or no longer kept).
    Subscribed {
        topic: String,
        head: u64,
        truncated: bool,
    },
    Unsubscribed {
        topic: String,
    },
    /// One event of a topic.
    Event(Event),
    /// A publish is durable. `duplicate` is true when the op had already been applied.
    Ack {
        op_id: String,
        topic: String,
        seq: u64,
        duplicate: bool,
    },
    /// A request was refused; the connection stays open.
    Error {
        code: String,
        message: String,
        /// The publish this error answers, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        op_id: Option<String>,
        /// The topic this error concerns, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
    },
    Pong {
        nonce: u64,
    },
}

/// An event in a topic's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub topic: String,
    pub seq: u64,
    pub op_id: String,
    pub payload: serde_json::Value,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// The namespace of a topic, after [`Topic::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic<'a> {
    Public(&'a str),
    User(&'a str),
    Session(&'a str),
}

/// Why a topic name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicError(pub &'static str);

impl<'a> Topic<'a> {
    /// Parses `namespace:name`. Names are 1 to 64 characters of `[A-Za-z0-9_.-]`.
    pub fn parse(topic: &'a str) -> Result<Topic<'a>, TopicError> {
        let (namespace, name) = topic
            .split_once(':')
            .ok_or(TopicError("a topic is `namespace:name`"))?;
        if name.is_empty() || name.len() > 64 {
            return Err(TopicError("a topic name has 1 to 64 characters"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(TopicError(
                "a topic name has only letters, digits, `_`, `-` and `.`",
            ));
        }
        match namespace {
            "public" => Ok(Topic::Public(name)),
            "user" => Ok(Topic::User(name)),
            "session" => Ok(Topic::Session(name)),
            _ => Err(TopicError(
                "the topic namespace is one of `public`, `user`, `session`",
            )),
        }
    }
}

/// An op id is 1 to 128 printable ASCII characters.
pub fn valid_op_id(op_id: &str) -> bool {
    !op_id.is_empty() && op_id.len() <= 128 && op_id.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_use_a_type_tag() {
        let msg: ClientMessage =
            serde_json::from_str(r#"{"type":"subscribe","topic":"public:lobby"}"#).unwrap();
        assert_eq!(
            msg,
            ClientMessage::Subscribe {
                topic: "public:lobby".into(),
                since: None
            }
        );
        let event = ServerMessage::Event(Event {
            topic: "public:lobby".into(),
            seq: 7,
            op_id: "a".into(),
            payload: serde_json::json!({"text": "hi"}),
            at_ms: 1,
        });
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "event");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["payload"]["text"], "hi");
    }

    #[test]
    fn topics_parse_by_namespace() {
        assert_eq!(Topic::parse("public:lobby"), Ok(Topic::Public("lobby")));
        assert_eq!(Topic::parse("user:abc"), Ok(Topic::User("abc")));
        assert_eq!(Topic::parse("session:x-1"), Ok(Topic::Session("x-1")));
        assert!(Topic::parse("lobby").is_err());
        assert!(Topic::parse("public:").is_err());
        assert!(Topic::parse("public:a b").is_err());
        assert!(Topic::parse("admin:x").is_err());
        assert!(Topic::parse(&format!("public:{}", "a".repeat(65))).is_err());
    }

    #[test]
    fn close_codes_are_distinct() {
        use close_code::*;
        let mut codes = [
            GOING_AWAY,
            PROTOCOL_ERROR,
            UNSUPPORTED_DATA,
            TOO_BIG,
            STORAGE_FAILED,
            HEARTBEAT_TIMEOUT,
            SESSION_REVOKED,
            ACCESS_CHANGED,
            SLOW_CONSUMER,
            MALFORMED,
            READ_ONLY,
            DELETED,
            RATE_LIMITED,
        ];
        codes.sort_unstable();
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "{codes:?}");
    }

    #[test]
    fn op_ids_are_short_printable_ascii() {
        assert!(valid_op_id("0f3a-1"));
        assert!(!valid_op_id(""));
        assert!(!valid_op_id("a b"));
        assert!(!valid_op_id(&"x".repeat(129)));
    }
}
