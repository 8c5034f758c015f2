//! [`Kv`]: the key-value state machine the log feeds, the payloads it reads
//! ([`Entry`], [`ClientWrite`]) and its checkpoints.
//!
//! A payload is a small hand-rolled binary encoding (a tag byte, little-endian lengths),
//! checked against the bounds below before anything is allocated; serde would add a
//! format crate for three fields.
//!
//! ```text
//! tag 1  client write  time_ms i64 | key_len u16 key | value_len u32 value | idem_len u16 idem
//!                      (idem_len 0xFFFF: no idempotency key)
//! tag 2  opaque        the rest (Raft's blank and membership entries): advances last_applied
//! ```
//!
//! Idempotency keys map to the LSN that first carried them. Memory is bounded: the
//! newest [`DEFAULT_IDEMPOTENCY_CAPACITY`] keys are remembered (128 bytes each at most,
//! about 20 MB at the bound), older ones are forgotten first in, first out, and a retry
//! older than that applies again.
//!
//! A checkpoint (`checkpoints/checkpoint-<lsn, 20 digits>`) is the whole state at
//! `last_applied`, with a CRC32C at the end, written to a temporary file, fsynced and
//! renamed; the newest `keep` are kept.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use super::disk::Disk;
use super::record::crc32c;
use super::segment::Layout;
use super::WalError;

pub const MAX_KEY_BYTES: usize = 1024;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;
pub const DEFAULT_IDEMPOTENCY_CAPACITY: usize = 100_000;

const TAG_WRITE: u8 = 1;
const TAG_OPAQUE: u8 = 2;
const NO_IDEMPOTENCY_KEY: u16 = u16::MAX;
const CHECKPOINT_MAGIC: &[u8; 8] = b"MRDNCKP1";
const CHECKPOINT_PREFIX: &str = "checkpoint-";

/// A client's write, as the leader puts it in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientWrite {
    pub key: String,
    pub value: String,
    pub idempotency_key: Option<String>,
    /// The leader's wall clock when it accepted the write (for recovery to a time).
    pub leader_time_ms: i64,
}

/// The payload of one log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Write(ClientWrite),
    Opaque(Vec<u8>),
}

fn bad(reason: impl Into<String>) -> WalError {
    WalError::BadPayload(reason.into())
}

/// Reads little-endian fields off a byte slice, never past its end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WalError> {
        if self.bytes.len() < n {
            return Err(bad(format!("{n} bytes wanted, {} left", self.bytes.len())));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WalError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, WalError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, WalError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, WalError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, WalError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, WalError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn text(&mut self, len: usize, max: usize, what: &str) -> Result<String, WalError> {
        if len > max {
            return Err(bad(format!("a {what} of {len} bytes (at most {max})")));
        }
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| bad(format!("a {what} not in UTF-8")))
    }
}

impl ClientWrite {
    /// Checks the bounds a payload must meet.
    pub fn validate(&self) -> Result<(), WalError> {
        let too_long = |what: &str, len: usize, max: usize| {
            Err(bad(format!("a {what} of {len} bytes (at most {max})")))
        };
        if self.key.len() > MAX_KEY_BYTES {
            return too_long("key", self.key.len(), MAX_KEY_BYTES);
        }
        if self.value.len() > MAX_VALUE_BYTES {
            return too_long("value", self.value.len(), MAX_VALUE_BYTES);
        }
        match &self.idempotency_key {
            Some(key) if key.len() > MAX_IDEMPOTENCY_KEY_BYTES => {
                too_long("idempotency key", key.len(), MAX_IDEMPOTENCY_KEY_BYTES)
            }
            _ => Ok(()),
        }
    }
}

