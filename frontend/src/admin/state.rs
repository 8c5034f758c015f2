//! The admin page's state as a pure reducer ([`AdminState`], [`AdminAction`]) and what
//! the page derives from it: who may see it ([`Gate`]), what each role may do
//! ([`role_matrix`]), and how times read. Tested natively.
//!
//! Invariants: only the answer to the latest list request is taken; a role change in
//! flight shows its target role until the server answers, then the server's answer (or
//! the previous role and the refusal).

use std::collections::BTreeMap;
use std::rc::Rc;

use meridian_shared::api::{AdminUser, AdminUserList, PermissionInfo, Role};
use yew::Reducible;

use super::ROLES_PERMISSION;
use crate::net::http::HttpError;
use crate::session::SessionState;

/// Who may see the admin page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// `/api/auth/me` has not answered yet.
    Loading,
    /// A guest: asked to sign in.
    SignIn,
    /// Signed in without `admin:roles` (the role is shown).
    Forbidden(Option<Role>),
    Admin,
}

impl Gate {
    pub fn of(session: &SessionState) -> Gate {
        if session.is_loading() {
            Gate::Loading
        } else if !session.is_user() {
            Gate::SignIn
        } else if session.allows(ROLES_PERMISSION) {
            Gate::Admin
        } else {
            Gate::Forbidden(session.role())
        }
    }
}

/// What the admin page holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdminState {
    /// The latest list the server sent.
    pub list: Option<AdminUserList>,
    pub loading: bool,
    /// Why the list could not be loaded.
    pub error: Option<HttpError>,
    /// Role changes in flight: account id to the role asked for.
    pub pending: BTreeMap<String, Role>,
    /// The last refusal of a role change, by account id.
    pub refusals: BTreeMap<String, String>,
    request: u64,
}

/// A change to the [`AdminState`].
#[derive(Debug, Clone, PartialEq)]
pub enum AdminAction {
    /// List request number `request` went out.
    Requested(u64),
    Loaded {
        request: u64,
        answer: Result<AdminUserList, HttpError>,
    },
    /// The role of account `user_id` is being changed to `role`.
    RoleRequested { user_id: String, role: Role },
    /// The server's answer to it.
    RoleAnswered {
        user_id: String,
        answer: Result<AdminUser, HttpError>,
    },
}

impl AdminState {
    pub fn apply(&mut self, action: AdminAction) {
        match action {
            AdminAction::Requested(request) => {
                self.request = request;
                self.loading = true;
            }
            AdminAction::Loaded { request, answer } => {
                if request != self.request {
                    return;
                }
                self.loading = false;
                match answer {
                    Ok(list) => {
                        self.list = Some(list);
                        self.error = None;
                    }
                    Err(error) => self.error = Some(error),
                }
            }
            AdminAction::RoleRequested { user_id, role } => {
                self.refusals.remove(&user_id);
                self.pending.insert(user_id, role);
            }
            AdminAction::RoleAnswered { user_id, answer } => {
                self.pending.remove(&user_id);
                match answer {
                    Ok(user) => {
                        if let Some(list) = &mut self.list {
                            if let Some(row) = list.users.iter_mut().find(|u| u.id == user.id) {
                                *row = user;
                            }
                        }
                    }
                    Err(error) => {
                        self.refusals.insert(user_id, error.message());
                    }
                }
            }
        }
    }

    /// The role a row's select shows: the one asked for while a change is in flight,
    /// else the account's.
    pub fn shown_role(&self, user: &AdminUser) -> Role {
        self.pending.get(&user.id).copied().unwrap_or(user.role)
    }

    /// How many accounts hold each role.
    pub fn role_counts(&self) -> BTreeMap<Role, usize> {
        let mut counts = BTreeMap::new();
        for user in self.list.iter().flat_map(|list| &list.users) {
            *counts.entry(user.role).or_insert(0) += 1;
        }
        counts
    }
}

impl Reducible for AdminState {
    type Action = AdminAction;

    fn reduce(self: Rc<Self>, action: AdminAction) -> Rc<Self> {
        let mut next = (*self).clone();
        next.apply(action);
        Rc::new(next)
    }
}

/// What each role may do: every permission with, per role in [`Role::ALL`] order,
/// whether that role holds it (a permission belongs to its least role and every role
/// above).
pub fn role_matrix(permissions: &[PermissionInfo]) -> Vec<(PermissionInfo, [bool; 3])> {
    let mut rows: Vec<(PermissionInfo, [bool; 3])> = permissions
        .iter()
        .map(|permission| {
            let held = Role::ALL.map(|role| role >= permission.role);
            (permission.clone(), held)
        })
        .collect();
    rows.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    rows
}

