//! The layout of the rendered document ([`Layout`]): offsets of the text and rendered
//! positions both ways, and which paragraphs a render must replace ([`block_splice`]).

use super::*;

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
    pub(super) fn chars(&self) -> Vec<(u32, char)> {
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
    pub(super) lines: Vec<Line>,
    pub(super) text_len: u32,
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
    pub(super) fn for_each_segment(
        &self,
        start: u32,
        end: u32,
        mut f: impl FnMut(&Line, u32, u32),
    ) {
        for line in &self.lines[self.line_at(start)..=self.line_at(end)] {
            let (from, to) = (start.max(line.start), end.min(line.end()));
            if from < to {
                f(line, from, to);
            }
        }
    }

    /// Whether every character in `[start, end)` satisfies `pred`; `None` if there is
    /// none (the range holds only line ends).
    pub(super) fn all_chars(
        &self,
        start: u32,
        end: u32,
        pred: impl Fn(Inline) -> bool,
    ) -> Option<bool> {
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::docs::editor_model::testing::*;

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
}
