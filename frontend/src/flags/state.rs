//! The flags page's state as a pure reducer ([`FlagsPageState`], [`FlagsAction`]): the
//! environment shown, the stream's latest view, what the admin API answered, the flag
//! selected, the preview's context; and what the page derives from it for an account's
//! [`FlagAccess`] ([`FlagsPageState::view`]). Tested natively.
//!
//! Invariants: only the answer to the latest admin request is taken (an older one that
//! arrives late is dropped); a failed refresh keeps the list it had; changing the
//! environment forgets the previous environment's stream view.

use std::rc::Rc;

use meridian_shared::api::Role;
use meridian_shared::flags::admin::{EnvironmentList, EnvironmentSettings, FlagList};
use meridian_shared::flags::{EvaluationContext, Flag, ENVIRONMENTS};
use yew::Reducible;

use super::dom::is_sign_in_required;
use super::permission;
use super::stream::{LiveConfig, LiveView, StreamState};
use super::view::{flag_rows, parse_context, FlagRow};
use super::DEFAULT_ENVIRONMENT;
use crate::net::http::HttpError;
use crate::session::SessionState;

/// What the signed-in account may do with flags, from `/api/auth/me`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlagAccess {
    pub signed_in: bool,
    /// The account's role (none for a guest, or a server that does not tell).
    pub role: Option<Role>,
    /// See the flags, the audit log and approvals (`flags:read`).
    pub read: bool,
    /// Create, change, kill, delete and approve (`flags:write`).
    pub write: bool,
    /// Create and revoke delivery keys (`flags:keys`).
    pub keys: bool,
}

impl FlagAccess {
    /// The access of `session`. A signed-in session whose answer carries no `access` is
    /// from a server without roles, where every account could do everything.
    pub fn of(session: &SessionState) -> FlagAccess {
        if !session.is_user() {
            return FlagAccess::default();
        }
        match session.access() {
            Some(access) => FlagAccess {
                signed_in: true,
                role: Some(access.role),
                read: access.allows(permission::READ),
                write: access.allows(permission::WRITE),
                keys: access.allows(permission::KEYS),
            },
            None => FlagAccess {
                signed_in: true,
                role: None,
                read: true,
                write: true,
                keys: true,
            },
        }
    }
}

/// Whether the page follows the configuration stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamAccess {
    /// `/api/auth/me` has not answered yet.
    Waiting,
    Follow,
    /// The server would refuse the stream, for the reason given.
    Refused(&'static str),
}

/// Whether an account with `access` follows the stream: it takes `flags:read`, as the
/// server does (an anonymous request gets 401).
pub fn stream_access(session_loading: bool, access: &FlagAccess) -> StreamAccess {
    if session_loading {
        StreamAccess::Waiting
    } else if !access.signed_in {
        StreamAccess::Refused("Sign in to follow the live configuration.")
    } else if !access.read {
        StreamAccess::Refused("Your role cannot read flags.")
    } else {
        StreamAccess::Follow
    }
}

/// What the page holds from the admin API.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdminData {
    pub list: Option<FlagList>,
    pub environments: Vec<EnvironmentSettings>,
    pub loading: bool,
    pub error: Option<HttpError>,
}

/// The flags page's state.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagsPageState {
    pub environment: String,
    pub live: LiveView,
    pub admin: AdminData,
    /// Bumped after every change made on the page: the panels that read the admin API
    /// load again.
    pub refresh: u64,
    /// The flag chosen in the list (the first one is shown when none is).
    pub selected: Option<String>,
    pub context_key: String,
    pub context_attributes: String,
    /// The admin request whose answer is awaited (0: none yet).
    admin_request: u64,
}

impl Default for FlagsPageState {
    fn default() -> FlagsPageState {
        FlagsPageState {
            environment: DEFAULT_ENVIRONMENT.to_owned(),
            live: LiveView::default(),
            admin: AdminData::default(),
            refresh: 0,
            selected: None,
            context_key: "user-1".to_owned(),
            context_attributes: "{\n  \"plan\": \"pro\"\n}".to_owned(),
            admin_request: 0,
        }
    }
}

