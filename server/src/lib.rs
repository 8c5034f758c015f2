//! Meridian's server: a thin axum/tokio layer over the authoritative state in the
//! database.
//!
//! ```text
//! cli        the `meridian` binary: config from flags and environment, signals
//! config     Config: every setting of an instance
//! db         Db: the sqlx pool (SQLite or PostgreSQL) and migrations
//! error      ApiError and the extractors whose rejections become it
//! auth/      accounts, sessions (guest on first request), sign-in limits
//! cart/      the shopping cart: catalog, carts, guest merge on sign-in, history
//! realtime/  the WebSocket channel, topic log, broadcast hub, PostgreSQL bridge
//! health     GET /api/health
//! flags/     feature flags: admin API, SSE stream, OFREP
//! docs/      collaborative documents: /api/docs and the y-websocket endpoint /yjs/{id}
//! feed/      the news feed: posts, follows, likes, hybrid fanout, ranking, feed-seed
//! drive/     file sync: /api/drive (nodes, chunked uploads, change feed, shares), `meridian sync`
//! ids/       the unique ID generator: node id leases, snowflakes, UUIDv7
//! sales/     the flash sale: a batched single-writer ledger, queue, orders, outbox
//! eta/       ETA under live traffic: road network, map matching, live weights, trips
//! openapi    the error answers the platform gives for every route, declared once
//! web        static files, SPA fallback, the rendered index.html, caching
//! trace_context  W3C traceparent on every request
//! wal/       the replicated write-ahead log: engine, wal-node, the local cluster and /api/wal
//! objects    object storage (`--object-store`): the URL opened, a prefixed view per user
//! traces/   distributed tracing: OTLP and Zipkin ingest, the span store, our and Tempo's API
//! ```
//!
//! [`app`] builds the router from an [`AppState`]; [`serve`] runs it on a listener the
//! caller has bound (tests bind `127.0.0.1:0`) until a shutdown future resolves.

/// Every process linking the server (the `meridian` binary, tests, benches) allocates
/// with mimalloc: see the workspace's Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod auth;
pub mod cart;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod docs;
pub mod drive;
pub mod error;
pub mod eta;
pub mod feed;
pub mod flags;
pub mod health;
pub mod ids;
pub mod objects;
pub mod openapi;
pub mod platform;
pub mod realtime;
pub mod sales;
pub mod trace_context;
pub mod traces;
pub mod wal;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, FromRef, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::config::Config;
pub use crate::db::Db;

/// How many sessions an instance keeps in memory ([`auth::known`]).
const KNOWN_SESSIONS: usize = 200_000;
/// How long the record of session changes is kept: an instance idle for longer forgets
/// the sessions it knew.
const SESSION_CHANGES_KEPT_MS: i64 = 3_600_000;

