//! The database: one `sqlx::AnyPool` over SQLite (the embedded default) or PostgreSQL,
//! with migrations per backend applied at start.
//!
//! Invariants:
//! - SQL is written once for both backends: `$1`-style parameters (SQLite accepts them),
//!   times as `BIGINT` milliseconds since the Unix epoch, ids as `TEXT`, no booleans.
//! - A transaction that writes starts with its write, so that SQLite takes the write lock
//!   at once and waits for it (`busy_timeout`) instead of failing to upgrade a read lock.
//! - SQLite runs in WAL mode with `synchronous=FULL`: an acknowledged commit survives a
//!   crash of the process or the machine.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use meridian_shared::api::DatabaseBackend;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor};

/// A pooled connection idle this long is pinged before it is handed out.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A handle on the database, cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: DatabaseBackend,
    /// The URL it was opened with (PostgreSQL's LISTEN connection opens its own).
    pub url: String,
    /// SQLite has one writer at a time; writers queue here in order instead of retrying
    /// on `SQLITE_BUSY` with growing sleeps (which makes tail latency unfair).
    write_queue: Arc<tokio::sync::Mutex<()>>,
}

impl Db {
    /// Opens the database at `url`, creating an SQLite file (and its directory) if needed,
    /// and applies the migrations.
    pub async fn open(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            DatabaseBackend::Postgres
        } else if url.starts_with("sqlite:") {
            DatabaseBackend::Sqlite
        } else {
            return Err(DbError::UnsupportedUrl(url.to_owned()));
        };
        if backend == DatabaseBackend::Sqlite {
            create_sqlite_dir(url)?;
        }
        let options = AnyConnectOptions::from_str(url).map_err(DbError::Connect)?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                DatabaseBackend::Sqlite => 8,
                DatabaseBackend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(10))
            // By default sqlx pings every connection it hands out: on PostgreSQL a round
            // trip, as many as the one query of a request's session read, and under load
            // each round trip waits for the backend to be scheduled. Only a connection
            // idle for a while is checked (one that broke while idle is replaced); a busy
            // one goes straight to its statement.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for < CHECK_IDLE_AFTER {
                        return Ok(true);
                    }
                    conn.ping().await.map(|()| true)
                })
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == DatabaseBackend::Sqlite {
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = FULL",
                            "PRAGMA busy_timeout = 10000",
                            "PRAGMA foreign_keys = ON",
                        ] {
                            conn.execute(pragma).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(DbError::Connect)?;
        let migrator = match backend {
            DatabaseBackend::Sqlite => &SQLITE_MIGRATIONS,
            DatabaseBackend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await?;
        Ok(Db {
            pool,
            backend,
            url: url.to_owned(),
            write_queue: Arc::default(),
        })
    }

    /// Takes a turn to write, on SQLite (hold it for the write transaction); on
    /// PostgreSQL writers run concurrently and this is `None`.
    pub async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            DatabaseBackend::Sqlite => Some(self.write_queue.lock().await),
            DatabaseBackend::Postgres => None,
        }
    }

    /// Answers whether the database responds.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}

fn create_sqlite_dir(url: &str) -> Result<(), DbError> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(dir) = std::path::Path::new(path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|source| DbError::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
    }
    Ok(())
}

/// True when `err` is a unique-constraint violation (on either backend).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db.is_unique_violation(),
        _ => false,
    }
}

/// Parameter `n` of a statement: `$n`, or `?` on SQLite. SQLite's anonymous parameters
/// are numbered by position, so the statement's text must hold them in the order they
/// are bound. (SQLite looks each `$N` name up in a list as it parses, and sqlx asks the
/// name of each parameter as it binds, in a list too: quadratic in the parameters.)
pub fn param(conn: &sqlx::AnyConnection, n: usize) -> String {
    param_of(anonymous(conn), n)
}

fn anonymous(conn: &sqlx::AnyConnection) -> bool {
    conn.backend_name().eq_ignore_ascii_case("sqlite")
}

fn param_of(anonymous: bool, n: usize) -> String {
    if anonymous {
        "?".to_owned()
    } else {
        format!("${n}")
    }
}

/// The placeholders of `rows` rows of `columns` values that are a statement's only
/// parameters, for `conn`'s backend: `($1, $2), ($3, $4), …` on PostgreSQL; on SQLite
/// anonymous `(?, ?), (?, ?), …` (see [`param`]). For the rows of the cart's and the
/// realtime log's batches, whose large texts (a cart's ops, an event's payload) bound as
/// they are cost less than inside a JSON parameter ([`json_rows`]: escaped by the server,
/// parsed by the database; measured: the cart's batches at 512 sessions on PostgreSQL
/// ran about 7 % slower that way). Each batch size is a statement of its own: send it
/// unprepared (`persistent(false)`), or it would push every other statement out of the
/// cache.
pub fn value_rows(conn: &sqlx::AnyConnection, rows: usize, columns: usize) -> String {
    value_rows_of(anonymous(conn), 1, rows, columns)
}

/// `($1, $2), ($3, $4), …`: `rows` rows of `columns` placeholders, numbered from `first`.
pub fn placeholder_rows(rows: usize, columns: usize, first: usize) -> String {
    value_rows_of(false, first, rows, columns)
}

/// Written into one buffer: a batch's statement has up to thousands of placeholders.
fn value_rows_of(anonymous: bool, first: usize, rows: usize, columns: usize) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        sql.push_str(if row > 0 { ", (" } else { "(" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            if anonymous {
                sql.push('?');
            } else {
                let _ = write!(sql, "${}", first + row * columns + column);
            }
        }
        sql.push(')');
    }
    sql
}

