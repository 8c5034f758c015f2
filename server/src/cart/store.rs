//! The cart's SQL and its write path: a change locks the cart row, applies the ops to the
//! live snapshot, appends the history, and appends the realtime event
//! (`realtime::Events`), so a change and its notification commit together. Changes are
//! group-committed (`batch.rs`): many carts' changes in one transaction, each in its own
//! savepoint.

use std::collections::HashSet;
use std::sync::Arc;

use meridian_shared::cart::{
    merge_guest, tombstones_of, Cart, CartError, CartEvent, CartHistoryEntry, CartOp, CartOpType,
    CartOwner, HistoryKind, MergeMode, MergeSummary, Received,
};
use sqlx::{AnyConnection, AnyPool, Row};

use super::{CartRef, Carts};
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

/// A cart row locked for this transaction: created if absent, else touched, in one
/// statement that takes its write lock (SQLite: the database's; PostgreSQL: the row's)
/// before anything is read.
async fn lock(
    conn: &mut AnyConnection,
    cart: &CartRef,
    now: i64,
) -> Result<StoredCart, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO carts (id, owner_kind, owner_id, version, ops, created_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, 0, '[]', $4, $4)
         ON CONFLICT (id) DO UPDATE SET updated_at_ms = excluded.updated_at_ms
         RETURNING version, ops",
    )
    .bind(&cart.id)
    .bind(match cart.owner {
        CartOwner::Guest => "guest",
        CartOwner::User => "user",
    })
    .bind(&cart.owner_id)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(StoredCart {
        version: row.try_get::<i64, _>(0)? as u64,
        live: decode_ops(&row.try_get::<String, _>(1)?)?,
    })
}

async fn known(conn: &mut AnyConnection, cart_id: &str, op_id: &str) -> Result<bool, sqlx::Error> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM cart_history WHERE cart_id = $1 AND op_id = $2")
            .bind(cart_id)
            .bind(op_id)
            .fetch_optional(conn)
            .await?;
    Ok(found.is_some())
}

async fn scopes(
    conn: &mut AnyConnection,
    cart_id: &str,
    op_id: &str,
) -> Result<Vec<Option<String>>, sqlx::Error> {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT scope FROM cart_tombstones WHERE cart_id = $1 AND op_id = $2")
            .bind(cart_id)
            .bind(op_id)
            .fetch_all(conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|s| (!s.is_empty()).then_some(s))
        .collect())
}

/// Why one op of a change was not received.
enum OpError {
    Refused(CartError),
    Db(sqlx::Error),
}

impl From<sqlx::Error> for OpError {
    fn from(err: sqlx::Error) -> OpError {
        OpError::Db(err)
    }
}

/// One change being built inside a locked transaction.
struct Change {
    /// The version this change produces.
    version: u64,
    live: Cart,
    entries: Vec<Entry>,
    seen: HashSet<String>,
}

/// A history row.
struct Entry {
    op_id: String,
    kind: &'static str,
    json: String,
    dead: bool,
}

