//! SQL for accounts and sessions.

use meridian_shared::api::{SessionInfo, SessionKind, UserInfo};
use sqlx::{AnyPool, Row};

/// A session row joined with its account.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: String,
    pub user: Option<UserInfo>,
    pub guest_session_id: Option<String>,
    pub last_seen_ms: i64,
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
        "SELECT s.id, s.user_id, u.username, s.guest_session_id, s.last_seen_ms
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
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at_ms = $2 WHERE id = $1 AND revoked_at_ms IS NULL",
    )
    .bind(id)
    .bind(now_ms)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
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
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM sessions WHERE user_id IS NULL AND last_seen_ms < $1
         AND id NOT IN (SELECT guest_session_id FROM sessions
                        WHERE guest_session_id IS NOT NULL AND revoked_at_ms IS NULL)",
    )
    .bind(idle_before_ms)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

pub struct NewUser<'a> {
    pub id: &'a str,
    pub username: &'a str,
    pub username_key: &'a str,
    pub password_hash: &'a str,
    pub now_ms: i64,
}

/// Inserts an account; a taken username is a unique violation.
pub async fn insert_user(pool: &AnyPool, u: NewUser<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (id, username, username_key, password_hash, created_at_ms)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(u.id)
    .bind(u.username)
    .bind(u.username_key)
    .bind(u.password_hash)
    .bind(u.now_ms)
    .execute(pool)
    .await?;
    Ok(())
}

/// The account and its password hash, by case-insensitive username.
pub async fn user_by_username_key(
    pool: &AnyPool,
    username_key: &str,
) -> Result<Option<(UserInfo, String)>, sqlx::Error> {
    let row = sqlx::query("SELECT id, username, password_hash FROM users WHERE username_key = $1")
        .bind(username_key)
        .fetch_optional(pool)
        .await?;
    row.map(|row| {
        Ok((
            UserInfo {
                id: row.try_get(0)?,
                username: row.try_get(1)?,
            },
            row.try_get(2)?,
        ))
    })
    .transpose()
}
