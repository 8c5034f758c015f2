//! HTTP request and response bodies shared by the server and the web UI.

use serde::{Deserialize, Serialize};

/// The one error shape of every Meridian endpoint: `{"code": ..., "message": ...}`.
///
/// `code` is stable and machine-readable (`snake_case`); `message` is for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiErrorBody {
    pub code: String,
    pub message: String,
}

/// Which database holds the authoritative state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DatabaseBackend {
    Sqlite,
    Postgres,
}

impl DatabaseBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseBackend::Sqlite => "sqlite",
            DatabaseBackend::Postgres => "postgres",
        }
    }
}

/// `GET /api/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthResponse {
    /// Always `"ok"` when the server answers and its database does.
    pub status: String,
    /// The server's crate version.
    pub version: String,
    pub database: DatabaseBackend,
    /// Seconds since this server process started.
    pub uptime_seconds: u64,
    /// A random id of this server process, so that clients can tell instances apart.
    pub instance_id: String,
    /// Open realtime connections on this instance.
    pub realtime_connections: u64,
}

/// `POST /api/auth/signup` and `POST /api/auth/signin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Whether a session belongs to a guest or to a signed-in account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    Guest,
    User,
}

/// A signed-up account, as others may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserInfo {
    pub id: String,
    pub username: String,
}

/// `GET /api/auth/me`, and the answer to sign-up, sign-in and sign-out: who the request's
/// session belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    /// The session's public id (never its secret token).
    pub session_id: String,
    pub kind: SessionKind,
    /// The account, for a signed-in session.
    pub user: Option<UserInfo>,
    /// For a session created by signing in: the guest session it came from, so that
    /// systems can merge that guest's state into the account.
    pub guest_session_id: Option<String>,
}

/// One of the caller's own sessions, in `GET /api/auth/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    pub id: String,
    pub kind: SessionKind,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    pub last_seen_ms: i64,
    pub user_agent: Option<String>,
    /// True for the session that made this request.
    pub current: bool,
}

/// `GET /api/auth/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionList {
    pub sessions: Vec<SessionInfo>,
}