/// A change to the [`FlagsPageState`].
#[derive(Debug, Clone, PartialEq)]
pub enum FlagsAction {
    /// Show another environment (its stream starts over).
    SelectEnvironment(String),
    /// The stream's latest view.
    Live(LiveView),
    /// Request number `request` of the admin list went out.
    AdminRequested(u64),
    /// Request number `request` found no account to ask for: nothing is held.
    AdminCleared(u64),
    /// The answers to request number `request`.
    AdminAnswered {
        request: u64,
        list: Result<FlagList, HttpError>,
        environments: Result<EnvironmentList, HttpError>,
    },
    /// A change made on the page failed outside any panel (the approval setting).
    AdminFailed(HttpError),
    /// Something changed here: reload what reads the admin API.
    Changed,
    Select(String),
    /// A flag was created: select it and reload.
    Created(String),
    /// The selected flag was deleted.
    Deleted,
    ContextKey(String),
    ContextAttributes(String),
}

impl FlagsPageState {
    pub fn apply(&mut self, action: FlagsAction) {
        match action {
            FlagsAction::SelectEnvironment(name) => {
                if name != self.environment {
                    self.environment = name;
                    self.live = LiveView::default();
                }
            }
            FlagsAction::Live(view) => self.live = view,
            FlagsAction::AdminRequested(request) => {
                self.admin_request = request;
                self.admin.loading = true;
            }
            FlagsAction::AdminCleared(request) => {
                self.admin_request = request;
                self.admin = AdminData::default();
            }
            FlagsAction::AdminAnswered {
                request,
                list,
                environments,
            } => {
                if request != self.admin_request {
                    return;
                }
                let current = std::mem::take(&mut self.admin);
                self.admin = match list {
                    Ok(list) => AdminData {
                        list: Some(list),
                        environments: environments
                            .map(|list| list.environments)
                            .unwrap_or(current.environments),
                        loading: false,
                        error: None,
                    },
                    Err(error) => AdminData {
                        loading: false,
                        error: Some(error),
                        ..current
                    },
                };
            }
            FlagsAction::AdminFailed(error) => self.admin.error = Some(error),
            FlagsAction::Changed => self.refresh += 1,
            FlagsAction::Select(key) => self.selected = Some(key),
            FlagsAction::Created(key) => {
                self.selected = Some(key);
                self.refresh += 1;
            }
            FlagsAction::Deleted => {
                self.selected = None;
                self.refresh += 1;
            }
            FlagsAction::ContextKey(text) => self.context_key = text,
            FlagsAction::ContextAttributes(text) => self.context_attributes = text,
        }
    }

    /// The stream's configuration, when it is of the environment shown.
    pub fn config(&self) -> Option<&LiveConfig> {
        self.live
            .config
            .as_deref()
            .filter(|config| config.environment() == self.environment)
    }

