//! [`CartReplica`]: make ops from intents, accept views, acknowledge, refuse, batch,
//! merge what storage holds.

use std::collections::{BTreeMap, BTreeSet};

use meridian_shared::cart::{
    Cart, CartOp, CartOpType, CartView, HlcClock, MAX_LINES, MAX_OPS_PER_REQUEST, MAX_QUANTITY,
};
use serde::{Deserialize, Serialize};

use crate::net::realtime_state::RecentOps;

use super::*;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartIntent {
    /// One more unit ("Add to cart", or the stepper's +).
    Add(String),
    /// One unit less (the stepper's −): a `set` to one less, or a `remove` at one.
    Decrement(String),
    Remove(String),
    Clear,
}

/// Why an intent made no op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentError {
    /// The cart already holds [`MAX_LINES`] other products.
    CartFull,
    /// The line is at [`MAX_QUANTITY`].
    AtMaxQuantity,
    /// The product is not in the cart.
    NotInCart,
    /// The cart is empty.
    Empty,
}

impl IntentError {
    pub fn message(self) -> String {
        match self {
            IntentError::CartFull => {
                format!("Your cart is full: it holds at most {MAX_LINES} different products.")
            }
            IntentError::AtMaxQuantity => {
                format!("You can order at most {MAX_QUANTITY} of one product.")
            }
            IntentError::NotInCart => "That product is no longer in your cart.".to_owned(),
            IntentError::Empty => "Your cart is already empty.".to_owned(),
        }
    }
}

/// A pending op, with the cart it was made against (`None`: before any cart was known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOp {
    pub op: CartOp,
    #[serde(default)]
    pub cart_id: Option<String>,
}

impl PendingOp {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a stored value; `None` for anything that is not a valid op.
    pub fn from_json(text: &str) -> Option<PendingOp> {
        serde_json::from_str::<PendingOp>(text)
            .ok()
            .filter(|pending| pending.op.validate().is_ok())
    }
}

/// An op the server refused for good (a 4xx for it alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub op: CartOp,
    pub code: Option<String>,
    pub message: String,
}

/// What accepting a view or a storage read changed, for the glue to persist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// `confirmed` changed.
    pub confirmed_changed: bool,
    /// Pending ops dropped because the server has them (or they were settled here):
    /// delete them from storage.
    pub dropped: Vec<String>,
    /// Pending ops whose content changed (rebased onto the current cart): write them.
    pub rewritten: Vec<PendingOp>,
}

/// The replica of the session's cart in one tab.
#[derive(Debug, Clone)]
pub struct CartReplica {
    pub(super) confirmed: Option<CartView>,
    pending: Vec<PendingOp>,
    /// Ops acknowledged or refused lately.
    settled: RecentOps,
    clock: HlcClock,
}

impl CartReplica {
    /// An empty replica whose ops carry `node` in their HLC (one per tab).
    pub fn new(node: impl Into<String>) -> CartReplica {
        CartReplica {
            confirmed: None,
            pending: Vec::new(),
            settled: RecentOps::default(),
            clock: HlcClock::new(node),
        }
    }

    pub fn confirmed(&self) -> Option<&CartView> {
        self.confirmed.as_ref()
    }

    /// Pending ops, in creation order.
    pub fn pending(&self) -> &[PendingOp] {
        &self.pending
    }

    pub fn is_pending(&self, op_id: &str) -> bool {
        self.pending.iter().any(|p| p.op.op_id == op_id)
    }

    /// The confirmed ops with the pending ones on top.
    pub fn combined(&self) -> Cart {
        let confirmed = self.confirmed.iter().flat_map(|view| view.ops.iter());
        Cart::from_ops(confirmed.chain(self.pending.iter().map(|p| &p.op)).cloned())
    }

    /// Product id → quantity, as the user sees it.
    pub fn lines(&self) -> BTreeMap<String, u32> {
        self.combined().lines()
    }

