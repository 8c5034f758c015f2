//! Small edits travel small: a version's chunk list as edits of its base version's
//! ([`ChunkEdit`], [`edits_between`], [`apply_edits`]), and a changed chunk as an
//! rsync-style delta against the base chunk it replaces ([`Signature`], [`delta`],
//! [`apply`]).
//!
//! A signature cuts the base chunk into fixed blocks of [`BLOCK`] bytes (the last one may
//! be shorter) and gives each a weak rolling checksum (rsync's, 32 bits) and the first
//! [`STRONG`] bytes of its SHA-256: [`SIGNATURE_RECORD`] bytes a block, sent as hex.
//!
//! The delta format (the body of `PUT /api/drive/uploads/{id}/deltas/{hash}`) is a
//! sequence of operations, nothing before or after them:
//!
//! ```text
//! 0x01 first:u32le count:u32le   copy blocks first..first+count of the base chunk
//! 0x02 len:u32le bytes[len]      these bytes, literally
//! ```
//!
//! Invariants:
//! - `apply(base, &delta(&signature(base), new), new.len()) == new` for every base and new
//!   (a false match of weak and truncated strong hash would break it, so the server
//!   still verifies the rebuilt chunk's SHA-256 before storing it).
//! - [`apply`] never builds more than the length it is told to expect, nor reads outside
//!   its inputs: a hostile delta is an error, never a panic or a large allocation.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::chunking::MAX_CHUNKS;
use super::ChunkRef;

/// The block size of signatures.
pub const BLOCK: usize = 1024;
/// Bytes of SHA-256 kept per block.
pub const STRONG: usize = 6;
/// Bytes per block in an encoded signature: the weak checksum (u32, little-endian) and
/// the truncated strong hash.
pub const SIGNATURE_RECORD: usize = 4 + STRONG;

const OP_COPY: u8 = 0x01;
const OP_LITERAL: u8 = 0x02;

/// `chunk_edits` of a `NewUpload`: replace `remove` chunks of the base version's list,
/// starting at index `at`, with `insert`. Edits are sorted and do not overlap; each `at`
/// counts in the base list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChunkEdit {
    pub at: u64,
    #[serde(default)]
    pub remove: u64,
    #[serde(default)]
    pub insert: Vec<ChunkRef>,
}

/// The chunk list `edits` make of `base`, or why they cannot apply.
pub fn apply_edits(base: &[ChunkRef], edits: &[ChunkEdit]) -> Result<Vec<ChunkRef>, String> {
    if edits.len() > MAX_CHUNKS {
        return Err(format!("at most {MAX_CHUNKS} chunk edits"));
    }
    let mut list = Vec::with_capacity(base.len());
    let mut next = 0usize;
    for (i, edit) in edits.iter().enumerate() {
        let at = usize::try_from(edit.at).ok().filter(|&at| at <= base.len());
        let end = at.and_then(|at| {
            usize::try_from(edit.remove)
                .ok()
                .and_then(|r| at.checked_add(r))
                .filter(|&end| end <= base.len())
        });
        let (Some(at), Some(end)) = (at, end) else {
            return Err(format!(
                "chunk edit {i} reaches past the base version's {} chunks",
                base.len()
            ));
        };
        if at < next {
            return Err(format!(
                "chunk edit {i} overlaps or precedes the one before it"
            ));
        }
        if list.len() + (at - next) + edit.insert.len() > MAX_CHUNKS {
            return Err(format!("at most {MAX_CHUNKS} chunks"));
        }
        list.extend_from_slice(&base[next..at]);
        list.extend_from_slice(&edit.insert);
        next = end;
    }
    if list.len() + (base.len() - next) > MAX_CHUNKS {
        return Err(format!("at most {MAX_CHUNKS} chunks"));
    }
    list.extend_from_slice(&base[next..]);
    Ok(list)
}