    /// Everything the page renders, for an account with `access` (`session_loading`:
    /// `/api/auth/me` has not answered yet).
    pub fn view(&self, access: &FlagAccess, session_loading: bool) -> PageView {
        let signed_out = !session_loading
            && (!access.signed_in || self.admin.error.as_ref().is_some_and(is_sign_in_required));
        let manage = access.signed_in && !signed_out && access.read;
        let write = manage && access.write;
        let list = self.admin.list.as_ref().filter(|_| manage);
        let config = self.config();
        let rows = flag_rows(list, config, &self.environment);
        let selected_key = self
            .selected
            .as_ref()
            .filter(|key| rows.iter().any(|row| &row.key == *key))
            .cloned()
            .or_else(|| rows.first().map(|row| row.key.clone()));
        let selected_flag = selected_key
            .as_ref()
            .and_then(|key| list.and_then(|list| list.flags.iter().find(|flag| &flag.key == key)))
            .cloned()
            .map(Rc::new);
        let selected_killed = selected_key
            .as_ref()
            .and_then(|key| rows.iter().find(|row| &row.key == key))
            .is_some_and(|row| row.killed);
        let environments: Vec<EnvironmentSettings> =
            if self.admin.environments.is_empty() || !manage {
                ENVIRONMENTS
                    .iter()
                    .map(|name| EnvironmentSettings {
                        name: (*name).to_owned(),
                        require_approval: false,
                    })
                    .collect()
            } else {
                self.admin.environments.clone()
            };
        let require_approval = environments
            .iter()
            .any(|settings| settings.name == self.environment && settings.require_approval);
        let segments = config
            .map(|config| {
                config
                    .snapshot
                    .segments
                    .iter()
                    .map(|segment| segment.key.clone())
                    .collect()
            })
            .unwrap_or_default();
        let (demo_context, context_note) =
            match parse_context(&self.context_key, &self.context_attributes) {
                Ok(context) => (context, None),
                Err(_) => (
                    parse_context(&self.context_key, "").unwrap_or_default(),
                    Some(
                        "The attributes do not parse: the demo uses the targeting key alone."
                            .to_owned(),
                    ),
                ),
            };
        let admin_error = self
            .admin
            .error
            .as_ref()
            .filter(|error| !is_sign_in_required(error))
            .map(HttpError::message);
        let list_loading =
            self.admin.loading || (config.is_none() && self.live.state != StreamState::Offline);
        PageView {
            signed_out,
            manage,
            write,
            keys: manage && access.keys,
            read_only: manage && !access.write,
            cannot_read: access.signed_in && !signed_out && !access.read,
            rows,
            selected_key,
            selected_flag,
            selected_killed,
            environments,
            require_approval,
            segments,
            demo_context,
            context_note,
            admin_error,
            list_loading,
        }
    }
}

impl Reducible for FlagsPageState {
    type Action = FlagsAction;

    fn reduce(self: Rc<Self>, action: FlagsAction) -> Rc<Self> {
        let mut next = (*self).clone();
        next.apply(action);
        if next == *self {
            self
        } else {
            Rc::new(next)
        }
    }
}

/// What the flags page shows, derived from its state and the account's access.
#[derive(Debug, Clone, PartialEq)]
pub struct PageView {
    /// A guest, or a session the server no longer knows: asked to sign in.
    pub signed_out: bool,
    /// The account reads the admin API (list, editor, approvals, audit).
    pub manage: bool,
    /// The account may change flags: the controls are offered.
    pub write: bool,
    /// The account manages delivery keys.
    pub keys: bool,
    /// The account reads but may not change: the page says so.
    pub read_only: bool,
    /// The account may not even read flags.
    pub cannot_read: bool,
    pub rows: Vec<FlagRow>,
    pub selected_key: Option<String>,
    pub selected_flag: Option<Rc<Flag>>,
    pub selected_killed: bool,
    pub environments: Vec<EnvironmentSettings>,
    pub require_approval: bool,
    /// The segment keys of the shown environment, offered by the rule editor.
    pub segments: Vec<String>,
    /// The demo's context: the preview's, or its targeting key alone when the attributes
    /// do not parse (then `context_note` says so).
    pub demo_context: EvaluationContext,
    pub context_note: Option<String>,
    /// Why the admin API failed, other than a missing sign-in.
    pub admin_error: Option<String>,
    pub list_loading: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::boolean_flag;
    use meridian_shared::api::{Access, ApiErrorBody, Me, SessionKind, UserInfo};
    use meridian_shared::flags::admin::FlagSnapshot;

    fn session(access: Option<Access>) -> SessionState {
        SessionState::Known(Me {
            session_id: "s1".into(),
            kind: SessionKind::User,
            user: Some(UserInfo {
                id: "u1".into(),
                username: "ann".into(),
            }),
            guest_session_id: None,
            access,
        })
    }

