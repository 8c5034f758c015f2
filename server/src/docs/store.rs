//! SQL of the documents: rows, members, the update log, snapshots and versions.
//!
//! Invariants:
//! - `docs.head_seq` numbers a document's updates densely; taking the next numbers is an
//!   `UPDATE ... RETURNING` on the document's row, so concurrent writers on several
//!   instances serialise on that row and never share a number.
//! - A snapshot holds the whole state through its `seq`; updates at or below it may be
//!   deleted, never those above it. A snapshot only ever moves forward.

use meridian_shared::docs::{Member, Role, Version, VersionKind};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

/// A document's row.
#[derive(Debug, Clone)]
pub struct DocRow {
    pub id: String,
    pub title: String,
    pub owner_id: String,
    pub owner_name: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

fn doc_row(row: &AnyRow) -> Result<DocRow, sqlx::Error> {
    Ok(DocRow {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        owner_id: row.try_get("owner_id")?,
        owner_name: row.try_get("owner_name")?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

const DOC_COLUMNS: &str = "d.id, d.title, d.owner_id, u.username AS owner_name, \
     d.created_ms, d.updated_ms";

pub async fn create(
    pool: &AnyPool,
    id: &str,
    title: &str,
    owner_id: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO docs (id, title, owner_id, head_seq, created_ms, updated_ms) \
         VALUES ($1, $2, $3, 0, $4, $4)",
    )
    .bind(id)
    .bind(title)
    .bind(owner_id)
    .bind(now_ms)
    .execute(pool)
    .await?;
    Ok(())
}

/// The document and the user's role in it, if they may open it.
pub async fn access(
    pool: &AnyPool,
    doc_id: &str,
    user_id: &str,
) -> Result<Option<(DocRow, Role)>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {DOC_COLUMNS}, m.role AS member_role FROM docs d \
         JOIN users u ON u.id = d.owner_id \
         LEFT JOIN doc_members m ON m.doc_id = d.id AND m.user_id = $2 \
         WHERE d.id = $1"
    ))
    .bind(doc_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let doc = doc_row(&row)?;
    let role = if doc.owner_id == user_id {
        Some(Role::Owner)
    } else {
        let member: Option<String> = row.try_get("member_role")?;
        member.as_deref().and_then(Role::parse)
    };
    Ok(role.map(|role| (doc, role)))
}

/// Everyone who may open the document, the owner first, then by username.
pub async fn members(pool: &AnyPool, doc: &DocRow) -> Result<Vec<Member>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT m.user_id, u.username, m.role FROM doc_members m \
         JOIN users u ON u.id = m.user_id WHERE m.doc_id = $1 ORDER BY u.username_key",
    )
    .bind(&doc.id)
    .fetch_all(pool)
    .await?;
    let mut members = vec![Member {
        user_id: doc.owner_id.clone(),
        username: doc.owner_name.clone(),
        role: Role::Owner,
    }];
    for row in rows {
        let role: String = row.try_get(2)?;
        members.push(Member {
            user_id: row.try_get(0)?,
            username: row.try_get(1)?,
            role: Role::parse(&role).unwrap_or(Role::Viewer),
        });
    }
    Ok(members)
}

/// The documents a user may open, most recently changed first.
pub async fn list_for(pool: &AnyPool, user_id: &str) -> Result<Vec<(DocRow, Role)>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {DOC_COLUMNS}, CASE WHEN d.owner_id = $1 THEN 'owner' ELSE m.role END AS my_role \
         FROM docs d JOIN users u ON u.id = d.owner_id \
         LEFT JOIN doc_members m ON m.doc_id = d.id AND m.user_id = $1 \
         WHERE d.owner_id = $1 OR m.user_id = $1 \
         ORDER BY d.updated_ms DESC, d.id LIMIT 1000"
    ))
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let role: String = row.try_get("my_role")?;
            Ok((doc_row(row)?, Role::parse(&role).unwrap_or(Role::Viewer)))
        })
        .collect()
}

