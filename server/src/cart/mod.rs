//! The shopping cart: the catalog, each session's cart (a guest's, or its account's), the
//! merge of a guest cart on sign-in, and the cart's history.
//!
//! ```text
//! catalog  the seeded demo products, held in memory
//! store    SQL (reads, the batch's multi-row writes), the merge, expiry
//! apply    a batch's changes checked and applied in memory; the snapshot cache
//! batch    group commit: many carts' changes in one transaction, bounded queues
//! ```
//!
//! The semantics are `meridian_shared::cart`'s, run identically in the browser.
//!
//! Invariants:
//! - A cart changes only by ops; a request's ops apply all or nothing, in order, and an
//!   op id applies once per cart (the history is the record of which ids applied).
//! - The row holds only live ops; an op observed by ops since compacted away is known
//!   by its tombstone and arrives dead, so the lines always equal those of the whole
//!   history (property-tested in shared).
//! - A change, its history rows and its realtime event commit in one transaction, under
//!   the cart topic's publish lock; the event carries the new cart. Changes of many carts
//!   share a transaction (group commit); a request is answered once it is durable.
//! - A guest cart merges into an account at most once (its `cart_merges` row commits with
//!   the merge), with deterministic op ids, so retries never double-count.

mod apply;
pub mod batch;
pub mod catalog;
pub mod store;

use std::sync::{Mutex, MutexGuard, OnceLock};

use axum::extract::State;
use meridian_shared::api::ApiErrorBody;
use meridian_shared::cart::{
    CartError, CartHistory, CartLine, CartOp, CartOpInput, CartOpsRequest, CartOwner, CartView,
    Hlc, HlcClock, MergeSummary, ProductList, MAX_OPS_PER_REQUEST,
};
use meridian_shared::realtime::valid_op_id;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use self::catalog::Catalog;
use self::store::{StoredCart, WriteError};
use crate::auth::Session;
use crate::error::{ApiError, ApiResult, Json, Query};
use crate::openapi::with_platform_errors;
use crate::AppState;

/// The feature flag that gates the cart history (on while the flag does not exist).
pub const HISTORY_FEATURE: &str = "meridian-cart-history";
/// The most op ids one op may list as observed.
const MAX_OBSERVED: usize = 1_000;
/// The longest HLC node name.
const MAX_NODE_LEN: usize = 64;

pub fn routes() -> OpenApiRouter<AppState> {
    with_platform_errors(
        OpenApiRouter::new()
            .routes(routes!(list_products))
            .routes(routes!(get_cart))
            .routes(routes!(post_ops))
            .routes(routes!(get_history)),
    )
}

/// The cart system's in-memory part: the catalog and this instance's hybrid logical
/// clock (for ops whose clients sent none, and for merges).
pub struct Carts {
    catalog: Catalog,
    clock: Mutex<HlcClock>,
    /// The group-commit queues, started with the first change.
    committer: OnceLock<batch::Committer>,
    /// Decoded live ops of recently written carts.
    snapshots: apply::SnapshotCache,
}

impl Carts {
    pub fn new(catalog: Catalog, instance_id: &str) -> Carts {
        Carts {
            catalog,
            clock: Mutex::new(HlcClock::new(format!("server-{instance_id}"))),
            committer: OnceLock::new(),
            snapshots: apply::SnapshotCache::default(),
        }
    }

    /// The group committer of this instance's carts (its tasks start on first use).
    fn committer(&self, state: &AppState) -> &batch::Committer {
        self.committer
            .get_or_init(|| batch::Committer::start(state))
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn clock(&self) -> MutexGuard<'_, HlcClock> {
        self.clock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tick(&self, now_ms: i64) -> Hlc {
        self.clock().tick(now_ms.max(0) as u64)
    }

    fn observe_clock(&self, seen: &Hlc) {
        self.clock().observe(seen);
    }

    /// The cart as clients see it: lines in catalog order, priced from the catalog.
    pub fn view(
        &self,
        cart: &CartRef,
        stored: &StoredCart,
        merge: Option<MergeSummary>,
    ) -> CartView {
        let quantities = stored.live.lines();
        let lines: Vec<CartLine> = self
            .catalog
            .products()
            .iter()
            .filter_map(|product| {
                let quantity = *quantities.get(&product.id)?;
                Some(CartLine {
                    product_id: product.id.clone(),
                    name: product.name.clone(),
                    unit_price_cents: product.unit_price_cents,
                    quantity,
                    line_total_cents: product.unit_price_cents * i64::from(quantity),
                })
            })
            .collect();
        CartView {
            cart_id: cart.id.clone(),
            total_cents: lines.iter().map(|l| l.line_total_cents).sum(),
            item_count: lines.iter().map(|l| l.quantity).sum(),
            lines,
            version: stored.version,
            owner: cart.owner,
            topic: cart.topic.clone(),
            ops: stored.live.ops().cloned().collect(),
            merge,
        }
    }
}

/// Which cart a session uses: its account's, or its own as a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartRef {
    pub id: String,
    pub owner: CartOwner,
    pub owner_id: String,
    /// The realtime topic its changes go to (every session of the owner may watch it).
    pub topic: String,
}

