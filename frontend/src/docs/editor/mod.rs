//! The rich-text editing surface: the [`Editor`] component, a Google-Docs-like
//! `contenteditable` bound to a document replica, with its toolbar and the other
//! participants' cursors.
//!
//! Use it like this (the host owns the replica, its sync and the awareness state):
//!
//! ```text
//! html! {
//!     <Editor
//!         doc={handle.clone()}              // DocHandle: the replica and its text
//!         revision={revision}               // bump when the replica changed from elsewhere
//!         read_only={!role.can_edit()}      // viewers and version previews
//!         peers={peers.clone()}             // Vec<PeerCursor>, resolved to offsets
//!         on_selection={on_selection}       // Option<(anchor, head)>: publish as awareness
//!         on_local_edit={on_local_edit}     // after each local transaction
//!     />
//! }
//! ```
//!
//! How it works: the editor renders the text's paragraphs (`rich::blocks`) itself, outside
//! Yew's virtual DOM, into the `contenteditable` element (Yew renders that element empty
//! and never touches its children). Every `beforeinput` is cancelled and turned into an
//! [`Edit`], planned by [`editor_model::plan`] and applied as one yrs transaction with
//! origin [`LOCAL_ORIGIN`]; then the changed paragraphs are re-rendered and the DOM
//! selection is put back. IME composition is the exception: the browser composes in the
//! DOM, and at `compositionend` the composed text goes through the model and the
//! paragraphs the browser touched are rebuilt. Remote changes (the host bumps `revision`;
//! a doc observer also notices them) re-render and restore the caret from yrs sticky
//! indices, so text others insert before the caret moves it along.
//!
//! Invariants:
//! - The paragraphs in the DOM are exactly the lines of the layout they were rendered
//!   from, in order (`data-block` = index, each run one child element with `data-run`
//!   and one text node), except during a composition; any other DOM change the browser
//!   makes on its own (an `input` event we did not cause) is overwritten from the model.
//! - Offsets are mapped between the DOM and the text only through the layout the DOM was
//!   rendered from; when the replica changed since, the editor re-renders first.
//! - Callbacks to the host are emitted after the editor's state is released, so the host
//!   may do anything in them; DOM events that arrive while the state is in use (the
//!   focus event of our own `focus()`) are dropped, the running handler covers them.
//! - Undo/redo is the yrs undo manager of [`editor_model::undo_manager`]: only this
//!   user's edits, grouped by time.
//!
//! Layout: the component and the core's state here; `render.rs` (the core's rendering,
//! the mapping between the DOM and the model, the selection and the toolbar),
//! `editing.rs` (edits, the DOM events and the peers' cursors), `listeners.rs` (the DOM
//! listeners that live as long as the core).

mod editing;
mod listeners;
mod render;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use meridian_shared::docs::rich::{self, Block};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{
    ClipboardEvent, CompositionEvent, Document, Element, Event, EventTarget, HtmlElement,
    InputEvent, KeyboardEvent, Node, Range, ResizeObserver, StaticRange,
};
use yew::prelude::*;
use yrs::undo::UndoManager;
use yrs::{GetString, Origin, Text, Transact};

use super::editor_model::{
    self as model, ActiveFormats, Command, DomPoint, Edit, Inline, Input, Layout, Selection,
    Splice, StickySelection, TargetUse,
};
use super::{DocHandle, PeerCursor, LOCAL_ORIGIN};
use crate::browser;
use listeners::mount;

#[derive(Properties, PartialEq)]
pub struct EditorProps {
    /// The replica: the yrs `Doc` and its text `"content"`.
    pub doc: DocHandle,
    /// Bumped by the host whenever the replica changed from elsewhere (server, other tab,
    /// IndexedDB load, restore): the editor re-renders from the model.
    pub revision: u64,
    /// Viewers and version previews: no editing, no toolbar actions.
    pub read_only: bool,
    /// Remote cursors and selections to draw.
    pub peers: Vec<PeerCursor>,
    /// The local `(anchor, head)` in UTF-16 offsets whenever it changes; `None` when the
    /// focus moves elsewhere in the page (not when the whole window loses focus: the
    /// caret stays where the others can see it).
    pub on_selection: Callback<Option<(u32, u32)>>,
    /// After each local transaction.
    #[prop_or_default]
    pub on_local_edit: Callback<()>,
}

