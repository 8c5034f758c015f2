//! The write-ahead log (issue 13): the log engine and the key-value state machine with
//! checkpoints and point-in-time recovery, and the cluster that replicates it with
//! openraft 0.9 ([`Log`] is openraft's log storage, [`Kv`] its state machine).
//!
//! ```text
//! record     the record codec: length-prefixed, chained CRC32C, torn tail vs corruption
//! disk       Disk: the file operations; StdDisk (std::fs) and SimDisk (loses unsynced writes)
//! segment    a segment file: its header, and the scan that reads it back
//! log/       Log: segments, group commit, truncate_from, purge_to (archive), hard state
//! kv         Kv: the key-value state machine, ClientWrite payloads, checkpoints
//! recover    state_at: the KV state as of an LSN or a time, from a checkpoint plus replay
//! archive    the archive copied to object storage (`wal-node --archive`), fetched back
//! raft       openraft's type config and storage adapters (LogStore, StateMachine)
//! network    Raft RPCs over HTTP (/wal/raft/...)
//! node       WalNode: one node of the cluster (`meridian wal-node`)
//! api        the client API of every node (/wal/...)
//! local      LocalCluster: the wal-node child processes `meridian serve` runs
//! access     the permissions of the page's routes (wal:read, wal:operate)
//! pages      /api/wal/...: the local cluster for the page /wal (nodes, kill, restart,
//!            append, records, the state as of an LSN or a time)
//! sim/       the deterministic simulation: 3 or 5 nodes, simulated network and disks,
//!            faults, a register workload and its linearizability checker
//! ```
//!
//! A data directory holds `NNNNNNNNNNNNNNNNNNNN.seg` (segments named by their first
//! index), `hard-state`, `archive/` (purged segments a kept checkpoint still needs) and
//! `checkpoints/` (`checkpoint-<lsn>`); a cluster node adds `snapshot-meta`.
//!
//! # Contract (what the openraft step calls)
//!
//! ```text
//! Log::open(Arc<dyn Disk>, dir, LogOptions) -> Result<(Log, OpenReport), WalError>
//! log.append(Vec<Record>) -> impl Future<Output = Result<(), WalError>> + Send + 'static
//!     writes at once (a read that follows sees the records) and resolves when they are
//!     durable; records must continue the log (index = last_index + 1, any index when
//!     the log is empty). Appends that arrive while an fsync is in flight share the next.
//! log.read(Range<u64>) -> Result<Vec<Record>, WalError>   (clamped to what is present)
//! log.truncate_from(index)   drop index and everything after it (durable on return; the
//!                            log's next index is then `index`)
//! log.purge_to(index)        drop whole segments whose records are all <= index (openraft's
//!                            purge is inclusive); first_index() may stay <= index
//! log.set_retain_from(Option<u64>)  purged segments holding an index >= this are moved to
//!                            archive/ instead of deleted (the oldest kept checkpoint's lsn+1)
//! log.first_index() / log.last_index() -> Option<u64>
//! log.save_hard_state(&[u8]) / log.load_hard_state() -> Option<Vec<u8>>
//! Kv::apply(&mut self, lsn, &[u8]) -> Result<Applied, WalError>
//! Kv::checkpoint(&self, disk, dir, keep) -> Result<u64, WalError>
//! recover::state_at(disk, dir, Target::Lsn(n) | Target::Time(ms)) -> Result<Kv, RecoverError>
//! ```
//!
//! The LSN of a write is the Raft index of its record. Record payloads are
//! [`kv::Entry`] encodings: a client write, or an opaque entry (Raft's blank and
//! membership entries) that only advances `last_applied`.
//!
//! Invariants (tested beside each part):
//! - An append that resolved survives any crash of the disk (`SimDisk::crash`).
//! - On open, a damaged record is a torn tail only in the last segment and only when
//!   nothing but zeros follows it; it is then cut off (sealed) and its size reported.
//!   A damaged record with the next record's header behind it is corruption. Any other
//!   damage is refused with the file and offset: the log never opens missing a record it
//!   acknowledged.
//! - No byte of a segment is written twice. Past the written end of the newest segment
//!   the bytes are zero (preallocation), which is what tells a torn tail from
//!   corruption. A truncation or a torn tail seals its segment and starts a new one at
//!   the cut index; the sealed segment is read only up to there. An empty segment
//!   before others is a truncation a crash interrupted, which open finishes.

pub mod access;
pub mod api;
pub mod archive;
pub mod disk;
pub mod kv;
pub mod local;
pub mod log;
pub mod network;
pub mod node;
pub mod pages;
pub mod raft;
pub mod record;
pub mod recover;
pub mod segment;
pub mod sim;

use std::path::PathBuf;

pub use disk::{Disk, SimDisk, StdDisk};
pub use kv::{Applied, ClientWrite, Entry, Kv};
pub use log::{Log, LogOptions, LogStats, OpenReport, TornTail};
pub use record::Record;
pub use recover::{
    committed_state_at, committed_state_at_with, state_at, state_at_with, RecoverError, Target,
};

/// The errors of the log engine and the state machine.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt log: {path} at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("a record of {len} bytes is larger than the maximum of {max}")]
    RecordTooLarge { len: usize, max: usize },
    #[error("an append at index {got} where the log's next index is {expected}")]
    NotContiguous { expected: u64, got: u64 },
    #[error("the log's options do not hold together: {0}")]
    BadOptions(String),
    #[error("an earlier fsync failed ({0}); the log refuses writes until it is reopened")]
    Poisoned(String),
    #[error("the log was closed before the append was durable")]
    Closed,
    #[error("a bad payload: {0}")]
    BadPayload(String),
    #[error("lsn {lsn} applied after {last_applied}")]
    OutOfOrder { lsn: u64, last_applied: u64 },
}

impl WalError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> WalError {
        let path = path.into();
        move |source| WalError::Io { op, path, source }
    }
}
