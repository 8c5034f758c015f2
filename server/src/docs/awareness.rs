//! The server's view of a room's awareness (who is here, their cursors): the rules of
//! y-protocols' `applyAwarenessUpdate`, plus who announced each client, so that a
//! closed connection's clients can be removed at once and silent ones after a timeout.
//!
//! Invariants:
//! - A state replaces another only with a higher clock, or with the same clock when it is
//!   a removal (`null`); so a late or replayed message never resurrects a removed client.
//! - Removed clients keep their clock (as Yjs keeps `meta`) until pruned, long after any
//!   message that could still carry the old clock.

use std::collections::HashMap;
use std::sync::Arc;

use yrs::block::ClientID;
use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};

/// Who announced a client: a connection on this instance, or another instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Local(u64),
    Remote,
}

#[derive(Debug, Clone)]
struct Entry {
    clock: u32,
    /// `None` once removed.
    state: Option<Arc<str>>,
    owner: Owner,
    last_ms: i64,
}

const NULL: &str = "null";

#[derive(Debug, Default)]
pub struct AwarenessTable {
    entries: HashMap<u64, Entry>,
}

fn update_of(entries: Vec<(u64, u32, Option<Arc<str>>)>) -> AwarenessUpdate {
    AwarenessUpdate {
        clients: entries
            .into_iter()
            .map(|(client, clock, state)| {
                let json = state.unwrap_or_else(|| Arc::from(NULL));
                (ClientID::new(client), AwarenessUpdateEntry { clock, json })
            })
            .collect(),
    }
}

impl AwarenessTable {
    /// Applies an update; returns the entries that changed (what to pass on), possibly
    /// empty.
    pub fn apply(
        &mut self,
        update: &AwarenessUpdate,
        owner: Owner,
        now_ms: i64,
    ) -> AwarenessUpdate {
        let mut changed = Vec::new();
        for (client, entry) in &update.clients {
            let client = client.get();
            let state = (&*entry.json != NULL).then(|| entry.json.clone());
            let accept = match self.entries.get(&client) {
                None => true,
                Some(prev) => {
                    prev.clock < entry.clock
                        || (prev.clock == entry.clock && state.is_none() && prev.state.is_some())
                }
            };
            if !accept {
                continue;
            }
            let owner = match (state.is_some(), self.entries.get(&client)) {
                (false, Some(prev)) => prev.owner,
                _ => owner,
            };
            self.entries.insert(
                client,
                Entry {
                    clock: entry.clock,
                    state: state.clone(),
                    owner,
                    last_ms: now_ms,
                },
            );
            changed.push((client, entry.clock, state));
        }
        update_of(changed)
    }

    fn remove_where(
        &mut self,
        now_ms: i64,
        mut pred: impl FnMut(&Entry) -> bool,
    ) -> AwarenessUpdate {
        let mut removed = Vec::new();
        for (client, entry) in self.entries.iter_mut() {
            if entry.state.is_some() && pred(entry) {
                entry.clock += 1;
                entry.state = None;
                entry.last_ms = now_ms;
                removed.push((*client, entry.clock, None));
            }
        }
        update_of(removed)
    }

    /// Removes every client a connection announced (it closed).
    pub fn remove_owned_by(&mut self, conn: u64, now_ms: i64) -> AwarenessUpdate {
        self.remove_where(now_ms, |e| e.owner == Owner::Local(conn))
    }

    /// Removes clients not renewed within `timeout_ms`, and forgets removed ones long
    /// past any message that could mention them.
    pub fn expire(&mut self, now_ms: i64, timeout_ms: i64) -> AwarenessUpdate {
        let removed = self.remove_where(now_ms, |e| now_ms - e.last_ms >= timeout_ms);
        self.entries
            .retain(|_, e| e.state.is_some() || now_ms - e.last_ms < 10 * timeout_ms);
        removed
    }

    /// Every present client's state (what a new connection is told).
    pub fn present(&self) -> AwarenessUpdate {
        update_of(
            self.entries
                .iter()
                .filter(|(_, e)| e.state.is_some())
                .map(|(c, e)| (*c, e.clock, e.state.clone()))
                .collect(),
        )
    }

    pub fn present_count(&self) -> usize {
        self.entries.values().filter(|e| e.state.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(client: u64, clock: u32, json: &str) -> AwarenessUpdate {
        update_of(vec![(
            client,
            clock,
            (json != NULL).then(|| Arc::from(json)),
        )])
    }

    fn states(u: &AwarenessUpdate) -> Vec<(u64, u32, String)> {
        let mut v: Vec<_> = u
            .clients
            .iter()
            .map(|(c, e)| (c.get(), e.clock, e.json.to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn newer_clocks_win_and_removals_stick() {
        let mut t = AwarenessTable::default();
        assert_eq!(
            states(&t.apply(&one(1, 1, "{\"a\":1}"), Owner::Local(7), 0)).len(),
            1
        );
        // An older or equal clock with a state is ignored.
        assert!(t
            .apply(&one(1, 1, "{\"a\":2}"), Owner::Local(7), 1)
            .clients
            .is_empty());
        assert!(t
            .apply(&one(1, 0, "{\"a\":3}"), Owner::Local(7), 1)
            .clients
            .is_empty());
        // Same clock removal is accepted once.
        assert_eq!(
            states(&t.apply(&one(1, 1, NULL), Owner::Remote, 2)),
            vec![(1, 1, NULL.into())]
        );
        assert!(t
            .apply(&one(1, 1, NULL), Owner::Remote, 2)
            .clients
            .is_empty());
        // A replay of the old state does not resurrect it.
        assert!(t
            .apply(&one(1, 1, "{\"a\":1}"), Owner::Local(7), 3)
            .clients
            .is_empty());
        assert_eq!(t.present_count(), 0);
        assert_eq!(
            states(&t.apply(&one(1, 2, "{\"b\":1}"), Owner::Local(8), 4)).len(),
            1
        );
        assert_eq!(t.present_count(), 1);
    }

    #[test]
    fn a_closed_connection_loses_its_clients_at_once() {
        let mut t = AwarenessTable::default();
        t.apply(&one(1, 5, "{}"), Owner::Local(1), 0);
        t.apply(&one(2, 1, "{}"), Owner::Local(2), 0);
        t.apply(&one(3, 1, "{}"), Owner::Remote, 0);
        let removed = t.remove_owned_by(1, 10);
        assert_eq!(states(&removed), vec![(1, 6, NULL.into())]);
        assert_eq!(states(&t.present()).len(), 2);
        // The client's own goodbye with the old clock changes nothing more.
        assert!(t
            .apply(&one(1, 5, NULL), Owner::Local(1), 11)
            .clients
            .is_empty());
    }

    #[test]
    fn silent_clients_expire() {
        let mut t = AwarenessTable::default();
        t.apply(&one(1, 1, "{}"), Owner::Local(1), 0);
        t.apply(&one(2, 1, "{}"), Owner::Local(2), 0);
        t.apply(&one(2, 2, "{}"), Owner::Local(2), 20_000);
        assert!(t.expire(29_999, 30_000).clients.is_empty());
        assert_eq!(states(&t.expire(30_000, 30_000)), vec![(1, 2, NULL.into())]);
        assert_eq!(states(&t.expire(50_000, 30_000)), vec![(2, 3, NULL.into())]);
        assert_eq!(t.present_count(), 0);
        // Removed entries are forgotten eventually.
        t.expire(1_000_000, 30_000);
        assert!(t.entries.is_empty());
    }
}
