//! The server's settings, from the command line and the environment (see `cli`), or built
//! directly by tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use meridian_shared::cart::MergeMode;

/// Everything a server instance needs to know at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the server listens (used by the binary; tests bind their own listener).
    pub listen: SocketAddr,
    /// Where the embedded database and other files live.
    pub data_dir: PathBuf,
    /// `postgres://...` for PostgreSQL, `sqlite://...` for a specific SQLite file; `None`
    /// for SQLite at `<data_dir>/meridian.db`.
    pub database_url: Option<String>,
    /// The web UI: `index.html`, CSS and the built bundle under `pkg/`.
    pub static_dir: PathBuf,
    /// Mark the session cookie `Secure` (set when served over HTTPS).
    pub secure_cookies: bool,
    /// Guest sessions idle for longer than this are deleted by the cleanup job.
    pub guest_session_ttl: Duration,
    /// Guest carts unchanged for this long (and whose session is idle too) are deleted.
    pub guest_cart_ttl: Duration,
    /// How a guest cart joins the account's cart on sign-in.
    pub cart_merge_mode: MergeMode,
    /// The largest accepted request body.
    pub body_limit_bytes: usize,
    /// How often the server pings each WebSocket and tells clients to ping.
    pub heartbeat: Duration,
    /// A WebSocket silent for this long is closed.
    pub client_timeout: Duration,
    /// How many messages may wait for one slow WebSocket client before it is dropped.
    pub outbound_queue: usize,
    /// Failed sign-ins allowed per account within `signin_window`.
    pub signin_failures_per_account: usize,
    /// Sign-in and sign-up attempts allowed per client address within `signin_window`.
    pub signin_attempts_per_address: usize,
    pub signin_window: Duration,
    /// A document with no connection for this long is unloaded from memory (compacted
    /// first); it is loaded again when someone opens it.
    pub doc_idle_unload: Duration,
    /// A document's stored updates are compacted into a snapshot once there are this many.
    pub doc_compact_every: u64,
    /// A document's awareness state (presence, cursor) not renewed for this long is
    /// removed (clients renew every 15 s).
    pub doc_awareness_timeout: Duration,
    /// How often an edited document gets an automatic version, at most.
    pub doc_auto_version_every: Duration,
    /// Feed authors with at least this many followers are pulled at read time instead of
    /// fanned out on write.
    pub feed_pull_threshold: u64,
    /// A feed reader who has not read for this long is skipped by fanout (and their inbox
    /// rebuilt when they return).
    pub feed_inactive_after: Duration,
    /// Followers per fanout chunk (one transaction each).
    pub feed_fanout_chunk: usize,
    /// The probability (0 to 1) that a flash sale's simulated payment fails.
    pub sale_payment_failure: f64,
    /// Checkouts one buyer (account or guest session) may try within `sale_rate_window`.
    pub sale_checkouts_per_buyer: usize,
    /// Checkouts one client address may try within `sale_rate_window`.
    pub sale_checkouts_per_address: usize,
    pub sale_rate_window: Duration,
    /// Span blocks whose newest span is older than this are deleted.
    pub traces_retention: Duration,
    /// The oldest span blocks are deleted while all of them together are larger.
    pub traces_max_bytes: u64,
    /// Spans waiting in memory to be sealed beyond which ingest answers 429.
    pub traces_max_buffered_spans: usize,
    /// The share of traces (0.0 to 1.0) whose server spans Meridian stores about itself.
    pub traces_self_sample_rate: f64,
    /// How many of a file's newest versions the drive keeps (`None`: no limit); the
    /// current version is kept in any case.
    pub drive_keep_versions: Option<u32>,
    /// How long the drive keeps a replaced version (from its replacement).
    pub drive_keep_for: Duration,
    /// How long a deleted file or folder stays in the drive's trash, all its versions
    /// with it, before it is purged.
    pub drive_trash_for: Duration,
    /// Uploads older than this are deleted, committed or not (with the chunks only they
    /// reference); a commit repeated later answers 404.
    pub drive_upload_expiry: Duration,
    /// How long a chunk nothing references is marked dying (counted missing by uploads)
    /// before it is deleted.
    pub drive_chunk_grace: Duration,
    /// Object storage for drive chunks and span blocks (`file:///abs/path` or
    /// `s3://bucket[/prefix]`, see `objects`); `None`: directories under `data_dir`.
    pub object_store: Option<String>,
    /// The OpenStreetMap extract ETA routes on; `None`: a synthetic network.
    pub eta_map: Option<PathBuf>,
    /// How often ETA's live weights are customized again when traffic changed.
    pub eta_refresh_every: Duration,
    /// How many `wal-node` processes the server runs as its local WAL cluster (0, 1, 3
    /// or 5). 0 here (tests, tools); the command line's default is 3.
    pub wal_nodes: usize,
    /// The executable the local WAL cluster's nodes run (`meridian wal-node`); `None`:
    /// the server's own.
    pub wal_executable: Option<PathBuf>,
}

impl Config {
    /// Defaults for a server with its data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: data_dir.into(),
            database_url: None,
            static_dir: PathBuf::from("static"),
            secure_cookies: false,
            guest_session_ttl: Duration::from_secs(30 * 24 * 3600),
            guest_cart_ttl: Duration::from_secs(30 * 24 * 3600),
            cart_merge_mode: MergeMode::Max,
            body_limit_bytes: 2 * 1024 * 1024,
            heartbeat: Duration::from_secs(15),
            client_timeout: Duration::from_secs(45),
            outbound_queue: 256,
            signin_failures_per_account: 5,
            signin_attempts_per_address: 30,
            signin_window: Duration::from_secs(15 * 60),
            doc_idle_unload: Duration::from_secs(60),
            doc_compact_every: 500,
            doc_awareness_timeout: Duration::from_secs(30),
            doc_auto_version_every: Duration::from_secs(10 * 60),
            feed_pull_threshold: 10_000,
            feed_inactive_after: Duration::from_secs(30 * 24 * 3600),
            feed_fanout_chunk: 250,
            sale_payment_failure: 0.05,
            sale_checkouts_per_buyer: 20,
            sale_checkouts_per_address: 2_000,
            sale_rate_window: Duration::from_secs(10),
            traces_retention: Duration::from_secs(7 * 24 * 3600),
            traces_max_bytes: 20 * 1024 * 1024 * 1024,
            traces_max_buffered_spans: 1_000_000,
            traces_self_sample_rate: 1.0,
            drive_keep_versions: Some(100),
            drive_keep_for: Duration::from_secs(30 * 24 * 3600),
            drive_trash_for: Duration::from_secs(30 * 24 * 3600),
            drive_upload_expiry: Duration::from_secs(7 * 24 * 3600),
            drive_chunk_grace: Duration::from_secs(3600),
            object_store: None,
            eta_map: None,
            eta_refresh_every: Duration::from_millis(500),
            wal_nodes: 0,
            wal_executable: None,
        }
    }

    /// The URL the database is opened with.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("meridian.db").display()
            ),
        }
    }
}
