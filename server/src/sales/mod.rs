//! The flash sale: admins create sales; guests and accounts check out (a unit is reserved
//! for a while, or they queue for one, or are told at once that it is sold out), pay
//! (simulated), and every confirmed order is fulfilled once.
//!
//! ```text
//! engine   the pure rules: who gets a unit, who waits (FIFO), who is told sold out
//! writer   one single-writer task per sale and instance: batches, the ledger's lock
//! store    SQL (both backends): the ledger row, reservations, orders, outbox
//! fulfil   the fulfilment worker (outbox, SKIP LOCKED)
//! access   the permission `sales:admin`
//! ```
//!
//! Invariants (tests: `engine.rs` by property, `tests/tests/sales.rs` on both backends,
//! with kill -9 and two instances on one PostgreSQL):
//! - sold + reserved ≤ stock at every instant, across instances and crashes: the
//!   `sales` row is the ledger of record, locked first by every transaction that moves
//!   it, and a CHECK constraint refuses anything past the stock.
//! - No reservation leaks: a reservation is `reserved` until paid or expired; expiry
//!   returns its unit in the transaction that marks it expired.
//! - A request is answered only once what it changed is durable; an idempotency key
//!   (per sale and buyer) answers its original reservation; a payment retried never
//!   makes a second order (the reservation holds its order id).
//! - Each confirmed order has its outbox row from the same transaction and is
//!   fulfilled exactly once in effect (`fulfil.rs`).
//! - A buyer (an account, or a guest session) never holds more than the sale's
//!   `per_user_limit` units, whatever the tabs, devices or instances: the count is read
//!   under the ledger row's lock.

