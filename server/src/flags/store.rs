//! The flags' SQL. Every change runs in one transaction that starts by taking the next
//! configuration version (the `flag_state` row is the lock), writes, and appends its
//! audit entry under that version.

use meridian_shared::flags::admin::{
    Approval, ApprovalStatus, AuditEntry, EnvironmentSettings, KeyInfo, KeyKind, Schedule,
};
use meridian_shared::flags::{Flag, FlagEnvironmentConfig, Segment};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

fn decode<T: DeserializeOwned>(text: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn encode<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serialises")
}

pub async fn version(pool: &AnyPool) -> Result<u64, sqlx::Error> {
    let v: i64 = sqlx::query_scalar("SELECT version FROM flag_state WHERE id = 1")
        .fetch_one(pool)
        .await?;
    Ok(v as u64)
}

/// The configuration at one version, read consistently.
pub struct Configuration {
    pub version: u64,
    pub flags: Vec<Flag>,
    pub segments: Vec<Segment>,
    /// The ids of revoked delivery keys (open streams that use one end).
    pub revoked_keys: Vec<String>,
}

/// The version, every flag, every segment and the revoked keys, read consistently.
pub async fn load_all(pool: &AnyPool) -> Result<Configuration, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let v: i64 = sqlx::query_scalar("SELECT version FROM flag_state WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?;
    let flags: Vec<String> = sqlx::query_scalar("SELECT definition FROM flags ORDER BY key")
        .fetch_all(&mut *tx)
        .await?;
    let segments: Vec<String> =
        sqlx::query_scalar("SELECT definition FROM flag_segments ORDER BY key")
            .fetch_all(&mut *tx)
            .await?;
    let revoked_keys: Vec<String> =
        sqlx::query_scalar("SELECT id FROM flag_keys WHERE revoked_at_ms IS NOT NULL")
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(Configuration {
        version: v as u64,
        flags: flags.iter().map(|f| decode(f)).collect::<Result<_, _>>()?,
        segments: segments
            .iter()
            .map(|s| decode(s))
            .collect::<Result<_, _>>()?,
        revoked_keys,
    })
}

pub async fn environments(pool: &AnyPool) -> Result<Vec<EnvironmentSettings>, sqlx::Error> {
    let rows = sqlx::query("SELECT name, require_approval FROM flag_environments ORDER BY name")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(EnvironmentSettings {
                name: r.try_get(0)?,
                require_approval: r.try_get::<i64, _>(1)? != 0,
            })
        })
        .collect()
}

pub async fn environment_names(pool: &AnyPool) -> Result<Vec<String>, sqlx::Error> {
    Ok(environments(pool)
        .await?
        .into_iter()
        .map(|e| e.name)
        .collect())
}

