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

impl Core {
    fn new(
        doc: DocHandle,
        root: HtmlElement,
        surface: HtmlElement,
        overlay: HtmlElement,
        document: Document,
        host: Host,
    ) -> Core {
        let doc_changed = Arc::new(AtomicBool::new(true));
        let key = observer_key();
        let flag = doc_changed.clone();
        let observer = doc
            .doc()
            .observe_update_v1(key.clone(), move |_, _| flag.store(true, Ordering::Relaxed))
            .ok()
            .map(|()| key);
        // performance.now(): milliseconds that never go back (the undo manager subtracts).
        let clock = Arc::new(|| browser::monotonic_ms() as u64);
        let undo = model::undo_manager(doc.doc(), doc.text(), clock);
        Core {
            doc,
            root,
            surface,
            overlay,
            document,
            layout: Layout::default(),
            rendered: Vec::new(),
            rebuild: true,
            selection: None,
            sticky: None,
            pending: None,
            composing: None,
            undo,
            doc_changed,
            observer,
            read_only: host.read_only,
            peers: host.peers,
            toolbar: host.toolbar,
            toolbar_shown: None,
            on_selection: host.on_selection,
            on_local_edit: host.on_local_edit,
            reported: None,
            outbox: Vec::new(),
        }
    }

    fn doc_dirty(&self) -> bool {
        self.observer.is_none() || self.doc_changed.load(Ordering::Relaxed)
    }

    fn is_focused(&self) -> bool {
        let root: &Element = self.root.as_ref();
        self.document.active_element().as_ref() == Some(root)
    }

    // ---- Rendering --------------------------------------------------------------------

    /// Whether the paragraphs in the DOM are still exactly the rendered elements.
    fn dom_intact(&self, thorough: bool) -> bool {
        let children = self.root.child_nodes();
        if children.length() as usize != self.rendered.len() {
            return false;
        }
        !thorough
            || self.rendered.iter().enumerate().all(|(i, element)| {
                let element: &Node = element.as_ref();
                children.item(i as u32).as_ref() == Some(element)
            })
    }

    /// Re-renders from the replica: only the paragraphs that changed, plus the old lines
    /// `dirty` (inclusive), whose DOM the browser may have changed.
    fn render(&mut self, dirty: Option<(usize, usize)>) {
        let (blocks, text_len) = {
            let Ok(txn) = self.doc.doc().try_transact() else {
                return;
            };
            (
                rich::blocks(&txn, self.doc.text()),
                self.doc.text().len(&txn),
            )
        };
        self.doc_changed.store(false, Ordering::Relaxed);
        let layout = Layout::new(blocks, text_len);
        let splice = if self.rebuild || !self.dom_intact(dirty.is_some()) {
            self.rebuild = false;
            self.root.set_text_content(None);
            self.rendered.clear();
            Some(Splice {
                start: 0,
                old_end: 0,
                new_end: layout.lines().len(),
            })
        } else {
            model::block_splice(&self.layout, &layout, dirty)
        };
        if let Some(splice) = splice {
            self.apply_splice(&layout, splice);
        }
        // An empty document shows its placeholder (CSS, `data-empty`).
        let empty = text_len == 0;
        if empty != (self.root.get_attribute("data-empty").as_deref() == Some("true")) {
            let _ = self
                .root
                .set_attribute("data-empty", if empty { "true" } else { "false" });
        }
        self.layout = layout;
    }

    fn apply_splice(&mut self, layout: &Layout, splice: Splice) {
        let Splice {
            start,
            old_end,
            new_end,
        } = splice;
        let next: Option<Node> = self.rendered.get(old_end).map(|e| e.clone().into());
        for element in self.rendered.drain(start..old_end) {
            element.remove();
        }
        let fresh: Vec<Element> = layout.lines()[start..new_end]
            .iter()
            .enumerate()
            .filter_map(|(i, line)| build_block(&self.document, start + i, &line.block))
            .collect();
        for element in &fresh {
            let _ = self.root.insert_before(element, next.as_ref());
        }
        let inserted = fresh.len();
        self.rendered.splice(start..start, fresh);
        if inserted != new_end - start {
            // An element could not be built: start over next time.
            self.rebuild = true;
        }
        if new_end != old_end {
            for (i, element) in self.rendered.iter().enumerate().skip(start + inserted) {
                let _ = element.set_attribute("data-block", &i.to_string());
            }
        }
    }

