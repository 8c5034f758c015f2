//! Wire types of `/api/products` and `/api/cart`: products, the cart's view, the ops a
//! client sends, its history and its realtime event.

use super::{CartOp, CartOpType, Hlc, MergeMode};
use serde::{Deserialize, Serialize};

/// A product of the catalog. Money is integer cents everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Product {
    pub id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub unit_price_cents: i64,
    /// Units in stock (shown to shoppers; a cart does not reserve stock).
    pub stock: i64,
}

/// `GET /api/products`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProductList {
    pub products: Vec<Product>,
}

/// Whose cart it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CartOwner {
    Guest,
    User,
}

/// One line of a cart as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CartLine {
    pub product_id: String,
    pub name: String,
    pub unit_price_cents: i64,
    pub quantity: u32,
    pub line_total_cents: i64,
}

/// What a sign-in merged into this cart from the guest cart the session came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MergeSummary {
    /// The guest cart that was merged.
    pub guest_cart_id: String,
    pub mode: MergeMode,
    /// Lines and units the guest cart held.
    pub guest_lines: u32,
    pub guest_items: u32,
    /// Units by which the account's cart grew.
    pub added_items: u32,
    /// Guest lines that did not fit (the account's cart was at its line limit).
    #[serde(default)]
    pub lines_not_merged: u32,
    pub at_ms: i64,
}

/// A cart: `GET /api/cart`, the answer of `POST /api/cart/ops`, and the payload of the
/// realtime event `{"kind": "cart", "cart": ...}` on [`CartView::topic`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CartView {
    pub cart_id: String,
    pub lines: Vec<CartLine>,
    pub total_cents: i64,
    /// Units in the cart (the sum of the quantities).
    pub item_count: u32,
    /// Grows by one with every change the server accepts.
    pub version: u64,
    pub owner: CartOwner,
    /// The realtime topic that carries this cart's changes.
    pub topic: String,
    /// The cart's live ops (superseded ones are compacted away): what a local-first
    /// replica starts from, and what its next `set`/`remove`/`clear` observes.
    pub ops: Vec<CartOp>,
    /// Set when this session's sign-in merged a guest cart into this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeSummary>,
}

/// An op as a client sends it. `hlc` and `observed` are filled in by the server when
/// absent: the server's clock, and every live op of the product (of the cart for
/// `clear`) at the time it applies the op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CartOpInput {
    pub op_id: String,
    #[serde(rename = "type")]
    pub op_type: CartOpType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hlc: Option<Hlc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Vec<String>>,
}

impl From<CartOp> for CartOpInput {
    fn from(op: CartOp) -> CartOpInput {
        CartOpInput {
            op_id: op.op_id,
            op_type: op.op_type,
            product_id: op.product_id,
            quantity: op.quantity,
            hlc: Some(op.hlc),
            observed: Some(op.observed),
        }
    }
}

/// The most ops one `POST /api/cart/ops` carries.
pub const MAX_OPS_PER_REQUEST: usize = 100;

/// `POST /api/cart/ops`: applied all or nothing, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CartOpsRequest {
    pub ops: Vec<CartOpInput>,
}

/// What an entry of a cart's history records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    /// An op was applied.
    Op,
    /// A guest cart was merged in (its ops follow as `op` entries).
    Merge,
}

/// One entry of a cart's append-only history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CartHistoryEntry {
    /// The cart version this entry produced.
    pub version: u64,
    pub at_ms: i64,
    pub kind: HistoryKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<CartOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeSummary>,
    /// The op arrived after an op that had observed it: kept here, without effect.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub superseded_on_arrival: bool,
}

/// `GET /api/cart/history`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CartHistory {
    pub cart_id: String,
    pub entries: Vec<CartHistoryEntry>,
    /// An opaque cursor: pass as `before` for the next (older) page; absent on the last
    /// page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// The realtime payload of a cart change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CartEvent {
    Cart { cart: CartView },
}
