//! The permission the tracing API checks (see `crate::auth::access`): any signed-in
//! account may read traces.

use meridian_shared::api::Role;

use crate::auth::access::Permission;

/// Open traces, search them, see the services and their map.
pub const READ: Permission = Permission {
    name: "tracing:read",
    role: Role::Viewer,
    description: "search and open traces, list services and their dependencies",
};

pub const PERMISSIONS: &[Permission] = &[READ];
