//! The agent's own state, in `<folder>/.meridian-sync/state.json`: the remote tree as
//! last fetched (with the change feed's cursor) and the synced tree — what both sides
//! agreed on after the last successful operation. A restart compares the local folder,
//! the remote tree and the synced tree (three ways), so nothing done before a crash is
//! redone wrongly or lost.
//!
//! Invariants:
//! - A synced entry is written only after the operation that made both sides agree
//!   succeeded (upload committed, download renamed into place, ...); the file is replaced
//!   atomically (write, fsync, rename), so a crash leaves the old state or the new one.
//! - An operation whose effect is not yet recorded is safe to redo: uploads of the same
//!   content commit as `unchanged`, downloads are verified and renamed into place.
//! - The chunk lists of synced versions are kept in `.meridian-sync/manifests/<content
//!   id>.json`, so that the next version of a file is uploaded as edits of its list and
//!   deltas of its chunks. A list is used only if it hashes to its content id; a missing
//!   one means a whole upload, never a wrong one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use meridian_shared::drive::chunking::manifest_id;
use meridian_shared::drive::names::AGENT_DIR;
use meridian_shared::drive::{ChunkRef, Node, NodeKind};
use serde::{Deserialize, Serialize};

use super::AgentError;

/// A node as both sides last agreed on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synced {
    pub parent_id: Option<String>,
    pub name: String,
    pub kind: NodeKind,
    pub version_id: Option<String>,
    pub content_id: Option<String>,
    /// The local file's size and modification time when it matched: a file with both
    /// unchanged is not read again.
    pub size: u64,
    pub mtime_ns: i128,
    /// When size and time were read: a time too close to it is not trusted (a file
    /// written again within the file system's timestamp granularity keeps its time).
    #[serde(default)]
    pub recorded_ns: i128,
}

impl Synced {
    /// True when `size` and `mtime_ns` prove the file unchanged without reading it.
    pub fn same_metadata(&self, size: u64, mtime_ns: i128) -> bool {
        const RACY_NS: i128 = 2_000_000_000;
        size == self.size && mtime_ns == self.mtime_ns && mtime_ns + RACY_NS < self.recorded_ns
    }
}

/// Everything the agent remembers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentState {
    pub server: String,
    pub username: String,
    /// The change feed's cursor of `remote`.
    pub cursor: u64,
    pub remote: BTreeMap<String, Node>,
    pub synced: BTreeMap<String, Synced>,
}

impl AgentState {
    pub fn dir(root: &Path) -> PathBuf {
        root.join(AGENT_DIR)
    }

    fn file(root: &Path) -> PathBuf {
        AgentState::dir(root).join("state.json")
    }

