//! The record codec: one log record framed as bytes, and the decoder that tells a valid
//! record from a torn tail and from corruption.
//!
//! ```text
//! offset  size  field
//! 0       4     crc       CRC32C (Castagnoli) of prev_crc ‖ bytes 4.. of this frame
//! 4       4     length    payload length + 1 (0 never occurs: an all-zero header is
//!                         the zeroed, preallocated region after the last record)
//! 8       8     index     u64, little-endian
//! 16      8     term      u64, little-endian
//! 24      n     payload
//! ```
//!
//! The CRC is chained: each record's CRC covers the previous record's CRC (as etcd's WAL
//! does), so a record that is missing, repeated or moved breaks the chain even when its
//! own bytes are intact. The decoder never panics on any input.

/// CRC32C with slice-by-16 tables.
const CASTAGNOLI: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// Bytes of a record's frame before its payload.
pub const HEADER_LEN: usize = 24;

/// The hard ceiling on a payload, whatever the log's options say: a length field above
/// it is an impossible length, never an allocation.
pub const MAX_PAYLOAD_HARD: usize = 16 * 1024 * 1024;

/// One entry of the log: its Raft index and term, and opaque payload bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub index: u64,
    pub term: u64,
    pub payload: Vec<u8>,
}

impl Record {
    pub fn new(index: u64, term: u64, payload: impl Into<Vec<u8>>) -> Record {
        Record {
            index,
            term,
            payload: payload.into(),
        }
    }

    /// Bytes this record takes on disk.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }
}

/// CRC32C of `bytes`, continuing from `seed` (the CRC of the previous record).
pub fn crc32c(seed: u32, bytes: &[u8]) -> u32 {
    let mut digest = CASTAGNOLI.digest();
    digest.update(&seed.to_le_bytes());
    digest.update(bytes);
    digest.finalize()
}

/// Appends the frame of `record` to `out`, chained to `prev_crc`; returns its CRC.
/// The caller has checked the payload against its maximum.
pub fn encode(record: &Record, prev_crc: u32, out: &mut Vec<u8>) -> u32 {
    let start = out.len();
    let length_field = u32::try_from(record.payload.len() + 1).unwrap_or(u32::MAX);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&length_field.to_le_bytes());
    out.extend_from_slice(&record.index.to_le_bytes());
    out.extend_from_slice(&record.term.to_le_bytes());
    out.extend_from_slice(&record.payload);
    let crc = crc32c(prev_crc, &out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    crc
}

