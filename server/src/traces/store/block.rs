//! Sealed blocks: immutable files of spans from one hour, sorted by trace id, in
//! LZ4-compressed chunks, with a trace-id index and a bloom filter.
//!
//! ```text
//! chunk 0 | chunk 1 | ...           LZ4 (size-prefixed) runs of span records; a trace
//!                                   never spans two chunks
//! index                             n × (trace_id 16 | chunk u32), sorted by trace id
//! bloom                             the bloom filter's bits over the trace ids
//! meta                              JSON: times, counts, chunk offsets, catalog, edges
//! footer (36 bytes)                 index_off u64 | n_traces u32 | bloom_off u64 |
//!                                   bloom_len u32 | meta_off u64 | magic "MSB1"
//! ```
//!
//! Opening a block reads its footer, index, bloom and meta; a lookup by trace id asks
//! the bloom filter, then binary-searches the index, then reads and decompresses one
//! chunk.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::record::SpanRecord;
use super::storage::BlockStorage;
use super::StoreError;

const MAGIC: &[u8; 4] = b"MSB1";
const FOOTER: usize = 8 + 4 + 8 + 4 + 8 + 4;
/// Uncompressed bytes after which a chunk is closed (at the next trace boundary).
const CHUNK_TARGET: usize = 64 * 1024;
const NS_PER_HOUR: u64 = 3_600_000_000_000;

/// The hour (since the epoch) a span belongs to: blocks are partitioned by it.
pub fn hour_of(start_ns: u64) -> u64 {
    start_ns / NS_PER_HOUR
}

/// A bloom filter over trace ids (random already; mixed anyway, for clients that are
/// not): 10 bits per trace and 7 probes, about 1% false positives.
#[derive(Debug, Clone)]
pub struct Bloom {
    bits: Vec<u8>,
}

const BLOOM_PROBES: u64 = 7;

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

impl Bloom {
    pub fn with_capacity(items: usize) -> Bloom {
        let bytes = (items * 10).div_ceil(8).max(8);
        Bloom {
            bits: vec![0; bytes],
        }
    }

    fn probes(&self, id: &[u8; 16]) -> impl Iterator<Item = usize> {
        let a = mix(u64::from_le_bytes(id[..8].try_into().expect("8")));
        let b = mix(u64::from_le_bytes(id[8..].try_into().expect("8")) ^ a) | 1;
        let m = (self.bits.len() * 8) as u64;
        (0..BLOOM_PROBES).map(move |i| (a.wrapping_add(i.wrapping_mul(b)) % m) as usize)
    }

    pub fn insert(&mut self, id: &[u8; 16]) {
        let probes: Vec<usize> = self.probes(id).collect();
        for bit in probes {
            self.bits[bit / 8] |= 1 << (bit % 8);
        }
    }

    pub fn may_contain(&self, id: &[u8; 16]) -> bool {
        self.probes(id)
            .all(|bit| self.bits[bit / 8] & (1 << (bit % 8)) != 0)
    }
}

/// Services and their operations, attribute keys and some of their values: what the
/// search pages and Tempo's tag endpoints list. Capped, so it stays small.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Catalog {
    pub services: BTreeMap<String, BTreeSet<String>>,
    pub tags: BTreeMap<String, BTreeSet<String>>,
}

const CATALOG_CAP: usize = 200;

impl Catalog {
    pub fn add_operation(&mut self, service: &str, operation: &str) {
        if !self.services.contains_key(service) && self.services.len() >= CATALOG_CAP * 5 {
            return;
        }
        let ops = self.services.entry(service.to_owned()).or_default();
        if ops.len() < CATALOG_CAP && !ops.contains(operation) {
            ops.insert(operation.to_owned());
        }
    }

    pub fn add_tag(&mut self, key: &str, value: &str) {
        if !self.tags.contains_key(key) && self.tags.len() >= CATALOG_CAP {
            return;
        }
        let values = self.tags.entry(key.to_owned()).or_default();
        if values.len() < CATALOG_CAP && value.len() <= 200 && !values.contains(value) {
            values.insert(value.to_owned());
        }
    }