    /// Re-renders after the replica changed from elsewhere (or the browser changed the
    /// DOM) and puts the selection back where it belongs.
    fn refresh(&mut self, dirty: Option<(usize, usize)>) {
        let before = self.dom_selection_nodes();
        self.render(dirty);
        // If the browser's selection is still in paragraphs that were kept, it is right;
        // otherwise the sticky selection says where it went.
        let root: &Node = self.root.as_ref();
        let kept = before.is_some_and(|(anchor, focus)| {
            anchor.is_connected()
                && focus.is_connected()
                && root.contains(Some(&anchor))
                && root.contains(Some(&focus))
        });
        let from_dom = if kept { self.dom_selection() } else { None };
        let selection = from_dom
            .or_else(|| self.resolve_sticky())
            .or(self.selection)
            .map(|s| self.layout.clamp_selection(s));
        if let Some(selection) = selection {
            if from_dom.is_none() && self.is_focused() {
                self.put_dom_selection(selection);
            }
            self.note_selection(selection, false);
        }
        self.draw_peers();
    }

    fn sync_with_doc(&mut self) {
        if self.doc_dirty() {
            self.refresh(None);
        }
    }

    // ---- DOM <-> model ------------------------------------------------------------------

    fn block_index(&self, element: &Node) -> Option<usize> {
        let by_attribute = element
            .dyn_ref::<Element>()
            .and_then(|e| e.get_attribute("data-block"))
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&i| {
                self.rendered
                    .get(i)
                    .is_some_and(|e| AsRef::<Node>::as_ref(e) == element)
            });
        by_attribute.or_else(|| {
            self.rendered
                .iter()
                .position(|e| AsRef::<Node>::as_ref(e) == element)
        })
    }

    /// The text offset of a DOM position inside the editor.
    fn offset_of_dom(&self, node: &Node, offset: u32) -> Option<u32> {
        let root: &Node = self.root.as_ref();
        if node == root {
            return Some(self.layout.offset_of_root_child(offset));
        }
        if !root.contains(Some(node)) {
            return None;
        }
        // From `node` up to the paragraph (a child of the root), noting the run (a child
        // of the paragraph).
        let mut paragraph = node.clone();
        let mut run: Option<Node> = None;
        loop {
            let parent = paragraph.parent_node()?;
            if parent == *root {
                break;
            }
            run = Some(paragraph);
            paragraph = parent;
        }
        let block = self.block_index(&paragraph)?;
        let Some(run) = run else {
            return Some(self.layout.offset_of_block_child(block, offset));
        };
        let run_index = run
            .dyn_ref::<Element>()
            .and_then(|e| e.get_attribute("data-run"))
            .and_then(|v| v.parse::<usize>().ok());
        let Some(run_index) = run_index else {
            // Not one of ours (a `<br>` in an empty paragraph, or something the browser
            // added): the paragraph's start.
            return Some(self.layout.line(block).start);
        };
        let offset = if node.node_type() == Node::TEXT_NODE {
            offset
        } else if offset == 0 {
            0
        } else {
            u32::MAX // the end of the run (clamped)
        };
        Some(self.layout.offset_of(DomPoint::Run {
            block,
            run: run_index,
            offset,
        }))
    }

    /// The DOM position of a text offset.
    fn dom_of_offset(&self, offset: u32) -> Option<(Node, u32)> {
        match self.layout.locate(offset) {
            DomPoint::EmptyBlock { block } => Some((self.rendered.get(block)?.clone().into(), 0)),
            DomPoint::Run { block, run, offset } => {
                let run = self.rendered.get(block)?.children().item(run as u32)?;
                let mut node: Node = run.into();
                while let Some(child) = node.first_child() {
                    node = child;
                }
                Some((node, offset))
            }
        }
    }

    fn dom_selection_nodes(&self) -> Option<(Node, Node)> {
        let selection = web_sys::window()?.get_selection().ok()??;
        let (anchor, focus) = (selection.anchor_node()?, selection.focus_node()?);
        let root: &Node = self.root.as_ref();
        (root.contains(Some(&anchor)) && root.contains(Some(&focus))).then_some((anchor, focus))
    }

    /// The browser's selection, if it is inside the editor.
    fn dom_selection(&self) -> Option<Selection> {
        let selection = web_sys::window()?.get_selection().ok()??;
        let anchor = self.offset_of_dom(&selection.anchor_node()?, selection.anchor_offset())?;
        let head = self.offset_of_dom(&selection.focus_node()?, selection.focus_offset())?;
        Some(Selection::new(anchor, head))
    }

    fn put_dom_selection(&self, selection: Selection) {
        let Some(dom) = web_sys::window().and_then(|w| w.get_selection().ok().flatten()) else {
            return;
        };
        if let (Some((anchor, anchor_offset)), Some((focus, focus_offset))) = (
            self.dom_of_offset(selection.anchor),
            self.dom_of_offset(selection.head),
        ) {
            let _ = dom.set_base_and_extent(&anchor, anchor_offset, &focus, focus_offset);
        }
    }

    /// The first range of a `beforeinput`'s target ranges, as a selection.
    fn target_range(&self, event: &InputEvent) -> Option<Selection> {
        let range: StaticRange = event.get_target_ranges().get(0).dyn_into().ok()?;
        let start = self.offset_of_dom(&range.start_container(), range.start_offset())?;
        let end = self.offset_of_dom(&range.end_container(), range.end_offset())?;
        Some(Selection::new(start, end))
    }

    fn dom_range(&self, from: u32, to: u32) -> Option<Range> {
        let range = self.document.create_range().ok()?;
        let (start, start_offset) = self.dom_of_offset(from)?;
        let (end, end_offset) = self.dom_of_offset(to)?;
        range.set_start(&start, start_offset).ok()?;
        range.set_end(&end, end_offset).ok()?;
        Some(range)
    }

    /// Where a caret at `offset` is drawn, in viewport coordinates: (left, top, height).
    fn caret_rect(&self, offset: u32) -> Option<(f64, f64, f64)> {
        if let DomPoint::EmptyBlock { block } = self.layout.locate(offset) {
            let rect = self.rendered.get(block)?.get_bounding_client_rect();
            return Some((rect.left(), rect.top(), rect.height()));
        }
        let range = self.dom_range(offset, offset)?;
        let rects = range.get_client_rects()?;
        let rect = (0..rects.length())
            .filter_map(|i| rects.get(i))
            .find(|r| r.height() > 0.0)
            .unwrap_or_else(|| range.get_bounding_client_rect());
        Some((rect.left(), rect.top(), rect.height()))
    }

    fn resolve_sticky(&self) -> Option<Selection> {
        let txn = self.doc.doc().try_transact().ok()?;
        self.sticky.as_ref()?.resolve(&txn)
    }

    // ---- Selection and toolbar ------------------------------------------------------------

    /// Records the local selection; `by_user` when the user moved it (that ends a pending
    /// toggle and the current undo group).
    fn note_selection(&mut self, selection: Selection, by_user: bool) {
        let selection = self.layout.clamp_selection(selection);
        if by_user && self.selection != Some(selection) {
            self.pending = None;
            self.undo.reset();
        }
        self.selection = Some(selection);
        self.sticky = self
            .doc
            .doc()
            .try_transact()
            .ok()
            .and_then(|txn| StickySelection::new(&txn, self.doc.text(), selection));
        self.report(self.is_focused());
        self.update_toolbar();
    }

    fn report(&mut self, focused: bool) {
        let value = if focused {
            self.selection.map(|s| (s.anchor, s.head))
        } else {
            None
        };
        if self.reported != Some(value) {
            self.reported = Some(value);
            self.outbox.push(Notice::Selection(value));
        }
    }

    fn update_toolbar(&mut self) {
        let state = ToolbarState {
            formats: self
                .selection
                .map(|s| self.layout.active_formats(s, self.pending))
                .unwrap_or_default(),
            can_undo: self.undo.can_undo(),
            can_redo: self.undo.can_redo(),
        };
        if self.toolbar_shown != Some(state) {
            self.toolbar_shown = Some(state);
            self.toolbar.set(state);
        }
    }

    /// Scrolls the window so that the local caret is visible.
    fn reveal_caret(&self) {
        let (Some(selection), Some(window)) = (self.selection, web_sys::window()) else {
            return;
        };
        let Some((_, top, height)) = self.caret_rect(selection.head) else {
            return;
        };
        const MARGIN: f64 = 24.0;
        let viewport = window
            .inner_height()
            .ok()
            .and_then(|h| h.as_f64())
            .unwrap_or(0.0);
        if viewport <= 2.0 * MARGIN {
            return;
        }
        if top < MARGIN {
            window.scroll_by_with_x_and_y(0.0, top - MARGIN);
        } else if top + height > viewport - MARGIN {
            window.scroll_by_with_x_and_y(0.0, top + height - viewport + MARGIN);
        }
    }

    // ---- Editing ------------------------------------------------------------------------

    /// Applies `edit` to `target`, or to the selection.
    fn edit(&mut self, edit: Edit, target: Option<Selection>) {
        if self.read_only {
            return;
        }
        self.sync_with_doc();
        let Some(selection) = target.or_else(|| self.dom_selection()).or(self.selection) else {
            return;
        };
        let plan = model::plan(&self.layout, selection, self.pending, &edit);
        self.pending = plan.pending;
        if !plan.ops.is_empty() {
            {
                let Ok(mut txn) = self.doc.doc().try_transact_mut_with(LOCAL_ORIGIN) else {
                    return;
                };
                model::apply_ops(&mut txn, self.doc.text(), &plan.ops);
            }
            self.render(None);
            self.outbox.push(Notice::LocalEdit);
        }
        self.place_caret(plan.selection);
    }

    /// After a local change: the selection in the DOM and in the state, the caret in view.
    fn place_caret(&mut self, selection: Selection) {
        let focused = self.is_focused();
        if focused {
            self.put_dom_selection(self.layout.clamp_selection(selection));
        }
        self.note_selection(selection, false);
        if focused {
            self.reveal_caret();
        }
        self.draw_peers();
    }

    fn undo_redo(&mut self, redo: bool) {
        if self.read_only {
            return;
        }
        self.sync_with_doc();
        let before = self.text_string();
        let changed = if redo {
            self.undo.redo_blocking()
        } else {
            self.undo.undo_blocking()
        };
        if !changed {
            self.update_toolbar();
            return;
        }
        let after = self.text_string();
        self.render(None);
        self.pending = None;
        self.outbox.push(Notice::LocalEdit);
        let caret = model::caret_after_change(&before, &after)
            .map(Selection::caret)
            .or_else(|| self.resolve_sticky());
        match caret {
            Some(selection) => self.place_caret(selection),
            None => self.update_toolbar(),
        }
    }

    fn text_string(&self) -> String {
        match self.doc.doc().try_transact() {
            Ok(txn) => self.doc.text().get_string(&txn),
            Err(_) => String::new(),
        }
    }

    /// A toolbar button or a shortcut. A button acts on the remembered selection (the
    /// editor may have lost focus) and gives the focus back to the text.
    fn command(&mut self, command: Command, from_toolbar: bool) {
        if self.read_only {
            return;
        }
        let target = if from_toolbar { self.selection } else { None };
        if from_toolbar && !self.is_focused() {
            let _ = self.root.focus();
        }
        match command {
            Command::Bold => self.edit(Edit::ToggleBold, target),
            Command::Italic => self.edit(Edit::ToggleItalic, target),
            Command::Heading(level) => self.edit(Edit::SetHeading(level), target),
            Command::Undo => self.undo_redo(false),
            Command::Redo => self.undo_redo(true),
        }
    }

    // ---- Events -------------------------------------------------------------------------

    fn on_before_input(&mut self, event: &InputEvent) {
        let input_type = event.input_type();
        let text = event.data().or_else(|| {
            event
                .data_transfer()
                .and_then(|data| data.get_data("text/plain").ok())
        });
        let input = Input::classify(&input_type, text);
        if input == Input::Composition || event.is_composing() {
            // The browser composes; `compositionend` brings the result. A composition
            // input after the composition ended (Safari) was applied already.
            if self.composing.is_none() && !event.is_composing() {
                event.prevent_default();
            }
            return;
        }
        event.prevent_default();
        if self.read_only {
            return;
        }
        match input {
            Input::Undo => self.undo_redo(false),
            Input::Redo => self.undo_redo(true),
            Input::Ignored | Input::Composition => {}
            Input::Edit(edit) => {
                // Target ranges refer to the DOM as it is: only usable if it is current.
                let current = !self.doc_dirty();
                let target = match model::target_use(&input_type) {
                    _ if !current => None,
                    TargetUse::Always => self.target_range(event),
                    TargetUse::IfNotEmpty => self.target_range(event).filter(|s| !s.is_collapsed()),
                    TargetUse::Never => None,
                };
                self.edit(edit, target);
            }
        }
    }

    /// An `input` event: the browser changed the DOM. Outside a composition that is a
    /// change we could not cancel; the model wins.
    fn on_input(&mut self, event: &InputEvent) {
        if self.composing.is_some() || event.is_composing() {
            return;
        }
        self.rebuild = true;
        self.refresh(None);
    }

    fn on_keydown(&mut self, event: &KeyboardEvent) {
        if event.is_composing() {
            return;
        }
        let command = model::shortcut(
            &event.key(),
            &event.code(),
            event.ctrl_key() || event.meta_key(),
            event.shift_key(),
            event.alt_key(),
            event.get_modifier_state("AltGraph"),
        );
        if let Some(command) = command {
            event.prevent_default();
            self.command(command, false);
        }
    }

    fn on_paste(&mut self, event: &ClipboardEvent) {
        event.prevent_default();
        let text = event
            .clipboard_data()
            .and_then(|data| data.get_data("text/plain").ok())
            .unwrap_or_default();
        self.edit(Edit::InsertText(model::normalize_newlines(&text)), None);
    }

    /// Copy and cut put the model's plain text on the clipboard (paragraphs joined by one
    /// `"\n"`, where the browser's own serialisation adds blank lines) beside the
    /// selection's HTML; a cut then deletes through the model.
    fn on_copy(&mut self, event: &ClipboardEvent, cut: bool) {
        if self.composing.is_some() {
            return;
        }
        self.sync_with_doc();
        let Some(selection) = self.dom_selection().filter(|s| !s.is_collapsed()) else {
            return;
        };
        let Some(data) = event.clipboard_data() else {
            return;
        };
        let text = model::slice_utf16(&self.text_string(), selection.start(), selection.end());
        if data.set_data("text/plain", &text).is_err() {
            return;
        }
        let html = self
            .dom_range(selection.start(), selection.end())
            .and_then(|range| range.clone_contents().ok())
            .and_then(|fragment| {
                let holder = self.document.create_element("div").ok()?;
                holder.append_child(&fragment).ok()?;
                Some(holder.inner_html())
            });
        if let Some(html) = html {
            let _ = data.set_data("text/html", &html);
        }
        event.prevent_default();
        if cut {
            self.edit(Edit::DeleteSelection, Some(selection));
        }
    }

    fn on_composition_start(&mut self) {
        self.sync_with_doc();
        let selection = self.dom_selection().or(self.selection);
        let sticky = selection.and_then(|s| {
            let txn = self.doc.doc().try_transact().ok()?;
            StickySelection::new(&txn, self.doc.text(), s)
        });
        let lines = match selection {
            Some(s) => (self.layout.line_at(s.start()), self.layout.line_at(s.end())),
            None => (0, self.layout.lines().len() - 1),
        };
        self.composing = Some(Composition {
            selection,
            sticky,
            lines,
        });
    }

    fn on_composition_end(&mut self, event: &CompositionEvent) {
        let Some(composition) = self.composing.take() else {
            return;
        };
        // Rebuild what the browser composed into, from the replica (which others may
        // have changed meanwhile), then apply the composed text through the model.
        self.render(Some(composition.lines));
        let selection = composition
            .sticky
            .and_then(|sticky| {
                let txn = self.doc.doc().try_transact().ok()?;
                sticky.resolve(&txn)
            })
            .or(composition.selection);
        let text = model::normalize_newlines(&event.data().unwrap_or_default());
        match selection {
            Some(selection) if !self.read_only => {
                self.edit(Edit::InsertText(text), Some(selection))
            }
            _ => self.refresh(None),
        }
    }

    fn on_selection_change(&mut self) {
        if self.composing.is_some() {
            return;
        }
        if self.doc_dirty() {
            self.refresh(None);
            return;
        }
        match self.dom_selection() {
            Some(selection) => self.note_selection(selection, true),
            None => self.report(self.is_focused()),
        }
    }

    fn on_focus(&mut self) {
        self.on_selection_change();
        self.report(true);
    }

    fn on_blur(&mut self) {
        // When the window loses focus (another tab or application) the editor stays its
        // document's focused element and the caret stays where others can see it; only
        // focus moving elsewhere in the page takes it away.
        let focused = self.is_focused();
        self.report(focused);
    }

    fn on_revision(&mut self) {
        // During a composition the DOM is the browser's: `compositionend` refreshes.
        if self.composing.is_none() {
            self.sync_with_doc();
        }
    }

    fn update_props(
        &mut self,
        on_selection: Callback<Option<(u32, u32)>>,
        on_local_edit: Callback<()>,
        read_only: bool,
    ) {
        self.on_selection = on_selection;
        self.on_local_edit = on_local_edit;
        if self.read_only != read_only {
            self.read_only = read_only;
            self.pending = None;
            self.update_toolbar();
        }
    }

    fn set_peers(&mut self, peers: Vec<PeerCursor>) {
        self.peers = peers;
        self.draw_peers();
    }

    // ---- Peers ---------------------------------------------------------------------------

    /// Redraws the other participants' carets and selections in the overlay.
    fn draw_peers(&self) {
        self.overlay.set_text_content(None);
        if self.peers.is_empty() {
            return;
        }
        let origin = self.surface.get_bounding_client_rect();
        let (dx, dy) = (
            origin.left() + f64::from(self.surface.client_left()),
            origin.top() + f64::from(self.surface.client_top()),
        );
        for peer in &self.peers {
            let color = model::safe_color(&peer.color);
            let id = peer.client_id.to_string();
            let selection = self
                .layout
                .clamp_selection(Selection::new(peer.anchor, peer.head));
            if !selection.is_collapsed() {
                let rects = self
                    .dom_range(selection.start(), selection.end())
                    .and_then(|range| range.get_client_rects());
                for rect in rects
                    .iter()
                    .flat_map(|rects| (0..rects.length()).filter_map(|i| rects.get(i)))
                    .filter(|r| r.width() > 0.0 && r.height() > 0.0)
                {
                    let style = format!(
                        "left:{:.1}px;top:{:.1}px;width:{:.1}px;height:{:.1}px;background-color:{color}",
                        rect.left() - dx,
                        rect.top() - dy,
                        rect.width(),
                        rect.height()
                    );
                    self.overlay_child("remote-selection", &id, &style);
                }
            }
            if let Some((left, top, height)) = self.caret_rect(selection.head) {
                let style = format!(
                    "left:{:.1}px;top:{:.1}px;height:{:.1}px;--peer-color:{color}",
                    left - dx,
                    top - dy,
                    height
                );
                if let Some(caret) = self.overlay_child("remote-cursor", &id, &style) {
                    if let Ok(label) = self.document.create_element("span") {
                        let _ = label.set_attribute("class", "remote-cursor-label");
                        label.set_text_content(Some(&peer.name));
                        let _ = caret.append_child(&label);
                    }
                }
            }
        }
    }

    fn overlay_child(&self, class: &str, client_id: &str, style: &str) -> Option<Element> {
        let element = self.document.create_element("div").ok()?;
        element.set_attribute("class", class).ok()?;
        element.set_attribute("data-client-id", client_id).ok()?;
        element.set_attribute("style", style).ok()?;
        self.overlay.append_child(&element).ok()?;
        Some(element)
    }
}

