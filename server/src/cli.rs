//! The `meridian` command line: `meridian serve --listen ADDR --data-dir DIR`, each flag
//! also settable from the environment (MERIDIAN_LISTEN, MERIDIAN_DATA_DIR, DATABASE_URL,
//! ...). Prints `Meridian listening on http://ADDR` on stdout once it accepts connections,
//! and shuts down gracefully on SIGTERM or Ctrl-C. `meridian sync DIR --server URL
//! --username NAME` runs the file sync agent (`drive::agent`). `meridian wal-node --id N
//! --listen ADDR --data-dir DIR --peers 1=ADDR,...` runs one node of the replicated WAL;
//! `meridian wal recover --data-dir DIR (--to-lsn N | --to-time RFC3339) --out FILE`
//! writes its key-value state at that point; `meridian wal simulate [--schedules N]
//! [--seed S] [--nodes 3|5]` runs the WAL's deterministic simulation (`wal::sim`) and
//! exits non-zero at the first failing schedule. `serve` runs a local WAL cluster of
//! `--wal-nodes` (default 3; MERIDIAN_WAL_NODES) `wal-node` children for the page /wal.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use meridian_shared::api::Role;
use meridian_shared::cart::MergeMode;

use crate::{serve, AppState, Config, SystemClock};

#[derive(Debug, Parser)]
#[command(
    name = "meridian",
    version,
    about = "Meridian: ten distributed systems in one product"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (API, realtime channel and web UI).
    Serve(ServeArgs),
    /// Administer the installation from the command line (works while no server runs).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Load a power-law social graph into the news feed: accounts `demo0..` (password
    /// `feed-demo-password`), follows, posts and likes, from a seeded RNG.
    FeedSeed(FeedSeedArgs),
    /// Keep a local folder in step with your drive on a server, both ways.
    Sync(SyncArgs),
    /// Emulate 50+ services sending traces (OTLP/HTTP) to a server at a chosen rate.
    TraceSim(TraceSimArgs),
    /// Run one node of a replicated write-ahead log cluster (Raft traffic and the
    /// client API `/wal/...` on one address).
    WalNode(WalNodeArgs),
    /// Tools over a WAL node's data directory.
    #[command(subcommand)]
    Wal(WalCommand),
}

#[derive(Debug, clap::Args)]
struct WalNodeArgs {
    /// This node's id (one of --peers).
    #[arg(long)]
    id: u64,
    /// Where to accept Raft traffic and clients, e.g. `127.0.0.1:7001`.
    #[arg(long)]
    listen: SocketAddr,
    /// The node's log, hard state and checkpoints.
    #[arg(long)]
    data_dir: PathBuf,
    /// Every voter of the initial cluster: `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`.
    #[arg(long, value_parser = parse_peers)]
    peers: std::collections::BTreeMap<u64, String>,
    /// A snapshot (a checkpoint of the key-value state) every this many entries.
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
    /// Object storage the archived segments are copied to, under
    /// `wal/node-<id>/archive/` (`file:///abs/path` or `s3://bucket[/prefix]`, as the
    /// server's --object-store).
    #[arg(long, env = "MERIDIAN_OBJECT_STORE")]
    archive: Option<String>,
}

fn parse_peers(text: &str) -> Result<std::collections::BTreeMap<u64, String>, String> {
    let mut peers = std::collections::BTreeMap::new();
    for pair in text.split(',').filter(|pair| !pair.is_empty()) {
        let (id, addr) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("{id:?} is not a node id"))?;
        if peers.insert(id, addr.trim().to_owned()).is_some() {
            return Err(format!("node {id} is named twice"));
        }
    }
    if peers.is_empty() {
        return Err("name at least one node".into());
    }
    Ok(peers)
}

#[derive(Debug, Subcommand)]
enum WalCommand {
    /// Write the key-value state as of an LSN or a time as JSON (`{"lsn", "entries"}`),
    /// from the newest checkpoint before it plus a replay; capped at the node's commit
    /// index. Read-only: it may run beside the live node.
    Recover(WalRecoverArgs),
    /// Run the deterministic simulation of the WAL cluster (faults, a register workload,
    /// the linearizability and durability checks) schedule after schedule, from
    /// `--seed` up; print the progress and the first failing seed with its replay.
    Simulate(WalSimulateArgs),
}