impl Entry {
    /// The payload bytes; a write out of bounds is refused.
    pub fn encode(&self) -> Result<Vec<u8>, WalError> {
        match self {
            Entry::Opaque(bytes) => {
                let mut out = Vec::with_capacity(1 + bytes.len());
                out.push(TAG_OPAQUE);
                out.extend_from_slice(bytes);
                Ok(out)
            }
            Entry::Write(write) => {
                write.validate()?;
                let mut out = Vec::with_capacity(17 + write.key.len() + write.value.len());
                out.push(TAG_WRITE);
                out.extend_from_slice(&write.leader_time_ms.to_le_bytes());
                out.extend_from_slice(&(write.key.len() as u16).to_le_bytes());
                out.extend_from_slice(write.key.as_bytes());
                out.extend_from_slice(&(write.value.len() as u32).to_le_bytes());
                out.extend_from_slice(write.value.as_bytes());
                match &write.idempotency_key {
                    Some(key) => {
                        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
                        out.extend_from_slice(key.as_bytes());
                    }
                    None => out.extend_from_slice(&NO_IDEMPOTENCY_KEY.to_le_bytes()),
                }
                Ok(out)
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry, WalError> {
        let mut reader = Reader { bytes };
        match reader.u8()? {
            TAG_OPAQUE => Ok(Entry::Opaque(reader.bytes.to_vec())),
            TAG_WRITE => {
                let leader_time_ms = reader.i64()?;
                let len = reader.u16()? as usize;
                let key = reader.text(len, MAX_KEY_BYTES, "key")?;
                let len = reader.u32()? as usize;
                let value = reader.text(len, MAX_VALUE_BYTES, "value")?;
                let idempotency_key = match reader.u16()? {
                    NO_IDEMPOTENCY_KEY => None,
                    len => Some(reader.text(
                        len as usize,
                        MAX_IDEMPOTENCY_KEY_BYTES,
                        "idempotency key",
                    )?),
                };
                if !reader.bytes.is_empty() {
                    return Err(bad(format!("{} bytes after a write", reader.bytes.len())));
                }
                Ok(Entry::Write(ClientWrite {
                    key,
                    value,
                    idempotency_key,
                    leader_time_ms,
                }))
            }
            tag => Err(bad(format!("unknown entry tag {tag}"))),
        }
    }
}

/// What applying one record did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Written,
    /// The idempotency key was seen before, at `original_lsn`; nothing changed.
    Duplicate {
        original_lsn: u64,
    },
    /// An opaque entry: only `last_applied` moved.
    Skipped,
}

/// The key-value state at `last_applied`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    entries: BTreeMap<String, String>,
    last_applied: Option<u64>,
    /// The latest leader time of any write applied so far (recovery to a time).
    max_time_ms: Option<i64>,
    idempotency: HashMap<String, u64>,
    idempotency_order: VecDeque<String>,
    idempotency_capacity: usize,
}

impl Default for Kv {
    fn default() -> Kv {
        Kv::with_idempotency_capacity(DEFAULT_IDEMPOTENCY_CAPACITY)
    }
}

impl Kv {
    pub fn new() -> Kv {
        Kv::default()
    }

