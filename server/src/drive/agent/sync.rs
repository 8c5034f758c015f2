//! One sync pass: fetch the remote changes, compare the local folder with the synced
//! tree and push what changed locally (the server resolves conflicts), fetch again, then
//! bring the local folder to the remote tree wherever the local side did not change.
//!
//! Invariants:
//! - Local content is never overwritten or removed unless it is what was last synced
//!   (same size and modification time, or same content): a local edit is always uploaded
//!   first, and the server keeps it (a new version, a conflicted copy, or a restore).
//! - A local delete never beats a remote edit: deletes name the version they saw
//!   (`if_version`), and a file edited remotely comes back.
//! - Downloads go to a temporary file in the agent's folder, are checked against the
//!   content id, and are renamed into place: a crash never leaves half a file.
//! - The state is saved after every operation (see `state`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use meridian_shared::drive::names::{conflict_name, name_key, validate_name, AGENT_DIR};
use meridian_shared::drive::{CommitOutcome, Committed, NewUpload, NodeKind};
use reqwest::StatusCode;

use super::api::{manifest_of_file, Api, Uploaded};
use super::state::{AgentState, Synced};
use super::AgentError;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub uploaded: usize,
    /// Chunks the server lacked, sent whole or as deltas.
    pub chunks_sent: usize,
    /// Of those, the ones sent as deltas against the file's previous version.
    pub deltas_sent: usize,
    pub downloaded: usize,
    pub moved: usize,
    pub deleted_remote: usize,
    pub deleted_local: usize,
    pub conflicts: usize,
    pub folders_created: usize,
}

impl PassReport {
    pub fn changed_anything(&self) -> bool {
        *self != PassReport::default()
    }

    fn record(&mut self, uploaded: &Uploaded) {
        self.uploaded += 1;
        self.chunks_sent += uploaded.chunks_sent;
        self.deltas_sent += uploaded.deltas_sent;
    }
}

/// A local file or folder as scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LocalEntry {
    kind: NodeKind,
    size: u64,
    mtime_ns: i128,
}

fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    (now_ns() / 1_000_000) as i64
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn entry_of(meta: &std::fs::Metadata) -> LocalEntry {
    LocalEntry {
        kind: if meta.is_dir() {
            NodeKind::Folder
        } else {
            NodeKind::File
        },
        size: if meta.is_dir() { 0 } else { meta.len() },
        mtime_ns: mtime_ns(meta),
    }
}

/// Every file and folder under `root` (relative paths), but the agent's own folder,
/// symbolic links and names the drive refuses (logged).
fn scan(root: &Path) -> Result<BTreeMap<PathBuf, LocalEntry>, AgentError> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let entries = match std::fs::read_dir(root.join(&rel)) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err.into()),
        };
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(path = ?entry.path(), "skipped: the name is not UTF-8");
                continue;
            };
            if rel.as_os_str().is_empty() && name_key(&name) == AGENT_DIR {
                continue;
            }
            if validate_name(&name).is_err() {
                tracing::warn!(path = ?entry.path(), "skipped: a name the drive refuses");
                continue;
            }
            let meta = match std::fs::symlink_metadata(entry.path()) {
                Ok(meta) => meta,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err.into()),
            };
            if meta.file_type().is_symlink() || !(meta.is_dir() || meta.is_file()) {
                continue;
            }
            let path = rel.join(&name);
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.insert(path, entry_of(&meta));
        }
    }
    Ok(out)
}

/// Keeps a folder in step with a drive.
pub struct Syncer {
    api: Api,
    root: PathBuf,
    device: String,
    pub state: AgentState,
    /// Fault injection for the simulation: fail (as if killed) instead of the n-th
    /// save from now, after the operation it would have recorded.
    crash_after_saves: Option<usize>,
}

impl Syncer {
    pub fn new(api: Api, root: PathBuf, device: String, state: AgentState) -> Syncer {
        Syncer {
            api,
            root,
            device,
            state,
            crash_after_saves: None,
        }
    }

