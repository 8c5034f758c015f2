//! The page's model, a pure reducer: the nodes as last polled (or why not), the nodes
//! with a kill or restart in flight, the newest records, and the LSN the slider is at
//! with the state loaded for it. Unit-tested natively.
//!
//! Invariants: a failed refresh keeps the last nodes shown (marked stale); the slider
//! never passes the highest commit index any node reports; until the user moves it the
//! slider follows that commit index.

use std::collections::BTreeSet;
use std::rc::Rc;

use meridian_shared::wal::{WalLocalNode, WalRecord, WalRole, WalStateResponse};
use yew::Reducible;

/// How many of the newest records the page lists.
pub const SHOWN_RECORDS: usize = 20;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct WalView {
    /// `None` until the first answer.
    pub nodes: Option<Vec<WalLocalNode>>,
    /// Why the last refresh failed (the nodes shown are then stale).
    pub error: Option<String>,
    /// The server runs no local cluster.
    pub off: bool,
    /// Nodes with a kill or restart in flight.
    pub busy: BTreeSet<u64>,
    /// What the last kill, restart or append said went wrong.
    pub action_error: Option<String>,
    /// The newest records, oldest first.
    pub records: Vec<WalRecord>,
    /// Where the user put the slider; `None`: at the latest commit.
    pub pinned: Option<u64>,
    /// The state last loaded for the slider.
    pub state: Option<WalStateResponse>,
    pub state_error: Option<String>,
}

pub enum WalAction {
    Nodes(Vec<WalLocalNode>),
    RefreshFailed(String),
    Off,
    Busy(u64),
    Done(u64, Option<String>),
    ActionFailed(String),
    Records(Vec<WalRecord>),
    Slide(u64),
    Follow,
    State(WalStateResponse),
    StateFailed(String),
}

impl WalView {
    /// The leader the most running nodes name, if a node says it leads.
    pub fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .flatten()
            .filter_map(|node| node.status.as_ref())
            .find(|status| status.role == WalRole::Leader)
            .map(|status| status.id)
    }

    /// The highest commit index any node reports.
    pub fn commit_index(&self) -> u64 {
        self.nodes
            .iter()
            .flatten()
            .filter_map(|node| node.status.as_ref()?.commit_index)
            .max()
            .unwrap_or(0)
    }

    /// How far node `id` is behind the leader's log, as the leader reports it.
    pub fn lag_of(&self, id: u64) -> Option<u64> {
        let leader = self.leader()?;
        let status = self
            .nodes
            .iter()
            .flatten()
            .find(|node| node.id == leader)?
            .status
            .as_ref()?;
        if id == leader {
            return Some(0);
        }
        status
            .followers
            .iter()
            .find(|follower| follower.id == id)
            .map(|follower| follower.lag)
    }

    /// The LSN the slider shows.
    pub fn slider_lsn(&self) -> u64 {
        self.pinned
            .unwrap_or_else(|| self.commit_index())
            .min(self.commit_index())
    }
}

impl Reducible for WalView {
    type Action = WalAction;

    fn reduce(self: Rc<Self>, action: WalAction) -> Rc<Self> {
        let mut next = (*self).clone();
        match action {
            WalAction::Nodes(nodes) => {
                next.nodes = Some(nodes);
                next.error = None;
                next.off = false;
            }
            WalAction::RefreshFailed(error) => next.error = Some(error),
            WalAction::Off => next.off = true,
            WalAction::Busy(id) => {
                next.busy.insert(id);
                next.action_error = None;
            }
            WalAction::Done(id, error) => {
                next.busy.remove(&id);
                next.action_error = error;
            }
            WalAction::ActionFailed(error) => next.action_error = Some(error),
            WalAction::Records(records) => {
                let skip = records.len().saturating_sub(SHOWN_RECORDS);
                next.records = records.into_iter().skip(skip).collect();
            }
            WalAction::Slide(lsn) => next.pinned = Some(lsn.min(next.commit_index())),
            WalAction::Follow => next.pinned = None,
            WalAction::State(state) => {
                next.state = Some(state);
                next.state_error = None;
            }
            WalAction::StateFailed(error) => next.state_error = Some(error),
        }
        Rc::new(next)
    }
}

#[cfg(test)]
mod tests {
    use meridian_shared::wal::{WalFollower, WalStatus};

    use super::*;

    fn node(id: u64, role: WalRole, commit: u64, followers: Vec<WalFollower>) -> WalLocalNode {
        WalLocalNode {
            id,
            addr: format!("127.0.0.1:{}", 7000 + id),
            running: true,
            status: Some(WalStatus {
                id,
                role,
                term: 2,
                leader: Some(1),
                commit_index: Some(commit),
                apply_index: Some(commit),
                last_log_index: Some(commit),
                snapshot_index: None,
                members: vec![],
                followers,
            }),
        }
    }

    fn cluster() -> Vec<WalLocalNode> {
        vec![
            node(
                1,
                WalRole::Leader,
                10,
                vec![
                    WalFollower {
                        id: 2,
                        matched: Some(10),
                        lag: 0,
                    },
                    WalFollower {
                        id: 3,
                        matched: Some(7),
                        lag: 3,
                    },
                ],
            ),
            node(2, WalRole::Follower, 10, vec![]),
            node(3, WalRole::Follower, 7, vec![]),
        ]
    }

    fn reduce(view: WalView, action: WalAction) -> WalView {
        (*Rc::new(view).reduce(action)).clone()
    }

    #[test]
    fn the_leader_commit_and_lag_come_from_the_statuses() {
        let view = reduce(WalView::default(), WalAction::Nodes(cluster()));
        assert_eq!(view.leader(), Some(1));
        assert_eq!(view.commit_index(), 10);
        assert_eq!(view.lag_of(1), Some(0));
        assert_eq!(view.lag_of(3), Some(3));
        assert_eq!(view.lag_of(9), None);
    }

    #[test]
    fn a_failed_refresh_keeps_the_nodes_shown() {
        let view = reduce(WalView::default(), WalAction::Nodes(cluster()));
        let view = reduce(view, WalAction::RefreshFailed("offline".into()));
        assert_eq!(view.nodes.as_ref().map(Vec::len), Some(3));
        assert_eq!(view.error.as_deref(), Some("offline"));
        let view = reduce(view, WalAction::Nodes(cluster()));
        assert_eq!(view.error, None);
    }

    #[test]
    fn the_slider_follows_the_commit_until_moved_and_never_passes_it() {
        let view = reduce(WalView::default(), WalAction::Nodes(cluster()));
        assert_eq!(view.slider_lsn(), 10);
        let view = reduce(view, WalAction::Slide(4));
        assert_eq!(view.slider_lsn(), 4);
        let view = reduce(view, WalAction::Slide(99));
        assert_eq!(view.slider_lsn(), 10);
        let view = reduce(view, WalAction::Follow);
        assert_eq!(view.pinned, None);
    }

    #[test]
    fn kills_in_flight_are_tracked_per_node() {
        let view = reduce(WalView::default(), WalAction::Busy(2));
        assert!(view.busy.contains(&2));
        let view = reduce(view, WalAction::Done(2, Some("forbidden".into())));
        assert!(view.busy.is_empty());
        assert_eq!(view.action_error.as_deref(), Some("forbidden"));
    }
}