/// What the toolbar shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct ToolbarState {
    formats: ActiveFormats,
    can_undo: bool,
    can_redo: bool,
}

/// The editor component (see the module documentation).
#[component]
pub fn Editor(props: &EditorProps) -> Html {
    let root_ref = use_node_ref();
    let surface_ref = use_node_ref();
    let overlay_ref = use_node_ref();
    let toolbar = use_state_eq(ToolbarState::default);
    let cell: CoreCell = use_mut_ref(|| None);

    {
        // One core per replica: its listeners, undo manager and doc observer.
        let cell = cell.clone();
        let refs = (root_ref.clone(), surface_ref.clone(), overlay_ref.clone());
        let host = Host {
            toolbar: toolbar.setter(),
            on_selection: props.on_selection.clone(),
            on_local_edit: props.on_local_edit.clone(),
            read_only: props.read_only,
            peers: props.peers.clone(),
        };
        use_effect_with(props.doc.clone(), move |doc| {
            let mounted = mount(&cell, doc.clone(), refs, host);
            move || {
                drop(mounted);
                cell.borrow_mut().take();
            }
        });
    }
    {
        let cell = cell.clone();
        let (on_selection, on_local_edit) =
            (props.on_selection.clone(), props.on_local_edit.clone());
        let read_only = props.read_only;
        use_effect(move || {
            with_core(&cell, |core| {
                core.update_props(on_selection, on_local_edit, read_only)
            });
        });
    }
    {
        let cell = cell.clone();
        use_effect_with(props.revision, move |_| with_core(&cell, Core::on_revision));
    }
    {
        let cell = cell.clone();
        use_effect_with(props.peers.clone(), move |peers| {
            let peers = peers.clone();
            with_core(&cell, move |core| core.set_peers(peers));
        });
    }

    let command = |command: Command| {
        let cell = cell.clone();
        Callback::from(move |_: MouseEvent| with_core(&cell, |core| core.command(command, true)))
    };
    // Buttons must not take the focus (and the selection) from the text.
    let keep_focus = Callback::from(|event: MouseEvent| event.prevent_default());
    let state = *toolbar;
    let read_only = props.read_only;
    let button = |label: Html,
                  title: &'static str,
                  testid: &'static str,
                  active: Option<bool>,
                  cmd,
                  disabled: bool| {
        html! {
            <button
                type="button"
                class={classes!("doc-tool", active.unwrap_or(false).then_some("active"))}
                data-testid={testid}
                title={title}
                aria-label={title}
                aria-pressed={active.map(|a| a.to_string())}
                disabled={read_only || disabled}
                onmousedown={keep_focus.clone()}
                onclick={command(cmd)}
            >
                { label }
            </button>
        }
    };
    let style = |level: Option<u8>| Some(state.formats.heading == Some(level));

    html! {
        <div class={classes!("doc-editor-frame", read_only.then_some("doc-editor-read-only"))}>
            <div class="doc-toolbar" role="toolbar" aria-label="Formatting" data-testid="doc-toolbar">
                { button(html! { "↶" }, "Undo (Ctrl+Z)", "doc-undo", None, Command::Undo, !state.can_undo) }
                { button(html! { "↷" }, "Redo (Ctrl+Shift+Z)", "doc-redo", None, Command::Redo, !state.can_redo) }
                <span class="doc-toolbar-sep" aria-hidden="true"></span>
                { button(html! { "Normal" }, "Normal text (Ctrl+Alt+0)", "doc-style-normal", style(None), Command::Heading(None), false) }
                { button(html! { "H1" }, "Heading 1 (Ctrl+Alt+1)", "doc-style-h1", style(Some(1)), Command::Heading(Some(1)), false) }
                { button(html! { "H2" }, "Heading 2 (Ctrl+Alt+2)", "doc-style-h2", style(Some(2)), Command::Heading(Some(2)), false) }
                { button(html! { "H3" }, "Heading 3 (Ctrl+Alt+3)", "doc-style-h3", style(Some(3)), Command::Heading(Some(3)), false) }
                <span class="doc-toolbar-sep" aria-hidden="true"></span>
                { button(html! { <strong>{ "B" }</strong> }, "Bold (Ctrl+B)", "doc-bold", Some(state.formats.bold), Command::Bold, false) }
                { button(html! { <em>{ "I" }</em> }, "Italic (Ctrl+I)", "doc-italic", Some(state.formats.italic), Command::Italic, false) }
            </div>
            <div class="doc-surface" ref={surface_ref}>
                <div
                    ref={root_ref}
                    class="doc-editor"
                    data-testid="doc-editor"
                    contenteditable={if read_only { "false" } else { "true" }}
                    role="textbox"
                    aria-multiline="true"
                    aria-readonly={read_only.to_string()}
                    aria-label="Document text"
                ></div>
                <div ref={overlay_ref} class="doc-cursors" data-testid="doc-cursors" aria-hidden="true"></div>
            </div>
        </div>
    }
}

