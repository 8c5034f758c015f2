//! The `/drive` components (see the module's doc).

use std::cell::Cell;
use std::rc::Rc;

use gloo_timers::callback::Interval;
use js_sys::Uint8Array;
use meridian_shared::drive::{CommitOutcome, Node, NodeKind};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{DragEvent, File, FileList, HtmlInputElement, HtmlTextAreaElement};
use yew::prelude::*;
use yew_router::prelude::Link;

use super::api;
use super::state::{format_size, is_conflict_copy, is_text, DriveAction, DriveState, Editing};
use super::store::{self, CachedFile, PendingSave};
use crate::app::Route;
use crate::components::Spinner;
use crate::net::http::HttpError;
use crate::net::realtime::Realtime;
use crate::session::SessionState;

/// How often saves made offline are retried (also at once when the browser goes online).
const RETRY_SAVES_MS: u32 = 3_000;

/// `/drive`.
#[component]
pub fn DrivePage() -> Html {
    let session = use_context::<SessionState>().unwrap_or_default();
    html! {
        <section class="page drive" data-testid="drive-page">
            <div class="page-header">
                <h1>{ "Drive" }</h1>
                <p class="lead">{ "Your files on every device: only changed chunks travel, and no edit is ever lost." }</p>
            </div>
            if session.is_loading() {
                <Spinner label="Checking your session…" />
            } else if let Some(user_id) = session.user_id() {
                <DriveBrowser key={user_id.to_owned()} user_id={user_id.to_owned()} />
            } else {
                <div class="card">
                    <p>{ "The drive is for signed-in accounts." }</p>
                    <Link<Route> to={Route::SignIn} classes="button button-primary">{ "Sign in" }</Link<Route>>
                </div>
            }
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct BrowserProps {
    user_id: String,
}

fn reload(state: &UseReducerHandle<DriveState>) {
    let folder = state.folder().map(str::to_owned);
    let trash = state.show_trash;
    let dispatcher = state.dispatcher();
    dispatcher.dispatch(DriveAction::Loading);
    spawn_local(async move {
        match api::children(folder.as_deref(), trash).await {
            Ok(nodes) => dispatcher.dispatch(DriveAction::Listed(nodes)),
            Err(err) => dispatcher.dispatch(DriveAction::Failed(err.message())),
        }
    });
}

/// Sends the saves made offline; answers how many still wait.
async fn flush_saves() -> usize {
    let Ok(saves) = store::pending_saves().await else {
        return 0;
    };
    let mut left = 0;
    for save in saves {
        let target = api::new_version(&save.node_id, save.base_version.as_deref());
        match api::upload(save.text.as_bytes(), target, |_, _| {}).await {
            Ok(_) => {
                let _ = store::save_sent(&save.node_id).await;
            }
            Err(err) if err.is_network() => left += 1,
            Err(err) => {
                // Refused for good (the file is gone, or read-only now): drop it, say why.
                web_sys::console::warn_1(
                    &format!("an offline save was refused: {}", err.message()).into(),
                );
                let _ = store::save_sent(&save.node_id).await;
            }
        }
    }
    left
}

async fn read_file(file: File) -> Result<Vec<u8>, String> {
    let buffer = JsFuture::from(file.array_buffer())
        .await
        .map_err(|e| format!("cannot read {}: {e:?}", file.name()))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

fn files_of(list: Option<FileList>) -> Vec<File> {
    let Some(list) = list else { return Vec::new() };
    (0..list.length()).filter_map(|i| list.get(i)).collect()
}

#[component]
fn DriveBrowser(props: &BrowserProps) -> Html {
    let state = use_reducer(DriveState::default);
    let upload_keys = use_mut_ref(|| 0u64);
    let realtime = use_context::<Realtime>();

    // The listing follows the open folder and the trash switch.
    {
        let state = state.clone();
        let deps = (state.folder().map(str::to_owned), state.show_trash);
        use_effect_with(deps, move |_| reload(&state));
    }
    // Changes from other devices arrive on the account's topic.
    {
        let state = state.clone();
        let topic = format!("user:{}", props.user_id);
        use_effect_with(topic, move |topic| {
            let seen = Rc::new(Cell::new(usize::MAX));
            let watch = realtime.map(|realtime| {
                realtime.watch(
                    topic,
                    false,
                    Callback::from(move |view: crate::net::realtime::TopicView| {
                        let count = view.events.len();
                        if seen.get() != usize::MAX && seen.get() != count {
                            reload(&state);
                        }
                        seen.set(count);
                    }),
                )
            });
            move || drop(watch)
        });
    }
    // Saves made offline: sent now, when the browser is back online, and every few s.
    {
        let dispatcher = state.dispatcher();
        let state = state.clone();
        use_effect_with((), move |_| {
            let flush = Rc::new(move || {
                let dispatcher = dispatcher.clone();
                let state = state.clone();
                spawn_local(async move {
                    let before = store::pending_saves().await.map(|s| s.len()).unwrap_or(0);
                    if before == 0 {
                        dispatcher.dispatch(DriveAction::PendingSaves(0));
                        return;
                    }
                    let left = flush_saves().await;
                    dispatcher.dispatch(DriveAction::PendingSaves(left));
                    if left < before {
                        reload(&state);
                    }
                });
            });
            flush();
            let on_online = {
                let flush = flush.clone();
                Closure::<dyn Fn()>::new(move || flush())
            };
            if let Some(window) = web_sys::window() {
                let _ = window
                    .add_event_listener_with_callback("online", on_online.as_ref().unchecked_ref());
            }
            let interval = {
                let flush = flush.clone();
                Interval::new(RETRY_SAVES_MS, move || flush())
            };
            move || {
                if let Some(window) = web_sys::window() {
                    let _ = window.remove_event_listener_with_callback(
                        "online",
                        on_online.as_ref().unchecked_ref(),
                    );
                }
                drop(interval);
            }
        });
    }

    let start_uploads = {
        let state = state.clone();
        let upload_keys = upload_keys.clone();
        Callback::from(move |files: Vec<File>| {
            for file in files {
                let key = {
                    let mut next = upload_keys.borrow_mut();
                    *next += 1;
                    *next
                };
                let name = file.name();
                let folder = state.folder().map(str::to_owned);
                let dispatcher = state.dispatcher();
                let state = state.clone();
                dispatcher.dispatch(DriveAction::UploadStarted {
                    key,
                    name: name.clone(),
                });
                spawn_local(async move {
                    let result = match read_file(file).await {
                        Ok(data) => {
                            let progress = {
                                let dispatcher = dispatcher.clone();
                                move |sent, total| {
                                    dispatcher.dispatch(DriveAction::UploadProgress {
                                        key,
                                        sent,
                                        total,
                                    })
                                }
                            };
                            api::upload(&data, api::new_file(folder.as_deref(), &name), progress)
                                .await
                                .map_err(|e| e.message())
                        }
                        Err(err) => Err(err),
                    };
                    dispatcher.dispatch(DriveAction::UploadDone { key });
                    match result {
                        Ok(_) => reload(&state),
                        Err(err) => dispatcher.dispatch(DriveAction::Failed(err)),
                    }
                });
            }
        })
    };
    let on_pick = {
        let start_uploads = start_uploads.clone();
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            start_uploads.emit(files_of(input.files()));
            input.set_value("");
        })
    };
    let on_drop = {
        let start_uploads = start_uploads.clone();
        Callback::from(move |e: DragEvent| {
            e.prevent_default();
            start_uploads.emit(files_of(e.data_transfer().and_then(|d| d.files())));
        })
    };
    let on_drag_over = Callback::from(|e: DragEvent| e.prevent_default());
    let folder_name = use_node_ref();
    let on_new_folder = {
        let state = state.clone();
        let folder_name = folder_name.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let Some(input) = folder_name.cast::<HtmlInputElement>() else {
                return;
            };
            let name = input.value();
            if name.trim().is_empty() {
                return;
            }
            input.set_value("");
            let state = state.clone();
            let folder = state.folder().map(str::to_owned);
            spawn_local(async move {
                match api::create_folder(folder.as_deref(), name.trim()).await {
                    Ok(_) => reload(&state),
                    Err(err) => state.dispatch(DriveAction::Failed(err.message())),
                }
            });
        })
    };

    let crumbs = {
        let mut out = vec![html! {
            <button class="link-button" data-testid="drive-crumb" onclick={let s = state.clone(); move |_| s.dispatch(DriveAction::Up(0))}>{ "My drive" }</button>
        }];
        for (i, (_, name)) in state.trail.iter().enumerate() {
            let s = state.clone();
            out.push(html! { <span class="muted">{ " / " }</span> });
            out.push(html! {
                <button class="link-button" data-testid="drive-crumb" onclick={move |_| s.dispatch(DriveAction::Up(i + 1))}>{ name.clone() }</button>
            });
        }
        out
    };

    html! {
        <div class="drive-browser" ondrop={on_drop} ondragover={on_drag_over}>
            <nav class="drive-trail" data-testid="drive-trail">{ for crumbs }</nav>
            if let Some(error) = &state.error {
                <div class="error" role="alert" data-testid="drive-error">
                    { error.clone() }
                    <button class="link-button" onclick={let s = state.clone(); move |_| s.dispatch(DriveAction::ClearError)}>{ "Dismiss" }</button>
                </div>
            }
            <div class="drive-toolbar">
                <form onsubmit={on_new_folder}>
                    <input ref={folder_name} data-testid="drive-folder-name" placeholder="New folder" />
                    <button class="button" type="submit" data-testid="drive-new-folder">{ "Create folder" }</button>
                </form>
                <label class="button button-primary">
                    { "Upload files" }
                    <input type="file" multiple=true class="drive-file-input" data-testid="drive-upload" onchange={on_pick} />
                </label>
                <button class="button button-ghost" data-testid="drive-trash" onclick={let s = state.clone(); move |_| s.dispatch(DriveAction::ToggleTrash)}>
                    { if state.show_trash { "Back to files" } else { "Trash" } }
                </button>
                if state.pending_saves > 0 {
                    <span class="pill" data-testid="drive-pending">{ format!("{} saved offline, waiting to sync", state.pending_saves) }</span>
                }
            </div>
            <p class="muted drive-drop-hint">{ "Drop files anywhere here to upload them into this folder." }</p>
            { for state.uploads.iter().map(|u| html! {
                <div class="drive-upload" data-testid="drive-upload-progress" data-done={u.done.to_string()}>
                    <span>{ u.name.clone() }</span>
                    <progress max={u.total.max(1).to_string()} value={if u.done { u.total.max(1) } else { u.sent }.to_string()} />
                    <span class="muted">{ if u.done { "done".to_owned() } else { format!("{} of {} to send", format_size(u.sent), format_size(u.total)) } }</span>
                </div>
            }) }
            if state.loading && state.nodes.is_empty() {
                <Spinner label="Loading…" />
            }
            <table class="drive-table">
                <tbody>
                    { for state.shown().into_iter().map(|node| html! { <Row node={node.clone()} state={state.clone()} /> }) }
                </tbody>
            </table>
            if state.shown().is_empty() && !state.loading {
                <p class="muted" data-testid="drive-empty">{ if state.show_trash { "The trash is empty." } else { "This folder is empty." } }</p>
            }
            if let Some((node, versions)) = &state.versions {
                <Versions node={node.clone()} versions={versions.clone()} state={state.clone()} />
            }
            if let Some(editing) = &state.editing {
                <Editor editing={editing.clone()} state={state.clone()} />
            }
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct RowProps {
    node: Node,
    state: UseReducerHandle<DriveState>,
}

fn prompt(message: &str, default: &str) -> Option<String> {
    web_sys::window()?
        .prompt_with_message_and_default(message, default)
        .ok()
        .flatten()
        .filter(|s| !s.trim().is_empty())
}

/// Runs `work`, then reloads the listing (or shows its error).
fn act(
    state: &UseReducerHandle<DriveState>,
    work: impl std::future::Future<Output = Result<(), HttpError>> + 'static,
) {
    let state = state.clone();
    spawn_local(async move {
        match work.await {
            Ok(()) => reload(&state),
            Err(err) => state.dispatch(DriveAction::Failed(err.message())),
        }
    });
}

#[component]
fn Row(props: &RowProps) -> Html {
    let node = props.node.clone();
    let state = props.state.clone();
    let open = {
        let (state, node) = (state.clone(), node.clone());
        Callback::from(move |_| {
            state.dispatch(DriveAction::Open {
                id: node.id.clone(),
                name: node.name.clone(),
            })
        })
    };
    let rename = {
        let (state, node) = (state.clone(), node.clone());
        Callback::from(move |_| {
            if let Some(name) = prompt("New name", &node.name) {
                let node = node.clone();
                act(&state, async move {
                    api::move_node(&node.id, node.parent_id.as_deref(), name.trim())
                        .await
                        .map(|_| ())
                });
            }
        })
    };
    let move_to = {
        let (state, node) = (state.clone(), node.clone());
        Callback::from(move |_| {
            let Some(target) = prompt(
                "Move into which folder of this one? (`..` for the folder above)",
                "..",
            ) else {
                return;
            };
            let target = target.trim().to_owned();
            let parent = if target == ".." {
                let trail = &state.trail;
                Some(if trail.len() >= 2 {
                    Some(trail[trail.len() - 2].0.clone())
                } else {
                    None
                })
            } else {
                state
                    .nodes
                    .iter()
                    .find(|n| n.kind == NodeKind::Folder && !n.deleted && n.name == target)
                    .map(|n| Some(n.id.clone()))
            };
            let Some(parent) = parent else {
                state.dispatch(DriveAction::Failed(format!("no folder {target:?} here")));
                return;
            };
            let node = node.clone();
            act(&state, async move {
                api::move_node(&node.id, parent.as_deref(), &node.name)
                    .await
                    .map(|_| ())
            });
        })
    };
    let delete = {
        let (state, id) = (state.clone(), node.id.clone());
        Callback::from(move |_| {
            let id = id.clone();
            act(&state, async move { api::delete(&id).await })
        })
    };
    let restore = {
        let (state, id) = (state.clone(), node.id.clone());
        Callback::from(move |_| {
            let id = id.clone();
            act(&state, async move { api::restore(&id).await.map(|_| ()) })
        })
    };
    let versions = {
        let (state, node) = (state.clone(), node.clone());
        Callback::from(move |_| {
            let (state, node) = (state.clone(), node.clone());
            spawn_local(async move {
                match api::versions(&node.id).await {
                    Ok(list) => state.dispatch(DriveAction::Versions(node, list)),
                    Err(err) => state.dispatch(DriveAction::Failed(err.message())),
                }
            });
        })
    };
    let edit = {
        let (state, node) = (state.clone(), node.clone());
        Callback::from(move |_| {
            let (state, node) = (state.clone(), node.clone());
            spawn_local(async move {
                let fetched = match &node.version_id {
                    Some(version) => api::fetch_version(version).await,
                    None => Ok(Vec::new()),
                };
                let editing = match fetched {
                    Ok(bytes) => {
                        let text = String::from_utf8_lossy(&bytes).into_owned();
                        let _ = store::cache_file(&CachedFile {
                            node_id: node.id.clone(),
                            version_id: node.version_id.clone(),
                            text: text.clone(),
                        })
                        .await;
                        Editing {
                            node,
                            text,
                            from_cache: false,
                        }
                    }
                    Err(err) if err.is_network() => {
                        match store::cached_file(&node.id).await.ok().flatten() {
                            Some(cached) => Editing {
                                node,
                                text: cached.text,
                                from_cache: true,
                            },
                            None => {
                                state.dispatch(DriveAction::Failed(
                                    "offline, and this file was never opened here".into(),
                                ));
                                return;
                            }
                        }
                    }
                    Err(err) => {
                        state.dispatch(DriveAction::Failed(err.message()));
                        return;
                    }
                };
                state.dispatch(DriveAction::Edit(editing));
            });
        })
    };
    let conflict = is_conflict_copy(&node.name);
    html! {
        <tr class="drive-row" data-testid="drive-row" data-name={node.name.clone()} data-kind={node.kind.as_str()}>
            <td>
                if node.kind == NodeKind::Folder && !node.deleted {
                    <button class="link-button" data-testid="drive-open" onclick={open}>{ format!("{}/", node.name) }</button>
                } else {
                    <span>{ node.name.clone() }</span>
                }
                if conflict {
                    <span class="pill drive-conflict" data-testid="drive-conflict">{ "conflicted copy" }</span>
                }
            </td>
            <td class="muted drive-size">{ if node.kind == NodeKind::File { format_size(node.size) } else { String::new() } }</td>
            <td class="drive-actions">
                if node.deleted {
                    <button class="button button-ghost" data-testid="drive-restore" onclick={restore}>{ "Restore" }</button>
                } else {
                    if node.kind == NodeKind::File {
                        <a class="button button-ghost" data-testid="drive-download" href={api::content_url(&node.id)} download={node.name.clone()}>{ "Download" }</a>
                        if is_text(&node) {
                            <button class="button button-ghost" data-testid="drive-edit" onclick={edit}>{ "Edit" }</button>
                        }
                        <button class="button button-ghost" data-testid="drive-versions" onclick={versions}>{ "Versions" }</button>
                    }
                    <button class="button button-ghost" data-testid="drive-rename" onclick={rename}>{ "Rename" }</button>
                    <button class="button button-ghost" data-testid="drive-move" onclick={move_to}>{ "Move" }</button>
                    <button class="button button-ghost" data-testid="drive-delete" onclick={delete}>{ "Delete" }</button>
                }
            </td>
        </tr>
    }
}

#[derive(Properties, PartialEq)]
struct VersionsProps {
    node: Node,
    versions: Vec<meridian_shared::drive::VersionInfo>,
    state: UseReducerHandle<DriveState>,
}

#[component]
fn Versions(props: &VersionsProps) -> Html {
    let state = props.state.clone();
    html! {
        <div class="card drive-versions" data-testid="drive-versions-panel">
            <h2>{ format!("Versions of {}", props.node.name) }</h2>
            <ul>
                { for props.versions.iter().map(|v| {
                    let current = props.node.version_id.as_deref() == Some(v.id.as_str());
                    let restore = {
                        let (state, id) = (state.clone(), v.id.clone());
                        Callback::from(move |_| {
                            let id = id.clone();
                            state.dispatch(DriveAction::CloseVersions);
                            act(&state, async move { api::restore_version(&id).await.map(|_| ()) });
                        })
                    };
                    html! {
                        <li data-testid="drive-version-row">
                            { format!("{} · {} · {}", crate::browser::local_time_hh_mm(v.created_ms), format_size(v.size), v.device) }
                            <a class="link-button" href={api::version_url(&v.id)}>{ " download" }</a>
                            if current {
                                <span class="pill">{ "current" }</span>
                            } else {
                                <button class="link-button" onclick={restore}>{ " make current" }</button>
                            }
                        </li>
                    }
                }) }
            </ul>
            <button class="button" onclick={let s = state.clone(); move |_| s.dispatch(DriveAction::CloseVersions)}>{ "Close" }</button>
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct EditorProps {
    editing: Editing,
    state: UseReducerHandle<DriveState>,
}

#[component]
fn Editor(props: &EditorProps) -> Html {
    let state = props.state.clone();
    let on_input = {
        let state = state.clone();
        Callback::from(move |e: InputEvent| {
            let area: HtmlTextAreaElement = e.target_unchecked_into();
            state.dispatch(DriveAction::EditText(area.value()));
        })
    };
    let save = {
        let (state, editing) = (state.clone(), props.editing.clone());
        Callback::from(move |_| {
            let (state, editing) = (state.clone(), editing.clone());
            spawn_local(async move {
                let node = &editing.node;
                let target = api::new_version(&node.id, node.version_id.as_deref());
                match api::upload(editing.text.as_bytes(), target, |_, _| {}).await {
                    Ok(committed) => {
                        let _ = store::cache_file(&CachedFile {
                            node_id: node.id.clone(),
                            version_id: Some(committed.version.id.clone()),
                            text: editing.text.clone(),
                        })
                        .await;
                        if committed.outcome == CommitOutcome::ConflictCopy {
                            state.dispatch(DriveAction::Failed(format!(
                                "{} changed meanwhile: your text was kept as {}",
                                node.name, committed.node.name
                            )));
                        }
                        state.dispatch(DriveAction::CloseEditor);
                        reload(&state);
                    }
                    Err(err) if err.is_network() => {
                        let save = PendingSave {
                            node_id: node.id.clone(),
                            base_version: node.version_id.clone(),
                            text: editing.text.clone(),
                        };
                        let _ = store::queue_save(&save).await;
                        let waiting = store::pending_saves().await.map(|s| s.len()).unwrap_or(1);
                        state.dispatch(DriveAction::PendingSaves(waiting));
                        state.dispatch(DriveAction::CloseEditor);
                    }
                    Err(err) => state.dispatch(DriveAction::Failed(err.message())),
                }
            });
        })
    };
    html! {
        <div class="card drive-editor" data-testid="drive-editor">
            <h2>{ format!("Editing {}", props.editing.node.name) }</h2>
            if props.editing.from_cache {
                <p class="muted" data-testid="drive-from-cache">{ "Offline: this is the copy kept in this browser." }</p>
            }
            <textarea data-testid="drive-editor-text" rows="12" value={props.editing.text.clone()} oninput={on_input} />
            <div>
                <button class="button button-primary" data-testid="drive-save" onclick={save}>{ "Save" }</button>
                <button class="button" onclick={let s = state.clone(); move |_| s.dispatch(DriveAction::CloseEditor)}>{ "Cancel" }</button>
            </div>
        </div>
    }
}