    /// Makes the n-th save from now fail as a crash would (see the field).
    pub fn crash_after_saves(&mut self, saves: usize) {
        self.crash_after_saves = Some(saves);
    }

    /// One whole pass (see the module).
    pub async fn pass(&mut self) -> Result<PassReport, AgentError> {
        let mut report = PassReport::default();
        self.pull().await?;
        // A push that renamed a local folder (a name clash) scans again, so that what is
        // inside goes up in this pass under the folder's new name.
        for _ in 0..4 {
            let local = scan(&self.root)?;
            if !self.push(&local, &mut report).await? {
                break;
            }
        }
        self.pull().await?;
        self.materialize(&mut report).await?;
        self.save()?;
        self.state.prune_manifests(&self.root)?;
        Ok(report)
    }

    fn save(&mut self) -> Result<(), AgentError> {
        match self.crash_after_saves {
            Some(0) => return Err(AgentError::Crashed),
            Some(n) => self.crash_after_saves = Some(n - 1),
            None => {}
        }
        self.state.save(&self.root)
    }

    async fn pull(&mut self) -> Result<(), AgentError> {
        loop {
            let changes = match self.api.changes(self.state.cursor).await {
                Err(AgentError::Refused(r)) if r.is(StatusCode::GONE, "cursor_expired") => {
                    // Deletions this cursor missed were purged from the trash: list the
                    // drive again; what is not listed any more counts as deleted there.
                    self.state.remote.clear();
                    self.state.cursor = 0;
                    continue;
                }
                other => other?,
            };
            for node in changes.nodes {
                self.state.remote.insert(node.id.clone(), node);
            }
            self.state.cursor = changes.cursor;
            if !changes.more {
                return Ok(());
            }
        }
    }

    /// True when the local file is what was last synced.
    /// When the content proves it unchanged, its size and time are recorded again, so
    /// that once they are old enough to trust the file is not read on every pass.
    async fn unchanged(&mut self, path: &Path, id: &str) -> Result<bool, AgentError> {
        let Some(synced) = self.state.synced.get(id).cloned() else {
            return Ok(false);
        };
        let meta = match std::fs::metadata(self.root.join(path)) {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => return Ok(false),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(err.into()),
        };
        if synced.same_metadata(meta.len(), mtime_ns(&meta)) {
            return Ok(true);
        }
        let (_, content_id) = manifest_of_file(&self.root.join(path)).await?;
        let same = Some(content_id) == synced.content_id;
        if same {
            let entry = self.state.synced.get_mut(id).expect("checked above");
            entry.size = meta.len();
            entry.mtime_ns = mtime_ns(&meta);
            entry.recorded_ns = now_ns();
        }
        Ok(same)
    }