impl CartRef {
    pub fn guest(session_id: &str) -> CartRef {
        CartRef {
            id: format!("guest-{session_id}"),
            owner: CartOwner::Guest,
            owner_id: session_id.to_owned(),
            topic: format!("session:{session_id}"),
        }
    }

    pub fn user(user_id: &str) -> CartRef {
        CartRef {
            id: format!("user-{user_id}"),
            owner: CartOwner::User,
            owner_id: user_id.to_owned(),
            topic: format!("user:{user_id}"),
        }
    }

    pub fn of(session: &Session) -> CartRef {
        match &session.user {
            Some(user) => CartRef::user(&user.id),
            None => CartRef::guest(&session.id),
        }
    }
}

/// Merges the cart of the guest session a sign-in came from into the account's cart
/// (called by sign-in and sign-up before the new session is handed out). Idempotent.
pub async fn merge_on_sign_in(
    state: &AppState,
    guest_session_id: &str,
    user_id: &str,
) -> Result<Option<MergeSummary>, sqlx::Error> {
    let summary = store::merge(
        state,
        &CartRef::guest(guest_session_id),
        &CartRef::user(user_id),
        state.config.cart_merge_mode,
        Some(guest_session_id),
    )
    .await?;
    if let Some(summary) = &summary {
        tracing::info!(
            user_id,
            guest_items = summary.guest_items,
            added_items = summary.added_items,
            "guest cart merged"
        );
    }
    Ok(summary)
}

/// The catalog.
#[utoipa::path(
    get,
    path = "/api/products",
    tag = "cart",
    responses((status = 200, description = "Every product, in catalog order", body = ProductList))
)]
async fn list_products(State(state): State<AppState>) -> Json<ProductList> {
    Json(ProductList {
        products: state.carts.catalog.products().to_vec(),
    })
}

/// What this session's sign-in merged into its cart, if it did.
async fn merge_for(
    state: &AppState,
    session: &Session,
    cart: &CartRef,
) -> ApiResult<Option<MergeSummary>> {
    Ok(match (&session.user, &session.guest_session_id) {
        (Some(_), Some(guest)) => {
            store::merge_summary(&state.db.pool, &CartRef::guest(guest).id, &cart.id).await?
        }
        _ => None,
    })
}

async fn current_view(state: &AppState, session: &Session) -> ApiResult<CartView> {
    let cart = CartRef::of(session);
    let stored = store::load(&state.db.pool, &cart.id).await?;
    let merge = merge_for(state, session, &cart).await?;
    Ok(state.carts.view(&cart, &stored, merge))
}

/// The session's cart: a guest's own, or the signed-in account's.
#[utoipa::path(
    get,
    path = "/api/cart",
    tag = "cart",
    responses((status = 200, description = "The cart; `merge` is set after a sign-in that merged a guest cart", body = CartView))
)]
async fn get_cart(State(state): State<AppState>, session: Session) -> ApiResult<Json<CartView>> {
    Ok(Json(current_view(&state, &session).await?))
}

/// Turns a client's op into a complete one: the server's clock when it sent none.
/// Returns the op and whether the server must fill in what it observed.
fn complete(
    state: &AppState,
    index: usize,
    input: CartOpInput,
    now_ms: i64,
) -> ApiResult<(CartOp, bool)> {
    let op_id = input.op_id.clone();
    let at = |message: String| format!("ops[{index}] ({op_id}): {message}");
    if let Some(product) = input.product_id.as_deref() {
        if state.carts.catalog.get(product).is_none() && !product.is_empty() {
            return Err(ApiError::unprocessable(
                "unknown_product",
                at(format!("there is no product {product:?}")),
            ));
        }
    }
    if let Some(hlc) = &input.hlc {
        if hlc.node.is_empty() || hlc.node.len() > MAX_NODE_LEN {
            return Err(ApiError::unprocessable(
                "invalid_hlc",
                at(format!("an hlc node is 1 to {MAX_NODE_LEN} characters")),
            ));
        }
    }
    if let Some(observed) = &input.observed {
        if observed.len() > MAX_OBSERVED || !observed.iter().all(|id| valid_op_id(id)) {
            return Err(ApiError::unprocessable(
                "invalid_observed",
                at(format!(
                    "observed lists at most {MAX_OBSERVED} valid op ids"
                )),
            ));
        }
    }
    let fill_observed = input.observed.is_none();
    let op = CartOp {
        hlc: input.hlc.unwrap_or_else(|| state.carts.tick(now_ms)),
        observed: input.observed.unwrap_or_default(),
        op_id: input.op_id,
        op_type: input.op_type,
        product_id: input.product_id,
        quantity: input.quantity,
    };
    op.validate()
        .map_err(|err| ApiError::unprocessable(err.code(), at(err.to_string())))?;
    Ok((op, fill_observed))
}

