//! [`Log`]: the segmented log, its group commit, truncation, purge and hard state.
//!
//! Writes happen on the caller's thread under the state lock, so a read right after
//! `append` sees the records; durability comes from one syncer thread. It waits for
//! unsynced writes, takes the set of segments written since its last round, fsyncs
//! them and then wakes every append written before the round began. Appends that arrive
//! while it is fsyncing wait for the next round: that is the group commit, and
//! [`LogStats::sync_rounds`] counts the rounds.
//!
//! Writing on the caller's thread means `append` does a `pwrite` (microseconds, page
//! cache) inside an async task, and, once per segment (64 MiB), the fsyncs of a segment
//! roll; a caller that cannot afford that runs it in `spawn_blocking`.
//!
//! Locks: `sync_lock` (held for a whole fsync round, and by truncation and purge, which
//! remove files a round might sync) is always taken before `state`. `read` holds `state`
//! while it reads the disk, so appends wait for reads (a reader cache is for later).

use std::collections::BTreeSet;
use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::disk::Disk;
use super::record::{self, Decoded, Record, HEADER_LEN, MAX_PAYLOAD_HARD};
use super::segment::{self, Layout, SEGMENT_HEADER_LEN};
use super::WalError;

#[cfg(test)]
pub(crate) mod tests;

/// How the log lays out its files.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// The preallocated size of a segment file (64 MiB, as etcd).
    pub segment_bytes: u64,
    /// The largest payload of one record.
    pub max_payload: usize,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions {
            segment_bytes: 64 * 1024 * 1024,
            max_payload: 1024 * 1024,
        }
    }
}

/// What [`Log::open`] found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub segments: usize,
    pub records: u64,
    /// A torn tail cut off the last segment.
    pub torn_tail: Option<TornTail>,
    /// A last segment whose creation never landed (all zeros), replaced by an empty one.
    pub replaced_blank_segment: Option<PathBuf>,
    /// Segments removed to finish a truncation a crash interrupted.
    pub finished_truncation: Vec<PathBuf>,
}

/// A torn tail [`Log::open`] cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    /// Where the valid records end.
    pub offset: u64,
    /// Bytes after that which had been written (up to the last non-zero one). They stay
    /// in the file, never read again: the segment is sealed and a new one follows.
    pub bytes: u64,
}

/// Counters of the log since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Calls to `append` that wrote records.
    pub appends: u64,
    /// File fsyncs of every kind (group commit, segment roll, truncation).
    pub fsyncs: u64,
    /// Group-commit rounds of the syncer: each makes every earlier append durable.
    pub sync_rounds: u64,
}

#[derive(Debug)]
struct Segment {
    first: u64,
    prev_crc: u32,
    offsets: Vec<u32>,
    crcs: Vec<u32>,
    end: u64,
}

impl Segment {
    fn last_index(&self) -> Option<u64> {
        (!self.offsets.is_empty()).then(|| self.first + self.offsets.len() as u64 - 1)
    }
    fn last_crc(&self) -> u32 {
        self.crcs.last().copied().unwrap_or(self.prev_crc)
    }
    /// Byte range of the record at position `i`.
    fn span(&self, i: usize) -> (u64, u64) {
        let start = u64::from(self.offsets[i]);
        let end = self
            .offsets
            .get(i + 1)
            .map_or(self.end, |&next| u64::from(next));
        (start, end)
    }
}

#[derive(Debug, Default)]
struct State {
    segments: Vec<Segment>,
    /// The CRC the next record chains to when there is no segment.
    chain_crc: u32,
    written: u64,
    synced: u64,
    dirty: BTreeSet<u64>,
    failed: Option<String>,
    shutdown: bool,
    retain_from: Option<u64>,
    appends: u64,
}

impl State {
    fn first_index(&self) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| !s.offsets.is_empty())
            .map(|s| s.first)
    }
    fn last_index(&self) -> Option<u64> {
        self.segments.iter().rev().find_map(Segment::last_index)
    }
    fn chain(&self) -> u32 {
        self.segments
            .last()
            .map_or(self.chain_crc, Segment::last_crc)
    }
}