pub async fn set_require_approval(
    conn: &mut AnyConnection,
    name: &str,
    require: bool,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE flag_environments SET require_approval = $2 WHERE name = $1")
        .bind(name)
        .bind(i64::from(require))
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Takes the next configuration version: the first statement of every change.
pub async fn next_version(conn: &mut AnyConnection) -> Result<u64, sqlx::Error> {
    let v: i64 = sqlx::query_scalar(
        "UPDATE flag_state SET version = version + 1 WHERE id = 1 RETURNING version",
    )
    .fetch_one(conn)
    .await?;
    Ok(v as u64)
}

pub async fn flag(conn: &mut AnyConnection, key: &str) -> Result<Option<Flag>, sqlx::Error> {
    let def: Option<String> = sqlx::query_scalar("SELECT definition FROM flags WHERE key = $1")
        .bind(key)
        .fetch_optional(conn)
        .await?;
    def.map(|d| decode(&d)).transpose()
}

pub async fn insert_flag(conn: &mut AnyConnection, flag: &Flag) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO flags (key, definition, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(&flag.key)
    .bind(encode(flag))
    .bind(flag.created_at_ms)
    .bind(flag.updated_at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn update_flag(conn: &mut AnyConnection, flag: &Flag) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE flags SET definition = $2, updated_at_ms = $3 WHERE key = $1")
        .bind(&flag.key)
        .bind(encode(flag))
        .bind(flag.updated_at_ms)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete_flag(conn: &mut AnyConnection, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM flags WHERE key = $1")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn segments(conn: &mut AnyConnection) -> Result<Vec<Segment>, sqlx::Error> {
    let defs: Vec<String> = sqlx::query_scalar("SELECT definition FROM flag_segments ORDER BY key")
        .fetch_all(conn)
        .await?;
    defs.iter().map(|d| decode(d)).collect()
}

pub async fn all_flags(conn: &mut AnyConnection) -> Result<Vec<Flag>, sqlx::Error> {
    let defs: Vec<String> = sqlx::query_scalar("SELECT definition FROM flags ORDER BY key")
        .fetch_all(conn)
        .await?;
    defs.iter().map(|d| decode(d)).collect()
}

pub async fn put_segment(
    conn: &mut AnyConnection,
    segment: &Segment,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO flag_segments (key, definition, updated_at_ms) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE SET definition = excluded.definition,
                                         updated_at_ms = excluded.updated_at_ms",
    )
    .bind(&segment.key)
    .bind(encode(segment))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete_segment(conn: &mut AnyConnection, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM flag_segments WHERE key = $1")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// What a change did, as its audit entry records it. Who made it, when, and under which
/// version are the change's own ([`super::change::AuditedChange`] fills them in).
pub struct NewAudit<'a> {
    pub action: &'a str,
    pub flag_key: Option<&'a str>,
    pub environment: Option<&'a str>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub approved_by: Option<&'a str>,
}

impl<'a> NewAudit<'a> {
    pub fn new(action: &'a str) -> NewAudit<'a> {
        NewAudit {
            action,
            flag_key: None,
            environment: None,
            before: None,
            after: None,
            approved_by: None,
        }
    }

    pub fn flag(self, key: &'a str) -> NewAudit<'a> {
        NewAudit {
            flag_key: Some(key),
            ..self
        }
    }

    pub fn environment(self, environment: &'a str) -> NewAudit<'a> {
        NewAudit {
            environment: Some(environment),
            ..self
        }
    }

    /// What was, and what is (either absent for a creation or a deletion).
    pub fn change(self, before: Option<Value>, after: Option<Value>) -> NewAudit<'a> {
        NewAudit {
            before,
            after,
            ..self
        }
    }

    pub fn approved_by(self, by: Option<&'a str>) -> NewAudit<'a> {
        NewAudit {
            approved_by: by,
            ..self
        }
    }
}

/// Who made a change and when, under which version.
pub struct AuditStamp<'a> {
    pub version: u64,
    pub at_ms: i64,
    pub actor_id: Option<&'a str>,
    pub actor_name: &'a str,
}

pub async fn audit(
    conn: &mut AnyConnection,
    stamp: AuditStamp<'_>,
    entry: NewAudit<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO flag_audit (version, at_ms, actor_id, actor_name, action, flag_key,
                                 environment, before, after, approved_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(stamp.version as i64)
    .bind(stamp.at_ms)
    .bind(stamp.actor_id)
    .bind(stamp.actor_name)
    .bind(entry.action)
    .bind(entry.flag_key)
    .bind(entry.environment)
    .bind(entry.before.map(|v| v.to_string()))
    .bind(entry.after.map(|v| v.to_string()))
    .bind(entry.approved_by)
    .execute(conn)
    .await?;
    Ok(())
}

fn audit_from_row(row: &AnyRow) -> Result<AuditEntry, sqlx::Error> {
    let json = |i: usize| -> Result<Option<Value>, sqlx::Error> {
        row.try_get::<Option<String>, _>(i)?
            .map(|t| decode(&t))
            .transpose()
    };
    Ok(AuditEntry {
        version: row.try_get::<i64, _>(0)? as u64,
        at_ms: row.try_get(1)?,
        actor_id: row.try_get(2)?,
        actor_name: row.try_get(3)?,
        action: row.try_get(4)?,
        flag_key: row.try_get(5)?,
        environment: row.try_get(6)?,
        before: json(7)?,
        after: json(8)?,
        approved_by: row.try_get(9)?,
    })
}

/// Audit entries older than `before`, newest first; of one flag when `flag_key` is set.
pub async fn audit_log(
    pool: &AnyPool,
    flag_key: Option<&str>,
    before: u64,
    limit: usize,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT version, at_ms, actor_id, actor_name, action, flag_key, environment, before,
                after, approved_by
         FROM flag_audit WHERE version < $1 AND ($2 = '' OR flag_key = $2)
         ORDER BY version DESC LIMIT $3",
    )
    .bind(before.min(i64::MAX as u64) as i64)
    .bind(flag_key.unwrap_or(""))
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    rows.iter().map(audit_from_row).collect()
}

const APPROVAL_COLUMNS: &str = "id, flag_key, environment, proposed, requested_by, requested_name,
    requested_at_ms, status, decided_by, decided_at_ms";

fn approval_from_row(row: &AnyRow) -> Result<Approval, sqlx::Error> {
    let status: String = row.try_get(7)?;
    Ok(Approval {
        id: row.try_get(0)?,
        flag_key: row.try_get(1)?,
        environment: row.try_get(2)?,
        proposed: decode(&row.try_get::<String, _>(3)?)?,
        requested_by: row.try_get(4)?,
        requested_name: row.try_get(5)?,
        requested_at_ms: row.try_get(6)?,
        status: match status.as_str() {
            "approved" => ApprovalStatus::Approved,
            "rejected" => ApprovalStatus::Rejected,
            _ => ApprovalStatus::Pending,
        },
        decided_by: row.try_get(8)?,
        decided_at_ms: row.try_get(9)?,
    })
}

pub struct NewApproval<'a> {
    pub id: &'a str,
    pub flag_key: &'a str,
    pub environment: &'a str,
    pub proposed: &'a FlagEnvironmentConfig,
    pub base_updated_ms: i64,
    pub requested_by: &'a str,
    pub requested_name: &'a str,
    pub at_ms: i64,
}

pub async fn insert_approval(pool: &AnyPool, a: NewApproval<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO flag_approvals (id, flag_key, environment, proposed, base_updated_ms,
             requested_by, requested_name, requested_at_ms, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending')",
    )
    .bind(a.id)
    .bind(a.flag_key)
    .bind(a.environment)
    .bind(encode(a.proposed))
    .bind(a.base_updated_ms)
    .bind(a.requested_by)
    .bind(a.requested_name)
    .bind(a.at_ms)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn approvals(pool: &AnyPool, status: Option<&str>) -> Result<Vec<Approval>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {APPROVAL_COLUMNS} FROM flag_approvals WHERE ($1 = '' OR status = $1)
         ORDER BY requested_at_ms DESC LIMIT 200"
    ))
    .bind(status.unwrap_or(""))
    .fetch_all(pool)
    .await?;
    rows.iter().map(approval_from_row).collect()
}

/// A pending approval with the flag's `updated_at_ms` it was proposed against.
pub async fn pending_approval(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<(Approval, i64)>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {APPROVAL_COLUMNS}, base_updated_ms FROM flag_approvals WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(|r| Ok((approval_from_row(&r)?, r.try_get(10)?)))
        .transpose()
}

pub async fn decide_approval(
    conn: &mut AnyConnection,
    id: &str,
    status: &str,
    by: &str,
    at_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE flag_approvals SET status = $2, decided_by = $3, decided_at_ms = $4
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(status)
    .bind(by)
    .bind(at_ms)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

const SCHEDULE_COLUMNS: &str =
    "id, flag_key, environment, proposed, run_at_ms, requested_name, status, requested_by";

fn schedule_from_row(row: &AnyRow) -> Result<(Schedule, String), sqlx::Error> {
    Ok((
        Schedule {
            id: row.try_get(0)?,
            flag_key: row.try_get(1)?,
            environment: row.try_get(2)?,
            proposed: decode(&row.try_get::<String, _>(3)?)?,
            run_at_ms: row.try_get(4)?,
            requested_name: row.try_get(5)?,
            status: row.try_get(6)?,
        },
        row.try_get(7)?,
    ))
}

pub async fn insert_schedule(
    pool: &AnyPool,
    schedule: &Schedule,
    requested_by: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO flag_schedules (id, flag_key, environment, proposed, run_at_ms,
             requested_by, requested_name, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending')",
    )
    .bind(&schedule.id)
    .bind(&schedule.flag_key)
    .bind(&schedule.environment)
    .bind(encode(&schedule.proposed))
    .bind(schedule.run_at_ms)
    .bind(requested_by)
    .bind(&schedule.requested_name)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn schedules(pool: &AnyPool) -> Result<Vec<Schedule>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM flag_schedules ORDER BY run_at_ms DESC LIMIT 200"
    ))
    .fetch_all(pool)
    .await?;
    rows.iter().map(|r| Ok(schedule_from_row(r)?.0)).collect()
}

/// Pending schedules due at `now`, oldest first, with who asked.
pub async fn due_schedules(
    pool: &AnyPool,
    now: i64,
) -> Result<Vec<(Schedule, String)>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {SCHEDULE_COLUMNS} FROM flag_schedules
         WHERE status = 'pending' AND run_at_ms <= $1 ORDER BY run_at_ms LIMIT 100"
    ))
    .bind(now)
    .fetch_all(pool)
    .await?;
    rows.iter().map(schedule_from_row).collect()
}

