//! The cart's SQL: reads, the multi-row statements a batch writes with (`batch.rs`
//! decides what; `apply.rs` applies the changes in memory between the reads and the
//! writes), the merge on sign-in, expiry.

use std::sync::Arc;

use meridian_shared::cart::{
    merge_guest, Cart, CartError, CartHistoryEntry, CartOp, CartOwner, HistoryKind, MergeMode,
    MergeSummary,
};
use sqlx::{AnyConnection, AnyPool, Row};

use super::apply::{Change, HistoryRow, Recorded, WorkingCart};
use super::{batch, CartRef};
use crate::db::value_rows;
use crate::realtime::Events;
use crate::AppState;

/// Why a change was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// An op was refused (the whole request changed nothing): its index and why.
    #[error("op {0} was refused: {1}")]
    Op(usize, CartError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// The batch this change was written in failed (nothing of it committed).
    #[error("the batch failed: {0}")]
    Batch(Arc<sqlx::Error>),
    /// The write queue is full: retry shortly.
    #[error("too many cart changes are waiting")]
    Busy,
    /// The server is shutting down.
    #[error("the cart writer has stopped")]
    Stopped,
}

/// A cart as stored.
#[derive(Debug, Clone)]
pub struct StoredCart {
    pub version: u64,
    pub live: Cart,
}

fn decode_ops(json: &str) -> Result<Cart, sqlx::Error> {
    let ops: Vec<CartOp> =
        serde_json::from_str(json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Cart::from_ops(ops))
}

fn encode_ops(cart: &Cart) -> String {
    serde_json::to_string(&cart.ops().collect::<Vec<_>>()).expect("ops serialise")
}

/// Reads a cart (an absent cart is empty at version 0).
pub async fn load(pool: &AnyPool, cart_id: &str) -> Result<StoredCart, sqlx::Error> {
    let row = sqlx::query("SELECT version, ops FROM carts WHERE id = $1")
        .bind(cart_id)
        .fetch_optional(pool)
        .await?;
    match row {
        Some(row) => Ok(StoredCart {
            version: row.try_get::<i64, _>(0)? as u64,
            live: decode_ops(&row.try_get::<String, _>(1)?)?,
        }),
        None => Ok(StoredCart {
            version: 0,
            live: Cart::new(),
        }),
    }
}

/// What this session's sign-in merged into `cart_id`, if it did.
pub async fn merge_summary(
    pool: &AnyPool,
    guest_cart_id: &str,
    cart_id: &str,
) -> Result<Option<MergeSummary>, sqlx::Error> {
    let summary: Option<String> = sqlx::query_scalar(
        "SELECT summary FROM cart_merges WHERE guest_cart_id = $1 AND into_cart_id = $2",
    )
    .bind(guest_cart_id)
    .bind(cart_id)
    .fetch_optional(pool)
    .await?;
    summary
        .map(|s| serde_json::from_str(&s).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .transpose()
}

/// How many history entries one version can have (ops of a request, plus a merge).
const CURSOR_STRIDE: u64 = 1024;

/// A page of history, newest first: entries before the cursor `before`, each with its
/// own cursor (`version * 1024 + position`, opaque to clients).
pub async fn history(
    pool: &AnyPool,
    cart_id: &str,
    before: u64,
    limit: usize,
) -> Result<Vec<(u64, CartHistoryEntry)>, sqlx::Error> {
    let before = before.min(i64::MAX as u64);
    let rows = sqlx::query(
        "SELECT version, at_ms, kind, entry, dead, position FROM cart_history
         WHERE cart_id = $1 AND (version < $2 OR (version = $2 AND position < $3))
         ORDER BY version DESC, position DESC LIMIT $4",
    )
    .bind(cart_id)
    .bind((before / CURSOR_STRIDE) as i64)
    .bind((before % CURSOR_STRIDE) as i64)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let kind: String = row.try_get(2)?;
            let entry: String = row.try_get(3)?;
            let decode = |e: serde_json::Error| sqlx::Error::Decode(Box::new(e));
            let (kind, op, merge) = if kind == "merge" {
                (
                    HistoryKind::Merge,
                    None,
                    Some(serde_json::from_str(&entry).map_err(decode)?),
                )
            } else {
                (
                    HistoryKind::Op,
                    Some(serde_json::from_str(&entry).map_err(decode)?),
                    None,
                )
            };
            let version = row.try_get::<i64, _>(0)? as u64;
            let position = row.try_get::<i64, _>(5)? as u64;
            let entry = CartHistoryEntry {
                version,
                at_ms: row.try_get(1)?,
                kind,
                op,
                merge,
                superseded_on_arrival: row.try_get::<i64, _>(4)? != 0,
            };
            Ok((version * CURSOR_STRIDE + position, entry))
        })
        .collect()
}

