//! Where sealed blocks live: a small trait, so that a deployment that outgrows one disk
//! can put them in object storage. [`LocalDir`] is the default: one file per block.
//!
//! Blocks are immutable: `put` writes a whole block at once and is atomic (a reader sees
//! the whole block or none of it); nothing ever rewrites a block in place.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A place for immutable, named blobs. Synchronous: the store calls it from its own
/// threads or from `spawn_blocking`.
pub trait BlockStorage: Send + Sync + 'static {
    /// Stores `bytes` under `name`, durably and atomically.
    fn put(&self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// `len` bytes of `name` from `offset`.
    fn get_range(&self, name: &str, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Every blob and its size.
    fn list(&self) -> io::Result<Vec<(String, u64)>>;
    fn delete(&self, name: &str) -> io::Result<()>;
}

/// Blocks as files in one directory (written to a temporary name, synced, renamed).
#[derive(Debug, Clone)]
pub struct LocalDir {
    dir: PathBuf,
}

impl LocalDir {
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<LocalDir> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(LocalDir { dir })
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad block name",
            ));
        }
        Ok(self.dir.join(name))
    }
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl BlockStorage for LocalDir {
    fn put(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(name)?;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)
    }

    fn get_range(&self, name: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let file = File::open(self.path(name)?)?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn list(&self) -> io::Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                // A put that crashed before its rename.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            out.push((name, entry.metadata()?.len()));
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> io::Result<()> {
        match fs::remove_file(self.path(name)?) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_dir_puts_reads_lists_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalDir::open(dir.path()).unwrap();
        storage.put("a.blk", b"hello world").unwrap();
        assert_eq!(storage.get_range("a.blk", 6, 5).unwrap(), b"world");
        assert_eq!(storage.list().unwrap(), vec![("a.blk".to_owned(), 11)]);
        assert!(storage.get_range("a.blk", 8, 10).is_err());
        assert!(storage.put("../x", b"").is_err());
        storage.delete("a.blk").unwrap();
        storage.delete("a.blk").unwrap();
        assert!(storage.list().unwrap().is_empty());
    }
}