/// Marks a pending schedule done (`applied` or `failed`); false if another instance
/// took it first.
pub async fn finish_schedule(
    conn: &mut AnyConnection,
    id: &str,
    status: &str,
) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE flag_schedules SET status = $2 WHERE id = $1 AND status = 'pending'")
            .bind(id)
            .bind(status)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Records what this instance's subscribers of `environment` were sent.
pub async fn report_delivery(
    pool: &AnyPool,
    instance_id: &str,
    delivery: &meridian_shared::flags::admin::Delivery,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO flag_delivery (instance_id, environment, version, subscribers, delivered, at_ms)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (instance_id, environment) DO UPDATE SET
             version = excluded.version, subscribers = excluded.subscribers,
             delivered = excluded.delivered, at_ms = excluded.at_ms",
    )
    .bind(instance_id)
    .bind(&delivery.environment)
    .bind(delivery.version as i64)
    .bind(delivery.subscribers as i64)
    .bind(delivery.delivered as i64)
    .bind(at_ms)
    .execute(pool)
    .await?;
    Ok(())
}

/// Other instances' reports since `since_ms`: (version, subscribers, delivered).
pub async fn other_deliveries(
    pool: &AnyPool,
    instance_id: &str,
    environment: &str,
    since_ms: i64,
) -> Result<Vec<(u64, u64, u64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT version, subscribers, delivered FROM flag_delivery
         WHERE environment = $1 AND instance_id <> $2 AND at_ms >= $3",
    )
    .bind(environment)
    .bind(instance_id)
    .bind(since_ms)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<i64, _>(0)? as u64,
                r.try_get::<i64, _>(1)? as u64,
                r.try_get::<i64, _>(2)? as u64,
            ))
        })
        .collect()
}

