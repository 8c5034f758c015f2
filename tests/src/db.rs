//! A fresh database per test: a new SQLite file in a temporary directory, or a new
//! PostgreSQL database (created from `MERIDIAN_TEST_PG_URL`, dropped afterwards).

use std::path::Path;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Executor};

pub const PG_URL_VAR: &str = "MERIDIAN_TEST_PG_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test.
pub struct TestDatabase {
    pub backend: Backend,
    /// What `DATABASE_URL` / `Config::database_url` should be.
    pub url: String,
    /// A directory for the server's data (the SQLite file lives here).
    pub dir: tempfile::TempDir,
    pg_admin_url: Option<String>,
    pg_name: Option<String>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> TestDatabase {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        match backend {
            Backend::Sqlite => TestDatabase {
                backend,
                url: format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("meridian.db").display()
                ),
                dir,
                pg_admin_url: None,
                pg_name: None,
            },
            Backend::Postgres => {
                let admin_url = std::env::var(PG_URL_VAR).unwrap_or_else(|_| {
                    panic!(
                        "PostgreSQL tests need {PG_URL_VAR}=postgres://USER@HOST:PORT/DB \
                         (an account that may CREATE DATABASE); scripts/test.sh sets it"
                    )
                });
                let name = format!("meridian_test_{}", hex_id());
                let mut admin = PgConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|e| panic!("connect to {PG_URL_VAR}: {e}"));
                admin
                    .execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create a test database");
                let url = PgConnectOptions::from_str(&admin_url)
                    .expect("a valid PostgreSQL URL")
                    .database(&name)
                    .to_url_lossy()
                    .to_string();
                TestDatabase {
                    backend,
                    url,
                    dir,
                    pg_admin_url: Some(admin_url),
                    pg_name: Some(name),
                }
            }
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (Some(admin_url), Some(name)) = (self.pg_admin_url.take(), self.pg_name.take()) else {
            return;
        };
        // Best effort, off the test's runtime (which may be shutting down).
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url)
                    .await
                    .map_err(std::io::Error::other)?;
                admin
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await
                    .map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(())
            })
        })
        .join();
    }
}

fn hex_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}