pub mod access;
pub mod engine;
pub mod fulfil;
pub mod store;
pub mod writer;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use meridian_shared::api::ApiErrorBody;
use meridian_shared::ids::format_rfc3339_ms;
use meridian_shared::sales::{
    plausible_id, sale_topic, valid_idempotency_key, CheckoutAnswer, CreateSale, Fulfilment,
    OrderList, OrderView, PaymentAnswer, SaleDashboard, SaleList, SaleState, SaleView,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::engine::{Attempt, ReservationState};
use self::store::SaleRow;
use self::writer::{Checkout, Payment, SaleWriter, WriteError};
use crate::auth::rate_limit::RateLimiter;
use crate::auth::{ClientAddr, Session};
use crate::config::Config;
use crate::error::{ApiError, ApiResult, Json, Path};
use crate::openapi::with_platform_errors;
use crate::AppState;

/// The header that makes a checkout idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

pub fn routes() -> OpenApiRouter<AppState> {
    with_platform_errors(
        OpenApiRouter::new()
            .routes(routes!(create_sale, list_sales))
            .routes(routes!(get_sale))
            .routes(routes!(dashboard))
            .routes(routes!(checkout))
            .routes(routes!(pay))
            .routes(routes!(orders)),
    )
}

/// How many recent checkouts an instance remembers: between half of this and all of it
/// (two generations of half each).
const SEEN_KEYS: usize = 200_000;

/// The flash sale's in-memory part on this instance: one writer per sale touched, the
/// checkout rate limits, the payment simulator's failure rate.
pub struct Sales {
    writers: Mutex<HashMap<String, Arc<SaleWriter>>>,
    per_buyer: RateLimiter,
    per_address: RateLimiter,
    /// The checkouts (buyer and idempotency key) this instance has seen lately: asking
    /// again with the same key is how a queued buyer follows its place, so it is an
    /// answer to look up, not a new attempt for the rate limits.
    seen: Mutex<Seen>,
    /// Payment failures per million attempts.
    payment_failure_ppm: AtomicU32,
    fulfilment: tokio::sync::Notify,
}

impl Sales {
    pub fn new(config: &Config) -> Sales {
        let window = config.sale_rate_window.as_millis() as i64;
        Sales {
            writers: Mutex::default(),
            per_buyer: RateLimiter::new(config.sale_checkouts_per_buyer, window),
            per_address: RateLimiter::new(config.sale_checkouts_per_address, window),
            seen: Mutex::default(),
            payment_failure_ppm: AtomicU32::new(ppm(config.sale_payment_failure)),
            fulfilment: tokio::sync::Notify::new(),
        }
    }

    /// Starts the fulfilment worker on `state`'s tasks.
    pub fn start(state: &AppState) {
        state.tasks.spawn(fulfil::run(state.clone()));
    }

    /// Sets the probability (0 to 1) that a simulated payment fails.
    pub fn set_payment_failure(&self, probability: f64) {
        self.payment_failure_ppm
            .store(ppm(probability), Ordering::Relaxed);
    }

    /// Whether `buyer` already checked out with `key` (lately, on this instance) past
    /// the rate limits.
    fn seen_before(&self, buyer: &str, key: &str) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.contains(&(buyer.to_owned(), key.to_owned()))
    }

    /// Remembers a checkout the rate limits let through.
    fn remember(&self, buyer: &str, key: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert((buyer.to_owned(), key.to_owned()));
    }

    pub(crate) fn wake_fulfilment(&self) {
        self.fulfilment.notify_one();
    }

    async fn fulfilment_woken(&self) {
        self.fulfilment.notified().await;
    }

    /// The writer of a sale on this instance (started on first use), or `None` if there
    /// is no such sale.
    pub async fn writer(
        &self,
        state: &AppState,
        sale_id: &str,
    ) -> Result<Option<Arc<SaleWriter>>, sqlx::Error> {
        if !plausible_id(sale_id) {
            return Ok(None);
        }
        if let Some(writer) = self.lock().get(sale_id) {
            return Ok(Some(writer.clone()));
        }
        let Some(sale) = store::sale(&state.db.pool, sale_id).await? else {
            return Ok(None);
        };
        let mut writers = self.lock();
        let writer = writers
            .entry(sale_id.to_owned())
            .or_insert_with(|| Arc::new(SaleWriter::start(state, sale)));
        Ok(Some(writer.clone()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SaleWriter>>> {
        self.writers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn queue_length(&self, sale_id: &str) -> u64 {
        self.lock()
            .get(sale_id)
            .map_or(0, |w| w.snapshot().queue_length)
    }

    fn payment_fails(&self, state: &AppState) -> bool {
        let mut bytes = [0u8; 4];
        state.entropy.fill(&mut bytes);
        u32::from_le_bytes(bytes) % 1_000_000 < self.payment_failure_ppm.load(Ordering::Relaxed)
    }
}

/// The checkouts an instance saw lately, bounded by [`SEEN_KEYS`] in two generations:
/// when the newer one holds half, the older is forgotten and the newer takes its place.
/// Constant time per checkout: forgetting by age meant a scan of every entry per
/// checkout once the memory was full of young entries (a rush of distinct keys).
#[derive(Default)]
struct Seen {
    newer: HashSet<(String, String)>,
    older: HashSet<(String, String)>,
}

impl Seen {
    fn contains(&self, checkout: &(String, String)) -> bool {
        self.newer.contains(checkout) || self.older.contains(checkout)
    }

    fn insert(&mut self, checkout: (String, String)) {
        if self.newer.len() >= SEEN_KEYS / 2 {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(checkout);
    }
}

fn ppm(probability: f64) -> u32 {
    (probability.clamp(0.0, 1.0) * 1_000_000.0).round() as u32
}

/// Expires every sale's due reservations (through each sale's writer on this instance,
/// which then admits its queue); answers how many expired. Run by the maintenance pass;
/// each writer also does it every 250 ms.
pub async fn expire_due(state: &AppState) -> Result<u64, sqlx::Error> {
    let mut expired = 0;
    for sale_id in store::sales_with_due(&state.db.pool, state.clock.now_ms()).await? {
        let Some(writer) = state.sales.writer(state, &sale_id).await? else {
            continue;
        };
        match writer.tick().await {
            Ok(n) => expired += n,
            Err(err) => tracing::warn!(%err, %sale_id, "could not expire reservations"),
        }
    }
    Ok(expired)
}

/// Who buys: an account, or a guest session.
pub fn buyer_of(session: &Session) -> String {
    match &session.user {
        Some(user) => format!("user:{}", user.id),
        None => format!("guest:{}", session.id),
    }
}

fn view(state: &AppState, sale: &SaleRow, now: i64) -> SaleView {
    let figures = sale.figures();
    SaleView {
        id: sale.id.clone(),
        name: sale.name.clone(),
        product_id: sale.product_id.clone(),
        stock: sale.stock,
        starts_at: format_rfc3339_ms(sale.starts_at_ms),
        starts_at_ms: sale.starts_at_ms,
        per_user_limit: sale.per_user_limit,
        reservation_ttl_s: sale.reservation_ttl_ms / 1000,
        state: if sale.sold >= sale.stock {
            SaleState::SoldOut
        } else if now < sale.starts_at_ms {
            SaleState::Scheduled
        } else {
            SaleState::Live
        },
        sold: figures.sold,
        reserved: figures.reserved,
        stock_left: figures.stock_left,
        queue_length: state.sales.queue_length(&sale.id),
        topic: sale_topic(&sale.id),
        now_ms: now,
    }
}

fn write_error(err: WriteError) -> ApiError {
    match err {
        WriteError::Busy => ApiError::unavailable("too many checkouts are waiting; retry shortly"),
        WriteError::Stopped => ApiError::unavailable("the server is shutting down"),
        WriteError::Ids(message) => {
            tracing::warn!(%message, "no id for a sale write");
            ApiError::unavailable("this instance cannot mint ids right now; retry shortly")
        }
        WriteError::Db(err) => match &*err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                ApiError::unavailable("the database is busy or unavailable; retry shortly")
            }
            other => ApiError::internal(other),
        },
    }
}

fn no_sale(id: &str) -> ApiError {
    ApiError::not_found(format!("there is no sale {id}"))
}

/// Creates a sale (admins).
#[utoipa::path(
    post,
    path = "/api/sales",
    tag = "sales",
    request_body = CreateSale,
    responses(
        (status = 201, description = "The new sale", body = SaleView),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `sales:admin`", body = ApiErrorBody),
        (status = 422, description = "`invalid_name`, `invalid_product`, `invalid_stock`, `invalid_starts_at`, `invalid_per_user_limit`, `invalid_reservation_ttl`", body = ApiErrorBody),
        (status = 503, description = "`unavailable`: no id could be minted, or the database is busy", body = ApiErrorBody),
    )
)]
async fn create_sale(
    State(state): State<AppState>,
    session: Session,
    Json(body): Json<CreateSale>,
) -> ApiResult<(StatusCode, Json<SaleView>)> {
    let user = session.require(&access::ADMIN)?;
    let sale = body
        .validate()
        .map_err(|err| ApiError::unprocessable(err.code(), err.to_string()))?;
    let id = state
        .ids
        .next_id()
        .map_err(|err| ApiError::unavailable(format!("cannot mint an id: {err}")))?;
    let now = state.clock.now_ms();
    store::insert_sale(&state.db.pool, &id, &sale, &user.id, now).await?;
    let row = store::sale(&state.db.pool, &id)
        .await?
        .ok_or_else(|| ApiError::internal("a new sale vanished"))?;
    Ok((StatusCode::CREATED, Json(view(&state, &row, now))))
}

/// Every sale, newest first.
#[utoipa::path(
    get,
    path = "/api/sales",
    tag = "sales",
    responses((status = 200, body = SaleList))
)]
async fn list_sales(State(state): State<AppState>) -> ApiResult<Json<SaleList>> {
    let now = state.clock.now_ms();
    let sales = store::sales(&state.db.pool).await?;
    Ok(Json(SaleList {
        sales: sales.iter().map(|s| view(&state, s, now)).collect(),
    }))
}

