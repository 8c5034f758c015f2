//! The cart's history panel: `GET /api/cart/history`, newest first, paged, refreshed
//! when the cart changes; each op and merge as a row ([`history_rows`], pure and tested
//! natively). Test contract: `cart-history` with `history-entry` children (`data-kind`).

use std::collections::BTreeMap;
use std::rc::Rc;

use meridian_shared::cart::{CartHistoryEntry, CartOpType, HistoryKind, Product};
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::api;
use super::page::plural;
use crate::browser::local_time_hh_mm;

/// How many history entries one page asks for.
pub const HISTORY_PAGE: u32 = 50;

/// One row of the history as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub key: String,
    /// `op` or `merge`.
    pub kind: &'static str,
    /// `add`, `set`, `remove`, `clear`, or `merge`.
    pub badge: &'static str,
    pub text: String,
    pub at_ms: i64,
    /// A merge, or an op a merge made.
    pub from_merge: bool,
    /// The op arrived after an op that had observed it, and changed nothing.
    pub superseded: bool,
}

/// The history rows of `entries` (newest first), naming products from `products`.
pub fn history_rows(entries: &[CartHistoryEntry], products: &[Product]) -> Vec<HistoryRow> {
    let names: BTreeMap<&str, &str> = products
        .iter()
        .map(|product| (product.id.as_str(), product.name.as_str()))
        .collect();
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let (badge, text, op_id) = match (&entry.kind, &entry.op, &entry.merge) {
                (HistoryKind::Merge, _, merge) => (
                    "merge",
                    match merge {
                        Some(summary) => format!(
                            "Guest cart merged: {} added",
                            plural(summary.added_items, "item", "items")
                        ),
                        None => "Guest cart merged".to_owned(),
                    },
                    String::new(),
                ),
                (HistoryKind::Op, Some(op), _) => {
                    let name = op
                        .product_id
                        .as_deref()
                        .map(|id| names.get(id).copied().unwrap_or(id).to_owned())
                        .unwrap_or_default();
                    let quantity = op.quantity.unwrap_or(0);
                    match op.op_type {
                        CartOpType::Add => (
                            "add",
                            format!("Added {quantity} × {name}"),
                            op.op_id.clone(),
                        ),
                        CartOpType::Set => {
                            ("set", format!("Set {name} to {quantity}"), op.op_id.clone())
                        }
                        CartOpType::Remove => {
                            ("remove", format!("Removed {name}"), op.op_id.clone())
                        }
                        CartOpType::Clear => {
                            ("clear", "Cleared the cart".to_owned(), op.op_id.clone())
                        }
                    }
                }
                (HistoryKind::Op, None, _) => ("op", "A change".to_owned(), String::new()),
            };
            HistoryRow {
                key: format!("{}-{index}-{op_id}", entry.version),
                kind: match entry.kind {
                    HistoryKind::Op => "op",
                    HistoryKind::Merge => "merge",
                },
                badge,
                text,
                at_ms: entry.at_ms,
                from_merge: entry.kind == HistoryKind::Merge || op_id.starts_with("merge:"),
                superseded: entry.superseded_on_arrival,
            }
        })
        .collect()
}

#[derive(Properties, PartialEq)]
pub struct HistoryProps {
    pub cart_id: Option<String>,
    pub version: u64,
    pub products: Option<Rc<Vec<Product>>>,
}

/// What the history panel holds.
#[derive(Debug, Clone, Default, PartialEq)]
struct HistoryState {
    entries: Vec<CartHistoryEntry>,
    next_before: Option<u64>,
    loading: bool,
    error: Option<String>,
}

