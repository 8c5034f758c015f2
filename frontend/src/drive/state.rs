//! The drive page's state: a pure reducer, unit-tested natively.

use std::rc::Rc;

use meridian_shared::drive::{Node, NodeKind, VersionInfo};
use yew::Reducible;

/// An upload in progress (or finished, until dismissed by the next listing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub key: u64,
    pub name: String,
    pub sent: u64,
    pub total: u64,
    pub done: bool,
}

/// A text file open in the editor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Editing {
    pub node: Node,
    pub text: String,
    /// Read from the offline cache (the server was out of reach).
    pub from_cache: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DriveState {
    /// The folders from the top to the open one: `(id, name)`.
    pub trail: Vec<(String, String)>,
    pub nodes: Vec<Node>,
    pub loading: bool,
    pub error: Option<String>,
    pub uploads: Vec<Upload>,
    pub versions: Option<(Node, Vec<VersionInfo>)>,
    pub editing: Option<Editing>,
    /// Saves waiting to be sent (made offline).
    pub pending_saves: usize,
    pub show_trash: bool,
}

impl DriveState {
    /// The open folder (`None` at the top of the drive).
    pub fn folder(&self) -> Option<&str> {
        self.trail.last().map(|(id, _)| id.as_str())
    }

    /// What the listing shows: live nodes, or the deleted ones in the trash view.
    pub fn shown(&self) -> Vec<&Node> {
        self.nodes
            .iter()
            .filter(|n| n.deleted == self.show_trash)
            .collect()
    }
}

pub enum DriveAction {
    Open {
        id: String,
        name: String,
    },
    /// Back to the trail's `n` first folders (0: the top).
    Up(usize),
    Loading,
    Listed(Vec<Node>),
    Failed(String),
    ClearError,
    UploadStarted {
        key: u64,
        name: String,
    },
    UploadProgress {
        key: u64,
        sent: u64,
        total: u64,
    },
    UploadDone {
        key: u64,
    },
    Versions(Node, Vec<VersionInfo>),
    CloseVersions,
    Edit(Editing),
    EditText(String),
    CloseEditor,
    PendingSaves(usize),
    ToggleTrash,
}

impl Reducible for DriveState {
    type Action = DriveAction;

    fn reduce(self: Rc<Self>, action: DriveAction) -> Rc<Self> {
        let mut next = (*self).clone();
        match action {
            DriveAction::Open { id, name } => {
                next.trail.push((id, name));
                next.nodes.clear();
                next.versions = None;
            }
            DriveAction::Up(n) => {
                next.trail.truncate(n);
                next.nodes.clear();
                next.versions = None;
            }
            DriveAction::Loading => next.loading = true,
            DriveAction::Listed(nodes) => {
                next.loading = false;
                next.nodes = nodes;
                next.uploads.retain(|u| !u.done);
            }
            DriveAction::Failed(message) => {
                next.loading = false;
                next.error = Some(message);
            }
            DriveAction::ClearError => next.error = None,
            DriveAction::UploadStarted { key, name } => next.uploads.push(Upload {
                key,
                name,
                sent: 0,
                total: 0,
                done: false,
            }),
            DriveAction::UploadProgress { key, sent, total } => {
                if let Some(u) = next.uploads.iter_mut().find(|u| u.key == key) {
                    u.sent = sent;
                    u.total = total;
                }
            }
            DriveAction::UploadDone { key } => {
                if let Some(u) = next.uploads.iter_mut().find(|u| u.key == key) {
                    u.done = true;
                }
            }
            DriveAction::Versions(node, versions) => next.versions = Some((node, versions)),
            DriveAction::CloseVersions => next.versions = None,
            DriveAction::Edit(editing) => next.editing = Some(editing),
            DriveAction::EditText(text) => {
                if let Some(editing) = next.editing.as_mut() {
                    editing.text = text;
                }
            }
            DriveAction::CloseEditor => next.editing = None,
            DriveAction::PendingSaves(n) => next.pending_saves = n,
            DriveAction::ToggleTrash => next.show_trash = !next.show_trash,
        }
        Rc::new(next)
    }
}

/// A conflicted copy, by its name (`name (conflicted copy, DEVICE, DATE TIME).ext`).
pub fn is_conflict_copy(name: &str) -> bool {
    name.contains(" (conflicted copy, ")
}

/// Whether the page opens a file in its text editor.
pub fn is_text(node: &Node) -> bool {
    node.kind == NodeKind::File
        && node.size <= 1024 * 1024
        && [".txt", ".md", ".csv", ".json", ".log"]
            .iter()
            .any(|ext| node.name.to_lowercase().ends_with(ext))
}

/// `1.5 MB`, `320 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{size:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, deleted: bool) -> Node {
        Node {
            id: name.into(),
            parent_id: None,
            name: name.into(),
            kind: NodeKind::File,
            owner_id: "u".into(),
            deleted,
            version_id: Some("v".into()),
            size: 3,
            content_id: None,
            seq: 1,
            updated_ms: 0,
        }
    }

    #[test]
    fn navigation_and_listing() {
        let state = Rc::new(DriveState::default());
        assert_eq!(state.folder(), None);
        let state = state.reduce(DriveAction::Open {
            id: "1".into(),
            name: "Docs".into(),
        });
        let state = state.reduce(DriveAction::Open {
            id: "2".into(),
            name: "Inner".into(),
        });
        assert_eq!(state.folder(), Some("2"));
        let state = state.reduce(DriveAction::Listed(vec![
            node("a.txt", false),
            node("b.txt", true),
        ]));
        assert_eq!(state.shown().len(), 1);
        let state = state.reduce(DriveAction::ToggleTrash);
        assert_eq!(state.shown()[0].name, "b.txt");
        let state = state.reduce(DriveAction::Up(1));
        assert_eq!(state.folder(), Some("1"));
        assert!(state.nodes.is_empty());
    }

    #[test]
    fn uploads_report_progress_and_clear_once_listed() {
        let state = Rc::new(DriveState::default())
            .reduce(DriveAction::UploadStarted {
                key: 1,
                name: "a".into(),
            })
            .reduce(DriveAction::UploadProgress {
                key: 1,
                sent: 5,
                total: 10,
            });
        assert_eq!((state.uploads[0].sent, state.uploads[0].total), (5, 10));
        let state = state
            .reduce(DriveAction::UploadDone { key: 1 })
            .reduce(DriveAction::Listed(vec![]));
        assert!(state.uploads.is_empty());
    }

    #[test]
    fn names_and_sizes() {
        assert!(is_conflict_copy(
            "a (conflicted copy, laptop, 2026-12-07 030405).txt"
        ));
        assert!(!is_conflict_copy("a.txt"));
        assert!(is_text(&node("Notes.MD", false)));
        assert!(!is_text(&node("photo.jpg", false)));
        assert_eq!(format_size(320), "320 B");
        assert_eq!(format_size(1_500_000), "1.5 MB");
    }
}
