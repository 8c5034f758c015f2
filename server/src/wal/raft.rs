//! The log engine under openraft 0.9 (storage v2): [`WalConfig`] (the type config),
//! [`LogStore`] (`RaftLogStorage` over [`Log`]) and [`StateMachine`]
//! (`RaftStateMachine` over [`Kv`], whose snapshot is a Kv checkpoint).
//!
//! A Raft entry is one record: its index is the record's index (the LSN), its term the
//! record's term, and its payload a [`kv::Entry`]: a client write, or an opaque entry
//! (empty for Raft's blank entry, the membership as JSON for a membership entry).
//!
//! The hard state (`hard-state`, saved by [`Log::save_hard_state`]) is JSON: the vote,
//! the last purged log id (the log may keep records at or below it) and the committed
//! log id. The vote and the purge are saved before openraft is answered; the committed
//! log id is saved with them and by [`LogStore::flush_committed`] (a node calls it
//! periodically): it may lag, which only means more replay after a restart.
//!
//! A snapshot is the checkpoint `checkpoints/checkpoint-<lsn>` plus `snapshot-meta`
//! (its last log id and membership, JSON, written after the checkpoint and atomically),
//! so a restarted node starts from its snapshot and replays the log after it.
//!
//! Invariant: the log the store shows openraft always ends at or after the last purged
//! log id: a purge beyond the log's end (a snapshot installed on a lagging node) empties
//! the log, so the next append may start at the snapshot's index + 1.

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use meridian_shared::wal::WalWrite;
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, CommittedLeaderId, Entry as RaftEntry, EntryPayload, LogId, LogState,
    Membership, RaftLogReader, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, RwLock};

use super::disk::Disk;
use super::kv::{self, Applied, ClientWrite, Kv};
use super::{Log, Record, WalError};

openraft::declare_raft_types!(
    /// The WAL cluster's Raft types: a client write in, the LSN it landed at out. The
    /// runtime is tokio with election timeouts a simulation can seed.
    pub WalConfig:
        D = WalWrite,
        R = WriteOutcome,
        AsyncRuntime = super::sim::runtime::WalRuntime,
);

/// What applying a client write answers: the LSN that carries it (the original one for
/// a repeated idempotency key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOutcome {
    pub lsn: u64,
}

pub type NodeId = u64;
type StoreResult<T> = Result<T, StorageError<NodeId>>;

/// How many checkpoints a node keeps (the archive keeps the log the oldest one needs).
const CHECKPOINTS_KEPT: usize = 2;
const SNAPSHOT_META: &str = "snapshot-meta";
/// How long a purge waits for the snapshot that covers it to become durable.
const PURGE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

fn write_snapshot(source: AnyError) -> StorageIOError<NodeId> {
    StorageIOError::write_snapshot(None, source)
}

fn io_error(
    make: impl FnOnce(AnyError) -> StorageIOError<NodeId>,
    err: impl std::error::Error + 'static,
) -> StorageError<NodeId> {
    StorageError::IO {
        source: make(AnyError::new(&err)),
    }
}

impl From<WalWrite> for ClientWrite {
    fn from(write: WalWrite) -> ClientWrite {
        ClientWrite {
            key: write.key,
            value: write.value,
            idempotency_key: write.idempotency_key,
            leader_time_ms: write.leader_time_ms,
        }
    }
}

impl From<ClientWrite> for WalWrite {
    fn from(write: ClientWrite) -> WalWrite {
        WalWrite {
            key: write.key,
            value: write.value,
            idempotency_key: write.idempotency_key,
            leader_time_ms: write.leader_time_ms,
        }
    }
}

