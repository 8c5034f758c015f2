//! The span store: an engine with no HTTP in it.
//!
//! ```text
//! record   one span as stored: indexed fields, then the OTLP span as protobuf
//! log      the ingest log: group-committed frames, replayed on start
//! block    sealed blocks: one hour of spans, LZ4 chunks, trace-id index, bloom filter
//! storage  BlockStorage, the trait blocks live behind; LocalDir, a directory;
//!          ObjectBlocks, object storage
//! ```
//!
//! Spans flow: [`SpanStore::ingest`] → the writer thread appends them to the log and
//! syncs (one sync for every batch waiting: group commit) → they join the in-memory
//! *active* table and the call returns → when the active table is large or old enough
//! the writer rotates the log and hands the table to the sealer thread, which writes one
//! block per hour of span start times and then deletes the log segments it covered.
//!
//! Invariants:
//! - **Acknowledged means durable.** `ingest` returns `Ok` only after the log is synced;
//!   a span stays in the log until a block holding it is stored, and the log is replayed
//!   on start. A crash between the two stores a span twice; reads and compaction drop the
//!   duplicate (same trace and span id).
//! - **Bounded memory.** Spans waiting to be sealed are capped (`max_buffered_spans`);
//!   past that, and when the commit queue is full, `ingest` refuses with
//!   [`StoreError::Full`] at once instead of queueing.
//! - **Lookups read only candidate blocks**: those whose bloom filter and index hold the
//!   trace id; then one chunk of each.
//! - **Late spans join their trace**: every block is a candidate whatever its hour, and
//!   compaction merges the blocks of an hour, deduplicated.
//! - Blocks are immutable; compaction and retention replace and delete whole blocks.

pub mod block;
pub mod log;
pub mod record;
pub mod storage;

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::oneshot;

use self::block::{count_edges, hour_of, Block, Catalog, Edges};
use self::log::IngestLog;
pub use self::record::{RejectedSpan, SpanRecord};
pub use self::storage::{BlockStorage, LocalDir, ObjectBlocks};
use crate::clock::Clock;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("span store I/O: {0}")]
    Io(#[from] io::Error),
    #[error("span store data is damaged: {0}")]
    Corrupt(String),
    #[error("the span store is behind; retry later")]
    Full,
    #[error("the span store is shut down")]
    Closed,
}

/// Settings of a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The ingest log's directory.
    pub log_dir: PathBuf,
    /// Seal the active table once it holds this many spans...
    pub seal_spans: usize,
    /// ...or once its oldest span arrived this long ago.
    pub seal_after: Duration,
    /// Spans in memory (active, sealing, queued) beyond which ingest is refused.
    pub max_buffered_spans: usize,
    /// Batches that may wait for the writer.
    pub commit_queue: usize,
    /// Blocks whose newest span is older than this are deleted.
    pub retention: Duration,
    /// The oldest blocks are deleted while all blocks together exceed this.
    pub max_bytes: u64,
    /// Sync the log before acknowledging (off only in benchmarks of the engine).
    pub fsync: bool,
}

impl StoreConfig {
    pub fn new(log_dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            log_dir: log_dir.into(),
            seal_spans: 200_000,
            seal_after: Duration::from_secs(30),
            max_buffered_spans: 1_000_000,
            commit_queue: 1_024,
            retention: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 20 * 1024 * 1024 * 1024,
            fsync: true,
        }
    }
}

/// What one ingest call stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    pub accepted: usize,
    pub rejected: usize,
    /// Why the first rejected span was refused.
    pub first_rejection: Option<RejectedSpan>,
}

/// A span search. Every given condition must hold for one span of a trace.
#[derive(Debug, Clone, Default)]
pub struct SpanQuery {
    pub service: Option<String>,
    pub operation: Option<String>,
    /// Attribute key and value (rendered as text).
    pub attributes: Vec<(String, String)>,
    /// `Some(true)`: only failed spans; `Some(false)`: only spans that did not fail.
    pub error: Option<bool>,
    pub min_duration_ns: Option<u64>,
    pub max_duration_ns: Option<u64>,
    pub start_ns: Option<u64>,
    pub end_ns: Option<u64>,
    pub limit: usize,
}

/// Counters and sizes, for the metrics and the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub blocks: usize,
    pub block_bytes: u64,
    pub block_spans: u64,
    pub buffered_spans: usize,
    pub refused_batches: u64,
    pub compactions: u64,
    pub blocks_expired: u64,
}

