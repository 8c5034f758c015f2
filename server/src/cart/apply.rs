//! A batch's changes applied in memory: each cart of the batch is read once (or taken
//! from the snapshot cache), every change is checked and applied to it here, and only
//! what was accepted is written afterwards, in a few multi-row statements (`store.rs`).
//!
//! Invariants:
//! - A change (one request's ops) applies all or nothing: a refused op leaves its cart,
//!   and what the batch recorded of it, as before the change.
//! - An op id applies once per cart: it is new only if neither the history (as read at
//!   the batch's start, under the carts' locks) nor an earlier change of the batch has
//!   it; an earlier op of the same change counts too.
//! - Tombstones likewise: those stored before the batch and those its earlier changes
//!   (and earlier ops of the same change) leave.
//! - A cached snapshot is used only when its cart's row still has the same version and
//!   creation time (a version is written with every change of the live ops, on every
//!   instance; a deleted and recreated cart has a new creation time).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use meridian_shared::cart::{tombstones_of, Cart, CartError, CartOp, CartOpType, Received};

use super::store::StoredCart;
use super::Carts;

/// What the database held, at the batch's start, about the op ids the batch brings:
/// which applied (its history) and the tombstones left for them.
#[derive(Debug, Default)]
pub struct Recorded {
    applied: HashSet<(String, String)>,
    tombstones: HashMap<(String, String), Vec<Option<String>>>,
}

impl Recorded {
    /// Records that `op_id` applied to `cart_id`.
    pub fn insert_applied(&mut self, cart_id: String, op_id: String) {
        self.applied.insert((cart_id, op_id));
    }

    /// Records a tombstone of `op_id` in `cart_id` (`scope` empty: any product).
    pub fn insert_tombstone(&mut self, cart_id: String, op_id: String, scope: String) {
        self.tombstones
            .entry((cart_id, op_id))
            .or_default()
            .push((!scope.is_empty()).then_some(scope));
    }

    fn applied(&self, cart_id: &str, op_id: &str) -> bool {
        // One lookup with owned keys would allocate; the sets are small.
        self.applied
            .contains(&(cart_id.to_owned(), op_id.to_owned()))
    }

    fn scopes(&self, cart_id: &str, op_id: &str) -> &[Option<String>] {
        self.tombstones
            .get(&(cart_id.to_owned(), op_id.to_owned()))
            .map_or(&[], Vec::as_slice)
    }
}

/// A history row to write.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub op_id: String,
    /// `op` or `merge`.
    pub kind: &'static str,
    pub json: String,
    pub dead: bool,
}

/// One accepted change of a cart: the version it makes and what it writes.
#[derive(Debug, Default)]
pub struct Change {
    pub entries: Vec<HistoryRow>,
    /// `(op_id, scope)`: scope empty for a `clear`.
    pub tombstones: Vec<(String, String)>,
}

impl Change {
    fn has(&self, op_id: &str) -> bool {
        self.entries.iter().any(|e| e.op_id == op_id)
    }

    fn scopes<'a>(&'a self, op_id: &'a str) -> impl Iterator<Item = Option<String>> + 'a {
        self.tombstones
            .iter()
            .filter(move |(id, _)| id == op_id)
            .map(|(_, scope)| (!scope.is_empty()).then(|| scope.clone()))
    }
}

/// A cart of the batch, changed in memory.
#[derive(Debug)]
pub struct WorkingCart {
    pub id: String,
    pub version: u64,
    pub created_at_ms: i64,
    pub live: Cart,
    /// Op ids applied by the batch's earlier changes.
    applied: HashSet<String>,
    /// Tombstones left by the batch's earlier changes: op id → scopes.
    tombstones: HashMap<String, Vec<Option<String>>>,
    /// Whether a change of the batch was accepted (the snapshot is to be written).
    pub changed: bool,
}

impl WorkingCart {
    pub fn new(id: String, version: u64, created_at_ms: i64, live: Cart) -> WorkingCart {
        WorkingCart {
            id,
            version,
            created_at_ms,
            live,
            applied: HashSet::new(),
            tombstones: HashMap::new(),
            changed: false,
        }
    }

    /// The cart as stored once the batch commits.
    pub fn stored(&self) -> StoredCart {
        StoredCart {
            version: self.version,
            live: self.live.clone(),
        }
    }