/// A FROM item over rows bound as one parameter `$n` ([`json_param`]: a JSON array of
/// arrays): one row `v` per element, its columns `v.r ->> 0`, `v.r ->> 1`, … (text; `CAST`
/// a number). PostgreSQL: `batch_rows($n::jsonb) AS v (r)` (`jsonb_array_elements` with
/// a small row estimate, so that a batch joins a table by index probes: migration 0015);
/// SQLite: `(SELECT value AS r FROM json_each(?)) AS v` (anonymous: bind in text order). The text
/// is the same for any number of rows, so a statement of a batch is prepared once per
/// connection and cached, where a `VALUES` list of bound rows was a new statement for
/// each batch size (parsed and planned again, with hundreds of parameters). A statement
/// that joins the rows to a table is sent unprepared (`persistent(false)`): PostgreSQL
/// would keep the generic plan it made while the table was small (a hash join over a
/// scan of the whole table) long after the table grew; planned at each use, it probes
/// the table's index per row.
pub fn json_rows(conn: &sqlx::AnyConnection, n: usize) -> String {
    json_rows_of(anonymous(conn), n)
}

fn json_rows_of(anonymous: bool, n: usize) -> String {
    if anonymous {
        "(SELECT value AS r FROM json_each(?)) AS v".to_owned()
    } else {
        format!("batch_rows(${n}::jsonb) AS v (r)")
    }
}

/// The rows [`json_rows`] reads, as the JSON text to bind: `rows` is a slice of tuples
/// (each a JSON array), of strings, numbers and options (`null`).
pub fn json_param<T: serde::Serialize>(rows: &[T]) -> Result<String, sqlx::Error> {
    serde_json::to_string(rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// The connection a single writer (a cart committer, a sale's writer) keeps from one
/// transaction to the next: taken from the pool for each, it queued behind the requests
/// the writer answers (their session reads). A failed transaction [`discard`]s it (the
/// error may have been the connection's own); the next [`get`] takes another.
///
/// [`discard`]: HeldConnection::discard
/// [`get`]: HeldConnection::get
#[derive(Default)]
pub struct HeldConnection(Option<PoolConnection<Any>>);

impl HeldConnection {
    /// The held connection, taken from `pool` if there is none.
    pub async fn get(&mut self, pool: &AnyPool) -> Result<&mut AnyConnection, sqlx::Error> {
        if self.0.is_none() {
            self.0 = Some(pool.acquire().await?);
        }
        Ok(&mut **self.0.as_mut().expect("a connection was just taken"))
    }

    /// Closes the held connection, if any.
    pub fn discard(&mut self) {
        if let Some(mut conn) = self.0.take() {
            conn.close_on_drop();
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sqlx::{Connection, Row};

    #[test]
    fn parameters_are_numbered_on_postgres_and_anonymous_on_sqlite() {
        assert_eq!(super::param_of(false, 3), "$3");
        assert_eq!(super::param_of(true, 3), "?");
        assert_eq!(
            super::json_rows_of(false, 2),
            "batch_rows($2::jsonb) AS v (r)"
        );
        assert_eq!(
            super::json_rows_of(true, 2),
            "(SELECT value AS r FROM json_each(?)) AS v"
        );
    }

    #[test]
    fn value_rows_are_numbered_on_postgres_and_anonymous_on_sqlite() {
        assert_eq!(
            super::value_rows_of(false, 1, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(super::value_rows_of(false, 3, 1, 2), "($3, $4)");
        assert_eq!(super::value_rows_of(true, 1, 2, 3), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(super::value_rows_of(true, 1, 1, 1), "(?)");
    }

    type Triple = (String, i64, Option<String>);

    /// Binds `rows` with [`super::json_param`] and reads them back through
    /// [`super::json_rows`] on SQLite, with a parameter before and after them.
    fn round_trip(rows: &[Triple]) -> Vec<Triple> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            sqlx::any::install_default_drivers();
            let mut conn = sqlx::AnyConnection::connect("sqlite::memory:")
                .await
                .expect("an in-memory database");
            let sql = format!(
                "SELECT {} || (v.r ->> 0), CAST(v.r ->> 1 AS BIGINT) + {}, v.r ->> 2 FROM {}",
                super::param(&conn, 1),
                super::param(&conn, 2),
                super::json_rows(&conn, 3)
            );
            sqlx::query(&sql)
                .bind("")
                .bind(0i64)
                .bind(super::json_param(rows).expect("rows encode"))
                .fetch_all(&mut conn)
                .await
                .expect("the rows are read back")
                .iter()
                .map(|row| {
                    (
                        row.try_get(0).expect("text"),
                        row.try_get(1).expect("a number"),
                        row.try_get(2).expect("text or null"),
                    )
                })
                .collect()
        })
    }

    #[test]
    fn awkward_text_survives_the_json_parameter() {
        let rows = vec![
            ("'; DROP TABLE carts; --".to_owned(), i64::MIN, None),
            (
                "\"quoted\" \\ back\\slash\n\t".to_owned(),
                i64::MAX,
                Some(String::new()),
            ),
            (
                r#"{"op":"add","qty":2}"#.to_owned(),
                -1,
                Some("åäö 😀".to_owned()),
            ),
        ];
        assert_eq!(round_trip(&rows), rows);
        assert_eq!(round_trip(&[]), Vec::<Triple>::new());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_rows_survive_the_json_parameter(
            rows in proptest::collection::vec(
                ("[^\\x00]{0,40}", any::<i64>(), proptest::option::of("[^\\x00]{0,20}")),
                0..40,
            )
        ) {
            prop_assert_eq!(round_trip(&rows), rows);
        }
    }
}
