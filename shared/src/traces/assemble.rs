//! Assembling a trace from its spans, in whatever order and multiplicity they arrived.
//!
//! - A span id seen twice is kept once (exports are retried) and counted.
//! - A span whose parent never arrived is an *orphan*: it is shown as a root of its own
//!   subtree, flagged, rather than dropped.
//! - Clock skew, as Jaeger adjusts it: a child from another service (another machine's
//!   clock) that does not fit inside its parent is moved, with its whole subtree, to sit
//!   centred in the parent (or to start with it when it is longer). Spans of one service
//!   share a clock and are never moved relative to each other.
//! - The critical path: from the main root, the child that finished last, then within it
//!   the same, and before it the sibling that finished before it started, and so on.
//!
//! Iterative throughout (no recursion): a 100,000-span chain must not overflow a stack.

use std::collections::HashMap;

use super::{SpanStatus, TraceSpan, TraceTree};

/// Knobs of [`assemble_trace`].
#[derive(Debug, Clone, Copy)]
pub struct AssembleOptions {
    /// Apply the skew adjustment (on by default; the raw times are still in each span's
    /// `start_us - skew_us`).
    pub adjust_skew: bool,
}

impl Default for AssembleOptions {
    fn default() -> Self {
        AssembleOptions { adjust_skew: true }
    }
}