#[derive(Default)]
struct Memtable {
    traces: HashMap<[u8; 16], Vec<SpanRecord>>,
    spans: usize,
    first_ms: i64,
    catalog: Catalog,
}

impl Memtable {
    fn insert(&mut self, records: Vec<SpanRecord>, catalog: &Catalog, now_ms: i64) {
        if self.spans == 0 {
            self.first_ms = now_ms;
        }
        self.spans += records.len();
        for r in records {
            self.traces.entry(r.trace_id).or_default().push(r);
        }
        self.catalog.merge(catalog);
    }

    fn all(&self) -> impl Iterator<Item = &SpanRecord> {
        self.traces.values().flatten()
    }
}

struct State {
    active: Memtable,
    sealing: Vec<Arc<Memtable>>,
    blocks: Vec<Arc<Block>>,
    catalog: Catalog,
    next_seq: u64,
}

struct Shared {
    config: StoreConfig,
    storage: Arc<dyn BlockStorage>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Spans accepted into the commit queue, not yet in the active table.
    queued_spans: AtomicUsize,
    /// Serialises the writers of blocks (sealer, compaction, retention).
    block_writers: Mutex<()>,
    refused: AtomicU64,
    compactions: AtomicU64,
    expired: AtomicU64,
}

enum Command {
    Spans {
        records: Vec<SpanRecord>,
        catalog: Catalog,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Seal the active table now; answer once its blocks are stored.
    Seal(oneshot::Sender<Result<(), StoreError>>),
    Stop,
}

struct SealJob {
    table: Arc<Memtable>,
    through_segment: u64,
    done: Option<oneshot::Sender<Result<(), StoreError>>>,
}

/// The span store's handle. Cheap to clone; every clone is the same store.
#[derive(Clone)]
pub struct SpanStore {
    shared: Arc<Shared>,
    commands: SyncSender<Command>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The text of an attribute value, as search compares it.
pub fn value_text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => meridian_shared::traces::to_hex(b),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

impl SpanStore {
    /// Opens the store: loads the blocks in `storage`, replays the log (sealing what it
    /// held), and starts the writer and sealer threads.
    pub fn open(
        config: StoreConfig,
        storage: Arc<dyn BlockStorage>,
        clock: Arc<dyn Clock>,
    ) -> Result<SpanStore, StoreError> {
        std::fs::create_dir_all(&config.log_dir)?;
        let mut blocks = Vec::new();
        let mut catalog = Catalog::default();
        let mut next_seq = 1;
        for (name, size) in storage.list()? {
            if !name.ends_with(".blk") {
                continue;
            }
            let block = Block::open(storage.as_ref(), &name, size)?;
            catalog.merge(&block.catalog);
            next_seq = next_seq.max(block.seq + 1);
            blocks.push(Arc::new(block));
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                active: Memtable::default(),
                sealing: Vec::new(),
                blocks,
                catalog,
                next_seq,
            }),
            queued_spans: AtomicUsize::new(0),
            block_writers: Mutex::new(()),
            refused: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            config,
            storage,
            clock,
        });
        // Replay what the log holds and seal it before taking new spans.
        let old_segments = log::segments(&shared.config.log_dir)?;
        if let Some(&last) = old_segments.last() {
            let mut replayed = Memtable::default();
            for &segment in &old_segments {
                let records = log::replay(&shared.config.log_dir, segment)?;
                let mut delta = Catalog::default();
                for r in &records {
                    add_to_catalog(&mut delta, r);
                }
                replayed.insert(records, &delta, shared.clock.now_ms());
            }
            lock(&shared.state).catalog.merge(&replayed.catalog);
            shared.seal(&replayed)?;
            log::delete_through(&shared.config.log_dir, last)?;
        }
        let log = IngestLog::create(&shared.config.log_dir, shared.config.fsync)?;
        let (commands, receiver) = mpsc::sync_channel(shared.config.commit_queue);
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("span-log-writer".into())
            .spawn(move || writer_loop(writer_shared, log, receiver))?;
        Ok(SpanStore {
            shared,
            commands,
            writer: Arc::new(Mutex::new(Some(writer))),
        })
    }

    /// Stores `spans` (each with its resource's `service.name`); returns once they are
    /// durable. Spans with malformed ids are counted as rejected, the rest stored.
    pub async fn ingest(&self, spans: Vec<(String, Span)>) -> Result<IngestOutcome, StoreError> {
        let mut outcome = IngestOutcome::default();
        let mut records = Vec::with_capacity(spans.len());
        let mut catalog = Catalog::default();
        for (service, span) in spans {
            catalog.add_operation(&service, &span.name);
            catalog.add_tag("service.name", &service);
            for kv in &span.attributes {
                if let Some(value) = &kv.value {
                    if matches!(value.value, Some(any_value::Value::StringValue(_)))
                        || matches!(value.value, Some(any_value::Value::IntValue(_)))
                        || matches!(value.value, Some(any_value::Value::BoolValue(_)))
                    {
                        catalog.add_tag(&kv.key, &value_text(value));
                    }
                }
            }
            match SpanRecord::from_otlp(&service, span) {
                Ok(record) => records.push(record),
                Err(why) => {
                    outcome.rejected += 1;
                    outcome.first_rejection.get_or_insert(why);
                }
            }
        }
        outcome.accepted = records.len();
        if records.is_empty() {
            return Ok(outcome);
        }
        let n = records.len();
        let buffered = self.buffered_spans();
        if buffered + n > self.shared.config.max_buffered_spans {
            self.shared.refused.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Full);
        }
        let (done, wait) = oneshot::channel();
        self.shared.queued_spans.fetch_add(n, Ordering::Relaxed);
        match self.commands.try_send(Command::Spans {
            records,
            catalog,
            done,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared.queued_spans.fetch_sub(n, Ordering::Relaxed);
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::Full);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.queued_spans.fetch_sub(n, Ordering::Relaxed);
                return Err(StoreError::Closed);
            }
        }
        wait.await.map_err(|_| StoreError::Closed)??;
        Ok(outcome)
    }

    fn buffered_spans(&self) -> usize {
        let state = lock(&self.shared.state);
        state.active.spans
            + state.sealing.iter().map(|t| t.spans).sum::<usize>()
            + self.shared.queued_spans.load(Ordering::Relaxed)
    }

    /// Seals everything acknowledged so far into blocks; returns once they are stored.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::Seal(done))
            .map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops the writer (what is acknowledged stays in the log) and waits for it.
    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(handle) = lock(&self.writer).take() {
            let _ = handle.join();
        }
    }

    /// Every span of `trace_id`, each span once. Reads only candidate blocks.
    pub fn trace(&self, trace_id: &[u8; 16]) -> Result<Vec<SpanRecord>, StoreError> {
        let (mut records, candidates) = {
            let state = lock(&self.shared.state);
            let mut records: Vec<SpanRecord> = Vec::new();
            for table in std::iter::once(&state.active).chain(state.sealing.iter().map(|t| &**t)) {
                if let Some(spans) = table.traces.get(trace_id) {
                    records.extend(spans.iter().cloned());
                }
            }
            let candidates: Vec<Arc<Block>> = state
                .blocks
                .iter()
                .filter(|b| b.may_contain(trace_id))
                .cloned()
                .collect();
            (records, candidates)
        };
        for block in &candidates {
            match block.trace(self.shared.storage.as_ref(), trace_id) {
                Ok(mut spans) => records.append(&mut spans),
                // Replaced by compaction meanwhile: read again from the new blocks.
                Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                    return self.trace(trace_id)
                }
                Err(e) => return Err(e),
            }
        }
        let mut seen = HashSet::new();
        records.retain(|r| seen.insert(r.span_id));
        records.sort_by_key(|r| (r.start_ns, r.span_id));
        Ok(records)
    }

    /// The ids of up to `query.limit` traces with a span matching `query`, newest blocks
    /// first (the active table before them).
    pub fn search(&self, query: &SpanQuery) -> Result<Vec<[u8; 16]>, StoreError> {
        let limit = query.limit.max(1);
        let mut found: Vec<[u8; 16]> = Vec::new();
        let mut seen = HashSet::new();
        let mut consider = |r: &SpanRecord, found: &mut Vec<[u8; 16]>| {
            if found.len() < limit && !seen.contains(&r.trace_id) && span_matches(r, query) {
                seen.insert(r.trace_id);
                found.push(r.trace_id);
            }
        };
        let mut blocks = {
            let state = lock(&self.shared.state);
            for table in std::iter::once(&state.active).chain(state.sealing.iter().map(|t| &**t)) {
                for r in table.all() {
                    consider(r, &mut found);
                }
            }
            state.blocks.clone()
        };
        blocks.sort_by_key(|b| std::cmp::Reverse((b.max_ns, b.seq)));
        for block in blocks {
            if found.len() >= limit {
                break;
            }
            if query.start_ns.is_some_and(|s| block.max_ns < s)
                || query.end_ns.is_some_and(|e| block.min_ns > e)
            {
                continue;
            }
            let result = block.scan(self.shared.storage.as_ref(), |records| {
                for r in &records {
                    consider(r, &mut found);
                }
                found.len() < limit
            });
            match result {
                Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        Ok(found)
    }

    /// Services, operations, attribute keys and values seen (capped).
    pub fn catalog(&self) -> Catalog {
        lock(&self.shared.state).catalog.clone()
    }

    /// Calls between services among spans that started in `[start_ns, end_ns]`
    /// (by block: a block overlapping the range counts whole).
    pub fn dependencies(&self, start_ns: u64, end_ns: u64) -> Edges {
        let state = lock(&self.shared.state);
        let mut edges = Edges::new();
        for block in state
            .blocks
            .iter()
            .filter(|b| b.max_ns >= start_ns && b.min_ns <= end_ns)
        {
            for (key, (n, e)) in &block.edges {
                let entry = edges.entry(key.clone()).or_default();
                entry.0 += n;
                entry.1 += e;
            }
        }
        for table in std::iter::once(&state.active).chain(state.sealing.iter().map(|t| &**t)) {
            for spans in table.traces.values() {
                count_edges(spans, &mut edges);
            }
        }
        edges
    }

    pub fn stats(&self) -> StoreStats {
        let state = lock(&self.shared.state);
        StoreStats {
            blocks: state.blocks.len(),
            block_bytes: state.blocks.iter().map(|b| b.size).sum(),
            block_spans: state.blocks.iter().map(|b| b.spans).sum(),
            buffered_spans: state.active.spans
                + state.sealing.iter().map(|t| t.spans).sum::<usize>(),
            refused_batches: self.shared.refused.load(Ordering::Relaxed),
            compactions: self.shared.compactions.load(Ordering::Relaxed),
            blocks_expired: self.shared.expired.load(Ordering::Relaxed),
        }
    }

    /// Merges the blocks of each hour that has more than one into one block, each span
    /// once, so that a trace's late spans sit with the rest. Returns the merges done.
    pub fn compact(&self) -> Result<usize, StoreError> {
        self.shared.compact()
    }

    /// Deletes blocks past the retention age, then the oldest while over `max_bytes`.
    /// Returns how many were deleted.
    pub fn enforce_retention(&self) -> Result<usize, StoreError> {
        self.shared.enforce_retention()
    }
}

fn add_to_catalog(catalog: &mut Catalog, r: &SpanRecord) {
    if let Ok(span) = r.to_otlp() {
        catalog.add_operation(&r.service, &span.name);
    }
    catalog.add_tag("service.name", &r.service);
}

fn span_matches(r: &SpanRecord, q: &SpanQuery) -> bool {
    let duration = r.end_ns - r.start_ns;
    if q.service.as_ref().is_some_and(|s| *s != r.service)
        || q.error.is_some_and(|e| e != r.error)
        || q.min_duration_ns.is_some_and(|d| duration < d)
        || q.max_duration_ns.is_some_and(|d| duration > d)
        || q.start_ns.is_some_and(|s| r.start_ns < s)
        || q.end_ns.is_some_and(|e| r.start_ns > e)
    {
        return false;
    }
    if q.operation.is_none() && q.attributes.is_empty() {
        return true;
    }
    let Ok(span) = r.to_otlp() else {
        return false;
    };
    if q.operation.as_ref().is_some_and(|o| *o != span.name) {
        return false;
    }
    q.attributes.iter().all(|(key, value)| {
        span.attributes
            .iter()
            .any(|kv| kv.key == *key && kv.value.as_ref().is_some_and(|v| value_text(v) == *value))
    })
}

fn writer_loop(shared: Arc<Shared>, mut log: IngestLog, commands: mpsc::Receiver<Command>) {
    let (seal_tx, seal_rx) = mpsc::channel::<SealJob>();
    let sealer_shared = shared.clone();
    let sealer = std::thread::Builder::new()
        .name("span-sealer".into())
        .spawn(move || sealer_loop(sealer_shared, seal_rx))
        .expect("spawn the span sealer");
    let tick = Duration::from_millis(500);
    'run: loop {
        let first = match commands.recv_timeout(tick) {
            Ok(command) => command,
            Err(RecvTimeoutError::Timeout) => {
                shared.maybe_seal(&mut log, &seal_tx, None, false);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while let Ok(more) = commands.try_recv() {
            batch.push(more);
            if batch.len() >= 256 {
                break;
            }
        }
        let mut seals = Vec::new();
        let mut stop = false;
        let mut spans = Vec::new();
        for command in batch {
            match command {
                Command::Spans {
                    records,
                    catalog,
                    done,
                } => spans.push((records, catalog, done)),
                Command::Seal(done) => seals.push(done),
                Command::Stop => stop = true,
            }
        }
        if !spans.is_empty() {
            let frames: Vec<&[SpanRecord]> = spans.iter().map(|(r, _, _)| r.as_slice()).collect();
            let written = log.append(&frames);
            let n: usize = spans.iter().map(|(r, _, _)| r.len()).sum();
            match written {
                Ok(()) => {
                    let now = shared.clock.now_ms();
                    let mut dones = Vec::with_capacity(spans.len());
                    {
                        let mut state = lock(&shared.state);
                        for (records, catalog, done) in spans {
                            state.catalog.merge(&catalog);
                            state.active.insert(records, &catalog, now);
                            dones.push(done);
                        }
                        shared.queued_spans.fetch_sub(n, Ordering::Relaxed);
                    }
                    for done in dones {
                        let _ = done.send(Ok(()));
                    }
                }
                Err(err) => {
                    tracing::error!(%err, "span log write failed");
                    shared.queued_spans.fetch_sub(n, Ordering::Relaxed);
                    for (_, _, done) in spans {
                        let _ = done.send(Err(StoreError::Io(io::Error::new(
                            err.kind(),
                            err.to_string(),
                        ))));
                    }
                    // A log that cannot be written cannot make anything durable.
                    break 'run;
                }
            }
        }
        for done in seals {
            shared.maybe_seal(&mut log, &seal_tx, Some(done), true);
        }
        shared.maybe_seal(&mut log, &seal_tx, None, false);
        if stop {
            break;
        }
    }
    drop(seal_tx);
    let _ = sealer.join();
}

fn sealer_loop(shared: Arc<Shared>, jobs: mpsc::Receiver<SealJob>) {
    while let Ok(job) = jobs.recv() {
        let result = shared.seal(&job.table).and_then(|()| {
            log::delete_through(&shared.config.log_dir, job.through_segment)?;
            Ok(())
        });
        {
            let mut state = lock(&shared.state);
            if result.is_ok() {
                state.sealing.retain(|t| !Arc::ptr_eq(t, &job.table));
            }
        }
        if let Err(err) = &result {
            // The spans stay in memory and in the log: nothing acknowledged is lost.
            tracing::error!(%err, "sealing spans into blocks failed");
        }
        if let Some(done) = job.done {
            let _ = done.send(result);
        }
    }
}

impl Shared {
    /// Rotates the log and hands the active table to the sealer when it is due (or
    /// `force`d). `done` is answered when its blocks are stored.
    fn maybe_seal(
        &self,
        log: &mut IngestLog,
        seal_tx: &mpsc::Sender<SealJob>,
        done: Option<oneshot::Sender<Result<(), StoreError>>>,
        force: bool,
    ) {
        let mut state = lock(&self.state);
        let due = state.active.spans >= self.config.seal_spans
            || (state.active.spans > 0
                && self.clock.now_ms() - state.active.first_ms
                    >= self.config.seal_after.as_millis() as i64);
        if state.active.spans == 0 && force {
            // Nothing new; wait for what is already sealing by sealing an empty table.
            drop(state);
            if let Some(done) = done {
                let job = SealJob {
                    table: Arc::new(Memtable::default()),
                    through_segment: 0,
                    done: Some(done),
                };
                let _ = seal_tx.send(job);
            }
            return;
        }
        if !(due || force) {
            return;
        }
        let through_segment = match log.rotate() {
            Ok(closed) => closed,
            Err(err) => {
                tracing::error!(%err, "span log rotation failed");
                if let Some(done) = done {
                    let _ = done.send(Err(StoreError::Io(err)));
                }
                return;
            }
        };
        let table = Arc::new(std::mem::take(&mut state.active));
        state.sealing.push(table.clone());
        drop(state);
        let _ = seal_tx.send(SealJob {
            table,
            through_segment,
            done,
        });
    }

    /// Writes `table` as blocks (one per hour) and registers them.
    fn seal(&self, table: &Memtable) -> Result<(), StoreError> {
        if table.spans == 0 {
            return Ok(());
        }
        let _writers = lock(&self.block_writers);
        let mut by_hour: HashMap<u64, Vec<SpanRecord>> = HashMap::new();
        for r in table.all() {
            by_hour
                .entry(hour_of(r.start_ns))
                .or_default()
                .push(r.clone());
        }
        let mut hours: Vec<_> = by_hour.into_iter().collect();
        hours.sort_by_key(|(hour, _)| *hour);
        for (hour, records) in hours {
            self.write_block(hour, records, &table.catalog, &[])?;
        }
        Ok(())
    }

    /// Stores one block and registers it in place of `replaces`.
    fn write_block(
        &self,
        hour: u64,
        records: Vec<SpanRecord>,
        catalog: &Catalog,
        replaces: &[Arc<Block>],
    ) -> Result<(), StoreError> {
        let seq = {
            let mut state = lock(&self.state);
            state.next_seq += 1;
            state.next_seq - 1
        };
        let name = block::block_name(hour, seq);
        let bytes = block::build(records, catalog);
        self.storage.put(&name, &bytes)?;
        let block = Arc::new(Block::open(
            self.storage.as_ref(),
            &name,
            bytes.len() as u64,
        )?);
        let mut state = lock(&self.state);
        state
            .blocks
            .retain(|b| !replaces.iter().any(|r| Arc::ptr_eq(b, r)));
        state.blocks.push(block);
        Ok(())
    }

    fn compact(&self) -> Result<usize, StoreError> {
        let groups: Vec<Vec<Arc<Block>>> = {
            let state = lock(&self.state);
            let mut by_hour: HashMap<u64, Vec<Arc<Block>>> = HashMap::new();
            for b in &state.blocks {
                by_hour.entry(b.hour).or_default().push(b.clone());
            }
            by_hour.into_values().filter(|g| g.len() > 1).collect()
        };
        let mut merges = 0;
        for group in groups {
            let _writers = lock(&self.block_writers);
            let mut records = Vec::new();
            let mut catalog = Catalog::default();
            for block in &group {
                catalog.merge(&block.catalog);
                block.scan(self.storage.as_ref(), |mut spans| {
                    records.append(&mut spans);
                    true
                })?;
            }
            let mut seen = HashSet::new();
            records.retain(|r| seen.insert((r.trace_id, r.span_id)));
            self.write_block(group[0].hour, records, &catalog, &group)?;
            drop(_writers);
            for block in &group {
                self.storage.delete(&block.name)?;
            }
            merges += 1;
            self.compactions.fetch_add(1, Ordering::Relaxed);
        }
        Ok(merges)
    }

    fn enforce_retention(&self) -> Result<usize, StoreError> {
        let _writers = lock(&self.block_writers);
        let now_ns = (self.clock.now_ms().max(0) as u64).saturating_mul(1_000_000);
        let horizon = now_ns.saturating_sub(self.config.retention.as_nanos() as u64);
        let doomed: Vec<Arc<Block>> = {
            let mut state = lock(&self.state);
            let mut blocks = std::mem::take(&mut state.blocks);
            blocks.sort_by_key(|b| (b.max_ns, b.seq));
            let mut total: u64 = blocks.iter().map(|b| b.size).sum();
            let mut doomed = Vec::new();
            let mut kept = Vec::new();
            for b in blocks {
                if b.max_ns < horizon || total > self.config.max_bytes {
                    total -= b.size;
                    doomed.push(b);
                } else {
                    kept.push(b);
                }
            }
            state.blocks = kept;
            doomed
        };
        for block in &doomed {
            self.storage.delete(&block.name)?;
        }
        self.expired
            .fetch_add(doomed.len() as u64, Ordering::Relaxed);
        Ok(doomed.len())
    }
}

#[cfg(test)]
mod tests;
