//! The history panel of a document: its versions (named, automatic, saved before a
//! restore), newest first; saving a named version; a read-only preview of any version
//! (its update applied to a fresh replica, shown by the same editor); and restoring one,
//! which the server turns into one ordinary edit that reaches everyone through the sync.

use meridian_shared::docs::{schema, Version, VersionKind};
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;
use yrs::updates::decoder::Decode;
use yrs::{Transact, Update};

use super::{api, format_age};
use crate::browser;
use crate::docs::editor::Editor;
use crate::docs::DocHandle;

/// The longest version name accepted here.
pub const MAX_VERSION_NAME_CHARS: usize = 100;

#[derive(Properties, PartialEq)]
pub struct HistoryPanelProps {
    pub doc_id: String,
    /// Whether this account may save and restore versions.
    pub can_edit: bool,
}

/// What a version is called in the list.
pub fn version_label(version: &Version) -> String {
    match (&version.name, version.kind) {
        (Some(name), _) if !name.trim().is_empty() => name.clone(),
        (_, VersionKind::Named) => "Untitled version".to_owned(),
        (_, VersionKind::Auto) => "Automatic save".to_owned(),
        (_, VersionKind::BeforeRestore) => "Before a restore".to_owned(),
    }
}

/// The machine-readable kind, for `data-kind`.
pub fn kind_name(kind: VersionKind) -> &'static str {
    match kind {
        VersionKind::Named => "named",
        VersionKind::Auto => "auto",
        VersionKind::BeforeRestore => "before_restore",
    }
}

/// A version name as it will be sent, or why not.
pub fn validate_version_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("Name the version.".to_owned());
    }
    if name.chars().count() > MAX_VERSION_NAME_CHARS {
        return Err(format!(
            "A version name has at most {MAX_VERSION_NAME_CHARS} characters."
        ));
    }
    Ok(name.to_owned())
}

/// A replica holding exactly what `update` builds (a version's content).
pub fn replica_of(update: &[u8]) -> Result<DocHandle, String> {
    let update = Update::decode_v1(update).map_err(|error| error.to_string())?;
    let handle = DocHandle::new(schema::new_doc());
    handle
        .doc()
        .transact_mut()
        .apply_update(update)
        .map_err(|error| error.to_string())?;
    Ok(handle)
}

#[derive(Clone, PartialEq)]
enum Versions {
    Loading,
    Loaded(Vec<Version>),
    Failed(String),
}

#[derive(Clone, PartialEq)]
struct Preview {
    version: Version,
    /// `None` while its content loads.
    doc: Option<DocHandle>,
    error: Option<String>,
}