/// One sale: stock left, reserved, sold, this server's queue length, state.
#[utoipa::path(
    get,
    path = "/api/sales/{id}",
    tag = "sales",
    params(("id" = String, Path, description = "The sale's id")),
    responses(
        (status = 200, body = SaleView),
        (status = 404, description = "`not_found`", body = ApiErrorBody),
    )
)]
async fn get_sale(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<SaleView>> {
    if !plausible_id(&id) {
        return Err(no_sale(&id));
    }
    let sale = store::sale(&state.db.pool, &id)
        .await?
        .ok_or_else(|| no_sale(&id))?;
    Ok(Json(view(&state, &sale, state.clock.now_ms())))
}

/// The admin's live figures of a sale.
#[utoipa::path(
    get,
    path = "/api/sales/{id}/dashboard",
    tag = "sales",
    params(("id" = String, Path, description = "The sale's id")),
    responses(
        (status = 200, body = SaleDashboard),
        (status = 401, description = "`sign_in_required`", body = ApiErrorBody),
        (status = 403, description = "`forbidden`: needs `sales:admin`", body = ApiErrorBody),
        (status = 404, description = "`not_found`", body = ApiErrorBody),
    )
)]
async fn dashboard(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<SaleDashboard>> {
    session.require(&access::ADMIN)?;
    if !plausible_id(&id) {
        return Err(no_sale(&id));
    }
    let sale = store::sale(&state.db.pool, &id)
        .await?
        .ok_or_else(|| no_sale(&id))?;
    let now = state.clock.now_ms();
    let (recent, orders) = store::order_counts(&state.db.pool, &id, now - 10_000).await?;
    Ok(Json(SaleDashboard {
        sale_id: id.clone(),
        figures: sale.figures(),
        orders_per_second: recent as f64 / 10.0,
        orders,
        queue_length: state.sales.queue_length(&id),
        fulfilment_backlog: store::fulfilment_backlog(&state.db.pool, &id).await?,
    }))
}

/// Tries to reserve a unit. The same request repeated with its `Idempotency-Key`
/// answers the current state (its reservation, its queue position, or sold out).
#[utoipa::path(
    post,
    path = "/api/sales/{id}/checkout",
    tag = "sales",
    params(
        ("id" = String, Path, description = "The sale's id"),
        ("Idempotency-Key" = String, Header, description = "1 to 128 printable ASCII characters; the same key answers the same reservation"),
    ),
    responses(
        (status = 200, description = "`reserved`: a unit is held until `expires_at`", body = CheckoutAnswer),
        (status = 202, description = "`queued`: every unit left is reserved by others; `position` in this server's queue. Ask again with the same key", body = CheckoutAnswer),
        (status = 400, description = "`missing_idempotency_key` or `invalid_idempotency_key`", body = ApiErrorBody),
        (status = 404, description = "`not_found`: no such sale", body = ApiErrorBody),
        (status = 409, description = "`limit_reached` (this buyer holds or bought its limit) or `not_started`", body = ApiErrorBody),
        (status = 410, description = "`sold_out` (nothing left that could come back), or `reservation_expired` (this key's reservation expired: use a new key)", body = ApiErrorBody),
        (status = 429, description = "`too_many_attempts`: this buyer or address checks out too often; `Retry-After`", body = ApiErrorBody),
        (status = 503, description = "`unavailable`: too many checkouts waiting, or shutting down; `Retry-After`", body = ApiErrorBody),
    )
)]
async fn checkout(
    State(state): State<AppState>,
    session: Session,
    ClientAddr(address): ClientAddr,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<(StatusCode, Json<CheckoutAnswer>)> {
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::bad_request(
                "missing_idempotency_key",
                "a checkout needs an Idempotency-Key header",
            )
        })?
        .to_str()
        .ok()
        .filter(|k| valid_idempotency_key(k))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "an Idempotency-Key is 1 to 128 printable ASCII characters",
            )
        })?;
    let now = state.clock.now_ms();
    let buyer = buyer_of(&session);
    // Asking again with the same key (how a queued buyer follows its place) is not a new
    // attempt; a key the limits refused is not remembered, so it is refused again.
    if !state.sales.seen_before(&buyer, key) {
        state
            .sales
            .per_buyer
            .attempt(&buyer, now)
            .map_err(|secs| ApiError::too_many("too many checkouts from this buyer", secs))?;
        if let Some(address) = address {
            state
                .sales
                .per_address
                .attempt(&address.to_string(), now)
                .map_err(|secs| ApiError::too_many("too many checkouts from this address", secs))?;
        }
        state.sales.remember(&buyer, key);
    }
    let writer = state
        .sales
        .writer(&state, &id)
        .await?
        .ok_or_else(|| no_sale(&id))?;
    if now < writer.sale.starts_at_ms {
        return Err(ApiError::conflict(
            "not_started",
            format!(
                "the sale starts at {}",
                format_rfc3339_ms(writer.sale.starts_at_ms)
            ),
        ));
    }
    let attempt = Attempt {
        buyer,
        key: key.to_owned(),
    };
    if writer
        .sold_out()
        .is_some_and(|sold_out| sold_out.surely_refused(&attempt))
    {
        return Err(sold_out());
    }
    match writer.checkout(attempt).await.map_err(write_error)? {
        Checkout::Reserved(existing) => Ok((
            StatusCode::OK,
            Json(CheckoutAnswer::reserved(
                existing.reservation_id,
                existing.expires_at_ms,
                existing.state == ReservationState::Paid,
            )),
        )),
        Checkout::Queued(position) => Ok((
            StatusCode::ACCEPTED,
            Json(CheckoutAnswer::Queued { position }),
        )),
        Checkout::SoldOut => Err(sold_out()),
        Checkout::LimitReached => Err(ApiError::conflict(
            "limit_reached",
            format!(
                "one buyer may hold or buy {} of this sale",
                writer.sale.per_user_limit
            ),
        )),
        Checkout::Expired => Err(reservation_expired()),
    }
}

