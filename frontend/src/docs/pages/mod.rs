//! The documents pages: `/docs` (my documents: list, create, rename, delete) here, and
//! `/docs/:id` (one document: the editor, its sync status, who is here, sharing and
//! history) in [`document`], with its panels in [`share`] and [`history`]. The typed calls
//! of `/api/docs` are in [`super::api`].
//!
//! Test contract (`data-testid`s):
//! - `/docs`: `docs-page`; `docs-sign-in` (the prompt a guest sees); `doc-create-title`,
//!   `doc-create`, `doc-create-error`; `doc-list` with `doc-item` children
//!   (`data-doc-id`, `data-role`) holding `doc-link`, `doc-rename`, `doc-rename-input`,
//!   `doc-rename-save`, `doc-delete`, `doc-delete-confirm`; `doc-list-empty`,
//!   `doc-list-error`.
//! - `/docs/:id`: `doc-page` (`data-doc-id`, `data-role`); `doc-title` (an input for
//!   editors, a heading for viewers); `doc-status` (`data-state` = `connecting` |
//!   `synced` | `saving` | `offline` | `read-only` | `deleted` | `error`);
//!   `doc-presence` with `presence-item` children (`data-client-id`, `data-me`,
//!   `data-name`); `doc-editor` (the editor's root); `share-panel` with `share-member`
//!   children (`data-username`, `data-role`), `share-username`, `share-role`,
//!   `share-add`, `share-error`, `share-role-{username}`, `share-remove-{username}`,
//!   `share-leave`; `history-panel` with `version-name`, `version-save`,
//!   `version-list`, `version-item` children (`data-version-id`, `data-kind`),
//!   `version-preview`, `version-restore`, `version-close`, `history-message`.
//!
//! Invariants: only the answer to the latest request of a list may set it; a guest never
//! calls the API (every route needs an account); pure helpers are tested natively.

pub mod document;
pub mod history;
pub mod share;

use meridian_shared::docs::{DocSummary, Role};
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;
use yew_router::prelude::*;

use crate::app::Route;
use crate::browser;
use crate::components::Spinner;
use crate::docs::api;
use crate::session::SessionState;

/// The longest title the server accepts, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

// ---------------------------------------------------------------------------------------
// Pure helpers

/// A title as the server will store it (trimmed), or why it would be refused.
pub fn validate_title(title: &str) -> Result<String, String> {
    let title = title.trim();
    if title.is_empty() {
        return Err("Give the document a title.".to_owned());
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(format!("A title has at most {MAX_TITLE_CHARS} characters."));
    }
    Ok(title.to_owned())
}

/// When something changed, relative to `now_ms`: "just now", "5 min ago", "3 h ago",
/// "2 days ago"; "in the future" is shown as "just now" (clocks differ).
pub fn format_age(at_ms: i64, now_ms: i64) -> String {
    let seconds = (now_ms - at_ms).max(0) / 1000;
    match seconds {
        0..=59 => "just now".to_owned(),
        60..=3_599 => format!("{} min ago", seconds / 60),
        3_600..=86_399 => format!("{} h ago", seconds / 3_600),
        _ => {
            let days = seconds / 86_400;
            if days == 1 {
                "yesterday".to_owned()
            } else {
                format!("{days} days ago")
            }
        }
    }
}

/// Up to two initials of a name, upper case: "Ada Lovelace" → "AL", "bob" → "B".
pub fn initials(name: &str) -> String {
    let words: Vec<&str> = name
        .split(|c: char| c.is_whitespace() || c == '-' || c == '_' || c == '.')
        .filter(|word| !word.is_empty())
        .collect();
    let picked: String = match words.as_slice() {
        [] => "?".to_owned(),
        [one] => one.chars().take(1).collect(),
        [first, .., last] => first.chars().take(1).chain(last.chars().take(1)).collect(),
    };
    picked.to_uppercase()
}

/// The words for a role.
pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::Owner => "Owner",
        Role::Editor => "Editor",
        Role::Viewer => "Viewer",
    }
}

