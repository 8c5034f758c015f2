//! File sync (`/api/drive`): the wire types, and the pure logic that the server, the
//! `meridian sync` agent and the browser share — content-defined chunking and chunk
//! addressing ([`chunking`]), names and conflicted copies ([`names`]), and what makes a
//! small edit travel small: chunk-list edits and rsync-style chunk deltas ([`delta`]).
//!
//! The model: a drive is a tree of nodes (files and folders) keyed by stable ids, never
//! by path, so a rename and an edit of one file both apply. A file's content is a version:
//! a manifest of SHA-256-addressed chunks. Every change to a drive takes the drive's next
//! sequence number; a node carries the number of its last change, and the change feed
//! (`GET /api/drive/changes?since=CURSOR`) answers the nodes changed after a cursor.

pub mod chunking;
pub mod delta;
pub mod names;

use serde::{Deserialize, Serialize};

/// A file or a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    File,
    Folder,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Folder => "folder",
        }
    }

    pub fn parse(text: &str) -> Option<NodeKind> {
        match text {
            "file" => Some(NodeKind::File),
            "folder" => Some(NodeKind::Folder),
            _ => None,
        }
    }
}

/// A node of a drive as it is now (deleted nodes stay, as tombstones, restorable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Node {
    pub id: String,
    /// The folder it is in; `null` at the top of the drive.
    pub parent_id: Option<String>,
    pub name: String,
    pub kind: NodeKind,
    /// The account whose drive this is.
    pub owner_id: String,
    pub deleted: bool,
    /// A file's current version (`null` for folders).
    pub version_id: Option<String>,
    /// A file's size in bytes.
    pub size: u64,
    /// The current version's manifest id (see `chunking::manifest_id`): equal ids, equal
    /// content.
    pub content_id: Option<String>,
    /// The drive's sequence number of this node's last change.
    pub seq: u64,
    pub updated_ms: i64,
}

/// One chunk of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChunkRef {
    /// SHA-256 of the chunk, 64 lowercase hex digits.
    pub hash: String,
    pub size: u64,
}

/// `POST /api/drive/uploads`: a version's manifest and where it goes. Either `node_id`
/// (a new version of that file, on `base_version`) or `name` (a new file in
/// `parent_id`, `null` for the top of the drive). The manifest is either `chunks`, the
/// whole list, or `chunk_edits`, the edits of `base_version`'s list (with `node_id` and
/// `base_version` only), never both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewUpload {
    #[serde(default)]
    pub node_id: Option<String>,
    /// The version this one was made from; a different current version makes the upload
    /// a conflicted copy. `null` for a new file.
    #[serde(default)]
    pub base_version: Option<String>,
    #[serde(default)]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// The device's name, shown in conflicted copies' names.
    pub device: String,
    /// The version's chunks in order (absent with `chunk_edits`; absent without it, the
    /// empty file).
    #[serde(default)]
    pub chunks: Vec<ChunkRef>,
    /// Instead of `chunks`: the edits that make this version's list of the base
    /// version's, sorted, not overlapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_edits: Option<Vec<delta::ChunkEdit>>,
    /// Answer, with the missing chunks, the base version's chunks they replace and their
    /// signatures, so that the changed chunks can travel as deltas.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub signatures: bool,
}

/// A missing chunk that may travel as a delta (`PUT
/// /api/drive/uploads/{id}/deltas/{hash}?base={base}`) against a chunk of the base
/// version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeltaBase {
    /// The missing chunk.
    pub hash: String,
    /// The base version's chunk that overlaps it most (by offset in the file).
    pub base: String,
    pub base_size: u64,
    /// The base chunk's signature in hex: per block of `delta::BLOCK` bytes, its weak
    /// checksum (u32, little-endian) and the first `delta::STRONG` bytes of its SHA-256.
    pub signature: String,
}