/// Edits that make `new` of `base`: where the lists differ, each run of differing chunks
/// becomes one edit, up to the next chunk of `base` that `new` holds further on (a
/// greedy alignment, linear in the lists' lengths; not always the fewest chunks, always
/// correct).
pub fn edits_between(base: &[ChunkRef], new: &[ChunkRef]) -> Vec<ChunkEdit> {
    let mut positions: HashMap<&ChunkRef, Vec<usize>> = HashMap::new();
    for (j, chunk) in new.iter().enumerate() {
        positions.entry(chunk).or_default().push(j);
    }
    // The first position of `chunk` in `new` at `from` or after.
    let found = |chunk: &ChunkRef, from: usize| -> Option<usize> {
        let at = positions.get(chunk)?;
        at.get(at.partition_point(|&j| j < from)).copied()
    };
    let mut edits = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < base.len() && j < new.len() {
        if base[i] == new[j] {
            i += 1;
            j += 1;
            continue;
        }
        // The next chunk of `base` that `new` still holds: both lists agree again there.
        let sync = (i..base.len()).find_map(|k| found(&base[k], j).map(|p| (k, p)));
        let (k, p) = sync.unwrap_or((base.len(), new.len()));
        edits.push(ChunkEdit {
            at: i as u64,
            remove: (k - i) as u64,
            insert: new[j..p].to_vec(),
        });
        i = k;
        j = p;
    }
    if i < base.len() || j < new.len() {
        edits.push(ChunkEdit {
            at: i as u64,
            remove: (base.len() - i) as u64,
            insert: new[j..].to_vec(),
        });
    }
    edits
}

/// rsync's weak checksum of a window: two 16-bit sums, updatable one byte at a time.
#[derive(Debug, Clone, Copy)]
struct Rolling {
    a: u32,
    b: u32,
    len: u32,
}

impl Rolling {
    fn new(window: &[u8]) -> Rolling {
        let mut rolling = Rolling {
            a: 0,
            b: 0,
            len: window.len() as u32,
        };
        for (i, &x) in window.iter().enumerate() {
            rolling.a = rolling.a.wrapping_add(x as u32);
            rolling.b = rolling
                .b
                .wrapping_add((window.len() as u32 - i as u32).wrapping_mul(x as u32));
        }
        rolling
    }

    /// Slides the window one byte: `out` leaves at the front, `into` joins at the back.
    fn roll(&mut self, out: u8, into: u8) {
        self.a = self.a.wrapping_sub(out as u32).wrapping_add(into as u32);
        self.b = self
            .b
            .wrapping_sub(self.len.wrapping_mul(out as u32))
            .wrapping_add(self.a);
    }

    fn digest(&self) -> u32 {
        (self.a & 0xffff) | (self.b << 16)
    }
}

fn strong(block: &[u8]) -> [u8; STRONG] {
    let digest = Sha256::digest(block);
    let mut out = [0u8; STRONG];
    out.copy_from_slice(&digest[..STRONG]);
    out
}

/// The block checksums of a base chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Per block: the weak checksum and the truncated strong hash.
    blocks: Vec<(u32, [u8; STRONG])>,
    /// The base chunk's length (its last block may be shorter than [`BLOCK`]).
    len: usize,
}

impl Signature {
    /// The signature of `base`.
    pub fn of(base: &[u8]) -> Signature {
        Signature {
            blocks: base
                .chunks(BLOCK)
                .map(|block| (Rolling::new(block).digest(), strong(block)))
                .collect(),
            len: base.len(),
        }
    }

    /// The wire form: [`SIGNATURE_RECORD`] bytes a block, in order.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.blocks.len() * SIGNATURE_RECORD);
        for (weak, strong) in &self.blocks {
            out.extend_from_slice(&weak.to_le_bytes());
            out.extend_from_slice(strong);
        }
        out
    }

    /// Reads the wire form of the signature of a `len`-byte chunk.
    pub fn decode(bytes: &[u8], len: usize) -> Option<Signature> {
        if bytes.len() % SIGNATURE_RECORD != 0
            || bytes.len() / SIGNATURE_RECORD != len.div_ceil(BLOCK)
        {
            return None;
        }
        let blocks = bytes
            .chunks(SIGNATURE_RECORD)
            .map(|record| {
                let weak = u32::from_le_bytes([record[0], record[1], record[2], record[3]]);
                let mut strong = [0u8; STRONG];
                strong.copy_from_slice(&record[4..]);
                (weak, strong)
            })
            .collect();
        Some(Signature { blocks, len })
    }

    /// The length of block `index`.
    fn block_len(&self, index: usize) -> usize {
        BLOCK.min(self.len - index * BLOCK)
    }
}

/// Appends operations to a delta, merging neighbours.
#[derive(Default)]
struct DeltaWriter {
    out: Vec<u8>,
    /// A copy not written yet: first block and count.
    copy: Option<(u32, u32)>,
}

impl DeltaWriter {
    fn copy(&mut self, block: usize) {
        let block = block as u32;
        match &mut self.copy {
            Some((first, count)) if *first + *count == block => *count += 1,
            _ => {
                self.flush_copy();
                self.copy = Some((block, 1));
            }
        }
    }

    fn literal(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.flush_copy();
        self.out.push(OP_LITERAL);
        self.out
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.out.extend_from_slice(bytes);
    }

