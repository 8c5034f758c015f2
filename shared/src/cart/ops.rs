//! The op set: [`CartOp`]s, their validation and limits ([`CartError`]), the [`Cart`] that
//! holds them and computes its lines (see the module documentation of [`crate::cart`]),
//! and compaction at a replica that keeps only live ops plus scoped tombstones
//! ([`Cart::receive_compacting`], [`tombstones_of`]). The convergence property test
//! checks both the full and the compacting replica.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{Hlc, MAX_LINES, MAX_QUANTITY};
use serde::{Deserialize, Serialize};

/// What an op does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CartOpType {
    Add,
    Set,
    Remove,
    Clear,
}

/// One change to a cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CartOp {
    pub op_id: String,
    #[serde(rename = "type")]
    pub op_type: CartOpType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
    pub hlc: Hlc,
    /// For `set`, `remove` and `clear`: the op ids their author had seen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observed: Vec<String>,
}

/// Why an op was refused. The cart is never left half-applied: a refused op changes
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartError {
    InvalidOpId,
    MissingProduct,
    QuantityOutOfRange(u32),
    TooManyLines,
}

impl CartError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CartError::InvalidOpId => "invalid_op_id",
            CartError::MissingProduct => "missing_product",
            CartError::QuantityOutOfRange(_) => "quantity_out_of_range",
            CartError::TooManyLines => "too_many_lines",
        }
    }
}

impl fmt::Display for CartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CartError::InvalidOpId => {
                f.write_str("an op id is 1 to 128 printable ASCII characters")
            }
            CartError::MissingProduct => f.write_str("this op needs a product_id"),
            CartError::QuantityOutOfRange(q) => {
                write!(f, "quantity {q} is outside 1..={MAX_QUANTITY}")
            }
            CartError::TooManyLines => write!(f, "a cart holds at most {MAX_LINES} lines"),
        }
    }
}

impl std::error::Error for CartError {}

impl CartOp {
    /// Checks what an op says on its own.
    pub fn validate(&self) -> Result<(), CartError> {
        if !crate::realtime::valid_op_id(&self.op_id) {
            return Err(CartError::InvalidOpId);
        }
        match self.op_type {
            CartOpType::Clear => Ok(()),
            _ if self.product_id.as_deref().is_none_or(str::is_empty) => {
                Err(CartError::MissingProduct)
            }
            CartOpType::Add | CartOpType::Set => match self.quantity {
                Some(q) if (1..=MAX_QUANTITY).contains(&q) => Ok(()),
                q => Err(CartError::QuantityOutOfRange(q.unwrap_or(0))),
            },
            CartOpType::Remove => Ok(()),
        }
    }
}

/// Whether [`Cart::apply`] stored the op or had it already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    New,
    Duplicate,
}

/// A cart: the ops it has seen, by op id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cart {
    ops: BTreeMap<String, CartOp>,
}

impl Cart {
    pub fn new() -> Cart {
        Cart::default()
    }

    /// Adds an op: refused if invalid or if it would open a line past [`MAX_LINES`];
    /// a known op id is a duplicate and changes nothing.
    pub fn apply(&mut self, op: CartOp) -> Result<Applied, CartError> {
        if self.ops.contains_key(&op.op_id) {
            return Ok(Applied::Duplicate);
        }
        op.validate()?;
        self.check_room(&op)?;
        self.ops.insert(op.op_id.clone(), op);
        Ok(Applied::New)
    }

    /// Adds an op from another replica that has already accepted it: only validity and
    /// idempotence are checked, so that every replica converges on the same set.
    pub fn merge_op(&mut self, op: CartOp) -> Result<Applied, CartError> {
        if self.ops.contains_key(&op.op_id) {
            return Ok(Applied::Duplicate);
        }
        op.validate()?;
        self.ops.insert(op.op_id.clone(), op);
        Ok(Applied::New)
    }

