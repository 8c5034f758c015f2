//! Content-defined chunking (FastCDC 2020, the `fastcdc` crate's cut function) and
//! SHA-256 chunk addressing, identical in the browser, the agent and the server.
//!
//! Invariants:
//! - Chunk boundaries depend only on the bytes: feeding a file in pieces of any size
//!   gives the same chunks as feeding it whole (the chunker cuts only once it holds
//!   `MAX_CHUNK` bytes, or at the end), so an edit moves only the boundaries near it.
//! - Memory is bounded: a [`Chunker`] holds at most `MAX_CHUNK` + one piece.
//! - A manifest's id is the SHA-256 of its chunk hashes in order: equal ids mean equal
//!   content (chunks are verified against their hashes when stored).

use fastcdc::v2020::{cut, MASKS};
use sha2::{Digest, Sha256};

use super::ChunkRef;

/// Smallest chunk (except a file's last or only one).
pub const MIN_CHUNK: usize = 16 * 1024;
/// The size FastCDC aims for.
pub const AVG_CHUNK: usize = 64 * 1024;
/// Largest chunk: the server refuses bigger ones.
pub const MAX_CHUNK: usize = 256 * 1024;
/// Chunks in one manifest at most (a 256 GiB file at the largest chunk size).
pub const MAX_CHUNKS: usize = 1 << 20;

/// The chunker's masks (normalisation level 1, as `fastcdc`'s default).
struct Masks {
    small: u64,
    large: u64,
}

fn masks() -> Masks {
    let bits = AVG_CHUNK.trailing_zeros() as usize;
    Masks {
        small: MASKS[bits + 1],
        large: MASKS[bits - 1],
    }
}

/// The length of the first chunk of `data` when `data` is all that is left or at least
/// `MAX_CHUNK` long.
fn first_cut(data: &[u8], masks: &Masks) -> usize {
    let (_, len) = cut(
        data,
        MIN_CHUNK,
        AVG_CHUNK,
        MAX_CHUNK,
        masks.small,
        masks.large,
        masks.small << 1,
        masks.large << 1,
    );
    len.max(1).min(data.len())
}

/// A streaming chunker: push pieces of a file, receive whole chunks.
pub struct Chunker {
    pending: Vec<u8>,
    masks: Masks,
}

impl Default for Chunker {
    fn default() -> Self {
        Chunker::new()
    }
}

impl Chunker {
    pub fn new() -> Chunker {
        Chunker {
            pending: Vec::with_capacity(2 * MAX_CHUNK),
            masks: masks(),
        }
    }

    /// Adds `data`; calls `emit` with every chunk now complete.
    pub fn push(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8])) {
        while !data.is_empty() {
            let room = 2 * MAX_CHUNK - self.pending.len();
            let take = room.min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.drain(false, emit);
        }
    }

    /// Emits what is left (the last chunks of the file).
    pub fn finish(mut self, emit: &mut impl FnMut(&[u8])) {
        self.drain(true, emit);
    }

    fn drain(&mut self, at_end: bool, emit: &mut impl FnMut(&[u8])) {
        let mut start = 0;
        while self.pending.len() - start >= MAX_CHUNK || (at_end && start < self.pending.len()) {
            let len = first_cut(&self.pending[start..], &self.masks);
            emit(&self.pending[start..start + len]);
            start += len;
        }
        self.pending.drain(..start);
    }
}

