//! The fulfilment worker: every instance runs one; it claims pending outbox rows (on
//! PostgreSQL with `FOR UPDATE SKIP LOCKED`, so instances take different rows) and
//! fulfils them in the same transaction that marks them done.
//!
//! Invariant: each confirmed order is fulfilled exactly once in effect. The outbox row
//! commits with the order (`writer.rs`), so no confirmed order lacks one; the fulfilment
//! row (primary key: the order), the order's fulfilled time and the outbox row's done
//! time commit together, so a crash before the commit leaves the row pending for the
//! next claim, and a replay (a retry after a lost answer) inserts nothing.
//!
//! A pass that marked orders fulfilled appends each of their sales' figures to the sale's topic
//! (op id `fulfil-…`), read under the ledger row's lock taken just before the commit, so
//! that a dashboard refreshes its fulfilment backlog live and the topic's payloads still
//! follow the ledger's order.

use std::time::Duration;

use super::store;
use super::writer::append_figures;
use crate::realtime::Events;
use crate::AppState;

/// Outbox rows one transaction claims.
pub const CLAIM: i64 = 256;
/// How often the worker looks when nothing woke it.
pub const POLL: Duration = Duration::from_millis(500);

/// One pass: claims and fulfils up to [`CLAIM`] orders; answers how many.
pub async fn fulfil_pending(state: &AppState) -> Result<u64, sqlx::Error> {
    let _turn = state.db.write_turn().await;
    let mut tx = state.db.pool.begin().await?;
    let claimed = store::claim_outbox(&mut tx, state.db.backend, CLAIM).await?;
    if claimed.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let sales = store::fulfil(&mut tx, &claimed, &state.instance_id, state.clock.now_ms()).await?;
    let mut events = Events::new(&state.hub);
    // Sorted: several sales' rows are locked in one order on every instance.
    for sale_id in sales {
        if let Some(figures) = store::lock_sale(&mut tx, &sale_id).await? {
            append_figures(state, &mut tx, &mut events, &sale_id, figures, "fulfil-").await?;
        }
    }
    tx.commit().await?;
    events.deliver();
    Ok(claimed.len() as u64)
}

/// The worker: a pass when woken (after payments commit) or every [`POLL`], until
/// shutdown; passes repeat while they find a full claim.
pub async fn run(state: AppState) {
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = state.sales.fulfilment_woken() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
        loop {
            match fulfil_pending(&state).await {
                Ok(n) if n as i64 == CLAIM => continue,
                Ok(_) => break,
                Err(err) => {
                    tracing::warn!(%err, "fulfilment pass failed");
                    break;
                }
            }
        }
    }
}
