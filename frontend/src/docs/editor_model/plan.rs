//! Plans: edits as operations on the text ([`plan`], [`Plan`], [`Op`]).

use super::*;

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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::docs::editor_model::testing::*;

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
}
