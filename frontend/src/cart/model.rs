//! The shopping cart's local-first replica as a pure model, tested natively: what the
//! cart page shows and changes, kept in the tab and in IndexedDB, and synchronised with
//! the server by [`super::client::CartClient`].
//!
//! Model: `confirmed` is the last [`CartView`] the server sent (from `GET /api/cart`, an
//! answer of `POST /api/cart/ops`, or a realtime `cart` event on the view's topic);
//! `pending` are the ops made here (or in another tab of this browser) that the server
//! has not acknowledged yet, in creation (HLC) order. What the user sees is
//! `Cart::from_ops(confirmed.ops ∪ pending).lines()`, priced from the catalog, so a
//! change shows at once and never waits for the network.
//!
//! Layout: [`CartReplica`] (make ops from intents, accept views, acknowledge, refuse,
//! batch, merge what storage holds), with [`CartDisplay`], [`SyncState`] and
//! [`format_cents`]; [`Sender`] (what one flush sends and what each answer does);
//! [`StoredCart`] (what IndexedDB holds, encoded and decoded).
//!
//! Invariants:
//! - An op id is never pending twice, and an op acknowledged or refused here is never
//!   revived by a racing reread of storage.
//! - `confirmed` only moves forward within one cart (a higher `version`); only an answer
//!   of the server to this session (not an event, not storage) switches it to another
//!   cart.
//! - A pending `set`/`remove`/`clear` made against another cart than the current one (a
//!   guest's, before signing in) is rebased before it is sent: it then observes the
//!   current cart's live ops of its product, which is what its author meant.

use std::collections::{BTreeMap, BTreeSet};

use meridian_shared::cart::{
    Cart, CartEvent, CartOp, CartOpType, CartView, HlcClock, Product, MAX_LINES,
    MAX_OPS_PER_REQUEST, MAX_QUANTITY,
};
use serde::{Deserialize, Serialize};

use crate::net::http::HttpError;
use crate::net::realtime::TopicView;
use crate::net::realtime_state::RecentOps;

/// The IndexedDB database of the cart (apart from the app's `meridian`, so that each can
/// change its schema alone).
pub const DATABASE_NAME: &str = "meridian-cart";
pub const DATABASE_VERSION: u32 = 1;
/// Object store of single values: [`CONFIRMED_KEY`] and [`CATALOG_KEY`].
pub const STATE_STORE: &str = "state";
/// Object store of pending ops, keyed by op id.
pub const PENDING_STORE: &str = "pending";
pub const CONFIRMED_KEY: &str = "confirmed";
pub const CATALOG_KEY: &str = "catalog";
/// The BroadcastChannel between the cart pages of one browser.
pub const CHANNEL_NAME: &str = "meridian-cart";
/// Every op id made here starts with this.
pub const OP_ID_PREFIX: &str = "cart-";

// ---------------------------------------------------------------------------------------
// Pure model

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
    confirmed: Option<CartView>,
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

    /// What the page shows, priced from `catalog` (or, for products it lacks, from the
    /// confirmed view), in catalog order.
    pub fn display(&self, catalog: Option<&[Product]>) -> CartDisplay {
        let quantities = self.lines();
        let confirmed_lines: BTreeMap<&str, &meridian_shared::cart::CartLine> = self
            .confirmed
            .iter()
            .flat_map(|view| view.lines.iter())
            .map(|line| (line.product_id.as_str(), line))
            .collect();
        let position: BTreeMap<&str, usize> = catalog
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(index, product)| (product.id.as_str(), index))
            .collect();
        let products: BTreeMap<&str, &Product> = catalog
            .unwrap_or_default()
            .iter()
            .map(|product| (product.id.as_str(), product))
            .collect();
        let mut lines: Vec<ShownLine> = quantities
            .iter()
            .map(|(product_id, &quantity)| {
                let confirmed = confirmed_lines.get(product_id.as_str());
                let (name, unit_price_cents) = match products.get(product_id.as_str()) {
                    Some(product) => (product.name.clone(), Some(product.unit_price_cents)),
                    None => match confirmed {
                        Some(line) => (line.name.clone(), Some(line.unit_price_cents)),
                        None => (product_id.clone(), None),
                    },
                };
                ShownLine {
                    product_id: product_id.clone(),
                    name,
                    unit_price_cents,
                    quantity,
                    line_total_cents: unit_price_cents.map(|price| price * i64::from(quantity)),
                    syncing: confirmed.map(|line| line.quantity) != Some(quantity),
                }
            })
            .collect();
        lines.sort_by_key(|line| {
            (
                position
                    .get(line.product_id.as_str())
                    .copied()
                    .unwrap_or(usize::MAX),
                line.product_id.clone(),
            )
        });
        let removed_unsynced = confirmed_lines
            .keys()
            .any(|product| !quantities.contains_key(*product));
        CartDisplay {
            total_cents: lines.iter().filter_map(|line| line.line_total_cents).sum(),
            item_count: lines.iter().map(|line| line.quantity).sum(),
            fully_priced: lines.iter().all(|line| line.unit_price_cents.is_some()),
            differs_from_server: removed_unsynced || lines.iter().any(|line| line.syncing),
            lines,
        }
    }
}