    fn flush_copy(&mut self) {
        if let Some((first, count)) = self.copy.take() {
            self.out.push(OP_COPY);
            self.out.extend_from_slice(&first.to_le_bytes());
            self.out.extend_from_slice(&count.to_le_bytes());
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.flush_copy();
        self.out
    }
}

/// The delta that rebuilds `new` from the chunk `signature` describes: blocks of the base
/// found anywhere in `new` are copied, the rest is sent literally.
pub fn delta(signature: &Signature, new: &[u8]) -> Vec<u8> {
    let mut full_blocks: HashMap<u32, Vec<usize>> = HashMap::new();
    for (index, (weak, _)) in signature.blocks.iter().enumerate() {
        if signature.block_len(index) == BLOCK {
            full_blocks.entry(*weak).or_default().push(index);
        }
    }
    let mut writer = DeltaWriter::default();
    let mut literal_from = 0;
    let mut pos = 0;
    let mut rolling = (new.len() >= BLOCK).then(|| Rolling::new(&new[..BLOCK]));
    while let Some(window) = rolling {
        let matched = full_blocks.get(&window.digest()).and_then(|candidates| {
            let strong = strong(&new[pos..pos + BLOCK]);
            candidates
                .iter()
                .copied()
                .find(|&index| signature.blocks[index].1 == strong)
        });
        if let Some(index) = matched {
            writer.literal(&new[literal_from..pos]);
            writer.copy(index);
            pos += BLOCK;
            literal_from = pos;
            rolling = (new.len() - pos >= BLOCK).then(|| Rolling::new(&new[pos..pos + BLOCK]));
        } else if pos + BLOCK < new.len() {
            let mut next = window;
            next.roll(new[pos], new[pos + BLOCK]);
            pos += 1;
            rolling = Some(next);
        } else {
            rolling = None;
        }
    }
    // The base's last, shorter block can only match the end of `new`.
    let last = signature.blocks.len().wrapping_sub(1);
    let tail_len = signature.len % BLOCK;
    let tail = new.len().checked_sub(tail_len).filter(|&start| {
        tail_len > 0
            && start >= literal_from
            && signature.blocks[last]
                == (Rolling::new(&new[start..]).digest(), strong(&new[start..]))
    });
    match tail {
        Some(start) => {
            writer.literal(&new[literal_from..start]);
            writer.copy(last);
        }
        None => writer.literal(&new[literal_from..]),
    }
    writer.finish()
}

/// Why a delta cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error("the delta ends inside an operation")]
    Truncated,
    #[error("unknown delta operation {0:#04x}")]
    UnknownOperation(u8),
    #[error("a copy of blocks {first}..{end} is outside the base chunk's {blocks} blocks")]
    CopyOutOfRange { first: u64, end: u64, blocks: u64 },
    #[error("the delta builds more than the chunk's {0} bytes")]
    TooLong(usize),
    #[error("the delta builds {built} bytes, the chunk has {expected}")]
    WrongLength { built: usize, expected: usize },
}

