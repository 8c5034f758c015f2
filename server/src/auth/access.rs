//! Roles and permissions. Each system declares the permissions its routes check (a
//! stable name, the least role that holds it, a description) and registers them with
//! the platform ([`crate::platform::System::permissions`]); a handler asks the request's
//! [`Session`] for one with [`Session::require`].
//!
//! Invariants:
//! - A guest is never allowed anything that needs a permission: 401 `sign_in_required`.
//! - A signed-in account whose role lacks the permission gets 403 `forbidden`, whose
//!   message names the permission and the roles that hold it.
//! - The role is read with the session on every request, so a role change takes effect
//!   on the account's next request on every instance.

use meridian_shared::api::{Access, PermissionInfo, Role, UserInfo};

use super::Session;
use crate::error::ApiError;

/// A permission a system declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// `system:action`, e.g. `flags:write`.
    pub name: &'static str,
    /// The least role that holds it (every higher role holds it too).
    pub role: Role,
    pub description: &'static str,
}

impl Permission {
    pub fn allows(&self, role: Role) -> bool {
        role >= self.role
    }

    pub fn info(&self) -> PermissionInfo {
        PermissionInfo {
            name: self.name.to_owned(),
            role: self.role,
            description: self.description.to_owned(),
        }
    }
}

/// Changing accounts' roles: the platform's own permission.
pub const MANAGE_ROLES: Permission = Permission {
    name: "admin:roles",
    role: Role::Admin,
    description: "see every account and grant or revoke roles",
};

/// The answer for a guest where an account is needed.
pub fn sign_in_required() -> ApiError {
    ApiError::unauthorized("sign_in_required", "sign in first")
}

/// The one refusal: 403 `forbidden`, naming what was needed.
pub fn forbidden(permission: &Permission, role: Role) -> ApiError {
    let holders = Role::ALL
        .iter()
        .filter(|r| permission.allows(**r))
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(" or ");
    ApiError::forbidden(
        "forbidden",
        format!(
            "this needs the permission {} ({}: {holders}); your role is {role}",
            permission.name, permission.description
        ),
    )
}

/// What `role` may do, out of `permissions`.
pub fn access(role: Role, permissions: &[Permission]) -> Access {
    Access {
        role,
        permissions: permissions
            .iter()
            .filter(|p| p.allows(role))
            .map(|p| p.name.to_owned())
            .collect(),
    }
}

impl Session {
    /// The signed-in account, or 401 `sign_in_required`.
    pub fn signed_in(&self) -> Result<&UserInfo, ApiError> {
        self.user.as_ref().ok_or_else(sign_in_required)
    }

    /// The signed-in account if its role holds `permission`; else 401 for a guest and
    /// 403 `forbidden` for an account.
    pub fn require(&self, permission: &Permission) -> Result<&UserInfo, ApiError> {
        let user = self.signed_in()?;
        let role = self.role.unwrap_or(Role::Viewer);
        if permission.allows(role) {
            Ok(user)
        } else {
            Err(forbidden(permission, role))
        }
    }

    /// Whether the session's account holds `permission` (false for a guest).
    pub fn may(&self, permission: &Permission) -> bool {
        self.user.is_some() && self.role.is_some_and(|r| permission.allows(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITE: Permission = Permission {
        name: "things:write",
        role: Role::Editor,
        description: "change things",
    };

    fn session(role: Option<Role>) -> Session {
        Session {
            id: "s".into(),
            user: role.map(|_| UserInfo {
                id: "u".into(),
                username: "alice".into(),
            }),
            guest_session_id: None,
            role,
        }
    }

    #[test]
    fn higher_roles_hold_what_lower_ones_do() {
        assert!(!WRITE.allows(Role::Viewer));
        assert!(WRITE.allows(Role::Editor));
        assert!(WRITE.allows(Role::Admin));
    }

    #[test]
    fn guests_must_sign_in_and_viewers_are_refused_by_name() {
        let err = session(None).require(&WRITE).unwrap_err();
        assert_eq!((err.status.as_u16(), err.code), (401, "sign_in_required"));
        let err = session(Some(Role::Viewer)).require(&WRITE).unwrap_err();
        assert_eq!((err.status.as_u16(), err.code), (403, "forbidden"));
        assert!(err.message.contains("things:write"), "{}", err.message);
        assert!(err.message.contains("editor or admin"), "{}", err.message);
        assert!(session(Some(Role::Editor)).require(&WRITE).is_ok());
        assert!(!session(None).may(&WRITE));
    }

    #[test]
    fn access_lists_what_the_role_holds() {
        let all = [WRITE, MANAGE_ROLES];
        assert!(access(Role::Viewer, &all).permissions.is_empty());
        assert_eq!(access(Role::Editor, &all).permissions, ["things:write"]);
        assert_eq!(access(Role::Admin, &all).permissions.len(), 2);
    }
}