impl Change {
    fn new(stored: StoredCart) -> Change {
        Change {
            version: stored.version + 1,
            live: stored.live,
            entries: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// Receives one op: a duplicate (in this change or the history) is skipped; a new op
    /// is completed (`fill_observed`: with every live op it concerns), checked, applied
    /// to the live snapshot and recorded with its tombstones. Returns whether it was new.
    async fn receive(
        &mut self,
        conn: &mut AnyConnection,
        carts: &Carts,
        cart_id: &str,
        mut op: CartOp,
        fill_observed: bool,
    ) -> Result<bool, OpError> {
        if !self.seen.insert(op.op_id.clone()) || known(conn, cart_id, &op.op_id).await? {
            return Ok(false);
        }
        if fill_observed && op.op_type != CartOpType::Add {
            let scope = match op.op_type {
                CartOpType::Clear => None,
                _ => op.product_id.as_deref(),
            };
            op.observed = self.live.observed(scope);
        }
        let scopes = scopes(conn, cart_id, &op.op_id).await?;
        let received = self
            .live
            .receive_compacting(op.clone(), &scopes)
            .map_err(OpError::Refused)?;
        carts.observe_clock(&op.hlc);
        for (seen, scope) in tombstones_of(&op) {
            sqlx::query(
                "INSERT INTO cart_tombstones (cart_id, op_id, scope) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(cart_id)
            .bind(seen)
            .bind(scope.unwrap_or_default())
            .execute(&mut *conn)
            .await?;
        }
        self.entries.push(Entry {
            json: serde_json::to_string(&op).expect("ops serialise"),
            op_id: op.op_id,
            kind: "op",
            dead: matches!(received, Received::Dead { .. }),
        });
        Ok(true)
    }

    /// Writes the snapshot and the history, and appends the realtime event of the new cart.
    async fn finish(
        self,
        state: &AppState,
        conn: &mut AnyConnection,
        events: &mut Events,
        cart: &CartRef,
        session_id: Option<&str>,
        now: i64,
    ) -> Result<StoredCart, sqlx::Error> {
        sqlx::query("UPDATE carts SET version = $2, ops = $3 WHERE id = $1")
            .bind(&cart.id)
            .bind(self.version as i64)
            .bind(encode_ops(&self.live))
            .execute(&mut *conn)
            .await?;
        for (position, entry) in self.entries.iter().enumerate() {
            sqlx::query(
                "INSERT INTO cart_history
                     (cart_id, op_id, version, position, kind, entry, dead, session_id, at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&cart.id)
            .bind(&entry.op_id)
            .bind(self.version as i64)
            .bind(position as i64)
            .bind(entry.kind)
            .bind(&entry.json)
            .bind(i64::from(entry.dead))
            .bind(session_id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        let stored = StoredCart {
            version: self.version,
            live: self.live,
        };
        let view = state.carts.view(cart, &stored, None);
        let payload = serde_json::to_value(CartEvent::Cart { cart: view }).expect("serialises");
        let op_id = format!("cart:{}:{}", cart.id, stored.version);
        events
            .append(conn, &cart.topic, &op_id, payload, session_id)
            .await?;
        Ok(stored)
    }
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
        .submit(super::batch::Request {
            cart: cart.clone(),
            ops,
            session_id: session_id.map(str::to_owned),
        })
        .await
}

/// One change inside the caller's transaction (a savepoint of a batch): locks the cart,
/// receives the ops, and if any was new writes the snapshot and history and appends the
/// event to `events`. On `Ok((_, false))` and on a refusal the caller rolls back what
/// this wrote (the touch of the cart row).
pub(super) async fn apply_in(
    state: &AppState,
    conn: &mut AnyConnection,
    events: &mut Events,
    cart: &CartRef,
    ops: Vec<(CartOp, bool)>,
    session_id: Option<&str>,
    now: i64,
) -> Result<(StoredCart, bool), WriteError> {
    let mut change = Change::new(lock(conn, cart, now).await?);
    for (index, (op, fill_observed)) in ops.into_iter().enumerate() {
        match change
            .receive(conn, &state.carts, &cart.id, op, fill_observed)
            .await
        {
            Ok(_) => {}
            Err(OpError::Refused(err)) => return Err(WriteError::Op(index, err)),
            Err(OpError::Db(err)) => return Err(err.into()),
        }
    }
    if change.entries.is_empty() {
        let stored = StoredCart {
            version: change.version - 1,
            live: change.live,
        };
        return Ok((stored, false));
    }
    let stored = change
        .finish(state, conn, events, cart, session_id, now)
        .await?;
    Ok((stored, true))
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
    let stored = lock(&mut tx, account, now).await?;
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
    let before = stored.live.lines();
    let ops = {
        let mut clock = state.carts.clock();
        merge_guest(
            &stored.live,
            &guest_cart,
            &guest.id,
            mode,
            &mut clock,
            now as u64,
        )
    };
    let mut change = Change::new(stored);
    let mut not_merged = 0;
    for op in ops {
        match change
            .receive(&mut tx, &state.carts, &account.id, op, false)
            .await
        {
            Ok(_) => {}
            // A full account cart: the line stays in the guest cart's history.
            Err(OpError::Refused(_)) => not_merged += 1,
            Err(OpError::Db(err)) => return Err(err),
        }
    }
    let after = change.live.lines();
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
        Entry {
            op_id: format!("merge:{}", guest.id),
            kind: "merge",
            json: summary_json,
            dead: false,
        },
    );
    let mut events = Events::new(&state.hub);
    change
        .finish(state, &mut tx, &mut events, account, session_id, now)
        .await?;
    tx.commit().await?;
    events.deliver();
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
