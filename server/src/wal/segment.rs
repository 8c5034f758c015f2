//! A segment file: a 24-byte header, then records back to back, then zeros up to the
//! preallocated size.
//!
//! ```text
//! 0   8  magic "MRDNWAL1"
//! 8   8  first index (the file is named by it, zero-padded to 20 digits, ".seg")
//! 16  4  prev_crc: the CRC of the record before this segment's first (0 for a new log)
//! 20  4  CRC32C of bytes 0..20
//! ```
//!
//! [`scan`] reads a segment back and decides, for the first bad record, torn tail or
//! corruption (see [`record::Decoded`]).
//!
//! No byte of a segment is ever written twice: records are only appended at its end.
//! A segment that is cut (a truncation, or a torn tail found on open) is sealed, and a
//! new segment named by the cut index follows it; a scan reads a sealed segment only up
//! to that index, and what lies beyond is never read again. So no crash in the middle
//! of a repair can turn a valid log into a corrupt one.

use std::path::{Path, PathBuf};

use super::record::{self, Decoded, Record};
use super::WalError;

pub const MAGIC: &[u8; 8] = b"MRDNWAL1";
pub const SEGMENT_HEADER_LEN: usize = 24;
pub const SUFFIX: &str = ".seg";

pub fn file_name(first_index: u64) -> String {
    format!("{first_index:020}{SUFFIX}")
}

/// The first index a segment's name gives, or `None` for another file.
pub fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The sorted first indexes of the segments in `names`.
pub fn segments_in(names: &[String]) -> Vec<u64> {
    let mut firsts: Vec<u64> = names.iter().filter_map(|n| parse_name(n)).collect();
    firsts.sort_unstable();
    firsts
}

