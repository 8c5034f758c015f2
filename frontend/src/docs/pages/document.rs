//! `/docs/:id`: one document. Its title (editable inline by editors), the sync status of
//! its [`DocSession`], who is here (presence), the [`Editor`] bound to the session's
//! replica, and the share and history panels.
//!
//! The session opens as soon as the account is known, in parallel with the document's
//! metadata (`GET /api/docs/{id}`), so the stored copy renders at once; it is closed
//! (saying goodbye to the others) when the page goes away or the server says the
//! document is not this account's to open.
//!
//! The title and members, which others may change, are fetched again when the window
//! regains focus and every 30 s; a failed refresh (offline) keeps what is shown.
//!
//! Invariants: the editor is read-only for viewers and whenever the session says edits
//! are refused (read-only, deleted); the editor's `revision` is the session's, which
//! moves with every change that did not come from this tab's editor.

use std::rc::Rc;

use gloo_timers::callback::Interval;
use meridian_shared::docs::{Doc, Role};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::spawn_local;
use web_sys::HtmlInputElement;
use yew::prelude::*;
use yew_router::prelude::*;

use super::history::HistoryPanel;
use super::share::SharePanel;
use super::{api, initials, role_label, validate_title, SignInPrompt, MAX_TITLE_CHARS};
use crate::app::Route;
use crate::browser::WindowListener;
use crate::components::Spinner;
use crate::docs::editor::Editor;
use crate::docs::session::{DocSession, Presence, SessionView, SyncStatus};
use crate::net::http::HttpError;
use crate::session::SessionState;

/// How often the document's title and members are fetched again.
const META_REFRESH_MS: u32 = 30_000;

#[derive(Properties, PartialEq)]
pub struct DocPageProps {
    pub id: String,
}

/// What the page knows of the document's metadata.
#[derive(Debug, Clone, PartialEq)]
enum Meta {
    Loading,
    Loaded(Doc),
    /// Not this account's to open (or no such document): the session is closed.
    Refused(String),
    /// Could not be loaded (the network): the session carries on from the stored copy.
    Failed(String),
}

impl Meta {
    fn of(result: Result<Doc, HttpError>) -> Meta {
        match result {
            Ok(doc) => Meta::Loaded(doc),
            Err(
                error @ HttpError::Api {
                    status: 401 | 403 | 404,
                    ..
                },
            ) => Meta::Refused(error.message()),
            Err(error) => Meta::Failed(error.message()),
        }
    }
}

/// The pill's colour for a status (the shared `.pill-*` classes).
pub fn status_tone(status: &SyncStatus) -> &'static str {
    match status {
        SyncStatus::Synced => "online",
        SyncStatus::Saving | SyncStatus::Connecting => "connecting",
        SyncStatus::Offline
        | SyncStatus::ReadOnly(_)
        | SyncStatus::Deleted
        | SyncStatus::Error(_) => "offline",
    }
}

