//! Collaborative documents: the wire types of `/api/docs`, the y-websocket frame codec
//! spoken at `/yjs/{doc_id}`, and the document schema both sides edit.
//!
//! The schema is the one Quill and y-quill use, so a stock Yjs client edits the same
//! thing we do: one `Y.Text` named [`schema::TEXT`]; inline formatting as attributes on
//! runs (`bold: true`, `italic: true`); paragraphs end with `"\n"`, and a heading is the
//! attribute `header: 1..=3` on the `"\n"` that ends its line. Offsets are UTF-16 code
//! units, as in Yjs.
//!
//! Invariants:
//! - One protocol message per WebSocket frame: [`protocol::decode_frame`] refuses
//!   trailing bytes, so a frame the JavaScript client would half-read is never applied.
//! - An update inside a sync message is decoded before it is accepted; a frame whose
//!   update does not decode is malformed as a whole.

use serde::{Deserialize, Serialize};

/// A member's role. The owner is not a member row; it is reported as [`Role::Owner`].
/// (Its OpenAPI schema is `DocRole`: `Role` is an account's role, [`crate::api::Role`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = DocRole))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Editor,
    Viewer,
}

impl Role {
    /// Whether this role may change the document's content.
    pub fn can_edit(self) -> bool {
        matches!(self, Role::Owner | Role::Editor)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "editor" => Some(Role::Editor),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// Someone who may open a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    pub user_id: String,
    pub username: String,
    pub role: Role,
}

/// A document as its members see it (`GET /api/docs/{id}`, and the answer of create,
/// rename and share).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Doc {
    pub id: String,
    pub title: String,
    /// The caller's role.
    pub role: Role,
    pub owner: Member,
    /// Everyone who may open it, the owner first.
    pub members: Vec<Member>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Where the y-websocket protocol is spoken for this document (`/yjs/{id}`).
    pub sync_path: String,
}

/// `GET /api/docs`: the documents the caller may open, most recently changed first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DocList {
    pub docs: Vec<DocSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DocSummary {
    pub id: String,
    pub title: String,
    pub role: Role,
    pub owner: Member,
    pub updated_ms: i64,
}

/// `POST /api/docs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateDoc {
    pub title: String,
}

/// `PATCH /api/docs/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RenameDoc {
    pub title: String,
}

/// `POST /api/docs/{id}/members`: adds someone by username, or changes their role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareDoc {
    pub username: String,
    /// `editor` or `viewer`.
    pub role: Role,
}

/// Why a version exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VersionKind {
    /// Saved by someone, with a name.
    Named,
    /// Saved by the server while the document was being edited.
    Auto,
    /// Saved just before a restore replaced the content.
    BeforeRestore,
}

/// A saved state of a document. Its content is `GET .../versions/{id}/update`: a Yjs v1
/// update that builds the whole document as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Version {
    pub id: String,
    pub doc_id: String,
    pub kind: VersionKind,
    pub name: Option<String>,
    pub created_ms: i64,
    /// The username of whoever saved it (none for automatic versions).
    pub created_by: Option<String>,
    /// The number of updates the document had received when it was saved.
    pub seq: i64,
    /// The first characters of its text, for the list.
    pub preview: String,
}

/// `GET /api/docs/{id}/versions`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionList {
    pub versions: Vec<Version>,
}

/// `POST /api/docs/{id}/versions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateVersion {
    pub name: String,
}

/// `POST /api/docs/{id}/versions/{version_id}/restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Restored {
    /// The version saved just before the restore (so a restore can itself be undone).
    pub before: Version,
    /// The document's update count after the restore's edit.
    pub seq: i64,
}

/// `GET /api/docs/rooms`: what this server instance holds in memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomStats {
    pub loaded_rooms: usize,
    pub connections: usize,
    pub rooms: Vec<RoomInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomInfo {
    pub doc_id: String,
    pub connections: usize,
    /// The number of the last update the room holds (updates are numbered from 1).
    pub seq: i64,
    /// Updates stored since the last snapshot (compaction brings it back to 0).
    pub since_snapshot: i64,
    /// Size of the document's encoded state.
    pub state_bytes: usize,
}

/// The close codes of `/yjs/{doc_id}` are the server's one table,
/// [`crate::realtime::close_code`]; the reason names the problem.
pub mod close_code {
    pub use crate::realtime::close_code::*;
}

pub mod schema {
    //! The shape of a document (see the module above).

    use yrs::{Doc, OffsetKind, Options};

