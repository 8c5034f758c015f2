//! How systems plug into the server. The composition root (`crate::AppState::start`)
//! builds one [`Platform`] from what each system declares; plumbing (auth, realtime,
//! the maintenance loop) reads it and never names a system.

use futures_util::future::BoxFuture;

use crate::auth::access::{self, Permission};
use crate::error::ApiError;

/// What systems do when a guest signs in to an account (the cart merges the guest's
/// cart). Runs before the new session exists: a failure fails the sign-in, and the
/// guest's state stays as it was for the retry.
pub trait SignInHook: Send + Sync {
    fn on_sign_in<'a>(
        &'a self,
        guest_session_id: &'a str,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
}

/// What the systems of this build declare.
#[derive(Default)]
pub struct Platform {
    permissions: Vec<Permission>,
    without_guest_session: Vec<&'static str>,
}

impl Platform {
    /// Paths that never mint a guest session: WebSockets that need an existing one, and
    /// endpoints for SDKs that authenticate otherwise (keys). A request there still
    /// carries its session when its cookie names a live one. An entry ending in `/` is a
    /// prefix; any other names a path and the paths under it.
    pub fn without_guest_session(mut self, paths: &[&'static str]) -> Platform {
        self.without_guest_session.extend_from_slice(paths);
        self
    }

    /// Whether a request to `path` may be served without minting a guest session.
    pub fn mints_no_guest_session(&self, path: &str) -> bool {
        self.without_guest_session.iter().any(|p| {
            if p.ends_with('/') {
                path.starts_with(p)
            } else {
                path.strip_prefix(p)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
        })
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_without_a_guest_session_match_whole_segments() {
        let platform = Platform::default().without_guest_session(&["/ofrep/", "/api/flags/stream"]);
        assert!(platform.mints_no_guest_session("/ofrep/v1/evaluate/flags"));
        assert!(platform.mints_no_guest_session("/api/flags/stream"));
        assert!(platform.mints_no_guest_session("/api/flags/stream/evaluated"));
        assert!(!platform.mints_no_guest_session("/api/flags/streams"));
        assert!(!platform.mints_no_guest_session("/api/flags"));
    }

    #[test]
    #[should_panic(expected = "declared twice")]
    fn a_permission_is_declared_once() {
        let _ = Platform::with_platform_permissions().permissions(&[access::MANAGE_ROLES]);
    }
}