fn sold_out() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "sold_out",
        "every unit is sold or promised to those ahead of you",
    )
}

fn reservation_expired() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "reservation_expired",
        "this reservation expired unpaid; its unit went back to the sale",
    )
}

/// Pays for a reservation (a simulated payment that sometimes fails). Retrying answers
/// the same order.
#[utoipa::path(
    post,
    path = "/api/reservations/{id}/pay",
    tag = "sales",
    params(("id" = String, Path, description = "The reservation's id")),
    responses(
        (status = 200, description = "`confirmed`: the order is durable", body = PaymentAnswer),
        (status = 402, description = "`payment_failed`: the reservation stays until it expires; retry", body = ApiErrorBody),
        (status = 404, description = "`not_found`: no such reservation of this buyer", body = ApiErrorBody),
        (status = 410, description = "`reservation_expired`", body = ApiErrorBody),
        (status = 503, description = "`unavailable`", body = ApiErrorBody),
    )
)]
async fn pay(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> ApiResult<Json<PaymentAnswer>> {
    let buyer = buyer_of(&session);
    if !plausible_id(&id) {
        return Err(ApiError::not_found(format!("you hold no reservation {id}")));
    }
    let reservation = {
        let mut conn = state.db.pool.acquire().await?;
        store::reservation(&mut conn, &id).await?
    };
    let reservation = reservation
        .filter(|r| r.buyer == buyer)
        .ok_or_else(|| ApiError::not_found(format!("you hold no reservation {id}")))?;
    let confirmed = |order_id: String| {
        Json(PaymentAnswer {
            status: "confirmed".into(),
            order_id,
        })
    };
    if let Some(order_id) = reservation.order_id {
        return Ok(confirmed(order_id));
    }
    if reservation.state != ReservationState::Reserved
        || reservation.expires_at_ms <= state.clock.now_ms()
    {
        return Err(reservation_expired());
    }
    if state.sales.payment_fails(&state) {
        return Err(ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "payment_failed",
            "the payment was declined; the reservation holds until it expires, retry",
        ));
    }
    let writer = state
        .sales
        .writer(&state, &reservation.sale_id)
        .await?
        .ok_or_else(|| no_sale(&reservation.sale_id))?;
    match writer
        .pay(reservation.id, buyer)
        .await
        .map_err(write_error)?
    {
        Payment::Confirmed(order_id) => Ok(confirmed(order_id)),
        Payment::Expired => Err(reservation_expired()),
    }
}

