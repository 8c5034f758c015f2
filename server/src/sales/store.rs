//! The flash sale's SQL, written once for both backends (`$n` parameters, anonymous on
//! SQLite where a batch's rows are bound as one JSON parameter: see `db::json_rows`;
//! `BIGINT` milliseconds, `TEXT` ids). The `sales` row is the ledger of record: every statement
//! that changes `sold` or `reserved` runs in a transaction that first locked that row
//! ([`lock_sale`]) and writes the reservation or order rows that explain the change;
//! the table's CHECK refuses sold + reserved > stock whatever happens.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use meridian_shared::api::DatabaseBackend;
use meridian_shared::sales::{SaleFigures, ValidSale};
use sqlx::{AnyConnection, AnyPool, Row};

use super::engine::{BuyerRows, Existing, ReservationState};
use crate::db::{json_param, json_rows, param};

/// A sale as stored.
#[derive(Debug, Clone)]
pub struct SaleRow {
    pub id: String,
    pub name: String,
    pub product_id: String,
    pub stock: i64,
    pub sold: i64,
    pub reserved: i64,
    pub starts_at_ms: i64,
    pub per_user_limit: i64,
    pub reservation_ttl_ms: i64,
}

impl SaleRow {
    pub fn figures(&self) -> SaleFigures {
        SaleFigures::new(self.stock, self.sold, self.reserved)
    }
}

const SALE_COLUMNS: &str =
    "id, name, product_id, stock, sold, reserved, starts_at_ms, per_user_limit, reservation_ttl_ms";

fn sale_row(row: &sqlx::any::AnyRow) -> Result<SaleRow, sqlx::Error> {
    Ok(SaleRow {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        product_id: row.try_get(2)?,
        stock: row.try_get(3)?,
        sold: row.try_get(4)?,
        reserved: row.try_get(5)?,
        starts_at_ms: row.try_get(6)?,
        per_user_limit: row.try_get(7)?,
        reservation_ttl_ms: row.try_get(8)?,
    })
}

pub async fn insert_sale(
    pool: &AnyPool,
    id: &str,
    sale: &ValidSale,
    created_by: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sales (id, name, product_id, stock, sold, reserved, starts_at_ms, per_user_limit, reservation_ttl_ms, created_by, created_at_ms) \
         VALUES ($1, $2, $3, $4, 0, 0, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(&sale.name)
    .bind(&sale.product_id)
    .bind(sale.stock)
    .bind(sale.starts_at_ms)
    .bind(sale.per_user_limit)
    .bind(sale.reservation_ttl_ms)
    .bind(created_by)
    .bind(now_ms)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn sale(pool: &AnyPool, id: &str) -> Result<Option<SaleRow>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {SALE_COLUMNS} FROM sales WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(sale_row).transpose()
}

/// Every sale, the newest first (at most 200).
pub async fn sales(pool: &AnyPool) -> Result<Vec<SaleRow>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {SALE_COLUMNS} FROM sales ORDER BY created_at_ms DESC, id DESC LIMIT 200"
    ))
    .fetch_all(pool)
    .await?;
    rows.iter().map(sale_row).collect()
}

fn figures_of(row: &sqlx::any::AnyRow) -> Result<SaleFigures, sqlx::Error> {
    Ok(SaleFigures::new(
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
    ))
}

/// The ledger's figures, read without a lock (a refresh of what the writer knows).
pub async fn figures(pool: &AnyPool, sale_id: &str) -> Result<Option<SaleFigures>, sqlx::Error> {
    let row = sqlx::query("SELECT stock, sold, reserved FROM sales WHERE id = $1")
        .bind(sale_id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(figures_of).transpose()
}

/// Locks the sale's row for the rest of the transaction and reads its figures. A write
/// (that changes nothing), so that it is the transaction's first statement on SQLite too
/// and takes the write lock at once; on PostgreSQL it takes the row lock every other
/// writer of this sale, on any instance, waits for.
pub async fn lock_sale(
    conn: &mut AnyConnection,
    sale_id: &str,
) -> Result<Option<SaleFigures>, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE sales SET reserved = reserved WHERE id = $1 RETURNING stock, sold, reserved",
    )
    .bind(sale_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(figures_of).transpose()
}