    /// Makes the op for `intent`, adds it to the pending ops and returns it.
    pub fn local(
        &mut self,
        intent: &CartIntent,
        op_id: String,
        now_ms: u64,
    ) -> Result<CartOp, IntentError> {
        let combined = self.combined();
        let lines = combined.lines();
        let observed = |product: &str| combined.observed(Some(product));
        let (op_type, product_id, quantity, observed) = match intent {
            CartIntent::Add(product) => {
                let have = lines.get(product).copied().unwrap_or(0);
                if have >= MAX_QUANTITY {
                    return Err(IntentError::AtMaxQuantity);
                }
                if have == 0 && lines.len() >= MAX_LINES {
                    return Err(IntentError::CartFull);
                }
                (CartOpType::Add, Some(product), Some(1), Vec::new())
            }
            CartIntent::Decrement(product) => match lines.get(product).copied() {
                None => return Err(IntentError::NotInCart),
                Some(quantity) if quantity <= 1 => {
                    (CartOpType::Remove, Some(product), None, observed(product))
                }
                Some(quantity) => (
                    CartOpType::Set,
                    Some(product),
                    Some(quantity - 1),
                    observed(product),
                ),
            },
            CartIntent::Remove(product) => {
                if !lines.contains_key(product) {
                    return Err(IntentError::NotInCart);
                }
                (CartOpType::Remove, Some(product), None, observed(product))
            }
            CartIntent::Clear => {
                if lines.is_empty() {
                    return Err(IntentError::Empty);
                }
                (CartOpType::Clear, None, None, combined.observed(None))
            }
        };
        let op = CartOp {
            op_id,
            op_type,
            product_id: product_id.cloned(),
            quantity,
            hlc: self.clock.tick(now_ms),
            observed,
        };
        self.pending.push(PendingOp {
            op: op.clone(),
            cart_id: self.confirmed.as_ref().map(|view| view.cart_id.clone()),
        });
        Ok(op)
    }

    /// A view the server sent to this session (`GET /api/cart`, a `POST` answer): taken
    /// when it is of another cart (the session changed) or not older than `confirmed`.
    pub fn accept_server_view(&mut self, view: CartView) -> Accepted {
        let take = match &self.confirmed {
            None => true,
            Some(current) if current.cart_id != view.cart_id => true,
            Some(current) => view.version >= current.version,
        };
        if take {
            self.set_confirmed(view);
        }
        let mut accepted = self.normalize();
        accepted.confirmed_changed = take;
        accepted
    }

    /// A view from a realtime event: taken only when it is of the same cart and newer.
    pub fn accept_event_view(&mut self, view: CartView) -> Accepted {
        let take = self.confirmed.as_ref().is_some_and(|current| {
            current.cart_id == view.cart_id && view.version > current.version
        });
        if !take {
            return Accepted::default();
        }
        self.set_confirmed(view);
        let mut accepted = self.normalize();
        accepted.confirmed_changed = true;
        accepted
    }

    /// The server applied these ops (a `POST` succeeded).
    pub fn acknowledge(&mut self, op_ids: &[String]) {
        for op_id in op_ids {
            self.settled.insert(op_id);
        }
        self.pending
            .retain(|pending| !op_ids.contains(&pending.op.op_id));
    }

    /// The server refused this op for good: it leaves the pending ops.
    pub fn refuse(&mut self, op_id: &str) -> Option<CartOp> {
        self.settled.insert(op_id);
        let index = self.pending.iter().position(|p| p.op.op_id == op_id)?;
        Some(self.pending.remove(index).op)
    }

    /// The next request to send: the oldest pending ops, at most
    /// [`MAX_OPS_PER_REQUEST`], each rebased onto the current cart.
    pub fn next_batch(&self) -> Vec<CartOp> {
        self.pending
            .iter()
            .take(MAX_OPS_PER_REQUEST)
            .map(|pending| pending.op.clone())
            .collect()
    }

