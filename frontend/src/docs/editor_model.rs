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
// Layout: offsets <-> rendered positions

/// One rendered paragraph and where it sits in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub block: Block,
    /// Offset of its first character.
    pub start: u32,
    /// Length of its content in UTF-16, without its `"\n"`.
    pub len: u32,
    /// For each run, where it ends, relative to `start`.
    run_ends: Vec<u32>,
}

impl Line {
    fn new(block: Block, start: u32) -> Line {
        let mut end = 0;
        let run_ends = block
            .runs
            .iter()
            .map(|run| {
                end += utf16_len(&run.text);
                end
            })
            .collect();
        Line {
            block,
            start,
            len: end,
            run_ends,
        }
    }

    /// Offset of its end: the caret position before its `"\n"`.
    pub fn end(&self) -> u32 {
        self.start + self.len
    }

    pub fn heading(&self) -> Option<u8> {
        self.block.heading
    }

    fn run_start(&self, run: usize) -> u32 {
        if run == 0 {
            0
        } else {
            self.run_ends[run - 1]
        }
    }

    /// The run holding the character that starts at `local` (`local < len`).
    fn run_of_char(&self, local: u32) -> usize {
        self.run_ends.partition_point(|&end| end <= local)
    }

    /// Code points of the content with their UTF-16 start, relative to `start`.
    fn chars(&self) -> Vec<(u32, char)> {
        let mut at = 0;
        let mut out = Vec::with_capacity(self.len as usize);
        for run in &self.block.runs {
            for c in run.text.chars() {
                out.push((at, c));
                at += c.len_utf16() as u32;
            }
        }
        out
    }
}

/// A position in the rendered paragraphs: inside a run, or in an empty paragraph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomPoint {
    Run {
        block: usize,
        run: usize,
        /// UTF-16 offset inside the run's text.
        offset: u32,
    },
    EmptyBlock {
        block: usize,
    },
}

/// The document as rendered: its lines and the text's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    lines: Vec<Line>,
    text_len: u32,
}

impl Default for Layout {
    fn default() -> Layout {
        Layout::new(Vec::new(), 0)
    }
}

impl Layout {
    /// `blocks` as `rich::blocks` returns them (an empty list is read as one empty
    /// paragraph) and the length of the text they came from.
    pub fn new(mut blocks: Vec<Block>, text_len: u32) -> Layout {
        if blocks.is_empty() {
            blocks.push(Block::default());
        }
        let mut start = 0;
        let lines = blocks
            .into_iter()
            .map(|block| {
                let line = Line::new(block, start);
                start = line.end() + 1;
                line
            })
            .collect();
        Layout { lines, text_len }
    }

    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    pub fn line(&self, index: usize) -> &Line {
        &self.lines[index.min(self.lines.len() - 1)]
    }

    pub fn text_len(&self) -> u32 {
        self.text_len
    }

    /// The last caret position: the end of the last line's content.
    pub fn max_offset(&self) -> u32 {
        self.lines[self.lines.len() - 1].end()
    }

    pub fn clamp(&self, offset: u32) -> u32 {
        offset.min(self.max_offset())
    }

    pub fn clamp_selection(&self, selection: Selection) -> Selection {
        Selection::new(self.clamp(selection.anchor), self.clamp(selection.head))
    }

    /// The line a caret at `offset` is in.
    pub fn line_at(&self, offset: u32) -> usize {
        let offset = self.clamp(offset);
        self.lines.partition_point(|line| line.start <= offset) - 1
    }

    /// Whether line `index` ends with a `"\n"` in the text (every line but perhaps the
    /// last).
    pub fn is_terminated(&self, index: usize) -> bool {
        index + 1 < self.lines.len() || self.text_len > self.line(index).end()
    }

    /// Where a caret at `offset` is drawn: at a run boundary, at the end of the earlier
    /// run (the one whose formatting typing continues).
    pub fn locate(&self, offset: u32) -> DomPoint {
        let offset = self.clamp(offset);
        let block = self.line_at(offset);
        let line = &self.lines[block];
        if line.run_ends.is_empty() {
            return DomPoint::EmptyBlock { block };
        }
        let local = offset - line.start;
        let run = line.run_ends.partition_point(|&end| end < local);
        DomPoint::Run {
            block,
            run,
            offset: local - line.run_start(run),
        }
    }

    /// The offset of a rendered position (indices and offsets beyond the content are
    /// clamped to it).
    pub fn offset_of(&self, point: DomPoint) -> u32 {
        match point {
            DomPoint::EmptyBlock { block } => self.line(block).start,
            DomPoint::Run { block, run, offset } => {
                let line = self.line(block);
                if line.run_ends.is_empty() {
                    return line.start;
                }
                let run = run.min(line.run_ends.len() - 1);
                let run_len = line.run_ends[run] - line.run_start(run);
                line.start + line.run_start(run) + offset.min(run_len)
            }
        }
    }

    /// The offset of a DOM position given as (paragraph element, child index): the
    /// paragraph's children are its runs in order.
    pub fn offset_of_block_child(&self, block: usize, child: u32) -> u32 {
        let line = self.line(block);
        match line.run_ends.get(child as usize) {
            Some(_) => line.start + line.run_start(child as usize),
            None => line.end(),
        }
    }

    /// The offset of a DOM position given as (editor element, child index): its children
    /// are the paragraphs in order.
    pub fn offset_of_root_child(&self, child: u32) -> u32 {
        match self.lines.get(child as usize) {
            Some(line) => line.start,
            None => self.max_offset(),
        }
    }

    /// The lines a selection covers. A selection that ends at the very start of a line
    /// (a whole paragraph triple-clicked) does not cover that line.
    pub fn selected_lines(&self, selection: Selection) -> std::ops::RangeInclusive<usize> {
        let (start, end) = (self.clamp(selection.start()), self.clamp(selection.end()));
        let first = self.line_at(start);
        let mut last = self.line_at(end);
        if end > start && last > first && self.lines[last].start == end {
            last -= 1;
        }
        first..=last
    }

    /// The formatting of the character starting at `offset`, if one does (not a `"\n"`).
    fn inline_at(&self, offset: u32) -> Option<Inline> {
        let line = &self.lines[self.line_at(offset)];
        let local = offset - line.start;
        (local < line.len).then(|| Inline::of(&line.block.runs[line.run_of_char(local)]))
    }