/// A paragraph's element: `p`, or `h1`..`h3`; each run a `span`, `strong`, `em` or
/// `strong > em` holding one text node; an empty paragraph holds a `<br>` to have a height.
fn build_block(document: &Document, index: usize, block: &Block) -> Option<Element> {
    let tag = match block.heading {
        Some(1) => "h1",
        Some(2) => "h2",
        Some(3) => "h3",
        _ => "p",
    };
    let element = document.create_element(tag).ok()?;
    element
        .set_attribute("data-block", &index.to_string())
        .ok()?;
    if block.runs.is_empty() {
        let br = document.create_element("br").ok()?;
        element.append_child(&br).ok()?;
    }
    for (i, run) in block.runs.iter().enumerate() {
        let outer = document
            .create_element(match (run.bold, run.italic) {
                (true, _) => "strong",
                (false, true) => "em",
                (false, false) => "span",
            })
            .ok()?;
        outer.set_attribute("data-run", &i.to_string()).ok()?;
        let text = document.create_text_node(&run.text);
        if run.bold && run.italic {
            let em = document.create_element("em").ok()?;
            em.append_child(&text).ok()?;
            outer.append_child(&em).ok()?;
        } else {
            outer.append_child(&text).ok()?;
        }
        element.append_child(&outer).ok()?;
    }
    Some(element)
}

