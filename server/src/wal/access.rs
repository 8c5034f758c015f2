//! The permissions the page's routes check (see `crate::auth::access`): every signed-in
//! account may watch the local cluster, append records and read past states; killing
//! and restarting its nodes needs an editor.

use meridian_shared::api::Role;

use crate::auth::access::Permission;

/// See the local cluster's nodes, append records, read the records and past states.
pub const READ: Permission = Permission {
    name: "wal:read",
    role: Role::Viewer,
    description: "watch the local WAL cluster, append records and read past states",
};

/// Kill (SIGKILL) and restart nodes of the local cluster.
pub const OPERATE: Permission = Permission {
    name: "wal:operate",
    role: Role::Editor,
    description: "kill and restart nodes of the local WAL cluster",
};

pub const PERMISSIONS: &[Permission] = &[READ, OPERATE];
