//! The yrs pieces the editor is built on: operations applied to the text ([`apply_ops`]),
//! the undo manager ([`undo_manager`]) and selections that follow remote edits
//! ([`StickySelection`]).

use super::*;

fn format_attrs(change: FormatChange) -> Attrs {
    let flag = |on: bool| if on { Any::Bool(true) } else { Any::Null };
    let (key, value) = match change {
        FormatChange::Bold(on) => (schema::BOLD, flag(on)),
        FormatChange::Italic(on) => (schema::ITALIC, flag(on)),
        FormatChange::Heading(h) => (
            schema::HEADER,
            h.map_or(Any::Null, |h| Any::Number(Number::Int(h.into()))),
        ),
    };
    Attrs::from([(key.into(), value)])
}

/// Applies `ops` to `text` in order. Offsets past the end are clamped, so a plan made
/// from a layout that fell behind the text changes the wrong place rather than panic.
pub fn apply_ops(txn: &mut TransactionMut, text: &TextRef, ops: &[Op]) {
    for op in ops {
        let len = text.len(txn);
        match op {
            Op::Insert {
                at,
                text: chunk,
                inline,
                heading,
            } => {
                // Only the keys set here survive: `insert_with_attributes` ends every
                // other formatting active at `at` (Quill's explicit formatting).
                let mut attrs = Attrs::new();
                if inline.bold {
                    attrs.insert(schema::BOLD.into(), Any::Bool(true));
                }
                if inline.italic {
                    attrs.insert(schema::ITALIC.into(), Any::Bool(true));
                }
                if let Some(h) = heading {
                    attrs.insert(schema::HEADER.into(), Any::Number(Number::Int((*h).into())));
                }
                text.insert_with_attributes(txn, (*at).min(len), chunk, attrs);
            }
            Op::Delete { at, len: n } => {
                let at = (*at).min(len);
                let n = (*n).min(len - at);
                if n > 0 {
                    text.remove_range(txn, at, n);
                }
            }
            Op::Format { at, len: n, change } => {
                let at = (*at).min(len);
                let n = (*n).min(len - at);
                if n > 0 {
                    text.format(txn, at, n, format_attrs(*change));
                }
            }
        }
    }
}

/// The undo manager of an editor: it tracks the text's changes made with origin
/// [`LOCAL_ORIGIN`] only, grouping those within [`UNDO_CAPTURE_MS`] of each other by
/// `clock` (milliseconds, which must never go back).
pub fn undo_manager(doc: &Doc, text: &TextRef, clock: Arc<dyn Clock>) -> UndoManager<()> {
    let options = UndoOptions {
        capture_timeout_millis: UNDO_CAPTURE_MS,
        tracked_origins: HashSet::from([Origin::from(LOCAL_ORIGIN)]),
        capture_transaction: None,
        timestamp: clock,
        init_undo_stack: Vec::new(),
        init_redo_stack: Vec::new(),
    };
    let mut manager = UndoManager::with_options(options);
    manager.expand_scope(doc, text);
    manager
}

/// A selection that follows the text as other people edit it: each end sticks to the
/// character after it (at the end of the text, to the one before it), so text inserted
/// before the caret moves the caret along.
#[derive(Debug, Clone, PartialEq)]
pub struct StickySelection {
    pub anchor: StickyIndex,
    pub head: StickyIndex,
}

impl StickySelection {
    pub fn new<T: ReadTxn>(txn: &T, text: &TextRef, selection: Selection) -> Option<Self> {
        // At the very end there is no character after: stick to the one before.
        let at = |offset| {
            text.sticky_index(txn, offset, Assoc::After)
                .or_else(|| text.sticky_index(txn, offset, Assoc::Before))
        };
        Some(StickySelection {
            anchor: at(selection.anchor)?,
            head: at(selection.head)?,
        })
    }

