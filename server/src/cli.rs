//! The `meridian` command line: `meridian serve --listen ADDR --data-dir DIR`, each flag
//! also settable from the environment (MERIDIAN_LISTEN, MERIDIAN_DATA_DIR, DATABASE_URL,
//! ...). Prints `Meridian listening on http://ADDR` on stdout once it accepts connections,
//! and shuts down gracefully on SIGTERM or Ctrl-C.

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
    /// The OpenStreetMap extract (.osm.pbf) ETA routes on; without it, a synthetic
    /// network over central Helsinki.
    #[arg(long, env = "MERIDIAN_ETA_MAP")]
    eta_map: Option<PathBuf>,
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
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=info".into()),
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
    config.eta_map = args.eta_map;
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
