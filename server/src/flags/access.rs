//! The permissions the feature flags declare (see `crate::auth::access`). Reading is
//! open to every signed-in account; changing flags, segments and environments, the kill
//! switch and approving another's change need an editor; delivery keys need an admin.

use meridian_shared::api::Role;

use crate::auth::access::Permission;

/// See every flag, segment, environment, audit entry and approval; follow the stream
/// from the page.
pub const READ: Permission = Permission {
    name: "flags:read",
    role: Role::Viewer,
    description: "read flags, segments, the audit log and the configuration stream",
};

/// Create, change, kill and delete flags and segments; approve or reject another
/// account's proposed change; set which environments require approval.
pub const WRITE: Permission = Permission {
    name: "flags:write",
    role: Role::Editor,
    description: "create, change, kill, delete and approve flags and segments",
};

/// Create and revoke the delivery keys of an environment.
pub const MANAGE_KEYS: Permission = Permission {
    name: "flags:keys",
    role: Role::Admin,
    description: "create and revoke the server and client keys of environments",
};

pub const PERMISSIONS: &[Permission] = &[READ, WRITE, MANAGE_KEYS];

/// The SDK endpoints: they authenticate with delivery keys (or the page's session
/// cookie) and never mint a guest session.
pub const WITHOUT_GUEST_SESSION: &[&str] = &["/ofrep/", "/api/flags/stream"];
