//! The one way the flags' configuration changes: an [`AuditedChange`].
//!
//! ```text
//! let mut change = AuditedChange::begin(&state, actor).await?;   // tx + next version
//! store::update_flag(change.tx(), &flag).await?;                 // the writes
//! change.audit(NewAudit::new("update").flag(&key)...).await?;    // who/when/before/after
//! let version = change.commit_and_publish().await?;              // commit, reload, publish
//! ```
//!
//! Invariants:
//! - A change takes the next global version as the first statement of its transaction
//!   (the `flag_state` row is the lock, and on SQLite the write lock is taken at once).
//! - It commits only with exactly one audit entry under that version; without one it is
//!   rolled back and refused (a bug, answered with a 500), and a second entry is refused.
//! - Dropped before `commit_and_publish` (an early `?`), it rolls back: nothing of it is
//!   visible, and its version number is never used.
//! - After the commit this instance's snapshot is reloaded before the caller answers,
//!   and the new version is published on [`TOPIC`] for the other instances. Publishing
//!   lives here and nowhere else.

use serde_json::json;
use sqlx::AnyConnection;

use super::store::{self, AuditStamp, NewAudit};
use super::TOPIC;
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use meridian_shared::api::UserInfo;

/// Who makes a change, as its audit entry names them: an account, or (for a scheduled
/// change) the account that scheduled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: Option<String>,
    pub name: String,
}

impl Actor {
    pub fn user(user: &UserInfo) -> Actor {
        Actor {
            id: Some(user.id.clone()),
            name: user.username.clone(),
        }
    }

    pub fn new(id: Option<&str>, name: &str) -> Actor {
        Actor {
            id: id.map(str::to_owned),
            name: name.to_owned(),
        }
    }
}

/// One change of the configuration, in its transaction, under its version.
pub struct AuditedChange<'s> {
    state: &'s AppState,
    tx: sqlx::Transaction<'static, sqlx::Any>,
    version: u64,
    now_ms: i64,
    actor: Actor,
    audited: bool,
}