    /// The formatting typed text takes at a caret: that of the character before it on
    /// its line, or at a line's start that of the line's first character.
    pub fn inline_before(&self, offset: u32) -> Inline {
        let offset = self.clamp(offset);
        let line = &self.lines[self.line_at(offset)];
        let local = offset - line.start;
        let run = match local {
            0 => line.block.runs.first(),
            _ => line.block.runs.get(line.run_of_char(local - 1)),
        };
        run.map(Inline::of).unwrap_or_default()
    }

    /// The formatting text typed over `selection` takes: for a range, that of its first
    /// character.
    pub fn typing_format(&self, selection: Selection) -> Inline {
        let start = self.clamp(selection.start());
        if !selection.is_collapsed() {
            if let Some(inline) = self.inline_at(start) {
                return inline;
            }
        }
        self.inline_before(start)
    }

    /// Calls `f` with each run (or part of one) inside `[start, end)`, line by line.
    fn for_each_segment(&self, start: u32, end: u32, mut f: impl FnMut(&Line, u32, u32)) {
        for line in &self.lines[self.line_at(start)..=self.line_at(end)] {
            let (from, to) = (start.max(line.start), end.min(line.end()));
            if from < to {
                f(line, from, to);
            }
        }
    }

    /// Whether every character in `[start, end)` satisfies `pred`; `None` if there is
    /// none (the range holds only line ends).
    fn all_chars(&self, start: u32, end: u32, pred: impl Fn(Inline) -> bool) -> Option<bool> {
        let mut any = false;
        let mut all = true;
        self.for_each_segment(start, end, |line, from, to| {
            let (from, to) = (from - line.start, to - line.start);
            for (run, &run_end) in line.run_ends.iter().enumerate() {
                if run_end > from && line.run_start(run) < to {
                    any = true;
                    all &= pred(Inline::of(&line.block.runs[run]));
                }
            }
        });
        any.then_some(all)
    }

    /// What the toolbar shows for `selection`, given a pending toggle at a caret.
    pub fn active_formats(&self, selection: Selection, pending: Option<Inline>) -> ActiveFormats {
        let selection = self.clamp_selection(selection);
        let inline = if selection.is_collapsed() {
            pending.unwrap_or_else(|| self.inline_before(selection.head))
        } else {
            let (start, end) = (selection.start(), selection.end());
            let bold = self.all_chars(start, end, |i| i.bold);
            let italic = self.all_chars(start, end, |i| i.italic);
            match (bold, italic) {
                (Some(bold), Some(italic)) => Inline { bold, italic },
                _ => self.typing_format(selection),
            }
        };
        let mut lines = self
            .selected_lines(selection)
            .map(|i| self.lines[i].heading());
        let first = lines.next().flatten();
        let heading = lines.all(|h| h == first).then_some(first);
        ActiveFormats {
            bold: inline.bold,
            italic: inline.italic,
            heading,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rendering: which paragraphs changed

/// The paragraphs a render replaces: old lines `start..old_end` become new lines
/// `start..new_end`; those before and after are unchanged (the ones after may move).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Splice {
    pub start: usize,
    pub old_end: usize,
    pub new_end: usize,
}

/// The smallest [`Splice`] turning `old` into `new`, always including the old lines
/// `dirty` (inclusive) whose DOM the browser may have changed; `None` when nothing
/// changed.
pub fn block_splice(old: &Layout, new: &Layout, dirty: Option<(usize, usize)>) -> Option<Splice> {
    let (old, new) = (&old.lines, &new.lines);
    let same = |a: &Line, b: &Line| a.block == b.block;
    let mut prefix = old.iter().zip(new).take_while(|(a, b)| same(a, b)).count();
    let mut keep_after = old.len();
    if let Some((first, last)) = dirty {
        let last = last.min(old.len() - 1);
        prefix = prefix.min(first.min(last));
        keep_after = old.len() - 1 - last;
    }
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| same(a, b))
        .count()
        .min(keep_after);
    let splice = Splice {
        start: prefix,
        old_end: old.len() - suffix,
        new_end: new.len() - suffix,
    };
    (splice.start < splice.old_end || splice.start < splice.new_end).then_some(splice)
}

// ---------------------------------------------------------------------------------------
// Input: what the browser asks for

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Backward,
    Forward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Char,
    Word,
    /// To the start or end of the line.
    Line,
}

/// An edit of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Replace the selection by text (which may hold line breaks).
    InsertText(String),
    /// Split the line at the caret (Enter).
    InsertParagraph,
    /// Delete the selection, or from the caret by `unit` in `direction`.
    Delete {
        direction: Direction,
        unit: Unit,
    },
    /// Delete the selection (cut, drag); nothing at a caret.
    DeleteSelection,
    /// Delete the selection, or the content of the caret's line.
    DeleteLine,
    ToggleBold,
    ToggleItalic,
    /// Make the selected lines headings of this level, or plain paragraphs.
    SetHeading(Option<u8>),
}

/// What a `beforeinput` event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Edit(Edit),
    Undo,
    Redo,
    /// Part of an IME composition: the browser edits, the editor applies the result.
    Composition,
    /// Something this editor does not do (lists, links, underline…): cancelled.
    Ignored,
}

/// Which range an input applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetUse {
    /// The event's target range (a spelling correction, a drop point).
    Always,
    /// The target range when it is not empty (the browser knows grapheme clusters, word
    /// boundaries and visual lines), else the editor's own rule.
    IfNotEmpty,
    /// The selection.
    Never,
}

/// Line breaks as the document stores them: `"\r\n"` and `"\r"` become `"\n"`.
pub fn normalize_newlines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

impl Input {
    /// Reads an `InputEvent`'s `inputType` and its text (`data`, or the plain text of its
    /// `dataTransfer`).
    pub fn classify(input_type: &str, text: Option<String>) -> Input {
        let delete = |direction, unit| Input::Edit(Edit::Delete { direction, unit });
        use Direction::{Backward, Forward};
        match input_type {
            "insertText"
            | "insertReplacementText"
            | "insertFromPaste"
            | "insertFromPasteAsQuotation"
            | "insertFromDrop"
            | "insertFromYank" => Input::Edit(Edit::InsertText(normalize_newlines(
                &text.unwrap_or_default(),
            ))),
            "insertParagraph" | "insertLineBreak" => Input::Edit(Edit::InsertParagraph),
            "insertCompositionText" | "deleteCompositionText" | "insertFromComposition" => {
                Input::Composition
            }
            "deleteContentBackward" => delete(Backward, Unit::Char),
            "deleteContentForward" => delete(Forward, Unit::Char),
            "deleteWordBackward" => delete(Backward, Unit::Word),
            "deleteWordForward" => delete(Forward, Unit::Word),
            "deleteSoftLineBackward" | "deleteHardLineBackward" => delete(Backward, Unit::Line),
            "deleteSoftLineForward" | "deleteHardLineForward" => delete(Forward, Unit::Line),
            "deleteEntireSoftLine" => Input::Edit(Edit::DeleteLine),
            "deleteByCut" | "deleteByDrag" | "deleteContent" => Input::Edit(Edit::DeleteSelection),
            "historyUndo" => Input::Undo,
            "historyRedo" => Input::Redo,
            "formatBold" => Input::Edit(Edit::ToggleBold),
            "formatItalic" => Input::Edit(Edit::ToggleItalic),
            _ => Input::Ignored,
        }
    }
}