#[component]
pub fn HistoryPanel(props: &HistoryProps) -> Html {
    let state = use_state(HistoryState::default);
    // Answers to older requests are dropped: only the latest request may set the list.
    let request = use_mut_ref(|| 0u64);

    {
        let state = state.clone();
        let request = request.clone();
        use_effect_with(
            (props.cart_id.clone(), props.version),
            move |(cart_id, _)| {
                if cart_id.is_some() {
                    *request.borrow_mut() += 1;
                    let mine = *request.borrow();
                    state.set(HistoryState {
                        loading: true,
                        ..(*state).clone()
                    });
                    spawn_local(async move {
                        let result = api::cart_history(None, HISTORY_PAGE).await;
                        if *request.borrow() != mine {
                            return;
                        }
                        state.set(match result {
                            Ok(history) => HistoryState {
                                entries: history.entries,
                                next_before: history.next_before,
                                loading: false,
                                error: None,
                            },
                            Err(error) => HistoryState {
                                loading: false,
                                error: Some(error.message()),
                                ..(*state).clone()
                            },
                        });
                    });
                }
            },
        );
    }

    let on_older = {
        let state = state.clone();
        let request = request.clone();
        Callback::from(move |_: MouseEvent| {
            let Some(before) = state.next_before else {
                return;
            };
            *request.borrow_mut() += 1;
            let mine = *request.borrow();
            let current = (*state).clone();
            state.set(HistoryState {
                loading: true,
                ..current.clone()
            });
            let state = state.clone();
            let request = request.clone();
            spawn_local(async move {
                let result = api::cart_history(Some(before), HISTORY_PAGE).await;
                if *request.borrow() != mine {
                    return;
                }
                state.set(match result {
                    Ok(history) => {
                        let mut entries = current.entries;
                        entries.extend(history.entries);
                        HistoryState {
                            entries,
                            next_before: history.next_before,
                            loading: false,
                            error: None,
                        }
                    }
                    Err(error) => HistoryState {
                        loading: false,
                        error: Some(error.message()),
                        ..current
                    },
                });
            });
        })
    };

    let products = props.products.clone().unwrap_or_default();
    let rows = history_rows(&state.entries, &products);

    html! {
        <section class="card panel cart-history" aria-labelledby="history-title">
            <header class="panel-header">
                <h2 id="history-title">{ "History" }</h2>
                if state.loading {
                    <span class="panel-meta muted">{ "Refreshing…" }</span>
                }
            </header>
            if let Some(error) = &state.error {
                <p class="callout callout-warning small" role="alert">
                    { format!("The history could not be refreshed: {error}") }
                </p>
            }
            if rows.is_empty() && !state.loading {
                <p class="empty muted">{ "Nothing has happened to this cart yet." }</p>
            }
            <ol class="history-list" data-testid="cart-history">
                { for rows.iter().map(|row| html! {
                    <li
                        key={row.key.clone()}
                        class={classes!(
                            "history-entry",
                            row.from_merge.then_some("history-merge"),
                            row.superseded.then_some("history-superseded")
                        )}
                        data-testid="history-entry"
                        data-kind={row.kind}
                    >
                        <span class={classes!("history-badge", format!("history-badge-{}", row.badge))}>{ row.badge }</span>
                        <span class="history-text">
                            { row.text.clone() }
                            if row.superseded {
                                <span class="muted small">{ " (arrived after it was overridden)" }</span>
                            }
                        </span>
                        <time class="muted small">{ local_time_hh_mm(row.at_ms) }</time>
                    </li>
                }) }
            </ol>
            if state.next_before.is_some() {
                <button type="button" class="button button-ghost" onclick={on_older} disabled={state.loading}>
                    { "Show older" }
                </button>
            }
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cart::fixtures::{product, summary};
    use meridian_shared::cart::{CartOp, Hlc, MergeSummary};

    #[test]
    fn history_rows_name_products_and_mark_merges() {
        let op =
            |id: &str, op_type: CartOpType, product: Option<&str>, quantity: Option<u32>| CartOp {
                op_id: id.into(),
                op_type,
                product_id: product.map(Into::into),
                quantity,
                hlc: Hlc {
                    wall_ms: 1,
                    counter: 0,
                    node: "n".into(),
                },
                observed: Vec::new(),
            };
        let entry =
            |version: u64, kind: HistoryKind, op: Option<CartOp>, merge: Option<MergeSummary>| {
                CartHistoryEntry {
                    version,
                    at_ms: 1_000,
                    kind,
                    op,
                    merge,
                    superseded_on_arrival: false,
                }
            };
        let mut late = entry(
            5,
            HistoryKind::Op,
            Some(op("o5", CartOpType::Set, Some("a"), Some(1))),
            None,
        );
        late.superseded_on_arrival = true;
        let entries = vec![
            late,
            entry(
                4,
                HistoryKind::Op,
                Some(op("o4", CartOpType::Clear, None, None)),
                None,
            ),
            entry(
                3,
                HistoryKind::Op,
                Some(op("merge:g:a", CartOpType::Set, Some("a"), Some(2))),
                None,
            ),
            entry(3, HistoryKind::Merge, None, Some(summary(2, 0))),
            entry(
                2,
                HistoryKind::Op,
                Some(op("o2", CartOpType::Remove, Some("zz"), None)),
                None,
            ),
            entry(
                1,
                HistoryKind::Op,
                Some(op("o1", CartOpType::Add, Some("a"), Some(2))),
                None,
            ),
        ];
        let rows = history_rows(&entries, &[product("a", "Coffee", "Huila beans")]);
        let texts: Vec<&str> = rows.iter().map(|row| row.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "Set Huila beans to 1",
                "Cleared the cart",
                "Set Huila beans to 2",
                "Guest cart merged: 2 items added",
                "Removed zz",
                "Added 2 × Huila beans",
            ]
        );
        let merged: Vec<bool> = rows.iter().map(|row| row.from_merge).collect();
        assert_eq!(merged, vec![false, false, true, true, false, false]);
        assert!(rows[0].superseded);
        assert_eq!((rows[3].kind, rows[3].badge), ("merge", "merge"));
        assert_eq!((rows[5].kind, rows[5].badge), ("op", "add"));
        let keys: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys.len(), rows.len(), "keys are unique");
    }
}
