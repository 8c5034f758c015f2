//! The editor's logic without the DOM: where an offset of the text is in the rendered
//! paragraphs and back, what each `beforeinput` input type does to the text and the
//! selection (as a list of operations on the yrs text), the formatting the toolbar shows,
//! which paragraphs a render must replace, and the yrs pieces the editor is built on (the
//! undo manager, sticky selections). [`super::editor`] is the thin DOM shell around it.
//!
//! Offsets are UTF-16 code units into the document's text, as everywhere in the schema
//! (see `meridian_shared::docs`). The rendered document is a list of [`Line`]s, one per
//! paragraph of `rich::blocks`; a line's content is its runs, and one more unit, its
//! `"\n"`, separates it from the next line. Text after the last `"\n"` is a last line
//! without one (a Yjs text written by Quill usually ends that way, and so does an empty
//! document).
//!
//! Invariants:
//! - Every offset in `0..=`[`Layout::max_offset`] is a caret position, and
//!   [`Layout::offset_of`]`(`[`Layout::locate`]`(o)) == o`; the final `"\n"` is never
//!   selectable, so no edit removes it.
//! - A [`Plan`]'s operations apply in order, each with offsets into the text as the
//!   previous ones left it; a plan made from a layout that matches the text never reaches
//!   past the end of the text ([`apply_ops`] still clamps, so a stale layout cannot panic).
//! - Line formatting (`header`) lives only on the `"\n"` ending a line; inline formatting
//!   (`bold`, `italic`) only on the characters of runs. Inserted text always carries its
//!   full formatting explicitly, so it never inherits a neighbour's `header`.
//! - When an edit joins two lines, the joined line keeps the style of the line the edit
//!   started in, unless that line was empty (then the other line's style survives), as in
//!   Google Docs.
//! - The undo manager tracks only transactions with origin [`LOCAL_ORIGIN`] (and its own
//!   undo/redo transactions): other people's edits are never undone.
//!
//! Layout: the selection and formatting types, the undo caret and the peers' colours here;
//! `layout.rs` ([`Layout`]: offsets and rendered positions, [`block_splice`]), `input.rs`
//! (what the browser asks for: [`Input`], [`Edit`], [`shortcut`]), `plan.rs` (edits as
//! operations on the text: [`plan`]), `replica.rs` (the yrs pieces: [`apply_ops`], the undo
//! manager, [`StickySelection`]).

mod input;
mod layout;
mod plan;
mod replica;
#[cfg(test)]
mod testing;

pub use input::*;
pub use layout::*;
pub use plan::*;
pub use replica::*;

use std::collections::HashSet;
use std::sync::Arc;

use meridian_shared::docs::rich::{Block, Run};
use meridian_shared::docs::schema;
use yrs::sync::Clock;
use yrs::types::Attrs;
use yrs::undo::{Options as UndoOptions, UndoManager};
use yrs::{
    Any, Assoc, Doc, IndexedSequence, Number, Origin, ReadTxn, StickyIndex, Text, TextRef,
    TransactionMut,
};

use super::LOCAL_ORIGIN;

/// Consecutive local edits closer together than this are undone together.
pub const UNDO_CAPTURE_MS: u64 = 500;

/// The length of `s` in UTF-16 code units.
pub fn utf16_len(s: &str) -> u32 {
    s.encode_utf16().count() as u32
}

// ---------------------------------------------------------------------------------------
// Selection and formatting

/// A selection: where it started (`anchor`) and where the caret is (`head`); equal when
/// it is a caret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Selection {
    pub anchor: u32,
    pub head: u32,
}

impl Selection {
    pub fn new(anchor: u32, head: u32) -> Selection {
        Selection { anchor, head }
    }

    pub fn caret(at: u32) -> Selection {
        Selection::new(at, at)
    }

    pub fn start(self) -> u32 {
        self.anchor.min(self.head)
    }

    pub fn end(self) -> u32 {
        self.anchor.max(self.head)
    }

    pub fn is_collapsed(self) -> bool {
        self.anchor == self.head
    }
}

/// Inline formatting of a run of characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Inline {
    pub bold: bool,
    pub italic: bool,
}

impl Inline {
    pub fn of(run: &Run) -> Inline {
        Inline {
            bold: run.bold,
            italic: run.italic,
        }
    }
}

/// What the toolbar shows for a selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ActiveFormats {
    /// Every selected character is bold (for a caret: what typing would produce).
    pub bold: bool,
    pub italic: bool,
    /// `Some(h)` when every selected line has heading `h` (`None` inside is a plain
    /// paragraph); `None` when the lines differ.
    pub heading: Option<Option<u8>>,
}

// ---------------------------------------------------------------------------------------
// Undo caret

/// Where the caret goes after an undo or redo turned `before` into `after`: the end of
/// the changed span in `after` (the end of re-inserted text, or where text was removed);
/// `None` if the text did not change (a formatting undo).
pub fn caret_after_change(before: &str, after: &str) -> Option<u32> {
    if before == after {
        return None;
    }
    let prefix_chars = before
        .chars()
        .zip(after.chars())
        .take_while(|(a, b)| a == b)
        .count();
    let (before_chars, after_chars) = (before.chars().count(), after.chars().count());
    let room = before_chars.min(after_chars) - prefix_chars;
    let suffix: u32 = before
        .chars()
        .rev()
        .zip(after.chars().rev())
        .take(room)
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf16() as u32)
        .sum();
    Some(utf16_len(after) - suffix)
}

/// The part `[from, to)` of `text`, in UTF-16 offsets (clamped).
pub fn slice_utf16(text: &str, from: u32, to: u32) -> String {
    let units: Vec<u16> = text.encode_utf16().collect();
    let to = (to as usize).min(units.len());
    let from = (from as usize).min(to);
    String::from_utf16_lossy(&units[from..to])
}

// ---------------------------------------------------------------------------------------
// Peers

/// A peer's colour if it is a plain `#rgb`/`#rrggbb`/`#rrggbbaa` hex colour (it comes
/// from other clients and is written into a style), else a neutral one.
pub fn safe_color(color: &str) -> &str {
    let hex = color.strip_prefix('#').unwrap_or("");
    let ok = matches!(hex.len(), 3 | 6 | 8) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        color
    } else {
        "#6b7280"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_after_change_counts_utf16() {
        assert_eq!(caret_after_change("ab", "ab"), None);
        assert_eq!(caret_after_change("ab", "a😀b"), Some(3));
        assert_eq!(caret_after_change("a😀b", "ab"), Some(1));
        assert_eq!(caret_after_change("aaa", "aaaa"), Some(4));
        assert_eq!(caret_after_change("", "xyz"), Some(3));
        assert_eq!(caret_after_change("xyz", ""), Some(0));
    }

    #[test]
    fn utf16_slices() {
        assert_eq!(slice_utf16("a😀b\nc", 1, 4), "😀b");
        assert_eq!(slice_utf16("ab\ncd", 1, 4), "b\nc");
        assert_eq!(slice_utf16("ab", 1, 9), "b");
        assert_eq!(slice_utf16("ab", 5, 9), "");
    }

    #[test]
    fn peer_colours_are_plain_hex() {
        assert_eq!(safe_color("#e5484d"), "#e5484d");
        assert_eq!(safe_color("#abc"), "#abc");
        assert_eq!(safe_color("red; background: url(x)"), "#6b7280");
        assert_eq!(safe_color("#12345"), "#6b7280");
    }
}