/// One line as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownLine {
    pub product_id: String,
    pub name: String,
    /// `None` when neither the catalog nor the server's view knows the product.
    pub unit_price_cents: Option<i64>,
    pub quantity: u32,
    pub line_total_cents: Option<i64>,
    /// The quantity shown is not (yet) the server's.
    pub syncing: bool,
}

/// The cart as shown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CartDisplay {
    pub lines: Vec<ShownLine>,
    pub total_cents: i64,
    /// Units (the sum of the quantities).
    pub item_count: u32,
    /// Every line has a price (else the total leaves some out).
    pub fully_priced: bool,
    /// What is shown is not what the server confirmed.
    pub differs_from_server: bool,
}

/// Where the cart stands with the server, as `[data-testid=cart-sync]` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    Synced,
    Pending,
    Offline,
    Error,
}

impl SyncState {
    /// The machine-readable name (`data-state`).
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Synced => "synced",
            SyncState::Pending => "pending",
            SyncState::Offline => "offline",
            SyncState::Error => "error",
        }
    }

    /// Offline wins (nothing can be sent); then a failure; then unsent changes, or a
    /// cart the server has not confirmed yet (`loaded` is false until it answers).
    pub fn of(pending: usize, loaded: bool, offline: bool, failing: bool) -> SyncState {
        if offline {
            SyncState::Offline
        } else if failing {
            SyncState::Error
        } else if pending > 0 || !loaded {
            SyncState::Pending
        } else {
            SyncState::Synced
        }
    }

    /// The words people read.
    pub fn label(self, pending: usize) -> String {
        let changes = if pending == 1 { "change" } else { "changes" };
        match (self, pending) {
            (SyncState::Synced, _) => "Synced".to_owned(),
            (SyncState::Pending, 0) => "Checking with the server…".to_owned(),
            (SyncState::Pending, n) => format!("{n} {changes} pending"),
            (SyncState::Offline, 0) => "Offline".to_owned(),
            (SyncState::Offline, n) => format!("Offline — {n} {changes} will sync"),
            (SyncState::Error, 0) => "Sync failed".to_owned(),
            (SyncState::Error, n) => format!("Sync failed — {n} {changes} will retry"),
        }
    }
}

/// Integer cents as dollars: `$1,234.50`, `-$0.05`.
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let dollars = (abs / 100).to_string();
    let mut grouped = String::with_capacity(dollars.len() + dollars.len() / 3);
    for (index, digit) in dollars.chars().enumerate() {
        if index > 0 && (dollars.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}${grouped}.{:02}", abs % 100)
}

/// An op id from 16 random bytes: [`OP_ID_PREFIX`] and 32 hex digits.
pub fn op_id_from_bytes(bytes: [u8; 16]) -> String {
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{OP_ID_PREFIX}{hex}")
}

/// How a failed request is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// No answer: keep the ops, retry when the network is back.
    Network,
    /// The server refused the request (4xx): a batch is retried op by op, a single op
    /// is dropped and shown.
    Refused,
    /// A passing failure (5xx, 408, 429, an unreadable answer): keep the ops, retry with
    /// backoff.
    Transient,
}