    fn access(role: Role, permissions: &[&str]) -> Access {
        Access {
            role,
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn viewer() -> FlagAccess {
        FlagAccess::of(&session(Some(access(Role::Viewer, &["flags:read"]))))
    }

    fn editor() -> FlagAccess {
        FlagAccess::of(&session(Some(access(
            Role::Editor,
            &["flags:read", "flags:write"],
        ))))
    }

    fn list(version: u64) -> FlagList {
        FlagList {
            flags: vec![boolean_flag("beta"), boolean_flag("gamma")],
            version,
        }
    }

    fn answered(state: &mut FlagsPageState, request: u64, list: Result<FlagList, HttpError>) {
        state.apply(FlagsAction::AdminAnswered {
            request,
            list,
            environments: Ok(EnvironmentList {
                environments: vec![
                    EnvironmentSettings {
                        name: "development".into(),
                        require_approval: false,
                    },
                    EnvironmentSettings {
                        name: "production".into(),
                        require_approval: true,
                    },
                ],
            }),
        });
    }

    fn api_error(status: u16, code: &str) -> HttpError {
        HttpError::Api {
            status,
            body: ApiErrorBody {
                code: code.into(),
                message: format!("{code}!"),
            },
        }
    }

    #[test]
    fn access_follows_the_permissions_me_names() {
        let guest = FlagAccess::of(&SessionState::Loading);
        assert_eq!(guest, FlagAccess::default());
        let viewer = viewer();
        assert!(viewer.signed_in && viewer.read && !viewer.write && !viewer.keys);
        assert_eq!(viewer.role, Some(Role::Viewer));
        let admin = FlagAccess::of(&session(Some(access(
            Role::Admin,
            &["flags:read", "flags:write", "flags:keys", "admin:roles"],
        ))));
        assert!(admin.write && admin.keys);
        // A server without roles: every account could do everything.
        let legacy = FlagAccess::of(&session(None));
        assert!(legacy.read && legacy.write && legacy.keys && legacy.role.is_none());
    }

    #[test]
    fn the_stream_is_followed_with_read_access_only() {
        assert_eq!(
            stream_access(true, &FlagAccess::default()),
            StreamAccess::Waiting
        );
        assert!(matches!(
            stream_access(false, &FlagAccess::default()),
            StreamAccess::Refused(why) if why.contains("Sign in")
        ));
        assert_eq!(stream_access(false, &viewer()), StreamAccess::Follow);
        let no_read = FlagAccess {
            signed_in: true,
            ..FlagAccess::default()
        };
        assert!(matches!(
            stream_access(false, &no_read),
            StreamAccess::Refused(_)
        ));
    }

    #[test]
    fn only_the_latest_admin_answer_is_taken() {
        let mut state = FlagsPageState::default();
        state.apply(FlagsAction::AdminRequested(1));
        state.apply(FlagsAction::AdminRequested(2));
        assert!(state.admin.loading);
        answered(&mut state, 1, Ok(list(1)));
        assert_eq!(state.admin.list, None, "a late answer to request 1");
        answered(&mut state, 2, Ok(list(2)));
        assert_eq!(state.admin.list.as_ref().map(|l| l.version), Some(2));
        assert!(!state.admin.loading);
        assert_eq!(state.admin.environments.len(), 2);
        // A failed refresh keeps what was there, and says why.
        state.apply(FlagsAction::AdminRequested(3));
        answered(&mut state, 3, Err(HttpError::Network("down".into())));
        assert_eq!(state.admin.list.as_ref().map(|l| l.version), Some(2));
        assert!(state
            .admin
            .error
            .as_ref()
            .is_some_and(HttpError::is_network));
        state.apply(FlagsAction::AdminCleared(4));
        assert_eq!(state.admin, AdminData::default());
    }

    #[test]
    fn a_viewer_reads_and_an_editor_writes() {
        let mut state = FlagsPageState::default();
        state.apply(FlagsAction::AdminRequested(1));
        answered(&mut state, 1, Ok(list(3)));
        let view = state.view(&viewer(), false);
        assert!(view.manage && !view.write && view.read_only && !view.keys);
        assert_eq!(view.rows.len(), 2);
        assert_eq!(view.selected_key.as_deref(), Some("beta"));
        assert!(view.selected_flag.is_some());
        assert!(view.require_approval, "production needs approval");
        let view = state.view(&editor(), false);
        assert!(view.manage && view.write && !view.read_only);
        // A guest gets the prompt and nothing of the admin list.
        let guest = state.view(&FlagAccess::default(), false);
        assert!(guest.signed_out && !guest.manage && guest.rows.is_empty());
        assert!(!guest.require_approval, "a guest sees the default settings");
        // While the session is being learned, nobody is told to sign in.
        assert!(!state.view(&FlagAccess::default(), true).signed_out);
        // An account the server no longer knows is asked to sign in again.
        state.apply(FlagsAction::AdminRequested(2));
        answered(&mut state, 2, Err(api_error(401, "sign_in_required")));
        let view = state.view(&editor(), false);
        assert!(view.signed_out && !view.manage && view.admin_error.is_none());
        // A refusal is shown.
        state.apply(FlagsAction::AdminRequested(3));
        answered(&mut state, 3, Err(api_error(403, "forbidden")));
        assert_eq!(
            state.view(&editor(), false).admin_error.as_deref(),
            Some("forbidden!")
        );
        // Without read, the page says so instead of listing.
        let none = FlagAccess {
            signed_in: true,
            role: Some(Role::Viewer),
            ..FlagAccess::default()
        };
        let mut fresh = FlagsPageState::default();
        fresh.apply(FlagsAction::AdminCleared(1));
        let view = fresh.view(&none, false);
        assert!(view.cannot_read && !view.manage);
    }

    #[test]
    fn selection_environment_and_context() {
        let mut state = FlagsPageState::default();
        state.apply(FlagsAction::AdminRequested(1));
        answered(&mut state, 1, Ok(list(3)));
        state.apply(FlagsAction::Select("gamma".into()));
        assert_eq!(
            state.view(&editor(), false).selected_key.as_deref(),
            Some("gamma")
        );
        state.apply(FlagsAction::Select("gone".into()));
        assert_eq!(
            state.view(&editor(), false).selected_key.as_deref(),
            Some("beta"),
            "a selection that is not listed falls back to the first row"
        );
        state.apply(FlagsAction::Created("gamma".into()));
        assert_eq!(state.refresh, 1);
        state.apply(FlagsAction::Deleted);
        assert_eq!((state.selected.clone(), state.refresh), (None, 2));
        state.apply(FlagsAction::Changed);
        assert_eq!(state.refresh, 3);

        // The stream's view belongs to its environment.
        let snapshot = FlagSnapshot {
            version: 7,
            environment: "production".into(),
            flags: vec![boolean_flag("beta").config("production").unwrap()],
            segments: Vec::new(),
        };
        state.apply(FlagsAction::Live(LiveView {
            config: Some(Rc::new(LiveConfig::new(snapshot))),
            ..LiveView::default()
        }));
        assert!(state.config().is_some());
        state.apply(FlagsAction::SelectEnvironment("development".into()));
        assert_eq!(state.environment, "development");
        assert!(state.config().is_none() && state.live == LiveView::default());

        let view = state.view(&editor(), false);
        assert_eq!(view.demo_context.targeting_key.as_deref(), Some("user-1"));
        assert_eq!(view.context_note, None);
        state.apply(FlagsAction::ContextAttributes("{".into()));
        state.apply(FlagsAction::ContextKey("user-2".into()));
        let view = state.view(&editor(), false);
        assert_eq!(view.demo_context.targeting_key.as_deref(), Some("user-2"));
        assert!(view.context_note.is_some());
    }

    #[test]
    fn the_reducer_keeps_the_same_state_when_nothing_changes() {
        let state = Rc::new(FlagsPageState::default());
        let same = state
            .clone()
            .reduce(FlagsAction::SelectEnvironment("production".into()));
        assert!(Rc::ptr_eq(&state, &same));
    }
}