/// The most rows one multi-row statement carries (well under both backends' limits on
/// bound parameters). Such statements vary in length, so they are not kept prepared
/// (`persistent(false)`): they would push every other statement out of the cache.
const ROWS_PER_STATEMENT: usize = 256;

/// A cart row locked for this transaction.
#[derive(Debug)]
pub struct Locked {
    pub id: String,
    pub version: u64,
    pub created_at_ms: i64,
}

/// Locks cart rows for this transaction, in the order given (each cart once): each is
/// created if absent, else touched, by statements that take their write locks
/// (SQLite: the database's; PostgreSQL: the rows', in order) before anything is read.
pub async fn lock_carts(
    conn: &mut AnyConnection,
    carts: &[&CartRef],
    now: i64,
) -> Result<Vec<Locked>, sqlx::Error> {
    let mut locked = Vec::with_capacity(carts.len());
    for chunk in carts.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO carts (id, owner_kind, owner_id, version, ops, created_at_ms, updated_at_ms)
             VALUES {}
             ON CONFLICT (id) DO UPDATE SET updated_at_ms = excluded.updated_at_ms
             RETURNING id, version, created_at_ms",
            value_rows(conn, chunk.len(), 7)
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for cart in chunk {
            query = query
                .bind(&cart.id)
                .bind(match cart.owner {
                    CartOwner::Guest => "guest",
                    CartOwner::User => "user",
                })
                .bind(&cart.owner_id)
                .bind(0i64)
                .bind("[]")
                .bind(now)
                .bind(now);
        }
        for row in query.fetch_all(&mut *conn).await? {
            locked.push(Locked {
                id: row.try_get(0)?,
                version: row.try_get::<i64, _>(1)? as u64,
                created_at_ms: row.try_get(2)?,
            });
        }
    }
    Ok(locked)
}

/// The live ops of carts (locked by this transaction): `(id, cart)`.
pub async fn live_ops(
    conn: &mut AnyConnection,
    ids: &[&str],
) -> Result<Vec<(String, Cart)>, sqlx::Error> {
    let mut carts = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "WITH wanted (id) AS (VALUES {})
             SELECT c.id, c.ops FROM carts c JOIN wanted ON c.id = wanted.id",
            value_rows(conn, chunk.len(), 1)
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            carts.push((row.try_get(0)?, decode_ops(&row.try_get::<String, _>(1)?)?));
        }
    }
    Ok(carts)
}

/// What the history and the tombstones hold about `(cart_id, op_id)` pairs, in one
/// statement per chunk.
pub async fn recorded(
    conn: &mut AnyConnection,
    wanted: &[(&str, &str)],
) -> Result<Recorded, sqlx::Error> {
    let mut recorded = Recorded::default();
    for chunk in wanted.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "WITH wanted (cart_id, op_id) AS (VALUES {})
             SELECT 'applied', h.cart_id, h.op_id, '' FROM cart_history h
               JOIN wanted w ON h.cart_id = w.cart_id AND h.op_id = w.op_id
             UNION ALL
             SELECT 'tombstone', t.cart_id, t.op_id, t.scope FROM cart_tombstones t
               JOIN wanted w ON t.cart_id = w.cart_id AND t.op_id = w.op_id",
            value_rows(conn, chunk.len(), 2)
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for (cart_id, op_id) in chunk {
            query = query.bind(*cart_id).bind(*op_id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let what: String = row.try_get(0)?;
            let (cart_id, op_id): (String, String) = (row.try_get(1)?, row.try_get(2)?);
            if what == "applied" {
                recorded.insert_applied(cart_id, op_id);
            } else {
                recorded.insert_tombstone(cart_id, op_id, row.try_get(3)?);
            }
        }
    }
    Ok(recorded)
}

