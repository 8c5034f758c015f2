//! SQL for accounts and sessions.

use meridian_shared::api::{
    AdminUser, DatabaseBackend, Role, RoleAudit, SessionInfo, SessionKind, UserInfo,
};
use sqlx::{AnyConnection, AnyPool, Row};

/// A session row joined with its account.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: String,
    pub user: Option<UserInfo>,
    pub guest_session_id: Option<String>,
    pub last_seen_ms: i64,
    /// The account's role (`None` for a guest session).
    pub role: Option<Role>,
}

pub struct NewSession<'a> {
    pub id: &'a str,
    pub token_hash: &'a str,
    pub user_id: Option<&'a str>,
    pub guest_session_id: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub now_ms: i64,
}

pub async fn insert_session(pool: &AnyPool, s: NewSession<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sessions (id, token_hash, user_id, guest_session_id, user_agent, created_at_ms, last_seen_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(s.id)
    .bind(s.token_hash)
    .bind(s.user_id)
    .bind(s.guest_session_id)
    .bind(s.user_agent)
    .bind(s.now_ms)
    .execute(pool)
    .await?;
    Ok(())
}

/// The live (not revoked) session with this token hash.
pub async fn session_by_token(
    pool: &AnyPool,
    token_hash: &str,
) -> Result<Option<SessionRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT s.id, s.user_id, u.username, s.guest_session_id, s.last_seen_ms, u.role
         FROM sessions s LEFT JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = $1 AND s.revoked_at_ms IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    row.map(|row| -> Result<SessionRow, sqlx::Error> {
        let user_id: Option<String> = row.try_get(1)?;
        let username: Option<String> = row.try_get(2)?;
        Ok(SessionRow {
            id: row.try_get(0)?,
            user: user_id
                .zip(username)
                .map(|(id, username)| UserInfo { id, username }),
            guest_session_id: row.try_get(3)?,
            last_seen_ms: row.try_get(4)?,
            role: row.try_get::<Option<String>, _>(5)?.map(|r| parse_role(&r)),
        })
    })
    .transpose()
}

pub async fn touch_session(pool: &AnyPool, id: &str, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET last_seen_ms = $2 WHERE id = $1")
        .bind(id)
        .bind(now_ms)
        .execute(pool)
        .await?;
    Ok(())
}

/// Revokes a session; true if it was live.
pub async fn revoke_session(pool: &AnyPool, id: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at_ms = $2 WHERE id = $1 AND revoked_at_ms IS NULL",
    )
    .bind(id)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    record_session_change(&mut tx, SessionChange::Session(id.to_owned()), now_ms).await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

/// Revokes a session because the same browser signed in or out into `new_id`; true if it
/// was live.
pub async fn replace_session(
    pool: &AnyPool,
    id: &str,
    new_id: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at_ms = $2, replaced_by = $3
         WHERE id = $1 AND revoked_at_ms IS NULL",
    )
    .bind(id)
    .bind(now_ms)
    .bind(new_id)
    .execute(&mut *tx)
    .await?;
    record_session_change(&mut tx, SessionChange::Session(id.to_owned()), now_ms).await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

/// A change that can end or alter live sessions (see [`session_changes_since`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChange {
    /// The session was revoked or replaced.
    Session(String),
    /// The account's role changed: each of its sessions.
    User(String),
    /// Guest sessions last seen before this instant were deleted.
    GuestsIdleBefore(i64),
}

