//! The share panel of a document: everyone sees who may open it; the owner adds people by
//! username as editor or viewer, changes their role and removes them; a member may leave.
//! Every change answers with the document, which replaces the page's copy.

use std::future::Future;

use meridian_shared::docs::{Doc, Member, Role};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::spawn_local;
use web_sys::HtmlSelectElement;
use yew::prelude::*;

use super::{api, initials, role_label};
use crate::browser;
use crate::docs::session::user_color;
use crate::net::http::HttpError;

#[derive(Properties, PartialEq)]
pub struct SharePanelProps {
    pub doc: Doc,
    /// The signed-in username.
    pub me: String,
    pub on_changed: Callback<Doc>,
    /// This account left the document.
    pub on_left: Callback<()>,
}

/// The role a select's value names (only editor and viewer can be given).
pub fn parse_member_role(value: &str) -> Option<Role> {
    match Role::parse(value) {
        Some(Role::Owner) | None => None,
        some => some,
    }
}

/// Runs one membership call at a time; its answer replaces the page's document.
#[derive(Clone)]
struct Membership {
    error: UseStateHandle<Option<String>>,
    busy: UseStateHandle<bool>,
    on_changed: Callback<Doc>,
}

impl Membership {
    fn call(
        &self,
        call: impl Future<Output = Result<Doc, HttpError>> + 'static,
        after: Option<Callback<()>>,
    ) {
        self.busy.set(true);
        self.error.set(None);
        let this = self.clone();
        spawn_local(async move {
            match call.await {
                Ok(doc) => {
                    this.on_changed.emit(doc);
                    if let Some(after) = after {
                        after.emit(());
                    }
                }
                Err(failure) => this.error.set(Some(failure.message())),
            }
            this.busy.set(false);
        });
    }
}

/// "1 person", "3 people".
pub fn people(n: usize) -> String {
    if n == 1 {
        "1 person".to_owned()
    } else {
        format!("{n} people")
    }
}

#[component]
pub fn SharePanel(props: &SharePanelProps) -> Html {
    let error = use_state(|| None::<String>);
    let busy = use_state(|| false);
    let username = use_node_ref();
    let role = use_node_ref();
    let doc = &props.doc;
    let is_owner = doc.role == Role::Owner;

    let run = Membership {
        error: error.clone(),
        busy: busy.clone(),
        on_changed: props.on_changed.clone(),
    };

    let on_add = {
        let run = run.clone();
        let id = doc.id.clone();
        let username = username.clone();
        let role = role.clone();
        let error = error.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let name = browser::input_value(&username).trim().to_owned();
            if name.is_empty() {
                error.set(Some("Type the username of the person to add.".to_owned()));
                return;
            }
            let chosen = role
                .cast::<HtmlSelectElement>()
                .and_then(|select| parse_member_role(&select.value()))
                .unwrap_or(Role::Editor);
            let id = id.clone();
            let clear = username.clone();
            run.call(
                async move { api::share(&id, &name, chosen).await },
                Some(Callback::from(move |_| browser::clear_input(&clear))),
            );
        })
    };

    let change_role = |member: &Member| {
        let run = run.clone();
        let id = doc.id.clone();
        let name = member.username.clone();
        Callback::from(move |event: Event| {
            let Some(chosen) = event
                .target()
                .and_then(|target| target.dyn_into::<HtmlSelectElement>().ok())
                .and_then(|select| parse_member_role(&select.value()))
            else {
                return;
            };
            let (id, name) = (id.clone(), name.clone());
            run.call(async move { api::share(&id, &name, chosen).await }, None);
        })
    };

    let remove = |member: &Member, leaving: bool| {
        let run = run.clone();
        let id = doc.id.clone();
        let user_id = member.user_id.clone();
        let on_left = props.on_left.clone();
        Callback::from(move |_: MouseEvent| {
            let (id, user_id) = (id.clone(), user_id.clone());
            run.call(
                async move { api::remove_member(&id, &user_id).await },
                leaving.then(|| on_left.clone()),
            );
        })
    };

    html! {
        <section class="card panel share-panel" data-testid="share-panel" aria-labelledby="share-title">
            <header class="panel-header">
                <h2 id="share-title">{ "Shared with" }</h2>
                <span class="panel-meta muted">{ people(doc.members.len()) }</span>
            </header>
            <ul class="member-list">
                { for doc.members.iter().map(|member| {
                    let is_me = member.username == props.me;
                    let editable = is_owner && member.role != Role::Owner;
                    html! {
                        <li
                            key={member.user_id.clone()}
                            class="member"
                            data-testid="share-member"
                            data-username={member.username.clone()}
                            data-role={member.role.as_str()}
                        >
                            <span class="member-avatar" aria-hidden="true" style={format!("--presence-color: {}", user_color(&member.username))}>
                                { initials(&member.username) }
                            </span>
                            <span class="member-name">
                                { member.username.clone() }
                                if is_me { <span class="muted small">{ " (you)" }</span> }
                            </span>
                            if editable {
                                <select
                                    class="member-role"
                                    aria-label={format!("Role of {}", member.username)}
                                    data-testid={format!("share-role-{}", member.username)}
                                    onchange={change_role(member)}
                                    disabled={*busy}
                                >
                                    <option value="editor" selected={member.role == Role::Editor}>{ "Editor" }</option>
                                    <option value="viewer" selected={member.role == Role::Viewer}>{ "Viewer" }</option>
                                </select>
                                <button
                                    type="button"
                                    class="button button-ghost"
                                    data-testid={format!("share-remove-{}", member.username)}
                                    onclick={remove(member, false)}
                                    disabled={*busy}
                                >
                                    { "Remove" }
                                </button>
                            } else {
                                <span class="muted small member-role">{ role_label(member.role) }</span>
                                if is_me && member.role != Role::Owner {
                                    <button
                                        type="button"
                                        class="button button-ghost"
                                        data-testid="share-leave"
                                        onclick={remove(member, true)}
                                        disabled={*busy}
                                    >
                                        { "Leave" }
                                    </button>
                                }
                            }
                        </li>
                    }
                }) }
            </ul>
            if is_owner {
                <form class="share-form" onsubmit={on_add}>
                    <input
                        ref={username}
                        type="text"
                        name="username"
                        placeholder="Username"
                        aria-label="Username to share with"
                        autocomplete="off"
                        data-testid="share-username"
                        disabled={*busy}
                    />
                    <select ref={role} aria-label="Role" data-testid="share-role" disabled={*busy}>
                        <option value="editor" selected=true>{ "Editor" }</option>
                        <option value="viewer">{ "Viewer" }</option>
                    </select>
                    <button type="submit" class="button button-primary" data-testid="share-add" disabled={*busy}>
                        { "Share" }
                    </button>
                </form>
            }
            if let Some(error) = &*error {
                <p class="form-error" role="alert" data-testid="share-error">{ error.clone() }</p>
            }
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_editor_and_viewer_can_be_given() {
        assert_eq!(parse_member_role("editor"), Some(Role::Editor));
        assert_eq!(parse_member_role("viewer"), Some(Role::Viewer));
        assert_eq!(parse_member_role("owner"), None);
        assert_eq!(parse_member_role(""), None);
    }

    #[test]
    fn people_are_counted_in_words() {
        assert_eq!(people(1), "1 person");
        assert_eq!(people(2), "2 people");
    }
}