// ---------------------------------------------------------------------------------------
// `/docs`

/// The list as loaded.
#[derive(Debug, Clone, PartialEq)]
enum ListState {
    Loading,
    Loaded(Vec<DocSummary>),
    Failed(String),
}

/// A guest's view of a documents page.
#[component]
pub fn SignInPrompt() -> Html {
    html! {
        <div class="card empty-state docs-sign-in" data-testid="docs-sign-in">
            <h2>{ "Sign in to use documents" }</h2>
            <p class="muted">{ "Documents belong to accounts: sign in or create one to write, share and edit together." }</p>
            <div class="docs-sign-in-actions">
                <Link<Route> to={Route::SignIn} classes="button button-ghost">{ "Sign in" }</Link<Route>>
                <Link<Route> to={Route::SignUp} classes="button button-primary">{ "Sign up" }</Link<Route>>
            </div>
        </div>
    }
}

/// `/docs`: my documents.
#[component]
pub fn DocsPage() -> Html {
    let session = use_context::<SessionState>().unwrap_or_default();
    let username = session.username().map(str::to_owned);

    html! {
        <section class="page docs" data-testid="docs-page">
            <div class="page-header">
                <h1>{ "Documents" }</h1>
                <p class="lead">
                    { "Write together: every edit shows at once for everyone, works offline, and is kept with its history." }
                </p>
            </div>
            if session.is_loading() {
                <Spinner label="Checking your session…" />
            } else if let Some(username) = username {
                <DocList key={username.clone()} username={username.clone()} />
            } else {
                <SignInPrompt />
            }
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct DocListProps {
    username: String,
}

#[component]
fn DocList(props: &DocListProps) -> Html {
    let list = use_state(|| ListState::Loading);
    // Answers to older requests are dropped: only the latest request may set the list.
    let request = use_mut_ref(|| 0u64);
    let reload = {
        let list = list.clone();
        let request = request.clone();
        Callback::from(move |_: ()| {
            *request.borrow_mut() += 1;
            let mine = *request.borrow();
            let list = list.clone();
            let request = request.clone();
            spawn_local(async move {
                let result = api::list().await;
                if *request.borrow() != mine {
                    return;
                }
                list.set(match result {
                    Ok(answer) => ListState::Loaded(answer.docs),
                    Err(error) => ListState::Failed(error.message()),
                });
            });
        })
    };
    {
        let reload = reload.clone();
        use_effect_with(props.username.clone(), move |_| reload.emit(()));
    }

    let body = match &*list {
        ListState::Loading => html! { <Spinner label="Loading your documents…" /> },
        ListState::Failed(error) => html! {
            <div class="callout callout-error" role="alert" data-testid="doc-list-error">
                <span>{ format!("Your documents could not be loaded: {error}") }</span>
                <button type="button" class="link-button" onclick={reload.reform(|_: MouseEvent| ())}>
                    { "Try again" }
                </button>
            </div>
        },
        ListState::Loaded(docs) if docs.is_empty() => html! {
            <p class="empty muted" data-testid="doc-list-empty">
                { "No documents yet. Create one above, or ask someone to share theirs with you." }
            </p>
        },
        ListState::Loaded(docs) => {
            let now = browser::now_ms();
            html! {
                <ul class="doc-list" data-testid="doc-list">
                    { for docs.iter().map(|doc| html! {
                        <DocRow key={doc.id.clone()} doc={doc.clone()} {now} on_changed={reload.clone()} />
                    }) }
                </ul>
            }
        }
    };

    html! {
        <div class="docs-layout">
            <CreateDoc />
            <section class="card panel" aria-labelledby="docs-list-title">
                <header class="panel-header">
                    <h2 id="docs-list-title">{ "My documents" }</h2>
                    <button type="button" class="button button-ghost" onclick={reload.reform(|_: MouseEvent| ())}>
                        { "Refresh" }
                    </button>
                </header>
                { body }
            </section>
        </div>
    }
}

/// The create form: on success, opens the new document.
#[component]
fn CreateDoc() -> Html {
    let navigator = use_navigator();
    let input = use_node_ref();
    let error = use_state(|| None::<String>);
    let busy = use_state(|| false);

    let onsubmit = {
        let input = input.clone();
        let error = error.clone();
        let busy = busy.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            if *busy {
                return;
            }
            let title = match validate_title(&browser::input_value(&input)) {
                Ok(title) => title,
                Err(why) => {
                    error.set(Some(why));
                    return;
                }
            };
            busy.set(true);
            error.set(None);
            let error = error.clone();
            let busy = busy.clone();
            let navigator = navigator.clone();
            spawn_local(async move {
                match api::create(&title).await {
                    Ok(doc) => {
                        if let Some(navigator) = navigator {
                            navigator.push(&Route::Doc { id: doc.id });
                        }
                    }
                    Err(failure) => error.set(Some(failure.message())),
                }
                busy.set(false);
            });
        })
    };

    html! {
        <form class="card panel doc-create" {onsubmit}>
            <label class="field">
                <span class="field-label">{ "New document" }</span>
                <div class="form-inline">
                    <input
                        ref={input}
                        type="text"
                        name="title"
                        placeholder="Title"
                        maxlength={MAX_TITLE_CHARS.to_string()}
                        data-testid="doc-create-title"
                        disabled={*busy}
                    />
                    <button type="submit" class="button button-primary" data-testid="doc-create" disabled={*busy}>
                        { if *busy { "Creating…" } else { "Create" } }
                    </button>
                </div>
            </label>
            if let Some(error) = &*error {
                <p class="form-error" role="alert" data-testid="doc-create-error">{ error.clone() }</p>
            }
        </form>
    }
}