fn refused(index: usize, op_id: &str, err: &CartError) -> ApiError {
    ApiError::unprocessable(err.code(), format!("ops[{index}] ({op_id}): {err}"))
}

/// Applies ops to the session's cart, all or nothing and in order; an op id already
/// applied is skipped. Every tab and device watching the cart's topic gets the new cart.
#[utoipa::path(
    post,
    path = "/api/cart/ops",
    tag = "cart",
    request_body = CartOpsRequest,
    responses(
        (status = 200, description = "The resulting cart", body = CartView),
        (status = 422, description = "Nothing was applied: `unknown_product`, `quantity_out_of_range`, `too_many_lines`, `missing_product`, `invalid_op_id`, `invalid_hlc`, `invalid_observed` or `too_many_ops`; the message names the op", body = ApiErrorBody),
        (status = 503, description = "`unavailable`: too many changes are waiting to be written, or the server is shutting down; retry after `Retry-After` seconds", body = ApiErrorBody),
    )
)]
async fn post_ops(
    State(state): State<AppState>,
    session: Session,
    Json(request): Json<CartOpsRequest>,
) -> ApiResult<Json<CartView>> {
    if request.ops.len() > MAX_OPS_PER_REQUEST {
        return Err(ApiError::unprocessable(
            "too_many_ops",
            format!(
                "a request carries at most {MAX_OPS_PER_REQUEST} ops, not {}",
                request.ops.len()
            ),
        ));
    }
    let now = state.clock.now_ms();
    let ops = request
        .ops
        .into_iter()
        .enumerate()
        .map(|(i, input)| complete(&state, i, input, now))
        .collect::<ApiResult<Vec<_>>>()?;
    let op_ids: Vec<String> = ops.iter().map(|(op, _)| op.op_id.clone()).collect();
    let cart = CartRef::of(&session);
    if ops.is_empty() {
        return Ok(Json(current_view(&state, &session).await?));
    }
    match store::apply(&state, &cart, ops, Some(&session.id)).await {
        Ok((stored, _)) => {
            let merge = merge_for(&state, &session, &cart).await?;
            Ok(Json(state.carts.view(&cart, &stored, merge)))
        }
        Err(WriteError::Op(index, err)) => Err(refused(index, &op_ids[index], &err)),
        Err(WriteError::Db(err)) => Err(err.into()),
        Err(WriteError::Batch(err)) => Err(match &*err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                ApiError::unavailable("the database is busy or unavailable; retry shortly")
            }
            other => ApiError::internal(other),
        }),
        Err(WriteError::Busy) => Err(ApiError::unavailable(
            "too many cart changes are waiting; retry shortly",
        )),
        Err(WriteError::Stopped) => Err(ApiError::unavailable("the server is shutting down")),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// Only entries older than this cursor (`next_before` of the previous page).
    before: Option<u64>,
    /// At most this many entries (1 to 200; 50 by default).
    limit: Option<usize>,
}

/// The cart's append-only history (every op and merge), newest first.
#[utoipa::path(
    get,
    path = "/api/cart/history",
    tag = "cart",
    params(HistoryQuery),
    responses(
        (status = 200, description = "A page of history", body = CartHistory),
        (status = 422, description = "`invalid_limit`", body = ApiErrorBody),
        (status = 503, description = "`feature_disabled`: the flag `meridian-cart-history` is off", body = ApiErrorBody),
    )
)]
async fn get_history(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<HistoryQuery>,
) -> ApiResult<Json<CartHistory>> {
    if !crate::flags::feature_enabled(&state, HISTORY_FEATURE, &session.id, true) {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "feature_disabled",
            format!("the cart history is turned off (feature flag {HISTORY_FEATURE})"),
        ));
    }
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::unprocessable(
            "invalid_limit",
            format!("limit is 1 to 200, not {limit}"),
        ));
    }
    let cart = CartRef::of(&session);
    let before = query.before.unwrap_or(u64::MAX);
    let mut entries = store::history(&state.db.pool, &cart.id, before, limit + 1).await?;
    let mut next_before = None;
    if entries.len() > limit {
        entries.truncate(limit);
        next_before = entries.last().map(|(cursor, _)| *cursor);
    }
    Ok(Json(CartHistory {
        cart_id: cart.id,
        entries: entries.into_iter().map(|(_, entry)| entry).collect(),
        next_before,
    }))
}