fn read_u32(delta: &[u8], at: usize) -> Result<u32, DeltaError> {
    let bytes = delta.get(at..at + 4).ok_or(DeltaError::Truncated)?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Rebuilds a chunk of `expected` bytes from `base` and a delta against it.
pub fn apply(base: &[u8], delta: &[u8], expected: usize) -> Result<Vec<u8>, DeltaError> {
    let blocks = base.len().div_ceil(BLOCK) as u64;
    let mut out = Vec::with_capacity(expected);
    let mut at = 0;
    while at < delta.len() {
        let piece = match delta[at] {
            OP_COPY => {
                let first = read_u32(delta, at + 1)? as u64;
                let end = first + read_u32(delta, at + 5)? as u64;
                if end > blocks {
                    return Err(DeltaError::CopyOutOfRange { first, end, blocks });
                }
                at += 9;
                let from = (first as usize * BLOCK).min(base.len());
                &base[from..(end as usize * BLOCK).min(base.len())]
            }
            OP_LITERAL => {
                let len = read_u32(delta, at + 1)? as usize;
                let bytes = delta
                    .get(at + 5..at + 5 + len)
                    .ok_or(DeltaError::Truncated)?;
                at += 5 + len;
                bytes
            }
            other => return Err(DeltaError::UnknownOperation(other)),
        };
        if out.len() + piece.len() > expected {
            return Err(DeltaError::TooLong(expected));
        }
        out.extend_from_slice(piece);
    }
    if out.len() != expected {
        return Err(DeltaError::WrongLength {
            built: out.len(),
            expected,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::drive::chunking::chunk_hash;

    fn chunk(n: u8) -> ChunkRef {
        ChunkRef {
            hash: chunk_hash(&[n]),
            size: 1,
        }
    }

    fn round_trip(base: &[u8], new: &[u8]) -> Vec<u8> {
        let signature = Signature::decode(&Signature::of(base).encode(), base.len()).unwrap();
        let delta = delta(&signature, new);
        assert_eq!(apply(base, &delta, new.len()).unwrap(), new);
        delta
    }

    proptest! {
        #[test]
        fn random_pairs_rebuild(base in prop::collection::vec(any::<u8>(), 0..5000),
                                new in prop::collection::vec(any::<u8>(), 0..5000)) {
            round_trip(&base, &new);
        }

        #[test]
        fn similar_pairs_rebuild_and_stay_small(
            base in prop::collection::vec(any::<u8>(), 1..20_000),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..4),
        ) {
            let mut new = base.clone();
            for (at, kind, byte) in &edits {
                if new.is_empty() { new.push(*byte); continue; }
                let at = at.index(new.len());
                match kind {
                    0 => new[at] = *byte,
                    1 => new.insert(at, *byte),
                    _ => { new.remove(at); }
                }
            }
            let delta = round_trip(&base, &new);
            // Each edit costs at most two blocks sent literally, plus operations.
            prop_assert!(delta.len() <= edits.len() * (2 * BLOCK + 18) + BLOCK + 18,
                "{} bytes of delta for {} edits", delta.len(), edits.len());
        }

        #[test]
        fn chunk_edits_rebuild_the_list(base in prop::collection::vec(0u8..12, 0..40),
                                        new in prop::collection::vec(0u8..12, 0..40)) {
            let base: Vec<ChunkRef> = base.into_iter().map(chunk).collect();
            let new: Vec<ChunkRef> = new.into_iter().map(chunk).collect();
            let edits = edits_between(&base, &new);
            prop_assert_eq!(apply_edits(&base, &edits).unwrap(), new);
        }

        #[test]
        fn hostile_deltas_are_errors_not_panics(base in prop::collection::vec(any::<u8>(), 0..3000),
                                               delta in prop::collection::vec(any::<u8>(), 0..64),
                                               expected in 0usize..4000) {
            if let Ok(out) = apply(&base, &delta, expected) {
                prop_assert_eq!(out.len(), expected);
            }
        }
    }

    #[test]
    fn a_one_byte_edit_sends_about_one_block() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let base: Vec<u8> = (0..64 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut new = base.clone();
        new[30_000] ^= 0xff;
        let delta = round_trip(&base, &new);
        assert!(delta.len() <= BLOCK + 2 * 9 + 5, "{} bytes", delta.len());
        assert_eq!(Signature::of(&base).encode().len(), 64 * SIGNATURE_RECORD);
    }

    #[test]
    fn a_one_chunk_change_is_one_edit() {
        let base: Vec<ChunkRef> = (0..10).map(chunk).collect();
        let mut new = base.clone();
        new[4] = chunk(99);
        let edits = edits_between(&base, &new);
        assert_eq!(
            edits,
            vec![ChunkEdit {
                at: 4,
                remove: 1,
                insert: vec![chunk(99)]
            }]
        );
        assert!(edits_between(&base, &base).is_empty());
    }

    #[test]
    fn bad_edits_are_named() {
        let base: Vec<ChunkRef> = (0..3).map(chunk).collect();
        let edit = |at, remove| ChunkEdit {
            at,
            remove,
            insert: vec![],
        };
        assert!(apply_edits(&base, &[edit(2, 2)])
            .unwrap_err()
            .contains("past"));
        assert!(apply_edits(&base, &[edit(u64::MAX, 1)])
            .unwrap_err()
            .contains("past"));
        assert!(apply_edits(&base, &[edit(1, u64::MAX)])
            .unwrap_err()
            .contains("past"));
        assert!(apply_edits(&base, &[edit(2, 1), edit(1, 0)])
            .unwrap_err()
            .contains("overlaps"));
        assert_eq!(apply_edits(&base, &[edit(3, 0)]).unwrap(), base);
    }

    #[test]
    fn copies_outside_the_base_are_refused() {
        let base = vec![1u8; 2 * BLOCK];
        let mut delta = vec![OP_COPY];
        delta.extend_from_slice(&1u32.to_le_bytes());
        delta.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            apply(&base, &delta, BLOCK),
            Err(DeltaError::CopyOutOfRange { .. })
        ));
        assert_eq!(
            apply(&base, &[OP_LITERAL, 9, 0, 0, 0, 1], 9),
            Err(DeltaError::Truncated)
        );
        assert_eq!(apply(&base, &[7], 0), Err(DeltaError::UnknownOperation(7)));
    }
}