#[derive(Debug, clap::Args)]
struct WalSimulateArgs {
    /// How many schedules.
    #[arg(long, default_value_t = 10_000)]
    schedules: u64,
    /// The first schedule's seed (the next ones count up); random when absent.
    #[arg(long)]
    seed: Option<u64>,
    /// Voters at the start of each schedule.
    #[arg(long, default_value_t = 3, value_parser = parse_simulated_nodes)]
    nodes: u64,
}

fn parse_simulated_nodes(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(nodes @ (3 | 5)) => Ok(nodes),
        _ => Err(format!("{text:?}: the simulation runs 3 or 5 nodes")),
    }
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to_lsn", "to_time"])))]
struct WalRecoverArgs {
    #[arg(long)]
    data_dir: PathBuf,
    /// The state right after this LSN.
    #[arg(long)]
    to_lsn: Option<u64>,
    /// The state after every write up to this time (RFC 3339).
    #[arg(long)]
    to_time: Option<String>,
    /// The JSON file to write.
    #[arg(long)]
    out: PathBuf,
    /// Object storage holding the node's archived segments (`wal-node --archive`):
    /// they are fetched and replayed with the local ones.
    #[arg(long, requires = "node")]
    archive: Option<String>,
    /// The node whose archive to fetch (with --archive).
    #[arg(long)]
    node: Option<u64>,
}

#[derive(Debug, clap::Args)]
struct FeedSeedArgs {
    /// How many accounts.
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    /// The RNG seed (the same seed makes the same graph).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Usernames are `<prefix><index>`.
    #[arg(long, default_value = "demo")]
    prefix: String,
    /// Posts of accounts with at least this many followers are pulled at read time.
    #[arg(long, env = "MERIDIAN_FEED_PULL_THRESHOLD", default_value_t = 10_000)]
    pull_threshold: u64,
    /// Directory of the embedded database.
    #[arg(long, env = "MERIDIAN_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// `postgres://...` for PostgreSQL instead of the embedded SQLite.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
}

#[derive(Debug, clap::Args)]
struct SyncArgs {
    /// The local folder.
    dir: PathBuf,
    /// The server, e.g. `http://127.0.0.1:8080`.
    #[arg(long, env = "MERIDIAN_SERVER")]
    server: String,
    /// Your account (the password comes from MERIDIAN_PASSWORD, or is asked for).
    #[arg(long)]
    username: String,
    /// This device's name, shown in conflicted copies' names.
    #[arg(long, env = "MERIDIAN_DEVICE", default_value = "agent")]
    device: String,
    /// Sync once and exit.
    #[arg(long)]
    once: bool,
    /// Milliseconds between checks for remote changes.
    #[arg(long, default_value_t = 250)]
    poll_ms: u64,
}

#[derive(Debug, clap::Args)]
struct TraceSimArgs {
    /// The server's `host:port`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Services in the call graph (every trace crosses all of them).
    #[arg(long, default_value_t = 50)]
    services: usize,
    /// Traces per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Give an account a role (`admin`, `editor` or `viewer`), e.g. to let back in an
    /// operator who locked themselves out. Logged as a change from the command line.
    Grant(GrantArgs),
}