/// The SHA-256 of a chunk, as lowercase hex: its address.
pub fn chunk_hash(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// True for 64 lowercase hex digits.
pub fn valid_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Chunks and hashes a streamed file, keeping only the manifest.
#[derive(Default)]
pub struct ManifestBuilder {
    chunker: Chunker,
    chunks: Vec<ChunkRef>,
}

impl ManifestBuilder {
    pub fn new() -> ManifestBuilder {
        ManifestBuilder::default()
    }

    pub fn push(&mut self, data: &[u8]) {
        let chunks = &mut self.chunks;
        self.chunker.push(data, &mut |c| chunks.push(chunk_ref(c)));
    }

    pub fn finish(self) -> Vec<ChunkRef> {
        let mut chunks = self.chunks;
        self.chunker.finish(&mut |c| chunks.push(chunk_ref(c)));
        chunks
    }
}

fn chunk_ref(data: &[u8]) -> ChunkRef {
    ChunkRef {
        hash: chunk_hash(data),
        size: data.len() as u64,
    }
}

/// The manifest of `data` held in memory.
pub fn manifest_of(data: &[u8]) -> Vec<ChunkRef> {
    let mut builder = ManifestBuilder::new();
    builder.push(data);
    builder.finish()
}

/// The id of a manifest: SHA-256 over its chunk hashes, in order (see the invariants).
pub fn manifest_id(chunks: &[ChunkRef]) -> String {
    let mut sha = Sha256::new();
    for chunk in chunks {
        sha.update(chunk.hash.as_bytes());
        sha.update(b"\n");
    }
    hex::encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn chunks_cover_the_data_within_bounds() {
        let data = pseudo_random(3 * 1024 * 1024 + 17, 7);
        let mut pieces = Vec::new();
        let mut chunker = Chunker::new();
        chunker.push(&data, &mut |c| pieces.push(c.to_vec()));
        chunker.finish(&mut |c| pieces.push(c.to_vec()));
        assert_eq!(pieces.concat(), data);
        let (last, rest) = pieces.split_last().unwrap();
        assert!(rest
            .iter()
            .all(|c| c.len() >= MIN_CHUNK && c.len() <= MAX_CHUNK));
        assert!(!last.is_empty() && last.len() <= MAX_CHUNK);
        let mean = data.len() / pieces.len();
        assert!(mean > AVG_CHUNK / 2 && mean < AVG_CHUNK * 2, "mean {mean}");
    }

    #[test]
    fn empty_file_has_no_chunks() {
        assert!(manifest_of(&[]).is_empty());
        assert_eq!(manifest_of(b"hi").len(), 1);
    }

    #[test]
    fn a_one_byte_edit_changes_few_chunks() {
        let mut data = pseudo_random(8 * 1024 * 1024, 3);
        let before = manifest_of(&data);
        data[4 * 1024 * 1024] ^= 0xff;
        let after = manifest_of(&data);
        let old: std::collections::HashSet<_> = before.iter().map(|c| &c.hash).collect();
        let new = after.iter().filter(|c| !old.contains(&c.hash)).count();
        assert!((1..=2).contains(&new), "{new} new chunks");
        // An insertion shifts everything after it, yet only the chunks near it change.
        data.insert(1000, 42);
        let inserted = manifest_of(&data);
        let new = inserted.iter().filter(|c| !old.contains(&c.hash)).count();
        assert!(new <= 4, "{new} new chunks after an insertion");
    }

    /// A gigabyte, streamed (never held whole): one byte changed, a handful of chunks.
    #[test]
    fn a_one_byte_edit_in_a_gigabyte_changes_a_handful_of_chunks() {
        const GB: u64 = 1 << 30;
        const PIECE: usize = 1 << 20;
        let manifest = |flip_at: Option<u64>| {
            let mut builder = ManifestBuilder::new();
            let mut piece = vec![0u8; PIECE];
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            for start in (0..GB).step_by(PIECE) {
                for word in piece.chunks_mut(8) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    word.copy_from_slice(&x.to_le_bytes());
                }
                if let Some(at) = flip_at.filter(|at| (start..start + PIECE as u64).contains(at)) {
                    piece[(at - start) as usize] ^= 1;
                }
                builder.push(&piece);
            }
            builder.finish()
        };
        let before = manifest(None);
        let after = manifest(Some(GB / 3));
        let old: std::collections::HashSet<_> = before.iter().map(|c| &c.hash).collect();
        let new: Vec<_> = after.iter().filter(|c| !old.contains(&c.hash)).collect();
        assert!((1..=2).contains(&new.len()), "{} new chunks", new.len());
        assert!(new.iter().map(|c| c.size).sum::<u64>() <= 2 * MAX_CHUNK as u64);
        assert_eq!(after.iter().map(|c| c.size).sum::<u64>(), GB);
    }

    proptest! {
        #[test]
        fn pieces_of_any_size_give_the_same_chunks(
            seed in any::<u64>(),
            len in 0usize..1_200_000,
            piece in 1usize..300_000,
        ) {
            let data = pseudo_random(len, seed);
            let whole = manifest_of(&data);
            let mut builder = ManifestBuilder::new();
            for part in data.chunks(piece) {
                builder.push(part);
            }
            prop_assert_eq!(builder.finish(), whole.clone());
            prop_assert_eq!(whole.iter().map(|c| c.size).sum::<u64>(), len as u64);
        }
    }
}