impl<'s> AuditedChange<'s> {
    /// Begins a transaction and takes the next version in it.
    pub async fn begin(state: &'s AppState, actor: Actor) -> ApiResult<AuditedChange<'s>> {
        let mut tx = state.db.pool.begin().await?;
        let version = store::next_version(&mut tx).await?;
        Ok(AuditedChange {
            state,
            tx,
            version,
            now_ms: state.clock.now_ms(),
            actor,
            audited: false,
        })
    }

    /// The version this change will have.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The time of the change (its audit entry's, and its rows').
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The transaction, for the change's reads and writes.
    pub fn tx(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Writes the change's audit entry (once).
    pub async fn audit(&mut self, entry: NewAudit<'_>) -> ApiResult<()> {
        if self.audited {
            return Err(ApiError::internal(format!(
                "a second audit entry for flag version {}",
                self.version
            )));
        }
        let stamp = AuditStamp {
            version: self.version,
            at_ms: self.now_ms,
            actor_id: self.actor.id.as_deref(),
            actor_name: &self.actor.name,
        };
        store::audit(&mut self.tx, stamp, entry).await?;
        self.audited = true;
        Ok(())
    }

    /// Commits the change and makes it live: reloads this instance's snapshot and tells
    /// the other instances on [`TOPIC`]. Returns the version.
    pub async fn commit_and_publish(self) -> ApiResult<u64> {
        let AuditedChange {
            state,
            tx,
            version,
            audited,
            ..
        } = self;
        if !audited {
            drop(tx);
            return Err(ApiError::internal(format!(
                "flag version {version} has no audit entry; rolled back"
            )));
        }
        tx.commit().await?;
        state.flags.reload(&state.db.pool).await?;
        crate::realtime::Events::publish(
            &state.db,
            &state.hub,
            TOPIC,
            &format!("flags:{version}"),
            json!({ "version": version }),
            None,
        )
        .await?;
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::test_support::TestState;

    fn segment(key: &str) -> meridian_shared::flags::Segment {
        serde_json::from_value(json!({ "key": key })).unwrap()
    }

    fn alice() -> Actor {
        Actor::new(Some("u-1"), "alice")
    }

    #[tokio::test]
    async fn a_change_commits_with_its_audit_entry_is_live_and_published() {
        let test = TestState::start().await;
        let state = &test.state;
        let hub = &state.hub;
        let mut listener = hub.register("test", None);
        hub.subscribe(listener.id, TOPIC);
        let before = store::version(&state.db.pool).await.unwrap();

        let mut change = AuditedChange::begin(state, alice()).await.unwrap();
        assert_eq!(change.version(), before + 1);
        let segment = segment("beta");
        let now = change.now_ms();
        store::put_segment(change.tx(), &segment, now)
            .await
            .unwrap();
        change
            .audit(NewAudit::new("segment_update").change(None, Some(json!({"key": "beta"}))))
            .await
            .unwrap();
        let version = change.commit_and_publish().await.unwrap();

        assert_eq!(version, before + 1);
        assert_eq!(
            state.flags.snapshot().version,
            version,
            "live before the answer"
        );
        assert!(state.flags.snapshot().segments.get("beta").is_some());
        let log = store::audit_log(&state.db.pool, None, u64::MAX, 10)
            .await
            .unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(
            (
                log[0].version,
                log[0].action.as_str(),
                log[0].actor_name.as_str()
            ),
            (version, "segment_update", "alice")
        );
        assert_eq!(log[0].actor_id.as_deref(), Some("u-1"));
        let event = tokio::time::timeout(std::time::Duration::from_secs(5), listener.queue.recv())
            .await
            .expect("the event in time")
            .expect("an event");
        assert_eq!(event.topic, TOPIC);
        test.stop().await;
    }

    #[tokio::test]
    async fn a_change_without_an_audit_entry_is_rolled_back() {
        let test = TestState::start().await;
        let state = &test.state;
        let before = store::version(&state.db.pool).await.unwrap();
        let mut change = AuditedChange::begin(state, alice()).await.unwrap();
        let segment = segment("ghost");
        let now = change.now_ms();
        store::put_segment(change.tx(), &segment, now)
            .await
            .unwrap();
        let err = change.commit_and_publish().await.unwrap_err();
        assert_eq!(err.status.as_u16(), 500);
        assert_eq!(store::version(&state.db.pool).await.unwrap(), before);
        let mut conn = state.db.pool.acquire().await.unwrap();
        assert!(store::segments(&mut conn).await.unwrap().is_empty());
        drop(conn);
        test.stop().await;
    }

    #[tokio::test]
    async fn a_dropped_change_leaves_nothing_and_a_second_entry_is_refused() {
        let test = TestState::start().await;
        let state = &test.state;
        let before = store::version(&state.db.pool).await.unwrap();
        {
            let mut change = AuditedChange::begin(state, alice()).await.unwrap();
            change.audit(NewAudit::new("create")).await.unwrap();
            let err = change.audit(NewAudit::new("create")).await.unwrap_err();
            assert_eq!(err.status.as_u16(), 500);
            // Dropped here: an early `?` in a handler.
        }
        assert_eq!(store::version(&state.db.pool).await.unwrap(), before);
        let log = store::audit_log(&state.db.pool, None, u64::MAX, 10)
            .await
            .unwrap();
        assert!(log.is_empty());
        // The next change takes the version the dropped one did not use.
        let mut change = AuditedChange::begin(state, alice()).await.unwrap();
        assert_eq!(change.version(), before + 1);
        change.audit(NewAudit::new("create")).await.unwrap();
        assert_eq!(change.commit_and_publish().await.unwrap(), before + 1);
        test.stop().await;
    }
}
