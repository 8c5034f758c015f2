//! The registry of the rooms loaded on this instance: one handle per document, joined
//! or loaded on demand, removed by generation so that a stale room never removes its
//! successor.

use super::*;

/// The length of a connection's queue.
pub fn conn_queue_len() -> usize {
    CONN_QUEUE
}

#[derive(Clone)]
pub struct RoomHandle {
    pub tx: mpsc::Sender<RoomMsg>,
    pub(super) generation: u64,
}

/// The loaded rooms of this instance.
pub struct Rooms {
    pub(super) app: OnceLock<AppState>,
    pub(super) writer: OnceLock<Writer>,
    pub(super) map: Mutex<HashMap<String, RoomHandle>>,
    pub(super) next_conn: AtomicU64,
    pub(super) next_generation: AtomicU64,
}

impl Default for Rooms {
    fn default() -> Self {
        Rooms {
            app: OnceLock::new(),
            writer: OnceLock::new(),
            map: Mutex::default(),
            next_conn: AtomicU64::new(1),
            next_generation: AtomicU64::new(1),
        }
    }
}

impl Rooms {
    /// Gives the registry the state its rooms use (once, when the app is built), and
    /// starts following the other instances' document notices.
    pub fn attach(&self, state: AppState) {
        let _ = self.writer.set(Writer::start(&state));
        let notices = state.hub.notices(cluster::SYSTEM);
        state.tasks.spawn(cluster::relay(
            notices,
            state.docs.clone(),
            state.shutdown.clone(),
        ));
        let _ = self.app.set(state);
    }

    pub(super) fn writer(&self) -> &Writer {
        self.writer.get().expect("rooms attached to the app")
    }

    pub(super) fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, RoomHandle>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The room of a document, loading it if needed.
    pub fn get_or_load(self: &Arc<Self>, doc_id: &str) -> RoomHandle {
        let mut map = self.map();
        if let Some(handle) = map.get(doc_id) {
            if !handle.tx.is_closed() {
                return handle.clone();
            }
        }
        let (tx, rx) = mpsc::channel(ROOM_QUEUE);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let handle = RoomHandle { tx, generation };
        map.insert(doc_id.to_owned(), handle.clone());
        drop(map);
        let state = self.app.get().expect("rooms attached to the app").clone();
        let room = Room::new(state.clone(), self.clone(), doc_id, generation);
        state.tasks.spawn(room.run(rx));
        handle
    }

    /// The room of a document if it is loaded here.
    pub fn loaded(&self, doc_id: &str) -> Option<RoomHandle> {
        self.map()
            .get(doc_id)
            .filter(|h| !h.tx.is_closed())
            .cloned()
    }

    pub(super) fn remove_if(&self, doc_id: &str, generation: u64) {
        let mut map = self.map();
        if map.get(doc_id).is_some_and(|h| h.generation == generation) {
            map.remove(doc_id);
        }
    }

    /// Sends a request to the document's room (loading it), retrying when it raced with
    /// an unload.
    pub async fn ask<T>(
        self: &Arc<Self>,
        doc_id: &str,
        make: impl Fn(oneshot::Sender<Result<T, RoomError>>) -> RoomMsg,
    ) -> Result<T, RoomError> {
        for _ in 0..5 {
            let room = self.get_or_load(doc_id);
            let (reply, answer) = oneshot::channel();
            if room.tx.send(make(reply)).await.is_err() {
                continue;
            }
            match answer.await {
                Ok(Err(RoomError::Retry)) | Err(_) => continue,
                Ok(result) => return result,
            }
        }
        Err(RoomError::Retry)
    }

    /// Tells a loaded room something (nothing if it is not loaded here).
    pub async fn tell(&self, doc_id: &str, msg: RoomMsg) {
        if let Some(room) = self.loaded(doc_id) {
            let _ = room.tx.send(msg).await;
        }
    }

    pub async fn stats(&self) -> RoomStats {
        let rooms: Vec<(String, RoomHandle)> = self
            .map()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut infos = Vec::new();
        for (doc_id, room) in rooms {
            let (reply, answer) = oneshot::channel();
            if room.tx.send(RoomMsg::Stats { reply }).await.is_ok() {
                if let Ok(info) = answer.await {
                    infos.push(info);
                    continue;
                }
            }
            tracing::debug!(%doc_id, "room went away while asked for stats");
        }
        infos.sort_by(|a, b| a.doc_id.cmp(&b.doc_id));
        RoomStats {
            loaded_rooms: infos.len(),
            connections: infos.iter().map(|r| r.connections).sum(),
            rooms: infos,
        }
    }
}
