//! The sessions this instance has read, kept exact without reading each one again.
//!
//! Every change that can end or alter a live session (a revocation, a sign-in or sign-out
//! replacing a session, a role change, idle guest sessions deleted) is recorded in its
//! own transaction under the next number of one counter ([`store::session_changes_since`]).
//! Before a request uses a session it knows, the instance reads the changes recorded
//! since its last read, in a read that began after the request arrived, and forgets the
//! sessions they touch. One read serves every request that arrived before it began, so
//! under load a few reads serve thousands of requests, where each request used to read
//! its own session.
//!
//! Invariants:
//! - A request is checked against every change committed before it arrived, on any
//!   instance: a read that began after the request arrived sees them all, because the
//!   counter's row lock makes the numbers commit in order.
//! - A session read from the database is kept only if no change was applied between the
//!   check before the read and the keeping; a change committed after the read has a
//!   later number and is applied by a later check.
//! - A gap in the numbers (changes pruned before this instance read them) forgets every
//!   session; so does a full table ([`KnownSessions::new`]'s capacity).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use sqlx::AnyPool;
use tokio::sync::watch;

use super::store::{self, SessionChange, SessionRow};

/// The sessions this instance has read, by token hash, and the changes applied to them.
pub struct KnownSessions {
    state: Mutex<Known>,
    /// Reads of changes begun so far; a read's number is the count when it began.
    begun: AtomicU64,
    /// The number of the last read that finished and was applied.
    finished: watch::Sender<u64>,
    /// One read at a time.
    reading: tokio::sync::Mutex<()>,
    capacity: usize,
}

/// What [`KnownSessions`] holds under its lock.
#[derive(Debug, Default)]
struct Known {
    /// The last change applied; `None` before the first read.
    epoch: Option<i64>,
    by_token: HashMap<String, SessionRow>,
    /// Session id → token hash.
    by_id: HashMap<String, String>,
}

impl Known {
    fn forget_all(&mut self) {
        self.by_token.clear();
        self.by_id.clear();
    }

    fn forget_session(&mut self, id: &str) {
        if let Some(token_hash) = self.by_id.remove(id) {
            self.by_token.remove(&token_hash);
        }
    }

    /// Keeps only the sessions `keep` accepts.
    fn retain(&mut self, keep: impl Fn(&SessionRow) -> bool) {
        let by_id = &mut self.by_id;
        self.by_token.retain(|_, row| {
            let kept = keep(row);
            if !kept {
                by_id.remove(&row.id);
            }
            kept
        });
    }

    /// Applies the changes read at `latest`: each one, in order, if they follow the last
    /// one applied without a gap; otherwise forgets everything.
    fn apply(&mut self, latest: i64, changes: Vec<(i64, SessionChange)>) {
        match self.epoch {
            None => self.forget_all(),
            Some(before) => {
                let follows = latest >= before
                    && changes.len() as i64 == latest - before
                    && changes
                        .iter()
                        .zip(before + 1..)
                        .all(|((n, _), at)| *n == at);
                if !follows {
                    self.forget_all();
                } else {
                    for (_, change) in changes {
                        match change {
                            SessionChange::Session(id) => self.forget_session(&id),
                            SessionChange::User(user) => self.retain(|row| {
                                row.user.as_ref().is_none_or(|known| known.id != user)
                            }),
                            SessionChange::GuestsIdleBefore(at) => {
                                // Its last-seen time here is at or before the database's.
                                self.retain(|row| row.user.is_some() || row.last_seen_ms >= at)
                            }
                        }
                    }
                }
            }
        }
        self.epoch = Some(latest);
    }
}