#[component]
pub fn HistoryPanel(props: &HistoryPanelProps) -> Html {
    let versions = use_state(|| Versions::Loading);
    let preview = use_state(|| None::<Preview>);
    let message = use_state(|| None::<(bool, String)>);
    let busy = use_state(|| false);
    let name = use_node_ref();
    // Only the latest request may set the list or the preview.
    let list_request = use_mut_ref(|| 0u64);
    let preview_request = use_mut_ref(|| 0u64);

    let reload = {
        let versions = versions.clone();
        let list_request = list_request.clone();
        let doc_id = props.doc_id.clone();
        Callback::from(move |_: ()| {
            *list_request.borrow_mut() += 1;
            let mine = *list_request.borrow();
            let (versions, list_request, doc_id) =
                (versions.clone(), list_request.clone(), doc_id.clone());
            spawn_local(async move {
                let result = api::versions(&doc_id).await;
                if *list_request.borrow() != mine {
                    return;
                }
                versions.set(match result {
                    Ok(list) => Versions::Loaded(list.versions),
                    Err(error) => Versions::Failed(error.message()),
                });
            });
        })
    };
    {
        let reload = reload.clone();
        use_effect_with(props.doc_id.clone(), move |_| reload.emit(()));
    }

    let on_save = {
        let name = name.clone();
        let busy = busy.clone();
        let message = message.clone();
        let reload = reload.clone();
        let doc_id = props.doc_id.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let chosen = match validate_version_name(&browser::input_value(&name)) {
                Ok(chosen) => chosen,
                Err(why) => {
                    message.set(Some((false, why)));
                    return;
                }
            };
            busy.set(true);
            let (name, busy, message, reload, doc_id) = (
                name.clone(),
                busy.clone(),
                message.clone(),
                reload.clone(),
                doc_id.clone(),
            );
            spawn_local(async move {
                match api::save_version(&doc_id, &chosen).await {
                    Ok(version) => {
                        browser::clear_input(&name);
                        message.set(Some((
                            true,
                            format!("Saved “{}”.", version_label(&version)),
                        )));
                        reload.emit(());
                    }
                    Err(failure) => message.set(Some((false, failure.message()))),
                }
                busy.set(false);
            });
        })
    };

    let open_preview = |version: &Version| {
        let preview = preview.clone();
        let preview_request = preview_request.clone();
        let doc_id = props.doc_id.clone();
        let version = version.clone();
        Callback::from(move |_: MouseEvent| {
            *preview_request.borrow_mut() += 1;
            let mine = *preview_request.borrow();
            preview.set(Some(Preview {
                version: version.clone(),
                doc: None,
                error: None,
            }));
            let (preview, preview_request, doc_id, version) = (
                preview.clone(),
                preview_request.clone(),
                doc_id.clone(),
                version.clone(),
            );
            spawn_local(async move {
                let loaded = api::version_update(&doc_id, &version.id)
                    .await
                    .map_err(|error| error.message())
                    .and_then(|bytes| replica_of(&bytes));
                if *preview_request.borrow() != mine {
                    return;
                }
                let (doc, error) = match loaded {
                    Ok(doc) => (Some(doc), None),
                    Err(error) => (None, Some(error)),
                };
                preview.set(Some(Preview {
                    version,
                    doc,
                    error,
                }));
            });
        })
    };

    let close_preview = {
        let preview = preview.clone();
        let preview_request = preview_request.clone();
        Callback::from(move |_: MouseEvent| {
            *preview_request.borrow_mut() += 1;
            preview.set(None);
        })
    };

    let on_restore = {
        let preview = preview.clone();
        let busy = busy.clone();
        let message = message.clone();
        let reload = reload.clone();
        let doc_id = props.doc_id.clone();
        Callback::from(move |_: MouseEvent| {
            let Some(shown) = (*preview).clone() else {
                return;
            };
            busy.set(true);
            let (preview, busy, message, reload, doc_id) = (
                preview.clone(),
                busy.clone(),
                message.clone(),
                reload.clone(),
                doc_id.clone(),
            );
            spawn_local(async move {
                match api::restore(&doc_id, &shown.version.id).await {
                    Ok(_) => {
                        message.set(Some((
                            true,
                            format!(
                                "Restored “{}”. The content before it was saved as a version.",
                                version_label(&shown.version)
                            ),
                        )));
                        preview.set(None);
                        reload.emit(());
                    }
                    Err(failure) => message.set(Some((false, failure.message()))),
                }
                busy.set(false);
            });
        })
    };

    let now = browser::now_ms();
    let list = match &*versions {
        Versions::Loading => html! { <p class="muted small">{ "Loading versions…" }</p> },
        Versions::Failed(error) => html! {
            <p class="callout callout-warning small" role="alert">
                { format!("The versions could not be loaded: {error}") }
            </p>
        },
        Versions::Loaded(list) if list.is_empty() => html! {
            <p class="empty muted small">{ "No versions yet." }</p>
        },
        Versions::Loaded(list) => html! {
            <ol class="version-list" data-testid="version-list">
                { for list.iter().map(|version| {
                    let selected = preview.as_ref().is_some_and(|p| p.version.id == version.id);
                    html! {
                        <li
                            key={version.id.clone()}
                            class={classes!("version-item", selected.then_some("version-selected"))}
                            data-testid="version-item"
                            data-version-id={version.id.clone()}
                            data-kind={kind_name(version.kind)}
                        >
                            <button type="button" class="version-open" onclick={open_preview(version)}>
                                <span class="version-name">{ version_label(version) }</span>
                                <span class="muted small">
                                    { format_age(version.created_ms, now) }
                                    if let Some(by) = &version.created_by {
                                        { format!(" · {by}") }
                                    }
                                </span>
                                if !version.preview.is_empty() {
                                    <span class="version-snippet muted small">{ version.preview.clone() }</span>
                                }
                            </button>
                        </li>
                    }
                }) }
            </ol>
        },
    };

    let preview_view = preview.as_ref().map(|shown| {
        html! {
            <div class="version-preview" data-testid="version-preview" data-version-id={shown.version.id.clone()}>
                <header class="panel-header">
                    <h3>{ format!("Preview: {}", version_label(&shown.version)) }</h3>
                    <button type="button" class="link-button" data-testid="version-close" onclick={close_preview.clone()}>
                        { "Close" }
                    </button>
                </header>
                {
                    match (&shown.doc, &shown.error) {
                        (_, Some(error)) => html! {
                            <p class="callout callout-warning small" role="alert">
                                { format!("This version could not be shown: {error}") }
                            </p>
                        },
                        (Some(doc), None) => html! {
                            <Editor
                                doc={doc.clone()}
                                revision={0}
                                read_only={true}
                                peers={Vec::new()}
                                on_selection={Callback::noop()}
                            />
                        },
                        (None, None) => html! { <p class="muted small">{ "Loading this version…" }</p> },
                    }
                }
                if props.can_edit && shown.doc.is_some() {
                    <button
                        type="button"
                        class="button button-primary"
                        data-testid="version-restore"
                        onclick={on_restore.clone()}
                        disabled={*busy}
                    >
                        { if *busy { "Restoring…" } else { "Restore this version" } }
                    </button>
                }
            </div>
        }
    });

    html! {
        <section class="card panel history-panel" data-testid="history-panel" aria-labelledby="history-title">
            <header class="panel-header">
                <h2 id="history-title">{ "History" }</h2>
                <button type="button" class="link-button" onclick={reload.reform(|_: MouseEvent| ())}>
                    { "Refresh" }
                </button>
            </header>
            if props.can_edit {
                <form class="version-form" onsubmit={on_save}>
                    <input
                        ref={name}
                        type="text"
                        placeholder="Version name"
                        aria-label="Version name"
                        maxlength={MAX_VERSION_NAME_CHARS.to_string()}
                        data-testid="version-name"
                        disabled={*busy}
                    />
                    <button type="submit" class="button button-ghost" data-testid="version-save" disabled={*busy}>
                        { "Save version" }
                    </button>
                </form>
            }
            if let Some((ok, text)) = &*message {
                <p
                    class={classes!("small", if *ok { "notice" } else { "form-error" })}
                    role="status"
                    data-testid="history-message"
                >
                    { text.clone() }
                </p>
            }
            { preview_view.unwrap_or_default() }
            { list }
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{GetString, ReadTxn, StateVector, Text};

    fn version(kind: VersionKind, name: Option<&str>) -> Version {
        Version {
            id: "v1".into(),
            doc_id: "d1".into(),
            kind,
            name: name.map(Into::into),
            created_ms: 0,
            created_by: None,
            seq: 1,
            preview: String::new(),
        }
    }

    #[test]
    fn versions_are_labelled_by_name_or_kind() {
        assert_eq!(
            version_label(&version(VersionKind::Named, Some("Draft"))),
            "Draft"
        );
        assert_eq!(
            version_label(&version(VersionKind::Auto, None)),
            "Automatic save"
        );
        assert_eq!(
            version_label(&version(VersionKind::BeforeRestore, Some(" "))),
            "Before a restore"
        );
        assert_eq!(kind_name(VersionKind::BeforeRestore), "before_restore");
    }

    #[test]
    fn version_names_are_required_and_bounded() {
        assert_eq!(validate_version_name("  v1 ").unwrap(), "v1");
        assert!(validate_version_name("").is_err());
        assert!(validate_version_name(&"x".repeat(MAX_VERSION_NAME_CHARS + 1)).is_err());
    }

    #[test]
    fn a_version_update_builds_its_own_replica() {
        let source = schema::new_doc_with_client(3);
        let text = source.get_or_insert_text(schema::TEXT);
        text.insert(&mut source.transact_mut(), 0, "as it was\n");
        let update = source
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        let replica = replica_of(&update).unwrap();
        assert_eq!(
            replica.text().get_string(&replica.doc().transact()),
            "as it was\n"
        );
        assert!(replica_of(&[1, 2, 3]).is_err());
    }
}