#[derive(Debug, clap::Args)]
struct GrantArgs {
    /// The account's username.
    #[arg(long)]
    username: String,
    /// `admin`, `editor` or `viewer`.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// Directory of the embedded database.
    #[arg(long, env = "MERIDIAN_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// `postgres://...` for PostgreSQL instead of the embedded SQLite.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("{text:?} is not a role: use admin, editor or viewer"))
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "MERIDIAN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory for the embedded database and other files.
    #[arg(long, env = "MERIDIAN_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// `postgres://...` to use PostgreSQL instead of the embedded SQLite.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// The web UI's files.
    #[arg(long, env = "MERIDIAN_STATIC_DIR", default_value = "static")]
    static_dir: PathBuf,
    /// Mark the session cookie Secure (when served over HTTPS).
    #[arg(long, env = "MERIDIAN_SECURE_COOKIES")]
    secure_cookies: bool,
    /// Days after which an idle guest session is deleted.
    #[arg(long, env = "MERIDIAN_GUEST_TTL_DAYS", default_value_t = 30)]
    guest_ttl_days: u64,
    /// Days after which an idle guest cart is deleted.
    #[arg(long, env = "MERIDIAN_GUEST_CART_TTL_DAYS", default_value_t = 30)]
    guest_cart_ttl_days: u64,
    /// How a guest cart joins the account's cart on sign-in: `max` (a product in both
    /// gets the larger quantity) or `sum`.
    #[arg(long, env = "MERIDIAN_CART_MERGE", default_value = "max", value_parser = parse_merge_mode)]
    cart_merge: MergeMode,
    /// Milliseconds after which a document nobody has open is unloaded from memory.
    #[arg(long, env = "MERIDIAN_DOC_IDLE_UNLOAD_MS", default_value_t = 60_000)]
    doc_idle_unload_ms: u64,
    /// Stored updates after which a document is compacted into a snapshot.
    #[arg(long, env = "MERIDIAN_DOC_COMPACT_EVERY", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    doc_compact_every: u64,
    /// Feed authors with at least this many followers are pulled at read time, not
    /// fanned out.
    #[arg(long, env = "MERIDIAN_FEED_PULL_THRESHOLD", default_value_t = 10_000)]
    feed_pull_threshold: u64,
    /// Days without a feed read after which fanout skips a reader.
    #[arg(long, env = "MERIDIAN_FEED_INACTIVE_DAYS", default_value_t = 30)]
    feed_inactive_days: u64,
    /// Followers per fanout chunk (one transaction).
    #[arg(long, env = "MERIDIAN_FEED_FANOUT_CHUNK", default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    feed_fanout_chunk: u64,
    /// The probability (0 to 1) that a flash sale's simulated payment fails.
    #[arg(long, env = "MERIDIAN_SALE_PAYMENT_FAILURE", default_value_t = 0.05)]
    sale_payment_failure: f64,
    /// Checkouts one buyer may try per 10 s.
    #[arg(long, env = "MERIDIAN_SALE_CHECKOUTS_PER_BUYER", default_value_t = 20)]
    sale_checkouts_per_buyer: usize,
    /// Checkouts one client address may try per 10 s.
    #[arg(
        long,
        env = "MERIDIAN_SALE_CHECKOUTS_PER_ADDRESS",
        default_value_t = 2_000
    )]
    sale_checkouts_per_address: usize,
    /// Hours after which stored spans are deleted.
    #[arg(long, env = "MERIDIAN_TRACES_RETENTION_HOURS", default_value_t = 168)]
    traces_retention_hours: u64,
    /// Span blocks larger than this in total (MiB) lose their oldest.
    #[arg(long, env = "MERIDIAN_TRACES_MAX_MIB", default_value_t = 20 * 1024)]
    traces_max_mib: u64,
    /// The share of traces (0 to 1) whose server spans Meridian stores about itself.
    #[arg(long, env = "MERIDIAN_TRACES_SELF_SAMPLE", default_value_t = 1.0)]
    traces_self_sample: f64,
    /// How many of a file's newest versions the drive keeps (0: no limit); the current
    /// version is always kept.
    #[arg(long, env = "MERIDIAN_DRIVE_KEEP_VERSIONS", default_value_t = 100)]
    drive_keep_versions: u32,
    /// Days the drive keeps a file's previous version after it was replaced.
    #[arg(long, env = "MERIDIAN_DRIVE_KEEP_DAYS", default_value_t = 30)]
    drive_keep_days: u64,
    /// Days a deleted file or folder stays in the drive's trash before it is purged.
    #[arg(long, env = "MERIDIAN_DRIVE_TRASH_DAYS", default_value_t = 30)]
    drive_trash_days: u64,
    /// Days after which an upload (committed or not) is deleted.
    #[arg(long, env = "MERIDIAN_DRIVE_UPLOAD_EXPIRY_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..))]
    drive_upload_expiry_days: u64,
    /// Minutes a chunk nothing references waits, marked dying, before it is deleted.
    #[arg(long, env = "MERIDIAN_DRIVE_CHUNK_GRACE_MINUTES", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    drive_chunk_grace_minutes: u64,
    /// Object storage for drive chunks and span blocks: `file:///abs/path` or
    /// `s3://bucket[/prefix]` (S3 or S3-compatible, set up by AWS_ENDPOINT, AWS_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP). Unset: directories
    /// under the data directory.
    #[arg(long, env = "MERIDIAN_OBJECT_STORE")]
    object_store: Option<String>,
    /// The OpenStreetMap extract (.osm.pbf) ETA routes on; without it, a synthetic
    /// network over central Helsinki.
    #[arg(long, env = "MERIDIAN_ETA_MAP")]
    eta_map: Option<PathBuf>,
    /// How many nodes the local WAL cluster (for the page /wal) runs as child processes:
    /// 0 (none), 1, 3 or 5. Their data is under `<data-dir>/wal/`.
    #[arg(long, env = "MERIDIAN_WAL_NODES", default_value_t = 3, value_parser = parse_wal_nodes)]
    wal_nodes: usize,
}

