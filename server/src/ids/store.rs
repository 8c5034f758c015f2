//! The lease table in the database (`id_leases`, migration 0002), written once for SQLite
//! and PostgreSQL: `$n` parameters, `BIGINT` milliseconds, portable `CASE` instead of
//! `max`/`GREATEST`, `RETURNING` and `ON CONFLICT DO NOTHING` (both backends have them).
//!
//! Each operation is one statement, so it is atomic on both backends: a grant is a
//! compare-and-set on `(node_id, fencing_token)` that also requires the lease to have
//! expired, so that a late renewal by the old holder and a grant cannot both succeed.
//! Every call is bounded by a timeout: a database that hangs is an outage, not a stall.

use std::future::Future;
use std::time::Duration;

use meridian_shared::ids::NODE_COUNT;
use sqlx::{AnyPool, Row};

use super::lease::{
    candidates, AcquireRequest, Candidate, Grant, LeaseRow, LeaseStore, LeaseStoreError, Renewal,
};

/// Leases in the server's database.
#[derive(Debug, Clone)]
pub struct SqlLeaseStore {
    pool: AnyPool,
    timeout: Duration,
}

impl SqlLeaseStore {
    /// `timeout` bounds each call (use well under the lease's renewal period).
    pub fn new(pool: AnyPool, timeout: Duration) -> SqlLeaseStore {
        SqlLeaseStore { pool, timeout }
    }

    async fn bounded<T>(
        &self,
        what: &str,
        work: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, LeaseStoreError> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(LeaseStoreError(format!("{what}: {err}"))),
            Err(_) => Err(LeaseStoreError(format!(
                "{what}: no answer within {:?}",
                self.timeout
            ))),
        }
    }

    async fn try_candidate(
        &self,
        candidate: Candidate,
        request: &AcquireRequest,
    ) -> Result<Option<Grant>, sqlx::Error> {
        let expires_at_ms = request.now_ms + request.ttl_ms;
        let row = match candidate {
            Candidate::Expired {
                node_id,
                fencing_token,
            } => {
                sqlx::query(
                    "UPDATE id_leases SET holder = $1, fencing_token = fencing_token + 1, \
                       granted_at_ms = $2, renewed_at_ms = $2, expires_at_ms = $3, \
                       high_water_ms = CASE WHEN high_water_ms > $2 THEN high_water_ms ELSE $2 END + $4 \
                     WHERE node_id = $5 AND fencing_token = $6 AND expires_at_ms < $7 \
                     RETURNING node_id, fencing_token, high_water_ms",
                )
                .bind(&request.holder)
                .bind(request.now_ms)
                .bind(expires_at_ms)
                .bind(request.reserve_ms)
                .bind(node_id as i64)
                .bind(fencing_token)
                .bind(request.expired_before())
                .fetch_optional(&self.pool)
                .await?
            }
            Candidate::Fresh { node_id } => {
                sqlx::query(
                    "INSERT INTO id_leases (node_id, holder, fencing_token, granted_at_ms, \
                       renewed_at_ms, expires_at_ms, high_water_ms) \
                     VALUES ($1, $2, 1, $3, $3, $4, $5) \
                     ON CONFLICT (node_id) DO NOTHING \
                     RETURNING node_id, fencing_token, high_water_ms",
                )
                .bind(node_id as i64)
                .bind(&request.holder)
                .bind(request.now_ms)
                .bind(expires_at_ms)
                .bind(request.now_ms + request.reserve_ms)
                .fetch_optional(&self.pool)
                .await?
            }
        };
        let Some(row) = row else {
            return Ok(None);
        };
        let high_water_ms: i64 = row.try_get(2)?;
        Ok(Some(Grant {
            node_id: row.try_get::<i64, _>(0)? as u16,
            fencing_token: row.try_get(1)?,
            // The grant set high water to max(previous, now) + reserve.
            floor_ms: high_water_ms - request.reserve_ms,
            high_water_ms,
            expires_at_ms,
        }))
    }

    async fn acquire_inner(&self, request: &AcquireRequest) -> Result<Option<Grant>, sqlx::Error> {
        let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT node_id, fencing_token, expires_at_ms, high_water_ms FROM id_leases",
        )
        .fetch_all(&self.pool)
        .await?;
        let rows: Vec<(u16, i64, i64, i64)> = rows
            .into_iter()
            .map(|(node, token, expires, high)| (node as u16, token, expires, high))
            .collect();
        for candidate in candidates(&rows, NODE_COUNT, request) {
            if let Some(grant) = self.try_candidate(candidate, request).await? {
                return Ok(Some(grant));
            }
        }
        Ok(None)
    }
}

impl LeaseStore for SqlLeaseStore {
    fn acquire(
        &self,
        request: &AcquireRequest,
    ) -> impl Future<Output = Result<Option<Grant>, LeaseStoreError>> + Send {
        self.bounded("acquire a node id", self.acquire_inner(request))
    }

    fn renew(
        &self,
        node_id: u16,
        fencing_token: i64,
        now_ms: i64,
        expires_at_ms: i64,
        high_water_ms: i64,
    ) -> impl Future<Output = Result<Renewal, LeaseStoreError>> + Send {
        self.bounded("renew the node id lease", async move {
            let high_water: Option<i64> = sqlx::query_scalar(
                "UPDATE id_leases SET expires_at_ms = $1, renewed_at_ms = $2, \
                   high_water_ms = CASE WHEN high_water_ms > $3 THEN high_water_ms ELSE $3 END \
                 WHERE node_id = $4 AND fencing_token = $5 \
                 RETURNING high_water_ms",
            )
            .bind(expires_at_ms)
            .bind(now_ms)
            .bind(high_water_ms)
            .bind(node_id as i64)
            .bind(fencing_token)
            .fetch_optional(&self.pool)
            .await?;
            Ok(match high_water {
                Some(high_water_ms) => Renewal::Renewed { high_water_ms },
                None => Renewal::Lost,
            })
        })
    }

    fn release(
        &self,
        node_id: u16,
        fencing_token: i64,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), LeaseStoreError>> + Send {
        self.bounded("release the node id lease", async move {
            sqlx::query(
                "UPDATE id_leases SET expires_at_ms = $1 \
                 WHERE node_id = $2 AND fencing_token = $3 AND expires_at_ms > $1",
            )
            .bind(now_ms)
            .bind(node_id as i64)
            .bind(fencing_token)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn list(&self) -> impl Future<Output = Result<Vec<LeaseRow>, LeaseStoreError>> + Send {
        self.bounded("list the node id leases", async move {
            let rows: Vec<(i64, String, i64, i64, i64, i64, i64)> = sqlx::query_as(
                "SELECT node_id, holder, fencing_token, granted_at_ms, renewed_at_ms, \
                   expires_at_ms, high_water_ms \
                 FROM id_leases ORDER BY node_id",
            )
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(
                    |(node_id, holder, fencing_token, granted, renewed, expires, high_water)| {
                        LeaseRow {
                            node_id: node_id as u16,
                            holder,
                            fencing_token,
                            granted_at_ms: granted,
                            renewed_at_ms: renewed,
                            expires_at_ms: expires,
                            high_water_ms: high_water,
                        }
                    },
                )
                .collect())
        })
    }
}
