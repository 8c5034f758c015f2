//! Who this browser's session belongs to, as every page sees it (the app provides it as
//! a context, fed by the realtime client's `on_session`).
//!
//! Invariants: a failed refresh never turns a known user into a guest (the cookie did
//! not change because the server was unreachable); the name shown for a guest is always
//! "Guest".

use std::rc::Rc;

use meridian_shared::api::{Access, Me, Role, SessionKind};
use yew::Reducible;

use crate::net::http::HttpError;

/// The name shown for a session without an account.
pub const GUEST_NAME: &str = "Guest";

/// What the page knows about its session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SessionState {
    /// `/api/auth/me` has not answered yet.
    #[default]
    Loading,
    Known(Me),
    /// The session could not be learned; the page acts as a guest until it can.
    Unknown {
        error: String,
    },
}

/// A change to [`SessionState`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionAction {
    Loaded(Me),
    Failed(String),
}

impl From<Result<Me, HttpError>> for SessionAction {
    fn from(result: Result<Me, HttpError>) -> SessionAction {
        match result {
            Ok(me) => SessionAction::Loaded(me),
            Err(error) => SessionAction::Failed(error.message()),
        }
    }
}

impl Reducible for SessionState {
    type Action = SessionAction;

    fn reduce(self: Rc<Self>, action: SessionAction) -> Rc<Self> {
        match action {
            SessionAction::Loaded(me) => Rc::new(SessionState::Known(me)),
            SessionAction::Failed(_) if matches!(*self, SessionState::Known(_)) => self,
            SessionAction::Failed(error) => Rc::new(SessionState::Unknown { error }),
        }
    }
}

impl SessionState {
    pub fn is_loading(&self) -> bool {
        matches!(self, SessionState::Loading)
    }

    /// The signed-in account's username, if any.
    pub fn username(&self) -> Option<&str> {
        match self {
            SessionState::Known(Me {
                kind: SessionKind::User,
                user: Some(user),
                ..
            }) => Some(&user.username),
            _ => None,
        }
    }

    pub fn is_user(&self) -> bool {
        self.username().is_some()
    }

    /// The signed-in account's id, if any.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            SessionState::Known(Me {
                kind: SessionKind::User,
                user: Some(user),
                ..
            }) => Some(&user.id),
            _ => None,
        }
    }

    /// The signed-in account's role and permissions, as `/api/auth/me` last told them.
    pub fn access(&self) -> Option<&Access> {
        match self {
            SessionState::Known(me) if self.is_user() => me.access.as_ref(),
            _ => None,
        }
    }

    /// The signed-in account's role, if the server told it.
    pub fn role(&self) -> Option<Role> {
        self.access().map(|access| access.role)
    }

    /// Whether the signed-in account holds `permission` (`flags:write`, `admin:roles`,
    /// ...). A guest holds none.
    pub fn allows(&self, permission: &str) -> bool {
        self.access()
            .is_some_and(|access| access.allows(permission))
    }

    /// The name to show and to sign messages with: the username, or "Guest".
    pub fn display_name(&self) -> &str {
        self.username().unwrap_or(GUEST_NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::api::UserInfo;

    fn guest() -> Me {
        Me {
            session_id: "s-guest".into(),
            kind: SessionKind::Guest,
            user: None,
            guest_session_id: None,
            access: None,
        }
    }

    fn alice() -> Me {
        Me {
            session_id: "s-alice".into(),
            kind: SessionKind::User,
            user: Some(UserInfo {
                id: "u1".into(),
                username: "alice".into(),
            }),
            guest_session_id: Some("s-guest".into()),
            access: None,
        }
    }

    fn reduce(state: SessionState, action: SessionAction) -> SessionState {
        (*Rc::new(state).reduce(action)).clone()
    }

    #[test]
    fn a_guest_is_called_guest() {
        let state = reduce(SessionState::Loading, SessionAction::Loaded(guest()));
        assert_eq!(state.display_name(), "Guest");
        assert!(!state.is_user());
        assert!(!state.is_loading());
        assert!(SessionState::Loading.is_loading());
    }

    #[test]
    fn a_user_is_called_by_name() {
        let state = reduce(SessionState::Loading, SessionAction::Loaded(alice()));
        assert_eq!(state.username(), Some("alice"));
        assert_eq!(state.display_name(), "alice");
        let signed_out = reduce(state, SessionAction::Loaded(guest()));
        assert_eq!(signed_out.display_name(), "Guest");
    }

    #[test]
    fn a_failed_refresh_keeps_what_is_known() {
        let state = reduce(SessionState::Loading, SessionAction::Loaded(alice()));
        let state = reduce(state, SessionAction::Failed("offline".into()));
        assert_eq!(state.username(), Some("alice"));
        let unknown = reduce(
            SessionState::Loading,
            SessionAction::Failed("offline".into()),
        );
        assert_eq!(
            unknown,
            SessionState::Unknown {
                error: "offline".into()
            }
        );
        assert_eq!(unknown.display_name(), "Guest");
    }

    #[test]
    fn the_role_and_permissions_are_the_accounts() {
        let mut me = alice();
        me.access = Some(Access {
            role: Role::Editor,
            permissions: vec!["flags:read".into(), "flags:write".into()],
        });
        let state = reduce(SessionState::Loading, SessionAction::Loaded(me.clone()));
        assert_eq!(state.role(), Some(Role::Editor));
        assert_eq!(state.user_id(), Some("u1"));
        assert!(state.allows("flags:write"));
        assert!(!state.allows("admin:roles"));
        // A role change arrives as a new answer of `/api/auth/me`.
        me.access = Some(Access {
            role: Role::Admin,
            permissions: vec!["admin:roles".into()],
        });
        let state = reduce(state, SessionAction::Loaded(me));
        assert!(state.allows("admin:roles"));
        assert!(!state.allows("flags:write"));
        // A guest holds nothing, whatever the answer says.
        let mut guest = guest();
        guest.access = Some(Access {
            role: Role::Admin,
            permissions: vec!["admin:roles".into()],
        });
        let state = reduce(state, SessionAction::Loaded(guest));
        assert_eq!((state.role(), state.allows("admin:roles")), (None, false));
        assert_eq!(SessionState::Loading.user_id(), None);
    }

    #[test]
    fn http_results_become_actions() {
        assert_eq!(
            SessionAction::from(Ok(guest())),
            SessionAction::Loaded(guest())
        );
        let failed = SessionAction::from(Err(HttpError::Network("down".into())));
        assert!(matches!(failed, SessionAction::Failed(message) if message.contains("reach")));
    }
}
