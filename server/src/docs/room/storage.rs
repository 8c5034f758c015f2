//! What a room does with its whole state: its encoding, compaction into a snapshot,
//! versions and restores. Each first waits until nothing is unstored (`settle`).

use super::*;

impl Room {
    pub(super) fn encoded_state(&self) -> Vec<u8> {
        self.doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// Writes a snapshot through `seq` (and an automatic version when one is due).
    pub(super) async fn compact(&mut self) {
        self.settle().await;
        if self.seq <= self.snapshot_seq || self.ending {
            return;
        }
        let state = self.encoded_state();
        let now = self.now_ms();
        let compacted = {
            let _turn = self.state.db.write_turn().await;
            store::compact(&self.state.db.pool, &self.doc_id, self.seq, &state, now).await
        };
        match compacted {
            Ok(()) => self.snapshot_seq = self.seq,
            Err(err) => {
                tracing::warn!(doc = %self.doc_id, %err, "compaction failed; updates kept");
                return;
            }
        }
        let every = self.config().doc_auto_version_every.as_millis() as i64;
        let due = match self.last_auto_version {
            None => true,
            Some((at, seq)) => now - at >= every && self.seq > seq,
        };
        if due {
            if let Err(err) = self.save_version(VersionKind::Auto, None, None).await {
                tracing::warn!(doc = %self.doc_id, %err, "automatic version failed");
            }
        }
    }

    pub(super) async fn save_version(
        &mut self,
        kind: VersionKind,
        name: Option<String>,
        by: Option<String>,
    ) -> Result<Version, RoomError> {
        let state = self.encoded_state();
        let text = self.doc.get_or_insert_text(schema::TEXT);
        let preview = rich::preview(&self.doc.transact(), &text, PREVIEW_CHARS);
        let version = Version {
            id: self.state.ids.next_snowflake()?.to_string(),
            doc_id: self.doc_id.clone(),
            kind,
            name,
            created_ms: self.now_ms(),
            created_by: by,
            seq: self.seq,
            preview,
        };
        store::insert_version(&self.state.db.pool, &version, &state).await?;
        if kind == VersionKind::Auto {
            self.last_auto_version = Some((version.created_ms, version.seq));
        }
        Ok(version)
    }

    /// Replaces the content by `blocks` as one ordinary edit.
    pub(super) async fn restore(
        &mut self,
        blocks: &[Block],
        final_line_end: bool,
        by: String,
    ) -> Result<Restored, RoomError> {
        let before = self
            .save_version(VersionKind::BeforeRestore, None, Some(by))
            .await?;
        let text = self.doc.get_or_insert_text(schema::TEXT);
        let update = {
            let mut txn = self.doc.transact_mut();
            rich::replace_all(&mut txn, &text, blocks, final_line_end);
            txn.encode_update_v1()
        };
        self.broadcast(Bytes::from(protocol::update(&update)), None);
        self.push_pending(update);
        self.settle().await;
        if self.ending {
            return Err(RoomError::Retry);
        }
        Ok(Restored {
            before,
            seq: self.seq,
        })
    }
}
