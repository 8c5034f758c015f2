//! Mounting: the DOM listeners that live as long as the core.

use super::*;

/// An event listener, removed when dropped.
pub(super) struct Listener {
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
pub(super) struct Mounted {
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

pub(super) fn listen(
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

pub(super) fn mount(
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