/// Records `change` in the transaction that makes it, under the next epoch. The epoch
/// row's lock is held until the transaction ends, so epochs commit in order.
async fn record_session_change(
    conn: &mut AnyConnection,
    change: SessionChange,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let epoch: i64 = sqlx::query_scalar(
        "UPDATE session_epoch SET epoch = epoch + 1 WHERE id = 1 RETURNING epoch",
    )
    .fetch_one(&mut *conn)
    .await?;
    let (session_id, user_id, idle_before_ms) = match change {
        SessionChange::Session(id) => (Some(id), None, None),
        SessionChange::User(id) => (None, Some(id), None),
        SessionChange::GuestsIdleBefore(at) => (None, None, Some(at)),
    };
    sqlx::query(
        "INSERT INTO session_changes (epoch, session_id, user_id, idle_before_ms, at_ms)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(epoch)
    .bind(session_id)
    .bind(user_id)
    .bind(idle_before_ms)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The latest session epoch, and the changes after `after` in epoch order (none when
/// `after` is `None`). One statement, so one snapshot: it holds every change up to the
/// epoch it shows, unless they were pruned ([`prune_session_changes`]).
pub async fn session_changes_since(
    pool: &AnyPool,
    after: Option<i64>,
) -> Result<(i64, Vec<(i64, SessionChange)>), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT e.epoch, c.epoch, c.session_id, c.user_id, c.idle_before_ms
         FROM session_epoch e LEFT JOIN session_changes c ON c.epoch > $1
         WHERE e.id = 1 ORDER BY c.epoch",
    )
    .bind(after.unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    let mut latest = 0;
    let mut changes = Vec::new();
    for row in rows {
        latest = row.try_get(0)?;
        let Some(epoch) = row.try_get::<Option<i64>, _>(1)? else {
            continue;
        };
        let change = match (
            row.try_get::<Option<String>, _>(2)?,
            row.try_get::<Option<String>, _>(3)?,
            row.try_get::<Option<i64>, _>(4)?,
        ) {
            (Some(session), _, _) => SessionChange::Session(session),
            (None, Some(user), _) => SessionChange::User(user),
            (None, None, Some(at)) => SessionChange::GuestsIdleBefore(at),
            (None, None, None) => {
                return Err(sqlx::Error::Decode(
                    format!("session change {epoch} names nothing").into(),
                ))
            }
        };
        changes.push((epoch, change));
    }
    Ok((latest, changes))
}

/// Deletes the record of session changes made before `before_ms`. An instance that had
/// not read them since finds a gap in the epochs and forgets every session it knew.
pub async fn prune_session_changes(pool: &AnyPool, before_ms: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM session_changes WHERE at_ms < $1")
        .bind(before_ms)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// When the session with this token hash was replaced by a sign-in or sign-out, if it was.
pub async fn replaced_at_ms(pool: &AnyPool, token_hash: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT revoked_at_ms FROM sessions
         WHERE token_hash = $1 AND replaced_by IS NOT NULL AND revoked_at_ms IS NOT NULL",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await
}

/// The live sessions of an account, newest first.
pub async fn sessions_of_user(
    pool: &AnyPool,
    user_id: &str,
) -> Result<Vec<SessionInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, created_at_ms, last_seen_ms, user_agent FROM sessions
         WHERE user_id = $1 AND revoked_at_ms IS NULL ORDER BY created_at_ms DESC",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(SessionInfo {
                id: row.try_get(0)?,
                kind: SessionKind::User,
                created_at_ms: row.try_get(1)?,
                last_seen_ms: row.try_get(2)?,
                user_agent: row.try_get(3)?,
                current: false,
            })
        })
        .collect()
}

/// Whether a live session with `id` belongs to `user_id`.
pub async fn session_belongs_to(
    pool: &AnyPool,
    id: &str,
    user_id: &str,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(
        "SELECT 1 FROM sessions WHERE id = $1 AND user_id = $2 AND revoked_at_ms IS NULL",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.is_some())
}

/// Deletes guest sessions idle since before `idle_before_ms` that no account session
/// still links to. Returns how many were deleted.
pub async fn delete_idle_guest_sessions(
    pool: &AnyPool,
    idle_before_ms: i64,
    now_ms: i64,
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "DELETE FROM sessions WHERE user_id IS NULL AND last_seen_ms < $1
         AND id NOT IN (SELECT guest_session_id FROM sessions
                        WHERE guest_session_id IS NOT NULL AND revoked_at_ms IS NULL)",
    )
    .bind(idle_before_ms)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() > 0 {
        let change = SessionChange::GuestsIdleBefore(idle_before_ms);
        record_session_change(&mut tx, change, now_ms).await?;
    }
    tx.commit().await?;
    Ok(done.rows_affected())
}

pub struct NewUser<'a> {
    pub id: &'a str,
    pub username: &'a str,
    pub username_key: &'a str,
    pub password_hash: &'a str,
    pub now_ms: i64,
}