/// `/docs/:id`.
#[component]
pub fn DocPage(props: &DocPageProps) -> Html {
    let session = use_context::<SessionState>().unwrap_or_default();
    let body = if session.is_loading() {
        html! { <Spinner label="Checking your session…" /> }
    } else if let Some(username) = session.username() {
        html! {
            <DocWorkspace
                key={format!("{}/{username}", props.id)}
                id={props.id.clone()}
                username={username.to_owned()}
            />
        }
    } else {
        html! { <SignInPrompt /> }
    };
    html! {
        <section class="page docs doc-page-wrap">
            <nav class="doc-breadcrumb small">
                <Link<Route> to={Route::Docs}>{ "← All documents" }</Link<Route>>
            </nav>
            { body }
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct WorkspaceProps {
    id: String,
    username: String,
}

#[component]
fn DocWorkspace(props: &WorkspaceProps) -> Html {
    let meta = use_state(|| Meta::Loading);
    let view = use_state_eq(SessionView::default);
    let session = use_state(|| None::<DocSession>);

    let reload_meta = {
        let meta = meta.clone();
        let id = props.id.clone();
        Callback::from(move |_: ()| {
            let meta = meta.clone();
            let id = id.clone();
            spawn_local(async move { meta.set(Meta::of(api::get(&id).await)) });
        })
    };
    {
        let reload_meta = reload_meta.clone();
        use_effect_with(props.id.clone(), move |_| reload_meta.emit(()));
    }

    {
        // Others rename and share: refresh on focus and now and then, keeping what is
        // shown when the refresh fails (offline); a lost access shows through the session.
        let meta = meta.clone();
        use_effect_with(props.id.clone(), move |id| {
            let id = id.clone();
            let refresh = Rc::new(move || {
                let meta = meta.clone();
                let id = id.clone();
                spawn_local(async move {
                    if let Ok(doc) = api::get(&id).await {
                        meta.set(Meta::Loaded(doc));
                    }
                });
            });
            let on_focus = {
                let refresh = refresh.clone();
                Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| refresh())
            };
            let listener = web_sys::window()
                .and_then(|window| WindowListener::add(&window, "focus", on_focus));
            let interval = Interval::new(META_REFRESH_MS, move || refresh());
            move || {
                drop(listener);
                drop(interval);
            }
        });
    }

    let refused = matches!(*meta, Meta::Refused(_));
    {
        let session = session.clone();
        let set_view = view.setter();
        use_effect_with(
            (props.id.clone(), props.username.clone(), refused),
            move |(id, username, refused)| {
                let opened = (!*refused).then(|| {
                    DocSession::open(
                        id,
                        username,
                        Callback::from(move |next: SessionView| set_view.set(next)),
                    )
                });
                session.set(opened.clone());
                move || {
                    if let Some(opened) = opened {
                        opened.close();
                    }
                }
            },
        );
    }
    {
        // Edits refused: the role may have changed, or access was revoked. Back in sync
        // after the details failed to load: the server is reachable again.
        let reload_meta = reload_meta.clone();
        let refused_edits = matches!(view.status, SyncStatus::ReadOnly(_));
        let retry_details = view.status == SyncStatus::Synced && matches!(*meta, Meta::Failed(_));
        use_effect_with((refused_edits, retry_details), move |(refused, retry)| {
            if *refused || *retry {
                reload_meta.emit(());
            }
        });
    }

    let on_selection = use_callback((*session).clone(), |selection, session| {
        if let Some(session) = session {
            session.set_cursor(selection);
        }
    });
    let on_doc_changed = {
        let meta = meta.clone();
        Callback::from(move |doc: Doc| meta.set(Meta::Loaded(doc)))
    };
    let navigator = use_navigator();
    let on_left = Callback::from(move |_: ()| {
        if let Some(navigator) = &navigator {
            navigator.push(&Route::Docs);
        }
    });

    if let Meta::Refused(reason) = &*meta {
        return html! {
            <div class="card empty-state" data-testid="doc-missing" role="alert">
                <h2>{ "This document is not available" }</h2>
                <p class="muted">{ reason.clone() }</p>
                <Link<Route> to={Route::Docs} classes="button button-primary">{ "Back to my documents" }</Link<Route>>
            </div>
        };
    }

    let doc = match &*meta {
        Meta::Loaded(doc) => Some(doc.clone()),
        _ => None,
    };
    let role = doc.as_ref().map(|doc| doc.role);
    let can_edit = role.is_some_and(Role::can_edit);
    let read_only = !can_edit || !view.status.allows_edits();

    let header = html! {
        <header class="doc-header">
            <div class="doc-title-row">
                <DocTitle
                    id={props.id.clone()}
                    doc={doc.clone()}
                    on_renamed={on_doc_changed.clone()}
                />
                <DocStatusPill status={view.status.clone()} detail={view.detail.clone()} />
                if let Some(role) = role {
                    <span class={classes!("badge", "doc-role", format!("doc-role-{}", role.as_str()))}>
                        { role_label(role) }
                    </span>
                }
            </div>
            <PresenceList present={view.present.clone()} />
        </header>
    };

    let banners = html! {
        <>
            if let Meta::Failed(error) = &*meta {
                <p class="callout callout-warning small" role="status">
                    { format!("The document's details could not be loaded ({error}); you are working on this browser's copy.") }
                </p>
            }
            if let Some(note) = &view.storage_note {
                <p class="callout callout-warning small" data-testid="doc-storage-note">{ note.clone() }</p>
            }
            {
                match &view.status {
                    SyncStatus::Deleted => html! {
                        <p class="callout callout-error" role="alert" data-testid="doc-deleted">
                            { "This document was deleted. What you see is this browser's last copy; it can no longer be edited." }
                        </p>
                    },
                    SyncStatus::ReadOnly(reason) => html! {
                        <p class="callout callout-warning" role="alert" data-testid="doc-read-only">
                            { format!("Edits are turned off: {reason}.") }
                        </p>
                    },
                    _ if role == Some(Role::Viewer) => html! {
                        <p class="callout small muted" data-testid="doc-viewer-note">
                            { "You can view this document; ask its owner to make you an editor to change it." }
                        </p>
                    },
                    _ => html! {},
                }
            }
        </>
    };

    let editor = match &*session {
        Some(session) if view.restored => html! {
            <Editor
                doc={session.doc()}
                revision={view.revision}
                {read_only}
                peers={view.peers.clone()}
                on_selection={on_selection}
            />
        },
        _ => html! { <Spinner label="Opening the document…" /> },
    };

    html! {
        <div
            class="doc-page"
            data-testid="doc-page"
            data-doc-id={props.id.clone()}
            data-role={role.map(Role::as_str).unwrap_or("unknown")}
        >
            <div class="doc-main">
                { header }
                { banners }
                { editor }
            </div>
            <aside class="doc-side">
                if let Some(doc) = doc {
                    <SharePanel
                        doc={doc.clone()}
                        me={props.username.clone()}
                        on_changed={on_doc_changed}
                        on_left={on_left}
                    />
                    <HistoryPanel doc_id={props.id.clone()} can_edit={can_edit && view.status.allows_edits()} />
                } else if matches!(*meta, Meta::Loading) {
                    <Spinner label="Loading the document's details…" />
                }
            </aside>
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct DocStatusPillProps {
    status: SyncStatus,
    detail: String,
}

/// The sync status as a pill (the look of the app's connection pills, with the
/// document's own states).
#[component]
fn DocStatusPill(props: &DocStatusPillProps) -> Html {
    html! {
        <span
            class={classes!("pill", format!("pill-{}", status_tone(&props.status)), "doc-status")}
            data-testid="doc-status"
            data-state={props.status.as_str()}
            title={props.detail.clone()}
            role="status"
            aria-live="polite"
        >
            <span class="pill-dot" aria-hidden="true"></span>
            { props.status.label() }
        </span>
    }
}

#[derive(Properties, PartialEq)]
struct PresenceListProps {
    present: Vec<Presence>,
}

/// Who is here: initials in each participant's colour, this tab first.
#[component]
fn PresenceList(props: &PresenceListProps) -> Html {
    html! {
        <ul class="presence" data-testid="doc-presence" aria-label="Who is here">
            { for props.present.iter().map(|who| {
                let title = if who.me { format!("{} (you)", who.name) } else { who.name.clone() };
                html! {
                    <li
                        key={who.client_id.to_string()}
                        class={classes!("presence-item", who.me.then_some("presence-me"))}
                        data-testid="presence-item"
                        data-client-id={who.client_id.to_string()}
                        data-me={who.me.to_string()}
                        data-name={who.name.clone()}
                        style={format!("--presence-color: {}", who.color)}
                        title={title.clone()}
                        aria-label={title}
                    >
                        { initials(&who.name) }
                    </li>
                }
            }) }
        </ul>
    }
}

#[derive(Properties, PartialEq)]
struct DocTitleProps {
    id: String,
    doc: Option<Doc>,
    on_renamed: Callback<Doc>,
}

/// The title: an input that renames on Enter or leaving it (owner and editors), else a
/// heading.
#[component]
fn DocTitle(props: &DocTitleProps) -> Html {
    let error = use_state(|| None::<String>);
    let busy = use_state(|| false);
    let Some(doc) = &props.doc else {
        return html! { <h1 class="doc-title" data-testid="doc-title">{ "…" }</h1> };
    };
    if !doc.role.can_edit() {
        return html! { <h1 class="doc-title" data-testid="doc-title">{ doc.title.clone() }</h1> };
    }
    let onchange = {
        let id = props.id.clone();
        let current = doc.title.clone();
        let error = error.clone();
        let busy = busy.clone();
        let on_renamed = props.on_renamed.clone();
        Callback::from(move |event: Event| {
            let Some(input) = event
                .target()
                .and_then(|target| target.dyn_into::<HtmlInputElement>().ok())
            else {
                return;
            };
            let title = match validate_title(&input.value()) {
                Ok(title) if title == current => return,
                Ok(title) => title,
                Err(why) => {
                    input.set_value(&current);
                    error.set(Some(why));
                    return;
                }
            };
            error.set(None);
            busy.set(true);
            let (id, error, busy, on_renamed, current) = (
                id.clone(),
                error.clone(),
                busy.clone(),
                on_renamed.clone(),
                current.clone(),
            );
            spawn_local(async move {
                match api::rename(&id, &title).await {
                    Ok(doc) => on_renamed.emit(doc),
                    Err(failure) => {
                        input.set_value(&current);
                        error.set(Some(failure.message()));
                    }
                }
                busy.set(false);
            });
        })
    };
    let onkeydown = Callback::from(|event: KeyboardEvent| {
        if event.key() == "Enter" {
            if let Some(input) = event
                .target()
                .and_then(|target| target.dyn_into::<HtmlInputElement>().ok())
            {
                // Leaving the field fires `change`.
                let _ = input.blur();
            }
        }
    });
    html! {
        <div class="doc-title-field">
            <input
                class="doc-title doc-title-input"
                data-testid="doc-title"
                type="text"
                aria-label="Title"
                value={doc.title.clone()}
                maxlength={MAX_TITLE_CHARS.to_string()}
                disabled={*busy}
                {onchange}
                {onkeydown}
            />
            if let Some(error) = &*error {
                <p class="form-error small" role="alert">{ error.clone() }</p>
            }
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::api::ApiErrorBody;

    #[test]
    fn statuses_map_to_pill_tones() {
        assert_eq!(status_tone(&SyncStatus::Synced), "online");
        assert_eq!(status_tone(&SyncStatus::Saving), "connecting");
        assert_eq!(status_tone(&SyncStatus::Offline), "offline");
        assert_eq!(status_tone(&SyncStatus::Deleted), "offline");
    }

    #[test]
    fn only_access_answers_refuse_the_page() {
        let api = |status: u16| HttpError::Api {
            status,
            body: ApiErrorBody {
                code: "doc_not_found".into(),
                message: "no such document".into(),
            },
        };
        assert_eq!(
            Meta::of(Err(api(404))),
            Meta::Refused("no such document".into())
        );
        assert!(matches!(Meta::of(Err(api(500))), Meta::Failed(_)));
        assert!(matches!(
            Meta::of(Err(HttpError::Network("down".into()))),
            Meta::Failed(_)
        ));
    }
}