    /// Receives one op into `change`: a duplicate (in the change, the batch or the
    /// history) is skipped (`Ok(false)`); a new op is completed (`fill_observed`: with
    /// every live op it concerns), checked, applied to the live ops and recorded with its
    /// tombstones. A refused op changes nothing.
    pub fn receive(
        &mut self,
        recorded: &Recorded,
        carts: &Carts,
        change: &mut Change,
        mut op: CartOp,
        fill_observed: bool,
    ) -> Result<bool, CartError> {
        if change.has(&op.op_id)
            || self.applied.contains(&op.op_id)
            || recorded.applied(&self.id, &op.op_id)
        {
            return Ok(false);
        }
        if fill_observed && op.op_type != CartOpType::Add {
            let scope = match op.op_type {
                CartOpType::Clear => None,
                _ => op.product_id.as_deref(),
            };
            op.observed = self.live.observed(scope);
        }
        let mut scopes: Vec<Option<String>> = recorded.scopes(&self.id, &op.op_id).to_vec();
        if let Some(earlier) = self.tombstones.get(&op.op_id) {
            scopes.extend(earlier.iter().cloned());
        }
        scopes.extend(change.scopes(&op.op_id));
        let json = serde_json::to_string(&op).expect("ops serialise");
        let op_id = op.op_id.clone();
        let hlc = op.hlc.clone();
        let left = tombstones_of(&op);
        let received = self.live.receive_compacting(op, &scopes)?;
        carts.observe_clock(&hlc);
        change.tombstones.extend(
            left.into_iter()
                .map(|(seen, scope)| (seen, scope.unwrap_or_default())),
        );
        change.entries.push(HistoryRow {
            op_id,
            kind: "op",
            json,
            dead: matches!(received, Received::Dead { .. }),
        });
        Ok(true)
    }

    /// A request's ops, all or nothing: `Ok(None)` when none was new (nothing to
    /// write), `Ok(Some(change))` once accepted (the cart is at its new version), or
    /// the first refused op's index and why (the cart as before).
    pub fn apply(
        &mut self,
        recorded: &Recorded,
        carts: &Carts,
        ops: Vec<(CartOp, bool)>,
    ) -> Result<Option<Change>, (usize, CartError)> {
        // One op is refused before it changes anything; several need the way back.
        let before = (ops.len() > 1).then(|| self.live.clone());
        let mut change = Change::default();
        for (index, (op, fill_observed)) in ops.into_iter().enumerate() {
            if let Err(err) = self.receive(recorded, carts, &mut change, op, fill_observed) {
                if let Some(before) = before {
                    self.live = before;
                }
                return Err((index, err));
            }
        }
        if change.entries.is_empty() {
            return Ok(None);
        }
        self.accept(&change);
        Ok(Some(change))
    }

    /// Counts an accepted change in: a new version, its ids and tombstones known to the
    /// batch's later changes.
    pub fn accept(&mut self, change: &Change) {
        self.version += 1;
        self.changed = true;
        self.applied
            .extend(change.entries.iter().map(|e| e.op_id.clone()));
        for (op_id, scope) in &change.tombstones {
            self.tombstones
                .entry(op_id.clone())
                .or_default()
                .push((!scope.is_empty()).then(|| scope.clone()));
        }
    }
}

/// The most carts the snapshot cache holds.
const CACHED_CARTS: usize = 4096;

/// Decoded live ops of recently written carts, so that a change does not decode its
/// cart's whole op set again (see the module's invariants for when one is used).
#[derive(Default)]
pub struct SnapshotCache {
    carts: Mutex<HashMap<String, WorkingCart>>,
}

impl SnapshotCache {
    /// Takes the cached snapshot of a cart if it is at `version` and was created at
    /// `created_at_ms`.
    pub fn take(&self, id: &str, version: u64, created_at_ms: i64) -> Option<Cart> {
        let mut carts = self.carts.lock().unwrap_or_else(|e| e.into_inner());
        let cached = carts.remove(id)?;
        (cached.version == version && cached.created_at_ms == created_at_ms).then_some(cached.live)
    }

    /// Keeps committed carts (bounded: a full cache forgets arbitrary carts).
    pub fn keep(&self, committed: impl IntoIterator<Item = WorkingCart>) {
        let mut carts = self.carts.lock().unwrap_or_else(|e| e.into_inner());
        for cart in committed {
            if carts.len() >= CACHED_CARTS && !carts.contains_key(&cart.id) {
                if let Some(other) = carts.keys().next().cloned() {
                    carts.remove(&other);
                }
            }
            let fresh = WorkingCart::new(cart.id, cart.version, cart.created_at_ms, cart.live);
            carts.insert(fresh.id.clone(), fresh);
        }
    }
}