/// What the syncer publishes to waiting appends.
#[derive(Clone, Debug, Default)]
struct Durable {
    synced: u64,
    failed: Option<String>,
    closed: bool,
}

struct Shared {
    disk: Arc<dyn Disk>,
    layout: Layout,
    options: LogOptions,
    state: Mutex<State>,
    wake: Condvar,
    sync_lock: Mutex<()>,
    durable: watch::Sender<Durable>,
    fsyncs: AtomicU64,
    sync_rounds: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn sync(&self, path: &Path) -> Result<(), WalError> {
        self.disk.sync(path).map_err(WalError::io("fsync", path))?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> Result<(), WalError> {
        self.disk
            .sync_dir(dir)
            .map_err(WalError::io("fsync directory", dir))
    }

    /// Puts a new, empty segment named `first` in place, atomically replacing one of
    /// that name: a temporary file is preallocated, given its header and synced, then
    /// renamed over, and the directory synced. A crash leaves the old file or the new.
    fn replace_with_empty(&self, first: u64, prev_crc: u32) -> Result<Segment, WalError> {
        let path = self.layout.segment(first);
        let temporary = path.with_extension("tmp");
        let disk = &self.disk;
        disk.create(&temporary)
            .map_err(WalError::io("create", &temporary))?;
        disk.allocate(&temporary, self.options.segment_bytes)
            .map_err(WalError::io("allocate", &temporary))?;
        disk.write_at(&temporary, 0, &segment::encode_header(first, prev_crc))
            .map_err(WalError::io("write", &temporary))?;
        self.sync(&temporary)?;
        disk.rename(&temporary, &path)
            .map_err(WalError::io("rename", &temporary))?;
        self.sync_dir(&self.layout.dir)?;
        Ok(Segment {
            first,
            prev_crc,
            offsets: Vec::new(),
            crcs: Vec::new(),
            end: SEGMENT_HEADER_LEN as u64,
        })
    }

    /// Starts a segment whose first record will be `first`: created, preallocated, its
    /// header written and synced, its name synced. The segment before it is synced
    /// first, so a later segment never exists with an earlier one torn.
    fn roll(&self, state: &mut State, first: u64) -> Result<(), WalError> {
        if let Some(current) = state.segments.last() {
            let path = self.layout.segment(current.first);
            self.sync(&path)?;
            let current = current.first;
            state.dirty.remove(&current);
        }
        let prev_crc = state.chain();
        let path = self.layout.segment(first);
        let disk = &self.disk;
        disk.create(&path).map_err(WalError::io("create", &path))?;
        disk.allocate(&path, self.options.segment_bytes)
            .map_err(WalError::io("allocate", &path))?;
        disk.write_at(&path, 0, &segment::encode_header(first, prev_crc))
            .map_err(WalError::io("write", &path))?;
        self.sync(&path)?;
        self.sync_dir(&self.layout.dir)?;
        state.segments.push(Segment {
            first,
            prev_crc,
            offsets: Vec::new(),
            crcs: Vec::new(),
            end: SEGMENT_HEADER_LEN as u64,
        });
        Ok(())
    }

    /// Writes `records` at the end of the log; returns the write's sequence number.
    fn write(&self, records: &[Record]) -> Result<u64, WalError> {
        let max = self.options.max_payload;
        if let Some(big) = records.iter().find(|r| r.payload.len() > max) {
            return Err(WalError::RecordTooLarge {
                len: big.payload.len(),
                max,
            });
        }
        let mut state = self.state();
        if let Some(failure) = &state.failed {
            return Err(WalError::Poisoned(failure.clone()));
        }
        let Some(first) = records.first() else {
            return Ok(state.written);
        };
        let next = state.last_index().map_or(first.index, |last| last + 1);
        for (expected, record) in (next..).zip(records) {
            if record.index != expected {
                return Err(WalError::NotContiguous {
                    expected,
                    got: record.index,
                });
            }
        }
        let result = self.write_locked(&mut state, records);
        if let Err(error) = &result {
            // The files and the state may disagree now: refuse until reopened.
            state.failed = Some(error.to_string());
        }
        result
    }

    fn write_locked(&self, state: &mut State, records: &[Record]) -> Result<u64, WalError> {
        // An empty log may hold one empty segment (its first record never landed): it
        // is named by an index the next record may not have.
        if let (Some(segment), Some(first)) = (state.segments.last(), records.first()) {
            if segment.offsets.is_empty() && segment.first != first.index {
                let path = self.layout.segment(segment.first);
                self.disk
                    .remove(&path)
                    .map_err(WalError::io("remove", &path))?;
                self.sync_dir(&self.layout.dir)?;
                let (empty, prev_crc) = (segment.first, segment.prev_crc);
                state.dirty.remove(&empty);
                state.chain_crc = prev_crc;
                state.segments.pop();
            }
        }
        let mut buffer = Vec::new();
        let mut chain = state.chain();
        for record in records {
            let fits = state.segments.last().is_some_and(|s| {
                s.end + (buffer.len() + record.encoded_len()) as u64 <= self.options.segment_bytes
            });
            if !fits {
                self.flush(state, &mut buffer)?;
                self.roll(state, record.index)?;
            }
            let Some(segment) = state.segments.last_mut() else {
                return Err(WalError::BadOptions("no segment to write to".into()));
            };
            let offset = segment.end + buffer.len() as u64;
            chain = record::encode(record, chain, &mut buffer);
            segment.offsets.push(offset as u32);
            segment.crcs.push(chain);
        }
        self.flush(state, &mut buffer)?;
        state.written += 1;
        state.appends += 1;
        self.wake.notify_all();
        Ok(state.written)
    }

    /// Writes `buffer` at the end of the last segment (whose offsets already name it).
    fn flush(&self, state: &mut State, buffer: &mut Vec<u8>) -> Result<(), WalError> {
        if buffer.is_empty() {
            return Ok(());
        }
        let Some(segment) = state.segments.last_mut() else {
            return Err(WalError::BadOptions("no segment to write to".into()));
        };
        let path = self.layout.segment(segment.first);
        self.disk
            .write_at(&path, segment.end, buffer)
            .map_err(WalError::io("write", &path))?;
        segment.end += buffer.len() as u64;
        state.dirty.insert(segment.first);
        buffer.clear();
        Ok(())
    }
}

/// The syncer: one group-commit round at a time until the log is dropped.
fn run_syncer(shared: Arc<Shared>) {
    loop {
        {
            let mut state = shared.state();
            while !state.shutdown && state.written <= state.synced {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if state.shutdown {
                break;
            }
        }
        let _round = lock(&shared.sync_lock);
        let (target, dirty) = {
            let mut state = shared.state();
            (state.written, std::mem::take(&mut state.dirty))
        };
        let mut failure = None;
        for first in dirty {
            if let Err(error) = shared.sync(&shared.layout.segment(first)) {
                failure = Some(error.to_string());
                break;
            }
        }
        shared.sync_rounds.fetch_add(1, Ordering::Relaxed);
        let mut state = shared.state();
        match failure {
            Some(failure) => {
                state.failed = Some(failure.clone());
                shared.durable.send_modify(|d| d.failed = Some(failure));
                break;
            }
            None => {
                state.synced = target;
                shared.durable.send_modify(|d| d.synced = target);
            }
        }
    }
    shared.durable.send_modify(|d| d.closed = true);
}

struct Inner {
    shared: Arc<Shared>,
    syncer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.state().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(syncer) = lock(&self.syncer).take() {
            let _ = syncer.join();
        }
    }
}

/// The write-ahead log of one node. Cheap to clone; the syncer stops with the last clone
/// (without a final fsync: an append nobody awaited is not promised).
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

impl Log {
    /// Opens (or creates) the log in `dir`: scans every segment, cuts a torn tail off
    /// the last one, and refuses any other damage with the file and offset.
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        options: LogOptions,
    ) -> Result<(Log, OpenReport), WalError> {
        if options.max_payload > MAX_PAYLOAD_HARD
            || options.segment_bytes > u64::from(u32::MAX)
            || ((SEGMENT_HEADER_LEN + HEADER_LEN + options.max_payload) as u64)
                > options.segment_bytes
        {
            return Err(WalError::BadOptions(format!(
                "segments of {} bytes must hold a record of {} bytes, at most {MAX_PAYLOAD_HARD}, and stay under 4 GiB",
                options.segment_bytes, options.max_payload
            )));
        }
        let layout = Layout::new(dir);
        disk.create_dir_all(dir)
            .map_err(WalError::io("create directory", dir))?;
        let archive = layout.archive_dir();
        disk.create_dir_all(&archive)
            .map_err(WalError::io("create directory", &archive))?;
        let names = disk.list(dir).map_err(WalError::io("list", dir))?;
        for stale in names.iter().filter(|n| n.ends_with(".tmp")) {
            let path = dir.join(stale);
            disk.remove(&path).map_err(WalError::io("remove", &path))?;
        }
        let firsts = segment::segments_in(&names);
        let shared = Arc::new(Shared {
            disk: disk.clone(),
            layout: layout.clone(),
            options: options.clone(),
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            sync_lock: Mutex::new(()),
            durable: watch::Sender::new(Durable::default()),
            fsyncs: AtomicU64::new(0),
            sync_rounds: AtomicU64::new(0),
        });
        let mut report = OpenReport::default();
        let mut segments: Vec<Segment> = Vec::new();
        for (i, &first) in firsts.iter().enumerate() {
            let path = layout.segment(first);
            let next_first = firsts.get(i + 1).copied();
            let bytes = disk.read_all(&path).map_err(WalError::io("read", &path))?;
            let scanned = segment::scan(
                &path,
                &bytes,
                first,
                next_first,
                options.max_payload,
                &mut |_| {},
            )?;
            if scanned.blank {
                // The newest segment's name landed, its header did not.
                let prev_crc = segments.last().map_or(0, Segment::last_crc);
                segments.push(shared.replace_with_empty(first, prev_crc)?);
                report.replaced_blank_segment = Some(path);
                continue;
            }
            if let Some(previous) = segments.last() {
                let follows = previous.last_index().map(|last| last + 1);
                if follows != Some(first) || previous.last_crc() != scanned.prev_crc {
                    return Err(WalError::Corrupt {
                        path,
                        offset: 8,
                        reason: format!(
                            "the segment does not continue the one before it (which ends at index {:?})",
                            previous.last_index()
                        ),
                    });
                }
            }
            if next_first.is_some() && scanned.offsets.is_empty() {
                // Only a truncation leaves an empty segment before others, and only when
                // a crash stopped it before it removed the last of them: finish it.
                for &later in firsts[i + 1..].iter().rev() {
                    let later = layout.segment(later);
                    disk.remove(&later)
                        .map_err(WalError::io("remove", &later))?;
                    shared.sync_dir(dir)?;
                    report.finished_truncation.push(later);
                }
                segments.push(Segment {
                    first,
                    prev_crc: scanned.prev_crc,
                    offsets: Vec::new(),
                    crcs: Vec::new(),
                    end: scanned.end,
                });
                break;
            }
            if scanned.torn_bytes > 0 {
                report.torn_tail = Some(TornTail {
                    path: path.clone(),
                    offset: scanned.end,
                    bytes: scanned.torn_bytes,
                });
            } else if next_first.is_none() && (bytes.len() as u64) < options.segment_bytes {
                disk.allocate(&path, options.segment_bytes)
                    .map_err(WalError::io("allocate", &path))?;
                shared.sync(&path)?;
            }
            report.records += scanned.offsets.len() as u64;
            segments.push(Segment {
                first,
                prev_crc: scanned.prev_crc,
                offsets: scanned.offsets,
                crcs: scanned.crcs,
                end: scanned.end,
            });
        }
        {
            let mut state = shared.state();
            state.segments = segments;
            // A torn tail is never overwritten: the segment is sealed before it and the
            // next record goes to a new segment (an empty one in its place if the tear
            // took its only record).
            if report.torn_tail.is_some() {
                let (first, prev_crc, last) = match state.segments.last() {
                    Some(torn) => (torn.first, torn.prev_crc, torn.last_index()),
                    None => return Err(WalError::BadOptions("a torn tail in no segment".into())),
                };
                match last {
                    Some(last) => shared.roll(&mut state, last + 1)?,
                    None => {
                        let empty = shared.replace_with_empty(first, prev_crc)?;
                        state.segments.pop();
                        state.segments.push(empty);
                    }
                }
            }
            report.segments = state.segments.len();
        }
        let syncer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("wal-syncer".into())
                .spawn(move || run_syncer(shared))
                .map_err(WalError::io("spawn the syncer for", dir))?
        };
        let log = Log {
            inner: Arc::new(Inner {
                shared,
                syncer: Mutex::new(Some(syncer)),
            }),
        };
        Ok((log, report))
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Appends `records` (continuing the log) and resolves once they are durable. The
    /// write itself happens before this returns; only the wait is in the future.
    pub fn append(
        &self,
        records: Vec<Record>,
    ) -> impl Future<Output = Result<(), WalError>> + Send + 'static {
        let mut durable = self.shared().durable.subscribe();
        let written = self.shared().write(&records);
        async move {
            let ticket = written?;
            let seen = durable
                .wait_for(|d| d.synced >= ticket || d.failed.is_some() || d.closed)
                .await
                .map_err(|_| WalError::Closed)?;
            if seen.synced >= ticket {
                Ok(())
            } else if let Some(failure) = &seen.failed {
                Err(WalError::Poisoned(failure.clone()))
            } else {
                Err(WalError::Closed)
            }
        }
    }

    pub fn first_index(&self) -> Option<u64> {
        self.shared().state().first_index()
    }

    pub fn last_index(&self) -> Option<u64> {
        self.shared().state().last_index()
    }

    pub fn stats(&self) -> LogStats {
        let shared = self.shared();
        LogStats {
            appends: shared.state().appends,
            fsyncs: shared.fsyncs.load(Ordering::Relaxed),
            sync_rounds: shared.sync_rounds.load(Ordering::Relaxed),
        }
    }

    /// The records of `range` that are in the log, in order, each checked against its
    /// CRC again.
    pub fn read(&self, range: Range<u64>) -> Result<Vec<Record>, WalError> {
        let shared = self.shared();
        let state = shared.state();
        let mut out = Vec::new();
        for segment in &state.segments {
            let Some(last) = segment.last_index() else {
                continue;
            };
            let from = range.start.max(segment.first);
            let to = range.end.min(last + 1);
            if from >= to {
                continue;
            }
            let (i, j) = (
                (from - segment.first) as usize,
                (to - segment.first) as usize,
            );
            let start = u64::from(segment.offsets[i]);
            let end = segment.span(j - 1).1;
            let path = shared.layout.segment(segment.first);
            let bytes = shared
                .disk
                .read_at(&path, start, (end - start) as usize)
                .map_err(WalError::io("read", &path))?;
            let mut chain = if i == 0 {
                segment.prev_crc
            } else {
                segment.crcs[i - 1]
            };
            for k in i..j {
                let (at, _) = segment.span(k);
                let rel = (at - start) as usize;
                match record::decode(
                    &bytes[rel..],
                    chain,
                    segment.first + k as u64,
                    shared.options.max_payload,
                ) {
                    Decoded::Record { record, crc, .. } => {
                        chain = crc;
                        out.push(record);
                    }
                    Decoded::End | Decoded::Damaged { .. } => {
                        return Err(WalError::Corrupt {
                            path,
                            offset: at,
                            reason: format!(
                                "record {} no longer reads back as written",
                                segment.first + k as u64
                            ),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Drops `index` and every record after it (Raft's conflict truncation), durably.
    /// The segment holding `index` is sealed and an empty segment named `index` follows
    /// it (replacing one of that name atomically); then the segments after are removed.
    /// No byte is overwritten, and a crash part-way leaves the log as it was or as it
    /// is to be, never corrupt and never with a truncated record back.
    pub fn truncate_from(&self, index: u64) -> Result<(), WalError> {
        let shared = self.shared();
        let _no_round = lock(&shared.sync_lock);
        let mut state = shared.state();
        if state.last_index().is_none_or(|last| index > last) {
            return Ok(());
        }
        let holder = state.segments.iter().rposition(|s| s.first <= index);
        let prev_crc = match holder {
            None => state
                .segments
                .first()
                .map_or(state.chain_crc, |s| s.prev_crc),
            Some(h) if state.segments[h].first == index => state.segments[h].prev_crc,
            Some(h) => {
                let cut_holder = &mut state.segments[h];
                let keep = ((index - cut_holder.first) as usize).min(cut_holder.offsets.len());
                let prev_crc = match keep {
                    0 => cut_holder.prev_crc,
                    keep => cut_holder.crcs[keep - 1],
                };
                let cut = cut_holder
                    .offsets
                    .get(keep)
                    .map_or(cut_holder.end, |&o| u64::from(o));
                cut_holder.offsets.truncate(keep);
                cut_holder.crcs.truncate(keep);
                cut_holder.end = cut;
                let first = cut_holder.first;
                // The records it keeps are durable before a segment follows it.
                shared.sync(&shared.layout.segment(first))?;
                state.dirty.remove(&first);
                prev_crc
            }
        };
        // First the empty segment named `index` (atomically replacing one of that name):
        // once it is durable, open finishes the truncation whatever else landed (an
        // empty segment before others marks an interrupted truncation).
        let empty = shared.replace_with_empty(index, prev_crc)?;
        let later: Vec<u64> = state
            .segments
            .iter()
            .map(|s| s.first)
            .filter(|&first| first > index)
            .collect();
        for first in later.into_iter().rev() {
            let path = shared.layout.segment(first);
            shared
                .disk
                .remove(&path)
                .map_err(WalError::io("remove", &path))?;
            state.dirty.remove(&first);
        }
        shared.sync_dir(&shared.layout.dir)?;
        state.segments.retain(|s| s.first < index);
        state.dirty.remove(&index);
        state.segments.push(empty);
        Ok(())
    }

    /// Drops whole segments whose records are all `<= index`, never the last segment
    /// that holds records.
    /// A dropped segment holding an index at or after the retention point is moved to
    /// `archive/` instead of deleted.
    pub fn purge_to(&self, index: u64) -> Result<(), WalError> {
        let shared = self.shared();
        let _no_round = lock(&shared.sync_lock);
        let mut state = shared.state();
        let dir = &shared.layout.dir;
        // The segment after the one dropped must hold a record: purging never empties
        // the log (an empty last segment is one whose first record was lost).
        while state.segments.len() > 1
            && state.segments[1].first <= index.saturating_add(1)
            && !state.segments[1].offsets.is_empty()
        {
            let segment = state.segments.remove(0);
            let last = state.segments[0].first - 1;
            let path = shared.layout.segment(segment.first);
            if state.retain_from.is_some_and(|keep| last >= keep) {
                let archived = shared.layout.archived(segment.first);
                shared
                    .disk
                    .rename(&path, &archived)
                    .map_err(WalError::io("archive", &path))?;
                shared.sync_dir(&shared.layout.archive_dir())?;
            } else {
                shared
                    .disk
                    .remove(&path)
                    .map_err(WalError::io("remove", &path))?;
            }
            shared.sync_dir(dir)?;
            state.dirty.remove(&segment.first);
        }
        Ok(())
    }

    /// Sets the retention point: the oldest index a kept checkpoint may need replayed
    /// (`None`: none). Archived segments wholly before it are deleted now.
    pub fn set_retain_from(&self, retain_from: Option<u64>) -> Result<(), WalError> {
        let shared = self.shared();
        let _no_round = lock(&shared.sync_lock);
        let mut state = shared.state();
        state.retain_from = retain_from;
        let archive = shared.layout.archive_dir();
        let names = shared
            .disk
            .list(&archive)
            .map_err(WalError::io("list", &archive))?;
        let firsts = segment::segments_in(&names);
        let live_first = state.segments.first().map(|s| s.first);
        let mut removed = false;
        for (i, &first) in firsts.iter().enumerate() {
            let next = firsts.get(i + 1).copied().or(live_first);
            let needed = match (retain_from, next) {
                (None, _) => false,
                (Some(keep), Some(next)) => next > keep,
                (Some(_), None) => true,
            };
            if !needed {
                let path = shared.layout.archived(first);
                shared
                    .disk
                    .remove(&path)
                    .map_err(WalError::io("remove", &path))?;
                removed = true;
            }
        }
        if removed {
            shared.sync_dir(&archive)?;
        }
        Ok(())
    }

    /// Replaces the hard state (Raft's vote and term) atomically: a temporary file,
    /// fsynced, renamed over the old one, the directory fsynced.
    pub fn save_hard_state(&self, bytes: &[u8]) -> Result<(), WalError> {
        let shared = self.shared();
        let path = shared.layout.hard_state();
        let temporary = path.with_extension("tmp");
        let mut framed = Vec::with_capacity(bytes.len() + 8);
        framed.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        framed.extend_from_slice(&record::crc32c(0, bytes).to_le_bytes());
        framed.extend_from_slice(bytes);
        let disk = &shared.disk;
        disk.create(&temporary)
            .map_err(WalError::io("create", &temporary))?;
        disk.write_at(&temporary, 0, &framed)
            .map_err(WalError::io("write", &temporary))?;
        shared.sync(&temporary)?;
        disk.rename(&temporary, &path)
            .map_err(WalError::io("rename", &temporary))?;
        shared.sync_dir(&shared.layout.dir)
    }

    /// The hard state last saved, `None` if never.
    pub fn load_hard_state(&self) -> Result<Option<Vec<u8>>, WalError> {
        let shared = self.shared();
        load_hard_state(&*shared.disk, &shared.layout.dir)
    }
}

/// The hard state last saved in the log directory `dir`, `None` if never; reads only
/// (`wal recover` uses it beside a live node).
pub fn load_hard_state(disk: &dyn Disk, dir: &Path) -> Result<Option<Vec<u8>>, WalError> {
    let path = Layout::new(dir).hard_state();
    if !disk.exists(&path).map_err(WalError::io("stat", &path))? {
        return Ok(None);
    }
    let framed = disk.read_all(&path).map_err(WalError::io("read", &path))?;
    let corrupt = |reason: &str| WalError::Corrupt {
        path: path.clone(),
        offset: 0,
        reason: reason.into(),
    };
    if framed.len() < 8 {
        return Err(corrupt("a hard state shorter than its frame"));
    }
    let mut word = [0; 4];
    word.copy_from_slice(&framed[..4]);
    let len = u32::from_le_bytes(word) as usize;
    word.copy_from_slice(&framed[4..8]);
    let crc = u32::from_le_bytes(word);
    let bytes = framed
        .get(8..8 + len)
        .ok_or_else(|| corrupt("a hard state shorter than its length"))?;
    if record::crc32c(0, bytes) != crc {
        return Err(corrupt("a hard state whose CRC does not match"));
    }
    Ok(Some(bytes.to_vec()))
}