    /// What storage holds (written by any tab): the pending ops become the stored ones,
    /// plus this tab's ops that are not stored yet (`unsaved`), less the settled ones; a
    /// stored view of the same cart replaces `confirmed` when it is newer.
    pub fn merge_stored(&mut self, stored: StoredCart, unsaved: &BTreeSet<String>) -> Accepted {
        let mut confirmed_changed = false;
        if let Some(view) = stored.confirmed {
            let take = match &self.confirmed {
                None => true,
                Some(current) => current.cart_id == view.cart_id && view.version > current.version,
            };
            if take {
                self.set_confirmed(view);
                confirmed_changed = true;
            }
        }
        let mut next: Vec<PendingOp> = Vec::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mine = self
            .pending
            .iter()
            .filter(|p| unsaved.contains(&p.op.op_id))
            .cloned();
        let mut dropped = Vec::new();
        for pending in stored.pending.into_iter().chain(mine) {
            if !seen.insert(pending.op.op_id.clone()) {
                continue;
            }
            if self.settled.contains(&pending.op.op_id) {
                dropped.push(pending.op.op_id.clone());
                continue;
            }
            self.clock.observe(&pending.op.hlc);
            next.push(pending);
        }
        next.sort_by(|a, b| a.op.hlc.cmp(&b.op.hlc));
        self.pending = next;
        let mut accepted = self.normalize();
        accepted.confirmed_changed = confirmed_changed;
        accepted.dropped.extend(dropped);
        accepted
    }

    /// Replaces `confirmed`, keeping the merge notice of the same cart (events carry
    /// none), and moves the clock past every op of the view.
    fn set_confirmed(&mut self, mut view: CartView) {
        if let Some(current) = &self.confirmed {
            if current.cart_id == view.cart_id && view.merge.is_none() {
                view.merge = current.merge.clone();
            }
        }
        for op in &view.ops {
            self.clock.observe(&op.hlc);
        }
        self.confirmed = Some(view);
    }