    /// Where the selection is now.
    pub fn resolve<T: ReadTxn>(&self, txn: &T) -> Option<Selection> {
        Some(Selection::new(
            self.anchor.get_offset(txn)?.index,
            self.head.get_offset(txn)?.index,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docs::REMOTE_ORIGIN;

    use crate::docs::editor_model::testing::*;
    use yrs::updates::decoder::Decode;
    use yrs::{StateVector, Transact, Update};

    #[test]
    fn undo_reverts_only_local_edits_in_time_groups() {
        let mut b = Bench::new();
        b.typed("abc");
        b.advance(UNDO_CAPTURE_MS + 1);
        b.typed("def");
        // Someone else types at the start, concurrently.
        let remote = schema::new_doc_with_client(2);
        let update = b
            .doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        remote
            .transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        let rtext = remote.get_or_insert_text(schema::TEXT);
        rtext.insert(&mut remote.transact_mut(), 0, "XY");
        let sv = b.doc.transact().state_vector();
        let diff = remote.transact().encode_diff_v1(&sv);
        b.doc
            .transact_mut_with(REMOTE_ORIGIN)
            .apply_update(Update::decode_v1(&diff).unwrap())
            .unwrap();
        assert_eq!(b.string(), "XYabcdef");
        let before = b.string();
        assert!(b.undo.undo_blocking());
        assert_eq!(
            b.string(),
            "XYabc",
            "the last group only, not the remote edit"
        );
        assert_eq!(caret_after_change(&before, &b.string()), Some(5));
        assert!(b.undo.undo_blocking());
        assert_eq!(b.string(), "XY");
        assert!(
            !b.undo.undo_blocking(),
            "the remote edit is not undoable here"
        );
        assert_eq!(b.string(), "XY");
        let before = b.string();
        assert!(b.undo.redo_blocking());
        assert_eq!(b.string(), "XYabc");
        assert_eq!(caret_after_change(&before, &b.string()), Some(5));
        // Formatting undoes too, and leaves the text (and so the caret) alone.
        b.select(2, 5);
        b.advance(UNDO_CAPTURE_MS + 1);
        b.edit(Edit::ToggleBold);
        assert_eq!(b.render(), "XY*abc*");
        let before = b.string();
        assert!(b.undo.undo_blocking());
        assert_eq!(b.render(), "XYabc");
        assert_eq!(caret_after_change(&before, &b.string()), None);
    }

    #[test]
    fn sticky_selection_follows_remote_edits() {
        let mut b = Bench::new();
        b.typed("hello world");
        let sticky =
            StickySelection::new(&b.doc.transact(), &b.text, Selection::new(6, 8)).unwrap();
        {
            let mut txn = b.doc.transact_mut_with(REMOTE_ORIGIN);
            b.text.insert(&mut txn, 0, ">> ");
            b.text.insert(&mut txn, 12, "!");
        }
        assert_eq!(b.string(), ">> hello wor!ld");
        // Text before the selection moves it along; text after it does not.
        assert_eq!(
            sticky.resolve(&b.doc.transact()),
            Some(Selection::new(9, 11))
        );
        b.text
            .remove_range(&mut b.doc.transact_mut_with(REMOTE_ORIGIN), 0, 9);
        assert_eq!(
            sticky.resolve(&b.doc.transact()),
            Some(Selection::new(0, 2))
        );
        // A caret at the very end sticks to the character before it.
        let len = b.text.len(&b.doc.transact());
        let end = StickySelection::new(&b.doc.transact(), &b.text, Selection::caret(len)).unwrap();
        b.text
            .insert(&mut b.doc.transact_mut_with(REMOTE_ORIGIN), len, "?");
        b.text
            .insert(&mut b.doc.transact_mut_with(REMOTE_ORIGIN), 0, "<");
        assert_eq!(
            end.resolve(&b.doc.transact()),
            Some(Selection::caret(len + 1))
        );
        // In an empty text, a caret is at 0.
        let empty = Bench::new();
        let at0 = StickySelection::new(&empty.doc.transact(), &empty.text, Selection::caret(0));
        assert_eq!(
            at0.unwrap().resolve(&empty.doc.transact()),
            Some(Selection::caret(0))
        );
    }
}
