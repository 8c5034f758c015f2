//! The delivery keys of one environment, for accounts with `flags:keys`: the list
//! (never a secret), creating a server or client key (its secret shown this once, with a
//! copy button), and revoking one. [`KeysState`] is the panel's pure reducer.
//!
//! Invariants: a created key's secret lives only in this panel's state, until the
//! environment changes or the user dismisses it; only the answer to the latest list
//! request sets the list.

use std::rc::Rc;

use meridian_shared::flags::admin::{KeyInfo, KeyKind, KeyList, NewKey};
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::api;
use super::dom::{local_date_time, select_text};
use crate::components::Spinner;

/// What the keys panel holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeysState {
    pub environment: String,
    /// `None` until the first list arrives.
    pub keys: Option<Vec<KeyInfo>>,
    pub loading: bool,
    /// A create or revoke is under way.
    pub busy: bool,
    pub error: Option<String>,
    /// The key just created, with its secret: shown once.
    pub created: Option<NewKey>,
    /// The key whose revocation waits for a confirming second click.
    pub confirm_revoke: Option<String>,
    request: u64,
}

/// A change to the [`KeysState`].
#[derive(Debug, Clone, PartialEq)]
pub enum KeysAction {
    /// Request number `request` for `environment`'s list went out (another environment
    /// forgets the previous one's keys and secret).
    Requested {
        request: u64,
        environment: String,
    },
    Listed {
        request: u64,
        answer: Result<KeyList, String>,
    },
    /// A create or revoke went out.
    Busy,
    Created(Result<NewKey, String>),
    /// The second click on revoke is awaited for this key (or for none).
    ConfirmRevoke(Option<String>),
    Revoked(Result<String, String>),
    /// The shown secret is put away.
    DismissSecret,
}

impl KeysState {
    pub fn apply(&mut self, action: KeysAction) {
        match action {
            KeysAction::Requested {
                request,
                environment,
            } => {
                if environment != self.environment {
                    *self = KeysState {
                        environment,
                        ..KeysState::default()
                    };
                }
                self.request = request;
                self.loading = true;
            }
            KeysAction::Listed { request, answer } => {
                if request != self.request {
                    return;
                }
                self.loading = false;
                match answer {
                    Ok(list) => {
                        self.keys = Some(list.keys);
                        self.error = None;
                    }
                    Err(error) => self.error = Some(error),
                }
            }
            KeysAction::Busy => {
                self.busy = true;
                self.error = None;
            }
            KeysAction::Created(answer) => {
                self.busy = false;
                match answer {
                    Ok(key) => self.created = Some(key),
                    Err(error) => self.error = Some(error),
                }
            }
            KeysAction::ConfirmRevoke(id) => self.confirm_revoke = id,
            KeysAction::Revoked(answer) => {
                self.busy = false;
                self.confirm_revoke = None;
                match answer {
                    Ok(id) => {
                        if self.created.as_ref().is_some_and(|key| key.id == id) {
                            self.created = None;
                        }
                    }
                    Err(error) => self.error = Some(error),
                }
            }
            KeysAction::DismissSecret => self.created = None,
        }
    }

    /// The keys to list: live ones first (newest first), then revoked ones.
    pub fn rows(&self) -> Vec<KeyInfo> {
        let mut rows = self.keys.clone().unwrap_or_default();
        rows.sort_by(|a, b| {
            (
                a.revoked_at_ms.is_some(),
                std::cmp::Reverse(a.created_at_ms),
            )
                .cmp(&(
                    b.revoked_at_ms.is_some(),
                    std::cmp::Reverse(b.created_at_ms),
                ))
        });
        rows
    }
}

impl Reducible for KeysState {
    type Action = KeysAction;

    fn reduce(self: Rc<Self>, action: KeysAction) -> Rc<Self> {
        let mut next = (*self).clone();
        next.apply(action);
        Rc::new(next)
    }
}

/// What a key of `kind` reads, in a few words.
pub fn kind_text(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Server => "server: the whole configuration, for SDKs that evaluate locally",
        KeyKind::Client => "client: evaluated answers only (OFREP), never rules or segments",
    }
}

fn kind_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Server => "server",
        KeyKind::Client => "client",
    }
}

#[derive(Properties, PartialEq)]
pub struct KeysProps {
    pub environment: String,
}

