//! Where chunk bytes live: the [`ChunkStore`] trait; [`LocalChunkStore`], a directory
//! under the data directory (the default); [`ObjectChunkStore`], object storage (with
//! `--object-store`, under the prefix `drive/chunks`).
//!
//! A chunk is addressed by its SHA-256; callers verify a chunk against its hash before
//! `put`. Both keep a chunk at `ab/cd/<hash>` (its hash's first two byte pairs), so that
//! listing in key order is listing in hash order, one small folder at a time.
//!
//! Invariants of every implementation:
//! - `put` is atomic: a chunk is whole or absent, never half written, even across a
//!   crash; when `put` returns, the chunk is durable.
//! - `put` of a chunk already stored is harmless (same address, same bytes), and `put`
//!   of a chunk deleted meanwhile writes it again.
//! - Only the drive's collection (`retention`) deletes, under the protocol it states.
//! - `list` answers stored chunks in hash order, each with when it was last written;
//!   what is not a chunk (a write's temporary file) is not listed.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use meridian_shared::drive::chunking::valid_hash;

use crate::objects::{io_error, ObjectPath, ObjectStore, ObjectStoreExt};

/// A chunk as the store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    pub hash: String,
    pub size: u64,
    /// When its bytes were last written (Unix milliseconds, the store's own clock).
    pub modified_ms: i64,
}

/// Chunk bytes by hash.
pub trait ChunkStore: Send + Sync + 'static {
    /// Stores a verified chunk, durably and atomically.
    fn put<'a>(&'a self, hash: &'a str, data: Vec<u8>) -> BoxFuture<'a, io::Result<()>>;
    /// A stored chunk (`NotFound` if absent).
    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, io::Result<Vec<u8>>>;
    /// Removes a chunk (no error if absent).
    fn delete<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, io::Result<()>>;
    /// Stored chunks whose hash sorts after `after` (`""`: from the first), in hash
    /// order, at most `limit`; fewer only when no more follow.
    fn list<'a>(
        &'a self,
        after: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, io::Result<Vec<StoredChunk>>>;
}

fn bad_hash() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "not a chunk hash")
}