    /// The one shared type of a document.
    pub const TEXT: &str = "content";
    pub const BOLD: &str = "bold";
    pub const ITALIC: &str = "italic";
    /// On the `"\n"` ending a line: `1`, `2` or `3`.
    pub const HEADER: &str = "header";

    /// A document replica with Yjs' offsets (UTF-16), as every replica must use.
    pub fn new_doc() -> Doc {
        Doc::with_options(options())
    }

    /// As [`new_doc`], with a given client id (tests and replays).
    pub fn new_doc_with_client(client_id: u64) -> Doc {
        let mut options = options();
        options.client_id = yrs::block::ClientID::new(client_id);
        Doc::with_options(options)
    }

    fn options() -> Options {
        Options {
            offset_kind: OffsetKind::Utf16,
            ..Options::default()
        }
    }
}

pub mod rich {
    //! The document as paragraphs of formatted runs: what the editor renders, the server
    //! previews, and a restore writes back.

    use serde::{Deserialize, Serialize};
    use yrs::types::text::Diff;
    use yrs::types::Attrs;
    use yrs::{Any, GetString, Number, Out, ReadTxn, Text, TextRef, TransactionMut};

    use super::schema;

    /// A run of text with one formatting.
    #[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
    pub struct Run {
        pub text: String,
        pub bold: bool,
        pub italic: bool,
    }

    /// A paragraph or heading.
    #[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
    pub struct Block {
        /// `Some(1..=3)` for a heading.
        pub heading: Option<u8>,
        pub runs: Vec<Run>,
    }

    impl Block {
        pub fn text(&self) -> String {
            self.runs.iter().map(|r| r.text.as_str()).collect()
        }

        /// Length in UTF-16 code units, not counting the line's end.
        pub fn len_utf16(&self) -> u32 {
            self.runs
                .iter()
                .map(|r| r.text.encode_utf16().count() as u32)
                .sum()
        }
    }

    fn flag(attrs: Option<&Attrs>, key: &str) -> bool {
        matches!(attrs.and_then(|a| a.get(key)), Some(Any::Bool(true)))
    }

    fn heading(attrs: Option<&Attrs>) -> Option<u8> {
        match attrs.and_then(|a| a.get(schema::HEADER)) {
            Some(Any::Number(Number::Int(n))) if (1..=3).contains(n) => Some(*n as u8),
            Some(Any::Number(Number::Float(n))) if [1.0, 2.0, 3.0].contains(n) => Some(*n as u8),
            _ => None,
        }
    }

    /// The document's paragraphs. There is always at least one (possibly empty); text
    /// after the last `"\n"` forms a last paragraph without a heading.
    pub fn blocks<T: ReadTxn>(txn: &T, text: &TextRef) -> Vec<Block> {
        let mut blocks = Vec::new();
        let mut current = Block::default();
        let diff: Vec<Diff<()>> = text.diff(txn, |_| ());
        for chunk in diff {
            let Out::Any(Any::String(s)) = &chunk.insert else {
                continue; // embeds are not part of our schema
            };
            let attrs = chunk.attributes.as_deref();
            let (bold, italic) = (flag(attrs, schema::BOLD), flag(attrs, schema::ITALIC));
            let mut parts = s.split('\n').peekable();
            while let Some(part) = parts.next() {
                if !part.is_empty() {
                    match current.runs.last_mut() {
                        Some(last) if last.bold == bold && last.italic == italic => {
                            last.text.push_str(part)
                        }
                        _ => current.runs.push(Run {
                            text: part.to_owned(),
                            bold,
                            italic,
                        }),
                    }
                }
                if parts.peek().is_some() {
                    // A "\n" ended this paragraph; its attributes are the line's.
                    current.heading = heading(attrs);
                    blocks.push(std::mem::take(&mut current));
                }
            }
        }
        if !current.runs.is_empty() || blocks.is_empty() {
            blocks.push(current);
        }
        blocks
    }

    /// The document's plain text (paragraphs joined by `"\n"`).
    pub fn plain_text<T: ReadTxn>(txn: &T, text: &TextRef) -> String {
        text.get_string(txn)
    }

    fn run_attrs(run: &Run) -> Attrs {
        let mut attrs = Attrs::new();
        if run.bold {
            attrs.insert(schema::BOLD.into(), Any::Bool(true));
        }
        if run.italic {
            attrs.insert(schema::ITALIC.into(), Any::Bool(true));
        }
        attrs
    }