/// Everything a request handler can reach: one shared [`Shared`], so a clone (axum
/// clones the state for each extractor and middleware of every request) is one atomic
/// increment, not one per handle.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Another state sharing this one's handles but those `change` replaces.
    #[cfg(test)]
    pub(crate) fn with(&self, change: impl FnOnce(&mut Shared)) -> AppState {
        let mut shared = Shared::clone(&self.0);
        change(&mut shared);
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
#[derive(Clone)]
pub struct Shared {
    pub config: Arc<Config>,
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    /// Randomness for secrets (session tokens); seeded in tests that replay.
    pub entropy: Arc<dyn clock::Entropy>,
    pub hub: realtime::hub::Hub,
    pub auth_limits: Arc<auth::AuthLimits>,
    /// The sessions this instance has read (kept exact by the change log).
    pub sessions: Arc<auth::known::KnownSessions>,
    /// A random id of this process.
    pub instance_id: Arc<str>,
    pub started_at: Instant,
    /// Cancelled when the server begins to shut down.
    pub shutdown: CancellationToken,
    /// Background tasks and open WebSockets, which shutdown waits for.
    pub tasks: TaskTracker,
    pub web: Arc<web::WebAssets>,
    /// The ID generator (node id lease kept in the background).
    pub ids: ids::Ids,
    /// The catalog and the carts' clock.
    pub carts: Arc<cart::Carts>,
    /// The live feature-flag configuration and its stream subscribers.
    pub flags: Arc<flags::Live>,
    /// The documents loaded on this instance.
    pub docs: Arc<docs::Rooms>,
    /// The news feed: its store, fanout worker and settings.
    pub feed: Arc<feed::Feeds>,
    /// The flash sales' writers on this instance, rate limits, payment simulator.
    pub sales: Arc<sales::Sales>,
    /// File sync: where chunks are stored.
    pub drive: drive::Drive,
    /// The span store (distributed tracing).
    pub traces: traces::Traces,
    /// What the systems declare: permissions, hooks.
    pub platform: Arc<platform::Platform>,
    /// The routing engine with live traffic, and the trips en route.
    pub eta: eta::Eta,
    /// The local WAL cluster (`--wal-nodes`); `None` when it is off.
    pub wal: Option<wal::local::LocalCluster>,
}

impl axum::extract::FromRef<AppState> for auth::Auth {
    fn from_ref(state: &AppState) -> auth::Auth {
        auth::Auth::new(auth::AuthParts {
            db: state.db.clone(),
            clock: state.clock.clone(),
            entropy: state.entropy.clone(),
            config: state.config.clone(),
            hub: state.hub.clone(),
            sessions: state.sessions.clone(),
            ids: state.ids.clone(),
            limits: state.auth_limits.clone(),
            platform: state.platform.clone(),
            on_sign_in: Arc::new(SystemHooks(state.clone())),
        })
    }
}

impl FromRef<AppState> for realtime::Realtime {
    fn from_ref(state: &AppState) -> realtime::Realtime {
        realtime::Realtime {
            db: state.db.clone(),
            hub: state.hub.clone(),
            clock: state.clock.clone(),
            instance_id: state.instance_id.clone(),
            heartbeat: state.config.heartbeat,
            client_timeout: state.config.client_timeout,
            shutdown: state.shutdown.clone(),
            tasks: state.tasks.clone(),
        }
    }
}

impl FromRef<AppState> for health::Instance {
    fn from_ref(state: &AppState) -> health::Instance {
        health::Instance {
            db: state.db.clone(),
            hub: state.hub.clone(),
            started_at: state.started_at,
            instance_id: state.instance_id.clone(),
        }
    }
}

impl FromRef<AppState> for Arc<web::WebAssets> {
    fn from_ref(state: &AppState) -> Arc<web::WebAssets> {
        state.web.clone()
    }
}

/// The hooks each system adds to the platform, wired here (the composition root) so that
/// plumbing names no system. Made per use from the state: it is never stored in it.
struct SystemHooks(AppState);

impl platform::SignInHook for SystemHooks {
    fn on_sign_in<'a>(
        &'a self,
        guest_session_id: &'a str,
        user_id: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<(), error::ApiError>> {
        Box::pin(async move {
            cart::merge_on_sign_in(&self.0, guest_session_id, user_id).await?;
            Ok(())
        })
    }
}

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error("cannot load the feature flags: {0}")]
    Flags(#[source] sqlx::Error),
    #[error("cannot load the catalog: {0}")]
    Catalog(#[source] sqlx::Error),
    #[error("cannot LISTEN for other instances' events: {0}")]
    Listen(#[source] sqlx::Error),
    #[error("cannot open the span store: {0}")]
    Traces(#[source] traces::store::StoreError),
    #[error(transparent)]
    Objects(#[from] objects::ObjectsError),
    #[error("cannot start the local WAL cluster: {0}")]
    Wal(#[from] wal::local::LocalError),
}

impl AppState {
    /// Opens the database (migrating it), connects to the other instances when on
    /// PostgreSQL, and starts the background jobs.
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<AppState, StartError> {
        let db = Db::open(&config.database_url()).await?;
        let instance_id: Arc<str> = Arc::from(hex::encode(rand::random::<[u8; 8]>()));
        let catalog = cart::Catalog::load(&db.pool)
            .await
            .map_err(StartError::Catalog)?;
        let hub = realtime::hub::Hub::new(config.outbound_queue, clock.clone());
        let ids = ids::Ids::new(&instance_id);
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let wal = wal::local::LocalCluster::start(&config, &shutdown, &tasks)?;
        let objects = match &config.object_store {
            Some(url) => Some(objects::Objects::open(url)?),
            None => None,
        };
        // Opening the span store reads its blocks: blocking work (network work with
        // object storage), kept off the runtime's worker threads.
        let traces = {
            let (config, clock, objects) = (config.clone(), clock.clone(), objects.clone());
            tokio::task::spawn_blocking(move || {
                traces::Traces::open(&config, clock, objects.as_ref())
            })
            .await
            .map_err(|err| StartError::Traces(std::io::Error::other(err).into()))?
            .map_err(StartError::Traces)?
        };
        let state = AppState(Arc::new(Shared {
            feed: Arc::new(feed::Feeds::new(
                db.clone(),
                hub.clone(),
                clock.clone(),
                ids.clone(),
                feed::FeedConfig::from_config(&config),
            )),
            hub,
            auth_limits: Arc::new(auth::AuthLimits::new(&config)),
            sessions: Arc::new(auth::known::KnownSessions::new(KNOWN_SESSIONS)),
            ids,
            carts: Arc::new(cart::Carts::new(catalog, &instance_id)),
            flags: Arc::default(),
            docs: Arc::default(),
            sales: Arc::new(sales::Sales::new(&config)),
            drive: drive::Drive::open(&config.data_dir, objects.as_ref()),
            traces,
            eta: eta::Eta::default(),
            wal,
            platform: Arc::new(
                platform::Platform::with_platform_permissions()
                    .without_guest_session(realtime::WITHOUT_GUEST_SESSION)
                    .permissions(flags::access::PERMISSIONS)
                    .without_guest_session(flags::access::WITHOUT_GUEST_SESSION)
                    .without_guest_session(docs::WITHOUT_GUEST_SESSION)
                    .permissions(sales::access::PERMISSIONS)
                    .permissions(traces::access::PERMISSIONS)
                    .without_guest_session(traces::WITHOUT_GUEST_SESSION)
                    .permissions(wal::access::PERMISSIONS),
            ),
            instance_id,
            started_at: Instant::now(),
            shutdown,
            tasks,
            web: Arc::new(web::WebAssets::load(&config.static_dir)),
            config: Arc::new(config),
            clock,
            entropy: Arc::new(clock::OsEntropy),
            db,
        }));
        if state.db.backend == meridian_shared::api::DatabaseBackend::Postgres {
            let listener = realtime::pg::listen(&state.db.url)
                .await
                .map_err(StartError::Listen)?;
            state.hub.set_remote(Arc::new(realtime::pg::PgRemote::new(
                state.db.pool.clone(),
                &state.instance_id,
                state.tasks.clone(),
            )));
            state.tasks.spawn(realtime::pg::relay(
                listener,
                state.hub.clone(),
                state.db.pool.clone(),
                state.instance_id.clone(),
                state.shutdown.clone(),
            ));
        }
        state.docs.attach(state.clone());
        feed::start(&state);
        traces::start(&state);
        state.tasks.spawn(maintenance_loop(state.clone()));
        eta::start(&state);
        flags::start(&state).await.map_err(StartError::Flags)?;
        sales::Sales::start(&state);
        state
            .ids
            .start_keeper(state.db.pool.clone(), state.shutdown.clone(), &state.tasks)
            .await;
        Ok(state)
    }
}

/// What one maintenance pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub guest_sessions_deleted: u64,
    pub session_changes_pruned: u64,
    pub events_trimmed: u64,
    pub guest_carts_deleted: u64,
    pub sale_reservations_expired: u64,
    pub drive: drive::retention::RetentionReport,
}

/// Deletes idle guest sessions (older than `guest_session_ttl`) and idle guest carts
/// (`guest_cart_ttl`), trims topic logs, and applies the drive's retention (old
/// versions, the trash, expired uploads, unreferenced chunks).
pub async fn run_maintenance(state: &AppState) -> Result<MaintenanceReport, sqlx::Error> {
    let ttl_ms = state.config.guest_session_ttl.as_millis() as i64;
    let idle_before = state.clock.now_ms() - ttl_ms;
    Ok(MaintenanceReport {
        guest_sessions_deleted: auth::store::delete_idle_guest_sessions(
            &state.db.pool,
            idle_before,
            state.clock.now_ms(),
        )
        .await?,
        session_changes_pruned: auth::store::prune_session_changes(
            &state.db.pool,
            state.clock.now_ms() - SESSION_CHANGES_KEPT_MS,
        )
        .await?,
        guest_carts_deleted: cart::store::delete_idle_guest_carts(
            &state.db.pool,
            state.clock.now_ms() - state.config.guest_cart_ttl.as_millis() as i64,
        )
        .await?,
        sale_reservations_expired: sales::expire_due(state).await?,
        drive: drive::retention::run(state).await?,
        events_trimmed: realtime::store::trim(&state.db.pool, realtime::RETAINED_EVENTS_PER_TOPIC)
            .await?,
    })
}

async fn maintenance_loop(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match run_maintenance(&state).await {
            Ok(report) => tracing::info!(?report, "maintenance done"),
            Err(err) => tracing::warn!(%err, "maintenance failed"),
        }
    }
}

#[derive(OpenApi)]
#[openapi(info(
    title = "Meridian",
    description = "Ten distributed systems in one browser-first product. Every error is `{\"code\": ..., \"message\": ...}`."
))]
struct ApiDoc;