/// Moves `reserved` by `reserved_delta` and `sold` by `sold_delta`; answers the new
/// figures. The CHECK refuses a result past the stock (an error, never an oversell).
pub async fn change_figures(
    conn: &mut AnyConnection,
    sale_id: &str,
    reserved_delta: i64,
    sold_delta: i64,
) -> Result<SaleFigures, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE sales SET reserved = reserved + $2, sold = sold + $3 WHERE id = $1 RETURNING stock, sold, reserved",
    )
    .bind(sale_id)
    .bind(reserved_delta)
    .bind(sold_delta)
    .fetch_one(&mut *conn)
    .await?;
    figures_of(&row)
}

/// The reservations (any state) of `buyers` in a sale: by key, and how many units each
/// holds (reserved or paid).
pub async fn buyer_rows(
    conn: &mut AnyConnection,
    sale_id: &str,
    buyers: &[&str],
) -> Result<HashMap<String, BuyerRows>, sqlx::Error> {
    let mut out: HashMap<String, BuyerRows> = HashMap::new();
    if buyers.is_empty() {
        return Ok(out);
    }
    let listed: Vec<(&str,)> = buyers.iter().map(|b| (*b,)).collect();
    let (sale, list) = (param(conn, 1), json_rows(conn, 2));
    let sql = format!(
        "SELECT buyer, idempotency_key, id, state, expires_at_ms FROM sale_reservations \
         WHERE sale_id = {sale} AND buyer IN (SELECT v.r ->> 0 FROM {list})"
    );
    let query = sqlx::query(&sql)
        .persistent(false)
        .bind(sale_id)
        .bind(json_param(&listed)?);
    for row in query.fetch_all(&mut *conn).await? {
        let buyer: String = row.try_get(0)?;
        let state: String = row.try_get(3)?;
        let state = ReservationState::parse(&state).unwrap_or(ReservationState::Expired);
        let entry = out.entry(buyer).or_default();
        if state != ReservationState::Expired {
            entry.held += 1;
        }
        entry.by_key.insert(
            row.try_get(1)?,
            Existing {
                reservation_id: row.try_get(2)?,
                expires_at_ms: row.try_get(4)?,
                state,
            },
        );
    }
    Ok(out)
}

/// Calls `each(buyer, idempotency_key)` for every reservation of a sale, whatever its
/// state, streaming the rows.
pub async fn each_reservation_key(
    pool: &AnyPool,
    sale_id: &str,
    mut each: impl FnMut(&str, &str),
) -> Result<(), sqlx::Error> {
    let mut rows =
        sqlx::query("SELECT buyer, idempotency_key FROM sale_reservations WHERE sale_id = $1")
            .bind(sale_id)
            .fetch(pool);
    while let Some(row) = rows.try_next().await? {
        each(row.try_get(0)?, row.try_get(1)?);
    }
    Ok(())
}

/// A new reservation row.
pub struct NewReservation<'a> {
    pub id: &'a str,
    pub buyer: &'a str,
    pub key: &'a str,
}

/// Inserts reservations (state `reserved`) in one statement.
pub async fn insert_reservations(
    conn: &mut AnyConnection,
    sale_id: &str,
    rows: &[NewReservation<'_>],
    now_ms: i64,
    expires_at_ms: i64,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let listed: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r.id, r.buyer, r.key)).collect();
    let (sale, now, expires) = (param(conn, 1), param(conn, 2), param(conn, 3));
    let sql = format!(
        "INSERT INTO sale_reservations (id, sale_id, buyer, idempotency_key, state, created_at_ms, expires_at_ms) \
         SELECT v.r ->> 0, {sale}, v.r ->> 1, v.r ->> 2, 'reserved', {now}, {expires} FROM {}",
        json_rows(conn, 4)
    );
    sqlx::query(&sql)
        .bind(sale_id)
        .bind(now_ms)
        .bind(expires_at_ms)
        .bind(json_param(&listed)?)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A reservation as the pay route sees it.
#[derive(Debug, Clone)]
pub struct ReservationRow {
    pub id: String,
    pub sale_id: String,
    pub buyer: String,
    pub state: ReservationState,
    pub expires_at_ms: i64,
    pub order_id: Option<String>,
}

pub async fn reservation(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<ReservationRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, sale_id, buyer, state, expires_at_ms, order_id FROM sale_reservations WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let state: String = row.try_get(3)?;
    Ok(Some(ReservationRow {
        id: row.try_get(0)?,
        sale_id: row.try_get(1)?,
        buyer: row.try_get(2)?,
        state: ReservationState::parse(&state).unwrap_or(ReservationState::Expired),
        expires_at_ms: row.try_get(4)?,
        order_id: row.try_get(5)?,
    }))
}

