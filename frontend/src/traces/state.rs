//! The waterfall's model, a pure reducer: which spans are visible (collapsed subtrees
//! hidden), which rows the viewport needs (virtualisation), the selected span, and each
//! bar's position. Unit-tested natively.
//!
//! Invariants: `visible` lists the indexes of spans no collapsed ancestor hides, in
//! depth-first order; the window never reaches past `visible`; rows are a fixed height,
//! so the scroll height is `visible.len() × ROW_HEIGHT` and only the window's rows exist
//! in the DOM.

use std::collections::HashSet;
use std::ops::Range;
use std::rc::Rc;

use meridian_shared::traces::TraceTree;
use yew::Reducible;

/// Pixels per row.
pub const ROW_HEIGHT: f64 = 24.0;
/// Rows rendered above and below the viewport.
pub const OVERSCAN: usize = 20;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Waterfall {
    pub tree: Option<Rc<TraceTree>>,
    /// For span `i`: one past the last span of its subtree.
    subtree_end: Vec<usize>,
    pub collapsed: HashSet<usize>,
    pub visible: Vec<usize>,
    pub selected: Option<usize>,
    pub scroll_top: f64,
    pub viewport: f64,
}

pub enum WaterfallAction {
    Load(Rc<TraceTree>),
    Toggle(usize),
    Select(usize),
    Scroll { top: f64, height: f64 },
}

/// For each span (depth-first with depths), one past the end of its subtree.
pub fn subtree_ends(depths: &[u32]) -> Vec<usize> {
    let n = depths.len();
    let mut ends = vec![n; n];
    let mut open: Vec<usize> = Vec::new();
    for (i, &depth) in depths.iter().enumerate() {
        while let Some(&top) = open.last() {
            if depths[top] >= depth {
                ends[top] = i;
                open.pop();
            } else {
                break;
            }
        }
        open.push(i);
    }
    ends
}

impl Waterfall {
    fn recompute_visible(&mut self) {
        self.visible.clear();
        let n = self.subtree_end.len();
        let mut i = 0;
        while i < n {
            self.visible.push(i);
            i = if self.collapsed.contains(&i) {
                self.subtree_end[i]
            } else {
                i + 1
            };
        }
    }

    /// Whether span `i` has children.
    pub fn has_children(&self, i: usize) -> bool {
        self.subtree_end.get(i).is_some_and(|end| *end > i + 1)
    }

    /// The rows (positions in `visible`) to render.
    pub fn window(&self) -> Range<usize> {
        let first = (self.scroll_top / ROW_HEIGHT).floor().max(0.0) as usize;
        let shown = (self.viewport / ROW_HEIGHT).ceil() as usize + 1;
        let start = first.saturating_sub(OVERSCAN).min(self.visible.len());
        let end = (first + shown + OVERSCAN).min(self.visible.len());
        start..end
    }

    /// A span's bar as (left %, width %) of the trace's duration.
    pub fn bar(&self, i: usize) -> (f64, f64) {
        let Some(tree) = &self.tree else {
            return (0.0, 0.0);
        };
        let span = &tree.spans[i];
        let total = tree.duration_us.max(1) as f64;
        let left = (span.start_us - tree.start_us) as f64 / total * 100.0;
        let width = (span.duration_us as f64 / total * 100.0).max(0.2);
        (
            left.clamp(0.0, 100.0),
            width.min(100.0 - left.clamp(0.0, 100.0)).max(0.2),
        )
    }
}

impl Reducible for Waterfall {
    type Action = WaterfallAction;

    fn reduce(self: Rc<Self>, action: WaterfallAction) -> Rc<Self> {
        let mut next = (*self).clone();
        match action {
            WaterfallAction::Load(tree) => {
                let depths: Vec<u32> = tree.spans.iter().map(|s| s.depth).collect();
                next = Waterfall {
                    subtree_end: subtree_ends(&depths),
                    tree: Some(tree),
                    viewport: self.viewport,
                    ..Waterfall::default()
                };
                next.recompute_visible();
            }
            WaterfallAction::Toggle(i) => {
                if !next.collapsed.remove(&i) && next.has_children(i) {
                    next.collapsed.insert(i);
                }
                next.recompute_visible();
            }
            WaterfallAction::Select(i) => next.selected = Some(i),
            WaterfallAction::Scroll { top, height } => {
                next.scroll_top = top.max(0.0);
                next.viewport = height.max(0.0);
            }
        }
        Rc::new(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::traces::{SpanStatus, TraceSpan};

    fn tree(depths: &[u32]) -> Rc<TraceTree> {
        let spans = depths
            .iter()
            .enumerate()
            .map(|(i, &depth)| TraceSpan {
                span_id: format!("{i:016x}"),
                parent_span_id: String::new(),
                service: "s".into(),
                name: format!("op{i}"),
                kind: "internal".into(),
                start_us: i as i64 * 10,
                duration_us: 10,
                skew_us: 0,
                depth,
                status: SpanStatus::Unset,
                status_message: String::new(),
                orphan: false,
                critical: false,
                attributes: vec![],
                events: vec![],
                links: vec![],
            })
            .collect::<Vec<_>>();
        let n = spans.len() as i64;
        Rc::new(TraceTree {
            trace_id: "t".into(),
            root_service: "s".into(),
            root_name: "op0".into(),
            start_us: 0,
            duration_us: n * 10,
            services: vec!["s".into()],
            error_count: 0,
            orphan_count: 0,
            duplicate_count: 0,
            spans,
        })
    }

    fn load(depths: &[u32]) -> Rc<Waterfall> {
        Rc::new(Waterfall::default()).reduce(WaterfallAction::Load(tree(depths)))
    }

    #[test]
    fn subtrees_end_where_depth_returns() {
        assert_eq!(subtree_ends(&[0, 1, 2, 1, 0]), vec![4, 3, 3, 4, 5]);
    }

    #[test]
    fn collapsing_hides_the_subtree_and_expanding_brings_it_back() {
        let w = load(&[0, 1, 2, 2, 1, 2]);
        assert_eq!(w.visible, [0, 1, 2, 3, 4, 5]);
        let w = w.reduce(WaterfallAction::Toggle(1));
        assert_eq!(w.visible, [0, 1, 4, 5]);
        let w = w.reduce(WaterfallAction::Toggle(0));
        assert_eq!(w.visible, [0]);
        let w = w.reduce(WaterfallAction::Toggle(0));
        assert_eq!(w.visible, [0, 1, 4, 5], "the inner collapse is remembered");
        let w = w.reduce(WaterfallAction::Toggle(5));
        assert!(!w.collapsed.contains(&5), "a leaf does not collapse");
    }

    #[test]
    fn the_window_covers_the_viewport_and_never_passes_the_end() {
        let depths: Vec<u32> = std::iter::once(0)
            .chain(std::iter::repeat_n(1, 99_999))
            .collect();
        let w = load(&depths);
        let w = w.reduce(WaterfallAction::Scroll {
            top: 50_000.0 * ROW_HEIGHT,
            height: 600.0,
        });
        let window = w.window();
        assert!(window.contains(&50_000) && window.contains(&50_025));
        assert!(
            window.len() < 100,
            "only the viewport's rows: {}",
            window.len()
        );
        let w = w.reduce(WaterfallAction::Scroll {
            top: 10_000_000.0,
            height: 600.0,
        });
        assert!(w.window().end <= 100_000);
        assert_eq!(w.bar(0), (0.0, 0.2f64.max(10.0 / 1_000_000.0 * 100.0)));
    }
}
