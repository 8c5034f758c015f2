//! Point-in-time recovery: the key-value state as of an LSN or a time, rebuilt from the
//! newest checkpoint at or before it plus a replay of the log (archived segments, then
//! live ones). Read-only: a torn tail is read past, never repaired, so it can run beside
//! a live node.
//!
//! `Target::Time(ms)` is the state after the longest prefix of the log whose writes all
//! carry a leader time `<= ms` (a checkpoint qualifies when the latest time it has seen
//! is `<= ms`); a time after the last write gives the state at the end of the log.
//! Replay starts from an empty state only when the log was never purged: its oldest
//! segment chains to CRC 0, the seed of a new log.
//!
//! The log replayed is the node's local log, which may end in entries Raft has not
//! committed; the caller bounds an LSN target by the commit index.

use std::path::Path;

use super::disk::Disk;
use super::kv::{self, Entry, Kv};
use super::record::MAX_PAYLOAD_HARD;
use super::segment::{self, Layout};
use super::WalError;

/// The point to recover to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The state right after the record of this LSN was applied.
    Lsn(u64),
    /// The state after every write up to this leader time, in milliseconds since the epoch.
    Time(i64),
}

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("no checkpoint is early enough and the log before it was purged: replay needs lsn {needed:?} onwards, the log keeps {first_available:?} onwards")]
    LogPurged {
        /// The first LSN replay needs (`None`: the log's very beginning).
        needed: Option<u64>,
        first_available: Option<u64>,
    },
    #[error("lsn {target} is beyond the log, which ends at {last:?}")]
    BeyondLog { target: u64, last: Option<u64> },
    /// Corruption (with the file and offset) or an I/O error.
    #[error(transparent)]
    Wal(#[from] WalError),
}

/// Where a segment to replay lives.
struct Source {
    first: u64,
    live: bool,
}

/// Rebuilds the state of the log in `dir` as of `target`.
pub fn state_at(disk: &dyn Disk, dir: &Path, target: Target) -> Result<Kv, RecoverError> {
    let layout = Layout::new(dir);
    let mut base = None;
    for &lsn in kv::checkpoints(disk, dir)?.iter().rev() {
        let usable = match target {
            Target::Lsn(n) => lsn <= n,
            Target::Time(ms) => {
                let checkpoint = Kv::load_checkpoint(disk, dir, lsn)?;
                if checkpoint.max_time_ms().is_none_or(|t| t <= ms) {
                    base = Some(checkpoint);
                    break;
                }
                false
            }
        };
        if usable {
            base = Some(Kv::load_checkpoint(disk, dir, lsn)?);
            break;
        }
    }
    let from_checkpoint = base.is_some();
    let mut kv = base.unwrap_or_default();

    let mut sources: Vec<Source> = Vec::new();
    let archive = layout.archive_dir();
    if disk.exists(&archive).map_err(WalError::io("stat", &archive))? {
        let names = disk.list(&archive).map_err(WalError::io("list", &archive))?;
        sources.extend(segment::segments_in(&names).into_iter().map(|first| Source {
            first,
            live: false,
        }));
    }
    let names = disk.list(dir).map_err(WalError::io("list", dir))?;
    for first in segment::segments_in(&names) {
        sources.retain(|s| s.first != first);
        sources.push(Source { first, live: true });
    }
    sources.sort_by_key(|s| s.first);
    let last_live = sources.iter().rposition(|s| s.live);

    let mut next = kv.last_applied().map(|lsn| lsn + 1);
    let mut last_seen: Option<u64> = None;
    let mut done = matches!(target, Target::Lsn(n) if kv.last_applied() == Some(n));
    let mut failure: Option<RecoverError> = None;
    for (i, source) in sources.iter().enumerate() {
        if done {
            break;
        }
        let path = if source.live {
            layout.segment(source.first)
        } else {
            layout.archived(source.first)
        };
        let bytes = disk.read_all(&path).map_err(WalError::io("read", &path))?;
        let mut replay = |record: super::Record| {
            if done || failure.is_some() {
                return;
            }
            let expected = match (last_seen, next) {
                (Some(previous), _) => Some(previous + 1),
                (None, Some(needed)) if record.index > needed => Some(needed),
                _ => None,
            };
            last_seen = Some(record.index);
            if let Some(expected) = expected.filter(|&e| e != record.index) {
                // A purged stretch: before the oldest segment, or between two kept ones.
                failure = Some(RecoverError::LogPurged {
                    needed: Some(expected),
                    first_available: Some(record.index),
                });
                return;
            }
            if next.is_some_and(|n| record.index < n) {
                return;
            }
            let past_target = match target {
                Target::Lsn(n) => record.index > n,
                Target::Time(ms) => matches!(
                    Entry::decode(&record.payload),
                    Ok(Entry::Write(write)) if write.leader_time_ms > ms
                ),
            };
            if past_target {
                done = true;
                return;
            }
            match kv.apply(record.index, &record.payload) {
                Ok(_) => next = Some(record.index + 1),
                Err(error) => failure = Some(error.into()),
            }
        };
        let scanned = segment::scan(
            &path,
            &bytes,
            source.first,
            Some(i) == last_live,
            MAX_PAYLOAD_HARD,
            &mut replay,
        )?;
        if i == 0 && !from_checkpoint && scanned.prev_crc != 0 {
            return Err(RecoverError::LogPurged {
                needed: None,
                first_available: Some(scanned.first_index),
            });
        }
        if let Some(error) = failure.take() {
            return Err(error);
        }
    }
    if let Target::Lsn(n) = target {
        if kv.last_applied().is_none_or(|applied| applied < n) {
            return Err(RecoverError::BeyondLog {
                target: n,
                last: last_seen.max(kv.last_applied()),
            });
        }
    }
    Ok(kv)
}