impl SendFailure {
    pub fn of(error: &HttpError) -> SendFailure {
        let status = match error {
            HttpError::Network(_) => return SendFailure::Network,
            HttpError::Api { status, .. } | HttpError::Unexpected { status, .. } => *status,
        };
        match status {
            408 | 425 | 429 => SendFailure::Transient,
            400..=499 => SendFailure::Refused,
            _ => SendFailure::Transient,
        }
    }
}

/// The answer to one `POST /api/cart/ops`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Applied(CartView),
    Failed {
        failure: SendFailure,
        code: Option<String>,
        message: String,
    },
}

/// What to do after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendStep {
    /// Send the next request. `accepted` says what to write to storage; `refusal` is an
    /// op the server refused for good, to show.
    Continue {
        accepted: Accepted,
        refusal: Option<Box<Refusal>>,
    },
    /// Stop until the network is back or a backoff has passed; the ops stay pending.
    Stop {
        failure: SendFailure,
        message: String,
    },
}

/// The sending side of one flush: which ops go out next (batches of the oldest pending
/// ops; after a refused batch, its ops one at a time, so that only the refused ones are
/// dropped) and what each answer does to the replica.
#[derive(Debug, Clone, Default)]
pub struct Sender {
    one_by_one: std::collections::VecDeque<String>,
}

impl Sender {
    /// The ops of the next request (none: nothing is pending). Each op is sent once per
    /// flush, in its current (possibly rebased) form.
    pub fn next(&mut self, replica: &CartReplica) -> Vec<CartOp> {
        while let Some(op_id) = self.one_by_one.pop_front() {
            if let Some(pending) = replica.pending().iter().find(|p| p.op.op_id == op_id) {
                return vec![pending.op.clone()];
            }
        }
        replica.next_batch()
    }

    /// Applies the answer to `sent`. `same_session`: the session did not change while
    /// the request was out (else its cart view is not this session's and is not taken;
    /// the ops were applied all the same).
    pub fn answer(
        &mut self,
        replica: &mut CartReplica,
        sent: &[CartOp],
        outcome: SendOutcome,
        same_session: bool,
    ) -> SendStep {
        let op_ids: Vec<String> = sent.iter().map(|op| op.op_id.clone()).collect();
        match outcome {
            SendOutcome::Applied(view) => {
                replica.acknowledge(&op_ids);
                let mut accepted = if same_session {
                    replica.accept_server_view(view)
                } else {
                    Accepted::default()
                };
                accepted.dropped.extend(op_ids);
                SendStep::Continue {
                    accepted,
                    refusal: None,
                }
            }
            SendOutcome::Failed {
                failure: SendFailure::Refused,
                ..
            } if sent.len() > 1 => {
                self.one_by_one = op_ids.into();
                SendStep::Continue {
                    accepted: Accepted::default(),
                    refusal: None,
                }
            }
            SendOutcome::Failed {
                failure: SendFailure::Refused,
                code,
                message,
            } => {
                let refusal = op_ids
                    .first()
                    .and_then(|op_id| replica.refuse(op_id))
                    .map(|op| Box::new(Refusal { op, code, message }));
                SendStep::Continue {
                    accepted: Accepted {
                        dropped: op_ids,
                        ..Accepted::default()
                    },
                    refusal,
                }
            }
            SendOutcome::Failed {
                failure, message, ..
            } => SendStep::Stop { failure, message },
        }
    }
}

/// What the cart's IndexedDB database holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredCart {
    pub confirmed: Option<CartView>,
    pub catalog: Option<Vec<Product>>,
    /// In creation (HLC) order.
    pub pending: Vec<PendingOp>,
}

/// A value of the `state` store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StateRecord {
    Confirmed { view: CartView },
    Catalog { products: Vec<Product> },
}

