//! The codecs: the server's frames ([`decode_server_frame`]), the messages between tabs
//! ([`TabMessage`], carried as [`base64`] JSON) and the names and paths of a document.

use super::*;

/// A message from the server, one per frame.
#[derive(Debug)]
pub enum ServerFrame {
    Step1(StateVector),
    Step2(Vec<u8>),
    Update(Vec<u8>),
    Awareness(AwarenessUpdate),
    /// `02 00 reason`.
    Denied(String),
    /// Something this client does not act on (a query, a custom message).
    Ignored,
}

/// Decodes one server frame.
pub fn decode_server_frame(bytes: &[u8]) -> Result<ServerFrame, String> {
    if bytes.is_empty() {
        return Err("empty frame".to_owned());
    }
    let mut decoder = DecoderV1::new(Cursor::new(bytes));
    let message = Message::decode(&mut decoder).map_err(|error| error.to_string())?;
    Ok(match message {
        Message::Sync(SyncMessage::SyncStep1(sv)) => ServerFrame::Step1(sv),
        Message::Sync(SyncMessage::SyncStep2(update)) => ServerFrame::Step2(update),
        Message::Sync(SyncMessage::Update(update)) => ServerFrame::Update(update),
        Message::Awareness(update) => ServerFrame::Awareness(update),
        Message::Auth(reason) => ServerFrame::Denied(reason.unwrap_or_default()),
        Message::AwarenessQuery | Message::Custom(..) => ServerFrame::Ignored,
    })
}

/// Whether a replica with state vector `ours` holds content that `theirs` lacks.
pub fn has_more_than(ours: &StateVector, theirs: &StateVector) -> bool {
    ours.iter()
        .any(|(client, clock)| theirs.get(client) < *clock)
}

/// Standard base64 (RFC 4648, with padding), for updates inside JSON messages.
pub mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let text = text.trim_end_matches('=');
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        let mut buffer = 0u32;
        let mut bits = 0u32;
        for byte in text.bytes() {
            let value = ALPHABET.iter().position(|&c| c == byte)? as u32;
            buffer = (buffer << 6) | value;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((buffer >> bits) as u8);
                buffer &= (1 << bits) - 1;
            }
        }
        // Leftover bits must be padding zeros, and a lone sextet is not a byte.
        (bits < 6 && buffer == 0).then_some(out)
    }
}

/// A message between the tabs showing one document (JSON text, like the app's other
/// BroadcastChannel messages): `{"type":"update","update":"<base64 v1 update>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TabMessage {
    Update { update: String },
}

impl TabMessage {
    pub fn update(bytes: &[u8]) -> TabMessage {
        TabMessage::Update {
            update: base64::encode(bytes),
        }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The update bytes of a message; `None` for anything else.
    pub fn decode_update(text: &str) -> Option<Vec<u8>> {
        match serde_json::from_str::<TabMessage>(text).ok()? {
            TabMessage::Update { update } => base64::decode(&update),
        }
    }
}

/// The BroadcastChannel's name for a document.
pub fn tab_channel_name(doc_id: &str) -> String {
    format!("meridian-docs-{doc_id}")
}

/// Where the y-websocket protocol is spoken for a document, relative to the page.
pub fn sync_path(doc_id: &str) -> String {
    format!("/yjs/{}", path_segment(doc_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::docs::schema;
    use yrs::updates::encoder::Encode;
    use yrs::{Doc, GetString};

    fn awareness(client: u64, clock: u32, json: &str) -> AwarenessUpdate {
        one_client(client, clock, json.to_owned())
    }

    #[test]
    fn server_frames_keep_step_2_and_update_apart() {
        let doc = Doc::new();
        let sv = doc.transact().state_vector();
        assert!(matches!(
            decode_server_frame(&protocol::step1(&sv)).unwrap(),
            ServerFrame::Step1(_)
        ));
        assert!(matches!(
            decode_server_frame(&protocol::step2(vec![0, 0])).unwrap(),
            ServerFrame::Step2(u) if u == vec![0, 0]
        ));
        assert!(matches!(
            decode_server_frame(&protocol::update(vec![0, 0])).unwrap(),
            ServerFrame::Update(u) if u == vec![0, 0]
        ));
        assert!(matches!(
            decode_server_frame(&protocol::permission_denied("no")).unwrap(),
            ServerFrame::Denied(r) if r == "no"
        ));
        assert!(matches!(
            decode_server_frame(&protocol::awareness(awareness(3, 1, "{}"))).unwrap(),
            ServerFrame::Awareness(u) if u.clients.len() == 1
        ));
        assert!(matches!(
            decode_server_frame(&protocol::query_awareness()).unwrap(),
            ServerFrame::Ignored
        ));
        assert!(decode_server_frame(&[]).is_err());
        assert!(decode_server_frame(&[0, 1, 10, 0]).is_err());
    }

    #[test]
    fn a_replica_with_offline_edits_has_more_than_the_server() {
        let server = schema::new_doc_with_client(1);
        let text = server.get_or_insert_text(schema::TEXT);
        text.insert(&mut server.transact_mut(), 0, "shared");
        let client = schema::new_doc_with_client(2);
        let shared = server
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        client
            .transact_mut()
            .apply_update(Update::decode_v1(&shared).unwrap())
            .unwrap();
        let server_sv = server.transact().state_vector();
        assert!(!has_more_than(
            &client.transact().state_vector(),
            &server_sv
        ));
        let client_text = client.get_or_insert_text(schema::TEXT);
        client_text.insert(&mut client.transact_mut(), 6, " offline");
        assert!(has_more_than(&client.transact().state_vector(), &server_sv));
        // The step 2 the client answers with brings the server up to date.
        let step2 = client.transact().encode_state_as_update_v1(&server_sv);
        server
            .transact_mut()
            .apply_update(Update::decode_v1(&step2).unwrap())
            .unwrap();
        assert_eq!(text.get_string(&server.transact()), "shared offline");
        assert_eq!(
            server.transact().state_vector().encode_v1(),
            client.transact().state_vector().encode_v1()
        );
    }

    #[test]
    fn base64_matches_rfc_4648() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64::encode(plain.as_bytes()), encoded);
            assert_eq!(base64::decode(encoded).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(base64::decode(&base64::encode(&all)).unwrap(), all);
        assert_eq!(base64::decode("Zm9v!"), None);
        assert_eq!(base64::decode("Z"), None);
        assert_eq!(base64::decode("Zh=="), None, "non-zero padding bits");
    }

    #[test]
    fn tab_messages_carry_updates_as_base64_json() {
        let message = TabMessage::update(&[0, 1, 2, 250]);
        assert_eq!(message.encode(), r#"{"type":"update","update":"AAEC+g=="}"#);
        assert_eq!(
            TabMessage::decode_update(&message.encode()),
            Some(vec![0, 1, 2, 250])
        );
        assert_eq!(TabMessage::decode_update(r#"{"type":"hello"}"#), None);
        assert_eq!(TabMessage::decode_update("nope"), None);
        assert_eq!(tab_channel_name("d1"), "meridian-docs-d1");
        assert_eq!(sync_path("a/b"), "/yjs/a%2Fb");
    }
}
