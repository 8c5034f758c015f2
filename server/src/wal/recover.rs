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

use std::path::{Path, PathBuf};

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
    path: PathBuf,
}

/// Rebuilds the state of the log in `dir` as of `target`.
pub fn state_at(disk: &dyn Disk, dir: &Path, target: Target) -> Result<Kv, RecoverError> {
    state_at_with(disk, dir, None, target)
}

/// [`state_at`], with the archived segments in `fetched` too (fetched from object
/// storage, see `archive`; a segment also in the log's own directories is read there).
pub fn state_at_with(
    disk: &dyn Disk,
    dir: &Path,
    fetched: Option<&Path>,
    target: Target,
) -> Result<Kv, RecoverError> {
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
    for archive in fetched.into_iter().chain([archive.as_path()]) {
        if disk
            .exists(archive)
            .map_err(WalError::io("stat", archive))?
        {
            let names = disk.list(archive).map_err(WalError::io("list", archive))?;
            for first in segment::segments_in(&names) {
                sources.retain(|s| s.first != first);
                let path = archive.join(segment::file_name(first));
                sources.push(Source { first, path });
            }
        }
    }
    let names = disk.list(dir).map_err(WalError::io("list", dir))?;
    for first in segment::segments_in(&names) {
        sources.retain(|s| s.first != first);
        sources.push(Source {
            first,
            path: layout.segment(first),
        });
    }
    sources.sort_by_key(|s| s.first);

    let mut next = kv.last_applied().map(|lsn| lsn + 1);
    let mut last_seen: Option<u64> = None;
    let mut done = matches!(target, Target::Lsn(n) if kv.last_applied() == Some(n));
    let mut failure: Option<RecoverError> = None;
    for (i, source) in sources.iter().enumerate() {
        if done {
            break;
        }
        let path = &source.path;
        let bytes = disk.read_all(path).map_err(WalError::io("read", path))?;
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
            path,
            &bytes,
            source.first,
            sources.get(i + 1).map(|next| next.first),
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
        if scanned.offsets.is_empty() {
            // An empty segment ends the log (before others: a truncation that a crash
            // interrupted and the log's next open finishes).
            break;
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

/// [`state_at`] bounded by the commit index saved in `dir`'s hard state, as `wal
/// recover` and the page's time slider read it: a target past the commit index gives
/// the state at the commit index. `Ok(None)`: nothing is known to be committed yet.
/// Read-only, so it may run beside the live node.
pub fn committed_state_at(
    disk: &dyn Disk,
    dir: &Path,
    target: Target,
) -> Result<Option<(Kv, u64)>, RecoverError> {
    committed_state_at_with(disk, dir, None, target)
}

/// [`committed_state_at`], with the archived segments in `fetched` too (see
/// [`state_at_with`]).
pub fn committed_state_at_with(
    disk: &dyn Disk,
    dir: &Path,
    fetched: Option<&Path>,
    target: Target,
) -> Result<Option<(Kv, u64)>, RecoverError> {
    let committed = super::raft::HardState::load_from(disk, dir)?
        .committed
        .map(|id| id.index);
    let Some(committed) = committed else {
        return Ok(None);
    };
    let target = match target {
        Target::Lsn(lsn) => Target::Lsn(lsn.min(committed)),
        time => time,
    };
    let mut kv = state_at_with(disk, dir, fetched, target)?;
    if kv.last_applied().is_some_and(|lsn| lsn > committed) {
        kv = state_at_with(disk, dir, fetched, Target::Lsn(committed))?;
    }
    Ok(Some((kv, committed)))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::wal::kv::ClientWrite;
    use crate::wal::log::{Log, LogOptions};
    use crate::wal::{Record, SimDisk};

    const DIR: &str = "/data";

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(future)
    }

    struct Workload {
        disk: SimDisk,
        /// The state after each LSN (index 0: before any).
        states: Vec<Kv>,
        /// (lsn, leader time) of each write.
        writes: Vec<(u64, i64)>,
        oldest_checkpoint: u64,
    }

    /// `count` records: writes to a few keys with retried idempotency keys and times
    /// that sometimes repeat, opaque entries between them; a checkpoint every 40
    /// records (three kept), the archive kept from the oldest, the log purged behind.
    fn workload(seed: u64, count: u64) -> Workload {
        let mut rng = StdRng::seed_from_u64(seed);
        let disk = SimDisk::new();
        let dir = Path::new(DIR);
        let options = LogOptions {
            segment_bytes: 2048,
            max_payload: 300,
        };
        let (log, _) = Log::open(Arc::new(disk.clone()), dir, options).unwrap();
        let mut kv = Kv::new();
        let mut states = vec![kv.clone()];
        let mut writes = Vec::new();
        let mut time = 1_700_000_000_000i64;
        let mut oldest_checkpoint = 0;
        for lsn in 1..=count {
            let entry = if rng.random_bool(0.1) {
                Entry::Opaque(vec![rng.random(); rng.random_range(0..20)])
            } else {
                time += rng.random_range(0..3);
                writes.push((lsn, time));
                let op = rng.random_range(0..lsn);
                Entry::Write(ClientWrite {
                    key: format!("key-{}", rng.random_range(0..20)),
                    value: format!("value-{lsn}-{}", rng.random::<u32>()),
                    idempotency_key: rng.random_bool(0.3).then(|| format!("op-{op}")),
                    leader_time_ms: time,
                })
            };
            let payload = entry.encode().unwrap();
            block_on(log.append(vec![Record::new(lsn, 1 + lsn / 50, payload.clone())])).unwrap();
            kv.apply(lsn, &payload).unwrap();
            states.push(kv.clone());
            if lsn % 40 == 0 {
                kv.checkpoint(&disk, dir, 3).unwrap();
                let kept = kv::checkpoints(&disk, dir).unwrap();
                oldest_checkpoint = kept[0];
                log.set_retain_from(Some(oldest_checkpoint + 1)).unwrap();
                log.purge_to(lsn - 30).unwrap();
            }
        }
        Workload {
            disk,
            states,
            writes,
            oldest_checkpoint,
        }
    }

    /// The state as of `ms`: everything before the first write later than it.
    fn expected_at_time(workload: &Workload, ms: i64) -> &Kv {
        let stop = workload
            .writes
            .iter()
            .find(|&&(_, t)| t > ms)
            .map_or(workload.states.len() as u64, |&(lsn, _)| lsn);
        &workload.states[stop as usize - 1]
    }

    #[test]
    fn archived_segments_fetched_from_object_storage_replay_like_local_ones() {
        use crate::objects::Objects;
        use crate::wal::archive;
        let seed = crate::wal::log::tests::seed("wal archive in object storage");
        let workload = workload(seed, 240);
        let (disk, dir) = (&workload.disk, Path::new(DIR));
        let objects = Objects::in_memory();
        let store = archive::node_archive(&objects, 1);
        let shared: Arc<dyn Disk> = Arc::new(disk.clone());
        let copied = block_on(archive::upload_new(shared, dir, store.as_ref())).unwrap();
        assert!(copied > 0, "the workload archives segments");
        // The node's archive is lost: the oldest checkpoint's replay cannot start.
        let local = dir.join("archive");
        for name in disk.list(&local).unwrap() {
            disk.remove(&local.join(name)).unwrap();
        }
        let lsn = workload.oldest_checkpoint + 1;
        assert!(matches!(
            state_at(disk, dir, Target::Lsn(lsn)),
            Err(RecoverError::LogPurged { .. })
        ));
        let fetched = Path::new("/fetched");
        let n = block_on(archive::download(store.as_ref(), disk, fetched)).unwrap();
        assert_eq!(n, copied);
        for lsn in [lsn, workload.oldest_checkpoint + 17, 240] {
            let kv = state_at_with(disk, dir, Some(fetched), Target::Lsn(lsn)).unwrap();
            assert_eq!(&kv, &workload.states[lsn as usize], "lsn {lsn}");
        }
    }

    #[test]
    fn recovery_to_lsns_and_times_equals_the_state_recorded_then() {
        let seed = crate::wal::log::tests::seed("wal recovery workload");
        let mut rng = StdRng::seed_from_u64(seed);
        let count = 400;
        let workload = workload(seed, count);
        let (disk, dir) = (&workload.disk, Path::new(DIR));
        let archived = disk.list(&Path::new(DIR).join("archive")).unwrap();
        assert!(!archived.is_empty(), "the workload archives segments");
        let mut recovered = 0;
        let mut lsns: Vec<u64> = (0..25)
            .map(|i| match i {
                0..20 => rng.random_range(workload.oldest_checkpoint..=count),
                _ => rng.random_range(1..=count),
            })
            .collect();
        lsns.extend([
            workload.oldest_checkpoint,
            workload.oldest_checkpoint + 1,
            count,
        ]);
        for lsn in lsns {
            match state_at(disk, dir, Target::Lsn(lsn)) {
                Ok(kv) => {
                    assert_eq!(&kv, &workload.states[lsn as usize], "lsn {lsn}");
                    recovered += 1;
                }
                Err(RecoverError::LogPurged { .. }) => {
                    assert!(
                        lsn < workload.oldest_checkpoint,
                        "lsn {lsn} must be recoverable"
                    )
                }
                Err(other) => panic!("lsn {lsn}: {other}"),
            }
        }
        let oldest_time = workload.states[workload.oldest_checkpoint as usize]
            .max_time_ms()
            .unwrap();
        let (first_time, last_time) = (workload.writes[0].1, workload.writes.last().unwrap().1);
        let mut times: Vec<i64> = (0..25)
            .map(|i| match i {
                0..20 => rng.random_range(oldest_time..=last_time + 5),
                _ => rng.random_range(first_time - 5..=last_time + 5),
            })
            .collect();
        times.extend([oldest_time, last_time, last_time + 1000]);
        for ms in times {
            match state_at(disk, dir, Target::Time(ms)) {
                Ok(kv) => {
                    assert_eq!(&kv, expected_at_time(&workload, ms), "time {ms}");
                    recovered += 1;
                }
                Err(RecoverError::LogPurged { .. }) => {
                    assert!(ms < oldest_time, "time {ms} must be recoverable")
                }
                Err(other) => panic!("time {ms}: {other}"),
            }
        }
        eprintln!("recovery: {recovered} targets rebuilt equal to the recorded state");
        assert!(recovered >= 46, "{recovered}");
        assert!(matches!(
            state_at(disk, dir, Target::Lsn(count + 1)),
            Err(RecoverError::BeyondLog { target, last: Some(last) }) if target == count + 1 && last == count
        ));
    }

    #[test]
    fn recovery_refuses_a_purged_log_and_names_corruption() {
        let workload = workload(7, 200);
        let (disk, dir) = (&workload.disk, Path::new(DIR));
        assert!(matches!(
            state_at(disk, dir, Target::Lsn(3)),
            Err(RecoverError::LogPurged { .. })
        ));
        // A flipped byte in an archived segment's record is corruption, with its file.
        let archive = Path::new(DIR).join("archive");
        let names = disk.list(&archive).unwrap();
        let path = archive.join(&names[0]);
        let mut bytes = disk.file_bytes(&path).unwrap();
        bytes[60] ^= 0x10;
        disk.set_file_bytes(&path, bytes);
        match state_at(disk, dir, Target::Lsn(workload.oldest_checkpoint + 1)) {
            Err(RecoverError::Wal(WalError::Corrupt { path: named, .. })) => {
                assert_eq!(named, path)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn recovery_reads_a_truncated_log_as_rewritten() {
        let disk = SimDisk::new();
        let dir = Path::new(DIR);
        let options = LogOptions {
            segment_bytes: 1024,
            max_payload: 300,
        };
        let (log, _) = Log::open(Arc::new(disk.clone()), dir, options).unwrap();
        let write = |lsn: u64, value: &str| {
            Entry::Write(ClientWrite {
                key: format!("k{}", lsn % 3),
                value: value.into(),
                idempotency_key: None,
                leader_time_ms: lsn as i64,
            })
            .encode()
            .unwrap()
        };
        for lsn in 1..=30 {
            block_on(log.append(vec![Record::new(lsn, 1, write(lsn, "old"))])).unwrap();
        }
        // A new leader's entries replace 20.. (the old ones were never committed).
        log.truncate_from(20).unwrap();
        let mut expected = Kv::new();
        for lsn in 1..=25 {
            let value = if lsn < 20 { "old" } else { "new" };
            if lsn >= 20 {
                block_on(log.append(vec![Record::new(lsn, 2, write(lsn, value))])).unwrap();
            }
            expected.apply(lsn, &write(lsn, value)).unwrap();
        }
        assert_eq!(state_at(&disk, dir, Target::Lsn(25)).unwrap(), expected);
        assert!(matches!(
            state_at(&disk, dir, Target::Lsn(26)),
            Err(RecoverError::BeyondLog {
                target: 26,
                last: Some(25)
            })
        ));
    }

    #[test]
    fn a_log_never_purged_replays_from_its_beginning() {
        let disk = SimDisk::new();
        let dir = Path::new(DIR);
        let (log, _) = Log::open(Arc::new(disk.clone()), dir, LogOptions::default()).unwrap();
        let mut kv = Kv::new();
        for lsn in 1..=5 {
            let payload = Entry::Write(ClientWrite {
                key: "k".into(),
                value: lsn.to_string(),
                idempotency_key: None,
                leader_time_ms: lsn as i64 * 10,
            })
            .encode()
            .unwrap();
            block_on(log.append(vec![Record::new(lsn, 1, payload.clone())])).unwrap();
            kv.apply(lsn, &payload).unwrap();
        }
        assert_eq!(state_at(&disk, dir, Target::Lsn(5)).unwrap(), kv);
        assert_eq!(
            state_at(&disk, dir, Target::Lsn(2)).unwrap().get("k"),
            Some("2")
        );
        assert_eq!(
            state_at(&disk, dir, Target::Time(35)).unwrap().get("k"),
            Some("3")
        );
        assert_eq!(
            state_at(&disk, dir, Target::Time(5)).unwrap().get("k"),
            None
        );
    }
}
