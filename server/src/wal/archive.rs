//! The archive in object storage (`meridian wal-node --archive URL`): a background task
//! of the node copies every segment that lands in `<data_dir>/archive/` (purged from the
//! log while a kept checkpoint needs it, see `log::purge_to`) to
//! `wal/node-<id>/archive/<segment>` in the object store; `meridian wal recover
//! --archive URL --node ID` fetches them back into a temporary directory and replays
//! them beside the local ones (`recover::committed_state_at_with`).
//!
//! Invariants:
//! - A segment is in `archive/` only once whole and synced (it is renamed there), and is
//!   never written again: an object of the same name and size is that segment, so a copy
//!   is made once, and again only if a size differs (an upload cut short cannot be: a PUT
//!   is atomic).
//! - The log never waits for the object store: the copy runs every [`UPLOAD_EVERY`], and
//!   whatever a pass misses (the store down, the node stopped) the next one sends. A
//!   segment the node deletes from `archive/` (no kept checkpoint needs it any more)
//!   before a pass has copied it is not copied: the object store keeps at least what a
//!   node kept for longer than one interval. Nothing here deletes objects: how long the
//!   bucket keeps them is its lifecycle rule's business.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use tokio_util::sync::CancellationToken;

use super::disk::Disk;
use super::segment::{self, Layout};
use crate::objects::{io_error, ObjectPath, ObjectStore, ObjectStoreExt, Objects};

/// How often the node copies new archived segments.
pub const UPLOAD_EVERY: Duration = Duration::from_secs(2);

/// Where node `id`'s archived segments live in the object store.
pub fn node_prefix(id: u64) -> String {
    format!("wal/node-{id}/archive")
}

/// The archive of node `id` in `objects`.
pub fn node_archive(objects: &Objects, id: u64) -> Arc<dyn ObjectStore> {
    objects.under(&node_prefix(id))
}

/// Segments in `store` (directly under it): name → size.
async fn stored(store: &dyn ObjectStore) -> io::Result<BTreeMap<String, u64>> {
    let listed: Vec<_> = store.list(None).try_collect().await.map_err(io_error)?;
    Ok(listed
        .into_iter()
        .filter(|meta| meta.location.parts().count() == 1)
        .filter_map(|meta| {
            let name = meta.location.filename()?.to_owned();
            segment::parse_name(&name)?;
            Some((name, meta.size))
        })
        .collect())
}

/// Copies the segments of the log at `dir`'s `archive/` that `store` lacks; answers how
/// many it copied.
pub async fn upload_new(
    disk: Arc<dyn Disk>,
    dir: &Path,
    store: &dyn ObjectStore,
) -> io::Result<usize> {
    let archive = Layout::new(dir).archive_dir();
    let names = {
        let (disk, archive) = (disk.clone(), archive.clone());
        tokio::task::spawn_blocking(move || match disk.list(&archive) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            other => other,
        })
        .await
        .map_err(io::Error::other)??
    };
    let there = stored(store).await?;
    let mut copied = 0;
    for first in segment::segments_in(&names) {
        let name = segment::file_name(first);
        let path = archive.join(&name);
        let disk = disk.clone();
        let stored_len = there.get(&name).copied();
        // Reads a segment (64 MiB) only when the store lacks it, not on every pass.
        let read = tokio::task::spawn_blocking(move || {
            if stored_len.is_some() && disk.len(&path).ok() == stored_len {
                return Ok(None);
            }
            disk.read_all(&path).map(Some)
        })
        .await
        .map_err(io::Error::other)?;
        let bytes = match read {
            Ok(Some(bytes)) => bytes,
            Ok(None) => continue,
            // No kept checkpoint needs it any more: the node deleted it meanwhile.
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        store
            .put(&ObjectPath::from(name.as_str()), bytes.into())
            .await
            .map_err(io_error)?;
        copied += 1;
    }
    Ok(copied)
}

/// Copies the archived segments of the log at `dir` to `store` every [`UPLOAD_EVERY`]
/// until `stop`, then once more.
pub fn spawn_uploader(
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    store: Arc<dyn ObjectStore>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPLOAD_EVERY);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                () = stop.cancelled() => true,
            };
            match upload_new(disk.clone(), &dir, store.as_ref()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(segments = n, "archived segments copied"),
                Err(err) => tracing::warn!(%err, "cannot copy archived segments yet"),
            }
            if stopping {
                break;
            }
        }
    })
}

/// Writes every archived segment in `store` into the directory `into` on `disk`;
/// answers how many.
pub async fn download(store: &dyn ObjectStore, disk: &dyn Disk, into: &Path) -> io::Result<usize> {
    disk.create_dir_all(into)?;
    let there = stored(store).await?;
    for name in there.keys() {
        let bytes = store
            .get(&ObjectPath::from(name.as_str()))
            .await
            .map_err(io_error)?
            .bytes()
            .await
            .map_err(io_error)?;
        let path = into.join(name);
        disk.create(&path)?;
        disk.write_at(&path, 0, &bytes)?;
        disk.sync(&path)?;
    }
    Ok(there.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::SimDisk;

    #[tokio::test]
    async fn archived_segments_are_copied_once_and_come_back_whole() {
        let disk = SimDisk::new();
        let dir = Path::new("/node");
        let archive = Layout::new(dir).archive_dir();
        let objects = Objects::in_memory();
        let store = node_archive(&objects, 3);
        // No archive yet: nothing to do.
        assert_eq!(
            upload_new(Arc::new(disk.clone()), dir, store.as_ref())
                .await
                .unwrap(),
            0
        );
        disk.create_dir_all(&archive).unwrap();
        for (first, fill) in [(1u64, b'a'), (50, b'b')] {
            let path = archive.join(segment::file_name(first));
            disk.create(&path).unwrap();
            disk.write_at(&path, 0, &vec![fill; 100 + first as usize])
                .unwrap();
            disk.sync(&path).unwrap();
        }
        // Not a segment: left alone.
        disk.create(&archive.join("notes.txt")).unwrap();
        let disk: Arc<dyn Disk> = Arc::new(disk);
        assert_eq!(
            upload_new(disk.clone(), dir, store.as_ref()).await.unwrap(),
            2
        );
        assert_eq!(
            upload_new(disk.clone(), dir, store.as_ref()).await.unwrap(),
            0
        );
        // Another node's archive is apart.
        assert!(stored(node_archive(&objects, 4).as_ref())
            .await
            .unwrap()
            .is_empty());

        let fetched = SimDisk::new();
        let into = Path::new("/fetched");
        assert_eq!(download(store.as_ref(), &fetched, into).await.unwrap(), 2);
        let mut names = fetched.list(into).unwrap();
        names.sort();
        assert_eq!(names, vec![segment::file_name(1), segment::file_name(50)]);
        for name in names {
            assert_eq!(
                fetched.read_all(&into.join(&name)).unwrap(),
                disk.read_all(&archive.join(&name)).unwrap()
            );
        }
    }
}
