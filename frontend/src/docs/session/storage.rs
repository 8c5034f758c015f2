//! The session's copy in IndexedDB ([`crate::docs::persist`]): restored before connecting,
//! every update appended, compacted past [`COMPACT_AFTER`] records.

use super::*;

impl DocSession {
    /// Reads the stored copy into the replica (origin [`STORED_ORIGIN`]), then connects.
    pub(super) fn restore_then_connect(&self) {
        let session = self.clone();
        let doc_id = self.inner.state.borrow().doc_id.clone();
        let client = self.inner.doc.doc().client_id().get();
        spawn_local(async move {
            match DocStore::open(&doc_id, client).await {
                Ok(store) => {
                    let loaded = store.load().await;
                    let count = match loaded {
                        Ok(records) => {
                            let count = records.len();
                            session.apply_stored(records.into_iter().map(|r| r.update));
                            count
                        }
                        Err(error) => {
                            session.inner.state.borrow_mut().storage_note =
                                Some(format!("Could not read this browser's copy: {error}."));
                            0
                        }
                    };
                    let unstored = {
                        let mut state = session.inner.state.borrow_mut();
                        state.storage = Storage::Open(store);
                        state.stored_records = count;
                        std::mem::take(&mut state.unstored)
                    };
                    if let Some(update) = merge_updates(unstored) {
                        session.store(update);
                    } else if count > COMPACT_AFTER {
                        session.compact();
                    }
                }
                Err(error) => {
                    let mut state = session.inner.state.borrow_mut();
                    state.storage = Storage::Unavailable;
                    state.unstored.clear();
                    state.storage_note = Some(format!(
                        "This browser cannot keep a copy of the document ({error}): edits made offline are lost when the tab closes."
                    ));
                }
            }
            let online = browser::navigator_online();
            {
                let mut state = session.inner.state.borrow_mut();
                state.restored = true;
                if state.closed {
                    return;
                }
            }
            session.input(SyncInput::Start { online });
            session.emit();
        });
    }

    pub(super) fn apply_stored(&self, updates: impl Iterator<Item = Vec<u8>>) {
        let decoded: Vec<Update> = updates
            .filter_map(|bytes| Update::decode_v1(&bytes).ok())
            .collect();
        if decoded.is_empty() {
            return;
        }
        if let Ok(mut txn) = self.inner.doc.doc().try_transact_mut_with(STORED_ORIGIN) {
            for update in decoded {
                // An update this replica cannot integrate yet waits inside it as pending.
                let _ = txn.apply_update(update);
            }
        }
        self.inner.state.borrow_mut().revision += 1;
        self.emit();
    }

    /// Appends an update to the stored copy (or keeps it until storage is open), and
    /// compacts the copy when it has grown past [`COMPACT_AFTER`] records.
    pub(super) fn store(&self, update: Vec<u8>) {
        let store = {
            let mut state = self.inner.state.borrow_mut();
            match &state.storage {
                Storage::Opening => {
                    state.unstored.push(update);
                    return;
                }
                Storage::Unavailable => return,
                Storage::Open(store) => store.clone(),
            }
        };
        let session = self.clone();
        spawn_local(async move {
            let written = store.append(&update).await;
            let compact = {
                let mut state = session.inner.state.borrow_mut();
                match written {
                    Ok(()) => {
                        state.stored_records += 1;
                        state.stored_records > COMPACT_AFTER && !state.compacting
                    }
                    Err(error) => {
                        state.storage_note = Some(format!(
                            "Could not save an edit in this browser ({error}); it is kept in this tab."
                        ));
                        false
                    }
                }
            };
            if compact {
                session.compact();
            }
        });
    }

    /// Replaces the stored records with one: everything they hold merged with the
    /// replica's whole state. Records another tab adds meanwhile are not touched.
    pub(super) fn compact(&self) {
        let store = {
            let mut state = self.inner.state.borrow_mut();
            let Storage::Open(store) = &state.storage else {
                return;
            };
            let store = store.clone();
            if state.compacting {
                return;
            }
            state.compacting = true;
            store
        };
        let session = self.clone();
        spawn_local(async move {
            let result = async {
                let records = store.load().await?;
                let full = session
                    .inner
                    .doc
                    .doc()
                    .try_transact()
                    .map(|txn| txn.encode_state_as_update_v1(&StateVector::default()))
                    .map_err(|_| IdbError("the replica is busy".into()))?;
                let mut all: Vec<Vec<u8>> = records.iter().map(|r| r.update.clone()).collect();
                all.push(full);
                let merged = yrs::merge_updates_v1(all.iter())
                    .map_err(|error| IdbError(error.to_string()))?;
                let keys: Vec<String> = records.into_iter().map(|r| r.key).collect();
                store.replace(&keys, &merged).await?;
                Ok::<usize, IdbError>(keys.len())
            }
            .await;
            let mut state = session.inner.state.borrow_mut();
            state.compacting = false;
            match result {
                Ok(replaced) => {
                    state.stored_records = state.stored_records.saturating_sub(replaced) + 1;
                }
                Err(error) => {
                    state.storage_note = Some(format!(
                        "Could not compact this browser's copy of the document: {error}."
                    ));
                }
            }
        });
    }

    pub(super) fn emit(&self) {
        if self.inner.state.borrow().closed {
            return;
        }
        let view = self.view();
        self.inner.on_change.emit(view);
    }
}