pub fn encode_header(first_index: u64, prev_crc: u32) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0; SEGMENT_HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&first_index.to_le_bytes());
    header[16..20].copy_from_slice(&prev_crc.to_le_bytes());
    let crc = record::crc32c(0, &header[..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

/// What a scan found in one segment.
#[derive(Debug, Default)]
pub struct Scanned {
    pub first_index: u64,
    pub prev_crc: u32,
    /// Offset and CRC of each valid record, in index order.
    pub offsets: Vec<u32>,
    pub crcs: Vec<u32>,
    /// Where the valid records end.
    pub end: u64,
    /// A torn tail found after `end` (last segment only): the bytes up to the last
    /// non-zero one.
    pub torn_bytes: u64,
    /// The header itself is all zeros (a segment whose creation did not land).
    pub blank: bool,
}

fn corrupt(path: &Path, offset: usize, reason: impl Into<String>) -> WalError {
    WalError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason: reason.into(),
    }
}

/// Reads back the segment `bytes` of the file at `path`, named by `name_first`.
/// `next_first`: the first index of the segment after this one, where this one's
/// records stop (bytes after are what a truncation or a torn tail left: never read);
/// `None` for the newest segment, the only one that may end in a torn tail and that is
/// read to its end. `on_record` sees each valid record.
pub fn scan(
    path: &Path,
    bytes: &[u8],
    name_first: u64,
    next_first: Option<u64>,
    max_payload: usize,
    on_record: &mut dyn FnMut(Record),
) -> Result<Scanned, WalError> {
    let is_last = next_first.is_none();
    if bytes.len() < SEGMENT_HEADER_LEN || bytes[..SEGMENT_HEADER_LEN].iter().all(|&b| b == 0) {
        if is_last && bytes.iter().all(|&b| b == 0) {
            return Ok(Scanned {
                first_index: name_first,
                blank: true,
                ..Scanned::default()
            });
        }
        return Err(corrupt(path, 0, "a segment without its header"));
    }
    let header = &bytes[..SEGMENT_HEADER_LEN];
    let mut word = [0; 4];
    word.copy_from_slice(&header[20..24]);
    if &header[..8] != MAGIC || record::crc32c(0, &header[..20]) != u32::from_le_bytes(word) {
        return Err(corrupt(path, 0, "a damaged segment header"));
    }
    let mut long = [0; 8];
    long.copy_from_slice(&header[8..16]);
    let first_index = u64::from_le_bytes(long);
    if first_index != name_first {
        return Err(corrupt(
            path,
            8,
            format!("the header says first index {first_index}, the name {name_first}"),
        ));
    }
    word.copy_from_slice(&header[16..20]);
    let prev_crc = u32::from_le_bytes(word);
    let mut scanned = Scanned {
        first_index,
        prev_crc,
        ..Scanned::default()
    };
    let mut at = SEGMENT_HEADER_LEN;
    let mut chain = prev_crc;
    let mut expected = first_index;
    loop {
        if next_first == Some(expected) {
            break;
        }
        match record::decode(&bytes[at..], chain, expected, max_payload) {
            Decoded::Record { record, crc, len } => {
                scanned.offsets.push(at as u32);
                scanned.crcs.push(crc);
                on_record(record);
                chain = crc;
                expected += 1;
                at += len;
            }
            Decoded::End => {
                if let Some(stray) = bytes[at..].iter().position(|&b| b != 0) {
                    return Err(corrupt(
                        path,
                        at,
                        format!(
                            "the records end here but non-zero bytes follow at offset {}",
                            at + stray
                        ),
                    ));
                }
                break;
            }
            Decoded::Damaged {
                reason,
                torn_if_zero_from,
            } => {
                let zeros_follow = torn_if_zero_from.is_some_and(|from| {
                    bytes[(at + from).min(bytes.len())..]
                        .iter()
                        .all(|&b| b == 0)
                });
                if !(is_last && zeros_follow) {
                    return Err(corrupt(path, at, format!("record {expected}: {reason}")));
                }
                // A torn write is the last thing written: the next record's header
                // behind a damaged one means its length field lies (a flipped length
                // that reaches past the records into the zeros).
                if let Some(next) = later_record_at(bytes, at, expected + 1, max_payload) {
                    return Err(corrupt(
                        path,
                        at,
                        format!(
                            "record {expected}: {reason}, yet record {} follows at offset {next}",
                            expected + 1
                        ),
                    ));
                }
                let last_nonzero = bytes.iter().rposition(|&b| b != 0).unwrap_or(at);
                scanned.torn_bytes = (last_nonzero + 1).saturating_sub(at) as u64;
                break;
            }
        }
    }
    scanned.end = at as u64;
    Ok(scanned)
}

/// The offset after `start` of something shaped like the header of record `index`
/// (its index field, and a length that fits), if any. Used only on damage, to refuse
/// rather than cut: a payload that happens to hold this pattern makes the log refuse to
/// open, never lose a record.
fn later_record_at(bytes: &[u8], start: usize, index: u64, max_payload: usize) -> Option<usize> {
    let pattern = index.to_le_bytes();
    let end = bytes.iter().rposition(|&b| b != 0)? + 1;
    // The length field (never zero) lies before the last non-zero byte.
    (start + 1..end.saturating_sub(4).max(start + 1)).find(|&at| {
        bytes.get(at + 8..at + 16) == Some(&pattern[..]) && {
            let mut word = [0; 4];
            word.copy_from_slice(&bytes[at + 4..at + 8]);
            let length = u32::from_le_bytes(word) as usize;
            length >= 1
                && length - 1 <= max_payload.min(record::MAX_PAYLOAD_HARD)
                && at + record::HEADER_LEN + length - 1 <= bytes.len()
        }
    })
}

/// Paths of a data directory.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
        }
    }
    pub fn segment(&self, first_index: u64) -> PathBuf {
        self.dir.join(file_name(first_index))
    }
    pub fn archive_dir(&self) -> PathBuf {
        self.dir.join("archive")
    }
    pub fn archived(&self, first_index: u64) -> PathBuf {
        self.archive_dir().join(file_name(first_index))
    }
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }
    pub fn hard_state(&self) -> PathBuf {
        self.dir.join("hard-state")
    }
}
