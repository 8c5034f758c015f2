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
    /// For a signed-in session: the account's role and the permissions it holds, as of
    /// this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
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

/// An account's role for operations: what it may change across Meridian. Documents keep
/// their own per-document sharing and carts stay per session; roles govern the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads what signed-in accounts may read.
    Viewer,
    /// Also changes what systems let editors change (flags, ...).
    Editor,
    /// Everything, including roles and keys.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Editor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A permission a system declares: a stable name (`system:action`), the least role that
/// holds it, and what it lets one do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PermissionInfo {
    pub name: String,
    pub role: Role,
    pub description: String,
}

/// The account of a signed-in session, with its role and the permissions it holds, so
/// that a page can hide or disable what it cannot do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Access {
    pub role: Role,
    /// The names of the permissions this role holds (`flags:write`, ...).
    pub permissions: Vec<String>,
}

impl Access {
    pub fn allows(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }
}

/// One account in `GET /api/admin/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminUser {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub created_at_ms: i64,
    /// Live (unrevoked) sessions of the account.
    pub sessions: u64,
    /// The latest activity of any of its sessions, if it has one.
    pub last_seen_ms: Option<i64>,
}

/// `GET /api/admin/users`: every account, the permissions each role holds, and the
/// latest role changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminUserList {
    pub users: Vec<AdminUser>,
    pub permissions: Vec<PermissionInfo>,
    /// Newest first.
    pub audit: Vec<RoleAudit>,
}

/// `PUT /api/admin/users/{user_id}/role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleChange {
    pub role: Role,
}

/// One role change: who changed whose role, when, from what to what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleAudit {
    pub id: String,
    pub at_ms: i64,
    pub user_id: String,
    pub username: String,
    /// The admin who made the change; `None` when it came from the command line
    /// (`meridian admin grant`) or from being the installation's first account.
    pub actor_id: Option<String>,
    pub actor_name: String,
    pub before: Option<Role>,
    pub after: Role,
}
