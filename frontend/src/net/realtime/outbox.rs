//! The other tabs (BroadcastChannel) and the outbox: opened in IndexedDB, reloaded,
//! replayed on every connection, and forgotten once acknowledged.

use super::*;

impl Realtime {
    pub(super) fn open_tab_channel(&self) {
        let client = Rc::downgrade(&self.inner);
        let channel = TabChannel::open(move |message| {
            if let Some(client) = Realtime::upgrade(&client) {
                match message {
                    TabMessage::AuthChanged => client.refresh_session(false),
                    TabMessage::OutboxChanged => client.reload_outbox(),
                }
            }
        });
        // Without BroadcastChannel the tab works alone; nothing else depends on it.
        self.inner.state.borrow_mut().tab = channel.ok();
    }

    pub(super) fn open_storage(&self) {
        let client = self.clone();
        spawn_local(async move {
            let store = OutboxStore::open().await;
            let loaded = store.load().await;
            let waiting: Vec<OutboxOp> = {
                let mut state = client.inner.state.borrow_mut();
                let state = &mut *state;
                state.storage = match store.memory_reason() {
                    None => StorageMode::IndexedDb,
                    Some(reason) => StorageMode::Memory(reason.to_owned()),
                };
                state.store = Some(store.clone());
                match loaded {
                    Ok(Some(ops)) => {
                        for op in ops {
                            if !state.settled.contains(&op.op_id) {
                                state.outbox.insert(op);
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(error) => {
                        state.last_error =
                            Some(format!("Could not read the offline queue: {error}."));
                    }
                }
                let waiting = state
                    .outbox
                    .ops()
                    .iter()
                    .filter(|op| state.unsaved.contains(&op.op_id))
                    .cloned()
                    .collect();
                if store.memory_reason().is_some() {
                    // Nothing to write to: memory is the only copy.
                    state.unsaved.clear();
                    Vec::new()
                } else {
                    waiting
                }
            };
            let mut wrote = false;
            for op in &waiting {
                match store.put(op).await {
                    Ok(()) => {
                        client.inner.state.borrow_mut().unsaved.remove(&op.op_id);
                        wrote = true;
                    }
                    Err(error) => {
                        client.inner.state.borrow_mut().last_error = Some(format!(
                            "Could not save a message to the offline queue ({error}); it is kept in memory until it is sent."
                        ));
                    }
                }
            }
            if wrote {
                client.inner.state.borrow().post(TabMessage::OutboxChanged);
            }
            client.changed(Changed::AllTopics);
            let online = {
                let state = client.inner.state.borrow();
                (state.conn == ConnectionState::Online).then_some(state.generation)
            };
            if let Some(generation) = online {
                client.replay_outbox(generation);
            }
        });
    }

    pub(super) fn op_stored(&self, op: OutboxOp, stored: Result<(), IdbError>) {
        let topic = op.topic.clone();
        {
            let mut state = self.inner.state.borrow_mut();
            if let Err(error) = &stored {
                state.last_error = Some(format!(
                    "Could not save a message to the offline queue ({error}); it is kept in memory until it is sent."
                ));
                state.unsaved.insert(op.op_id.clone());
            }
            if state.conn == ConnectionState::Online {
                state.send(&State::publish_message(&op));
            }
            state.outbox.insert(op);
            if stored.is_ok() {
                state.post(TabMessage::OutboxChanged);
            }
        }
        self.changed(Changed::Topic(topic));
    }

    /// Rereads storage into the queue (keeping unsaved ops, leaving out settled ones and
    /// ones whose event has already been seen).
    pub(super) async fn reload_outbox_now(&self) {
        let Some(store) = self.inner.state.borrow().store.clone() else {
            return;
        };
        let loaded = store.load().await;
        let applied: Vec<String> = {
            let mut state = self.inner.state.borrow_mut();
            let state = &mut *state;
            match loaded {
                Ok(Some(mut ops)) => {
                    ops.extend(
                        state
                            .outbox
                            .ops()
                            .iter()
                            .filter(|op| state.unsaved.contains(&op.op_id))
                            .cloned(),
                    );
                    let settled = &state.settled;
                    state
                        .outbox
                        .replace_all(ops, |op_id| settled.contains(op_id));
                    let applied: Vec<String> = state
                        .outbox
                        .ops()
                        .iter()
                        .filter(|op| {
                            state
                                .topics
                                .get(&op.topic)
                                .is_some_and(|log| log.contains_op(&op.op_id))
                        })
                        .map(|op| op.op_id.clone())
                        .collect();
                    for op_id in &applied {
                        state.settle(op_id);
                    }
                    applied
                }
                Ok(None) => Vec::new(),
                Err(error) => {
                    state.last_error = Some(format!("Could not read the offline queue: {error}."));
                    Vec::new()
                }
            }
        };
        if !applied.is_empty() {
            self.forget_stored(applied);
        }
    }

    /// Deletes settled ops from storage, then tells the other tabs.
    pub(super) fn forget_stored(&self, op_ids: Vec<String>) {
        let Some(store) = self.inner.state.borrow().store.clone() else {
            return;
        };
        let client = self.clone();
        spawn_local(async move {
            for op_id in &op_ids {
                if let Err(error) = store.delete(op_id).await {
                    client.inner.state.borrow_mut().last_error =
                        Some(format!("Could not update the offline queue: {error}."));
                }
            }
            client.inner.state.borrow().post(TabMessage::OutboxChanged);
        });
    }

    /// Sends the whole outbox, in order, if connection `generation` is still the current
    /// one, after rereading storage for other tabs' ops.
    pub(super) fn replay_outbox(&self, generation: u64) {
        let client = self.clone();
        spawn_local(async move {
            client.reload_outbox_now().await;
            {
                let state = client.inner.state.borrow();
                if state.generation != generation || state.conn != ConnectionState::Online {
                    return;
                }
                for op in state.outbox.ops() {
                    state.send(&State::publish_message(op));
                }
            }
            client.changed(Changed::AllTopics);
        });
    }
}