/// The record that stores a Raft entry.
pub fn entry_to_record(entry: &RaftEntry<WalConfig>) -> Result<Record, WalError> {
    let payload = match &entry.payload {
        EntryPayload::Normal(write) => kv::Entry::Write(write.clone().into()),
        EntryPayload::Blank => kv::Entry::Opaque(Vec::new()),
        EntryPayload::Membership(membership) => kv::Entry::Opaque(
            serde_json::to_vec(membership).map_err(|err| WalError::BadPayload(err.to_string()))?,
        ),
    };
    Ok(Record::new(
        entry.log_id.index,
        entry.log_id.leader_id.term,
        payload.encode()?,
    ))
}

/// The Raft entry a record stores.
pub fn record_to_entry(record: &Record) -> Result<RaftEntry<WalConfig>, WalError> {
    let payload = match kv::Entry::decode(&record.payload)? {
        kv::Entry::Write(write) => EntryPayload::Normal(write.into()),
        kv::Entry::Opaque(bytes) if bytes.is_empty() => EntryPayload::Blank,
        kv::Entry::Opaque(bytes) => EntryPayload::Membership(
            serde_json::from_slice::<Membership<NodeId, BasicNode>>(&bytes)
                .map_err(|err| WalError::BadPayload(err.to_string()))?,
        ),
    };
    Ok(RaftEntry {
        log_id: log_id(record.term, record.index),
        payload,
    })
}

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    // With `single-term-leader` a committed leader id is the term alone.
    LogId::new(CommittedLeaderId::new(term, 0), index)
}

/// Whether an append-entries request is one its leader could have sent: no entry of a
/// later term than the leader's vote. openraft 0.9's replication stream of a leader that
/// has stepped down can wake from a back-off and read the log range it was given while
/// it led, now holding entries the node appended since as a follower of a later term,
/// and send them under its old vote; a follower still holding that old vote would take
/// them, and a later membership entry among them would then count as committed (found by
/// the WAL simulation, seed 9001008 on 5 nodes: openraft panicked on the next leader's
/// append, "committed log should never be truncated"). Such a request is never sent
/// (the networks drop it as unreachable) and never accepted.
pub fn append_from_its_leader(rpc: &openraft::raft::AppendEntriesRequest<WalConfig>) -> bool {
    let term = rpc.vote.leader_id().term;
    rpc.entries
        .iter()
        .all(|entry| entry.log_id.leader_id.term <= term)
}

/// The persistent Raft state beside the log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HardState {
    pub vote: Option<Vote<NodeId>>,
    pub last_purged: Option<LogId<NodeId>>,
    pub committed: Option<LogId<NodeId>>,
}

impl HardState {
    /// The hard state saved in the log directory `dir` (read only).
    pub fn load_from(disk: &dyn Disk, dir: &Path) -> Result<HardState, WalError> {
        match super::log::load_hard_state(disk, dir)? {
            None => Ok(HardState::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|err| WalError::Corrupt {
                path: dir.join("hard-state"),
                offset: 0,
                reason: err.to_string(),
            }),
        }
    }
}

/// openraft's log storage: the [`Log`] and the hard state.
#[derive(Clone)]
pub struct LogStore {
    log: Log,
    hard: Arc<Mutex<HardState>>,
    /// The committed index openraft last reported (for `/wal/status`).
    committed: watch::Sender<Option<u64>>,
    /// The last index a durable snapshot covers ([`StateMachine::snapshots`]): a purge
    /// waits for it, see [`LogStore::gate_purges_on`].
    snapshots: Option<watch::Receiver<Option<u64>>>,
}