/// Which range an input type applies to (see [`TargetUse`]).
pub fn target_use(input_type: &str) -> TargetUse {
    match input_type {
        "insertReplacementText" | "insertFromDrop" | "deleteByDrag" => TargetUse::Always,
        t if t.starts_with("delete") && t != "deleteByCut" && t != "deleteContent" => {
            TargetUse::IfNotEmpty
        }
        _ => TargetUse::Never,
    }
}

/// What a toolbar button or a keyboard shortcut does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Bold,
    Italic,
    /// `None`: a plain paragraph.
    Heading(Option<u8>),
    Undo,
    Redo,
}

/// The command of a key press, with Google Docs' shortcuts: Ctrl/Cmd+B, +I, +Z,
/// +Shift+Z or +Y, and Ctrl/Cmd+Alt+0..3 for the paragraph style. Letters are read from
/// `key` (the layout's letter, so AZERTY's Ctrl+Z is undo) and digits from `code` (the
/// physical key, since Alt changes what a digit types); AltGr, which types characters
/// on many layouts, is never a shortcut.
pub fn shortcut(
    key: &str,
    code: &str,
    primary: bool,
    shift: bool,
    alt: bool,
    alt_graph: bool,
) -> Option<Command> {
    if !primary || alt_graph {
        return None;
    }
    if alt {
        return match (code, shift) {
            ("Digit0" | "Numpad0", false) => Some(Command::Heading(None)),
            ("Digit1" | "Numpad1", false) => Some(Command::Heading(Some(1))),
            ("Digit2" | "Numpad2", false) => Some(Command::Heading(Some(2))),
            ("Digit3" | "Numpad3", false) => Some(Command::Heading(Some(3))),
            _ => None,
        };
    }
    match (key.to_lowercase().as_str(), shift) {
        ("b", false) => Some(Command::Bold),
        ("i", false) => Some(Command::Italic),
        ("z", false) => Some(Command::Undo),
        ("z", true) | ("y", false) => Some(Command::Redo),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Plans: edits as operations on the text

/// A change of formatting over a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatChange {
    Bold(bool),
    Italic(bool),
    Heading(Option<u8>),
}

/// One operation on the yrs text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Insert `text` with exactly this formatting (`heading` only on a `"\n"`).
    Insert {
        at: u32,
        text: String,
        inline: Inline,
        heading: Option<u8>,
    },
    Delete {
        at: u32,
        len: u32,
    },
    Format {
        at: u32,
        len: u32,
        change: FormatChange,
    },
}

/// What an edit does: the operations, then the selection and the pending toggle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub selection: Selection,
    /// Formatting the next typed text takes at this caret (a toggle with nothing
    /// selected, or formatting carried over a line break).
    pub pending: Option<Inline>,
}

/// The line the caret is on after a deletion joined lines.
struct Joined {
    heading: Option<u8>,
    terminated: bool,
    /// Its end, in the text after the deletion.
    end: u32,
}

struct Planner<'a> {
    layout: &'a Layout,
    ops: Vec<Op>,
    /// The text's length after the operations so far.
    len: u32,
    /// Whether the text ends with `"\n"` after them.
    ends_with_newline: bool,
}

impl Planner<'_> {
    fn new(layout: &Layout) -> Planner<'_> {
        Planner {
            layout,
            ops: Vec::new(),
            len: layout.text_len,
            ends_with_newline: layout.is_terminated(layout.lines.len() - 1),
        }
    }

    fn push(&mut self, op: Op) {
        match &op {
            Op::Insert { at, text, .. } => {
                if *at >= self.len {
                    self.ends_with_newline = text.ends_with('\n');
                }
                self.len += utf16_len(text);
            }
            Op::Delete { at, len } => {
                if at + len >= self.len {
                    // Only the first operation of a plan deletes, so `at` is an offset of
                    // the layout's text: a "\n" precedes it exactly at a line's start.
                    self.ends_with_newline =
                        *at > 0 && self.layout.line(self.layout.line_at(*at)).start == *at;
                }
                self.len -= len;
            }
            Op::Format { .. } => {}
        }
        self.ops.push(op);
    }

    /// The plan, leaving the caret at `caret`. A caret after a final `"\n"` would be on a
    /// line `rich::blocks` does not show (the text's last line is what follows its last
    /// `"\n"`), so that line gets a `"\n"` of its own.
    fn finish(mut self, caret: u32, pending: Option<Inline>) -> Plan {
        if self.ends_with_newline && caret == self.len && caret > 0 {
            self.push(line_end_op(caret, None));
        }
        Plan {
            ops: self.ops,
            selection: Selection::caret(caret),
            pending,
        }
    }

    fn line_unchanged(&self, offset: u32) -> Joined {
        let index = self.layout.line_at(offset);
        let line = self.layout.line(index);
        Joined {
            heading: line.heading(),
            terminated: self.layout.is_terminated(index),
            end: line.end(),
        }
    }

    /// Deletes `[from, to)` and gives the joined line the style it keeps (see the
    /// module's invariants).
    fn delete_range(&mut self, from: u32, to: u32) -> Joined {
        if from >= to {
            return self.line_unchanged(from);
        }
        let (first, last) = (self.layout.line_at(from), self.layout.line_at(to));
        self.push(Op::Delete {
            at: from,
            len: to - from,
        });
        let end = from + (self.layout.line(last).end() - to);
        let mut terminated = self.layout.is_terminated(last);
        let has = self.layout.line(last).heading();
        if first == last {
            return Joined {
                heading: has,
                terminated,
                end,
            };
        }
        let first_line = self.layout.line(first);
        let wants = if first_line.len == 0 {
            has
        } else {
            first_line.heading()
        };
        if wants != has {
            if terminated {
                self.push(Op::Format {
                    at: end,
                    len: 1,
                    change: FormatChange::Heading(wants),
                });
            } else {
                // A heading needs a "\n" to live on.
                self.push(line_end_op(end, wants));
                terminated = true;
            }
        }
        Joined {
            heading: wants,
            terminated,
            end,
        }
    }

    /// Inserts `text` at `at`, its line breaks ending lines of style `heading`; returns
    /// the offset after it.
    fn insert_text(&mut self, mut at: u32, text: &str, inline: Inline, heading: Option<u8>) -> u32 {
        for (i, piece) in text.split('\n').enumerate() {
            if i > 0 {
                self.push(line_end_op(at, heading));
                at += 1;
            }
            if !piece.is_empty() {
                self.push(Op::Insert {
                    at,
                    text: piece.to_owned(),
                    inline,
                    heading: None,
                });
                at += utf16_len(piece);
            }
        }
        at
    }
}