impl DeltaBase {
    /// The delta that rebuilds `chunk` from this base, if it is smaller than the chunk
    /// (and the offer is well formed).
    pub fn delta_of(&self, chunk: &[u8]) -> Option<Vec<u8>> {
        let signature = hex::decode(&self.signature).ok()?;
        let signature =
            delta::Signature::decode(&signature, usize::try_from(self.base_size).ok()?)?;
        let delta = delta::delta(&signature, chunk);
        (delta.len() < chunk.len()).then_some(delta)
    }
}

/// The state of an upload: the chunks the server still lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadStatus {
    pub upload_id: String,
    /// Hashes to `PUT /api/drive/uploads/{id}/chunks/{hash}`, each once.
    pub missing: Vec<String>,
    /// The size of the file.
    pub size: u64,
    /// Asked for with `signatures`: bases for (some of) the missing chunks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bases: Vec<DeltaBase>,
}

/// How a commit landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CommitOutcome {
    /// A new file.
    Created,
    /// A new version of the file, on its current version.
    Updated,
    /// The base was stale (or the name was taken): kept as a conflicted copy beside it.
    ConflictCopy,
    /// The file had been deleted: the edit brought it (and its folders) back.
    Restored,
    /// This content already was the current version: nothing changed.
    Unchanged,
}

/// The answer of `POST /api/drive/uploads/{id}/commit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Committed {
    pub outcome: CommitOutcome,
    /// The file the version belongs to (the conflicted copy, for `conflict_copy`).
    pub node: Node,
    pub version: VersionInfo,
}

/// One version of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionInfo {
    pub id: String,
    pub node_id: String,
    pub base_version: Option<String>,
    pub size: u64,
    pub content_id: String,
    pub device: String,
    pub created_ms: i64,
}

/// A version with its chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Manifest {
    pub version: VersionInfo,
    pub chunks: Vec<ChunkRef>,
}

/// A file's versions, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionList {
    pub versions: Vec<VersionInfo>,
}

/// The answer of the change feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Changes {
    /// Pass it as `since` next time.
    pub cursor: u64,
    /// Nodes changed after `since`, in change order, each as it is now.
    pub nodes: Vec<Node>,
    /// More changes wait: ask again at once.
    pub more: bool,
}

/// A folder's children, or the nodes of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeList {
    pub nodes: Vec<Node>,
}

/// `POST /api/drive/folders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewFolder {
    #[serde(default)]
    pub parent_id: Option<String>,
    pub name: String,
}

/// `PATCH /api/drive/nodes/{id}`: rename and/or move; the node's whole new place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MoveNode {
    /// The folder to be in; `null` for the top of the drive.
    pub parent_id: Option<String>,
    pub name: String,
}

/// What a share allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ShareMode {
    Read,
    Write,
}

impl ShareMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ShareMode::Read => "read",
            ShareMode::Write => "write",
        }
    }

    pub fn parse(text: &str) -> Option<ShareMode> {
        match text {
            "read" => Some(ShareMode::Read),
            "write" => Some(ShareMode::Write),
            _ => None,
        }
    }
}

/// `POST /api/drive/nodes/{id}/shares`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareFolder {
    pub username: String,
    pub mode: ShareMode,
}

/// Someone a folder is shared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Share {
    pub user_id: String,
    pub username: String,
    pub mode: ShareMode,
}

/// A folder's shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareList {
    pub shares: Vec<Share>,
}

/// A folder someone shared with you.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SharedFolder {
    pub node: Node,
    pub owner_username: String,
    pub mode: ShareMode,
}

/// The folders shared with you.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SharedList {
    pub folders: Vec<SharedFolder>,
}

/// The payload of the realtime event on `user:{id}` when a drive that account sees
/// changed: fetch the change feed (or the shared folder) again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriveChanged {
    /// Always `"drive"`: the `user:` topic carries other systems' events too.
    pub system: String,
    /// The owner of the drive that changed.
    pub drive: String,
    /// The drive's sequence number after the change.
    pub seq: u64,
}