impl LogStore {
    pub fn open(log: Log) -> Result<LogStore, WalError> {
        let hard = match log.load_hard_state()? {
            None => HardState::default(),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|err| WalError::BadPayload(format!("hard state: {err}")))?,
        };
        let (committed, _) = watch::channel(hard.committed.map(|id| id.index));
        Ok(LogStore {
            log,
            hard: Arc::new(Mutex::new(hard)),
            committed,
            snapshots: None,
        })
    }

    /// Makes every purge wait until a durable snapshot covers what it removes.
    /// openraft 0.9 installs a snapshot received from the leader on the state machine's
    /// task and purges the log it covers at the same time; a purge saved before the
    /// snapshot is durable would leave, after a power cut, a node whose log starts after
    /// a snapshot it does not have, which can never start again (found by the WAL
    /// simulation, seed 8001434 on 3 nodes).
    pub fn gate_purges_on(mut self, snapshots: watch::Receiver<Option<u64>>) -> LogStore {
        self.snapshots = Some(snapshots);
        self
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    pub fn committed(&self) -> watch::Receiver<Option<u64>> {
        self.committed.subscribe()
    }

    fn save(&self, change: impl FnOnce(&mut HardState)) -> Result<(), WalError> {
        let mut hard = self.hard.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut hard);
        let bytes = serde_json::to_vec(&*hard).expect("a hard state serializes");
        self.log.save_hard_state(&bytes)
    }

    /// Saves the committed log id if it moved since the last save.
    pub fn flush_committed(&self) -> Result<(), WalError> {
        let latest = *self.committed.borrow();
        let saved = self
            .hard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .committed
            .map(|id| id.index);
        if latest == saved {
            return Ok(());
        }
        let Some(index) = latest else { return Ok(()) };
        let committed = match self.log.read(index..index + 1)?.pop() {
            Some(record) => log_id(record.term, index),
            // Not in the log: a node that caught up from a snapshot holds no record
            // at the snapshot's index, and its log may hold nothing after it yet.
            // What a snapshot covers was applied, so committed.
            None => match self
                .hard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .last_purged
            {
                Some(purged) if purged.index >= index => purged,
                _ => return Ok(()),
            },
        };
        self.save(|hard| hard.committed = Some(committed))
    }

    fn last_log_id(&self) -> Result<Option<LogId<NodeId>>, WalError> {
        let purged = self
            .hard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_purged;
        let last = match self.log.last_index() {
            None => None,
            Some(index) => self
                .log
                .read(index..index + 1)?
                .pop()
                .map(|record| log_id(record.term, record.index)),
        };
        Ok(last.max(purged))
    }

    fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<RaftEntry<WalConfig>>, WalError> {
        let start = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n + 1,
            Bound::Excluded(&n) => n,
            Bound::Unbounded => u64::MAX,
        };
        if start >= end {
            return Ok(Vec::new());
        }
        self.log
            .read(start..end)?
            .iter()
            .map(record_to_entry)
            .collect()
    }
}

impl RaftLogReader<WalConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<RaftEntry<WalConfig>>> {
        self.entries(range)
            .map_err(|err| io_error(StorageIOError::read_logs, err))
    }
}