    pub fn merge(&mut self, other: &Catalog) {
        for (service, ops) in &other.services {
            for op in ops {
                self.add_operation(service, op);
            }
        }
        for (key, values) in &other.tags {
            for value in values {
                self.add_tag(key, value);
            }
        }
    }
}

/// Calls from one service to another, counted.
pub type Edges = BTreeMap<(String, String), (u64, u64)>;

/// Counts the parent→child service edges among `records` (spans of whole traces).
pub fn count_edges(records: &[SpanRecord], edges: &mut Edges) {
    let services: HashMap<([u8; 16], [u8; 8]), &str> = records
        .iter()
        .map(|r| ((r.trace_id, r.span_id), r.service.as_str()))
        .collect();
    for r in records.iter().filter(|r| r.has_parent()) {
        if let Some(parent) = services.get(&(r.trace_id, r.parent_span_id)) {
            if *parent != r.service {
                let entry = edges
                    .entry(((*parent).to_owned(), r.service.clone()))
                    .or_default();
                entry.0 += 1;
                entry.1 += u64::from(r.error);
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    min_ns: u64,
    max_ns: u64,
    spans: u64,
    chunks: Vec<(u64, u32)>,
    catalog: Catalog,
    edges: Vec<(String, String, u64, u64)>,
}

/// An open block: what a lookup needs in memory.
#[derive(Debug)]
pub struct Block {
    pub name: String,
    pub hour: u64,
    pub seq: u64,
    pub size: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    pub spans: u64,
    pub catalog: Catalog,
    pub edges: Edges,
    chunks: Vec<(u64, u32)>,
    index: Vec<([u8; 16], u32)>,
    bloom: Bloom,
}

/// `hour-seq.blk`, zero-padded so names sort by hour then age.
pub fn block_name(hour: u64, seq: u64) -> String {
    format!("{hour:010}-{seq:012}.blk")
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".blk")?;
    let (hour, seq) = stem.split_once('-')?;
    Some((hour.parse().ok()?, seq.parse().ok()?))
}

/// Encodes `records` (any order; one hour's) as a block. Returns the bytes.
pub fn build(mut records: Vec<SpanRecord>, catalog: &Catalog) -> Vec<u8> {
    records.sort_by(|a, b| {
        (a.trace_id, a.start_ns, a.span_id).cmp(&(b.trace_id, b.start_ns, b.span_id))
    });
    let mut edges = Edges::new();
    let mut out = Vec::new();
    let mut chunks: Vec<(u64, u32)> = Vec::new();
    let mut index: Vec<([u8; 16], u32)> = Vec::new();
    let mut bloom = Bloom::with_capacity(records.len());
    let mut raw = Vec::with_capacity(CHUNK_TARGET * 2);
    let flush = |raw: &mut Vec<u8>, out: &mut Vec<u8>, chunks: &mut Vec<(u64, u32)>| {
        if raw.is_empty() {
            return;
        }
        let packed = lz4_flex::compress_prepend_size(raw);
        chunks.push((out.len() as u64, packed.len() as u32));
        out.extend_from_slice(&packed);
        raw.clear();
    };
    let mut i = 0;
    while i < records.len() {
        let trace = records[i].trace_id;
        let mut j = i;
        while j < records.len() && records[j].trace_id == trace {
            j += 1;
        }
        count_edges(&records[i..j], &mut edges);
        if !raw.is_empty() && raw.len() >= CHUNK_TARGET {
            flush(&mut raw, &mut out, &mut chunks);
        }
        index.push((trace, chunks.len() as u32));
        bloom.insert(&trace);
        for r in &records[i..j] {
            r.encode(&mut raw);
        }
        i = j;
    }
    flush(&mut raw, &mut out, &mut chunks);
    let meta = Meta {
        min_ns: records.iter().map(|r| r.start_ns).min().unwrap_or(0),
        max_ns: records.iter().map(|r| r.end_ns).max().unwrap_or(0),
        spans: records.len() as u64,
        chunks,
        catalog: catalog.clone(),
        edges: edges
            .into_iter()
            .map(|((p, c), (n, e))| (p, c, n, e))
            .collect(),
    };
    let index_off = out.len() as u64;
    for (trace, chunk) in &index {
        out.extend_from_slice(trace);
        out.extend_from_slice(&chunk.to_le_bytes());
    }
    let bloom_off = out.len() as u64;
    out.extend_from_slice(&bloom.bits);
    let meta_off = out.len() as u64;
    out.extend_from_slice(&serde_json::to_vec(&meta).expect("block meta serialises"));
    out.extend_from_slice(&index_off.to_le_bytes());
    out.extend_from_slice(&(index.len() as u32).to_le_bytes());
    out.extend_from_slice(&bloom_off.to_le_bytes());
    out.extend_from_slice(&(bloom.bits.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta_off.to_le_bytes());
    out.extend_from_slice(MAGIC);
    out
}

impl Block {
    /// Opens block `name` of `size` bytes: reads its footer, index, bloom and meta.
    pub fn open(storage: &dyn BlockStorage, name: &str, size: u64) -> Result<Block, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("block {name}: {what}"));
        let (hour, seq) = parse_name(name).ok_or_else(|| corrupt("bad name"))?;
        if size < FOOTER as u64 {
            return Err(corrupt("too short"));
        }
        let footer = storage.get_range(name, size - FOOTER as u64, FOOTER)?;
        if &footer[32..36] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let u64_at = |at: usize| u64::from_le_bytes(footer[at..at + 8].try_into().expect("8"));
        let u32_at = |at: usize| u32::from_le_bytes(footer[at..at + 4].try_into().expect("4"));
        let (index_off, n, bloom_off, bloom_len, meta_off) = (
            u64_at(0),
            u32_at(8) as u64,
            u64_at(12),
            u32_at(20) as u64,
            u64_at(24),
        );
        let end = size - FOOTER as u64;
        if index_off + n * 20 != bloom_off || bloom_off + bloom_len != meta_off || meta_off > end {
            return Err(corrupt("bad footer"));
        }
        let tail = storage.get_range(name, index_off, (end - index_off) as usize)?;
        let (index_bytes, rest) = tail.split_at((n * 20) as usize);
        let (bloom_bytes, meta_bytes) = rest.split_at(bloom_len as usize);
        let meta: Meta =
            serde_json::from_slice(meta_bytes).map_err(|e| corrupt(&format!("meta: {e}")))?;
        let index = index_bytes
            .chunks_exact(20)
            .map(|e| {
                (
                    e[..16].try_into().expect("16"),
                    u32::from_le_bytes(e[16..].try_into().expect("4")),
                )
            })
            .collect();
        Ok(Block {
            name: name.to_owned(),
            hour,
            seq,
            size,
            min_ns: meta.min_ns,
            max_ns: meta.max_ns,
            spans: meta.spans,
            catalog: meta.catalog,
            edges: meta
                .edges
                .into_iter()
                .map(|(p, c, n, e)| ((p, c), (n, e)))
                .collect(),
            chunks: meta.chunks,
            index,
            bloom: Bloom {
                bits: bloom_bytes.to_vec(),
            },
        })
    }

    pub fn trace_count(&self) -> usize {
        self.index.len()
    }

    /// Whether the block may hold spans of `trace_id` (bloom, then index: no I/O).
    pub fn may_contain(&self, trace_id: &[u8; 16]) -> bool {
        self.bloom.may_contain(trace_id) && self.chunk_of(trace_id).is_some()
    }

    fn chunk_of(&self, trace_id: &[u8; 16]) -> Option<u32> {
        self.index
            .binary_search_by(|(id, _)| id.cmp(trace_id))
            .ok()
            .map(|i| self.index[i].1)
    }

    fn read_chunk(&self, storage: &dyn BlockStorage, chunk: u32) -> Result<Vec<u8>, StoreError> {
        let (offset, len) = self.chunks[chunk as usize];
        let packed = storage.get_range(&self.name, offset, len as usize)?;
        lz4_flex::decompress_size_prepended(&packed)
            .map_err(|e| StoreError::Corrupt(format!("block {}: chunk {chunk}: {e}", self.name)))
    }

    /// The spans of `trace_id` in this block (reads one chunk, or nothing).
    pub fn trace(
        &self,
        storage: &dyn BlockStorage,
        trace_id: &[u8; 16],
    ) -> Result<Vec<SpanRecord>, StoreError> {
        if !self.bloom.may_contain(trace_id) {
            return Ok(Vec::new());
        }
        let Some(chunk) = self.chunk_of(trace_id) else {
            return Ok(Vec::new());
        };
        let raw = self.read_chunk(storage, chunk)?;
        let mut records = SpanRecord::decode_all(&raw)?;
        records.retain(|r| &r.trace_id == trace_id);
        Ok(records)
    }

    /// Every span of the block, chunk by chunk, until `visit` returns false.
    pub fn scan(
        &self,
        storage: &dyn BlockStorage,
        mut visit: impl FnMut(Vec<SpanRecord>) -> bool,
    ) -> Result<(), StoreError> {
        for chunk in 0..self.chunks.len() as u32 {
            let raw = self.read_chunk(storage, chunk)?;
            if !visit(SpanRecord::decode_all(&raw)?) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::store::storage::LocalDir;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use rand::{Rng, SeedableRng};

    fn record(trace: [u8; 16], span: u64, parent: u64, service: &str) -> SpanRecord {
        let mut s = Span {
            trace_id: trace.to_vec(),
            span_id: span.to_le_bytes().to_vec(),
            name: format!("op{}", span % 5),
            start_time_unix_nano: 1_000 + span,
            end_time_unix_nano: 2_000 + span,
            ..Default::default()
        };
        if parent != 0 {
            s.parent_span_id = parent.to_le_bytes().to_vec();
        }
        SpanRecord::from_otlp(service, s).unwrap()
    }

    #[test]
    fn bloom_has_no_false_negatives_and_few_false_positives() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let ids: Vec<[u8; 16]> = (0..10_000).map(|_| rng.random()).collect();
        let mut bloom = Bloom::with_capacity(ids.len());
        for id in &ids {
            bloom.insert(id);
        }
        assert!(ids.iter().all(|id| bloom.may_contain(id)));
        let false_positives = (0..10_000)
            .filter(|_| bloom.may_contain(&rng.random()))
            .count();
        assert!(false_positives < 300, "{false_positives} false positives");
    }

    #[test]
    fn a_block_finds_every_trace_and_only_its_spans() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalDir::open(dir.path()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let traces: Vec<[u8; 16]> = (0..2_000).map(|_| rng.random()).collect();
        let mut records = Vec::new();
        for (t, trace) in traces.iter().enumerate() {
            for s in 1..=(t % 7 + 1) as u64 {
                let service = if s % 2 == 0 { "db" } else { "api" };
                records.push(record(*trace, s, s - 1, service));
            }
        }
        let total = records.len();
        let bytes = build(records, &Catalog::default());
        let name = block_name(1, 1);
        storage.put(&name, &bytes).unwrap();
        let block = Block::open(&storage, &name, bytes.len() as u64).unwrap();
        assert_eq!(block.spans as usize, total);
        assert!(block.chunks.len() > 1, "several chunks");
        for (t, trace) in traces.iter().enumerate() {
            let spans = block.trace(&storage, trace).unwrap();
            assert_eq!(spans.len(), t % 7 + 1);
            assert!(spans.iter().all(|s| &s.trace_id == trace));
        }
        assert!(block.trace(&storage, &[9; 16]).unwrap().is_empty());
        let mut scanned = 0;
        block
            .scan(&storage, |spans| {
                scanned += spans.len();
                true
            })
            .unwrap();
        assert_eq!(scanned, total);
        assert!(block
            .edges
            .contains_key(&("api".to_owned(), "db".to_owned())));
    }

    #[test]
    fn a_damaged_block_is_refused_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalDir::open(dir.path()).unwrap();
        let mut bytes = build(vec![record([1; 16], 1, 0, "a")], &Catalog::default());
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        storage.put("0000000001-000000000001.blk", &bytes).unwrap();
        assert!(Block::open(&storage, "0000000001-000000000001.blk", n as u64).is_err());
    }
}
