//! The permission the flash sale declares (see `crate::auth::access`): creating sales
//! and watching their dashboard need an admin. Buying needs no permission: guests and
//! every account may check out.

use meridian_shared::api::Role;

use crate::auth::access::Permission;

/// Create sales and see the live dashboard.
pub const ADMIN: Permission = Permission {
    name: "sales:admin",
    role: Role::Admin,
    description: "create flash sales and watch their dashboard",
};

pub const PERMISSIONS: &[Permission] = &[ADMIN];