// ---------------------------------------------------------------------------------------
// Mounting: DOM listeners that live as long as the core

/// An event listener, removed when dropped.
struct Listener {
    target: EventTarget,
    kind: &'static str,
    closure: Closure<dyn FnMut(Event)>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self
            .target
            .remove_event_listener_with_callback(self.kind, self.closure.as_ref().unchecked_ref());
    }
}

/// Everything attached to the DOM for one core.
struct Mounted {
    _listeners: Vec<Listener>,
    resize: Option<(ResizeObserver, Closure<dyn FnMut()>)>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some((observer, _)) = &self.resize {
            observer.disconnect();
        }
    }
}

fn listen(
    target: &EventTarget,
    kind: &'static str,
    cell: &CoreCell,
    handler: fn(&mut Core, &Event),
) -> Option<Listener> {
    let cell = cell.clone();
    let closure = Closure::<dyn FnMut(Event)>::new(move |event: Event| {
        with_core(&cell, |core| handler(core, &event));
    });
    target
        .add_event_listener_with_callback(kind, closure.as_ref().unchecked_ref())
        .ok()?;
    Some(Listener {
        target: target.clone(),
        kind,
        closure,
    })
}

fn mount(
    cell: &CoreCell,
    doc: DocHandle,
    refs: (NodeRef, NodeRef, NodeRef),
    host: Host,
) -> Option<Mounted> {
    let (root_ref, surface_ref, overlay_ref) = refs;
    let root = root_ref.cast::<HtmlElement>()?;
    let surface = surface_ref.cast::<HtmlElement>()?;
    let overlay = overlay_ref.cast::<HtmlElement>()?;
    let document = root.owner_document()?;
    let mut core = Core::new(
        doc,
        root.clone(),
        surface.clone(),
        overlay,
        document.clone(),
        host,
    );
    core.render(None);
    core.update_toolbar();
    *cell.borrow_mut() = Some(core);

    let root_target: &EventTarget = root.as_ref();
    let document_target: &EventTarget = document.as_ref();
    let listeners: Vec<Listener> = [
        listen(root_target, "beforeinput", cell, |core, e| {
            if let Some(e) = e.dyn_ref::<InputEvent>() {
                core.on_before_input(e);
            }
        }),
        listen(root_target, "input", cell, |core, e| {
            if let Some(e) = e.dyn_ref::<InputEvent>() {
                core.on_input(e);
            }
        }),
        listen(root_target, "keydown", cell, |core, e| {
            if let Some(e) = e.dyn_ref::<KeyboardEvent>() {
                core.on_keydown(e);
            }
        }),
        listen(root_target, "paste", cell, |core, e| {
            if let Some(e) = e.dyn_ref::<ClipboardEvent>() {
                core.on_paste(e);
            }
        }),
        listen(root_target, "copy", cell, |core, e| {
            if let Some(e) = e.dyn_ref::<ClipboardEvent>() {
                core.on_copy(e, false);
            }
        }),
        listen(root_target, "cut", cell, |core, e| {
            if let Some(e) = e.dyn_ref::<ClipboardEvent>() {
                core.on_copy(e, true);
            }
        }),
        listen(root_target, "compositionstart", cell, |core, _| {
            core.on_composition_start()
        }),
        listen(root_target, "compositionend", cell, |core, e| {
            if let Some(e) = e.dyn_ref::<CompositionEvent>() {
                core.on_composition_end(e);
            }
        }),
        listen(root_target, "focus", cell, |core, _| core.on_focus()),
        listen(root_target, "blur", cell, |core, _| core.on_blur()),
        // Dragging text inside the editor would move DOM the model does not know about.
        listen(root_target, "dragstart", cell, |_, e| e.prevent_default()),
        listen(document_target, "selectionchange", cell, |core, _| {
            core.on_selection_change()
        }),
    ]
    .into_iter()
    .flatten()
    .collect();

    let resize = {
        let cell = cell.clone();
        let closure =
            Closure::<dyn FnMut()>::new(move || with_core(&cell, |core| core.draw_peers()));
        ResizeObserver::new(closure.as_ref().unchecked_ref())
            .ok()
            .map(|observer| {
                observer.observe(&surface);
                (observer, closure)
            })
    };
    Some(Mounted {
        _listeners: listeners,
        resize,
    })
}