impl RaftLogStorage<WalConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StoreResult<LogState<WalConfig>> {
        let last_purged_log_id = self
            .hard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_purged;
        let last_log_id = self
            .last_log_id()
            .map_err(|err| io_error(StorageIOError::read_logs, err))?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        let vote = *vote;
        self.save(|hard| hard.vote = Some(vote))
            .map_err(|err| io_error(StorageIOError::write_vote, err))
    }

    /// openraft reads the vote once, when the node starts. It gets it back uncommitted:
    /// openraft 0.9 restores a node that finds its own committed vote as the leader of
    /// that term at once, but its log may have lost records it replicated before they
    /// were durable (the power went, or an fsync failed, between write and fsync); as
    /// leader again in the same term it would serve reads behind what it had
    /// acknowledged and hand out those records' log ids a second time. Uncommitted, the
    /// vote keeps the node from voting twice in the term, and the node stands for
    /// election (a higher term) like any follower. The WAL simulation found this
    /// (`wal::sim`, seed 2000891 on 3 nodes).
    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        let vote = self.hard.lock().unwrap_or_else(|e| e.into_inner()).vote;
        Ok(vote.map(|vote| Vote {
            committed: false,
            ..vote
        }))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        self.committed.send_replace(committed.map(|id| id.index));
        Ok(())
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        Ok(self
            .hard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<WalConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = RaftEntry<WalConfig>> + Send,
        I::IntoIter: Send,
    {
        let records = entries
            .into_iter()
            .map(|entry| entry_to_record(&entry))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| io_error(StorageIOError::write_logs, err))?;
        if records.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        // The records are written now (a read that follows sees them); openraft is told
        // when they are durable.
        let durable = self.log.append(records);
        tokio::spawn(async move {
            callback.log_io_completed(durable.await.map_err(std::io::Error::other));
        });
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        self.log
            .truncate_from(log_id.index)
            .map_err(|err| io_error(StorageIOError::write_logs, err))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        if let Some(snapshots) = &mut self.snapshots {
            let covered = snapshots.wait_for(|last| last.is_some_and(|last| last >= log_id.index));
            match tokio::time::timeout(PURGE_WAIT, covered).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(io_error(
                        StorageIOError::write_logs,
                        WalError::BadPayload(format!(
                            "no durable snapshot covers index {} to purge up to",
                            log_id.index
                        )),
                    ))
                }
            }
        }
        let result = self
            .save(|hard| hard.last_purged = Some(log_id))
            .and_then(|()| {
                match (self.log.first_index(), self.log.last_index()) {
                    // A snapshot beyond the log's end: the log restarts after it.
                    (Some(first), Some(last)) if last < log_id.index => {
                        self.log.truncate_from(first)
                    }
                    _ => self.log.purge_to(log_id.index),
                }
            });
        result.map_err(|err| io_error(StorageIOError::write_logs, err))
    }
}

/// The state machine's data: the key-value state and what Raft needs beside it.
struct MachineState {
    kv: Kv,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    snapshot: Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>,
}

/// openraft's state machine over [`Kv`]. Cheap to clone (all clones share the state).
#[derive(Clone)]
pub struct StateMachine {
    state: Arc<RwLock<MachineState>>,
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    log: Log,
    applied: watch::Sender<Option<u64>>,
    /// The last index the newest durable snapshot covers.
    snapshots: watch::Sender<Option<u64>>,
}

impl StateMachine {
    /// The state machine of the node whose data directory is `dir`: its last snapshot,
    /// if any (openraft replays the committed log after it).
    pub fn open(disk: Arc<dyn Disk>, dir: &Path, log: Log) -> Result<StateMachine, WalError> {
        let meta_path = dir.join(SNAPSHOT_META);
        let mut state = MachineState {
            kv: Kv::new(),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
        };
        if disk
            .exists(&meta_path)
            .map_err(WalError::io("stat", &meta_path))?
        {
            let bytes = disk
                .read_all(&meta_path)
                .map_err(WalError::io("read", &meta_path))?;
            let meta: SnapshotMeta<NodeId, BasicNode> =
                serde_json::from_slice(&bytes).map_err(|err| WalError::Corrupt {
                    path: meta_path.clone(),
                    offset: 0,
                    reason: err.to_string(),
                })?;
            if let Some(last) = meta.last_log_id {
                state.kv = Kv::load_checkpoint(&*disk, dir, last.index)?;
                let path = kv::checkpoint_path(dir, last.index);
                let checkpoint = disk.read_all(&path).map_err(WalError::io("read", &path))?;
                state.last_applied = Some(last);
                state.membership = meta.last_membership.clone();
                state.snapshot = Some((meta, checkpoint));
            }
        }
        let (applied, _) = watch::channel(state.last_applied.map(|id| id.index));
        let (snapshots, _) = watch::channel(
            state
                .snapshot
                .as_ref()
                .and_then(|(meta, _)| meta.last_log_id)
                .map(|id| id.index),
        );
        Ok(StateMachine {
            state: Arc::new(RwLock::new(state)),
            disk,
            dir: dir.to_owned(),
            log,
            applied,
            snapshots,
        })
    }

    /// The apply index, as it moves.
    pub fn applied(&self) -> watch::Receiver<Option<u64>> {
        self.applied.subscribe()
    }

