//! This browser's copy of the documents it has opened: the IndexedDB database
//! `meridian-docs`, object store `updates`, one record per Yjs v1 update under the key
//! `{doc_id}/{time}-{client}-{n}`.
//!
//! A document's copy is the set of its records: applying them all, in any order, rebuilds
//! what this browser knew (updates are idempotent and commute). Every tab of the document
//! appends to it; when a copy passes [`COMPACT_AFTER`] records, a tab replaces the
//! records it read by one update holding all of them merged with its replica's state.
//!
//! Invariants:
//! - A record is written once and never changed; keys are unique across tabs (the
//!   replica's client id is in them), so two tabs never overwrite each other.
//! - Compaction deletes only the records it read and writes their merge in the same
//!   transaction: a record appended meanwhile by another tab stays, and a failure leaves
//!   the copy as it was.

use std::cell::Cell;
use std::rc::Rc;

use crate::store::idb::{Database, IdbError};

pub const DATABASE_NAME: &str = "meridian-docs";
pub const DATABASE_VERSION: u32 = 1;
pub const UPDATES_STORE: &str = "updates";
/// Past this many records, a document's copy is compacted into one.
pub const COMPACT_AFTER: usize = 100;

/// The prefix of every key of a document's records.
pub fn key_prefix(doc_id: &str) -> String {
    format!("{doc_id}/")
}

/// The key of a new record: ordered by time, unique by the writer's client id and count.
pub fn record_key(doc_id: &str, now_ms: u64, client: u64, n: u64) -> String {
    format!("{}{now_ms:013}-{client}-{n}", key_prefix(doc_id))
}

/// One stored update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub key: String,
    pub update: Vec<u8>,
}

/// One document's copy in this browser. Clones share the database connection.
#[derive(Debug, Clone)]
pub struct DocStore {
    db: Database,
    doc_id: String,
    client: u64,
    written: Rc<Cell<u64>>,
}

impl DocStore {
    /// Opens the database for document `doc_id`, as written by the replica `client`.
    pub async fn open(doc_id: &str, client: u64) -> Result<DocStore, IdbError> {
        let db = Database::open(DATABASE_NAME, DATABASE_VERSION, &[UPDATES_STORE]).await?;
        Ok(DocStore {
            db,
            doc_id: doc_id.to_owned(),
            client,
            written: Rc::new(Cell::new(0)),
        })
    }

    /// Every record of the document, oldest first.
    pub async fn load(&self) -> Result<Vec<StoredRecord>, IdbError> {
        Ok(self
            .db
            .get_bytes_with_prefix(UPDATES_STORE, &key_prefix(&self.doc_id))
            .await?
            .into_iter()
            .map(|(key, update)| StoredRecord { key, update })
            .collect())
    }

    /// Adds an update; resolves once committed.
    pub async fn append(&self, update: &[u8]) -> Result<(), IdbError> {
        let key = self.next_key();
        self.db.put_bytes(UPDATES_STORE, &key, update).await
    }

    /// Replaces the records `keys` by one holding `merged`, in one transaction.
    pub async fn replace(&self, keys: &[String], merged: &[u8]) -> Result<(), IdbError> {
        let key = self.next_key();
        self.db
            .replace_bytes(UPDATES_STORE, keys, &key, merged)
            .await
    }

    fn next_key(&self) -> String {
        let n = self.written.get();
        self.written.set(n + 1);
        let now = js_sys::Date::now().max(0.0) as u64;
        record_key(&self.doc_id, now, self.client, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_time_and_stay_under_the_document_prefix() {
        let a = record_key("doc1", 1_700_000_000_000, 42, 0);
        let b = record_key("doc1", 1_700_000_000_001, 7, 0);
        assert_eq!(a, "doc1/1700000000000-42-0");
        assert!(a < b);
        assert!(a.starts_with(&key_prefix("doc1")));
        // Another document whose id extends this one's is not under its prefix.
        assert!(!record_key("doc10", 1, 1, 0).starts_with(&key_prefix("doc1")));
        // Same time, same client: the count keeps keys apart.
        assert_ne!(record_key("d", 5, 1, 0), record_key("d", 5, 1, 1));
    }
}