    /// The saved state, or a fresh one (also when it belongs to another server or
    /// account: then the folder is compared with the drive from scratch).
    pub fn load(root: &Path, server: &str, username: &str) -> Result<AgentState, AgentError> {
        let fresh = AgentState {
            server: server.to_owned(),
            username: username.to_owned(),
            ..AgentState::default()
        };
        match std::fs::read(AgentState::file(root)) {
            Ok(bytes) => {
                let state: AgentState =
                    serde_json::from_slice(&bytes).map_err(|e| AgentError::State(e.to_string()))?;
                Ok(if state.server == server && state.username == username {
                    state
                } else {
                    fresh
                })
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(fresh),
            Err(err) => Err(err.into()),
        }
    }

    /// Writes the state atomically.
    pub fn save(&self, root: &Path) -> Result<(), AgentError> {
        let dir = AgentState::dir(root);
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join("state.json.tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(self).map_err(|e| AgentError::State(e.to_string()))?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, AgentState::file(root))?;
        Ok(())
    }

    fn manifests(root: &Path) -> PathBuf {
        AgentState::dir(root).join("manifests")
    }

    /// Remembers the chunk list of synced content `content_id` (written atomically).
    pub fn save_manifest(
        root: &Path,
        content_id: &str,
        chunks: &[ChunkRef],
    ) -> Result<(), AgentError> {
        if manifest_id(chunks) != content_id {
            return Ok(());
        }
        let dir = AgentState::manifests(root);
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!("{content_id}.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_vec(chunks).map_err(|e| AgentError::State(e.to_string()))?,
        )?;
        std::fs::rename(&tmp, dir.join(format!("{content_id}.json")))?;
        Ok(())
    }

    /// The remembered chunk list of `content_id`, if there is one and it is intact.
    pub fn manifest(root: &Path, content_id: &str) -> Option<Vec<ChunkRef>> {
        let path = AgentState::manifests(root).join(format!("{content_id}.json"));
        let chunks: Vec<ChunkRef> = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        (manifest_id(&chunks) == content_id).then_some(chunks)
    }

    /// Forgets the chunk lists of content no synced file has any more.
    pub fn prune_manifests(&self, root: &Path) -> Result<(), AgentError> {
        let Ok(entries) = std::fs::read_dir(AgentState::manifests(root)) else {
            return Ok(());
        };
        let kept: std::collections::HashSet<String> = self
            .synced
            .values()
            .filter_map(|s| s.content_id.as_ref().map(|id| format!("{id}.json")))
            .collect();
        for entry in entries {
            let entry = entry?;
            if !kept.contains(entry.file_name().to_string_lossy().as_ref()) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// The path of a synced node, from the synced tree (None if its chain is broken).
    pub fn synced_path(&self, id: &str) -> Option<PathBuf> {
        let mut parts = Vec::new();
        let mut at = id;
        for _ in 0..=crate::drive::store::MAX_DEPTH {
            let entry = self.synced.get(at)?;
            parts.push(entry.name.as_str());
            match &entry.parent_id {
                Some(parent) => at = parent,
                None => return Some(parts.iter().rev().collect()),
            }
        }
        None
    }

    /// The path of a remote node if it and every folder above it are live.
    pub fn remote_path(&self, id: &str) -> Option<PathBuf> {
        let mut parts = Vec::new();
        let mut at = id;
        for _ in 0..=crate::drive::store::MAX_DEPTH {
            let node = self.remote.get(at)?;
            if node.deleted {
                return None;
            }
            parts.push(node.name.as_str());
            match &node.parent_id {
                Some(parent) => at = parent,
                None => return Some(parts.iter().rev().collect()),
            }
        }
        None
    }

    /// Depth of a remote node (0 at the top).
    pub fn remote_depth(&self, id: &str) -> usize {
        let mut depth = 0;
        let mut at = self.remote.get(id).and_then(|n| n.parent_id.clone());
        while let Some(parent) = at {
            depth += 1;
            if depth > crate::drive::store::MAX_DEPTH as usize {
                break;
            }
            at = self.remote.get(&parent).and_then(|n| n.parent_id.clone());
        }
        depth
    }

    /// Synced ids by their synced path.
    pub fn synced_by_path(&self) -> BTreeMap<PathBuf, String> {
        self.synced
            .keys()
            .filter_map(|id| Some((self.synced_path(id)?, id.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, parent: Option<&str>, name: &str, deleted: bool) -> Node {
        Node {
            id: id.into(),
            parent_id: parent.map(Into::into),
            name: name.into(),
            kind: NodeKind::Folder,
            owner_id: "u".into(),
            deleted,
            version_id: None,
            size: 0,
            content_id: None,
            seq: 1,
            updated_ms: 0,
        }
    }

    #[test]
    fn paths_follow_parents_and_stop_at_deleted_folders() {
        let mut state = AgentState::default();
        state.remote.insert("a".into(), node("a", None, "A", false));
        state
            .remote
            .insert("b".into(), node("b", Some("a"), "B", false));
        assert_eq!(state.remote_path("b"), Some(PathBuf::from("A/B")));
        assert_eq!(state.remote_depth("b"), 1);
        state.remote.get_mut("a").unwrap().deleted = true;
        assert_eq!(state.remote_path("b"), None);
        // A cycle in a corrupt state does not loop forever.
        state
            .remote
            .insert("c".into(), node("c", Some("d"), "C", false));
        state
            .remote
            .insert("d".into(), node("d", Some("c"), "D", false));
        assert_eq!(state.remote_path("c"), None);
    }

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile_dir();
        let mut state = AgentState::load(&dir, "http://s", "alice").unwrap();
        state.cursor = 7;
        state.save(&dir).unwrap();
        assert_eq!(
            AgentState::load(&dir, "http://s", "alice").unwrap().cursor,
            7
        );
        assert_eq!(
            AgentState::load(&dir, "http://other", "alice")
                .unwrap()
                .cursor,
            0
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("meridian-agent-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