    fn check_room(&self, op: &CartOp) -> Result<(), CartError> {
        let opens_line = matches!(op.op_type, CartOpType::Add | CartOpType::Set);
        let Some(product) = op.product_id.as_deref().filter(|_| opens_line) else {
            return Ok(());
        };
        let lines = self.lines();
        if !lines.contains_key(product) && lines.len() >= MAX_LINES {
            return Err(CartError::TooManyLines);
        }
        Ok(())
    }

    pub fn contains(&self, op_id: &str) -> bool {
        self.ops.contains_key(op_id)
    }

    pub fn ops(&self) -> impl Iterator<Item = &CartOp> {
        self.ops.values()
    }

    /// The live (not superseded) op ids concerning `product` (every product for `None`):
    /// what a new `set`, `remove` (or `clear`) made here observes. Superseded ops are
    /// already without effect, so leaving them out keeps `observed` as short as the
    /// line's live ops.
    pub fn observed(&self, product: Option<&str>) -> Vec<String> {
        let superseded = self.superseded();
        self.ops
            .values()
            .filter(|op| product.is_none() || op.product_id.as_deref() == product)
            .filter(|op| !superseded.contains(op.op_id.as_str()))
            .map(|op| op.op_id.clone())
            .collect()
    }

    /// The op ids some `set`, `remove` or `clear` here observed (of its own product; a
    /// `clear`: of any). They have no effect on the lines, now or later.
    pub fn superseded(&self) -> BTreeSet<&str> {
        self.ops
            .values()
            .filter(|op| op.op_type != CartOpType::Add)
            .flat_map(|op| {
                op.observed.iter().filter(move |seen| {
                    op.op_type == CartOpType::Clear
                        || self
                            .ops
                            .get(*seen)
                            .is_none_or(|s| s.product_id == op.product_id)
                })
            })
            .map(String::as_str)
            .collect()
    }

    /// Drops the superseded ops and returns their ids. The lines do not change (a
    /// superseded op has no effect, and what superseded it either stays or was itself
    /// superseded); a replica that compacts must remember the returned ids (and every id
    /// an op observed) to recognise them if they arrive again.
    pub fn compact(&mut self) -> Vec<String> {
        let dead: Vec<String> = self
            .superseded()
            .into_iter()
            .filter(|id| self.ops.contains_key(*id))
            .map(str::to_owned)
            .collect();
        for id in &dead {
            self.ops.remove(id);
        }
        dead
    }

    /// The number of ops held.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Product id → quantity, for every line with a quantity, in product id order.
    pub fn lines(&self) -> BTreeMap<String, u32> {
        let superseded = self.superseded();
        let mut base: BTreeMap<&str, &CartOp> = BTreeMap::new();
        let mut added: BTreeMap<&str, u64> = BTreeMap::new();
        for op in self.ops.values() {
            if superseded.contains(op.op_id.as_str()) {
                continue;
            }
            let Some(product) = op.product_id.as_deref() else {
                continue;
            };
            match op.op_type {
                CartOpType::Add => {
                    *added.entry(product).or_default() += u64::from(op.quantity.unwrap_or(0));
                }
                CartOpType::Set => {
                    let later = base.get(product).is_none_or(|b| op.hlc > b.hlc);
                    if later {
                        base.insert(product, op);
                    }
                }
                CartOpType::Remove | CartOpType::Clear => {}
            }
        }
        let products: BTreeSet<&str> = base.keys().chain(added.keys()).copied().collect();
        products
            .into_iter()
            .filter_map(|product| {
                let set = base
                    .get(product)
                    .map_or(0, |op| u64::from(op.quantity.unwrap_or(0)));
                let total = set + added.get(product).copied().unwrap_or(0);
                (total > 0).then(|| {
                    (
                        product.to_owned(),
                        total.min(u64::from(MAX_QUANTITY)) as u32,
                    )
                })
            })
            .collect()
    }
}

