//! A real Meridian server in the test process: the real `AppState`, router and
//! `meridian_server::serve` on `127.0.0.1:0`, over a [`TestDatabase`] of either backend.
//!
//! Time is a [`ManualClock`] (starting at the machine's time) that only the test moves:
//! session ages, sign-in windows and event timestamps are exact. The web UI is a minimal
//! stand-in (the `index.html` template with its two markers and a fake content-hashed
//! bundle named by `pkg/manifest.json`), so static serving is testable without the wasm
//! build.
//!
//! Invariant: every server is shut down when its `TestServer` is dropped (dropping the
//! shutdown sender resolves the shutdown future); [`TestServer::shutdown`] does it
//! explicitly and waits until `serve` has returned.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meridian_server::{AppState, Config, ManualClock};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::db::TestDatabase;

/// The fake bundle's file names, as `pkg/manifest.json` names them.
pub const BUNDLE_SCRIPT: &str = "meridian_web-0123456789abcdef.js";
pub const BUNDLE_WASM: &str = "meridian_web_bg-0123456789abcdef.wasm";
pub const BUNDLE_STYLE: &str = "style-0123456789abcdef.css";

/// The `index.html` template the fake web UI is rendered from.
pub const INDEX_TEMPLATE: &str = "<!doctype html>
<html lang=\"en\">
<head>
  <meta charset=\"utf-8\">
  <title>Meridian (test)</title>
  <!--MERIDIAN_HEAD-->
</head>
<body>
  <!--MERIDIAN_BOOT-->
</body>
</html>
";

/// How long [`TestServer::shutdown`] and [`eventually`] wait before failing the test.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A running server instance.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The instance's state: its config, database, hub, clock...
    pub state: AppState,
    /// The instance's clock; moving it moves the server's time.
    pub clock: ManualClock,
    /// Where the fake web UI lives (unless the test pointed `static_dir` elsewhere).
    pub static_dir: PathBuf,
    shutdown: oneshot::Sender<()>,
    serving: JoinHandle<std::io::Result<()>>,
    _static_files: tempfile::TempDir,
}

impl TestServer {
    /// A server with the default configuration.
    pub async fn start(db: &TestDatabase) -> TestServer {
        TestServer::start_with(db, |_| {}).await
    }

    /// A server whose configuration `configure` adjusts (smaller limits, shorter
    /// heartbeats...) before it starts.
    pub async fn start_with(db: &TestDatabase, configure: impl FnOnce(&mut Config)) -> TestServer {
        let static_files = tempfile::tempdir().expect("create a directory for the web UI");
        write_fake_web_ui(static_files.path());
        let mut config = Config::new(db.data_dir());
        config.database_url = Some(db.url.clone());
        config.static_dir = static_files.path().to_owned();
        configure(&mut config);

        let clock = ManualClock::new(system_now_ms());
        let state = AppState::start(config, Arc::new(clock.clone()))
            .await
            .unwrap_or_else(|e| panic!("start the server on {}: {e}", db.url));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("the listener's address");
        let (shutdown, stop) = oneshot::channel::<()>();
        let serving = tokio::spawn(meridian_server::serve(listener, state.clone(), async {
            // Resolves on `shutdown()` and when the sender is dropped with the server.
            let _ = stop.await;
        }));
        TestServer {
            addr,
            state,
            clock,
            static_dir: static_files.path().to_owned(),
            shutdown,
            serving,
            _static_files: static_files,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://127.0.0.1:<port>/api/realtime`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/api/realtime", self.addr)
    }

    /// Triggers a graceful shutdown and waits until `serve` has returned (it closes every
    /// WebSocket and waits for background tasks first). Fails the test if `serve` fails or
    /// takes longer than [`PATIENCE`].
    pub async fn shutdown(self) {
        let TestServer {
            shutdown, serving, ..
        } = self;
        let _ = shutdown.send(());
        match tokio::time::timeout(PATIENCE, serving).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => panic!("serve failed: {err}"),
            Ok(Err(join)) => panic!("serve panicked: {join}"),
            Err(_) => panic!("serve did not return within {PATIENCE:?} of shutdown"),
        }
    }

    /// Waits until the hub holds exactly `expected` realtime connections.
    pub async fn wait_for_connections(&self, expected: usize) {
        let hub = &self.state.hub;
        eventually(&format!("{expected} realtime connections"), || {
            hub.connection_count() == expected
        })
        .await;
        assert_eq!(hub.connection_count(), expected);
    }
}

/// Polls `condition` until it holds, failing the test after [`PATIENCE`]. For states the
/// server reaches on its own (a connection dropped by a timer): a bounded poll with a
/// deadline, never a fixed sleep standing in for "long enough".
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The fake bundle's brotli-precompressed wasm (`<wasm>.br` beside it, as the web build
/// writes it; its content is only compared, never decoded).
pub const BUNDLE_WASM_BROTLI: &[u8] = b"precompressed with brotli";

/// The content of the fake bundle's script (large enough to be compressed).
pub fn bundle_script() -> String {
    "export default async function init(options) { return options; }\n".repeat(64)
}

/// Writes the stand-in web UI: the template, the manifest and the hashed bundle files.
pub fn write_fake_web_ui(dir: &Path) {
    let pkg = dir.join("pkg");
    std::fs::create_dir_all(&pkg).expect("create static/pkg");
    let manifest = serde_json::json!({
        "script": BUNDLE_SCRIPT,
        "wasm": BUNDLE_WASM,
        "style": BUNDLE_STYLE,
    });
    let files: [(PathBuf, Vec<u8>); 6] = [
        (dir.join("index.html"), INDEX_TEMPLATE.into()),
        (pkg.join("manifest.json"), manifest.to_string().into()),
        (pkg.join(BUNDLE_SCRIPT), bundle_script().into()),
        (pkg.join(BUNDLE_WASM), b"\0asm\x01\0\0\0".to_vec()),
        (
            pkg.join(format!("{BUNDLE_WASM}.br")),
            BUNDLE_WASM_BROTLI.to_vec(),
        ),
        (pkg.join(BUNDLE_STYLE), b"body { margin: 0; }\n".to_vec()),
    ];
    for (path, content) in files {
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the machine's clock is after 1970")
        .as_millis() as i64
}
