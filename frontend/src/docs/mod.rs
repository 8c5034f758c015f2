//! Collaborative documents in the browser: the document replica (a yrs `Doc` compiled to
//! wasm), its sync with the server over the y-websocket protocol, its copy in IndexedDB,
//! the other tabs, the editing surface bound to it, the pages and the typed calls of
//! `/api/docs`.
//!
//! Layout: [`session`] (the sync engine), [`persist`] (IndexedDB), [`editor`] and
//! [`editor_model`] (the editing surface and its pure logic), [`api`] (`/api/docs`),
//! [`pages`] (the list, the document page, sharing and history).
//!
//! Invariants:
//! - The replica is the source of truth of what is shown: the editor renders from it and
//!   every keystroke is a transaction on it (origin [`LOCAL_ORIGIN`]); the sync layer
//!   forwards every local update to the server, IndexedDB and the other tabs.
//! - Updates that came from elsewhere are applied with their own origin ([`REMOTE_ORIGIN`],
//!   [`STORED_ORIGIN`], [`TAB_ORIGIN`]) so they are never echoed back nor undone by the
//!   local undo manager.

pub mod api;
pub mod editor;
pub mod editor_model;
pub mod pages;
pub mod persist;
pub mod session;

use std::rc::Rc;

use meridian_shared::docs::schema;
use yrs::{Doc, TextRef};

/// Origin of the transactions the local user makes by editing.
pub const LOCAL_ORIGIN: &str = "local-edit";
/// Origin of updates received from the server.
pub const REMOTE_ORIGIN: &str = "remote";
/// Origin of updates loaded from IndexedDB.
pub const STORED_ORIGIN: &str = "stored";
/// Origin of updates received from another tab over BroadcastChannel.
pub const TAB_ORIGIN: &str = "tab";

/// A document replica: the yrs `Doc` and its one text. Cheap to clone; equal when it is
/// the same replica.
#[derive(Clone)]
pub struct DocHandle(Rc<DocInner>);

struct DocInner {
    doc: Doc,
    text: TextRef,
}

impl DocHandle {
    pub fn new(doc: Doc) -> DocHandle {
        let text = doc.get_or_insert_text(schema::TEXT);
        DocHandle(Rc::new(DocInner { doc, text }))
    }

    /// A fresh empty replica with Yjs' UTF-16 offsets.
    pub fn empty() -> DocHandle {
        DocHandle::new(schema::new_doc())
    }

    pub fn doc(&self) -> &Doc {
        &self.0.doc
    }

    pub fn text(&self) -> &TextRef {
        &self.0.text
    }
}

impl PartialEq for DocHandle {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

/// Another participant's cursor, resolved against the local replica (UTF-16 offsets
/// into the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCursor {
    /// Their yrs client id (awareness key).
    pub client_id: u64,
    pub name: String,
    /// A CSS colour such as `#e5484d`.
    pub color: String,
    pub anchor: u32,
    pub head: u32,
}
