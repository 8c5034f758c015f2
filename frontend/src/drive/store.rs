//! The drive page's IndexedDB (`meridian-drive`): `files` caches text files as last read
//! (readable offline), `saves` queues saves made offline until they are sent.
//!
//! Invariant: a queued save is removed only after the server committed it (as a new
//! version, or as a conflicted copy when its base was stale); one save per file waits at
//! a time, the latest text.

use serde::{Deserialize, Serialize};

use crate::store::idb::{Database, IdbError};

const DB_NAME: &str = "meridian-drive";
const FILES: &str = "files";
const SAVES: &str = "saves";

/// A text file as last read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedFile {
    pub node_id: String,
    pub version_id: Option<String>,
    pub text: String,
}

/// A save waiting for the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSave {
    pub node_id: String,
    pub base_version: Option<String>,
    pub text: String,
}

async fn open() -> Result<Database, IdbError> {
    Database::open(DB_NAME, 1, &[FILES, SAVES]).await
}

pub async fn cache_file(file: &CachedFile) -> Result<(), IdbError> {
    let json = serde_json::to_string(file).map_err(|e| IdbError(e.to_string()))?;
    open().await?.put(FILES, &file.node_id, &json).await
}

pub async fn cached_file(node_id: &str) -> Result<Option<CachedFile>, IdbError> {
    let all = open().await?.get_all(FILES).await?;
    Ok(all
        .iter()
        .filter_map(|json| serde_json::from_str::<CachedFile>(json).ok())
        .find(|file| file.node_id == node_id))
}

pub async fn queue_save(save: &PendingSave) -> Result<(), IdbError> {
    let json = serde_json::to_string(save).map_err(|e| IdbError(e.to_string()))?;
    open().await?.put(SAVES, &save.node_id, &json).await
}

pub async fn pending_saves() -> Result<Vec<PendingSave>, IdbError> {
    let all = open().await?.get_all(SAVES).await?;
    Ok(all
        .iter()
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect())
}

pub async fn save_sent(node_id: &str) -> Result<(), IdbError> {
    open().await?.delete(SAVES, node_id).await
}