    pub fn with_idempotency_capacity(capacity: usize) -> Kv {
        Kv {
            entries: BTreeMap::new(),
            last_applied: None,
            max_time_ms: None,
            idempotency: HashMap::new(),
            idempotency_order: VecDeque::new(),
            idempotency_capacity: capacity.max(1),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.entries
    }

    pub fn last_applied(&self) -> Option<u64> {
        self.last_applied
    }

    pub fn max_time_ms(&self) -> Option<i64> {
        self.max_time_ms
    }

    /// The LSN that first carried `key`, while it is remembered.
    pub fn idempotent_lsn(&self, key: &str) -> Option<u64> {
        self.idempotency.get(key).copied()
    }

    /// Applies the record at `lsn` (which must follow `last_applied`).
    pub fn apply(&mut self, lsn: u64, payload: &[u8]) -> Result<Applied, WalError> {
        if let Some(last_applied) = self.last_applied.filter(|&last| lsn <= last) {
            return Err(WalError::OutOfOrder { lsn, last_applied });
        }
        let entry = Entry::decode(payload)?;
        self.last_applied = Some(lsn);
        let Entry::Write(write) = entry else {
            return Ok(Applied::Skipped);
        };
        self.max_time_ms = Some(
            self.max_time_ms
                .map_or(write.leader_time_ms, |t| t.max(write.leader_time_ms)),
        );
        if let Some(key) = &write.idempotency_key {
            if let Some(&original_lsn) = self.idempotency.get(key) {
                return Ok(Applied::Duplicate { original_lsn });
            }
            self.remember(key.clone(), lsn);
        }
        self.entries.insert(write.key, write.value);
        Ok(Applied::Written)
    }

    fn remember(&mut self, key: String, lsn: u64) {
        while self.idempotency_order.len() >= self.idempotency_capacity {
            if let Some(oldest) = self.idempotency_order.pop_front() {
                self.idempotency.remove(&oldest);
            }
        }
        self.idempotency.insert(key.clone(), lsn);
        self.idempotency_order.push_back(key);
    }

    fn encode_checkpoint(&self, lsn: u64) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(CHECKPOINT_MAGIC);
        out.extend_from_slice(&lsn.to_le_bytes());
        match self.max_time_ms {
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&t.to_le_bytes());
            }
            None => {
                out.push(0);
                out.extend_from_slice(&0i64.to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.idempotency_capacity as u64).to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for (key, value) in &self.entries {
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        out.extend_from_slice(&(self.idempotency_order.len() as u64).to_le_bytes());
        for key in &self.idempotency_order {
            let lsn = self.idempotency.get(key).copied().unwrap_or_default();
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&lsn.to_le_bytes());
        }
        let crc = crc32c(0, &out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode_checkpoint(bytes: &[u8]) -> Result<Kv, WalError> {
        if bytes.len() < 4 {
            return Err(bad("a checkpoint shorter than its CRC"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let mut word = [0; 4];
        word.copy_from_slice(crc);
        if crc32c(0, body) != u32::from_le_bytes(word) {
            return Err(bad("a checkpoint whose CRC does not match"));
        }
        let mut reader = Reader { bytes: body };
        if reader.take(8)? != CHECKPOINT_MAGIC {
            return Err(bad("not a checkpoint"));
        }
        let lsn = reader.u64()?;
        let has_time = reader.u8()? == 1;
        let time = reader.i64()?;
        let capacity = reader.u64()? as usize;
        let mut kv = Kv::with_idempotency_capacity(capacity);
        kv.last_applied = Some(lsn);
        kv.max_time_ms = has_time.then_some(time);
        let count = reader.u64()?;
        for _ in 0..count {
            let len = reader.u32()? as usize;
            let key = reader.text(len, MAX_KEY_BYTES, "key")?;
            let len = reader.u32()? as usize;
            let value = reader.text(len, MAX_VALUE_BYTES, "value")?;
            kv.entries.insert(key, value);
        }
        let count = reader.u64()?;
        for _ in 0..count {
            let len = reader.u32()? as usize;
            let key = reader.text(len, MAX_IDEMPOTENCY_KEY_BYTES, "idempotency key")?;
            let lsn = reader.u64()?;
            kv.remember(key, lsn);
        }
        Ok(kv)
    }

    /// Writes the state at `last_applied` as a checkpoint in `dir/checkpoints/` and
    /// keeps the newest `keep` (at least one). Returns the checkpoint's LSN.
    pub fn checkpoint(&self, disk: &dyn Disk, dir: &Path, keep: usize) -> Result<u64, WalError> {
        let Some(lsn) = self.last_applied else {
            return Err(bad("nothing applied yet to checkpoint"));
        };
        let folder = Layout::new(dir).checkpoint_dir();
        disk.create_dir_all(&folder)
            .map_err(WalError::io("create directory", &folder))?;
        let path = checkpoint_path(dir, lsn);
        let temporary = path.with_extension("tmp");
        disk.create(&temporary)
            .map_err(WalError::io("create", &temporary))?;
        disk.write_at(&temporary, 0, &self.encode_checkpoint(lsn))
            .map_err(WalError::io("write", &temporary))?;
        disk.sync(&temporary)
            .map_err(WalError::io("fsync", &temporary))?;
        disk.rename(&temporary, &path)
            .map_err(WalError::io("rename", &temporary))?;
        disk.sync_dir(&folder)
            .map_err(WalError::io("fsync directory", &folder))?;
        let lsns = checkpoints(disk, dir)?;
        let excess = lsns.len().saturating_sub(keep.max(1));
        for &old in &lsns[..excess] {
            let old = checkpoint_path(dir, old);
            disk.remove(&old).map_err(WalError::io("remove", &old))?;
        }
        if excess > 0 {
            disk.sync_dir(&folder)
                .map_err(WalError::io("fsync directory", &folder))?;
        }
        Ok(lsn)
    }

    /// Loads the checkpoint of `lsn` from `dir/checkpoints/`.
    pub fn load_checkpoint(disk: &dyn Disk, dir: &Path, lsn: u64) -> Result<Kv, WalError> {
        let path = checkpoint_path(dir, lsn);
        let bytes = disk.read_all(&path).map_err(WalError::io("read", &path))?;
        Kv::decode_checkpoint(&bytes).map_err(|error| WalError::Corrupt {
            path,
            offset: 0,
            reason: error.to_string(),
        })
    }
}

pub fn checkpoint_path(dir: &Path, lsn: u64) -> PathBuf {
    Layout::new(dir)
        .checkpoint_dir()
        .join(format!("{CHECKPOINT_PREFIX}{lsn:020}"))
}

/// The LSNs of the checkpoints in `dir/checkpoints/`, oldest first.
pub fn checkpoints(disk: &dyn Disk, dir: &Path) -> Result<Vec<u64>, WalError> {
    let folder = Layout::new(dir).checkpoint_dir();
    if !disk
        .exists(&folder)
        .map_err(WalError::io("stat", &folder))?
    {
        return Ok(Vec::new());
    }
    let names = disk.list(&folder).map_err(WalError::io("list", &folder))?;
    let mut lsns: Vec<u64> = names
        .iter()
        .filter_map(|name| name.strip_prefix(CHECKPOINT_PREFIX))
        .filter(|digits| digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|digits| digits.parse().ok())
        .collect();
    lsns.sort_unstable();
    Ok(lsns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(key: &str, value: &str, idem: Option<&str>, time: i64) -> Vec<u8> {
        Entry::Write(ClientWrite {
            key: key.into(),
            value: value.into(),
            idempotency_key: idem.map(Into::into),
            leader_time_ms: time,
        })
        .encode()
        .unwrap()
    }

    #[test]
    fn entries_round_trip_and_bad_bytes_are_errors_not_panics() {
        let entry = Entry::Write(ClientWrite {
            key: "k".into(),
            value: "v".into(),
            idempotency_key: Some("op-1".into()),
            leader_time_ms: -5,
        });
        let bytes = entry.encode().unwrap();
        assert_eq!(Entry::decode(&bytes).unwrap(), entry);
        for cut in 0..bytes.len() {
            assert!(Entry::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Entry::decode(&[9]).is_err());
        let huge = ClientWrite {
            key: "x".repeat(MAX_KEY_BYTES + 1),
            value: String::new(),
            idempotency_key: None,
            leader_time_ms: 0,
        };
        assert!(Entry::Write(huge).encode().is_err());
    }

    #[test]
    fn idempotency_keys_answer_the_original_lsn_within_the_bound() {
        let mut kv = Kv::with_idempotency_capacity(2);
        assert_eq!(
            kv.apply(1, &write("a", "1", Some("x"), 10)).unwrap(),
            Applied::Written
        );
        assert_eq!(
            kv.apply(2, &write("a", "2", Some("x"), 11)).unwrap(),
            Applied::Duplicate { original_lsn: 1 }
        );
        assert_eq!(kv.get("a"), Some("1"));
        kv.apply(3, &write("b", "1", Some("y"), 12)).unwrap();
        kv.apply(4, &write("c", "1", Some("z"), 13)).unwrap();
        assert_eq!(kv.idempotent_lsn("x"), None, "the oldest key is forgotten");
        assert_eq!(kv.idempotent_lsn("z"), Some(4));
        assert!(matches!(
            kv.apply(4, &write("d", "1", None, 14)),
            Err(WalError::OutOfOrder { .. })
        ));
        assert_eq!(
            kv.apply(5, &Entry::Opaque(vec![1]).encode().unwrap())
                .unwrap(),
            Applied::Skipped
        );
        assert_eq!(kv.last_applied(), Some(5));
    }

    #[test]
    fn a_power_cut_during_a_checkpoint_leaves_the_old_ones_whole() {
        let dir = Path::new("/data");
        for ops in 0..12 {
            let disk = super::super::SimDisk::new();
            let mut kv = Kv::new();
            let mut saved = Vec::new();
            for lsn in 1..=3 {
                kv.apply(lsn, &write("k", &lsn.to_string(), None, 0))
                    .unwrap();
                kv.checkpoint(&disk, dir, 2).unwrap();
                saved.push(kv.clone());
            }
            kv.apply(4, &write("k", "4", None, 0)).unwrap();
            disk.cut_power_after(ops);
            let finished = kv.checkpoint(&disk, dir, 2).is_ok();
            disk.crash(ops, true);
            let lsns = checkpoints(&disk, dir).unwrap();
            assert!(!lsns.is_empty(), "power cut after {ops} operations");
            for lsn in &lsns {
                let loaded = Kv::load_checkpoint(&disk, dir, *lsn)
                    .unwrap_or_else(|e| panic!("power cut after {ops} operations: {e}"));
                let expected = if *lsn == 4 {
                    &kv
                } else {
                    &saved[*lsn as usize - 1]
                };
                assert_eq!(&loaded, expected);
            }
            if finished {
                assert_eq!(lsns, vec![3, 4], "a finished checkpoint is durable");
            }
        }
    }

    #[test]
    fn checkpoints_round_trip_and_keep_the_newest() {
        let disk = super::super::SimDisk::new();
        let dir = Path::new("/data");
        let mut kv = Kv::new();
        for lsn in 1..=5 {
            kv.apply(
                lsn,
                &write(
                    &format!("k{lsn}"),
                    "v",
                    Some(&format!("op{lsn}")),
                    lsn as i64,
                ),
            )
            .unwrap();
            kv.checkpoint(&disk, dir, 2).unwrap();
        }
        assert_eq!(checkpoints(&disk, dir).unwrap(), vec![4, 5]);
        assert_eq!(Kv::load_checkpoint(&disk, dir, 5).unwrap(), kv);
        let path = checkpoint_path(dir, 5);
        let mut bytes = disk.file_bytes(&path).unwrap();
        bytes[12] ^= 1;
        disk.set_file_bytes(&path, bytes);
        assert!(matches!(
            Kv::load_checkpoint(&disk, dir, 5),
            Err(WalError::Corrupt { .. })
        ));
    }
}
