//! The core's edits and events: `beforeinput` and the other DOM events turned into
//! plans on the replica, undo and redo, and the peers' cursors drawn over the text.

use super::*;

impl Core {
    /// Applies `edit` to `target`, or to the selection.
    pub(super) fn edit(&mut self, edit: Edit, target: Option<Selection>) {
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
    pub(super) fn place_caret(&mut self, selection: Selection) {
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

    pub(super) fn undo_redo(&mut self, redo: bool) {
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

    pub(super) fn text_string(&self) -> String {
        match self.doc.doc().try_transact() {
            Ok(txn) => self.doc.text().get_string(&txn),
            Err(_) => String::new(),
        }
    }

    /// A toolbar button or a shortcut. A button acts on the remembered selection (the
    /// editor may have lost focus) and gives the focus back to the text.
    pub(super) fn command(&mut self, command: Command, from_toolbar: bool) {
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

    pub(super) fn on_before_input(&mut self, event: &InputEvent) {
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
    pub(super) fn on_input(&mut self, event: &InputEvent) {
        if self.composing.is_some() || event.is_composing() {
            return;
        }
        self.rebuild = true;
        self.refresh(None);
    }

    pub(super) fn on_keydown(&mut self, event: &KeyboardEvent) {
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

    pub(super) fn on_paste(&mut self, event: &ClipboardEvent) {
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
    pub(super) fn on_copy(&mut self, event: &ClipboardEvent, cut: bool) {
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

    pub(super) fn on_composition_start(&mut self) {
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

    pub(super) fn on_composition_end(&mut self, event: &CompositionEvent) {
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

    pub(super) fn on_selection_change(&mut self) {
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

    pub(super) fn on_focus(&mut self) {
        self.on_selection_change();
        self.report(true);
    }

    pub(super) fn on_blur(&mut self) {
        // When the window loses focus (another tab or application) the editor stays its
        // document's focused element and the caret stays where others can see it; only
        // focus moving elsewhere in the page takes it away.
        let focused = self.is_focused();
        self.report(focused);
    }

    pub(super) fn on_revision(&mut self) {
        // During a composition the DOM is the browser's: `compositionend` refreshes.
        if self.composing.is_none() {
            self.sync_with_doc();
        }
    }

    pub(super) fn update_props(
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

    pub(super) fn set_peers(&mut self, peers: Vec<PeerCursor>) {
        self.peers = peers;
        self.draw_peers();
    }

    // ---- Peers ---------------------------------------------------------------------------

    /// Redraws the other participants' carets and selections in the overlay.
    pub(super) fn draw_peers(&self) {
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

    pub(super) fn overlay_child(
        &self,
        class: &str,
        client_id: &str,
        style: &str,
    ) -> Option<Element> {
        let element = self.document.create_element("div").ok()?;
        element.set_attribute("class", class).ok()?;
        element.set_attribute("data-client-id", client_id).ok()?;
        element.set_attribute("style", style).ok()?;
        self.overlay.append_child(&element).ok()?;
        Some(element)
    }
}