    /// Whether the text ends with a line end (a last paragraph without one is read by
    /// [`blocks`] like one with it).
    pub fn ends_with_line_end<T: ReadTxn>(txn: &T, text: &TextRef) -> bool {
        text.get_string(txn).ends_with('\n')
    }

    /// Replaces the whole content with `blocks` in one transaction (a restore). Every
    /// paragraph ends with `"\n"` except a last plain one when `final_line_end` is false,
    /// so that a document is restored exactly as it was.
    pub fn replace_all(
        txn: &mut TransactionMut,
        text: &TextRef,
        blocks: &[Block],
        final_line_end: bool,
    ) {
        let len = text.len(txn);
        if len > 0 {
            text.remove_range(txn, 0, len);
        }
        let mut at = 0u32;
        for (i, block) in blocks.iter().enumerate() {
            for run in &block.runs {
                // Explicit nulls, so that a run does not inherit its left neighbour's
                // formatting.
                let mut attrs = run_attrs(run);
                for key in [schema::BOLD, schema::ITALIC] {
                    attrs.entry(key.into()).or_insert(Any::Null);
                }
                text.insert_with_attributes(txn, at, &run.text, attrs);
                at += run.text.encode_utf16().count() as u32;
            }
            if i + 1 == blocks.len() && !final_line_end && block.heading.is_none() {
                break;
            }
            let mut line = Attrs::new();
            line.insert(schema::BOLD.into(), Any::Null);
            line.insert(schema::ITALIC.into(), Any::Null);
            let header = block.heading.map(|h| Any::Number(Number::Int(h.into())));
            line.insert(schema::HEADER.into(), header.unwrap_or(Any::Null));
            text.insert_with_attributes(txn, at, "\n", line);
            at += 1;
        }
    }

    /// The first `max_chars` characters of the text, on one line.
    pub fn preview<T: ReadTxn>(txn: &T, text: &TextRef, max_chars: usize) -> String {
        let s = text.get_string(txn);
        let mut out: String = s
            .split('\n')
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" · ")
            .chars()
            .take(max_chars)
            .collect();
        if s.chars().count() > max_chars {
            out.push('…');
        }
        out
    }
}

pub mod protocol {
    //! The y-websocket wire format: one message per frame (see the module above).

    use yrs::encoding::read::Cursor;
    use yrs::encoding::write::Write;
    use yrs::sync::protocol::{MSG_SYNC, MSG_SYNC_UPDATE};
    use yrs::sync::{Message, SyncMessage};
    use yrs::updates::decoder::{Decode, DecoderV1};
    use yrs::updates::encoder::{Encode, Encoder, EncoderV1};
    use yrs::{StateVector, Update};