    /// The remote parent of a local path: `Some(None)` at the top, `None` if unknown.
    fn parent_of(
        &self,
        path: &Path,
        by_path: &BTreeMap<PathBuf, String>,
    ) -> Option<Option<String>> {
        match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => {
                by_path.get(parent).cloned().map(Some)
            }
            _ => Some(None),
        }
    }

    fn synced_entry(
        &self,
        parent_id: Option<String>,
        name: &str,
        kind: NodeKind,
        local: LocalEntry,
        version: Option<(String, String)>,
    ) -> Synced {
        let (version_id, content_id) = version.unzip();
        Synced {
            parent_id,
            name: name.to_owned(),
            kind,
            version_id,
            content_id,
            size: local.size,
            mtime_ns: local.mtime_ns,
            recorded_ns: now_ns(),
        }
    }

    /// Pushes local changes; answers whether it renamed a local folder (scan again).
    async fn push(
        &mut self,
        local: &BTreeMap<PathBuf, LocalEntry>,
        report: &mut PassReport,
    ) -> Result<bool, AgentError> {
        let mut by_path = self.state.synced_by_path();
        let mut gone = Vec::new();
        let mut edited = Vec::new();
        for (path, id) in &by_path {
            let synced = &self.state.synced[id];
            match local.get(path) {
                Some(entry) if entry.kind == synced.kind => {
                    if synced.kind == NodeKind::File && !self.unchanged(path, id).await? {
                        edited.push((id.clone(), path.clone()));
                    }
                }
                _ => gone.push(id.clone()),
            }
        }
        let mut new_paths: Vec<PathBuf> = local
            .keys()
            .filter(|p| !by_path.contains_key(*p))
            .cloned()
            .collect();

        // New folders, parents first (paths sort so).
        for path in new_paths.clone() {
            if local[&path].kind != NodeKind::Folder {
                continue;
            }
            let Some(parent) = self.parent_of(&path, &by_path) else {
                continue;
            };
            let name = file_name(&path);
            let node = match self.api.create_folder(parent.as_deref(), &name).await {
                Ok(node) => node,
                Err(AgentError::Refused(r)) if r.is(StatusCode::CONFLICT, "node_deleted") => {
                    self.api
                        .restore(parent.as_deref().unwrap_or_default())
                        .await?;
                    self.api.create_folder(parent.as_deref(), &name).await?
                }
                Err(AgentError::Refused(r)) if r.is(StatusCode::CONFLICT, "name_taken") => {
                    // Created elsewhere too: the same folder.
                    self.pull().await?;
                    let key = name_key(&name);
                    let existing = self
                        .state
                        .remote
                        .values()
                        .find(|n| !n.deleted && n.parent_id == parent && name_key(&n.name) == key)
                        .cloned();
                    match existing {
                        Some(folder)
                            if folder.kind == NodeKind::Folder
                                && !self.state.synced.contains_key(&folder.id) =>
                        {
                            folder
                        }
                        _ => {
                            // Another folder here has this name but for case or Unicode
                            // form (or a file has it): this one becomes a conflicted copy.
                            let copy = conflict_name(&name, &self.device, now_ms());
                            let copy_path = path.with_file_name(&copy);
                            if self.root.join(&copy_path).exists() {
                                continue;
                            }
                            std::fs::rename(self.root.join(&path), self.root.join(&copy_path))?;
                            report.conflicts += 1;
                            return Ok(true);
                        }
                    }
                }
                Err(err) => return Err(err),
            };
            report.folders_created += 1;
            self.state.remote.insert(node.id.clone(), node.clone());
            let entry = self.synced_entry(parent, &name, NodeKind::Folder, local[&path], None);
            self.state.synced.insert(node.id.clone(), entry);
            by_path.insert(path.clone(), node.id);
            new_paths.retain(|p| p != &path);
            self.save()?;
        }

        // Moves and renames: a file gone from one path and new at another with its content.
        let mut content_of_new: HashMap<PathBuf, String> = HashMap::new();
        for id in gone.clone() {
            let synced = self.state.synced[&id].clone();
            if synced.kind != NodeKind::File {
                continue;
            }
            let mut found = None;
            for path in &new_paths {
                let entry = local[path];
                if entry.kind != NodeKind::File || entry.size != synced.size {
                    continue;
                }
                if !content_of_new.contains_key(path) {
                    let (_, content) = manifest_of_file(&self.root.join(path)).await?;
                    content_of_new.insert(path.clone(), content);
                }
                if Some(&content_of_new[path]) == synced.content_id.as_ref() {
                    found = Some(path.clone());
                    break;
                }
            }
            let Some(path) = found else { continue };
            let Some(parent) = self.parent_of(&path, &by_path) else {
                continue;
            };
            let name = file_name(&path);
            match self.api.move_node(&id, parent.as_deref(), &name).await {
                Ok(node) => {
                    self.state.remote.insert(node.id.clone(), node);
                    let version = synced.version_id.clone().zip(synced.content_id.clone());
                    let entry =
                        self.synced_entry(parent, &name, NodeKind::File, local[&path], version);
                    self.state.synced.insert(id.clone(), entry);
                    by_path.insert(path.clone(), id.clone());
                    gone.retain(|g| g != &id);
                    new_paths.retain(|p| p != &path);
                    report.moved += 1;
                    self.save()?;
                }
                Err(AgentError::Refused(r)) => {
                    tracing::info!(?r, "move refused: uploading instead");
                }
                Err(err) => return Err(err),
            }
        }

        // New files.
        for path in new_paths {
            if local[&path].kind != NodeKind::File {
                continue;
            }
            let Some(parent) = self.parent_of(&path, &by_path) else {
                continue;
            };
            let name = file_name(&path);
            let target = NewUpload {
                node_id: None,
                base_version: None,
                parent_id: parent.clone(),
                name: Some(name.clone()),
                device: self.device.clone(),
                chunks: Vec::new(),
                chunk_edits: None,
                signatures: false,
            };
            let result = match self
                .api
                .upload(&self.root.join(&path), target.clone(), None)
                .await
            {
                Err(AgentError::Refused(r)) if r.is(StatusCode::CONFLICT, "node_deleted") => {
                    self.api
                        .restore(parent.as_deref().unwrap_or_default())
                        .await?;
                    self.api.upload(&self.root.join(&path), target, None).await
                }
                other => other,
            };
            let uploaded = result?;
            report.record(&uploaded);
            AgentState::save_manifest(
                &self.root,
                &uploaded.committed.version.content_id,
                &uploaded.chunks,
            )?;
            self.adopt_commit(
                &path,
                parent,
                local[&path],
                uploaded.committed,
                None,
                report,
            )?;
        }

        // Edits.
        for (id, path) in edited {
            let synced = self.state.synced[&id].clone();
            let target = NewUpload {
                node_id: Some(id.clone()),
                base_version: synced.version_id.clone(),
                parent_id: None,
                name: None,
                device: self.device.clone(),
                chunks: Vec::new(),
                chunk_edits: None,
                signatures: false,
            };
            let Ok(meta) = std::fs::metadata(self.root.join(&path)) else {
                continue;
            };
            let base = synced
                .content_id
                .as_deref()
                .and_then(|id| AgentState::manifest(&self.root, id));
            let uploaded = match self
                .api
                .upload(&self.root.join(&path), target, base.as_deref())
                .await
            {
                Err(AgentError::Refused(r)) if r.is(StatusCode::NOT_FOUND, "node_not_found") => {
                    // Purged from the trash meanwhile: forgotten here, the edit is
                    // uploaded as a new file by the next pass.
                    self.state.synced.remove(&id);
                    self.save()?;
                    continue;
                }
                other => other?,
            };
            report.record(&uploaded);
            AgentState::save_manifest(
                &self.root,
                &uploaded.committed.version.content_id,
                &uploaded.chunks,
            )?;
            let parent = synced.parent_id.clone();
            self.adopt_commit(
                &path,
                parent,
                entry_of(&meta),
                uploaded.committed,
                Some(id),
                report,
            )?;
        }

        // Deletes: deepest first, so files go before their folders.
        gone.sort_by_key(|id| {
            std::cmp::Reverse(
                self.state
                    .synced_path(id)
                    .map_or(0, |p| p.components().count()),
            )
        });
        for id in gone {
            let Some(synced) = self.state.synced.get(&id).cloned() else {
                continue;
            };
            let remote = self.state.remote.get(&id).cloned();
            let remote_live = remote.as_ref().is_some_and(|n| !n.deleted);
            if synced.kind == NodeKind::File {
                if remote_live
                    && remote.as_ref().and_then(|n| n.version_id.clone()) != synced.version_id
                {
                    // Edited elsewhere: the edit survives and comes back here.
                    self.state.synced.remove(&id);
                    self.save()?;
                    continue;
                }
                match self.api.delete(&id, synced.version_id.as_deref()).await {
                    Ok(()) => report.deleted_remote += 1,
                    Err(AgentError::Refused(r)) if r.status == 404 || r.status == 409 => {}
                    Err(err) => return Err(err),
                }
            } else {
                let holds_unsynced = self.state.remote.values().any(|n| {
                    !n.deleted
                        && n.parent_id.as_deref() == Some(id.as_str())
                        && !self.state.synced.contains_key(&n.id)
                });
                let holds_synced = self
                    .state
                    .synced
                    .values()
                    .any(|s| s.parent_id.as_deref() == Some(id.as_str()));
                if !holds_unsynced && !holds_synced {
                    match self.api.delete(&id, None).await {
                        Ok(()) => report.deleted_remote += 1,
                        Err(AgentError::Refused(r)) if r.status == 404 => {}
                        Err(err) => return Err(err),
                    }
                }
            }
            self.state.synced.remove(&id);
            self.save()?;
        }
        Ok(false)
    }

    /// Records where an upload landed; a conflicted copy is renamed locally to its name,
    /// and the file it conflicted with comes back at its own name.
    fn adopt_commit(
        &mut self,
        path: &Path,
        parent: Option<String>,
        local: LocalEntry,
        committed: Committed,
        original: Option<String>,
        report: &mut PassReport,
    ) -> Result<(), AgentError> {
        let node = committed.node;
        let mut name = file_name(path);
        let tracked_elsewhere = original.as_deref() != Some(node.id.as_str())
            && self.state.synced.contains_key(&node.id)
            && self.state.synced_path(&node.id).as_deref() != Some(path);
        if committed.outcome == CommitOutcome::Unchanged && tracked_elsewhere {
            // Same content as a file this folder already holds under a name differing
            // only in case or form: keep this one as a conflicted copy (uploaded next pass).
            let copy_path = path.with_file_name(conflict_name(&name, &self.device, now_ms()));
            if !self.root.join(&copy_path).exists() {
                std::fs::rename(self.root.join(path), self.root.join(&copy_path))?;
                report.conflicts += 1;
            }
            return Ok(());
        }
        if committed.outcome == CommitOutcome::ConflictCopy {
            report.conflicts += 1;
            let copy_path = path.with_file_name(&node.name);
            if !self.root.join(&copy_path).exists() {
                std::fs::rename(self.root.join(path), self.root.join(&copy_path))?;
                name = node.name.clone();
            }
            if let Some(original) = original {
                self.state.synced.remove(&original);
            }
        }
        let version = Some((
            committed.version.id.clone(),
            committed.version.content_id.clone(),
        ));
        let entry = self.synced_entry(parent, &name, NodeKind::File, local, version);
        self.state.synced.insert(node.id.clone(), entry);
        self.state.remote.insert(node.id.clone(), node);
        self.save()
    }

    async fn materialize(&mut self, report: &mut PassReport) -> Result<(), AgentError> {
        let mut live: Vec<(usize, String)> = self
            .state
            .remote
            .keys()
            .filter(|id| self.state.remote_path(id).is_some())
            .map(|id| (self.state.remote_depth(id), id.clone()))
            .collect();
        live.sort();
        for (_, id) in live {
            let node = self.state.remote[&id].clone();
            let Some(want) = self.state.remote_path(&id) else {
                continue;
            };
            let abs_want = self.root.join(&want);
            if let Some(synced) = self.state.synced.get(&id).cloned() {
                let Some(have) = self.state.synced_path(&id) else {
                    self.state.synced.remove(&id);
                    continue;
                };
                if have != want {
                    let abs_have = self.root.join(&have);
                    let parent_ready = abs_want.parent().is_some_and(Path::is_dir);
                    if !abs_have.exists() || abs_want.exists() || !parent_ready {
                        continue;
                    }
                    std::fs::rename(&abs_have, &abs_want)?;
                    let entry = self.state.synced.get_mut(&id).expect("synced");
                    entry.parent_id = node.parent_id.clone();
                    entry.name = node.name.clone();
                    report.moved += 1;
                    self.save()?;
                }
                if node.kind == NodeKind::File
                    && node.version_id != synced.version_id
                    && (!abs_want.exists() || self.unchanged(&want, &id).await?)
                {
                    self.download(&node, &want).await?;
                    report.downloaded += 1;
                }
                continue;
            }
            match node.kind {
                NodeKind::Folder => {
                    if abs_want.exists() && !abs_want.is_dir() {
                        continue;
                    }
                    if !abs_want.parent().is_some_and(Path::is_dir) {
                        continue;
                    }
                    if !abs_want.exists() {
                        std::fs::create_dir(&abs_want)?;
                    }
                    let meta = std::fs::metadata(&abs_want)?;
                    let entry = self.synced_entry(
                        node.parent_id.clone(),
                        &node.name,
                        NodeKind::Folder,
                        entry_of(&meta),
                        None,
                    );
                    self.state.synced.insert(id.clone(), entry);
                    self.save()?;
                }
                NodeKind::File => {
                    if abs_want.exists() {
                        // The same content already here (an earlier run's download).
                        if abs_want.is_file()
                            && Some(manifest_of_file(&abs_want).await?.1) == node.content_id
                        {
                            let meta = std::fs::metadata(&abs_want)?;
                            let version = node.version_id.clone().zip(node.content_id.clone());
                            let entry = self.synced_entry(
                                node.parent_id.clone(),
                                &node.name,
                                NodeKind::File,
                                entry_of(&meta),
                                version,
                            );
                            self.state.synced.insert(id.clone(), entry);
                            self.save()?;
                        }
                        continue;
                    }
                    if node.version_id.is_some() {
                        self.download(&node, &want).await?;
                        report.downloaded += 1;
                    }
                }
            }
        }

        // Deleted remotely (or under a deleted folder): remove what did not change here.
        let mut gone: Vec<(usize, String)> = self
            .state
            .synced
            .keys()
            .filter(|id| self.state.remote_path(id).is_none())
            .map(|id| {
                let depth = self
                    .state
                    .synced_path(id)
                    .map_or(0, |p| p.components().count());
                (depth, id.clone())
            })
            .collect();
        gone.sort_by(|a, b| b.cmp(a));
        for (_, id) in gone {
            let synced = self.state.synced[&id].clone();
            let Some(have) = self.state.synced_path(&id) else {
                self.state.synced.remove(&id);
                continue;
            };
            let abs = self.root.join(&have);
            match synced.kind {
                NodeKind::File => {
                    if !abs.exists() {
                        self.state.synced.remove(&id);
                    } else if self.unchanged(&have, &id).await? {
                        std::fs::remove_file(&abs)?;
                        self.state.synced.remove(&id);
                        report.deleted_local += 1;
                    }
                    // Else edited here: the next pass uploads it, which brings it back.
                }
                NodeKind::Folder => {
                    if !abs.exists() {
                        self.state.synced.remove(&id);
                    } else if std::fs::remove_dir(&abs).is_ok() {
                        self.state.synced.remove(&id);
                        report.deleted_local += 1;
                    }
                }
            }
            self.save()?;
        }
        Ok(())
    }

    /// Downloads a file's current version into place (through a checked temporary file).
    async fn download(
        &mut self,
        node: &meridian_shared::drive::Node,
        rel: &Path,
    ) -> Result<(), AgentError> {
        let (Some(version), Some(content)) = (&node.version_id, &node.content_id) else {
            return Ok(());
        };
        let tmp_dir = AgentState::dir(&self.root).join("downloads");
        std::fs::create_dir_all(&tmp_dir)?;
        let tmp = tmp_dir.join(format!("{}.part", node.id));
        let chunks = self.api.download(version, content, &tmp).await?;
        AgentState::save_manifest(&self.root, content, &chunks)?;
        let dest = self.root.join(rel);
        std::fs::rename(&tmp, &dest)?;
        let meta = std::fs::metadata(&dest)?;
        let entry = self.synced_entry(
            node.parent_id.clone(),
            &node.name,
            NodeKind::File,
            entry_of(&meta),
            Some((version.clone(), content.clone())),
        );
        self.state.synced.insert(node.id.clone(), entry);
        self.save()
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned()
}