    /// The value of `key` and the apply index it was read at.
    pub async fn get(&self, key: &str) -> (Option<String>, Option<u64>) {
        let state = self.state.read().await;
        (
            state.kv.get(key).map(str::to_owned),
            state.last_applied.map(|id| id.index),
        )
    }

    /// The first and last LSN of `writes` when every one carries an idempotency key
    /// already applied (a retry), `None` otherwise.
    pub async fn answer_if_applied(&self, writes: &[WalWrite]) -> Option<(u64, u64)> {
        let state = self.state.read().await;
        let mut lsns = writes.iter().map(|write| {
            write
                .idempotency_key
                .as_deref()
                .and_then(|key| state.kv.idempotent_lsn(key))
        });
        let first = lsns.next()??;
        let mut last = first;
        for lsn in lsns {
            last = lsn?;
        }
        Some((first, last))
    }

    /// Writes `bytes` to `path` atomically (a temporary file, fsynced, renamed).
    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), WalError> {
        let disk = &self.disk;
        let temporary = path.with_extension("tmp");
        disk.create(&temporary)
            .map_err(WalError::io("create", &temporary))?;
        disk.write_at(&temporary, 0, bytes)
            .map_err(WalError::io("write", &temporary))?;
        disk.sync(&temporary)
            .map_err(WalError::io("fsync", &temporary))?;
        disk.rename(&temporary, path)
            .map_err(WalError::io("rename", &temporary))?;
        let folder = path.parent().unwrap_or(&self.dir);
        disk.sync_dir(folder)
            .map_err(WalError::io("fsync directory", folder))
    }

    /// After a new checkpoint: the archive keeps what the oldest kept checkpoint needs.
    fn retain_for_checkpoints(&self) -> Result<(), WalError> {
        let oldest = kv::checkpoints(&*self.disk, &self.dir)?.first().copied();
        self.log.set_retain_from(oldest.map(|lsn| lsn + 1))
    }

    fn save_meta(&self, meta: &SnapshotMeta<NodeId, BasicNode>) -> Result<(), WalError> {
        let bytes = serde_json::to_vec(meta).expect("snapshot meta serializes");
        self.write_atomically(&self.dir.join(SNAPSHOT_META), &bytes)?;
        let last = meta.last_log_id.map(|id| id.index);
        self.snapshots.send_if_modified(|durable| {
            let newer = last > *durable;
            if newer {
                *durable = last;
            }
            newer
        });
        Ok(())
    }

    /// The last index a durable snapshot covers, as it moves (for
    /// [`LogStore::gate_purges_on`]).
    pub fn snapshots(&self) -> watch::Receiver<Option<u64>> {
        self.snapshots.subscribe()
    }
}