impl StateRecord {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl StoredCart {
    /// Reads the raw values of the two stores; values that do not parse are skipped.
    pub fn decode(state: &[String], pending: &[String]) -> StoredCart {
        let mut stored = StoredCart::default();
        for value in state {
            match serde_json::from_str::<StateRecord>(value) {
                Ok(StateRecord::Confirmed { view }) => stored.confirmed = Some(view),
                Ok(StateRecord::Catalog { products }) => stored.catalog = Some(products),
                Err(_) => {}
            }
        }
        stored.pending = pending
            .iter()
            .filter_map(|value| PendingOp::from_json(value))
            .collect();
        stored.pending.sort_by(|a, b| a.op.hlc.cmp(&b.op.hlc));
        stored
    }
}

/// The newest cart view in a topic's recent events, after sequence number `after`, and
/// the highest sequence number seen.
pub fn newest_event_view(view: &TopicView, after: u64) -> (Option<CartView>, u64) {
    let mut newest: Option<CartView> = None;
    let mut highest = after;
    for event in view.events.iter().filter(|event| event.seq > after) {
        highest = highest.max(event.seq);
        if let Ok(CartEvent::Cart { cart }) = serde_json::from_value(event.payload.clone()) {
            if newest.as_ref().is_none_or(|n| cart.version > n.version) {
                newest = Some(cart);
            }
        }
    }
    (newest, highest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::cart::{CartLine, CartOpInput, CartOwner, Hlc, MergeMode, MergeSummary};
    use meridian_shared::realtime::Event;

    fn product(id: &str, cents: i64) -> Product {
        Product {
            id: id.into(),
            name: format!("Product {id}"),
            description: String::new(),
            category: "Things".into(),
            unit_price_cents: cents,
            stock: 10,
        }
    }

    fn server_op(id: &str, op_type: CartOpType, product: &str, quantity: Option<u32>) -> CartOp {
        CartOp {
            op_id: id.into(),
            op_type,
            product_id: Some(product.into()),
            quantity,
            hlc: Hlc {
                wall_ms: 1_000,
                counter: 0,
                node: "server".into(),
            },
            observed: Vec::new(),
        }
    }

    /// A view as the server would send it: lines computed from the ops.
    fn view(cart_id: &str, version: u64, ops: Vec<CartOp>) -> CartView {
        let cart = Cart::from_ops(ops.clone());
        let lines: Vec<CartLine> = cart
            .lines()
            .into_iter()
            .map(|(product_id, quantity)| CartLine {
                name: format!("Product {product_id}"),
                unit_price_cents: 100,
                line_total_cents: 100 * i64::from(quantity),
                product_id,
                quantity,
            })
            .collect();
        CartView {
            cart_id: cart_id.into(),
            total_cents: lines.iter().map(|l| l.line_total_cents).sum(),
            item_count: lines.iter().map(|l| l.quantity).sum(),
            lines,
            version,
            owner: CartOwner::Guest,
            topic: format!("session:{cart_id}"),
            ops,
            merge: None,
        }
    }

    fn lines(replica: &CartReplica) -> Vec<(String, u32)> {
        replica.lines().into_iter().collect()
    }

    fn add(replica: &mut CartReplica, id: &str, product: &str) -> CartOp {
        replica
            .local(&CartIntent::Add(product.into()), id.into(), 5_000)
            .unwrap()
    }

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
    fn a_refused_batch_is_retried_op_by_op_and_only_the_refused_op_leaves() {
        let mut replica = CartReplica::new("tab-a");
        replica.accept_server_view(view("c1", 1, vec![]));
        let a = add(&mut replica, "a", "p");
        let ghost = add(&mut replica, "ghost", "no-such-product");
        let c = add(&mut replica, "c", "q");
        let refused = |message: &str| SendOutcome::Failed {
            failure: SendFailure::Refused,
            code: Some("unknown_product".into()),
            message: message.into(),
        };
        let mut sender = Sender::default();
        let batch = sender.next(&replica);
        assert_eq!(batch.len(), 3);
        let step = sender.answer(&mut replica, &batch, refused("ops[1]"), true);
        assert!(matches!(step, SendStep::Continue { refusal: None, .. }));
        assert_eq!(replica.pending().len(), 3, "nothing is dropped for a batch");

        // One at a time: the first is applied...
        let one = sender.next(&replica);
        assert_eq!(one, vec![a.clone()]);
        let applied = SendOutcome::Applied(view("c1", 2, vec![a.clone()]));
        let step = sender.answer(&mut replica, &one, applied, true);
        let SendStep::Continue { accepted, .. } = step else {
            panic!("applied ops go on: {step:?}")
        };
        assert!(accepted.dropped.contains(&"a".to_owned()));
        // ...the unknown product is refused and shown...
        let one = sender.next(&replica);
        assert_eq!(one, vec![ghost.clone()]);
        let step = sender.answer(&mut replica, &one, refused("no such product"), true);
        let SendStep::Continue { accepted, refusal } = step else {
            panic!("a refusal goes on: {step:?}")
        };
        assert_eq!(accepted.dropped, vec!["ghost".to_owned()]);
        let refusal = refusal.expect("the refusal is shown");
        assert_eq!(refusal.op, ghost);
        assert_eq!(refusal.code.as_deref(), Some("unknown_product"));
        // ...and the last goes alone, then nothing is left.
        assert_eq!(sender.next(&replica), vec![c.clone()]);
        let applied = SendOutcome::Applied(view("c1", 3, vec![a, c.clone()]));
        sender.answer(&mut replica, &[c], applied, true);
        assert!(sender.next(&replica).is_empty());
        assert_eq!(lines(&replica), vec![("p".into(), 1), ("q".into(), 1)]);
    }

    #[test]
    fn a_network_failure_keeps_the_ops_and_stops() {
        let mut replica = CartReplica::new("tab-a");
        replica.accept_server_view(view("c1", 1, vec![]));
        add(&mut replica, "a", "p");
        let mut sender = Sender::default();
        let batch = sender.next(&replica);
        let step = sender.answer(
            &mut replica,
            &batch,
            SendOutcome::Failed {
                failure: SendFailure::Network,
                code: None,
                message: "offline".into(),
            },
            true,
        );
        assert!(matches!(
            step,
            SendStep::Stop {
                failure: SendFailure::Network,
                ..
            }
        ));
        assert_eq!(replica.pending().len(), 1);
        // After a session change, the answer acknowledges the ops but its view (of the
        // old session's cart) is not taken.
        let applied = SendOutcome::Applied(view("old-cart", 9, vec![batch[0].clone()]));
        sender.answer(&mut replica, &batch, applied, false);
        assert!(replica.pending().is_empty());
        assert_eq!(replica.confirmed().map(|v| v.cart_id.as_str()), Some("c1"));
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

    #[test]
    fn the_display_is_priced_from_the_catalog_in_catalog_order() {
        let mut replica = CartReplica::new("tab-a");
        replica.accept_server_view(view(
            "c1",
            1,
            vec![server_op("s", CartOpType::Add, "b", Some(2))],
        ));
        add(&mut replica, "l1", "a");
        add(&mut replica, "l2", "zz-unknown");
        let catalog = vec![product("b", 250), product("a", 1_999)];
        let display = replica.display(Some(&catalog));
        let shown: Vec<(&str, u32, Option<i64>, bool)> = display
            .lines
            .iter()
            .map(|l| {
                (
                    l.product_id.as_str(),
                    l.quantity,
                    l.line_total_cents,
                    l.syncing,
                )
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                ("b", 2, Some(500), false),
                ("a", 1, Some(1_999), true),
                ("zz-unknown", 1, None, true),
            ]
        );
        assert_eq!(display.total_cents, 2_499);
        assert_eq!(display.item_count, 4);
        assert!(!display.fully_priced);
        assert!(display.differs_from_server);
        // Without a catalog, the confirmed view's names and prices serve.
        let display = replica.display(None);
        let b = display.lines.iter().find(|l| l.product_id == "b").unwrap();
        assert_eq!(b.name, "Product b");
        assert_eq!(b.unit_price_cents, Some(100));
    }

    #[test]
    fn sync_states_read_plainly() {
        assert_eq!(SyncState::of(0, true, false, false), SyncState::Synced);
        assert_eq!(SyncState::of(0, false, false, false), SyncState::Pending);
        assert_eq!(SyncState::of(2, true, false, false), SyncState::Pending);
        assert_eq!(SyncState::of(2, true, true, true), SyncState::Offline);
        assert_eq!(SyncState::of(1, true, false, true), SyncState::Error);
        assert_eq!(SyncState::Synced.label(0), "Synced");
        assert_eq!(SyncState::Pending.label(0), "Checking with the server…");
        assert_eq!(SyncState::Pending.label(1), "1 change pending");
        assert_eq!(SyncState::Pending.label(2), "2 changes pending");
        assert_eq!(SyncState::Offline.label(2), "Offline — 2 changes will sync");
        assert_eq!(SyncState::Offline.label(0), "Offline");
        assert_eq!(SyncState::Error.as_str(), "error");
    }

    #[test]
    fn cents_read_as_dollars() {
        assert_eq!(format_cents(0), "$0.00");
        assert_eq!(format_cents(5), "$0.05");
        assert_eq!(format_cents(1_450), "$14.50");
        assert_eq!(format_cents(123_456_789), "$1,234,567.89");
        assert_eq!(format_cents(100_000), "$1,000.00");
        assert_eq!(format_cents(-1_205), "-$12.05");
        assert_eq!(format_cents(i64::MIN), "-$92,233,720,368,547,758.08");
    }

    #[test]
    fn failures_are_classified_by_status() {
        use meridian_shared::api::ApiErrorBody;
        let api = |status| HttpError::Api {
            status,
            body: ApiErrorBody {
                code: "unknown_product".into(),
                message: "no".into(),
            },
        };
        assert_eq!(
            SendFailure::of(&HttpError::Network("down".into())),
            SendFailure::Network
        );
        assert_eq!(SendFailure::of(&api(422)), SendFailure::Refused);
        assert_eq!(SendFailure::of(&api(429)), SendFailure::Transient);
        assert_eq!(SendFailure::of(&api(503)), SendFailure::Transient);
        let proxy = HttpError::Unexpected {
            status: 413,
            detail: "too large".into(),
        };
        assert_eq!(SendFailure::of(&proxy), SendFailure::Refused);
    }

    #[test]
    fn op_ids_are_valid_and_prefixed() {
        let id = op_id_from_bytes([0xab; 16]);
        assert_eq!(id, format!("cart-{}", "ab".repeat(16)));
        assert!(meridian_shared::realtime::valid_op_id(&id));
    }

    #[test]
    fn stored_values_round_trip() {
        let mut replica = CartReplica::new("tab-a");
        add(&mut replica, "late", "p");
        let mut early = replica.pending()[0].clone();
        early.op.op_id = "early".into();
        early.op.hlc.wall_ms -= 1;
        let state = vec![
            StateRecord::Confirmed {
                view: view("c1", 3, vec![]),
            }
            .to_json(),
            StateRecord::Catalog {
                products: vec![product("p", 1)],
            }
            .to_json(),
            "garbage".to_owned(),
        ];
        let pending = vec![
            replica.pending()[0].to_json(),
            early.to_json(),
            r#"{"op":{"op_id":"a b","type":"clear","hlc":{"wall_ms":1,"counter":0,"node":"x"}}}"#
                .to_owned(),
        ];
        let stored = StoredCart::decode(&state, &pending);
        assert_eq!(stored.confirmed.map(|v| v.version), Some(3));
        assert_eq!(stored.catalog.map(|c| c.len()), Some(1));
        let ids: Vec<&str> = stored.pending.iter().map(|p| p.op.op_id.as_str()).collect();
        assert_eq!(
            ids,
            vec!["early", "late"],
            "sorted by HLC; invalid ops skipped"
        );
    }

    #[test]
    fn the_newest_event_view_wins() {
        let event = |seq: u64, version: u64| Event {
            topic: "session:c1".into(),
            seq,
            op_id: format!("cart:c1:{version}"),
            payload: serde_json::to_value(CartEvent::Cart {
                cart: view("c1", version, vec![]),
            })
            .unwrap(),
            at_ms: 1,
        };
        let topic = TopicView {
            topic: "session:c1".into(),
            subscribed: true,
            events: vec![event(1, 4), event(2, 6), event(3, 5)],
            pending: Vec::new(),
            error: None,
            rejections: Vec::new(),
        };
        let (newest, highest) = newest_event_view(&topic, 0);
        assert_eq!(newest.map(|v| v.version), Some(6));
        assert_eq!(highest, 3);
        let (newest, highest) = newest_event_view(&topic, 3);
        assert_eq!((newest, highest), (None, 3));
    }
}