/// What a compacting replica did with a received op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// The op is live; these ops (ids) were superseded by it and dropped.
    Live { dropped: Vec<String> },
    /// An op observed this one before it arrived: it is kept in the history only; the
    /// live ops it had observed were dropped all the same.
    Dead { dropped: Vec<String> },
}

/// The tombstones an op leaves: each op id it observed, with the product whose ops it
/// supersedes (`None` for a `clear`: any product).
pub fn tombstones_of(op: &CartOp) -> Vec<(String, Option<String>)> {
    if op.op_type == CartOpType::Add {
        return Vec::new();
    }
    let scope = match op.op_type {
        CartOpType::Clear => None,
        _ => op.product_id.clone(),
    };
    op.observed
        .iter()
        .map(|id| (id.clone(), scope.clone()))
        .collect()
}

impl Cart {
    /// A cart from ops already accepted (a stored snapshot).
    pub fn from_ops(ops: impl IntoIterator<Item = CartOp>) -> Cart {
        Cart {
            ops: ops.into_iter().map(|op| (op.op_id.clone(), op)).collect(),
        }
    }

    /// Receives a new op (not a duplicate: the caller checked its history) at a replica
    /// that keeps only live ops. `scopes` are the tombstones recorded for this op id
    /// (see [`tombstones_of`]); if one covers the op's product it arrives dead. A live op
    /// is checked like [`Cart::apply`] and then compacts what it supersedes away, so the
    /// lines equal those of the full op set (property-tested).
    pub fn receive_compacting(
        &mut self,
        op: CartOp,
        scopes: &[Option<String>],
    ) -> Result<Received, CartError> {
        op.validate()?;
        let covered = scopes
            .iter()
            .any(|scope| scope.is_none() || *scope == op.product_id);
        if covered {
            // Dead, but what it observed is superseded all the same.
            let dropped: Vec<String> = tombstones_of(&op)
                .into_iter()
                .filter(|(id, scope)| {
                    self.ops
                        .get(id)
                        .is_some_and(|seen| scope.is_none() || *scope == seen.product_id)
                })
                .map(|(id, _)| id)
                .collect();
            for id in &dropped {
                self.ops.remove(id);
            }
            return Ok(Received::Dead { dropped });
        }
        self.check_room(&op)?;
        self.ops.insert(op.op_id.clone(), op);
        Ok(Received::Live {
            dropped: self.compact(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cart::test_support::*;
    use crate::cart::HlcClock;
    use proptest::prelude::*;

    #[test]
    fn concurrent_adds_both_count_and_replays_apply_once() {
        let mut cart = Cart::new();
        let a = op("a", CartOpType::Add, Some("p"), Some(2), at(1, "tab1"));
        let b = op("b", CartOpType::Add, Some("p"), Some(3), at(1, "tab2"));
        assert_eq!(cart.apply(a.clone()), Ok(Applied::New));
        assert_eq!(cart.apply(b), Ok(Applied::New));
        assert_eq!(cart.apply(a), Ok(Applied::Duplicate));
        assert_eq!(lines(&cart), vec![("p".into(), 5)]);
    }

    #[test]
    fn set_is_last_writer_wins_and_supersedes_what_it_saw() {
        let mut cart = Cart::new();
        cart.apply(op("a", CartOpType::Add, Some("p"), Some(2), at(1, "x")))
            .unwrap();
        let mut s1 = op("s1", CartOpType::Set, Some("p"), Some(7), at(5, "x"));
        s1.observed = vec!["a".into()];
        let mut s2 = op("s2", CartOpType::Set, Some("p"), Some(4), at(6, "y"));
        s2.observed = vec!["a".into()];
        cart.apply(s2).unwrap();
        cart.apply(s1).unwrap();
        assert_eq!(lines(&cart), vec![("p".into(), 4)]);
    }

    #[test]
    fn remove_keeps_an_add_it_had_not_seen() {
        let mut cart = Cart::new();
        cart.apply(op("a", CartOpType::Add, Some("p"), Some(1), at(1, "x")))
            .unwrap();
        let mut rm = op("r", CartOpType::Remove, Some("p"), None, at(3, "x"));
        rm.observed = cart.observed(Some("p"));
        let unseen = op("b", CartOpType::Add, Some("p"), Some(2), at(2, "y"));
        cart.apply(unseen).unwrap();
        cart.apply(rm).unwrap();
        assert_eq!(lines(&cart), vec![("p".into(), 2)]);
    }

    #[test]
    fn clear_empties_what_it_saw() {
        let mut cart = Cart::new();
        cart.apply(op("a", CartOpType::Add, Some("p"), Some(1), at(1, "x")))
            .unwrap();
        cart.apply(op("b", CartOpType::Add, Some("q"), Some(1), at(1, "x")))
            .unwrap();
        let mut clear = op("c", CartOpType::Clear, None, None, at(2, "x"));
        clear.observed = cart.observed(None);
        cart.apply(clear).unwrap();
        assert!(cart.lines().is_empty());
    }

    #[test]
    fn limits_are_enforced_and_refusals_change_nothing() {
        let mut cart = Cart::new();
        let bad = op("a", CartOpType::Add, Some("p"), Some(100), at(1, "x"));
        assert_eq!(cart.apply(bad), Err(CartError::QuantityOutOfRange(100)));
        let bad = op("a", CartOpType::Set, None, Some(1), at(1, "x"));
        assert_eq!(cart.apply(bad).unwrap_err().code(), "missing_product");
        let bad = op("a b", CartOpType::Clear, None, None, at(1, "x"));
        assert_eq!(cart.apply(bad), Err(CartError::InvalidOpId));
        for i in 0..MAX_LINES {
            let id = format!("op{i}");
            let product = format!("p{i}");
            cart.apply(op(
                &id,
                CartOpType::Add,
                Some(&product),
                Some(1),
                at(1, "x"),
            ))
            .unwrap();
        }
        let extra = op("x", CartOpType::Add, Some("new"), Some(1), at(2, "x"));
        assert_eq!(cart.apply(extra), Err(CartError::TooManyLines));
        let more = op("y", CartOpType::Add, Some("p0"), Some(98), at(2, "x"));
        cart.apply(more).unwrap();
        assert_eq!(cart.lines()["p0"], MAX_QUANTITY);
        assert_eq!(cart.lines().len(), MAX_LINES);
    }

    /// One step of a random history: which replica acts, and how.
    #[derive(Debug, Clone)]
    enum Step {
        Local {
            replica: usize,
            kind: u8,
            product: u8,
            quantity: u32,
        },
        Deliver {
            from: usize,
            to: usize,
            count: usize,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0..3usize, 0..4u8, 0..4u8, 1..=MAX_QUANTITY).prop_map(|(replica, kind, product, quantity)| Step::Local { replica, kind, product, quantity }),
            2 => (0..3usize, 0..3usize, 1..5usize).prop_map(|(from, to, count)| Step::Deliver { from, to, count }),
        ]
    }

    /// A proptest config with a printed seed: `CART_PROPTEST_SEED=<seed>` replays a run.
    fn seeded(cases: u32) -> ProptestConfig {
        let seed = std::env::var("CART_PROPTEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("cart convergence property: seed={seed} (CART_PROPTEST_SEED={seed} replays it)");
        ProptestConfig {
            cases,
            rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(seeded(300))]

        /// Replicas make ops from partial views; the ops then reach fresh replicas in
        /// random orders, duplicated: all that saw the same set agree.
        #[test]
        fn replicas_that_saw_the_same_ops_converge(
            steps in proptest::collection::vec(step(), 1..60),
            orders in proptest::collection::vec(any::<u64>(), 3),
        ) {
            let mut carts = vec![Cart::new(), Cart::new(), Cart::new()];
            let mut clocks: Vec<HlcClock> = (0..3).map(|i| HlcClock::new(format!("r{i}"))).collect();
            let mut all: Vec<CartOp> = Vec::new();
            for (t, step) in steps.into_iter().enumerate() {
                match step {
                    Step::Local { replica, kind, product, quantity } => {
                        let product = format!("p{product}");
                        let hlc = clocks[replica].tick(t as u64 / 3);
                        let cart = &mut carts[replica];
                        let (op_type, quantity, observed) = match kind {
                            0 => (CartOpType::Add, Some(quantity), Vec::new()),
                            1 => (CartOpType::Set, Some(quantity), cart.observed(Some(&product))),
                            2 => (CartOpType::Remove, None, cart.observed(Some(&product))),
                            _ => (CartOpType::Clear, None, cart.observed(None)),
                        };
                        let product_id = (op_type != CartOpType::Clear).then_some(product);
                        let op = CartOp { op_id: format!("r{replica}-{t}"), op_type, product_id, quantity, hlc, observed };
                        cart.apply(op.clone()).unwrap();
                        all.push(op);
                    }
                    Step::Deliver { from, to, count } => {
                        let ops: Vec<CartOp> = carts[from].ops().take(count).cloned().collect();
                        for op in ops {
                            clocks[to].observe(&op.hlc);
                            carts[to].merge_op(op).unwrap();
                        }
                    }
                }
            }
            let reference = {
                let mut cart = Cart::new();
                for op in all.iter().cloned() { cart.merge_op(op).unwrap(); }
                cart.lines()
            };
            // Dynamo's rule: an add that no set, remove or clear had seen is never lost.
            for add in all.iter().filter(|op| op.op_type == CartOpType::Add) {
                let seen = all.iter().any(|op| op.observed.contains(&add.op_id));
                if !seen {
                    let product = add.product_id.clone().unwrap();
                    let shown = reference.get(&product).copied().unwrap_or(0);
                    prop_assert!(shown >= add.quantity.unwrap().min(MAX_QUANTITY), "add {} lost", add.op_id);
                }
            }
            for &seed in &orders {
                // A deterministic shuffle with duplicates, from the seed.
                let mut order: Vec<CartOp> = all.iter().chain(all.iter().step_by(2)).cloned().collect();
                let mut state = seed | 1;
                for i in (1..order.len()).rev() {
                    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                    order.swap(i, (state % (i as u64 + 1)) as usize);
                }
                let mut cart = Cart::new();
                for op in order { cart.merge_op(op).unwrap(); }
                prop_assert_eq!(cart.lines(), reference.clone());
            }
            // A replica that keeps only live ops plus tombstones (as the server does)
            // shows the same lines, whatever the order and duplication.
            for seed in orders.iter() {
                let mut order: Vec<CartOp> = all.iter().chain(all.iter().rev().step_by(3)).cloned().collect();
                let mut state = seed.rotate_left(17) | 1;
                for i in (1..order.len()).rev() {
                    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                    order.swap(i, (state % (i as u64 + 1)) as usize);
                }
                let mut compact = Cart::new();
                let mut history: BTreeSet<String> = BTreeSet::new();
                let mut tombstones: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
                for op in order {
                    if !history.insert(op.op_id.clone()) {
                        continue;
                    }
                    let scopes = tombstones.get(&op.op_id).cloned().unwrap_or_default();
                    for (id, scope) in tombstones_of(&op) {
                        tombstones.entry(id).or_default().push(scope);
                    }
                    // Merged ops were accepted elsewhere: room is not re-checked here
                    // (the generator stays far below the line limit).
                    compact.receive_compacting(op, &scopes).unwrap();
                }
                prop_assert_eq!(compact.lines(), reference.clone());
                prop_assert!(compact.len() <= all.len());
            }
            // A replica equals the reference once it has received everything.
            for cart in &mut carts {
                for op in all.iter().cloned() { cart.merge_op(op).unwrap(); }
                prop_assert_eq!(cart.lines(), reference.clone());
            }
        }
    }
}