/// Writes the live ops and version of changed carts (locked by this transaction).
pub async fn write_snapshots(
    conn: &mut AnyConnection,
    carts: &[&WorkingCart],
) -> Result<(), sqlx::Error> {
    for chunk in carts.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "WITH changed (id, version, ops) AS (VALUES {})
             UPDATE carts SET version = changed.version, ops = changed.ops
             FROM changed WHERE carts.id = changed.id",
            value_rows(conn, chunk.len(), 3)
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for cart in chunk {
            query = query
                .bind(&cart.id)
                .bind(cart.version as i64)
                .bind(encode_ops(&cart.live));
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A history row of a cart, at its version and position.
pub struct HistoryInsert<'a> {
    pub cart_id: &'a str,
    pub version: u64,
    pub position: usize,
    pub row: &'a HistoryRow,
    pub session_id: Option<&'a str>,
}

/// Appends history rows.
pub async fn insert_history(
    conn: &mut AnyConnection,
    rows: &[HistoryInsert<'_>],
    now: i64,
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO cart_history
                 (cart_id, op_id, version, position, kind, entry, dead, session_id, at_ms)
             VALUES {}",
            value_rows(conn, chunk.len(), 9)
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for insert in chunk {
            query = query
                .bind(insert.cart_id)
                .bind(&insert.row.op_id)
                .bind(insert.version as i64)
                .bind(insert.position as i64)
                .bind(insert.row.kind)
                .bind(&insert.row.json)
                .bind(i64::from(insert.row.dead))
                .bind(insert.session_id)
                .bind(now);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Stores tombstones `(cart_id, op_id, scope)` (those already stored stay).
pub async fn insert_tombstones(
    conn: &mut AnyConnection,
    rows: &[(&str, &str, &str)],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO cart_tombstones (cart_id, op_id, scope) VALUES {}
             ON CONFLICT DO NOTHING",
            value_rows(conn, chunk.len(), 3)
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for (cart_id, op_id, scope) in chunk {
            query = query.bind(*cart_id).bind(*op_id).bind(*scope);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Applies `ops` (each with `fill_observed`: the server completes what the op observed)
/// to a cart, all or nothing, and publishes the new cart: queued for the next batch and
/// answered once that batch is durable. Returns the stored cart and whether it changed.
pub async fn apply(
    state: &AppState,
    cart: &CartRef,
    ops: Vec<(CartOp, bool)>,
    session_id: Option<&str>,
) -> Result<(StoredCart, bool), WriteError> {
    state
        .carts
        .committer(state)
        .submit(batch::Request {
            cart: cart.clone(),
            ops,
            session_id: session_id.map(str::to_owned),
        })
        .await
}

/// Merges a guest cart into an account's cart, once per guest cart: a retried sign-in,
/// a second tab signing in, or a sign-in after a crash mid-merge finds the merge done
/// (the merge commits in one transaction with its `cart_merges` row) and changes nothing.
/// Returns what was merged (now or before), or `None` when the guest cart was empty.
pub async fn merge(
    state: &AppState,
    guest: &CartRef,
    account: &CartRef,
    mode: MergeMode,
    session_id: Option<&str>,
) -> Result<Option<MergeSummary>, sqlx::Error> {
    let pool = &state.db.pool;
    if load(pool, &guest.id).await?.live.lines().is_empty() {
        return Ok(None);
    }
    let _turn = state.db.write_turn().await;
    let now = state.clock.now_ms();
    let mut tx = pool.begin().await?;
    let locked = lock_carts(&mut tx, &[account], now).await?;
    let done: Option<String> =
        sqlx::query_scalar("SELECT summary FROM cart_merges WHERE guest_cart_id = $1")
            .bind(&guest.id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(done) = done {
        tx.rollback().await?;
        return serde_json::from_str(&done)
            .map(Some)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)));
    }
    let guest_row: Option<String> = sqlx::query_scalar("SELECT ops FROM carts WHERE id = $1")
        .bind(&guest.id)
        .fetch_optional(&mut *tx)
        .await?;
    let guest_cart = decode_ops(guest_row.as_deref().unwrap_or("[]"))?;
    let guest_lines = guest_cart.lines();
    let mut target = batch::working_carts(state, &mut tx, locked)
        .await?
        .pop()
        .ok_or(sqlx::Error::RowNotFound)?;
    let before = target.live.lines();
    let ops = {
        let mut clock = state.carts.clock();
        merge_guest(
            &target.live,
            &guest_cart,
            &guest.id,
            mode,
            &mut clock,
            now as u64,
        )
    };
    let wanted: Vec<(&str, &str)> = ops
        .iter()
        .map(|op| (account.id.as_str(), op.op_id.as_str()))
        .collect();
    let recorded = recorded(&mut tx, &wanted).await?;
    let mut change = Change::default();
    let mut not_merged = 0;
    for op in ops {
        // A full account cart refuses a line: it stays in the guest cart's history.
        if target
            .receive(&recorded, &state.carts, &mut change, op, false)
            .is_err()
        {
            not_merged += 1;
        }
    }
    let after = target.live.lines();
    let added_items = after
        .iter()
        .map(|(product, q)| q.saturating_sub(before.get(product).copied().unwrap_or(0)))
        .sum();
    let summary = MergeSummary {
        guest_cart_id: guest.id.clone(),
        mode,
        guest_lines: guest_lines.len() as u32,
        guest_items: guest_lines.values().sum(),
        added_items,
        lines_not_merged: not_merged,
        at_ms: now,
    };
    let summary_json = serde_json::to_string(&summary).expect("serialises");
    sqlx::query(
        "INSERT INTO cart_merges (guest_cart_id, into_cart_id, summary, at_ms)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&guest.id)
    .bind(&account.id)
    .bind(&summary_json)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE carts SET merged_into = $2 WHERE id = $1")
        .bind(&guest.id)
        .bind(&account.id)
        .execute(&mut *tx)
        .await?;
    change.entries.insert(
        0,
        HistoryRow {
            op_id: format!("merge:{}", guest.id),
            kind: "merge",
            json: summary_json,
            dead: false,
        },
    );
    target.accept(&change);
    let accepted = batch::Accepted {
        cart: account.clone(),
        stored: target.stored(),
        change,
        session_id: session_id.map(str::to_owned),
    };
    let mut events = Events::new(&state.hub);
    batch::write_accepted(state, &mut tx, &mut events, &[&target], &[accepted], now).await?;
    tx.commit().await?;
    events.deliver();
    state.carts.snapshots.keep([target]);
    Ok(Some(summary))
}

/// Deletes guest carts idle since `idle_before` whose session is gone or idle too, with
/// their history. Returns how many carts.
pub async fn delete_idle_guest_carts(pool: &AnyPool, idle_before: i64) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    loop {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT c.id FROM carts c WHERE c.owner_kind = 'guest' AND c.updated_at_ms < $1
               AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = c.owner_id
                               AND s.revoked_at_ms IS NULL AND s.last_seen_ms >= $1)
             LIMIT 500",
        )
        .bind(idle_before)
        .fetch_all(pool)
        .await?;
        if ids.is_empty() {
            return Ok(deleted);
        }
        for id in ids {
            let mut tx = pool.begin().await?;
            for sql in [
                "DELETE FROM carts WHERE id = $1",
                "DELETE FROM cart_history WHERE cart_id = $1",
                "DELETE FROM cart_tombstones WHERE cart_id = $1",
            ] {
                sqlx::query(sql).bind(&id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            deleted += 1;
        }
    }
}
