//! How systems plug into the server. The composition root (`crate::AppState::start`)
//! builds one [`Platform`] from what each system declares; plumbing (auth, realtime,
//! the maintenance loop) reads it and never names a system.

use crate::auth::access::{self, Permission};

/// What the systems of this build declare.
#[derive(Default)]
pub struct Platform {
    permissions: Vec<Permission>,
}

impl Platform {
    /// Adds the permissions a system checks.
    pub fn permissions(mut self, declared: &[Permission]) -> Platform {
        for permission in declared {
            assert!(
                !self.permissions.iter().any(|p| p.name == permission.name),
                "permission {} declared twice",
                permission.name
            );
            self.permissions.push(*permission);
        }
        self
    }

    /// Every declared permission, the platform's own first.
    pub fn declared_permissions(&self) -> &[Permission] {
        &self.permissions
    }

    pub fn with_platform_permissions() -> Platform {
        Platform::default().permissions(&[access::MANAGE_ROLES])
    }
}
