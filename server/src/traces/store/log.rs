//! The ingest log: what makes a span durable before it is acknowledged.
//!
//! Segments `NNNNNNNNNNNN.log` in one directory, each a run of frames
//! `len u32 | crc32 u32 | span records`. The writer appends every batch that is waiting,
//! syncs once (group commit), and only then answers them. A segment is deleted once the
//! spans in it are in sealed blocks. On start every remaining segment is replayed up to
//! its first torn or damaged frame (a crash mid-write: that frame was never
//! acknowledged).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::record::SpanRecord;
use super::storage::sync_dir;
use super::StoreError;

pub struct IngestLog {
    dir: PathBuf,
    segment: u64,
    file: File,
    fsync: bool,
    buf: Vec<u8>,
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:012}.log"))
}

/// The segments in `dir`, ascending.
pub fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_suffix(".log").and_then(|s| s.parse().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Every record of `segment` in `dir`, up to the first torn or damaged frame.
pub fn replay(dir: &Path, segment: u64) -> Result<Vec<SpanRecord>, StoreError> {
    let bytes = fs::read(segment_path(dir, segment))?;
    let mut records = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4"));
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        match SpanRecord::decode_all(payload) {
            Ok(mut batch) => records.append(&mut batch),
            Err(_) => break,
        }
        at += 8 + len;
    }
    Ok(records)
}

/// Deletes the segments up to and including `through`.
pub fn delete_through(dir: &Path, through: u64) -> io::Result<()> {
    for segment in segments(dir)? {
        if segment <= through {
            fs::remove_file(segment_path(dir, segment))?;
        }
    }
    sync_dir(dir)
}

impl IngestLog {
    /// Starts a new segment after every existing one.
    pub fn create(dir: &Path, fsync: bool) -> io::Result<IngestLog> {
        fs::create_dir_all(dir)?;
        let segment = segments(dir)?.last().map_or(1, |s| s + 1);
        let file = Self::new_segment(dir, segment)?;
        Ok(IngestLog {
            dir: dir.to_owned(),
            segment,
            file,
            fsync,
            buf: Vec::new(),
        })
    }

    fn new_segment(dir: &Path, segment: u64) -> io::Result<File> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(segment_path(dir, segment))?;
        sync_dir(dir)?;
        Ok(file)
    }

    pub fn segment(&self) -> u64 {
        self.segment
    }

    /// Appends one frame per batch and syncs once.
    pub fn append(&mut self, batches: &[&[SpanRecord]]) -> io::Result<()> {
        self.buf.clear();
        for batch in batches {
            let start = self.buf.len();
            self.buf.extend_from_slice(&[0; 8]);
            for record in *batch {
                record.encode(&mut self.buf);
            }
            let payload = &self.buf[start + 8..];
            let len = (payload.len() as u32).to_le_bytes();
            let crc = crc32fast::hash(payload).to_le_bytes();
            self.buf[start..start + 4].copy_from_slice(&len);
            self.buf[start + 4..start + 8].copy_from_slice(&crc);
        }
        self.file.write_all(&self.buf)?;
        if self.fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Closes the current segment and starts the next; returns the closed one.
    pub fn rotate(&mut self) -> io::Result<u64> {
        let closed = self.segment;
        self.segment += 1;
        self.file = Self::new_segment(&self.dir, self.segment)?;
        Ok(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn record(n: u8) -> SpanRecord {
        let span = Span {
            trace_id: vec![n; 16],
            span_id: vec![n; 8],
            name: "x".into(),
            ..Default::default()
        };
        SpanRecord::from_otlp("svc", span).unwrap()
    }

    #[test]
    fn appended_frames_replay_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = IngestLog::create(dir.path(), true).unwrap();
        let a = [record(1), record(2)];
        let b = [record(3)];
        log.append(&[&a, &b]).unwrap();
        let segment = log.segment();
        drop(log);
        assert_eq!(replay(dir.path(), segment).unwrap().len(), 3);
        // A crash mid-frame: half a frame at the end.
        let path = segment_path(dir.path(), segment);
        let mut bytes = fs::read(&path).unwrap();
        let full = bytes.len();
        let mut extra = Vec::new();
        record(4).encode(&mut extra);
        bytes.extend_from_slice(&(extra.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&extra).to_le_bytes());
        bytes.extend_from_slice(&extra[..extra.len() / 2]);
        fs::write(&path, &bytes).unwrap();
        assert_eq!(replay(dir.path(), segment).unwrap().len(), 3);
        // A flipped bit in the last frame: it and what follows are dropped.
        bytes.truncate(full);
        bytes[full - 1] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(replay(dir.path(), segment).unwrap().len(), 2);
    }

    #[test]
    fn rotation_and_deletion_of_sealed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = IngestLog::create(dir.path(), false).unwrap();
        log.append(&[&[record(1)]]).unwrap();
        let closed = log.rotate().unwrap();
        log.append(&[&[record(2)]]).unwrap();
        assert_eq!(segments(dir.path()).unwrap(), vec![closed, closed + 1]);
        delete_through(dir.path(), closed).unwrap();
        assert_eq!(segments(dir.path()).unwrap(), vec![closed + 1]);
        drop(log);
        let log = IngestLog::create(dir.path(), false).unwrap();
        assert_eq!(log.segment(), closed + 2);
    }
}