/// Inserts an account and returns its role: `admin` for the installation's first
/// account (recorded in the role log), `viewer` for every later one. A taken username is
/// a unique violation.
pub async fn insert_user(
    pool: &AnyPool,
    backend: DatabaseBackend,
    change_id: &str,
    u: NewUser<'_>,
) -> Result<Role, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if backend == DatabaseBackend::Postgres {
        // Two first sign-ups at once: the second waits and becomes a viewer.
        sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
    }
    let role: String = sqlx::query_scalar(
        "INSERT INTO users (id, username, username_key, password_hash, created_at_ms, role)
         SELECT $1, $2, $3, $4, $5,
                CASE WHEN EXISTS (SELECT 1 FROM users) THEN 'viewer' ELSE 'admin' END
         RETURNING role",
    )
    .bind(u.id)
    .bind(u.username)
    .bind(u.username_key)
    .bind(u.password_hash)
    .bind(u.now_ms)
    .fetch_one(&mut *tx)
    .await?;
    let role = parse_role(&role);
    if role == Role::Admin {
        insert_role_change(
            &mut tx,
            RoleChangeRow {
                id: change_id,
                at_ms: u.now_ms,
                user_id: u.id,
                actor_id: None,
                actor_name: "first account of this installation",
                before: None,
                after: role,
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(role)
}

/// One entry of the role log.
pub struct RoleChangeRow<'a> {
    pub id: &'a str,
    pub at_ms: i64,
    pub user_id: &'a str,
    pub actor_id: Option<&'a str>,
    pub actor_name: &'a str,
    pub before: Option<Role>,
    pub after: Role,
}

async fn insert_role_change(
    conn: &mut AnyConnection,
    c: RoleChangeRow<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO role_changes (id, at_ms, user_id, actor_id, actor_name, role_before, role_after)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(c.id)
    .bind(c.at_ms)
    .bind(c.user_id)
    .bind(c.actor_id)
    .bind(c.actor_name)
    .bind(c.before.map(Role::as_str))
    .bind(c.after.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Why a role change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RoleChangeError {
    #[error("there is no account {0:?}")]
    NoSuchUser(String),
    #[error("{0} is the last admin: grant admin to another account first")]
    LastAdmin(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Sets `user_id`'s role, logging the change, unless that would leave no admin. Returns
/// the role before (equal to `after` when nothing changed; nothing is logged then).
/// The admins are counted under a lock, so two admins demoting each other at once
/// cannot both succeed.
pub async fn set_role(
    pool: &AnyPool,
    backend: DatabaseBackend,
    change: RoleChangeRow<'_>,
) -> Result<Role, RoleChangeError> {
    let mut tx = pool.begin().await?;
    if backend == DatabaseBackend::Postgres {
        sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
    } else {
        // Take SQLite's write lock before reading, so the count below stays true.
        sqlx::query("UPDATE users SET role = role WHERE id = $1")
            .bind(change.user_id)
            .execute(&mut *tx)
            .await?;
    }
    let row = sqlx::query("SELECT username, role FROM users WHERE id = $1")
        .bind(change.user_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| RoleChangeError::NoSuchUser(change.user_id.to_owned()))?;
    let username: String = row.try_get(0)?;
    let before = parse_role(&row.try_get::<String, _>(1)?);
    if before == change.after {
        return Ok(before);
    }
    if before == Role::Admin {
        let admins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'")
            .fetch_one(&mut *tx)
            .await?;
        if admins <= 1 {
            return Err(RoleChangeError::LastAdmin(username));
        }
    }
    sqlx::query("UPDATE users SET role = $2 WHERE id = $1")
        .bind(change.user_id)
        .bind(change.after.as_str())
        .execute(&mut *tx)
        .await?;
    let (user_id, at_ms) = (change.user_id.to_owned(), change.at_ms);
    insert_role_change(
        &mut tx,
        RoleChangeRow {
            before: Some(before),
            ..change
        },
    )
    .await?;
    record_session_change(&mut tx, SessionChange::User(user_id), at_ms).await?;
    tx.commit().await?;
    Ok(before)
}

/// The account with this case-insensitive username: its id and role.
pub async fn user_id_by_username_key(
    pool: &AnyPool,
    username_key: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM users WHERE username_key = $1")
        .bind(username_key)
        .fetch_optional(pool)
        .await
}

/// Every account with its role and live sessions, oldest first.
pub async fn users_with_roles(pool: &AnyPool) -> Result<Vec<AdminUser>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT u.id, u.username, u.role, u.created_at_ms,
                COUNT(s.id), MAX(s.last_seen_ms)
         FROM users u
         LEFT JOIN sessions s ON s.user_id = u.id AND s.revoked_at_ms IS NULL
         GROUP BY u.id, u.username, u.role, u.created_at_ms
         ORDER BY u.created_at_ms, u.id",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(AdminUser {
                id: row.try_get(0)?,
                username: row.try_get(1)?,
                role: parse_role(&row.try_get::<String, _>(2)?),
                created_at_ms: row.try_get(3)?,
                sessions: row.try_get::<i64, _>(4)? as u64,
                last_seen_ms: row.try_get(5)?,
            })
        })
        .collect()
}

/// The latest role changes, newest first.
pub async fn role_changes(pool: &AnyPool, limit: i64) -> Result<Vec<RoleAudit>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.id, c.at_ms, c.user_id, u.username, c.actor_id, c.actor_name, c.role_before, c.role_after
         FROM role_changes c JOIN users u ON u.id = c.user_id
         ORDER BY c.at_ms DESC, c.id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(RoleAudit {
                id: row.try_get(0)?,
                at_ms: row.try_get(1)?,
                user_id: row.try_get(2)?,
                username: row.try_get(3)?,
                actor_id: row.try_get(4)?,
                actor_name: row.try_get(5)?,
                before: row.try_get::<Option<String>, _>(6)?.map(|r| parse_role(&r)),
                after: parse_role(&row.try_get::<String, _>(7)?),
            })
        })
        .collect()
}

/// An account as sign-in finds it.
pub struct UserRow {
    pub user: UserInfo,
    pub password_hash: String,
    pub role: Role,
}

/// The account, its password hash and its role, by case-insensitive username.
pub async fn user_by_username_key(
    pool: &AnyPool,
    username_key: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    let row =
        sqlx::query("SELECT id, username, password_hash, role FROM users WHERE username_key = $1")
            .bind(username_key)
            .fetch_optional(pool)
            .await?;
    row.map(|row| {
        Ok(UserRow {
            user: UserInfo {
                id: row.try_get(0)?,
                username: row.try_get(1)?,
            },
            password_hash: row.try_get(2)?,
            role: parse_role(&row.try_get::<String, _>(3)?),
        })
    })
    .transpose()
}

/// A stored role; an unknown value (written by a newer version) reads as the least role.
fn parse_role(text: &str) -> Role {
    Role::parse(text).unwrap_or(Role::Viewer)
}