/// Builds the tree of `spans` (their `depth`, `skew_us`, `orphan` and `critical` are
/// recomputed) in depth-first order, children by start time.
pub fn assemble_trace(
    trace_id: &str,
    spans: Vec<TraceSpan>,
    options: AssembleOptions,
) -> TraceTree {
    // Duplicates: keep the first copy of each span id.
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(spans.len());
    let mut unique: Vec<TraceSpan> = Vec::with_capacity(spans.len());
    let mut duplicate_count = 0u32;
    for span in spans {
        if seen.contains_key(&span.span_id) {
            duplicate_count += 1;
            continue;
        }
        seen.insert(span.span_id.clone(), unique.len());
        unique.push(span);
    }
    let spans = unique;
    let n = spans.len();

    // Children lists and roots.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots: Vec<usize> = Vec::new();
    let mut orphan = vec![false; n];
    for (i, span) in spans.iter().enumerate() {
        match seen.get(&span.parent_span_id) {
            Some(&p) if !span.parent_span_id.is_empty() && p != i => children[p].push(i),
            _ => {
                orphan[i] = !span.parent_span_id.is_empty();
                roots.push(i);
            }
        }
    }
    // A cycle (a span whose ancestors include itself) would leave spans unreachable;
    // those are found after the walk and shown as orphans.
    let by_start = |a: &usize, b: &usize| {
        spans[*a]
            .start_us
            .cmp(&spans[*b].start_us)
            .then_with(|| spans[*a].span_id.cmp(&spans[*b].span_id))
    };
    for list in &mut children {
        list.sort_by(by_start);
    }
    // True roots first, then orphans; each group by start.
    roots.sort_by(|a, b| orphan[*a].cmp(&orphan[*b]).then_with(|| by_start(a, b)));

    // Depth-first walk: order, depth and skew shift.
    let mut shift = vec![0i64; n];
    let mut depth = vec![0u32; n];
    let mut visited = vec![false; n];
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let mut stack: Vec<usize> = Vec::new();
    let mut walk =
        |start: usize, order: &mut Vec<usize>, stack: &mut Vec<usize>, visited: &mut Vec<bool>| {
            stack.push(start);
            while let Some(i) = stack.pop() {
                if visited[i] {
                    continue;
                }
                visited[i] = true;
                order.push(i);
                let parent = &spans[i];
                let p_start = parent.start_us + shift[i];
                let p_end = p_start + parent.duration_us;
                for &c in children[i].iter().rev() {
                    let child = &spans[c];
                    let mut s = shift[i];
                    if options.adjust_skew && child.service != parent.service {
                        let c_start = child.start_us + s;
                        let c_end = c_start + child.duration_us;
                        if c_start < p_start || c_end > p_end {
                            let target = if child.duration_us <= parent.duration_us {
                                p_start + (parent.duration_us - child.duration_us) / 2
                            } else {
                                p_start
                            };
                            s += target - c_start;
                        }
                    }
                    shift[c] = s;
                    depth[c] = depth[i] + 1;
                    stack.push(c);
                }
            }
        };
    for &r in &roots {
        walk(r, &mut order, &mut stack, &mut visited);
    }
    for i in 0..n {
        if !visited[i] {
            orphan[i] = true;
            walk(i, &mut order, &mut stack, &mut visited);
        }
    }

    // Critical path from the main root.
    let mut critical = vec![false; n];
    if let Some(&main) = roots.first().or(order.first()) {
        let end_of = |i: usize| spans[i].start_us + shift[i] + spans[i].duration_us;
        let start_of = |i: usize| spans[i].start_us + shift[i];
        let mut work = vec![main];
        while let Some(i) = work.pop() {
            if critical[i] {
                continue;
            }
            critical[i] = true;
            let mut kids = children[i].clone();
            kids.sort_by_key(|&c| std::cmp::Reverse(end_of(c)));
            let mut cursor = end_of(i);
            for c in kids {
                if end_of(c) <= cursor || cursor == end_of(i) {
                    work.push(c);
                    cursor = start_of(c);
                }
            }
        }
    }

    let mut services: Vec<String> = spans.iter().map(|s| s.service.clone()).collect();
    services.sort();
    services.dedup();
    let start_us = order
        .iter()
        .map(|&i| spans[i].start_us + shift[i])
        .min()
        .unwrap_or(0);
    let end_us = order
        .iter()
        .map(|&i| spans[i].start_us + shift[i] + spans[i].duration_us)
        .max()
        .unwrap_or(0);
    let error_count = spans
        .iter()
        .filter(|s| s.status == SpanStatus::Error)
        .count() as u32;
    let orphan_count = orphan.iter().filter(|o| **o).count() as u32;
    let (root_service, root_name) = roots
        .first()
        .map(|&r| (spans[r].service.clone(), spans[r].name.clone()))
        .unwrap_or_default();

    let mut slots: Vec<Option<TraceSpan>> = spans.into_iter().map(Some).collect();
    let spans = order
        .into_iter()
        .map(|i| {
            let mut span = slots[i].take().expect("each span is visited once");
            span.start_us += shift[i];
            span.skew_us = shift[i];
            span.depth = depth[i];
            span.orphan = orphan[i];
            span.critical = critical[i];
            span
        })
        .collect();
    TraceTree {
        trace_id: trace_id.to_owned(),
        root_service,
        root_name,
        start_us,
        duration_us: end_us - start_us,
        services,
        error_count,
        orphan_count,
        duplicate_count,
        spans,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: &str, service: &str, start: i64, dur: i64) -> TraceSpan {
        TraceSpan {
            span_id: id.into(),
            parent_span_id: parent.into(),
            service: service.into(),
            name: format!("op-{id}"),
            kind: "internal".into(),
            start_us: start,
            duration_us: dur,
            skew_us: 0,
            depth: 0,
            status: SpanStatus::Unset,
            status_message: String::new(),
            orphan: false,
            critical: false,
            attributes: vec![],
            events: vec![],
            links: vec![],
        }
    }

    fn ids(tree: &TraceTree) -> Vec<&str> {
        tree.spans.iter().map(|s| s.span_id.as_str()).collect()
    }

    #[test]
    fn builds_depth_first_tree_from_any_order() {
        let spans = vec![
            span("c", "a", "api", 30, 10),
            span("b", "a", "api", 10, 10),
            span("a", "", "api", 0, 100),
            span("d", "b", "api", 12, 2),
        ];
        let tree = assemble_trace("t", spans, AssembleOptions::default());
        assert_eq!(ids(&tree), ["a", "b", "d", "c"]);
        assert_eq!(
            tree.spans.iter().map(|s| s.depth).collect::<Vec<_>>(),
            [0, 1, 2, 1]
        );
        assert_eq!(tree.root_name, "op-a");
        assert_eq!(tree.duration_us, 100);
    }

    #[test]
    fn orphans_and_duplicates_are_kept_once_and_flagged() {
        let spans = vec![
            span("a", "", "api", 0, 100),
            span("x", "missing", "db", 5, 1),
            span("a", "", "api", 0, 100),
        ];
        let tree = assemble_trace("t", spans, AssembleOptions::default());
        assert_eq!(ids(&tree), ["a", "x"]);
        assert_eq!(tree.duplicate_count, 1);
        assert_eq!(tree.orphan_count, 1);
        assert!(tree.spans[1].orphan && !tree.spans[0].orphan);
    }

    #[test]
    fn skewed_child_of_another_service_moves_with_its_subtree() {
        // The db's clock is 1,000 µs ahead: its span starts after the api span ended.
        let spans = vec![
            span("a", "", "api", 0, 100),
            span("b", "a", "db", 1_040, 20),
            span("c", "b", "db", 1_045, 5),
        ];
        let tree = assemble_trace("t", spans, AssembleOptions::default());
        let b = &tree.spans[1];
        assert_eq!(b.start_us, 40, "centred in its parent");
        assert_eq!(b.skew_us, -1_000);
        assert_eq!(tree.spans[2].start_us, 45, "the subtree moves with it");
        let raw = assemble_trace(
            "t",
            vec![
                span("a", "", "api", 0, 100),
                span("b", "a", "db", 1_040, 20),
            ],
            AssembleOptions { adjust_skew: false },
        );
        assert_eq!(raw.spans[1].start_us, 1_040);
    }

    #[test]
    fn same_service_children_are_never_moved() {
        let spans = vec![span("a", "", "api", 0, 10), span("b", "a", "api", 50, 10)];
        let tree = assemble_trace("t", spans, AssembleOptions::default());
        assert_eq!(tree.spans[1].start_us, 50);
    }

    #[test]
    fn critical_path_follows_the_last_finishing_children() {
        let spans = vec![
            span("a", "", "api", 0, 100),
            span("b", "a", "api", 0, 40),
            span("c", "a", "api", 10, 20),
            span("d", "a", "api", 50, 45),
        ];
        let tree = assemble_trace("t", spans, AssembleOptions::default());
        let critical: Vec<&str> = tree
            .spans
            .iter()
            .filter(|s| s.critical)
            .map(|s| s.span_id.as_str())
            .collect();
        assert_eq!(critical, ["a", "b", "d"]);
    }

    #[test]
    fn a_hundred_thousand_span_chain_does_not_overflow() {
        let mut spans = vec![span("0", "", "svc", 0, 1_000_000)];
        for i in 1..100_000 {
            spans.push(span(&i.to_string(), &(i - 1).to_string(), "svc", i, 1));
        }
        let tree = assemble_trace("t", spans, AssembleOptions::default());
        assert_eq!(tree.spans.len(), 100_000);
        assert_eq!(tree.spans[99_999].depth, 99_999);
    }

    #[test]
    fn a_parent_cycle_still_shows_every_span() {
        let spans = vec![span("a", "b", "x", 0, 1), span("b", "a", "x", 0, 1)];
        let tree = assemble_trace("t", spans, AssembleOptions::default());
        assert_eq!(tree.spans.len(), 2);
    }
}