/// This buyer's orders and their fulfilment, newest first.
#[utoipa::path(
    get,
    path = "/api/orders",
    tag = "sales",
    responses((status = 200, body = OrderList))
)]
async fn orders(State(state): State<AppState>, session: Session) -> ApiResult<Json<OrderList>> {
    let rows = store::orders_of(&state.db.pool, &buyer_of(&session)).await?;
    Ok(Json(OrderList {
        orders: rows
            .into_iter()
            .map(|o| OrderView {
                order_id: o.id,
                sale_id: o.sale_id,
                reservation_id: o.reservation_id,
                product_id: o.product_id,
                created_at: format_rfc3339_ms(o.created_at_ms),
                fulfilment: if o.fulfilled {
                    Fulfilment::Fulfilled
                } else {
                    Fulfilment::Pending
                },
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::{Seen, SEEN_KEYS};

    #[test]
    fn seen_checkouts_are_bounded_and_the_latest_half_kept() {
        let mut seen = Seen::default();
        let key = |i: usize| ("guest:b".to_owned(), format!("k{i}"));
        let n = SEEN_KEYS * 2 + 17;
        for i in 0..n {
            seen.insert(key(i));
            assert!(seen.newer.len() + seen.older.len() <= SEEN_KEYS);
        }
        for i in n - SEEN_KEYS / 2..n {
            assert!(seen.contains(&key(i)), "checkout {i} forgotten too soon");
        }
        assert!(!seen.contains(&key(0)));
    }
}