fn parse_wal_nodes(text: &str) -> Result<usize, String> {
    match text.trim().parse() {
        Ok(n @ (0 | 1 | 3 | 5)) => Ok(n),
        _ => Err(format!(
            "{text:?}: the local WAL cluster has 0, 1, 3 or 5 nodes"
        )),
    }
}

fn parse_merge_mode(text: &str) -> Result<MergeMode, String> {
    match text {
        "max" => Ok(MergeMode::Max),
        "sum" => Ok(MergeMode::Sum),
        other => Err(format!("{other:?} is not a merge mode: use `max` or `sum`")),
    }
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                match &cli.command {
                    // Thousands of simulated clusters: openraft's info lines would drown
                    // the progress (and slow it down).
                    Command::Wal(WalCommand::Simulate(_)) => "error,openraft=off".into(),
                    _ => "info,sqlx=warn,tower_http=info".into(),
                }
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("meridian: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(run_serve(args)),
        Command::Admin(AdminCommand::Grant(args)) => runtime.block_on(run_grant(args)),
        Command::FeedSeed(args) => runtime.block_on(run_feed_seed(args)),
        Command::Sync(args) => runtime.block_on(run_sync(args)),
        Command::WalNode(args) => runtime.block_on(run_wal_node(args)),
        Command::Wal(WalCommand::Recover(args)) => run_wal_recover(args, &runtime),
        Command::Wal(WalCommand::Simulate(args)) => run_wal_simulate(args),
        Command::TraceSim(args) => runtime.block_on(async move {
            let report = crate::traces::sim::run(&crate::traces::sim::SimConfig {
                addr: args.addr,
                services: args.services.max(50),
                rate: args.rate,
                seconds: args.seconds,
                seed: args.seed,
            })
            .await;
            println!(
                "sent {} traces ({} spans); {} refused (429), {} failed",
                report.traces, report.spans, report.refused, report.failed
            );
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("meridian: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::new(args.data_dir);
    config.listen = args.listen;
    config.database_url = args.database_url.filter(|url| !url.is_empty());
    config.static_dir = args.static_dir;
    config.secure_cookies = args.secure_cookies;
    config.guest_session_ttl = Duration::from_secs(args.guest_ttl_days * 24 * 3600);
    config.guest_cart_ttl = Duration::from_secs(args.guest_cart_ttl_days * 24 * 3600);
    config.cart_merge_mode = args.cart_merge;
    config.doc_idle_unload = Duration::from_millis(args.doc_idle_unload_ms);
    config.doc_compact_every = args.doc_compact_every;
    config.feed_pull_threshold = args.feed_pull_threshold;
    config.feed_inactive_after = Duration::from_secs(args.feed_inactive_days * 24 * 3600);
    config.feed_fanout_chunk = args.feed_fanout_chunk as usize;
    config.sale_payment_failure = args.sale_payment_failure;
    config.sale_checkouts_per_buyer = args.sale_checkouts_per_buyer;
    config.sale_checkouts_per_address = args.sale_checkouts_per_address;
    config.traces_retention = Duration::from_secs(args.traces_retention_hours * 3600);
    config.traces_max_bytes = args.traces_max_mib.saturating_mul(1024 * 1024);
    config.traces_self_sample_rate = args.traces_self_sample.clamp(0.0, 1.0);
    config.drive_keep_versions = Some(args.drive_keep_versions).filter(|&n| n > 0);
    config.drive_keep_for = Duration::from_secs(args.drive_keep_days * 24 * 3600);
    config.drive_trash_for = Duration::from_secs(args.drive_trash_days * 24 * 3600);
    config.drive_upload_expiry = Duration::from_secs(args.drive_upload_expiry_days * 24 * 3600);
    config.drive_chunk_grace = Duration::from_secs(args.drive_chunk_grace_minutes * 60);
    config.object_store = args.object_store.filter(|url| !url.is_empty());
    config.eta_map = args.eta_map;
    config.wal_nodes = args.wal_nodes;
    let listen = config.listen;
    let state = AppState::start(config, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        database = state.db.backend.as_str(),
        instance = %state.instance_id,
        "Meridian started"
    );
    println!("Meridian listening on http://{addr}");
    std::io::stdout().flush()?;
    serve(listener, state, shutdown_signal()).await?;
    tracing::info!("Meridian stopped");
    Ok(())
}

async fn run_wal_node(args: WalNodeArgs) -> anyhow::Result<()> {
    use crate::wal::node::{NodeOptions, WalNode};
    let options = NodeOptions {
        id: args.id,
        data_dir: args.data_dir,
        peers: args.peers,
        snapshot_every: args.snapshot_every.max(2),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    let node = WalNode::start(&options).await?;
    tracing::info!(%addr, id = options.id, "WAL node started");
    println!("Meridian listening on http://{addr}");
    std::io::stdout().flush()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signal.cancel();
    });
    let uploader = match args.archive.filter(|url| !url.is_empty()) {
        Some(url) => Some(crate::wal::archive::spawn_uploader(
            Arc::new(crate::wal::StdDisk::new()),
            options.data_dir.clone(),
            crate::wal::archive::node_archive(&crate::objects::Objects::open(&url)?, options.id),
            stop.clone(),
        )),
        None => None,
    };
    node.serve(listener, stop).await?;
    if let Some(uploader) = uploader {
        let _ = uploader.await;
    }
    tracing::info!("WAL node stopped");
    Ok(())
}

fn run_wal_recover(args: WalRecoverArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    use crate::wal::{archive, committed_state_at_with, StdDisk, Target};
    let target = match (args.to_lsn, &args.to_time) {
        (Some(lsn), _) => Target::Lsn(lsn),
        (None, Some(time)) => Target::Time(
            meridian_shared::sales::parse_rfc3339_ms(time)
                .ok_or_else(|| anyhow::anyhow!("{time:?} is not an RFC 3339 time"))?,
        ),
        (None, None) => anyhow::bail!("give --to-lsn or --to-time"),
    };
    let disk = StdDisk::new();
    // The node's archive from object storage, in a directory of our own (never the
    // node's: recovery may run beside it), removed afterwards.
    let fetched = match (&args.archive, args.node) {
        (Some(url), Some(node)) => {
            let dir = std::env::temp_dir().join(format!(
                "meridian-wal-archive-{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            let store = archive::node_archive(&crate::objects::Objects::open(url)?, node);
            let n = runtime
                .block_on(archive::download(store.as_ref(), &disk, &dir))
                .map_err(|e| anyhow::anyhow!("cannot fetch the archive from {url}: {e}"))?;
            eprintln!("fetched {n} archived segments of node {node}");
            Some(dir)
        }
        _ => None,
    };
    let recovered = committed_state_at_with(&disk, &args.data_dir, fetched.as_deref(), target);
    if let Some(dir) = &fetched {
        let _ = std::fs::remove_dir_all(dir);
    }
    let Some((kv, _)) = recovered? else {
        anyhow::bail!(
            "{}: nothing is known to be committed",
            args.data_dir.display()
        );
    };
    let state = serde_json::json!({
        "lsn": kv.last_applied(),
        "entries": kv.entries(),
    });
    std::fs::write(&args.out, serde_json::to_vec_pretty(&state)?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", args.out.display()))?;
    Ok(())
}

fn run_wal_simulate(args: WalSimulateArgs) -> anyhow::Result<()> {
    use crate::wal::sim::{run_schedules, Progress, Variant};
    let seed = args.seed.unwrap_or_else(|| rand::random::<u32>().into());
    println!(
        "{} schedules of {} nodes from seed {seed}",
        args.schedules, args.nodes
    );
    let print = |progress: &Progress| {
        println!(
            "{} schedules ({:.1}/s): {} operations, {} acknowledged writes, {} crashes, \
             {} membership changes, {} checks inconclusive",
            progress.schedules,
            progress.per_second(),
            progress.operations,
            progress.acknowledged,
            progress.crashes,
            progress.membership_changes,
            progress.inconclusive
        );
    };
    let mut last_print = std::time::Instant::now();
    let outcome = run_schedules(
        seed,
        args.schedules,
        args.nodes,
        Variant::Correct,
        |progress| {
            if last_print.elapsed() >= Duration::from_secs(5) {
                last_print = std::time::Instant::now();
                print(progress);
            }
        },
    );
    match outcome {
        Ok(progress) => {
            print(&progress);
            println!("every schedule passed");
            Ok(())
        }
        Err((progress, failure)) => {
            print(&progress);
            anyhow::bail!("{failure}")
        }
    }
}

async fn run_grant(args: GrantArgs) -> anyhow::Result<()> {
    let mut config = Config::new(args.data_dir);
    config.database_url = args.database_url.filter(|url| !url.is_empty());
    let db = crate::Db::open(&config.database_url()).await?;
    let ids = crate::ids::Ids::new("meridian admin grant");
    let stop = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    ids.start_keeper(db.pool.clone(), stop.clone(), &tasks)
        .await;
    let now_ms = crate::Clock::now_ms(&SystemClock);
    let result =
        crate::auth::admin::grant_from_command_line(&db, &ids, now_ms, &args.username, args.role)
            .await;
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    db.pool.close().await;
    let before = result?;
    if before == args.role {
        println!("{} already is {}", args.username, args.role);
    } else {
        println!("{} is now {} (was {before})", args.username, args.role);
    }
    Ok(())
}

async fn run_feed_seed(args: FeedSeedArgs) -> anyhow::Result<()> {
    let mut config = Config::new(args.data_dir);
    config.database_url = args.database_url.filter(|url| !url.is_empty());
    let db = crate::Db::open(&config.database_url()).await?;
    let ids = crate::ids::Ids::new("meridian feed-seed");
    let stop = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    ids.start_keeper(db.pool.clone(), stop.clone(), &tasks)
        .await;
    let options = crate::feed::seed::SeedOptions {
        accounts: args.accounts,
        seed: args.seed,
        prefix: args.prefix,
        now_ms: crate::Clock::now_ms(&SystemClock),
        pull_threshold: args.pull_threshold,
    };
    let result = crate::feed::seed::seed(&db, &ids, &options).await;
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    db.pool.close().await;
    let report = result?;
    println!(
        "seeded {} accounts, {} follows, {} posts, {} likes in {:.1} s; sign in as {}0..{}{} with the password {}",
        report.accounts,
        report.follows,
        report.posts,
        report.likes,
        report.seconds,
        options.prefix,
        options.prefix,
        report.accounts.saturating_sub(1),
        crate::feed::seed::DEMO_PASSWORD,
    );
    Ok(())
}

async fn run_sync(args: SyncArgs) -> anyhow::Result<()> {
    let password = match std::env::var("MERIDIAN_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            eprint!("password for {}: ", args.username);
            std::io::stderr().flush()?;
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let config = crate::drive::agent::AgentConfig {
        root: args.dir,
        server: args.server,
        username: args.username,
        password,
        device: args.device,
        once: args.once,
        poll: Duration::from_millis(args.poll_ms.max(10)),
    };
    crate::drive::agent::run(config, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}