impl RaftSnapshotBuilder<WalConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<WalConfig>> {
        let mut state = self.state.write().await;
        let Some(last) = state.last_applied else {
            return Err(io_error(
                write_snapshot,
                WalError::BadPayload("nothing applied to snapshot".into()),
            ));
        };
        let meta = SnapshotMeta {
            last_log_id: Some(last),
            last_membership: state.membership.clone(),
            snapshot_id: format!("{}-{}", last.leader_id.term, last.index),
        };
        let result = (|| {
            let lsn = state
                .kv
                .checkpoint(&*self.disk, &self.dir, CHECKPOINTS_KEPT)?;
            let path = kv::checkpoint_path(&self.dir, lsn);
            let bytes = self
                .disk
                .read_all(&path)
                .map_err(WalError::io("read", &path))?;
            self.save_meta(&meta)?;
            self.retain_for_checkpoints()?;
            Ok::<_, WalError>(bytes)
        })();
        let bytes = result.map_err(|err| io_error(write_snapshot, err))?;
        state.snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<WalConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let state = self.state.read().await;
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<WriteOutcome>>
    where
        I: IntoIterator<Item = RaftEntry<WalConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut state = self.state.write().await;
        let mut outcomes = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            let record = entry_to_record(&entry)
                .map_err(|err| io_error(|e| StorageIOError::apply(entry.log_id, e), err))?;
            let applied = state
                .kv
                .apply(index, &record.payload)
                .map_err(|err| io_error(|e| StorageIOError::apply(entry.log_id, e), err))?;
            if let EntryPayload::Membership(membership) = entry.payload {
                state.membership = StoredMembership::new(Some(entry.log_id), membership);
            }
            state.last_applied = Some(entry.log_id);
            let lsn = match applied {
                Applied::Duplicate { original_lsn } => original_lsn,
                Applied::Written | Applied::Skipped => index,
            };
            outcomes.push(WriteOutcome { lsn });
        }
        self.applied
            .send_replace(state.last_applied.map(|id| id.index));
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> StateMachine {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        let bytes = snapshot.into_inner();
        let Some(last) = meta.last_log_id else {
            return Ok(());
        };
        let mut state = self.state.write().await;
        let result = (|| {
            let folder = kv::checkpoint_path(&self.dir, last.index);
            if let Some(parent) = folder.parent() {
                self.disk
                    .create_dir_all(parent)
                    .map_err(WalError::io("create directory", parent))?;
            }
            self.write_atomically(&kv::checkpoint_path(&self.dir, last.index), &bytes)?;
            let kv = Kv::load_checkpoint(&*self.disk, &self.dir, last.index)?;
            self.save_meta(meta)?;
            self.retain_for_checkpoints()?;
            Ok::<_, WalError>(kv)
        })();
        let kv = result.map_err(|err| io_error(write_snapshot, err))?;
        state.kv = kv;
        state.last_applied = Some(last);
        state.membership = meta.last_membership.clone();
        state.snapshot = Some((meta.clone(), bytes));
        self.applied.send_replace(Some(last.index));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<WalConfig>>> {
        let state = self.state.read().await;
        Ok(state.snapshot.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::raft::AppendEntriesRequest;

    use super::*;

    fn append(vote_term: u64, entry_terms: &[u64]) -> AppendEntriesRequest<WalConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(vote_term, 1),
            prev_log_id: Some(log_id(1, 4)),
            entries: entry_terms
                .iter()
                .zip(5..)
                .map(|(&term, index)| RaftEntry {
                    log_id: log_id(term, index),
                    payload: EntryPayload::Blank,
                })
                .collect(),
            leader_commit: None,
        }
    }

    /// A node that caught up from a snapshot has no record at the committed index
    /// (the snapshot's last), and nothing after it until the next write: the commit
    /// index is still saved, so `wal recover` reaches it.
    #[tokio::test]
    async fn a_commit_at_a_snapshot_beyond_the_log_is_saved() {
        let disk = Arc::new(crate::wal::disk::SimDisk::new());
        let options = crate::wal::log::LogOptions {
            segment_bytes: 4096,
            max_payload: 200,
        };
        let open = || {
            let (log, _) = Log::open(disk.clone(), Path::new("/wal"), options.clone()).unwrap();
            LogStore::open(log).unwrap()
        };
        let mut store = open();
        for index in 1..=3 {
            store
                .log()
                .append(vec![crate::wal::record::Record::new(index, 1, "x")])
                .await
                .unwrap();
        }
        let snapshot = log_id(2, 10);
        store.purge(snapshot).await.unwrap();
        store.save_committed(Some(snapshot)).await.unwrap();
        store.flush_committed().unwrap();
        assert_eq!(open().read_committed().await.unwrap(), Some(snapshot));
    }

    #[test]
    fn an_append_carries_no_entry_of_a_later_term_than_its_vote() {
        assert!(append_from_its_leader(&append(1, &[])));
        assert!(append_from_its_leader(&append(8, &[1, 8, 8])));
        assert!(!append_from_its_leader(&append(1, &[8, 8, 8])));
        assert!(!append_from_its_leader(&append(7, &[7, 8])));
    }
}
