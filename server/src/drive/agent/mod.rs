//! `meridian sync DIR --server URL --username NAME [--device NAME] [--once]`: the agent
//! that keeps a local folder and a drive in step, both ways.
//!
//! ```text
//! api    the HTTP client of /api/drive (streaming uploads of missing chunks, checked downloads)
//! state  what the agent remembers: the remote tree, the cursor, the synced tree
//! sync   one pass: pull, compare three ways, push, pull, materialise
//! ```
//!
//! It runs a pass at start, then again when the folder changes (the `notify` watcher;
//! events within 100 ms are batched into one pass) and every `poll` for remote changes
//! (the change feed is one indexed query; a pass with nothing to do sends one request).
//! `--once` runs one pass and exits. After a crash (kill -9) the next start compares the
//! folder with its saved state and the drive, and carries on (see `state`).

pub mod api;
pub mod state;
pub mod sync;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use self::api::{Api, Refusal};
use self::state::AgentState;
use self::sync::{PassReport, Syncer};

/// Why the agent stopped or a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the server refused: {} {} ({})", .0.status, .0.code, .0.message)]
    Refused(Refusal),
    #[error("cannot reach the server: {0}")]
    Http(#[from] reqwest::Error),
    #[error("local folder: {0}")]
    Io(#[from] std::io::Error),
    #[error("the agent's state file is unreadable: {0}")]
    State(String),
    #[error("version {0} arrived corrupt (its content does not match its id)")]
    Corrupt(String),
    #[error("a crash injected by a test")]
    Crashed,
    #[error("cannot watch the folder: {0}")]
    Watch(#[from] notify::Error),
}

/// What `meridian sync` was asked to do.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub root: PathBuf,
    pub server: String,
    pub username: String,
    pub password: String,
    pub device: String,
    pub once: bool,
    /// How often to ask for remote changes when nothing happens locally.
    pub poll: Duration,
}

/// Signs in and syncs until `shutdown` (or after one pass with `once`).
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    std::fs::create_dir_all(&config.root)?;
    let root = config.root.canonicalize()?;
    let api = Api::sign_in(&config.server, &config.username, &config.password).await?;
    let state = AgentState::load(&root, &config.server, &config.username)?;
    let mut syncer = Syncer::new(api, root.clone(), config.device.clone(), state);
    if config.once {
        let report = syncer.pass().await?;
        print_report(&report);
        return Ok(());
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let agent_dir = AgentState::dir(&root);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if event.paths.iter().any(|p| !p.starts_with(&agent_dir)) {
                let _ = tx.send(());
            }
        }
    })?;
    watcher.watch(&root, RecursiveMode::Recursive)?;
    tokio::pin!(shutdown);
    let mut failures = 0u32;
    loop {
        match syncer.pass().await {
            Ok(report) => {
                failures = 0;
                if report.changed_anything() {
                    print_report(&report);
                }
            }
            Err(err) => {
                failures += 1;
                tracing::warn!(%err, failures, "sync pass failed; retrying");
            }
        }
        let wait = if failures == 0 {
            config.poll
        } else {
            Duration::from_millis(250 * 2u64.pow(failures.min(5)))
        };
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
            Some(()) = rx.recv() => {
                // Batch a burst of changes (an editor's save, a copied folder) into one pass.
                tokio::time::sleep(Duration::from_millis(100)).await;
                while rx.try_recv().is_ok() {}
            }
        }
    }
}

fn print_report(report: &PassReport) {
    println!(
        "synced: {} uploaded ({} chunks sent, {} of them as deltas), {} downloaded, {} moved, {} deleted here, {} deleted there, {} conflicts",
        report.uploaded,
        report.chunks_sent,
        report.deltas_sent,
        report.downloaded,
        report.moved,
        report.deleted_local,
        report.deleted_remote,
        report.conflicts
    );
}