/// Every endpoint, with its OpenAPI description.
fn api_routes() -> OpenApiRouter<AppState> {
    openapi::with_platform_errors(
        OpenApiRouter::with_openapi(ApiDoc::openapi()).routes(routes!(openapi_json)),
    )
    .merge(health::routes())
    .merge(auth::routes())
    .merge(realtime::routes())
    .merge(ids::routes())
    .merge(cart::routes())
    .merge(flags::routes())
    .merge(docs::routes())
    .merge(feed::routes())
    .merge(sales::routes())
    .merge(drive::routes())
    .merge(traces::routes())
    .merge(eta::routes())
    .merge(wal::pages::routes())
}

static OPENAPI_JSON: LazyLock<String> = LazyLock::new(|| {
    let (_, doc) = api_routes().split_for_parts();
    doc.to_pretty_json()
        .expect("the OpenAPI document serialises")
});

/// The OpenAPI document of every endpoint (generated from the code).
pub fn openapi_json_text() -> &'static str {
    &OPENAPI_JSON
}

/// This OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
async fn openapi_json() -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        openapi_json_text(),
    )
        .into_response()
}

/// The whole HTTP surface of an instance.
pub fn app(state: AppState) -> Router {
    let (api, _) = api_routes().split_for_parts();
    let api = api
        .route("/api", any(error::api_not_found))
        .route("/api/{*rest}", any(error::api_not_found))
        .method_not_allowed_fallback(error::method_not_allowed);
    // The web build writes `.br` and `.gz` beside each bundle file; a client that
    // accepts them gets those bytes, compressed once at the highest settings.
    let static_files = ServeDir::new(&state.config.static_dir)
        .precompressed_br()
        .precompressed_gzip()
        .append_index_html_on_directories(false)
        .fallback(get(web::spa_fallback).with_state(state.clone()));
    Router::new()
        .merge(api)
        .route("/", get(web::index))
        .route("/index.html", get(web::index))
        .fallback_service(static_files)
        .layer(axum::middleware::from_fn(web::cache_control_middleware))
        .layer(axum::middleware::from_fn_with_state(
            auth::Auth::from_ref(&state),
            auth::session::session_middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.traces.self_tracer.clone(),
            traces::selftrace::record_requests,
        ))
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        .layer(CompressionLayer::new())
        .layer(
            TraceLayer::new_for_http()
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
                .make_span_with(|request: &Request| {
                    let trace_id = request
                        .extensions()
                        .get::<trace_context::RequestTrace>()
                        .map(|t| t.context.trace_id_hex())
                        .unwrap_or_default();
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        trace_id = %trace_id,
                    )
                }),
        )
        .layer(axum::middleware::from_fn(
            trace_context::trace_context_middleware,
        ))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` resolves (or `state.shutdown` is
/// cancelled). Then stops accepting, lets in-flight requests finish, closes every
/// WebSocket with a close frame, and waits (up to 10 s) for background tasks.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = state.shutdown.clone();
    let trigger = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown => trigger.cancel(),
            _ = trigger.cancelled() => {}
        }
    });
    let router = app(state.clone());
    // Realtime traffic is many small frames: send each at once rather than waiting for
    // the peer's ACK of the previous one (Nagle), as Node's servers do by default.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "could not set TCP_NODELAY");
        }
    });
    let result = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { token.cancelled().await })
    .await;
    state.shutdown.cancel();
    state.tasks.close();
    if tokio::time::timeout(Duration::from_secs(10), state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop within 10 s");
    }
    state.db.pool.close().await;
    result
}