/// Marks reservations paid, each with its order id, where still reserved, unexpired and
/// held by the given buyer, in one statement. `payments` are `(reservation, order,
/// buyer)`. Answers the reservations it paid.
pub async fn mark_paid(
    conn: &mut AnyConnection,
    payments: &[(&str, &str, &str)],
    now_ms: i64,
) -> Result<Vec<String>, sqlx::Error> {
    if payments.is_empty() {
        return Ok(Vec::new());
    }
    // The rows come first in the text, then the time: bound in that order.
    let (rows, now) = (json_rows(conn, 1), param(conn, 2));
    let sql = format!(
        "UPDATE sale_reservations SET state = 'paid', order_id = v.r ->> 1 FROM {rows} \
         WHERE sale_reservations.id = v.r ->> 0 AND sale_reservations.buyer = v.r ->> 2 \
         AND sale_reservations.state = 'reserved' AND sale_reservations.expires_at_ms > {now} \
         RETURNING sale_reservations.id"
    );
    sqlx::query_scalar(&sql)
        .persistent(false)
        .bind(json_param(payments)?)
        .bind(now_ms)
        .fetch_all(&mut *conn)
        .await
}

/// A confirmed order to insert with its outbox row.
pub struct NewOrder<'a> {
    pub id: &'a str,
    pub reservation_id: &'a str,
    pub buyer: &'a str,
}

/// Inserts orders and their outbox rows, a statement each.
pub async fn insert_orders(
    conn: &mut AnyConnection,
    sale_id: &str,
    product_id: &str,
    orders: &[NewOrder<'_>],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    if orders.is_empty() {
        return Ok(());
    }
    let listed: Vec<(&str, &str, &str)> = orders
        .iter()
        .map(|o| (o.id, o.reservation_id, o.buyer))
        .collect();
    let listed = json_param(&listed)?;
    let (sale, product, now) = (param(conn, 1), param(conn, 2), param(conn, 3));
    let sql = format!(
        "INSERT INTO sale_orders (id, sale_id, reservation_id, buyer, product_id, created_at_ms) \
         SELECT v.r ->> 0, {sale}, v.r ->> 1, v.r ->> 2, {product}, {now} FROM {}",
        json_rows(conn, 4)
    );
    sqlx::query(&sql)
        .bind(sale_id)
        .bind(product_id)
        .bind(now_ms)
        .bind(&listed)
        .execute(&mut *conn)
        .await?;
    let sql = format!(
        "INSERT INTO sale_outbox (order_id, created_at_ms, attempts) SELECT v.r ->> 0, {}, 0 FROM {}",
        param(conn, 1),
        json_rows(conn, 2)
    );
    sqlx::query(&sql)
        .bind(now_ms)
        .bind(&listed)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Marks the sale's reservations due by `now_ms` expired; answers how many.
pub async fn expire_due(
    conn: &mut AnyConnection,
    sale_id: &str,
    now_ms: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sale_reservations SET state = 'expired' WHERE sale_id = $1 AND state = 'reserved' AND expires_at_ms <= $2",
    )
    .bind(sale_id)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// How many of the sale's reservations are due (read without a lock).
pub async fn count_due(pool: &AnyPool, sale_id: &str, now_ms: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM sale_reservations WHERE sale_id = $1 AND state = 'reserved' AND expires_at_ms <= $2",
    )
    .bind(sale_id)
    .bind(now_ms)
    .fetch_one(pool)
    .await
}

/// The sales with reservations due by `now_ms`.
pub async fn sales_with_due(pool: &AnyPool, now_ms: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT sale_id FROM sale_reservations WHERE state = 'reserved' AND expires_at_ms <= $1",
    )
    .bind(now_ms)
    .fetch_all(pool)
    .await
}

/// An order with its fulfilment, for `GET /api/orders`.
pub struct OrderRow {
    pub id: String,
    pub sale_id: String,
    pub reservation_id: String,
    pub product_id: String,
    pub created_at_ms: i64,
    pub fulfilled: bool,
}