// ---------------------------------------------------------------------------------------
// The core: the editor's state between events

type CoreCell = Rc<RefCell<Option<Core>>>;

/// What the editor reports to the host.
enum Notice {
    Selection(Option<(u32, u32)>),
    LocalEdit,
}

/// The host's side at mount time.
struct Host {
    toolbar: UseStateSetter<ToolbarState>,
    on_selection: Callback<Option<(u32, u32)>>,
    on_local_edit: Callback<()>,
    read_only: bool,
    peers: Vec<PeerCursor>,
}

/// An IME composition in progress: where it started.
struct Composition {
    selection: Option<Selection>,
    sticky: Option<StickySelection>,
    /// The lines (of the layout the DOM shows) the browser may change.
    lines: (usize, usize),
}

struct Core {
    doc: DocHandle,
    /// The `contenteditable` element.
    root: HtmlElement,
    /// Its positioned container, which the overlay covers.
    surface: HtmlElement,
    overlay: HtmlElement,
    document: Document,
    /// What the DOM shows.
    layout: Layout,
    /// One element per line of `layout`.
    rendered: Vec<Element>,
    /// The next render rebuilds every paragraph.
    rebuild: bool,
    /// The local selection (kept while the editor is not focused, for the toolbar).
    selection: Option<Selection>,
    sticky: Option<StickySelection>,
    /// Formatting for the next typed text at the caret.
    pending: Option<Inline>,
    composing: Option<Composition>,
    undo: UndoManager<()>,
    /// Set by a doc observer on every change of the replica, cleared by a render.
    doc_changed: Arc<AtomicBool>,
    /// The observer's key; `None` if it could not be registered (then every event
    /// re-renders, which is correct but slower).
    observer: Option<Origin>,
    read_only: bool,
    peers: Vec<PeerCursor>,
    toolbar: UseStateSetter<ToolbarState>,
    toolbar_shown: Option<ToolbarState>,
    on_selection: Callback<Option<(u32, u32)>>,
    on_local_edit: Callback<()>,
    reported: Option<Option<(u32, u32)>>,
    outbox: Vec<Notice>,
}

impl Drop for Core {
    fn drop(&mut self) {
        if let Some(key) = self.observer.take() {
            let _ = self.doc.doc().unobserve_update_v1(key);
        }
    }
}

/// Runs `f` on the core, then tells the host what happened, with the core released.
fn with_core(cell: &CoreCell, f: impl FnOnce(&mut Core)) {
    let (notices, on_selection, on_local_edit) = {
        let Ok(mut guard) = cell.try_borrow_mut() else {
            return;
        };
        let Some(core) = guard.as_mut() else {
            return;
        };
        f(core);
        (
            std::mem::take(&mut core.outbox),
            core.on_selection.clone(),
            core.on_local_edit.clone(),
        )
    };
    for notice in notices {
        match notice {
            Notice::Selection(selection) => on_selection.emit(selection),
            Notice::LocalEdit => on_local_edit.emit(()),
        }
    }
}

/// A distinct key for each editor's doc observer.
fn observer_key() -> Origin {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    Origin::from(format!(
        "meridian-editor-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}