fn line_end_op(at: u32, heading: Option<u8>) -> Op {
    Op::Insert {
        at,
        text: "\n".to_owned(),
        inline: Inline::default(),
        heading,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CharClass {
    Space,
    Word,
    Punct,
}

fn char_class(c: char) -> CharClass {
    if c.is_whitespace() {
        CharClass::Space
    } else if c.is_alphanumeric() || c == '_' {
        CharClass::Word
    } else {
        CharClass::Punct
    }
}

/// Where a word-wise deletion from `local` in `line` stops: over spaces, then over
/// characters of the class of the next one.
fn word_boundary(line: &Line, local: u32, direction: Direction) -> u32 {
    let chars = line.chars();
    match direction {
        Direction::Backward => {
            let mut i = chars.partition_point(|&(at, _)| at < local);
            while i > 0 && char_class(chars[i - 1].1) == CharClass::Space {
                i -= 1;
            }
            if let Some(&(_, c)) = i.checked_sub(1).and_then(|j| chars.get(j)) {
                let class = char_class(c);
                while i > 0 && char_class(chars[i - 1].1) == class {
                    i -= 1;
                }
            }
            chars.get(i).map_or(line.len, |&(at, _)| at)
        }
        Direction::Forward => {
            let mut i = chars.partition_point(|&(at, _)| at < local);
            while i < chars.len() && char_class(chars[i].1) == CharClass::Space {
                i += 1;
            }
            if let Some(&(_, c)) = chars.get(i) {
                let class = char_class(c);
                while i < chars.len() && char_class(chars[i].1) == class {
                    i += 1;
                }
            }
            chars.get(i).map_or(line.len, |&(at, _)| at)
        }
    }
}

/// The length of the code point before (or after) `local` in `line`.
fn char_len(line: &Line, local: u32, direction: Direction) -> u32 {
    let chars = line.chars();
    let i = chars.partition_point(|&(at, _)| at < local);
    let c = match direction {
        Direction::Backward => i.checked_sub(1).and_then(|j| chars.get(j)),
        Direction::Forward => chars.get(i),
    };
    c.map_or(1, |&(_, c)| c.len_utf16() as u32)
}

/// What `edit` does to the document rendered as `layout` with `selection` (clamped to
/// it) and a pending toggle.
pub fn plan(layout: &Layout, selection: Selection, pending: Option<Inline>, edit: &Edit) -> Plan {
    let selection = layout.clamp_selection(selection);
    let (start, end) = (selection.start(), selection.end());
    let mut p = Planner::new(layout);
    match edit {
        Edit::InsertText(text) => {
            if text.is_empty() && selection.is_collapsed() {
                return Plan {
                    ops: Vec::new(),
                    selection,
                    pending,
                };
            }
            let inline = pending.unwrap_or_else(|| layout.typing_format(selection));
            let joined = p.delete_range(start, end);
            let caret = p.insert_text(start, text, inline, joined.heading);
            p.finish(caret, None)
        }
        Edit::InsertParagraph => {
            let inline = pending.unwrap_or_else(|| layout.typing_format(selection));
            let joined = p.delete_range(start, end);
            if joined.heading.is_some() && start == joined.end && joined.terminated {
                // Enter at the end of a heading: the new line is a plain paragraph.
                p.push(line_end_op(start + 1, None));
            } else {
                p.push(line_end_op(start, joined.heading));
            }
            p.finish(start + 1, Some(inline))
        }
        Edit::Delete { direction, unit } => {
            let (from, to) = if selection.is_collapsed() {
                let index = layout.line_at(start);
                let line = layout.line(index);
                let local = start - line.start;
                match direction {
                    Direction::Backward if local == 0 => (start.saturating_sub(1), start),
                    Direction::Forward if local == line.len => {
                        (start, (start + 1).min(layout.max_offset()))
                    }
                    Direction::Backward => match unit {
                        Unit::Char => (start - char_len(line, local, *direction), start),
                        Unit::Word => (line.start + word_boundary(line, local, *direction), start),
                        Unit::Line => (line.start, start),
                    },
                    Direction::Forward => match unit {
                        Unit::Char => (start, start + char_len(line, local, *direction)),
                        Unit::Word => (start, line.start + word_boundary(line, local, *direction)),
                        Unit::Line => (start, line.end()),
                    },
                }
            } else {
                (start, end)
            };
            p.delete_range(from, to);
            p.finish(from, None)
        }
        Edit::DeleteSelection => {
            p.delete_range(start, end);
            p.finish(start, None)
        }
        Edit::DeleteLine => {
            let (from, to) = if selection.is_collapsed() {
                let line = layout.line(layout.line_at(start));
                (line.start, line.end())
            } else {
                (start, end)
            };
            p.delete_range(from, to);
            p.finish(from, None)
        }
        Edit::ToggleBold | Edit::ToggleItalic => {
            let bold = *edit == Edit::ToggleBold;
            if selection.is_collapsed() {
                let mut inline = pending.unwrap_or_else(|| layout.inline_before(start));
                if bold {
                    inline.bold = !inline.bold;
                } else {
                    inline.italic = !inline.italic;
                }
                return Plan {
                    ops: Vec::new(),
                    selection,
                    pending: Some(inline),
                };
            }
            let all = layout.all_chars(start, end, |i| if bold { i.bold } else { i.italic });
            if let Some(all) = all {
                layout.for_each_segment(start, end, |_, from, to| {
                    p.push(Op::Format {
                        at: from,
                        len: to - from,
                        change: if bold {
                            FormatChange::Bold(!all)
                        } else {
                            FormatChange::Italic(!all)
                        },
                    })
                });
            }
            Plan {
                ops: p.ops,
                selection,
                pending: None,
            }
        }
        Edit::SetHeading(heading) => {
            for index in layout.selected_lines(selection) {
                let line = layout.line(index);
                if layout.is_terminated(index) {
                    if line.heading() != *heading {
                        p.push(Op::Format {
                            at: line.end(),
                            len: 1,
                            change: FormatChange::Heading(*heading),
                        });
                    }
                } else if heading.is_some() {
                    // The last line has no "\n" yet: give it one to carry the style.
                    p.push(line_end_op(line.end(), *heading));
                }
            }
            Plan {
                ops: p.ops,
                selection,
                pending,
            }
        }
    }
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

// ---------------------------------------------------------------------------------------
// yrs

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
    use meridian_shared::docs::rich::blocks;
    use std::sync::atomic::{AtomicU64, Ordering};
    use yrs::updates::decoder::Decode;
    use yrs::{GetString, StateVector, Transact, Update};

    fn run(text: &str, bold: bool, italic: bool) -> Run {
        Run {
            text: text.into(),
            bold,
            italic,
        }
    }

    fn block(heading: Option<u8>, runs: Vec<Run>) -> Block {
        Block { heading, runs }
    }

    /// A small xorshift generator; the tests print their seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn seed() -> u64 {
        let seed = std::env::var("EDITOR_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        println!("seed {seed} (replay with EDITOR_SEED={seed})");
        seed
    }

    fn random_layout(rng: &mut Rng) -> Layout {
        const PIECES: [&str; 5] = ["a", "bc", "é", "😀", " x"];
        let lines = 1 + rng.below(4) as usize;
        let blocks: Vec<Block> = (0..lines)
            .map(|_| {
                let runs = (0..rng.below(4))
                    .map(|i| {
                        let text: String = (0..1 + rng.below(3))
                            .map(|_| PIECES[rng.below(PIECES.len() as u64) as usize])
                            .collect();
                        // Neighbouring runs differ in formatting, as `rich::blocks` makes them.
                        run(&text, i % 2 == 1, rng.below(2) == 0 && i % 2 == 1)
                    })
                    .collect();
                block(None, runs)
            })
            .collect();
        let content: u32 = blocks.iter().map(|b| b.len_utf16() + 1).sum();
        let terminated = rng.below(2) == 0;
        Layout::new(blocks, if terminated { content } else { content - 1 })
    }

    #[test]
    fn offsets_and_rendered_positions_round_trip() {
        let mut rng = Rng(seed());
        for _ in 0..2_000 {
            let layout = random_layout(&mut rng);
            for offset in 0..=layout.max_offset() {
                let point = layout.locate(offset);
                assert_eq!(layout.offset_of(point), offset, "{layout:?} at {offset}");
            }
            // Every position inside a run maps to an offset that locates back to the
            // canonical position of that offset.
            for (block, line) in layout.lines().iter().enumerate() {
                for (r, piece) in line.block.runs.iter().enumerate() {
                    for offset in 0..=utf16_len(&piece.text) {
                        let o = layout.offset_of(DomPoint::Run {
                            block,
                            run: r,
                            offset,
                        });
                        assert_eq!(layout.offset_of(layout.locate(o)), o);
                        assert_eq!(layout.line_at(o), block);
                    }
                }
            }
        }
    }

    #[test]
    fn carets_at_run_boundaries_stay_in_the_earlier_run() {
        let layout = Layout::new(
            vec![
                block(Some(1), vec![run("Title", false, false)]),
                block(None, vec![]),
                block(None, vec![run("ab", false, false), run("cd", true, false)]),
            ],
            12,
        );
        assert_eq!(layout.max_offset(), 11);
        assert_eq!(
            layout.locate(0),
            DomPoint::Run {
                block: 0,
                run: 0,
                offset: 0
            }
        );
        assert_eq!(
            layout.locate(5),
            DomPoint::Run {
                block: 0,
                run: 0,
                offset: 5
            }
        );
        assert_eq!(layout.locate(6), DomPoint::EmptyBlock { block: 1 });
        assert_eq!(
            layout.locate(7),
            DomPoint::Run {
                block: 2,
                run: 0,
                offset: 0
            }
        );
        assert_eq!(
            layout.locate(9),
            DomPoint::Run {
                block: 2,
                run: 0,
                offset: 2
            }
        );
        assert_eq!(
            layout.locate(10),
            DomPoint::Run {
                block: 2,
                run: 1,
                offset: 1
            }
        );
        assert_eq!(
            layout.locate(99),
            DomPoint::Run {
                block: 2,
                run: 1,
                offset: 2
            }
        );
        // DOM positions given as (element, child index).
        assert_eq!(layout.offset_of_block_child(2, 0), 7);
        assert_eq!(layout.offset_of_block_child(2, 1), 9);
        assert_eq!(layout.offset_of_block_child(2, 2), 11);
        assert_eq!(layout.offset_of_block_child(1, 0), 6);
        assert_eq!(layout.offset_of_root_child(1), 6);
        assert_eq!(layout.offset_of_root_child(3), 11);
        assert!(layout.is_terminated(2));
        assert!(!Layout::new(vec![block(None, vec![run("x", false, false)])], 1).is_terminated(0));
        // An empty document is one empty line.
        let empty = Layout::default();
        assert_eq!(
            (empty.max_offset(), empty.locate(0)),
            (0, DomPoint::EmptyBlock { block: 0 })
        );
    }

    #[test]
    fn input_types_map_to_edits() {
        use Direction::*;
        let cases = [
            ("insertText", Input::Edit(Edit::InsertText("x".into()))),
            ("insertFromPaste", Input::Edit(Edit::InsertText("x".into()))),
            ("insertParagraph", Input::Edit(Edit::InsertParagraph)),
            ("insertLineBreak", Input::Edit(Edit::InsertParagraph)),
            (
                "deleteContentBackward",
                Input::Edit(Edit::Delete {
                    direction: Backward,
                    unit: Unit::Char,
                }),
            ),
            (
                "deleteWordForward",
                Input::Edit(Edit::Delete {
                    direction: Forward,
                    unit: Unit::Word,
                }),
            ),
            (
                "deleteSoftLineBackward",
                Input::Edit(Edit::Delete {
                    direction: Backward,
                    unit: Unit::Line,
                }),
            ),
            (
                "deleteHardLineForward",
                Input::Edit(Edit::Delete {
                    direction: Forward,
                    unit: Unit::Line,
                }),
            ),
            ("deleteEntireSoftLine", Input::Edit(Edit::DeleteLine)),
            ("deleteByCut", Input::Edit(Edit::DeleteSelection)),
            ("historyUndo", Input::Undo),
            ("historyRedo", Input::Redo),
            ("formatBold", Input::Edit(Edit::ToggleBold)),
            ("formatItalic", Input::Edit(Edit::ToggleItalic)),
            ("insertCompositionText", Input::Composition),
            ("formatUnderline", Input::Ignored),
            ("insertOrderedList", Input::Ignored),
        ];
        for (input_type, want) in cases {
            assert_eq!(
                Input::classify(input_type, Some("x".into())),
                want,
                "{input_type}"
            );
        }
        assert_eq!(
            Input::classify("insertFromPaste", Some("a\r\nb\rc".into())),
            Input::Edit(Edit::InsertText("a\nb\nc".into()))
        );
        assert_eq!(target_use("insertReplacementText"), TargetUse::Always);
        assert_eq!(target_use("deleteWordBackward"), TargetUse::IfNotEmpty);
        assert_eq!(target_use("deleteByCut"), TargetUse::Never);
        assert_eq!(target_use("insertText"), TargetUse::Never);
    }

    #[test]
    fn shortcuts() {
        let key = |key: &str, code: &str, shift, alt| shortcut(key, code, true, shift, alt, false);
        assert_eq!(key("b", "KeyB", false, false), Some(Command::Bold));
        assert_eq!(key("I", "KeyI", false, false), Some(Command::Italic));
        assert_eq!(
            key("z", "KeyW", false, false),
            Some(Command::Undo),
            "AZERTY"
        );
        assert_eq!(key("Z", "KeyZ", true, false), Some(Command::Redo));
        assert_eq!(key("y", "KeyY", false, false), Some(Command::Redo));
        assert_eq!(
            key("¡", "Digit1", false, true),
            Some(Command::Heading(Some(1)))
        );
        assert_eq!(
            key("º", "Digit0", false, true),
            Some(Command::Heading(None))
        );
        assert_eq!(key("x", "KeyX", false, false), None);
        assert_eq!(key("b", "KeyB", true, false), None);
        assert_eq!(shortcut("b", "KeyB", false, false, false, false), None);
        assert_eq!(
            shortcut("}", "Digit0", true, false, true, true),
            None,
            "AltGr types"
        );
    }

    /// A document with a clock the test moves, edited through plans as the editor does.
    struct Bench {
        doc: Doc,
        text: TextRef,
        now: Arc<AtomicU64>,
        undo: UndoManager<()>,
        pending: Option<Inline>,
        selection: Selection,
    }

    impl Bench {
        fn new() -> Bench {
            let doc = schema::new_doc_with_client(1);
            let text = doc.get_or_insert_text(schema::TEXT);
            let now = Arc::new(AtomicU64::new(1_000));
            let clock = now.clone();
            let undo = undo_manager(&doc, &text, Arc::new(move || clock.load(Ordering::SeqCst)));
            Bench {
                doc,
                text,
                now,
                undo,
                pending: None,
                selection: Selection::caret(0),
            }
        }

        fn layout(&self) -> Layout {
            let txn = self.doc.transact();
            Layout::new(blocks(&txn, &self.text), self.text.len(&txn))
        }

        fn edit(&mut self, edit: Edit) -> Plan {
            let plan = plan(&self.layout(), self.selection, self.pending, &edit);
            // Every operation stays inside the text as the previous ones left it (so
            // `apply_ops` never has to clamp).
            let mut len = self.text.len(&self.doc.transact());
            for op in &plan.ops {
                match op {
                    Op::Insert { at, text, .. } => {
                        assert!(*at <= len, "{op:?} beyond {len} in {plan:?}");
                        len += utf16_len(text);
                    }
                    Op::Delete { at, len: n } => {
                        assert!(at + n <= len, "{op:?} beyond {len} in {plan:?}");
                        len -= n;
                    }
                    Op::Format { at, len: n, .. } => {
                        assert!(at + n <= len, "{op:?} beyond {len} in {plan:?}")
                    }
                }
            }
            {
                let mut txn = self.doc.transact_mut_with(LOCAL_ORIGIN);
                apply_ops(&mut txn, &self.text, &plan.ops);
            }
            self.selection = plan.selection;
            self.pending = plan.pending;
            self.check();
            plan
        }

        fn select(&mut self, anchor: u32, head: u32) {
            self.selection = Selection::new(anchor, head);
            self.pending = None;
        }

        fn typed(&mut self, s: &str) {
            for c in s.chars() {
                self.edit(Edit::InsertText(c.to_string()));
            }
        }

        fn advance(&self, ms: u64) {
            self.now.fetch_add(ms, Ordering::SeqCst);
        }

        fn string(&self) -> String {
            self.text.get_string(&self.doc.transact())
        }

        /// The document as `[h1]` / plain lines with `*bold*` and `_italic_` runs.
        fn render(&self) -> String {
            let txn = self.doc.transact();
            blocks(&txn, &self.text)
                .iter()
                .map(|b| {
                    let runs: String = b
                        .runs
                        .iter()
                        .map(|r| match (r.bold, r.italic) {
                            (true, true) => format!("*_{}_*", r.text),
                            (true, false) => format!("*{}*", r.text),
                            (false, true) => format!("_{}_", r.text),
                            _ => r.text.clone(),
                        })
                        .collect();
                    match b.heading {
                        Some(h) => format!("[h{h}]{runs}"),
                        None => runs,
                    }
                })
                .collect::<Vec<_>>()
                .join("|")
        }

        /// The selection is always a caret position of the new layout, and every heading
        /// is on a "\n".
        fn check(&self) {
            let layout = self.layout();
            assert!(
                self.selection.end() <= layout.max_offset(),
                "{:?} beyond {:?} in {:?}",
                self.selection,
                layout.max_offset(),
                self.string()
            );
            let txn = self.doc.transact();
            for chunk in self.text.diff(&txn, |_| ()) {
                if let (yrs::Out::Any(Any::String(s)), Some(attrs)) =
                    (&chunk.insert, &chunk.attributes)
                {
                    if attrs.contains_key(schema::HEADER) {
                        assert!(s.chars().all(|c| c == '\n'), "header on {s:?}");
                    }
                    if attrs.contains_key(schema::BOLD) || attrs.contains_key(schema::ITALIC) {
                        assert!(!s.contains('\n'), "inline formatting on a line end: {s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn typing_enter_and_headings_follow_google_docs() {
        let mut b = Bench::new();
        b.typed("Title");
        b.edit(Edit::SetHeading(Some(1)));
        // The last line had no "\n": one was added to carry the heading.
        assert_eq!(
            (b.string().as_str(), b.render().as_str()),
            ("Title\n", "[h1]Title")
        );
        // Enter at the end of a heading: the new line is a plain paragraph.
        b.edit(Edit::InsertParagraph);
        b.typed("Body");
        assert_eq!(b.render(), "[h1]Title|Body");
        assert_eq!(b.selection, Selection::caret(10));
        // Enter in the middle of a heading keeps both halves headings.
        b.select(2, 2);
        b.edit(Edit::InsertParagraph);
        assert_eq!(b.render(), "[h1]Ti|[h1]tle|Body");
        assert_eq!(b.selection, Selection::caret(3));
        // Heading over a selection spanning lines; a selection ending at a line's start
        // leaves that line alone.
        b.select(0, 7);
        b.edit(Edit::SetHeading(Some(2)));
        assert_eq!(b.render(), "[h2]Ti|[h2]tle|Body");
        b.select(3, 6);
        b.edit(Edit::SetHeading(None));
        assert_eq!(b.render(), "[h2]Ti|tle|Body");
        let layout = b.layout();
        assert_eq!(
            layout.active_formats(Selection::new(0, 4), None).heading,
            None
        );
        assert_eq!(
            layout.active_formats(Selection::caret(1), None).heading,
            Some(Some(2))
        );
        assert_eq!(
            layout.active_formats(Selection::caret(8), None).heading,
            Some(None)
        );
    }

    #[test]
    fn joining_lines_keeps_the_style_of_the_line_the_edit_started_in() {
        let mut b = Bench::new();
        b.typed("Head");
        b.edit(Edit::SetHeading(Some(1)));
        b.edit(Edit::InsertParagraph);
        b.typed("body");
        // Backspace at the start of "body": joins into the heading, which stays one.
        b.select(5, 5);
        b.edit(Edit::Delete {
            direction: Direction::Backward,
            unit: Unit::Char,
        });
        assert_eq!(b.render(), "[h1]Headbody");
        assert_eq!(b.selection, Selection::caret(4));
        // Backspace on an empty line above a heading removes the empty line only.
        b.select(0, 0);
        b.edit(Edit::InsertParagraph);
        assert_eq!(b.render(), "[h1]|[h1]Headbody");
        b.select(0, 0);
        b.edit(Edit::SetHeading(None));
        assert_eq!(b.render(), "|[h1]Headbody");
        b.select(1, 1);
        b.edit(Edit::Delete {
            direction: Direction::Backward,
            unit: Unit::Char,
        });
        assert_eq!(b.render(), "[h1]Headbody");
        // So does a forward delete on that empty line.
        b.edit(Edit::InsertParagraph);
        b.select(0, 0);
        b.edit(Edit::SetHeading(None));
        assert_eq!(b.render(), "|[h1]Headbody");
        b.edit(Edit::Delete {
            direction: Direction::Forward,
            unit: Unit::Char,
        });
        assert_eq!(b.render(), "[h1]Headbody");
        // A selection from a plain line into a heading: the joined line is plain.
        b.select(4, 4);
        b.edit(Edit::InsertParagraph);
        assert_eq!(b.render(), "[h1]Head|[h1]body");
        b.select(0, 0);
        b.edit(Edit::InsertParagraph);
        b.select(0, 0);
        b.edit(Edit::SetHeading(None));
        b.typed("x");
        assert_eq!(b.render(), "x|[h1]Head|[h1]body");
        b.select(1, 4);
        b.edit(Edit::InsertText("Y".into()));
        assert_eq!(b.render(), "xYad|[h1]body");
        // Deleting the final "\n" is impossible: forward delete at the end does nothing.
        let end = b.layout().max_offset();
        b.select(end, end);
        let plan = b.edit(Edit::Delete {
            direction: Direction::Forward,
            unit: Unit::Char,
        });
        assert!(plan.ops.is_empty());
        assert_eq!(b.string(), "xYad\nbody\n");
    }

    #[test]
    fn deletion_units() {
        let mut b = Bench::new();
        b.typed("one two, three😀");
        let end = b.layout().max_offset();
        b.select(end, end);
        b.edit(Edit::Delete {
            direction: Direction::Backward,
            unit: Unit::Char,
        });
        assert_eq!(b.string(), "one two, three", "a surrogate pair goes as one");
        b.edit(Edit::Delete {
            direction: Direction::Backward,
            unit: Unit::Word,
        });
        assert_eq!(b.string(), "one two, ");
        b.edit(Edit::Delete {
            direction: Direction::Backward,
            unit: Unit::Word,
        });
        assert_eq!(b.string(), "one two");
        b.select(0, 0);
        b.edit(Edit::Delete {
            direction: Direction::Forward,
            unit: Unit::Word,
        });
        assert_eq!(b.string(), " two");
        b.edit(Edit::Delete {
            direction: Direction::Forward,
            unit: Unit::Word,
        });
        assert_eq!(b.string(), "");
        b.typed("ab");
        b.edit(Edit::InsertParagraph);
        b.typed("cd");
        b.select(4, 4);
        b.edit(Edit::Delete {
            direction: Direction::Backward,
            unit: Unit::Line,
        });
        assert_eq!(b.string(), "ab\nd\n");
        b.edit(Edit::Delete {
            direction: Direction::Backward,
            unit: Unit::Line,
        });
        assert_eq!(b.string(), "abd\n", "at a line's start it joins the lines");
        b.select(1, 1);
        b.edit(Edit::Delete {
            direction: Direction::Forward,
            unit: Unit::Line,
        });
        assert_eq!(b.string(), "a\n");
        b.edit(Edit::DeleteLine);
        assert_eq!(b.string(), "\n");
        b.edit(Edit::DeleteSelection);
        b.edit(Edit::Delete {
            direction: Direction::Backward,
            unit: Unit::Char,
        });
        assert_eq!(
            (b.string().as_str(), b.selection),
            ("\n", Selection::caret(0))
        );
    }

    #[test]
    fn formatting_toggles_and_typing_inherits() {
        let mut b = Bench::new();
        b.typed("plain ");
        // A toggle at a caret applies to what is typed next.
        b.edit(Edit::ToggleBold);
        assert!(b.layout().active_formats(b.selection, b.pending).bold);
        b.typed("bold");
        assert_eq!(b.render(), "plain *bold*");
        // Typing after a bold character continues bold (no toggle needed).
        b.typed("er");
        assert_eq!(b.render(), "plain *bolder*");
        // Enter carries the formatting to the new line.
        b.edit(Edit::InsertParagraph);
        b.typed("x");
        assert_eq!(b.render(), "plain *bolder*|*x*");
        // Italic over a range spanning two lines; then toggling off where all are italic.
        b.select(3, 14);
        b.edit(Edit::ToggleItalic);
        assert_eq!(b.render(), "pla_in _*_bolder_*|*_x_*");
        assert!(b.layout().active_formats(b.selection, None).italic);
        assert!(!b.layout().active_formats(b.selection, None).bold);
        b.select(5, 8);
        b.edit(Edit::ToggleItalic);
        assert_eq!(b.render(), "pla_in_ *bo**_lder_*|*_x_*");
        // Bold on a range that is partly bold makes all of it bold.
        b.select(0, 8);
        b.edit(Edit::ToggleBold);
        assert_eq!(b.render(), "*pla**_in_** bo**_lder_*|*_x_*");
        b.edit(Edit::ToggleBold);
        assert_eq!(b.render(), "pla_in_ bo*_lder_*|*_x_*");
        // Replacing a selection: the text takes the first replaced character's format.
        b.select(3, 4);
        b.edit(Edit::InsertText("I".into()));
        assert_eq!(b.render(), "pla_In_ bo*_lder_*|*_x_*");
        // A heading's line end never lends its "header" to the next line's text.
        let mut h = Bench::new();
        h.typed("T");
        h.edit(Edit::SetHeading(Some(3)));
        h.edit(Edit::InsertParagraph);
        h.typed("x");
        assert_eq!(h.render(), "[h3]T|x");
    }

    #[test]
    fn paste_splits_lines_and_keeps_the_heading_of_the_split_line() {
        let mut b = Bench::new();
        b.typed("Heading");
        b.edit(Edit::SetHeading(Some(2)));
        b.select(4, 4);
        let input = Input::classify("insertFromPaste", Some("A\r\nB\n\nC".into()));
        let Input::Edit(edit) = input else {
            panic!("{input:?}")
        };
        b.edit(edit);
        assert_eq!(b.render(), "[h2]HeadA|[h2]B|[h2]|[h2]Cing");
        assert_eq!(b.selection, Selection::caret(10));
    }

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
    fn splices_replace_only_changed_paragraphs() {
        let l = |texts: &[&str]| {
            let blocks: Vec<Block> = texts
                .iter()
                .map(|t| {
                    block(
                        None,
                        if t.is_empty() {
                            vec![]
                        } else {
                            vec![run(t, false, false)]
                        },
                    )
                })
                .collect();
            let len = blocks.iter().map(|b| b.len_utf16() + 1).sum::<u32>() - 1;
            Layout::new(blocks, len)
        };
        let old = l(&["a", "b", "c", "d"]);
        assert_eq!(block_splice(&old, &old, None), None);
        assert_eq!(
            block_splice(&old, &l(&["a", "bx", "c", "d"]), None),
            Some(Splice {
                start: 1,
                old_end: 2,
                new_end: 2
            })
        );
        assert_eq!(
            block_splice(&old, &l(&["a", "b", "", "c", "d"]), None),
            Some(Splice {
                start: 2,
                old_end: 2,
                new_end: 3
            })
        );
        assert_eq!(
            block_splice(&old, &l(&["a", "d"]), None),
            Some(Splice {
                start: 1,
                old_end: 3,
                new_end: 1
            })
        );
        // Identical repeated paragraphs: prefix and suffix never overlap.
        let same = l(&["x", "x"]);
        assert_eq!(
            block_splice(&same, &l(&["x", "x", "x"]), None),
            Some(Splice {
                start: 2,
                old_end: 2,
                new_end: 3
            })
        );
        // Paragraphs the browser touched are replaced even when the model did not change.
        assert_eq!(
            block_splice(&old, &old, Some((1, 2))),
            Some(Splice {
                start: 1,
                old_end: 3,
                new_end: 3
            })
        );
        // Random edits: applying the splice to the old list gives the new one.
        let mut rng = Rng(seed());
        for _ in 0..500 {
            let pick = |rng: &mut Rng| -> Vec<&str> {
                (0..1 + rng.below(6))
                    .map(|_| ["p", "q", ""][rng.below(3) as usize])
                    .collect()
            };
            let (a, c) = (pick(&mut rng), pick(&mut rng));
            let (old, new) = (l(&a), l(&c));
            match block_splice(&old, &new, None) {
                None => assert_eq!(a, c),
                Some(s) => {
                    let mut rebuilt = a[..s.start].to_vec();
                    rebuilt.extend_from_slice(&c[s.start..s.new_end]);
                    rebuilt.extend_from_slice(&a[s.old_end..]);
                    assert_eq!(rebuilt, c);
                }
            }
        }
    }

    #[test]
    fn random_edits_keep_the_model_consistent() {
        let mut rng = Rng(seed());
        for _ in 0..60 {
            let mut b = Bench::new();
            for _ in 0..40 {
                let max = b.layout().max_offset();
                if rng.below(3) == 0 {
                    let (a, h) = (
                        rng.below(max as u64 + 1) as u32,
                        rng.below(max as u64 + 1) as u32,
                    );
                    b.select(a, h);
                }
                let edit = match rng.below(9) {
                    0 => Edit::InsertParagraph,
                    1 => Edit::Delete {
                        direction: Direction::Backward,
                        unit: Unit::Char,
                    },
                    2 => Edit::Delete {
                        direction: Direction::Forward,
                        unit: Unit::Word,
                    },
                    3 => Edit::ToggleBold,
                    4 => Edit::SetHeading([None, Some(1), Some(2)][rng.below(3) as usize]),
                    5 => Edit::InsertText("x\ny".into()),
                    6 => Edit::DeleteSelection,
                    _ => Edit::InsertText(["a", "é", "😀", " "][rng.below(4) as usize].into()),
                };
                let before = b.string();
                let plan = b.edit(edit.clone());
                // Text edits change exactly what they say; the selection is a caret
                // position of the new text.
                if let Edit::InsertText(s) = &edit {
                    let after = b.string();
                    assert!(
                        after.contains(s.as_str()) || s.is_empty(),
                        "{before:?} {edit:?} {after:?}"
                    );
                    assert_eq!(plan.selection.head, plan.selection.anchor);
                }
            }
        }
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
