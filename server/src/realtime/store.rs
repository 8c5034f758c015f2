//! SQL for the realtime topic log.

use meridian_shared::realtime::Event;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::db::{placeholder_rows, value_rows};

/// Takes the next sequence number of a topic. It takes the topic row's write lock until
/// the transaction ends, so appends to one topic are serialised on every instance and
/// commit in sequence order.
pub async fn next_seq(conn: &mut AnyConnection, topic: &str) -> Result<u64, sqlx::Error> {
    let head: i64 = sqlx::query_scalar(
        "INSERT INTO realtime_topics (topic, head) VALUES ($1, 1)
         ON CONFLICT (topic) DO UPDATE SET head = realtime_topics.head + 1
         RETURNING head",
    )
    .bind(topic)
    .fetch_one(conn)
    .await?;
    Ok(head as u64)
}

/// The sequence number an op already got in a topic, if it was applied.
pub async fn seq_of_op(
    conn: &mut AnyConnection,
    topic: &str,
    op_id: &str,
) -> Result<Option<u64>, sqlx::Error> {
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM realtime_events WHERE topic = $1 AND op_id = $2")
            .bind(topic)
            .bind(op_id)
            .fetch_optional(conn)
            .await?;
    Ok(seq.map(|s| s as u64))
}

/// Gives back the sequence number [`next_seq`] took in this transaction (the op was a
/// duplicate). The caller holds the topic row's lock, so nobody took a later one.
pub async fn undo_next_seq(conn: &mut AnyConnection, topic: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE realtime_topics SET head = head - 1 WHERE topic = $1")
        .bind(topic)
        .execute(conn)
        .await?;
    Ok(())
}

/// Stores an event; false (and nothing stored) when the topic already has its op id.
pub async fn insert_event(
    conn: &mut AnyConnection,
    event: &Event,
    payload_json: &str,
    session_id: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO realtime_events (topic, seq, op_id, payload, session_id, created_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (topic, op_id) DO NOTHING",
    )
    .bind(&event.topic)
    .bind(event.seq as i64)
    .bind(&event.op_id)
    .bind(payload_json)
    .bind(session_id)
    .bind(event.at_ms)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// PostgreSQL only: queues a notification, delivered when the transaction commits.
pub async fn notify(
    conn: &mut AnyConnection,
    channel: &str,
    payload: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1 AS sent FROM (SELECT pg_notify($1, $2)) AS n")
        .bind(channel)
        .bind(payload)
        .execute(conn)
        .await?;
    Ok(())
}

/// The latest sequence number of a topic (0 for a topic never published to).
pub async fn head(pool: &AnyPool, topic: &str) -> Result<u64, sqlx::Error> {
    let head: Option<i64> = sqlx::query_scalar("SELECT head FROM realtime_topics WHERE topic = $1")
        .bind(topic)
        .fetch_optional(pool)
        .await?;
    Ok(head.unwrap_or(0) as u64)
}

/// The newest `limit` events of a topic with `since < seq <= until`, oldest first.
pub async fn events_between(
    pool: &AnyPool,
    topic: &str,
    since: u64,
    until: u64,
    limit: usize,
) -> Result<Vec<Event>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, op_id, payload, created_at_ms FROM realtime_events
         WHERE topic = $1 AND seq > $2 AND seq <= $3 ORDER BY seq DESC LIMIT $4",
    )
    .bind(topic)
    .bind(since as i64)
    .bind(until as i64)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    let mut events = rows
        .into_iter()
        .map(|row| event_from_row(topic, &row))
        .collect::<Result<Vec<_>, _>>()?;
    events.reverse();
    Ok(events)
}

/// One event by its place in a topic.
pub async fn event(pool: &AnyPool, topic: &str, seq: u64) -> Result<Option<Event>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT seq, op_id, payload, created_at_ms FROM realtime_events
         WHERE topic = $1 AND seq = $2",
    )
    .bind(topic)
    .bind(seq as i64)
    .fetch_optional(pool)
    .await?;
    row.map(|row| event_from_row(topic, &row)).transpose()
}

fn event_from_row(topic: &str, row: &sqlx::any::AnyRow) -> Result<Event, sqlx::Error> {
    let payload: String = row.try_get(2)?;
    Ok(Event {
        topic: topic.to_owned(),
        seq: row.try_get::<i64, _>(0)? as u64,
        op_id: row.try_get(1)?,
        payload: serde_json::from_str(&payload).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        at_ms: row.try_get(3)?,
    })
}