impl KnownSessions {
    /// Keeps at most `capacity` sessions; when full, it forgets them all and starts over.
    pub fn new(capacity: usize) -> KnownSessions {
        KnownSessions {
            state: Mutex::new(Known::default()),
            begun: AtomicU64::new(0),
            finished: watch::Sender::new(0),
            reading: tokio::sync::Mutex::new(()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the changes committed before this call are applied: by a read that
    /// began after it, its own or another request's. Returns the epoch applied, for
    /// [`KnownSessions::keep`].
    pub async fn catch_up(&self, pool: &AnyPool) -> Result<i64, sqlx::Error> {
        let mut finished = self.finished.subscribe();
        let arrived = self.begun.load(Ordering::SeqCst);
        loop {
            if *finished.borrow_and_update() > arrived {
                return Ok(self.epoch());
            }
            tokio::select! {
                biased;
                _ = finished.changed() => {}
                _reading = self.reading.lock() => {
                    if *self.finished.borrow() > arrived {
                        return Ok(self.epoch());
                    }
                    let read = self.begun.fetch_add(1, Ordering::SeqCst) + 1;
                    let after = self.lock().epoch;
                    let (latest, changes) = store::session_changes_since(pool, after).await?;
                    self.lock().apply(latest, changes);
                    self.finished.send_replace(read);
                    return Ok(latest);
                }
            }
        }
    }

    fn epoch(&self) -> i64 {
        self.lock().epoch.unwrap_or(0)
    }

    /// The session with this token hash, if this instance knows it (call
    /// [`KnownSessions::catch_up`] first).
    pub fn get(&self, token_hash: &str) -> Option<SessionRow> {
        self.lock().by_token.get(token_hash).cloned()
    }

    /// Keeps a session read from the database after [`KnownSessions::catch_up`] returned
    /// `epoch`, unless changes were applied since (the read may predate one of them).
    pub fn keep(&self, token_hash: &str, row: SessionRow, epoch: i64) {
        let mut known = self.lock();
        if known.epoch != Some(epoch) {
            return;
        }
        if known.by_token.len() >= self.capacity {
            known.forget_all();
        }
        known.by_id.insert(row.id.clone(), token_hash.to_owned());
        known.by_token.insert(token_hash.to_owned(), row);
    }

    /// Records that the session was seen at `now_ms` (and written so to the database).
    pub fn touched(&self, token_hash: &str, now_ms: i64) {
        if let Some(row) = self.lock().by_token.get_mut(token_hash) {
            row.last_seen_ms = now_ms;
        }
    }

    /// How many sessions this instance knows.
    pub fn len(&self) -> usize {
        self.lock().by_token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use meridian_shared::api::{Role, UserInfo};

    use super::*;

    fn row(id: &str, user: Option<&str>, last_seen_ms: i64) -> SessionRow {
        SessionRow {
            id: id.to_owned(),
            user: user.map(|user| UserInfo {
                id: user.to_owned(),
                username: user.to_owned(),
            }),
            guest_session_id: None,
            last_seen_ms,
            role: user.map(|_| Role::Viewer),
        }
    }

    /// Known sessions at epoch 10: guests g1 (seen at 100) and g2 (at 500), u1 and u2 of
    /// alice, u3 of bob.
    fn known() -> KnownSessions {
        let known = KnownSessions::new(100);
        known.lock().apply(10, Vec::new());
        for (id, user, seen) in [
            ("g1", None, 100),
            ("g2", None, 500),
            ("u1", Some("alice"), 0),
            ("u2", Some("alice"), 0),
            ("u3", Some("bob"), 0),
        ] {
            known.keep(&format!("t-{id}"), row(id, user, seen), 10);
        }
        assert_eq!(known.len(), 5);
        known
    }

    fn ids(known: &KnownSessions) -> Vec<String> {
        let mut ids: Vec<String> = known.lock().by_id.keys().cloned().collect();
        ids.sort();
        ids
    }

    #[test]
    fn each_change_forgets_what_it_touches() {
        let known = known();
        known.lock().apply(
            13,
            vec![
                (11, SessionChange::Session("u3".into())),
                (12, SessionChange::User("alice".into())),
                (13, SessionChange::GuestsIdleBefore(200)),
            ],
        );
        assert_eq!(ids(&known), ["g2"]);
        assert_eq!(known.get("t-g2").map(|row| row.id), Some("g2".into()));
        assert_eq!(known.get("t-u3"), None);
        let state = known.lock();
        assert_eq!(state.by_token.len(), state.by_id.len());
    }

    #[test]
    fn a_gap_in_the_changes_forgets_everything() {
        let known = known();
        // Change 11 was pruned before this instance read it.
        known
            .lock()
            .apply(12, vec![(12, SessionChange::Session("u3".into()))]);
        assert!(known.is_empty());
        assert_eq!(known.lock().epoch, Some(12));

        // A counter behind the last one applied (a restored database) too.
        let known = self::known();
        known.lock().apply(3, Vec::new());
        assert!(known.is_empty());
    }

    #[test]
    fn a_read_that_may_predate_a_change_is_not_kept() {
        let known = known();
        known
            .lock()
            .apply(11, vec![(11, SessionChange::User("carol".into()))]);
        // Read after the check at 10, kept after change 11 was applied: dropped.
        known.keep("t-c1", row("c1", Some("carol"), 0), 10);
        assert_eq!(known.get("t-c1"), None);
        known.keep("t-c1", row("c1", Some("carol"), 0), 11);
        assert!(known.get("t-c1").is_some());
    }

    /// One step of the property below.
    #[derive(Debug, Clone)]
    enum Step {
        /// Read session `n` of user `n % 3` after the check at the epoch applied
        /// `stale` changes ago.
        Read { n: u8, stale: bool },
        /// Another instance commits a change: of session `n`, or of user `n % 3`.
        Commit { n: u8, user: bool },
        /// Apply what was committed; `lose` of the oldest unread changes were pruned.
        Apply { lose: u8 },
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            (0u8..8, any::<bool>()).prop_map(|(n, stale)| Step::Read { n, stale }),
            (0u8..8, any::<bool>()).prop_map(|(n, user)| Step::Commit { n, user }),
            (0u8..3).prop_map(|lose| Step::Apply { lose: lose / 2 }),
        ]
    }

    proptest::proptest! {
        /// Whatever the order of reads, changes, applies and pruned changes, a session
        /// this instance knows was read after every applied change that touches it.
        #[test]
        fn a_known_session_was_read_after_every_change_to_it(
            steps in proptest::collection::vec(step(), 1..60),
        ) {
            let known = KnownSessions::new(5);
            known.lock().apply(0, Vec::new());
            let mut log: Vec<SessionChange> = Vec::new();
            // Epoch each known session was read at (by the model).
            let mut previous = 0;
            for step in steps {
                match step {
                    Step::Read { n, stale } => {
                        let epoch = known.epoch();
                        let read_at = if stale { previous } else { epoch };
                        let user = format!("user{}", n % 3);
                        // The row carries the epoch it was read at as its last-seen time.
                        let read = row(&format!("s{n}"), Some(&user), read_at);
                        known.keep(&format!("t{n}"), read, read_at);
                    }
                    Step::Commit { n, user } => log.push(if user {
                        SessionChange::User(format!("user{}", n % 3))
                    } else {
                        SessionChange::Session(format!("s{n}"))
                    }),
                    Step::Apply { lose } => {
                        let applied = known.epoch() as usize;
                        let unread: Vec<(i64, SessionChange)> = log[applied..]
                            .iter()
                            .cloned()
                            .zip(applied as i64 + 1..)
                            .map(|(change, n)| (n, change))
                            .skip(lose as usize)
                            .collect();
                        previous = applied as i64;
                        known.lock().apply(log.len() as i64, unread);
                    }
                }
                // Check: no known session is touched by a change after it was read.
                let state = known.lock();
                proptest::prop_assert_eq!(state.by_token.len(), state.by_id.len());
                for row in state.by_token.values() {
                    let user = row.user.as_ref().map(|u| u.id.clone()).unwrap_or_default();
                    let applied = state.epoch.unwrap_or(0) as usize;
                    let touched_at = log[..applied].iter().rposition(|change| match change {
                        SessionChange::Session(id) => *id == row.id,
                        SessionChange::User(id) => *id == user,
                        SessionChange::GuestsIdleBefore(_) => false,
                    });
                    proptest::prop_assert!(
                        touched_at.is_none_or(|at| (at as i64) < row.last_seen_ms),
                        "{row:?} known though change {touched_at:?} touched it"
                    );
                }
            }
        }
    }

    #[test]
    fn a_full_table_starts_over_and_touches_are_remembered() {
        let known = KnownSessions::new(2);
        known.lock().apply(0, Vec::new());
        known.keep("a", row("a", None, 0), 0);
        known.keep("b", row("b", None, 0), 0);
        known.touched("b", 70);
        assert_eq!(known.get("b").map(|row| row.last_seen_ms), Some(70));
        known.keep("c", row("c", None, 0), 0);
        assert_eq!(ids(&known), ["c"]);
    }
}
