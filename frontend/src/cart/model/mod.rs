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

mod display;
mod replica;
mod sender;
mod storage;
#[cfg(test)]
mod test_support;

pub use display::*;
pub use replica::*;
pub use sender::*;
pub use storage::*;

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