/// Deletes events more than `keep` behind their topic's head. Returns how many.
pub async fn trim(pool: &AnyPool, keep: u64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM realtime_events WHERE seq <= (SELECT t.head FROM realtime_topics t
                                                   WHERE t.topic = realtime_events.topic) - $1",
    )
    .bind(keep as i64)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// The most rows one multi-row statement carries (well under both backends' limits on
/// bound parameters).
const ROWS_PER_STATEMENT: usize = 256;

/// Takes `count` sequence numbers of each topic at once: answers each topic's new head
/// (its numbers are `head - count + 1 ..= head`). Topics are locked in the order given
/// (see [`next_seq`]); each topic at most once.
pub async fn take_seqs(
    conn: &mut AnyConnection,
    counts: &[(&str, u64)],
) -> Result<Vec<(String, u64)>, sqlx::Error> {
    let mut heads = Vec::with_capacity(counts.len());
    for chunk in counts.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO realtime_topics (topic, head) VALUES {}
             ON CONFLICT (topic) DO UPDATE SET head = realtime_topics.head + excluded.head
             RETURNING topic, head",
            value_rows(conn, chunk.len(), 2)
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for (topic, count) in chunk {
            query = query.bind(*topic).bind(*count as i64);
        }
        for row in query.fetch_all(&mut *conn).await? {
            heads.push((row.try_get(0)?, row.try_get::<i64, _>(1)? as u64));
        }
    }
    Ok(heads)
}

/// Gives back `count` sequence numbers of a topic taken in this transaction (their ops
/// were duplicates); see [`undo_next_seq`].
pub async fn give_back_seqs(
    conn: &mut AnyConnection,
    topic: &str,
    count: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE realtime_topics SET head = head - $2 WHERE topic = $1")
        .bind(topic)
        .bind(count as i64)
        .execute(conn)
        .await?;
    Ok(())
}

/// The sequence numbers ops already got: `(topic, op_id, seq)` for those applied.
pub async fn seqs_of_ops(
    conn: &mut AnyConnection,
    ops: &[(&str, &str)],
) -> Result<Vec<(String, String, u64)>, sqlx::Error> {
    let mut found = Vec::new();
    for chunk in ops.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "WITH wanted (topic, op_id) AS (VALUES {})
             SELECT e.topic, e.op_id, e.seq FROM realtime_events e
               JOIN wanted ON e.topic = wanted.topic AND e.op_id = wanted.op_id",
            value_rows(conn, chunk.len(), 2)
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for (topic, op_id) in chunk {
            query = query.bind(*topic).bind(*op_id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            found.push((
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get::<i64, _>(2)? as u64,
            ));
        }
    }
    Ok(found)
}

/// Stores events that are not in their topics yet (the caller checked, under the topics'
/// locks), with their payloads as JSON text, in few statements.
pub async fn insert_events(
    conn: &mut AnyConnection,
    events: &[(&Event, &str, Option<&str>)],
) -> Result<(), sqlx::Error> {
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO realtime_events (topic, seq, op_id, payload, session_id, created_at_ms)
             VALUES {}",
            value_rows(conn, chunk.len(), 6)
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for (event, payload_json, session_id) in chunk {
            query = query
                .bind(&event.topic)
                .bind(event.seq as i64)
                .bind(&event.op_id)
                .bind(*payload_json)
                .bind(*session_id)
                .bind(event.at_ms);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// PostgreSQL only: queues notifications on one channel, delivered in this order when the
/// transaction commits.
pub async fn notify_all(
    conn: &mut AnyConnection,
    channel: &str,
    payloads: &[String],
) -> Result<(), sqlx::Error> {
    for chunk in payloads.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT 1 AS sent FROM (SELECT pg_notify($1, v.payload)
                                    FROM (VALUES {}) AS v (payload)) AS n",
            placeholder_rows(chunk.len(), 1, 2)
        );
        let mut query = sqlx::query(&sql).persistent(false).bind(channel);
        for payload in chunk {
            query = query.bind(payload);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholder_rows_number_every_column_of_every_row() {
        assert_eq!(
            super::placeholder_rows(2, 3, 2),
            "($2, $3, $4), ($5, $6, $7)"
        );
        assert_eq!(super::placeholder_rows(1, 1, 1), "($1)");
    }
}