#[derive(Properties, PartialEq)]
struct DocRowProps {
    doc: DocSummary,
    now: i64,
    on_changed: Callback<()>,
}

#[derive(Debug, Clone, PartialEq)]
enum RowMode {
    Showing,
    Renaming,
    ConfirmingDelete,
}

#[component]
fn DocRow(props: &DocRowProps) -> Html {
    let doc = &props.doc;
    let mode = use_state(|| RowMode::Showing);
    let busy = use_state(|| false);
    let error = use_state(|| None::<String>);
    let input = use_node_ref();

    let set_mode = |next: RowMode| {
        let mode = mode.clone();
        let error = error.clone();
        Callback::from(move |_: MouseEvent| {
            error.set(None);
            mode.set(next.clone());
        })
    };

    let on_rename = {
        let id = doc.id.clone();
        let input = input.clone();
        let busy = busy.clone();
        let error = error.clone();
        let mode = mode.clone();
        let on_changed = props.on_changed.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let title = match validate_title(&browser::input_value(&input)) {
                Ok(title) => title,
                Err(why) => {
                    error.set(Some(why));
                    return;
                }
            };
            busy.set(true);
            let (id, busy, error, mode, on_changed) = (
                id.clone(),
                busy.clone(),
                error.clone(),
                mode.clone(),
                on_changed.clone(),
            );
            spawn_local(async move {
                match api::rename(&id, &title).await {
                    Ok(_) => {
                        mode.set(RowMode::Showing);
                        on_changed.emit(());
                    }
                    Err(failure) => error.set(Some(failure.message())),
                }
                busy.set(false);
            });
        })
    };

    let on_delete = {
        let id = doc.id.clone();
        let busy = busy.clone();
        let error = error.clone();
        let on_changed = props.on_changed.clone();
        Callback::from(move |_: MouseEvent| {
            busy.set(true);
            let (id, busy, error, on_changed) =
                (id.clone(), busy.clone(), error.clone(), on_changed.clone());
            spawn_local(async move {
                match api::delete(&id).await {
                    Ok(()) => on_changed.emit(()),
                    Err(failure) => {
                        error.set(Some(failure.message()));
                        busy.set(false);
                    }
                }
            });
        })
    };

    let can_rename = doc.role.can_edit();
    let is_owner = doc.role == Role::Owner;
    let owner = if is_owner {
        "you".to_owned()
    } else {
        doc.owner.username.clone()
    };

    html! {
        <li class="doc-item" data-testid="doc-item" data-doc-id={doc.id.clone()} data-role={doc.role.as_str()}>
            if *mode == RowMode::Renaming {
                <form class="form-inline doc-rename" onsubmit={on_rename}>
                    <input
                        ref={input}
                        type="text"
                        value={doc.title.clone()}
                        maxlength={MAX_TITLE_CHARS.to_string()}
                        aria-label="New title"
                        data-testid="doc-rename-input"
                        disabled={*busy}
                    />
                    <button type="submit" class="button button-primary" data-testid="doc-rename-save" disabled={*busy}>
                        { "Save" }
                    </button>
                    <button type="button" class="button button-ghost" onclick={set_mode(RowMode::Showing)}>
                        { "Cancel" }
                    </button>
                </form>
            } else {
                <div class="doc-item-main">
                    <Link<Route> to={Route::Doc { id: doc.id.clone() }} classes="doc-link">
                        <span data-testid="doc-link">{ doc.title.clone() }</span>
                    </Link<Route>>
                    <span class="doc-meta muted small">
                        <span class={classes!("badge", "doc-role", format!("doc-role-{}", doc.role.as_str()))}>
                            { role_label(doc.role) }
                        </span>
                        { format!(" · owned by {owner} · changed {}", format_age(doc.updated_ms, props.now)) }
                    </span>
                </div>
                <div class="doc-item-actions">
                    if *mode == RowMode::ConfirmingDelete {
                        <span class="small">{ "Delete for everyone?" }</span>
                        <button type="button" class="button button-danger" data-testid="doc-delete-confirm" onclick={on_delete} disabled={*busy}>
                            { if *busy { "Deleting…" } else { "Delete" } }
                        </button>
                        <button type="button" class="button button-ghost" onclick={set_mode(RowMode::Showing)} disabled={*busy}>
                            { "Keep" }
                        </button>
                    } else {
                        if can_rename {
                            <button type="button" class="button button-ghost" data-testid="doc-rename" onclick={set_mode(RowMode::Renaming)}>
                                { "Rename" }
                            </button>
                        }
                        if is_owner {
                            <button type="button" class="button button-ghost" data-testid="doc-delete" onclick={set_mode(RowMode::ConfirmingDelete)}>
                                { "Delete" }
                            </button>
                        }
                    }
                </div>
            }
            if let Some(error) = &*error {
                <p class="form-error" role="alert">{ error.clone() }</p>
            }
        </li>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(validate_title("  Plans  ").unwrap(), "Plans");
        assert!(validate_title("   ").is_err());
        assert!(validate_title(&"é".repeat(MAX_TITLE_CHARS)).is_ok());
        assert!(validate_title(&"é".repeat(MAX_TITLE_CHARS + 1)).is_err());
    }

    #[test]
    fn ages_read_plainly() {
        let now = 10 * 86_400_000;
        assert_eq!(format_age(now - 5_000, now), "just now");
        assert_eq!(format_age(now + 60_000, now), "just now");
        assert_eq!(format_age(now - 5 * 60_000, now), "5 min ago");
        assert_eq!(format_age(now - 3 * 3_600_000, now), "3 h ago");
        assert_eq!(format_age(now - 86_400_000, now), "yesterday");
        assert_eq!(format_age(now - 4 * 86_400_000, now), "4 days ago");
    }

    #[test]
    fn initials_come_from_the_first_and_last_words() {
        assert_eq!(initials("Ada Lovelace"), "AL");
        assert_eq!(initials("bob"), "B");
        assert_eq!(initials("mary-jane_watson"), "MW");
        assert_eq!(initials("  "), "?");
        assert_eq!(initials("émile zola"), "ÉZ");
    }

    #[test]
    fn roles_have_labels() {
        assert_eq!(role_label(Role::Owner), "Owner");
        assert_eq!(role_label(Role::Viewer), "Viewer");
    }
}
