//! The cart's semantics, run identically by the browser and the server: a cart is the set
//! of ops it has seen, and its lines are a pure function of that set.
//!
//! Ops (each with a client-made `op_id`):
//! - `add` increases a product's line by `quantity`;
//! - `set` sets a line's quantity;
//! - `remove` deletes a line; `clear` deletes every line.
//!
//! `set`, `remove` and `clear` carry `observed`: the op ids (of that product, or of the
//! whole cart for `clear`) that their author had seen. An op is *superseded* when some
//! `set`/`remove`/`clear` observed it. A line's quantity is then
//!
//! ```text
//! base + Σ quantity of the adds of the product that nothing superseded
//! base = quantity of the latest (by HLC) set of the product that nothing superseded, or 0
//! ```
//!
//! shown capped at [`MAX_QUANTITY`]. So:
//! - adds from different tabs or devices both count (neither observed the other);
//! - a `set` is last-writer-wins by its hybrid logical clock among concurrent sets;
//! - a `remove` or `clear` never deletes an add it had not seen (Dynamo's rule);
//! - an op replayed with the same `op_id` applies once (the set of ops does not change);
//! - replicas that have seen the same ops show the same cart, whatever the order,
//!   duplication or delay, because [`Cart::lines`] depends on the set alone.

mod hlc;
mod merge;
mod ops;
#[cfg(test)]
mod test_support;
mod wire;

pub use hlc::{Hlc, HlcClock};
pub use merge::{merge_guest, MergeMode};
pub use ops::{tombstones_of, Applied, Cart, CartError, CartOp, CartOpType, Received};
pub use wire::{
    CartEvent, CartHistory, CartHistoryEntry, CartLine, CartOpInput, CartOpsRequest, CartOwner,
    CartView, HistoryKind, MergeSummary, Product, ProductList, MAX_OPS_PER_REQUEST,
};

/// The largest quantity of one line.
pub const MAX_QUANTITY: u32 = 99;
/// The most lines one cart holds.
pub const MAX_LINES: usize = 100;