/// A duration in words: "just now", "5 min ago", "3 h ago", "2 days ago".
pub fn ago(now_ms: i64, at_ms: i64) -> String {
    let seconds = (now_ms - at_ms).max(0) / 1000;
    match seconds {
        0..=59 => "just now".to_owned(),
        60..=3_599 => format!("{} min ago", seconds / 60),
        3_600..=86_399 => format!("{} h ago", seconds / 3_600),
        _ => match seconds / 86_400 {
            1 => "1 day ago".to_owned(),
            days => format!("{days} days ago"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::api::{Access, ApiErrorBody, Me, RoleAudit, SessionKind, UserInfo};

    fn user(id: &str, role: Role) -> AdminUser {
        AdminUser {
            id: id.into(),
            username: format!("name-{id}"),
            role,
            created_at_ms: 1,
            sessions: 1,
            last_seen_ms: Some(2),
        }
    }

    fn list(users: Vec<AdminUser>) -> AdminUserList {
        AdminUserList {
            users,
            permissions: vec![
                PermissionInfo {
                    name: "flags:write".into(),
                    role: Role::Editor,
                    description: "change flags".into(),
                },
                PermissionInfo {
                    name: "admin:roles".into(),
                    role: Role::Admin,
                    description: "change roles".into(),
                },
                PermissionInfo {
                    name: "flags:read".into(),
                    role: Role::Viewer,
                    description: "read flags".into(),
                },
            ],
            audit: vec![RoleAudit {
                id: "r1".into(),
                at_ms: 1,
                user_id: "u1".into(),
                username: "name-u1".into(),
                actor_id: None,
                actor_name: "system".into(),
                before: None,
                after: Role::Admin,
            }],
        }
    }

    fn session(access: Option<Access>, user: bool) -> SessionState {
        SessionState::Known(Me {
            session_id: "s".into(),
            kind: if user {
                SessionKind::User
            } else {
                SessionKind::Guest
            },
            user: user.then(|| UserInfo {
                id: "u1".into(),
                username: "ann".into(),
            }),
            guest_session_id: None,
            access,
        })
    }

    #[test]
    fn only_admins_pass_the_gate() {
        assert_eq!(Gate::of(&SessionState::Loading), Gate::Loading);
        assert_eq!(Gate::of(&session(None, false)), Gate::SignIn);
        let viewer = Access {
            role: Role::Viewer,
            permissions: vec!["flags:read".into()],
        };
        assert_eq!(
            Gate::of(&session(Some(viewer), true)),
            Gate::Forbidden(Some(Role::Viewer))
        );
        let admin = Access {
            role: Role::Admin,
            permissions: vec!["admin:roles".into()],
        };
        assert_eq!(Gate::of(&session(Some(admin), true)), Gate::Admin);
        assert_eq!(Gate::of(&session(None, true)), Gate::Forbidden(None));
    }

    #[test]
    fn the_latest_list_wins_and_role_changes_show_the_servers_answer() {
        let mut state = AdminState::default();
        state.apply(AdminAction::Requested(1));
        state.apply(AdminAction::Requested(2));
        state.apply(AdminAction::Loaded {
            request: 1,
            answer: Ok(list(vec![])),
        });
        assert!(state.list.is_none() && state.loading);
        state.apply(AdminAction::Loaded {
            request: 2,
            answer: Ok(list(vec![
                user("u1", Role::Admin),
                user("u2", Role::Viewer),
            ])),
        });
        assert!(!state.loading);
        let u2 = state.list.as_ref().unwrap().users[1].clone();

        state.apply(AdminAction::RoleRequested {
            user_id: "u2".into(),
            role: Role::Editor,
        });
        assert_eq!(state.shown_role(&u2), Role::Editor, "shown while in flight");
        state.apply(AdminAction::RoleAnswered {
            user_id: "u2".into(),
            answer: Ok(user("u2", Role::Editor)),
        });
        let u2 = state.list.as_ref().unwrap().users[1].clone();
        assert_eq!(
            (u2.role, state.shown_role(&u2)),
            (Role::Editor, Role::Editor)
        );
        assert_eq!(state.role_counts()[&Role::Editor], 1);

        // The last admin cannot be demoted: the row goes back and says why.
        let u1 = state.list.as_ref().unwrap().users[0].clone();
        state.apply(AdminAction::RoleRequested {
            user_id: "u1".into(),
            role: Role::Viewer,
        });
        state.apply(AdminAction::RoleAnswered {
            user_id: "u1".into(),
            answer: Err(HttpError::Api {
                status: 409,
                body: ApiErrorBody {
                    code: "last_admin".into(),
                    message: "The last admin cannot be demoted.".into(),
                },
            }),
        });
        assert_eq!(state.shown_role(&u1), Role::Admin);
        assert_eq!(
            state.refusals.get("u1").map(String::as_str),
            Some("The last admin cannot be demoted.")
        );
        // A new attempt clears the refusal.
        state.apply(AdminAction::RoleRequested {
            user_id: "u1".into(),
            role: Role::Editor,
        });
        assert!(state.refusals.is_empty());

        // A failed refresh keeps the list.
        state.apply(AdminAction::Requested(3));
        state.apply(AdminAction::Loaded {
            request: 3,
            answer: Err(HttpError::Network("down".into())),
        });
        assert!(state.list.is_some() && state.error.is_some());
    }

    #[test]
    fn each_role_holds_its_permissions_and_those_below() {
        let matrix = role_matrix(&list(vec![]).permissions);
        let names: Vec<&str> = matrix.iter().map(|(p, _)| p.name.as_str()).collect();
        assert_eq!(names, vec!["admin:roles", "flags:read", "flags:write"]);
        // Role::ALL is viewer, editor, admin.
        assert_eq!(matrix[0].1, [false, false, true]);
        assert_eq!(matrix[1].1, [true, true, true]);
        assert_eq!(matrix[2].1, [false, true, true]);
    }

    #[test]
    fn times_read_as_durations() {
        let now = 10 * 86_400_000;
        assert_eq!(ago(now, now + 5), "just now");
        assert_eq!(ago(now, now - 59_000), "just now");
        assert_eq!(ago(now, now - 5 * 60_000), "5 min ago");
        assert_eq!(ago(now, now - 3 * 3_600_000), "3 h ago");
        assert_eq!(ago(now, now - 86_400_000), "1 day ago");
        assert_eq!(ago(now, now - 9 * 86_400_000), "9 days ago");
    }
}
