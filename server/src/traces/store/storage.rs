//! Where sealed blocks live: a small trait, so that a deployment that outgrows one disk
//! can put them in object storage. [`LocalDir`] is the default: one file per block;
//! [`ObjectBlocks`] keeps them in object storage (`--object-store`), one object each.
//!
//! Blocks are immutable: `put` writes a whole block at once and is atomic (a reader sees
//! the whole block or none of it); nothing ever rewrites a block in place.
//!
//! The trait is synchronous: the store calls it from its own threads (writer, sealer)
//! and from `spawn_blocking`, never from a runtime worker thread. [`ObjectBlocks`]
//! waits there for the async object store with `block_on` on a runtime of its own (one
//! thread), which outlives the server's: a seal still running while the server's
//! runtime shuts down finishes. `block_on` panics on a runtime worker thread: such a
//! call is a bug, not a slow path.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::TryStreamExt;
use tokio::runtime::Runtime;

use crate::objects::{io_error, ObjectPath, ObjectStore, ObjectStoreExt};

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
        Ok(self.dir.join(checked_name(name)?))
    }
}

fn checked_name(name: &str) -> io::Result<&str> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad block name",
        ));
    }
    Ok(name)
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

/// Blocks as objects of an object store (a prefixed view of it: see `crate::objects`).
/// A read of part of a block is one ranged GET.
pub struct ObjectBlocks {
    store: Arc<dyn ObjectStore>,
    /// Always `Some` but in `drop`.
    runtime: Option<Runtime>,
}

impl ObjectBlocks {
    pub fn new(store: Arc<dyn ObjectStore>) -> io::Result<ObjectBlocks> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("object-blocks")
            .enable_all()
            .build()?;
        Ok(ObjectBlocks {
            store,
            runtime: Some(runtime),
        })
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("the runtime lives until drop")
            .block_on(future)
    }

    fn key(name: &str) -> io::Result<ObjectPath> {
        Ok(ObjectPath::from(checked_name(name)?))
    }
}

impl BlockStorage for ObjectBlocks {
    fn put(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let key = ObjectBlocks::key(name)?;
        self.block_on(self.store.put(&key, bytes.to_vec().into()))
            .map_err(io_error)?;
        Ok(())
    }

    fn get_range(&self, name: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let key = ObjectBlocks::key(name)?;
        let end = offset
            .checked_add(len as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "range overflows"))?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let bytes = self
            .block_on(self.store.get_range(&key, offset..end))
            .map_err(io_error)?;
        // A range past the end is short (or refused): as a file's read_exact_at, an error.
        if bytes.len() != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{name}: {len} bytes at {offset} asked, {} there",
                    bytes.len()
                ),
            ));
        }
        Ok(bytes.to_vec())
    }

    fn list(&self) -> io::Result<Vec<(String, u64)>> {
        let listed: Vec<_> = self
            .block_on(self.store.list(None).try_collect())
            .map_err(io_error)?;
        let mut out: Vec<(String, u64)> = listed
            .into_iter()
            .filter(|meta| meta.location.parts().count() == 1)
            .filter_map(|meta| {
                let name = meta.location.filename()?.to_owned();
                checked_name(&name).ok()?;
                Some((name, meta.size))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> io::Result<()> {
        let key = ObjectBlocks::key(name)?;
        match self.block_on(self.store.delete(&key)) {
            Err(object_store::Error::NotFound { .. }) | Ok(()) => Ok(()),
            Err(err) => Err(io_error(err)),
        }
    }
}

impl Drop for ObjectBlocks {
    /// Without waiting: the last handle may go on a runtime worker thread, where
    /// dropping a runtime the ordinary way panics.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::Objects;

    /// What every implementation does.
    fn conformance(storage: &dyn BlockStorage) {
        assert!(storage.list().unwrap().is_empty());
        storage.put("a.blk", b"hello world").unwrap();
        storage.put("b.blk", b"second").unwrap();
        assert_eq!(storage.get_range("a.blk", 6, 5).unwrap(), b"world");
        assert_eq!(storage.get_range("a.blk", 0, 11).unwrap(), b"hello world");
        assert_eq!(
            storage.list().unwrap(),
            vec![("a.blk".to_owned(), 11), ("b.blk".to_owned(), 6)]
        );
        assert!(storage.get_range("a.blk", 8, 10).is_err());
        assert!(storage.get_range("a.blk", 20, 1).is_err());
        assert_eq!(
            storage.get_range("missing.blk", 0, 1).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        for bad in ["../x", "", ".hidden", "a/b"] {
            assert!(storage.put(bad, b"").is_err(), "{bad:?}");
            assert!(storage.get_range(bad, 0, 1).is_err(), "{bad:?}");
        }
        // Immutable blocks are replaced whole, never patched.
        storage.put("b.blk", b"replaced").unwrap();
        assert_eq!(storage.get_range("b.blk", 0, 8).unwrap(), b"replaced");
        storage.delete("a.blk").unwrap();
        storage.delete("a.blk").unwrap();
        storage.delete("b.blk").unwrap();
        assert!(storage.list().unwrap().is_empty());
    }

    #[test]
    fn a_local_directory_conforms() {
        let dir = tempfile::tempdir().unwrap();
        conformance(&LocalDir::open(dir.path()).unwrap());
    }

    #[test]
    fn object_storage_in_memory_conforms() {
        let objects = Objects::in_memory();
        let storage = ObjectBlocks::new(objects.under("traces/blocks")).unwrap();
        conformance(&storage);
        // Objects deeper than the prefix's own level are not blocks.
        storage
            .block_on(
                objects
                    .under("traces/blocks")
                    .put(&ObjectPath::from("x/y.blk"), b"z".to_vec().into()),
            )
            .unwrap();
        assert!(storage.list().unwrap().is_empty());
    }

    #[test]
    fn object_storage_on_the_local_file_system_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::open(&format!("file://{}", dir.path().display())).unwrap();
        conformance(&ObjectBlocks::new(objects.under("traces/blocks")).unwrap());
    }

    #[tokio::test]
    async fn object_storage_can_be_dropped_on_a_runtime_thread() {
        let storage = ObjectBlocks::new(Objects::in_memory().under("b")).unwrap();
        let storage = tokio::task::spawn_blocking(move || {
            storage.put("a.blk", b"x").unwrap();
            storage
        })
        .await
        .unwrap();
        drop(storage);
    }
}
