//! The core's rendering: paragraphs into the `contenteditable`, offsets between the DOM
//! and the model, the selection and the toolbar.

use super::*;

impl Core {
    pub(super) fn new(
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

    pub(super) fn doc_dirty(&self) -> bool {
        self.observer.is_none() || self.doc_changed.load(Ordering::Relaxed)
    }

    pub(super) fn is_focused(&self) -> bool {
        let root: &Element = self.root.as_ref();
        self.document.active_element().as_ref() == Some(root)
    }

    // ---- Rendering --------------------------------------------------------------------

    /// Whether the paragraphs in the DOM are still exactly the rendered elements.
    pub(super) fn dom_intact(&self, thorough: bool) -> bool {
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
    pub(super) fn render(&mut self, dirty: Option<(usize, usize)>) {
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

    pub(super) fn apply_splice(&mut self, layout: &Layout, splice: Splice) {
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
    pub(super) fn refresh(&mut self, dirty: Option<(usize, usize)>) {
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

    pub(super) fn sync_with_doc(&mut self) {
        if self.doc_dirty() {
            self.refresh(None);
        }
    }

    // ---- DOM <-> model ------------------------------------------------------------------

    pub(super) fn block_index(&self, element: &Node) -> Option<usize> {
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
    pub(super) fn offset_of_dom(&self, node: &Node, offset: u32) -> Option<u32> {
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
    pub(super) fn dom_of_offset(&self, offset: u32) -> Option<(Node, u32)> {
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

    pub(super) fn dom_selection_nodes(&self) -> Option<(Node, Node)> {
        let selection = web_sys::window()?.get_selection().ok()??;
        let (anchor, focus) = (selection.anchor_node()?, selection.focus_node()?);
        let root: &Node = self.root.as_ref();
        (root.contains(Some(&anchor)) && root.contains(Some(&focus))).then_some((anchor, focus))
    }

    /// The browser's selection, if it is inside the editor.
    pub(super) fn dom_selection(&self) -> Option<Selection> {
        let selection = web_sys::window()?.get_selection().ok()??;
        let anchor = self.offset_of_dom(&selection.anchor_node()?, selection.anchor_offset())?;
        let head = self.offset_of_dom(&selection.focus_node()?, selection.focus_offset())?;
        Some(Selection::new(anchor, head))
    }

    pub(super) fn put_dom_selection(&self, selection: Selection) {
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
    pub(super) fn target_range(&self, event: &InputEvent) -> Option<Selection> {
        let range: StaticRange = event.get_target_ranges().get(0).dyn_into().ok()?;
        let start = self.offset_of_dom(&range.start_container(), range.start_offset())?;
        let end = self.offset_of_dom(&range.end_container(), range.end_offset())?;
        Some(Selection::new(start, end))
    }

    pub(super) fn dom_range(&self, from: u32, to: u32) -> Option<Range> {
        let range = self.document.create_range().ok()?;
        let (start, start_offset) = self.dom_of_offset(from)?;
        let (end, end_offset) = self.dom_of_offset(to)?;
        range.set_start(&start, start_offset).ok()?;
        range.set_end(&end, end_offset).ok()?;
        Some(range)
    }

    /// Where a caret at `offset` is drawn, in viewport coordinates: (left, top, height).
    pub(super) fn caret_rect(&self, offset: u32) -> Option<(f64, f64, f64)> {
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

    pub(super) fn resolve_sticky(&self) -> Option<Selection> {
        let txn = self.doc.doc().try_transact().ok()?;
        self.sticky.as_ref()?.resolve(&txn)
    }

    // ---- Selection and toolbar ------------------------------------------------------------

    /// Records the local selection; `by_user` when the user moved it (that ends a pending
    /// toggle and the current undo group).
    pub(super) fn note_selection(&mut self, selection: Selection, by_user: bool) {
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

    pub(super) fn report(&mut self, focused: bool) {
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

    pub(super) fn update_toolbar(&mut self) {
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
    pub(super) fn reveal_caret(&self) {
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
}

/// A paragraph's element: `p`, or `h1`..`h3`; each run a `span`, `strong`, `em` or
/// `strong > em` holding one text node; an empty paragraph holds a `<br>` to have a height.
pub(super) fn build_block(document: &Document, index: usize, block: &Block) -> Option<Element> {
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