/// A buyer's orders, newest first (at most 200).
pub async fn orders_of(pool: &AnyPool, buyer: &str) -> Result<Vec<OrderRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, sale_id, reservation_id, product_id, created_at_ms, fulfilled_at_ms FROM sale_orders WHERE buyer = $1 ORDER BY created_at_ms DESC, id DESC LIMIT 200",
    )
    .bind(buyer)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(OrderRow {
                id: row.try_get(0)?,
                sale_id: row.try_get(1)?,
                reservation_id: row.try_get(2)?,
                product_id: row.try_get(3)?,
                created_at_ms: row.try_get(4)?,
                fulfilled: row.try_get::<Option<i64>, _>(5)?.is_some(),
            })
        })
        .collect()
}

/// Orders of a sale since `since_ms`, and in all.
pub async fn order_counts(
    pool: &AnyPool,
    sale_id: &str,
    since_ms: i64,
) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN created_at_ms > $2 THEN 1 ELSE 0 END), 0) FROM sale_orders WHERE sale_id = $1",
    )
    .bind(sale_id)
    .bind(since_ms)
    .fetch_one(pool)
    .await?;
    Ok((row.try_get(1)?, row.try_get(0)?))
}

/// Confirmed orders of a sale whose outbox row is not done.
pub async fn fulfilment_backlog(pool: &AnyPool, sale_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM sale_outbox o JOIN sale_orders s ON s.id = o.order_id WHERE s.sale_id = $1 AND o.done_at_ms IS NULL",
    )
    .bind(sale_id)
    .fetch_one(pool)
    .await
}

/// Claims up to `limit` pending outbox rows for this transaction: on PostgreSQL with
/// `FOR UPDATE SKIP LOCKED`, so that workers of several instances take different rows;
/// on SQLite the transaction holds the one write lock. Counts an attempt on each.
pub async fn claim_outbox(
    conn: &mut AnyConnection,
    backend: DatabaseBackend,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let skip_locked = match backend {
        DatabaseBackend::Postgres => " FOR UPDATE SKIP LOCKED",
        DatabaseBackend::Sqlite => "",
    };
    sqlx::query_scalar(&format!(
        "UPDATE sale_outbox SET attempts = attempts + 1 WHERE order_id IN \
         (SELECT order_id FROM sale_outbox WHERE done_at_ms IS NULL ORDER BY created_at_ms LIMIT $1{skip_locked}) \
         RETURNING order_id"
    ))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

/// Fulfils claimed orders: the fulfilment row (once per order: a replay inserts
/// nothing), the order's fulfilled time (set once) and the outbox row done. Answers the
/// sales of the orders it marked fulfilled, each once, in ascending order.
pub async fn fulfil(
    conn: &mut AnyConnection,
    order_ids: &[String],
    instance_id: &str,
    now_ms: i64,
) -> Result<Vec<String>, sqlx::Error> {
    if order_ids.is_empty() {
        return Ok(Vec::new());
    }
    let listed: Vec<(&str,)> = order_ids.iter().map(|id| (id.as_str(),)).collect();
    let listed = json_param(&listed)?;
    let (now, instance) = (param(conn, 1), param(conn, 2));
    // SQLite reads `ON CONFLICT` after a SELECT's FROM as a join's constraint unless a
    // WHERE comes between.
    let sql = format!(
        "INSERT INTO sale_fulfilments (order_id, fulfilled_at_ms, instance_id) \
         SELECT v.r ->> 0, {now}, {instance} FROM {} WHERE true ON CONFLICT (order_id) DO NOTHING",
        json_rows(conn, 3)
    );
    sqlx::query(&sql)
        .bind(now_ms)
        .bind(instance_id)
        .bind(&listed)
        .execute(&mut *conn)
        .await?;
    let list = json_rows(conn, 2);
    let sql = format!(
        "UPDATE sale_orders SET fulfilled_at_ms = {now} \
         WHERE fulfilled_at_ms IS NULL AND id IN (SELECT v.r ->> 0 FROM {list}) RETURNING sale_id"
    );
    let sales: std::collections::BTreeSet<String> = sqlx::query_scalar(&sql)
        .persistent(false)
        .bind(now_ms)
        .bind(&listed)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    let sql = format!(
        "UPDATE sale_outbox SET done_at_ms = {now} \
         WHERE done_at_ms IS NULL AND order_id IN (SELECT v.r ->> 0 FROM {list})"
    );
    sqlx::query(&sql)
        .persistent(false)
        .bind(now_ms)
        .bind(&listed)
        .execute(&mut *conn)
        .await?;
    Ok(sales.into_iter().collect())
}