    /// Why a frame was refused.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum FrameError {
        Empty,
        /// The bytes do not decode as a y-websocket message.
        Undecodable(String),
        /// More than one message in one frame.
        TrailingBytes(usize),
        /// A sync message whose update does not decode.
        BadUpdate(String),
        /// A message type this server does not accept from clients.
        Unsupported(u8),
    }

    impl std::fmt::Display for FrameError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                FrameError::Empty => write!(f, "empty frame"),
                FrameError::Undecodable(e) => write!(f, "not a y-websocket message: {e}"),
                FrameError::TrailingBytes(n) => {
                    write!(f, "{n} bytes after the message (one message per frame)")
                }
                FrameError::BadUpdate(e) => write!(f, "update does not decode: {e}"),
                FrameError::Unsupported(tag) => write!(f, "unsupported message type {tag}"),
            }
        }
    }

    /// A decoded client frame, with the update already parsed where there is one.
    #[derive(Debug)]
    pub enum Frame {
        Step1(StateVector),
        /// Step 2 or update: the raw bytes (to store and forward) and the parsed update.
        Update {
            raw: Vec<u8>,
            update: Update,
        },
        Awareness(yrs::sync::AwarenessUpdate),
        QueryAwareness,
        Auth(Option<String>),
    }

    /// Decodes exactly one message from a binary frame.
    pub fn decode_frame(bytes: &[u8]) -> Result<Frame, FrameError> {
        if bytes.is_empty() {
            return Err(FrameError::Empty);
        }
        let mut decoder = DecoderV1::new(Cursor::new(bytes));
        let message =
            Message::decode(&mut decoder).map_err(|e| FrameError::Undecodable(e.to_string()))?;
        let rest = decoder.read_to_end_len();
        if rest > 0 {
            return Err(FrameError::TrailingBytes(rest));
        }
        Ok(match message {
            Message::Sync(SyncMessage::SyncStep1(sv)) => Frame::Step1(sv),
            Message::Sync(SyncMessage::SyncStep2(raw))
            | Message::Sync(SyncMessage::Update(raw)) => {
                let update =
                    Update::decode_v1(&raw).map_err(|e| FrameError::BadUpdate(e.to_string()))?;
                Frame::Update { raw, update }
            }
            Message::Awareness(update) => Frame::Awareness(update),
            Message::AwarenessQuery => Frame::QueryAwareness,
            Message::Auth(reason) => Frame::Auth(reason),
            Message::Custom(tag, _) => return Err(FrameError::Unsupported(tag)),
        })
    }

    trait RemainingLen {
        fn read_to_end_len(&mut self) -> usize;
    }

    impl RemainingLen for DecoderV1<'_> {
        fn read_to_end_len(&mut self) -> usize {
            let mut n = 0;
            while yrs::encoding::read::Read::read_u8(self).is_ok() {
                n += 1;
            }
            n
        }
    }

    pub fn step1(sv: &StateVector) -> Vec<u8> {
        Message::Sync(SyncMessage::SyncStep1(sv.clone())).encode_v1()
    }

    pub fn step2(update: Vec<u8>) -> Vec<u8> {
        Message::Sync(SyncMessage::SyncStep2(update)).encode_v1()
    }

    /// An update message, written from borrowed bytes (the server frames every stored
    /// update without copying it first).
    pub fn update(update: impl AsRef<[u8]>) -> Vec<u8> {
        let update = update.as_ref();
        let mut encoder = EncoderV1::new();
        encoder.write_var(MSG_SYNC);
        encoder.write_var(MSG_SYNC_UPDATE);
        encoder.write_buf(update);
        encoder.to_vec()
    }

    pub fn awareness(update: yrs::sync::AwarenessUpdate) -> Vec<u8> {
        Message::Awareness(update).encode_v1()
    }

    pub fn query_awareness() -> Vec<u8> {
        Message::AwarenessQuery.encode_v1()
    }

    /// `02 00 reason`: permission denied.
    pub fn permission_denied(reason: &str) -> Vec<u8> {
        Message::Auth(Some(reason.to_owned())).encode_v1()
    }
}

#[cfg(test)]
mod tests {
    use super::protocol::{decode_frame, Frame, FrameError};
    use super::rich::{self, blocks, replace_all, Block, Run};
    use super::*;
    use yrs::types::Attrs;
    use yrs::updates::decoder::Decode;
    use yrs::{Any, GetString, ReadTxn, Text, Transact, Update};

