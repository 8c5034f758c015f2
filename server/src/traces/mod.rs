//! Distributed tracing: OTLP/HTTP and Zipkin ingest, the span store, Meridian's trace
//! API and Tempo's HTTP API (so Grafana's Tempo data source works against us).
//!
//! ```text
//! store/    the span store engine (no HTTP): ingest log, blocks, compaction, retention
//! convert   OTLP ⇄ the store's records ⇄ the wire types of meridian_shared::traces
//! ingest    POST /v1/traces (OTLP protobuf/JSON, gzip/deflate), POST /api/v2/spans (Zipkin)
//! query     /api/tracing/...: trace tree, search, services, dependency graph
//! selftrace the server's own request spans, into its own store (sampled, never blocking)
//! sim       the 50-service simulator of `meridian trace-sim`
//! tempo     /api/traces/{id}, /api/v2/traces/{id}, /api/search, tags, /api/echo
//! traceql   the TraceQL subset of /api/search (`q=`), parsed and mapped onto SpanQuery
//! access    the permission reading traces needs
//! ```
//!
//! Invariants: an ingest is answered 200 only once its spans are in the synced log
//! (see `store`); a full store answers 429 with `Retry-After` at once, never queues
//! without bound; bodies past 20 MiB (compressed or not) get 413. Ingest and the Tempo
//! API serve agents and Grafana, which carry no session: they mint no guest session.
//! Meridian's own API needs `tracing:read`.

pub mod access;
pub mod convert;
pub mod ingest;
pub mod query;
pub mod selftrace;
pub mod sim;
pub mod store;
pub mod tempo;
pub mod traceql;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use utoipa_axum::router::OpenApiRouter;

use self::store::{BlockStorage, LocalDir, ObjectBlocks, SpanStore, StoreConfig, StoreError};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::ApiError;
use crate::openapi::with_platform_errors;
use crate::AppState;

/// Paths of agents and Grafana: no guest session is minted for them.
pub const WITHOUT_GUEST_SESSION: &[&str] = &[
    "/v1/traces",
    "/api/v2/spans",
    "/api/traces/",
    "/api/v2/traces/",
    "/api/search",
    "/api/echo",
];

/// The largest accepted ingest body, compressed or decompressed.
pub const MAX_INGEST_BYTES: usize = 20 * 1024 * 1024;

/// The tracing system's handle in `AppState`.
#[derive(Clone)]
pub struct Traces {
    pub store: SpanStore,
    pub self_tracer: Arc<selftrace::SelfTracer>,
}

impl Traces {
    /// Opens the span store under `<data_dir>/traces`, its blocks there too or under
    /// `traces/blocks` in object storage. Blocking: call it off the runtime's worker
    /// threads.
    pub fn open(
        config: &Config,
        clock: Arc<dyn Clock>,
        objects: Option<&crate::objects::Objects>,
    ) -> Result<Traces, StoreError> {
        let root = config.data_dir.join("traces");
        let mut store_config = StoreConfig::new(root.join("log"));
        store_config.retention = config.traces_retention;
        store_config.max_bytes = config.traces_max_bytes;
        store_config.max_buffered_spans = config.traces_max_buffered_spans;
        let storage: Arc<dyn BlockStorage> = match objects {
            Some(objects) => {
                // The blocks' runtime is not the server's (see `ObjectBlocks`).
                let objects = objects.own_client().map_err(io::Error::other)?;
                Arc::new(ObjectBlocks::new(objects.under("traces/blocks"))?)
            }
            None => Arc::new(LocalDir::open(root.join("blocks"))?),
        };
        Ok(Traces {
            store: SpanStore::open(store_config, storage, clock)?,
            self_tracer: Arc::new(selftrace::SelfTracer::new(config.traces_self_sample_rate)),
        })
    }
}

/// Compaction and retention every minute; the writer stops with the server.
pub fn start(state: &AppState) {
    state.traces.self_tracer.start(
        state.traces.store.clone(),
        state.shutdown.clone(),
        &state.tasks,
    );
    let store = state.traces.store.clone();
    let shutdown = state.shutdown.clone();
    state.tasks.spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        every.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = every.tick() => {}
            }
            let store = store.clone();
            let result = tokio::task::spawn_blocking(move || {
                store.compact()?;
                store.enforce_retention()
            })
            .await;
            match result {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => tracing::warn!(%err, "span store maintenance failed"),
                Err(err) => tracing::warn!(%err, "span store maintenance panicked"),
            }
        }
        let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
    });
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::Full => ApiError::too_many("the span store is behind; retry later", 1),
            StoreError::Closed => ApiError::unavailable("the span store is shutting down"),
            other => ApiError::internal(other),
        }
    }
}

/// Runs a blocking store read off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

pub fn routes() -> OpenApiRouter<AppState> {
    with_platform_errors(
        OpenApiRouter::new()
            .merge(ingest::routes())
            .merge(query::routes())
            .merge(tempo::routes()),
    )
}
