//! Helpers of the editor model's tests: documents built from runs, a seeded generator of
//! layouts, and a bench that edits a replica through plans as the editor does.

use super::*;

use meridian_shared::docs::rich::blocks;
use std::sync::atomic::{AtomicU64, Ordering};
use yrs::{GetString, Transact};

pub(super) fn run(text: &str, bold: bool, italic: bool) -> Run {
    Run {
        text: text.into(),
        bold,
        italic,
    }
}

pub(super) fn block(heading: Option<u8>, runs: Vec<Run>) -> Block {
    Block { heading, runs }
}

/// A small xorshift generator; the tests print their seed.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub(super) fn seed() -> u64 {
    let seed = std::env::var("EDITOR_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    println!("seed {seed} (replay with EDITOR_SEED={seed})");
    seed
}

pub(super) fn random_layout(rng: &mut Rng) -> Layout {
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

/// A document with a clock the test moves, edited through plans as the editor does.
pub(super) struct Bench {
    pub(super) doc: Doc,
    pub(super) text: TextRef,
    pub(super) now: Arc<AtomicU64>,
    pub(super) undo: UndoManager<()>,
    pub(super) pending: Option<Inline>,
    pub(super) selection: Selection,
}

impl Bench {
    pub(super) fn new() -> Bench {
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

    pub(super) fn layout(&self) -> Layout {
        let txn = self.doc.transact();
        Layout::new(blocks(&txn, &self.text), self.text.len(&txn))
    }

    pub(super) fn edit(&mut self, edit: Edit) -> Plan {
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

    pub(super) fn select(&mut self, anchor: u32, head: u32) {
        self.selection = Selection::new(anchor, head);
        self.pending = None;
    }

    pub(super) fn typed(&mut self, s: &str) {
        for c in s.chars() {
            self.edit(Edit::InsertText(c.to_string()));
        }
    }

    pub(super) fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    pub(super) fn string(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// The document as `[h1]` / plain lines with `*bold*` and `_italic_` runs.
    pub(super) fn render(&self) -> String {
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
    pub(super) fn check(&self) {
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
            if let (yrs::Out::Any(Any::String(s)), Some(attrs)) = (&chunk.insert, &chunk.attributes)
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