    /// Drops the pending ops the server has or that were settled, and rebases the ones
    /// made against another cart.
    fn normalize(&mut self) -> Accepted {
        let mut accepted = Accepted::default();
        let in_confirmed: BTreeSet<&str> = self
            .confirmed
            .iter()
            .flat_map(|view| view.ops.iter().map(|op| op.op_id.as_str()))
            .collect();
        let settled = &self.settled;
        self.pending.retain(|pending| {
            let id = pending.op.op_id.as_str();
            let done = in_confirmed.contains(id) || settled.contains(id);
            if done {
                accepted.dropped.push(id.to_owned());
            }
            !done
        });
        let Some(view) = &self.confirmed else {
            return accepted;
        };
        let cart_id = view.cart_id.clone();
        // Rebasing walks the ops in order: each observes the current cart plus the
        // pending ops before it.
        let mut base = Cart::from_ops(view.ops.iter().cloned());
        for pending in &mut self.pending {
            match &pending.cart_id {
                Some(made_for) if *made_for == cart_id => {}
                Some(_) => {
                    let op = &mut pending.op;
                    op.observed = match op.op_type {
                        CartOpType::Add => Vec::new(),
                        CartOpType::Clear => base.observed(None),
                        CartOpType::Set | CartOpType::Remove => {
                            base.observed(op.product_id.as_deref())
                        }
                    };
                    pending.cart_id = Some(cart_id.clone());
                    accepted.rewritten.push(pending.clone());
                }
                None => {
                    pending.cart_id = Some(cart_id.clone());
                    accepted.rewritten.push(pending.clone());
                }
            }
            let _ = base.merge_op(pending.op.clone());
        }
        accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cart::model::test_support::*;
    use meridian_shared::cart::{CartOpInput, CartOwner, Hlc, MergeMode, MergeSummary};

    #[test]
    fn local_ops_show_on_top_of_the_confirmed_cart() {
        let mut replica = CartReplica::new("tab-a");
        replica.accept_server_view(view(
            "c1",
            3,
            vec![server_op("s1", CartOpType::Add, "p", Some(2))],
        ));
        add(&mut replica, "l1", "p");
        add(&mut replica, "l2", "q");
        assert_eq!(lines(&replica), vec![("p".into(), 3), ("q".into(), 1)]);
        assert_eq!(replica.pending().len(), 2);

        // The stepper's − is a set observing every live op of the line.
        let set = replica
            .local(&CartIntent::Decrement("p".into()), "l3".into(), 5_000)
            .unwrap();
        assert_eq!((set.op_type, set.quantity), (CartOpType::Set, Some(2)));
        assert_eq!(set.observed, vec!["l1".to_owned(), "s1".to_owned()]);
        assert_eq!(lines(&replica), vec![("p".into(), 2), ("q".into(), 1)]);

        // At one, − is a remove.
        let remove = replica
            .local(&CartIntent::Decrement("q".into()), "l4".into(), 5_000)
            .unwrap();
        assert_eq!(remove.op_type, CartOpType::Remove);
        assert_eq!(remove.observed, vec!["l2".to_owned()]);
        assert_eq!(lines(&replica), vec![("p".into(), 2)]);

        let clear = replica
            .local(&CartIntent::Clear, "l5".into(), 5_000)
            .unwrap();
        assert_eq!(clear.product_id, None);
        // It observes the live ops only: the set, not the add the set superseded.
        assert!(clear.observed.contains(&"l3".to_owned()));
        assert!(!clear.observed.contains(&"s1".to_owned()));
        assert!(replica.lines().is_empty());
        assert_eq!(
            replica.local(&CartIntent::Clear, "l6".into(), 5_000),
            Err(IntentError::Empty)
        );
        assert_eq!(
            replica.local(&CartIntent::Remove("p".into()), "l6".into(), 5_000),
            Err(IntentError::NotInCart)
        );
    }

    #[test]
    fn new_ops_are_later_than_everything_seen() {
        let mut replica = CartReplica::new("tab-a");
        let mut late = server_op("s1", CartOpType::Set, "p", Some(4));
        late.hlc = Hlc {
            wall_ms: 9_000_000,
            counter: 7,
            node: "other".into(),
        };
        replica.accept_server_view(view("c1", 1, vec![late.clone()]));
        // The local wall clock is far behind the other replica's.
        let set = replica
            .local(&CartIntent::Decrement("p".into()), "l1".into(), 1_000)
            .unwrap();
        assert!(set.hlc > late.hlc);
        assert_eq!(set.hlc.node, "tab-a");
        assert_eq!(lines(&replica), vec![("p".into(), 3)]);
    }

    #[test]
    fn limits_are_checked_before_an_op_is_made() {
        let mut replica = CartReplica::new("tab-a");
        let ops = (0..MAX_LINES)
            .map(|i| server_op(&format!("s{i}"), CartOpType::Add, &format!("p{i}"), Some(1)))
            .collect();
        replica.accept_server_view(view("c1", 1, ops));
        assert_eq!(
            replica.local(&CartIntent::Add("new".into()), "x".into(), 1),
            Err(IntentError::CartFull)
        );
        assert!(replica
            .local(&CartIntent::Add("p0".into()), "y".into(), 1)
            .is_ok());
        let mut full = CartReplica::new("tab-a");
        full.accept_server_view(view(
            "c1",
            1,
            vec![server_op("s", CartOpType::Add, "p", Some(MAX_QUANTITY))],
        ));
        assert_eq!(
            full.local(&CartIntent::Add("p".into()), "z".into(), 1),
            Err(IntentError::AtMaxQuantity)
        );
        assert!(full.pending().is_empty());
    }

    #[test]
    fn an_acknowledgement_moves_ops_from_pending_to_confirmed() {
        let mut replica = CartReplica::new("tab-a");
        replica.accept_server_view(view("c1", 1, vec![]));
        let a = add(&mut replica, "l1", "p");
        let b = add(&mut replica, "l2", "p");
        let batch = replica.next_batch();
        assert_eq!(batch, vec![a.clone(), b.clone()]);
        let inputs: Vec<CartOpInput> = batch.into_iter().map(CartOpInput::from).collect();
        assert_eq!(inputs[0].hlc.as_ref(), Some(&a.hlc));

        replica.acknowledge(&["l1".into(), "l2".into()]);
        let accepted = replica.accept_server_view(view("c1", 2, vec![a, b]));
        assert!(accepted.confirmed_changed);
        assert!(replica.pending().is_empty());
        assert_eq!(lines(&replica), vec![("p".into(), 2)]);
        assert!(!replica.display(None).differs_from_server);

        // A late answer (older version) does not move confirmed back.
        let stale = replica.accept_server_view(view("c1", 1, vec![]));
        assert!(!stale.confirmed_changed);
        assert_eq!(replica.confirmed().map(|v| v.version), Some(2));
    }

    #[test]
    fn events_replace_confirmed_only_when_newer_and_pending_stays_on_top() {
        let mut replica = CartReplica::new("tab-a");
        replica.accept_server_view(view("c1", 4, vec![]));
        add(&mut replica, "mine", "p");
        let theirs = server_op("theirs", CartOpType::Add, "q", Some(2));
        assert_eq!(
            replica.accept_event_view(view("c1", 4, vec![theirs.clone()])),
            Accepted::default(),
            "not newer"
        );
        assert_eq!(
            replica.accept_event_view(view("other", 9, vec![theirs.clone()])),
            Accepted::default(),
            "another cart's event"
        );
        let accepted = replica.accept_event_view(view("c1", 5, vec![theirs.clone()]));
        assert!(accepted.confirmed_changed);
        assert_eq!(lines(&replica), vec![("p".into(), 1), ("q".into(), 2)]);
        assert_eq!(replica.pending().len(), 1);

        // Another tab sent our op: its event confirms it, so it stops being pending.
        let mut mine = replica.pending()[0].op.clone();
        mine.observed.clear();
        let accepted = replica.accept_event_view(view("c1", 6, vec![theirs, mine]));
        assert_eq!(accepted.dropped, vec!["mine".to_owned()]);
        assert!(replica.pending().is_empty());
        assert_eq!(lines(&replica), vec![("p".into(), 1), ("q".into(), 2)]);
    }

    #[test]
    fn batches_hold_at_most_the_request_limit_in_order() {
        let mut replica = CartReplica::new("tab-a");
        for i in 0..250 {
            add(&mut replica, &format!("op{i:03}"), &format!("p{}", i % 7));
        }
        let first = replica.next_batch();
        assert_eq!(first.len(), MAX_OPS_PER_REQUEST);
        assert_eq!(first[0].op_id, "op000");
        assert_eq!(first[99].op_id, "op099");
        let ids: Vec<String> = first.iter().map(|op| op.op_id.clone()).collect();
        replica.acknowledge(&ids);
        let second = replica.next_batch();
        assert_eq!(second[0].op_id, "op100");
        let ids: Vec<String> = second.iter().map(|op| op.op_id.clone()).collect();
        replica.acknowledge(&ids);
        assert_eq!(replica.next_batch().len(), 50);
    }

    #[test]
    fn a_refused_op_leaves_and_is_never_revived_from_storage() {
        let mut replica = CartReplica::new("tab-a");
        let bad = add(&mut replica, "bad", "ghost");
        add(&mut replica, "good", "p");
        assert_eq!(replica.refuse("bad"), Some(bad.clone()));
        assert_eq!(replica.refuse("bad"), None);
        // A reread of storage that raced with the delete still holds it.
        let stored = StoredCart {
            pending: vec![
                PendingOp {
                    op: bad,
                    cart_id: None,
                },
                replica.pending()[0].clone(),
            ],
            ..StoredCart::default()
        };
        let accepted = replica.merge_stored(stored, &BTreeSet::new());
        assert_eq!(accepted.dropped, vec!["bad".to_owned()]);
        assert_eq!(lines(&replica), vec![("p".into(), 1)]);
    }

    #[test]
    fn storage_brings_other_tabs_ops_and_keeps_unsaved_ones() {
        let mut a = CartReplica::new("tab-a");
        let mut b = CartReplica::new("tab-b");
        a.accept_server_view(view("c1", 1, vec![]));
        b.accept_server_view(view("c1", 1, vec![]));
        add(&mut a, "from-a", "p");
        add(&mut b, "from-b", "q");
        // What tab A wrote; tab B's own op is not stored yet.
        let stored = StoredCart {
            confirmed: Some(view("c1", 1, vec![])),
            catalog: None,
            pending: a.pending().to_vec(),
        };
        let unsaved: BTreeSet<String> = ["from-b".to_owned()].into();
        b.merge_stored(stored.clone(), &unsaved);
        assert_eq!(lines(&b), vec![("p".into(), 1), ("q".into(), 1)]);
        // Once stored elsewhere and then acknowledged (deleted), it is gone here too.
        b.merge_stored(StoredCart::default(), &BTreeSet::new());
        assert!(b.pending().is_empty());
        // A newer stored view of the same cart replaces confirmed; an older one or one of
        // another cart does not.
        let newer = StoredCart {
            confirmed: Some(view(
                "c1",
                2,
                vec![server_op("s", CartOpType::Add, "z", Some(1))],
            )),
            ..StoredCart::default()
        };
        assert!(b.merge_stored(newer, &BTreeSet::new()).confirmed_changed);
        let other = StoredCart {
            confirmed: Some(view("c2", 50, vec![])),
            ..StoredCart::default()
        };
        assert!(!b.merge_stored(other, &BTreeSet::new()).confirmed_changed);
        assert_eq!(lines(&b), vec![("z".into(), 1)]);
    }

    #[test]
    fn ops_made_as_a_guest_are_rebased_onto_the_account_cart() {
        let mut replica = CartReplica::new("tab-a");
        replica.accept_server_view(view(
            "guest-1",
            2,
            vec![server_op("g1", CartOpType::Add, "p", Some(2))],
        ));
        // Offline, the guest removes the line.
        let remove = replica
            .local(&CartIntent::Remove("p".into()), "r".into(), 5_000)
            .unwrap();
        assert_eq!(remove.observed, vec!["g1".to_owned()]);
        // Signing in merged the guest cart (with its own op ids) into the account.
        let mut account = view(
            "user-1",
            7,
            vec![server_op("merge:guest-1:p", CartOpType::Set, "p", Some(2))],
        );
        account.owner = CartOwner::User;
        account.merge = Some(MergeSummary {
            guest_cart_id: "guest-1".into(),
            mode: MergeMode::Max,
            guest_lines: 1,
            guest_items: 2,
            added_items: 2,
            lines_not_merged: 0,
            at_ms: 1,
        });
        let accepted = replica.accept_server_view(account);
        assert_eq!(accepted.rewritten.len(), 1);
        let rebased = &replica.pending()[0];
        assert_eq!(rebased.cart_id.as_deref(), Some("user-1"));
        assert_eq!(rebased.op.observed, vec!["merge:guest-1:p".to_owned()]);
        assert!(
            replica.lines().is_empty(),
            "the remove applies to the account"
        );

        // An event (which carries no merge summary) keeps the one the sign-in gave.
        replica.accept_event_view(view("user-1", 8, vec![]));
        assert!(replica.confirmed().and_then(|v| v.merge.as_ref()).is_some());
    }
}