/// Renames a document; false if it no longer exists.
pub async fn rename(
    pool: &AnyPool,
    doc_id: &str,
    title: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE docs SET title = $2, updated_ms = $3 WHERE id = $1")
        .bind(doc_id)
        .bind(title)
        .bind(now_ms)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes the document with its members, updates, snapshot and versions.
pub async fn delete(pool: &AnyPool, doc_id: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for table in [
        "doc_updates",
        "doc_snapshots",
        "doc_versions",
        "doc_members",
    ] {
        sqlx::query(&format!("DELETE FROM {table} WHERE doc_id = $1"))
            .bind(doc_id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM docs WHERE id = $1")
        .bind(doc_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

pub async fn upsert_member(
    pool: &AnyPool,
    doc_id: &str,
    user_id: &str,
    role: Role,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO doc_members (doc_id, user_id, role, added_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (doc_id, user_id) DO UPDATE SET role = excluded.role",
    )
    .bind(doc_id)
    .bind(user_id)
    .bind(role.as_str())
    .bind(now_ms)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn remove_member(
    pool: &AnyPool,
    doc_id: &str,
    user_id: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM doc_members WHERE doc_id = $1 AND user_id = $2")
        .bind(doc_id)
        .bind(user_id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Rows of `doc_updates` written by one INSERT at most (4 parameters each).
const ROWS_PER_INSERT: usize = 1_000;

/// Stores several documents' updates inside the caller's transaction, in two statements
/// whatever their number: one `UPDATE ... RETURNING` takes each document's next sequence
/// numbers (the document rows are the locks), one INSERT stores the rows. Returns, per
/// document in the order given, the first and last numbers, or `None` when the document
/// no longer exists. Documents must be distinct.
pub async fn append_updates(
    conn: &mut AnyConnection,
    docs: &[(&str, Vec<&[u8]>)],
    now_ms: i64,
) -> Result<Vec<Option<(i64, i64)>>, sqlx::Error> {
    if docs.is_empty() {
        return Ok(Vec::new());
    }
    // UPDATE docs SET head_seq = head_seq + CASE id WHEN $2 THEN $3 ... END ...
    let mut sql = String::from("UPDATE docs SET updated_ms = $1, head_seq = head_seq + CASE id");
    for i in 0..docs.len() {
        sql.push_str(&format!(" WHEN ${} THEN ${}", 2 + 2 * i, 3 + 2 * i));
    }
    sql.push_str(" ELSE 0 END WHERE id IN (");
    for i in 0..docs.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("${}", 2 + 2 * i));
    }
    sql.push_str(") RETURNING id, head_seq");
    let mut query = sqlx::query(&sql).bind(now_ms);
    for (doc_id, updates) in docs {
        query = query.bind(*doc_id).bind(updates.len() as i64);
    }
    let heads: std::collections::HashMap<String, i64> = query
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let mut ranges = Vec::with_capacity(docs.len());
    let mut rows: Vec<(&str, i64, &[u8])> = Vec::new();
    for (doc_id, updates) in docs {
        let Some(&last) = heads.get(*doc_id) else {
            ranges.push(None);
            continue;
        };
        let first = last - updates.len() as i64 + 1;
        for (i, update) in updates.iter().enumerate() {
            rows.push((doc_id, first + i as i64, update));
        }
        ranges.push(Some((first, last)));
    }
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql =
            String::from("INSERT INTO doc_updates (doc_id, seq, data, created_ms) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            let p = 4 * i;
            sql.push_str(&format!("(${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4));
        }
        let mut query = sqlx::query(&sql);
        for (doc_id, seq, data) in chunk {
            query = query
                .bind(*doc_id)
                .bind(*seq)
                .bind(data.to_vec())
                .bind(now_ms);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(ranges)
}

/// What a room loads: the snapshot (if any) and every update stored after it.
#[derive(Debug, Default)]
pub struct StoredState {
    /// The snapshot's state and the seq it covers.
    pub snapshot: Option<(i64, Vec<u8>)>,
    /// Updates after the snapshot (or after `after`), in order.
    pub updates: Vec<(i64, Vec<u8>)>,
}

impl StoredState {
    /// The highest seq this state includes.
    pub fn seq(&self) -> Option<i64> {
        self.updates
            .last()
            .map(|(seq, _)| *seq)
            .or(self.snapshot.as_ref().map(|(seq, _)| *seq))
    }
}

/// The stored state newer than `after`: the updates above it, and the snapshot as well
/// when compaction already removed some of those updates.
pub async fn state_after(
    pool: &AnyPool,
    doc_id: &str,
    after: i64,
) -> Result<StoredState, sqlx::Error> {
    let snapshot = sqlx::query("SELECT seq, data FROM doc_snapshots WHERE doc_id = $1")
        .bind(doc_id)
        .fetch_optional(pool)
        .await?
        .map(|row| Ok::<_, sqlx::Error>((row.try_get(0)?, row.try_get(1)?)))
        .transpose()?;
    let snapshot = snapshot.filter(|(seq, _): &(i64, Vec<u8>)| *seq > after);
    let from = snapshot.as_ref().map_or(after, |(seq, _)| *seq);
    let rows = sqlx::query(
        "SELECT seq, data FROM doc_updates WHERE doc_id = $1 AND seq > $2 ORDER BY seq",
    )
    .bind(doc_id)
    .bind(from)
    .fetch_all(pool)
    .await?;
    let updates = rows
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(StoredState { snapshot, updates })
}

pub async fn head_seq(pool: &AnyPool, doc_id: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT head_seq FROM docs WHERE id = $1")
        .bind(doc_id)
        .fetch_optional(pool)
        .await
}

/// Replaces the updates through `seq` by a snapshot of the state through `seq` (unless a
/// newer snapshot is already there).
pub async fn compact(
    pool: &AnyPool,
    doc_id: &str,
    seq: i64,
    state: &[u8],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The transaction's first statement writes, so that SQLite takes the write lock at
    // once (waiting its turn) instead of failing to upgrade a read lock.
    sqlx::query(
        "INSERT INTO doc_snapshots (doc_id, seq, data, created_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (doc_id) DO UPDATE SET seq = excluded.seq, data = excluded.data, \
         created_ms = excluded.created_ms WHERE doc_snapshots.seq < excluded.seq",
    )
    .bind(doc_id)
    .bind(seq)
    .bind(state.to_vec())
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM doc_updates WHERE doc_id = $1 AND seq <= $2")
        .bind(doc_id)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

fn version_kind(s: &str) -> VersionKind {
    match s {
        "named" => VersionKind::Named,
        "before_restore" => VersionKind::BeforeRestore,
        _ => VersionKind::Auto,
    }
}

pub fn version_kind_str(kind: VersionKind) -> &'static str {
    match kind {
        VersionKind::Named => "named",
        VersionKind::Auto => "auto",
        VersionKind::BeforeRestore => "before_restore",
    }
}

fn version_row(row: &AnyRow) -> Result<Version, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    Ok(Version {
        id: row.try_get("id")?,
        doc_id: row.try_get("doc_id")?,
        kind: version_kind(&kind),
        name: row.try_get("name")?,
        created_ms: row.try_get("created_ms")?,
        created_by: row.try_get("created_by")?,
        seq: row.try_get("seq")?,
        preview: row.try_get("preview")?,
    })
}

pub async fn insert_version(
    pool: &AnyPool,
    version: &Version,
    state: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO doc_versions (id, doc_id, kind, name, created_ms, created_by, seq, preview, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&version.id)
    .bind(&version.doc_id)
    .bind(version_kind_str(version.kind))
    .bind(&version.name)
    .bind(version.created_ms)
    .bind(&version.created_by)
    .bind(version.seq)
    .bind(&version.preview)
    .bind(state.to_vec())
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn versions(pool: &AnyPool, doc_id: &str) -> Result<Vec<Version>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, doc_id, kind, name, created_ms, created_by, seq, preview FROM doc_versions \
         WHERE doc_id = $1 ORDER BY created_ms DESC, seq DESC, id DESC LIMIT 500",
    )
    .bind(doc_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(version_row).collect()
}

/// The latest automatic version's time and seq.
pub async fn latest_auto_version(
    pool: &AnyPool,
    doc_id: &str,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT created_ms, seq FROM doc_versions WHERE doc_id = $1 AND kind = 'auto' \
         ORDER BY created_ms DESC LIMIT 1",
    )
    .bind(doc_id)
    .fetch_optional(pool)
    .await?;
    row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .transpose()
}

pub async fn version(
    pool: &AnyPool,
    doc_id: &str,
    version_id: &str,
) -> Result<Option<(Version, Vec<u8>)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, doc_id, kind, name, created_ms, created_by, seq, preview, data \
         FROM doc_versions WHERE doc_id = $1 AND id = $2",
    )
    .bind(doc_id)
    .bind(version_id)
    .fetch_optional(pool)
    .await?;
    row.map(|row| Ok((version_row(&row)?, row.try_get("data")?)))
        .transpose()
}