#[component]
pub fn KeysPanel(props: &KeysProps) -> Html {
    let state = use_reducer(KeysState::default);
    let kind = use_state(|| KeyKind::Server);
    let requests = use_mut_ref(|| 0u64);
    let refresh = use_state(|| 0u64);
    {
        let state = state.clone();
        use_effect_with(
            (props.environment.clone(), *refresh),
            move |(environment, _)| {
                *requests.borrow_mut() += 1;
                let request = *requests.borrow();
                state.dispatch(KeysAction::Requested {
                    request,
                    environment: environment.clone(),
                });
                let environment = environment.clone();
                spawn_local(async move {
                    let answer = api::environment_keys(&environment)
                        .await
                        .map_err(|error| error.message());
                    state.dispatch(KeysAction::Listed { request, answer });
                });
            },
        );
    }
    let reload = {
        let refresh = refresh.clone();
        move || refresh.set(*refresh + 1)
    };
    let on_kind = {
        let kind = kind.clone();
        Callback::from(move |event: Event| {
            kind.set(match select_text(&event).as_str() {
                "client" => KeyKind::Client,
                _ => KeyKind::Server,
            })
        })
    };
    let on_create = {
        let state = state.clone();
        let kind = *kind;
        let environment = props.environment.clone();
        let reload = reload.clone();
        Callback::from(move |_: MouseEvent| {
            if state.busy {
                return;
            }
            state.dispatch(KeysAction::Busy);
            let state = state.clone();
            let environment = environment.clone();
            let reload = reload.clone();
            spawn_local(async move {
                let answer = api::create_key(&environment, kind)
                    .await
                    .map_err(|error| error.message());
                state.dispatch(KeysAction::Created(answer));
                reload();
            });
        })
    };
    let on_revoke = |id: String| {
        let state = state.clone();
        let environment = props.environment.clone();
        let reload = reload.clone();
        Callback::from(move |_: MouseEvent| {
            if state.busy {
                return;
            }
            if state.confirm_revoke.as_deref() != Some(id.as_str()) {
                state.dispatch(KeysAction::ConfirmRevoke(Some(id.clone())));
                return;
            }
            state.dispatch(KeysAction::Busy);
            let state = state.clone();
            let environment = environment.clone();
            let id = id.clone();
            let reload = reload.clone();
            spawn_local(async move {
                let answer = api::revoke_key(&environment, &id)
                    .await
                    .map(|()| id)
                    .map_err(|error| error.message());
                state.dispatch(KeysAction::Revoked(answer));
                reload();
            });
        })
    };
    let on_copy = {
        let secret = state.created.as_ref().map(|key| key.key.clone());
        Callback::from(move |_: MouseEvent| {
            if let (Some(window), Some(secret)) = (web_sys::window(), &secret) {
                let _ = window.navigator().clipboard().write_text(secret);
            }
        })
    };
    let on_dismiss = {
        let state = state.clone();
        Callback::from(move |_: MouseEvent| state.dispatch(KeysAction::DismissSecret))
    };
    let rows = state.rows();

    html! {
        <section class="card panel flags-keys" data-testid="keys-panel" data-environment={props.environment.clone()} aria-labelledby="flags-keys-title">
            <header class="panel-header">
                <h2 id="flags-keys-title">{ format!("Delivery keys for {}", props.environment) }</h2>
                if state.loading {
                    <span class="panel-meta muted">{ "Refreshing…" }</span>
                }
            </header>
            <p class="small muted">
                { "SDKs send a key as " }<code>{ "Authorization: Bearer KEY" }</code>
                { ". A server key reads the whole configuration stream; a client key gets evaluated answers only." }
            </p>
            <div class="flags-form-row flags-keys-create">
                <label class="field flags-inline-field">
                    <span class="field-label">{ "Kind" }</span>
                    <select data-testid="key-kind" onchange={on_kind}>
                        { for [KeyKind::Server, KeyKind::Client].into_iter().map(|option| html! {
                            <option value={kind_name(option)} selected={option == *kind}>{ kind_name(option) }</option>
                        }) }
                    </select>
                </label>
                <button type="button" class="button button-primary" data-testid="key-create" disabled={state.busy} onclick={on_create}>
                    { if state.busy { "Working…" } else { "Create key" } }
                </button>
            </div>
            <p class="small muted">{ kind_text(*kind) }</p>
            if let Some(created) = &state.created {
                <div class="callout flags-new-key" data-testid="new-key" role="status">
                    <p>
                        <strong>{ format!("New {} key for {}.", kind_name(created.kind), created.environment) }</strong>
                        { " Copy it now: it is not shown again (Meridian keeps only its hash)." }
                    </p>
                    <div class="flags-new-key-row">
                        <input
                            type="text"
                            class="mono"
                            readonly={true}
                            aria-label="The new key"
                            data-testid="new-key-secret"
                            value={created.key.clone()}
                            onfocus={Callback::from(|event: FocusEvent| {
                                event.target_unchecked_into::<web_sys::HtmlInputElement>().select();
                            })}
                        />
                        <button type="button" class="button button-ghost" onclick={on_copy}>{ "Copy" }</button>
                        <button type="button" class="link-button" onclick={on_dismiss}>{ "Done" }</button>
                    </div>
                </div>
            }
            if let Some(error) = &state.error {
                <p class="form-error small" role="alert" data-testid="keys-error">{ error.clone() }</p>
            }
            if state.keys.is_none() {
                if state.loading {
                    <Spinner label="Loading the keys…" />
                }
            } else if rows.is_empty() {
                <p class="empty muted">{ "No key yet: SDKs cannot read this environment." }</p>
            } else {
                <ul class="flags-keys-list">
                    { for rows.iter().map(|key| {
                        let revoked = key.revoked_at_ms.is_some();
                        let confirming = state.confirm_revoke.as_deref() == Some(key.id.as_str());
                        html! {
                            <li
                                key={key.id.clone()}
                                class={classes!("flags-key", revoked.then_some("flags-key-revoked"))}
                                data-testid={format!("key-{}", key.id)}
                                data-kind={kind_name(key.kind)}
                                data-revoked={revoked.to_string()}
                            >
                                <span class="mono">{ format!("{}…", key.prefix) }</span>
                                <span class={classes!("flag-badge", format!("flags-key-{}", kind_name(key.kind)))}>{ kind_name(key.kind) }</span>
                                <span class="small muted">
                                    { format!("created by {} at {}", key.created_by, local_date_time(key.created_at_ms)) }
                                    if let Some(at) = key.revoked_at_ms {
                                        { format!(" · revoked at {}", local_date_time(at)) }
                                    }
                                </span>
                                if !revoked {
                                    <button
                                        type="button"
                                        class={classes!("button", if confirming { "button-danger" } else { "button-danger-ghost" })}
                                        data-testid={format!("revoke-{}", key.id)}
                                        disabled={state.busy}
                                        onclick={on_revoke(key.id.clone())}
                                    >
                                        { if confirming { "Really revoke? SDKs using it stop at once" } else { "Revoke" } }
                                    </button>
                                }
                            </li>
                        }
                    }) }
                </ul>
            }
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, created_at_ms: i64, revoked: bool) -> KeyInfo {
        KeyInfo {
            id: id.into(),
            kind: KeyKind::Server,
            environment: "production".into(),
            prefix: format!("mk_{id}"),
            created_at_ms,
            created_by: "ann".into(),
            revoked_at_ms: revoked.then_some(created_at_ms + 1),
        }
    }

    fn requested(state: &mut KeysState, request: u64, environment: &str) {
        state.apply(KeysAction::Requested {
            request,
            environment: environment.into(),
        });
    }

    #[test]
    fn the_list_takes_the_latest_answer_and_puts_live_keys_first() {
        let mut state = KeysState::default();
        requested(&mut state, 1, "production");
        requested(&mut state, 2, "production");
        state.apply(KeysAction::Listed {
            request: 1,
            answer: Ok(KeyList { keys: vec![] }),
        });
        assert!(state.keys.is_none() && state.loading);
        state.apply(KeysAction::Listed {
            request: 2,
            answer: Ok(KeyList {
                keys: vec![key("a", 1, false), key("b", 2, true), key("c", 3, false)],
            }),
        });
        let ids: Vec<String> = state.rows().into_iter().map(|k| k.id).collect();
        assert_eq!(ids, vec!["c", "a", "b"]);
        requested(&mut state, 3, "production");
        state.apply(KeysAction::Listed {
            request: 3,
            answer: Err("down".into()),
        });
        assert_eq!(state.rows().len(), 3, "a failed refresh keeps the list");
        assert_eq!(state.error.as_deref(), Some("down"));
    }

    #[test]
    fn a_secret_is_shown_once_and_never_in_another_environment() {
        let mut state = KeysState::default();
        requested(&mut state, 1, "production");
        state.apply(KeysAction::Busy);
        assert!(state.busy);
        let created = NewKey {
            id: "k1".into(),
            key: "mk_secret".into(),
            kind: KeyKind::Client,
            environment: "production".into(),
        };
        state.apply(KeysAction::Created(Ok(created.clone())));
        assert_eq!(state.created, Some(created.clone()));
        assert!(!state.busy);
        // Revoking it takes a second click and puts the secret away.
        state.apply(KeysAction::ConfirmRevoke(Some("k1".into())));
        assert_eq!(state.confirm_revoke.as_deref(), Some("k1"));
        state.apply(KeysAction::Busy);
        state.apply(KeysAction::Revoked(Ok("k1".into())));
        assert_eq!(
            (state.created.clone(), state.confirm_revoke.clone()),
            (None, None)
        );
        // Another environment starts from nothing.
        state.apply(KeysAction::Created(Ok(created)));
        requested(&mut state, 2, "development");
        assert_eq!(state.created, None);
        assert_eq!(state.environment, "development");
        assert!(state.keys.is_none());
        state.apply(KeysAction::Created(Err("forbidden".into())));
        assert_eq!(state.error.as_deref(), Some("forbidden"));
        state.apply(KeysAction::DismissSecret);
        assert_eq!(state.created, None);
    }

    #[test]
    fn kinds_say_what_they_read() {
        assert!(kind_text(KeyKind::Server).contains("whole configuration"));
        assert!(kind_text(KeyKind::Client).contains("never rules"));
    }
}