/// Whether the folder `name` (a hash's first pair, or its second within `first`) can
/// hold chunks after `after`.
fn folder_reaches(after: &str, first: &str, name: &str) -> bool {
    let (a1, a2) = (after.get(..2).unwrap_or(""), after.get(2..4).unwrap_or(""));
    if first.is_empty() {
        name >= a1
    } else {
        first > a1 || name >= a2
    }
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
        if !valid_hash(hash) {
            return Err(bad_hash());
        }
        Ok(self.dir.join(&hash[..2]).join(&hash[2..4]).join(hash))
    }

    /// `list`, walking the two levels of folders in order from `after`'s.
    fn walk(dir: &Path, after: &str, limit: usize) -> io::Result<Vec<StoredChunk>> {
        fn sorted(dir: &Path) -> io::Result<Vec<String>> {
            let mut names = Vec::new();
            match std::fs::read_dir(dir) {
                Ok(entries) => {
                    for entry in entries {
                        names.push(entry?.file_name().to_string_lossy().into_owned());
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
            names.sort();
            Ok(names)
        }
        let mut out = Vec::new();
        for first in sorted(dir)? {
            if first.len() != 2 || !folder_reaches(after, "", &first) {
                continue;
            }
            for second in sorted(&dir.join(&first))? {
                if second.len() != 2 || !folder_reaches(after, &first, &second) {
                    continue;
                }
                let leaf = dir.join(&first).join(&second);
                for name in sorted(&leaf)? {
                    if !valid_hash(&name) || name.as_str() <= after {
                        continue;
                    }
                    let meta = match std::fs::metadata(leaf.join(&name)) {
                        Ok(meta) => meta,
                        // Deleted since the folder was read.
                        Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                        Err(err) => return Err(err),
                    };
                    let modified = meta
                        .modified()?
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default();
                    out.push(StoredChunk {
                        hash: name,
                        size: meta.len(),
                        modified_ms: modified.as_millis().min(i64::MAX as u128) as i64,
                    });
                }
                if out.len() >= limit {
                    out.truncate(limit);
                    return Ok(out);
                }
            }
        }
        Ok(out)
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

    fn list<'a>(
        &'a self,
        after: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, io::Result<Vec<StoredChunk>>> {
        Box::pin(async move {
            let (dir, after) = (self.dir.clone(), after.to_owned());
            tokio::task::spawn_blocking(move || LocalChunkStore::walk(&dir, &after, limit))
                .await
                .map_err(io::Error::other)?
        })
    }
}

/// Chunks as objects `ab/cd/<hash>` of an object store (a prefixed view of it: see
/// `crate::objects`). A `put` is one atomic PUT; a chunk stored again is written again
/// (same bytes), which also renews its last-modified time.
pub struct ObjectChunkStore {
    store: Arc<dyn ObjectStore>,
}

impl ObjectChunkStore {
    pub fn new(store: Arc<dyn ObjectStore>) -> ObjectChunkStore {
        ObjectChunkStore { store }
    }

    fn key(hash: &str) -> io::Result<ObjectPath> {
        if !valid_hash(hash) {
            return Err(bad_hash());
        }
        Ok(ObjectPath::from(format!(
            "{}/{}/{hash}",
            &hash[..2],
            &hash[2..4]
        )))
    }

    /// The folders (common prefixes) directly under `prefix`, by name, in order.
    async fn folders(&self, prefix: Option<&ObjectPath>) -> io::Result<Vec<String>> {
        let listed = self
            .store
            .list_with_delimiter(prefix)
            .await
            .map_err(io_error)?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }
}

impl ChunkStore for ObjectChunkStore {
    fn put<'a>(&'a self, hash: &'a str, data: Vec<u8>) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let key = ObjectChunkStore::key(hash)?;
            self.store.put(&key, data.into()).await.map_err(io_error)?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, io::Result<Vec<u8>>> {
        Box::pin(async move {
            let key = ObjectChunkStore::key(hash)?;
            let got = self.store.get(&key).await.map_err(io_error)?;
            Ok(got.bytes().await.map_err(io_error)?.to_vec())
        })
    }

    fn delete<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let key = ObjectChunkStore::key(hash)?;
            match self.store.delete(&key).await {
                Err(object_store::Error::NotFound { .. }) | Ok(()) => Ok(()),
                Err(err) => Err(io_error(err)),
            }
        })
    }

    fn list<'a>(
        &'a self,
        after: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, io::Result<Vec<StoredChunk>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for first in self.folders(None).await? {
                if first.len() != 2 || !folder_reaches(after, "", &first) {
                    continue;
                }
                let first_path = ObjectPath::from(first.as_str());
                for second in self.folders(Some(&first_path)).await? {
                    if second.len() != 2 || !folder_reaches(after, &first, &second) {
                        continue;
                    }
                    let leaf = ObjectPath::from(format!("{first}/{second}"));
                    let mut objects = self.store.list(Some(&leaf));
                    let mut here = Vec::new();
                    while let Some(meta) = objects.next().await {
                        let meta = meta.map_err(io_error)?;
                        let Some(hash) = meta.location.filename() else {
                            continue;
                        };
                        if !valid_hash(hash) || hash <= after {
                            continue;
                        }
                        here.push(StoredChunk {
                            hash: hash.to_owned(),
                            size: meta.size,
                            modified_ms: meta.last_modified.timestamp_millis(),
                        });
                    }
                    here.sort_by(|a, b| a.hash.cmp(&b.hash));
                    out.extend(here);
                    if out.len() >= limit {
                        out.truncate(limit);
                        return Ok(out);
                    }
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::Objects;
    use meridian_shared::drive::chunking::chunk_hash;

    /// What every implementation does (the module's invariants).
    async fn conformance(store: &dyn ChunkStore) {
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
        for bad in ["../../etc/passwd", "", "ab/cd", &hash[..10]] {
            assert!(store.get(bad).await.is_err(), "{bad:?}");
            assert!(store.put(bad, vec![1]).await.is_err(), "{bad:?}");
            assert!(store.delete(bad).await.is_err(), "{bad:?}");
        }

        // Listing: hash order, in pages that resume after the last hash.
        let before = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let mut all: Vec<(String, u64)> = (0..40u32)
            .map(|i| {
                let data = vec![i as u8; i as usize + 1];
                (chunk_hash(&data), data.len() as u64)
            })
            .collect();
        for (i, (hash, _)) in all.iter().enumerate() {
            store.put(hash, vec![i as u8; i + 1]).await.unwrap();
        }
        all.sort();
        let listed = store.list("", 1000).await.unwrap();
        let got: Vec<(String, u64)> = listed.iter().map(|c| (c.hash.clone(), c.size)).collect();
        assert_eq!(got, all);
        // The store's clock, not ours: allow it a second of difference.
        assert!(listed.iter().all(|c| c.modified_ms >= before - 1000));
        for limit in [1, 3, 7] {
            let mut after = String::new();
            let mut paged = Vec::new();
            loop {
                let page = store.list(&after, limit).await.unwrap();
                assert!(page.len() <= limit);
                paged.extend(page.iter().map(|c| c.hash.clone()));
                if page.len() < limit {
                    break;
                }
                after = page.last().unwrap().hash.clone();
            }
            let expected: Vec<String> = all.iter().map(|(h, _)| h.clone()).collect();
            assert_eq!(paged, expected, "pages of {limit}");
        }
        // After a hash that is not stored, from the next one.
        let middle = &all[20].0;
        let mut between = middle.clone();
        between.push('0');
        assert_eq!(store.list(&between, 1).await.unwrap()[0].hash, all[21].0);
        for (hash, _) in &all {
            store.delete(hash).await.unwrap();
        }
        assert!(store.list("", 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_local_directory_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalChunkStore::new(dir.path().join("chunks"));
        assert!(store.list("", 10).await.unwrap().is_empty());
        conformance(&store).await;
    }

    #[tokio::test]
    async fn object_storage_in_memory_conforms() {
        let objects = Objects::in_memory();
        conformance(&ObjectChunkStore::new(objects.under("drive/chunks"))).await;
    }

    #[tokio::test]
    async fn object_storage_on_the_local_file_system_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::open(&format!("file://{}", dir.path().display())).unwrap();
        let store = ObjectChunkStore::new(objects.under("drive/chunks"));
        assert!(store.list("", 10).await.unwrap().is_empty());
        conformance(&store).await;
    }
}
