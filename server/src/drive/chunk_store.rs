//! Where chunk bytes live: the [`ChunkStore`] trait, and [`LocalChunkStore`], a directory
//! under the data directory (the default).
//!
//! A chunk is addressed by its SHA-256; callers verify a chunk against its hash before
//! `put`. A larger deployment implements the trait over object storage (the
//! `object_store` crate's `put`/`get`/`delete` map one to one); it is not built in (see
//! ARCHITECTURE.md, "Drive").
//!
//! Invariants of every implementation:
//! - `put` is atomic: a chunk is whole or absent, never half written, even across a
//!   crash; when `put` returns, the chunk is durable.
//! - `put` of a chunk already stored is harmless (same address, same bytes), and `put`
//!   of a chunk deleted meanwhile writes it again.
//! - Only the drive's collection (`retention`) deletes, under the protocol it states.

use std::io;
use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;

/// Chunk bytes by hash.
pub trait ChunkStore: Send + Sync + 'static {
    /// Stores a verified chunk, durably and atomically.
    fn put<'a>(&'a self, hash: &'a str, data: Vec<u8>) -> BoxFuture<'a, io::Result<()>>;
    /// A stored chunk (`NotFound` if absent).
    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, io::Result<Vec<u8>>>;
    /// Removes a chunk (no error if absent).
    fn delete<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, io::Result<()>>;
}

/// Chunks as files `<dir>/ab/cd/<hash>`.
pub struct LocalChunkStore {
    dir: PathBuf,
}

impl LocalChunkStore {
    pub fn new(dir: impl Into<PathBuf>) -> LocalChunkStore {
        LocalChunkStore { dir: dir.into() }
    }

    fn path(&self, hash: &str) -> io::Result<PathBuf> {
        if !meridian_shared::drive::chunking::valid_hash(hash) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a chunk hash",
            ));
        }
        Ok(self.dir.join(&hash[..2]).join(&hash[2..4]).join(hash))
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().expect("a chunk path has a folder");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("chunk"),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl ChunkStore for LocalChunkStore {
    fn put<'a>(&'a self, hash: &'a str, data: Vec<u8>) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let path = self.path(hash)?;
            tokio::task::spawn_blocking(move || {
                if path.exists() {
                    return Ok(());
                }
                write_atomically(&path, &data)
            })
            .await
            .map_err(io::Error::other)?
        })
    }

    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, io::Result<Vec<u8>>> {
        Box::pin(async move { tokio::fs::read(self.path(hash)?).await })
    }

    fn delete<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.path(hash)?).await {
                Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
                _ => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::drive::chunking::chunk_hash;

    #[tokio::test]
    async fn put_get_delete() {
        let dir = std::env::temp_dir().join(format!("meridian-chunks-{}", rand::random::<u64>()));
        let store = LocalChunkStore::new(&dir);
        let data = b"hello chunk".to_vec();
        let hash = chunk_hash(&data);
        store.put(&hash, data.clone()).await.unwrap();
        store.put(&hash, data.clone()).await.unwrap();
        assert_eq!(store.get(&hash).await.unwrap(), data);
        store.delete(&hash).await.unwrap();
        store.delete(&hash).await.unwrap();
        assert_eq!(
            store.get(&hash).await.unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(store.get("../../etc/passwd").await.is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