fn kind_text(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Server => "server",
        KeyKind::Client => "client",
    }
}

fn kind_from_text(text: &str) -> Result<KeyKind, sqlx::Error> {
    match text {
        "server" => Ok(KeyKind::Server),
        "client" => Ok(KeyKind::Client),
        other => Err(sqlx::Error::Decode(
            format!("unknown key kind {other:?}").into(),
        )),
    }
}

const KEY_COLUMNS: &str = "id, kind, environment, prefix, created_at_ms, created_by, revoked_at_ms";

fn key_from_row(row: &AnyRow) -> Result<KeyInfo, sqlx::Error> {
    Ok(KeyInfo {
        id: row.try_get(0)?,
        kind: kind_from_text(&row.try_get::<String, _>(1)?)?,
        environment: row.try_get(2)?,
        prefix: row.try_get(3)?,
        created_at_ms: row.try_get(4)?,
        created_by: row.try_get(5)?,
        revoked_at_ms: row.try_get(6)?,
    })
}

/// Stores a new delivery key: its description and the SHA-256 of its secret.
pub async fn insert_key(
    conn: &mut AnyConnection,
    key: &KeyInfo,
    key_hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO flag_keys (id, environment, kind, key_hash, prefix, created_at_ms,
             created_by, revoked_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
    )
    .bind(&key.id)
    .bind(&key.environment)
    .bind(kind_text(key.kind))
    .bind(key_hash)
    .bind(&key.prefix)
    .bind(key.created_at_ms)
    .bind(&key.created_by)
    .execute(conn)
    .await?;
    Ok(())
}

/// The keys of an environment (revoked ones included), oldest first.
pub async fn keys(pool: &AnyPool, environment: &str) -> Result<Vec<KeyInfo>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {KEY_COLUMNS} FROM flag_keys WHERE environment = $1 ORDER BY created_at_ms, id"
    ))
    .bind(environment)
    .fetch_all(pool)
    .await?;
    rows.iter().map(key_from_row).collect()
}

/// One key of an environment.
pub async fn key(
    conn: &mut AnyConnection,
    environment: &str,
    id: &str,
) -> Result<Option<KeyInfo>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {KEY_COLUMNS} FROM flag_keys WHERE environment = $1 AND id = $2"
    ))
    .bind(environment)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(key_from_row).transpose()
}

/// The key whose secret has this SHA-256, revoked or not.
pub async fn key_by_hash(pool: &AnyPool, key_hash: &str) -> Result<Option<KeyInfo>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {KEY_COLUMNS} FROM flag_keys WHERE key_hash = $1"
    ))
    .bind(key_hash)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(key_from_row).transpose()
}

/// Revokes a key; false if it was revoked already.
pub async fn revoke_key(
    conn: &mut AnyConnection,
    id: &str,
    at_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE flag_keys SET revoked_at_ms = $2 WHERE id = $1 AND revoked_at_ms IS NULL",
    )
    .bind(id)
    .bind(at_ms)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