    fn edited_doc() -> yrs::Doc {
        let doc = schema::new_doc_with_client(7);
        let text = doc.get_or_insert_text(schema::TEXT);
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "Title\nHello world\n");
        let mut h = Attrs::new();
        h.insert(schema::HEADER.into(), Any::Number(yrs::Number::Int(1)));
        text.format(&mut txn, 5, 1, h);
        let mut b = Attrs::new();
        b.insert(schema::BOLD.into(), Any::Bool(true));
        text.format(&mut txn, 12, 5, b);
        drop(txn);
        doc
    }

    #[test]
    fn frames_round_trip() {
        let doc = edited_doc();
        let txn = doc.transact();
        let sv = txn.state_vector();
        match decode_frame(&protocol::step1(&sv)).unwrap() {
            Frame::Step1(got) => assert_eq!(got, sv),
            other => panic!("{other:?}"),
        }
        let full = txn.encode_state_as_update_v1(&yrs::StateVector::default());
        for frame in [
            protocol::step2(full.clone()),
            protocol::update(full.clone()),
        ] {
            match decode_frame(&frame).unwrap() {
                Frame::Update { raw, .. } => assert_eq!(raw, full),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            decode_frame(&protocol::query_awareness()).unwrap(),
            Frame::QueryAwareness
        ));
        assert!(matches!(
            decode_frame(&protocol::permission_denied("no")).unwrap(),
            Frame::Auth(Some(r)) if r == "no"
        ));
    }

    #[test]
    fn known_bytes_from_the_javascript_client() {
        // y-protocols: an empty doc's step 1 is [0, 0, 1, 0] (sync, step1, buf of len 1
        // holding a zero-length state vector); an empty update is [0, 0].
        assert!(matches!(decode_frame(&[0, 0, 1, 0]).unwrap(), Frame::Step1(sv) if sv.is_empty()));
        assert!(
            matches!(decode_frame(&[0, 2, 2, 0, 0]).unwrap(), Frame::Update { update, .. } if update.is_empty())
        );
        // Awareness with one client 5, clock 1, state {"a":1}.
        let json = br#"{"a":1}"#;
        let mut bytes = vec![1, (4 + json.len()) as u8, 1, 5, 1, json.len() as u8];
        bytes.extend_from_slice(json);
        match decode_frame(&bytes).unwrap() {
            Frame::Awareness(u) => {
                let e = &u.clients[&yrs::block::ClientID::new(5)];
                assert_eq!((e.clock, &*e.json), (1, r#"{"a":1}"#));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_frames_are_refused() {
        assert_eq!(decode_frame(&[]).unwrap_err(), FrameError::Empty);
        // Truncated: a sync step 2 announcing 10 bytes with 1 present.
        assert!(matches!(
            decode_frame(&[0, 1, 10, 0]).unwrap_err(),
            FrameError::Undecodable(_)
        ));
        // Unknown sync sub-type.
        assert!(matches!(
            decode_frame(&[0, 9, 0]).unwrap_err(),
            FrameError::Undecodable(_)
        ));
        // Two messages in one frame.
        let mut two = protocol::query_awareness();
        two.extend(protocol::query_awareness());
        assert_eq!(
            decode_frame(&two).unwrap_err(),
            FrameError::TrailingBytes(1)
        );
        // An update that is garbage.
        assert!(matches!(
            decode_frame(&protocol::update(vec![200, 1, 2, 3])).unwrap_err(),
            FrameError::BadUpdate(_)
        ));
        // A custom message type.
        assert_eq!(
            decode_frame(&[7, 0]).unwrap_err(),
            FrameError::Unsupported(7)
        );
        // Random bytes never panic.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len % 40)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = decode_frame(&bytes);
        }
    }

    #[test]
    fn blocks_follow_the_quill_schema() {
        let doc = edited_doc();
        let text = doc.get_or_insert_text(schema::TEXT);
        let txn = doc.transact();
        let got = blocks(&txn, &text);
        assert_eq!(
            got,
            vec![
                Block {
                    heading: Some(1),
                    runs: vec![Run {
                        text: "Title".into(),
                        ..Run::default()
                    }]
                },
                Block {
                    heading: None,
                    runs: vec![
                        Run {
                            text: "Hello ".into(),
                            ..Run::default()
                        },
                        Run {
                            text: "world".into(),
                            bold: true,
                            italic: false
                        }
                    ]
                },
            ]
        );
        let empty = schema::new_doc();
        let empty_text = empty.get_or_insert_text(schema::TEXT);
        assert_eq!(
            blocks(&empty.transact(), &empty_text),
            vec![Block::default()]
        );
    }

    #[test]
    fn replace_all_keeps_a_missing_final_line_end() {
        let doc = schema::new_doc_with_client(3);
        let text = doc.get_or_insert_text(schema::TEXT);
        text.insert(&mut doc.transact_mut(), 0, "one\ntwo");
        let (want, end) = {
            let txn = doc.transact();
            (blocks(&txn, &text), rich::ends_with_line_end(&txn, &text))
        };
        assert!(!end);
        let target = schema::new_doc_with_client(4);
        let ttext = target.get_or_insert_text(schema::TEXT);
        replace_all(&mut target.transact_mut(), &ttext, &want, end);
        assert_eq!(ttext.get_string(&target.transact()), "one\ntwo");
    }

    #[test]
    fn replace_all_rebuilds_the_blocks_and_syncs() {
        let source = edited_doc();
        let want = {
            let text = source.get_or_insert_text(schema::TEXT);
            let txn = source.transact();
            blocks(&txn, &text)
        };
        let target = schema::new_doc_with_client(9);
        let text = target.get_or_insert_text(schema::TEXT);
        {
            let mut txn = target.transact_mut();
            text.insert(&mut txn, 0, "something else entirely");
            replace_all(&mut txn, &text, &want, true);
        }
        assert_eq!(blocks(&target.transact(), &text), want);
        // The restore is an ordinary update another replica can apply.
        let replica = schema::new_doc_with_client(11);
        let update = target
            .transact()
            .encode_state_as_update_v1(&yrs::StateVector::default());
        replica
            .transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        let rtext = replica.get_or_insert_text(schema::TEXT);
        assert_eq!(
            rtext.get_string(&replica.transact()),
            "Title\nHello world\n"
        );
    }
}