/// What the bytes at one position of a segment are.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A complete record whose CRC and index check out; `len` bytes long.
    Record {
        record: Record,
        crc: u32,
        len: usize,
    },
    /// An all-zero header (or zero bytes up to the end): the written part ends here.
    End,
    /// Not a valid record. `torn_if_zero_from`: when every byte from that offset (relative
    /// to the record's start) to the end of the segment is zero, the damage may be a write
    /// that was cut short (a torn tail); `None` when it cannot be one.
    Damaged {
        reason: String,
        torn_if_zero_from: Option<usize>,
    },
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Decodes the record at the start of `bytes` (which run to the end of the segment),
/// expecting `expected_index` chained to `prev_crc`, with payloads of at most
/// `max_payload` bytes.
pub fn decode(bytes: &[u8], prev_crc: u32, expected_index: u64, max_payload: usize) -> Decoded {
    let max_payload = max_payload.min(MAX_PAYLOAD_HARD);
    if bytes.len() < HEADER_LEN {
        if bytes.iter().all(|&b| b == 0) {
            return Decoded::End;
        }
        return Decoded::Damaged {
            reason: format!("a record header cut short at {} bytes", bytes.len()),
            torn_if_zero_from: Some(bytes.len()),
        };
    }
    if bytes[..HEADER_LEN].iter().all(|&b| b == 0) {
        return Decoded::End;
    }
    let length_field = le_u32(bytes, 4) as usize;
    if length_field == 0 || length_field - 1 > max_payload {
        return Decoded::Damaged {
            reason: format!("impossible length field {length_field}"),
            torn_if_zero_from: Some(HEADER_LEN),
        };
    }
    let payload_len = length_field - 1;
    let len = HEADER_LEN + payload_len;
    if len > bytes.len() {
        // The bytes end mid-record.
        return Decoded::Damaged {
            reason: format!("a record of {len} bytes where only {} remain", bytes.len()),
            torn_if_zero_from: Some(bytes.len()),
        };
    }
    let stored_crc = le_u32(bytes, 0);
    let crc = crc32c(prev_crc, &bytes[4..len]);
    if crc != stored_crc {
        return Decoded::Damaged {
            reason: format!("CRC mismatch (stored {stored_crc:#010x}, computed {crc:#010x})"),
            torn_if_zero_from: Some(len),
        };
    }
    let index = le_u64(bytes, 8);
    if index != expected_index {
        return Decoded::Damaged {
            reason: format!("record index {index} where {expected_index} was expected"),
            torn_if_zero_from: None,
        };
    }
    Decoded::Record {
        record: Record {
            index,
            term: le_u64(bytes, 16),
            payload: bytes[HEADER_LEN..len].to_vec(),
        },
        crc,
        len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(records: &[Record]) -> (Vec<u8>, Vec<u32>) {
        let mut out = Vec::new();
        let mut crcs = Vec::new();
        let mut prev = 0;
        for record in records {
            prev = encode(record, prev, &mut out);
            crcs.push(prev);
        }
        (out, crcs)
    }

    #[test]
    fn round_trip_with_chained_crcs() {
        let records = vec![
            Record::new(1, 1, b"alpha".to_vec()),
            Record::new(2, 1, Vec::new()),
            Record::new(3, 2, vec![7; 300]),
        ];
        let (mut bytes, crcs) = encoded(&records);
        bytes.extend_from_slice(&[0; 64]);
        let mut at = 0;
        let mut prev = 0;
        for (i, expected) in records.iter().enumerate() {
            match decode(&bytes[at..], prev, expected.index, 1024) {
                Decoded::Record { record, crc, len } => {
                    assert_eq!(&record, expected);
                    assert_eq!(crc, crcs[i]);
                    at += len;
                    prev = crc;
                }
                other => panic!("record {i}: {other:?}"),
            }
        }
        assert_eq!(decode(&bytes[at..], prev, 4, 1024), Decoded::End);
    }

    #[test]
    fn a_reordered_or_missing_record_breaks_the_chain() {
        let records = vec![
            Record::new(1, 1, b"a".to_vec()),
            Record::new(2, 1, b"b".to_vec()),
            Record::new(3, 1, b"c".to_vec()),
        ];
        let (bytes, crcs) = encoded(&records);
        let second = HEADER_LEN + 1;
        // Skipping record 2: record 3 does not chain to record 1.
        assert!(matches!(
            decode(&bytes[2 * second..], crcs[0], 2, 1024),
            Decoded::Damaged { .. }
        ));
    }

    #[test]
    fn lengths_beyond_the_maximum_are_impossible_not_allocated() {
        let mut bytes = vec![0xff; HEADER_LEN];
        bytes.extend_from_slice(&[1; 10]);
        match decode(&bytes, 0, 1, 1024) {
            Decoded::Damaged { reason, .. } => assert!(reason.contains("impossible length")),
            other => panic!("{other:?}"),
        }
        let record = Record::new(1, 1, vec![1; 100]);
        let mut out = Vec::new();
        encode(&record, 0, &mut out);
        assert!(matches!(decode(&out, 0, 1, 99), Decoded::Damaged { .. }));
    }

    #[test]
    fn every_cut_of_a_record_is_damaged_or_end_never_a_record() {
        let record = Record::new(9, 3, b"payload bytes".to_vec());
        let mut full = Vec::new();
        encode(&record, 42, &mut full);
        for cut in 0..full.len() {
            let mut bytes = full[..cut].to_vec();
            bytes.resize(full.len() + 32, 0);
            match decode(&bytes, 42, 9, 1024) {
                Decoded::End => assert_eq!(cut, 0, "an all-zero header only when nothing landed"),
                Decoded::Damaged {
                    torn_if_zero_from: Some(from),
                    ..
                } => assert!(
                    bytes[from.min(bytes.len())..].iter().all(|&b| b == 0),
                    "cut at {cut} must look torn"
                ),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }
}
