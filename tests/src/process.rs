//! The real `meridian` binary as a child process, for tests that kill, signal and restart
//! servers, or run several of them on one database.
//!
//! The binary's path comes from the test (`env!("CARGO_BIN_EXE_meridian-under-test")`,
//! which exists only in integration tests). A [`ServerProcess`] is started with
//! `serve --listen 127.0.0.1:0` and is ready once it printed `Meridian listening on
//! http://ADDR`; its stderr goes to a file in the data directory, quoted whenever a start
//! or an exit goes wrong.
//!
//! Invariant: a `ServerProcess` never outlives its test: dropping it kills the child.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::db::TestDatabase;

/// How long a server may take from spawn to its "listening" line (migrations included).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful shutdown may take (the server itself waits at most 10 s for its
/// background tasks).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

const LISTENING_PREFIX: &str = "Meridian listening on http://";

/// A server process started from the real binary.
pub struct ServerProcess {
    child: Child,
    /// Where the server accepts connections.
    pub addr: SocketAddr,
    stderr_path: PathBuf,
    /// Set once the child has been waited for.
    exited: Option<ExitStatus>,
}

impl ServerProcess {
    /// Starts `bin` on `db` (its URL and its data directory), with an empty static
    /// directory: for tests of the API only.
    pub async fn start(bin: impl AsRef<Path>, db: &TestDatabase) -> ServerProcess {
        let static_dir = db.data_dir().join("static-empty");
        std::fs::create_dir_all(&static_dir).expect("create an empty static directory");
        ServerProcess::start_with(bin, &db.url, db.data_dir(), &static_dir).await
    }

    /// Like [`start`](Self::start), listening on `listen` (to restart a server where its
    /// clients expect it).
    pub async fn start_at(
        bin: impl AsRef<Path>,
        db: &TestDatabase,
        listen: SocketAddr,
    ) -> ServerProcess {
        let static_dir = db.data_dir().join("static-empty");
        std::fs::create_dir_all(&static_dir).expect("create an empty static directory");
        ServerProcess::launch(bin.as_ref(), &db.url, db.data_dir(), &static_dir, listen).await
    }

    /// Starts `bin` with `DATABASE_URL=database_url`, data in `data_dir` and the web UI
    /// from `static_dir`, and waits until it listens.
    pub async fn start_with(
        bin: impl AsRef<Path>,
        database_url: &str,
        data_dir: &Path,
        static_dir: &Path,
    ) -> ServerProcess {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        ServerProcess::launch(bin.as_ref(), database_url, data_dir, static_dir, any_port).await
    }

    async fn launch(
        bin: &Path,
        database_url: &str,
        data_dir: &Path,
        static_dir: &Path,
        listen: SocketAddr,
    ) -> ServerProcess {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let stderr_path = data_dir.join(format!(
            "server-{}-{}.stderr.log",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr_file = std::fs::File::create(&stderr_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", stderr_path.display()));
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--static-dir")
            .arg(static_dir)
            // No local WAL cluster: these servers test other things, and three node
            // processes each would crowd the machine (tests/tests/wal_local.rs runs one).
            .args(["--wal-nodes", "0"])
            .env("DATABASE_URL", database_url)
            // Settings of the developer's shell must not leak into the test.
            .env_remove("MERIDIAN_LISTEN")
            .env_remove("MERIDIAN_DATA_DIR")
            .env_remove("MERIDIAN_STATIC_DIR")
            .env_remove("MERIDIAN_SECURE_COOKIES")
            .env_remove("MERIDIAN_GUEST_TTL_DAYS")
            .env_remove("MERIDIAN_WAL_NODES")
            .env_remove("MERIDIAN_OBJECT_STORE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr_file))
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut process = ServerProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr_path,
            exited: None,
        };
        match tokio::time::timeout(START_TIMEOUT, read_listening_line(stdout)).await {
            Ok(Ok(addr)) => {
                process.addr = addr;
                process
            }
            Ok(Err(why)) => {
                let status = process.child.wait().await.ok();
                process.exited = status;
                panic!(
                    "the server did not start: {why}; exit status {status:?}\n--- server stderr ---\n{}",
                    process.stderr_log()
                );
            }
            Err(_) => {
                let _ = process.child.kill().await;
                panic!(
                    "the server did not print {LISTENING_PREFIX:?} within {START_TIMEOUT:?}\n--- server stderr ---\n{}",
                    process.stderr_log()
                );
            }
        }
    }

    /// `http://ADDR`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://ADDR{path}`
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The child's process id (while it runs).
    pub fn pid(&self) -> u32 {
        self.child
            .id()
            .expect("the server process is still running")
    }

    /// What the server wrote to stderr so far.
    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.stderr_path.display()))
    }

    /// SIGKILL: the process dies at once, with no chance to flush or clean up. Waits
    /// until it is gone.
    pub async fn kill_9(&mut self) -> ExitStatus {
        assert!(self.exited.is_none(), "the server already exited");
        self.child.kill().await.expect("SIGKILL the server");
        let status = self.child.wait().await.expect("reap the killed server");
        self.exited = Some(status);
        status
    }

    /// Sends SIGTERM (the server begins its graceful shutdown) without waiting.
    pub fn send_sigterm(&self) {
        let pid = self.pid().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {pid} failed: {status}");
    }

    /// Waits for the process to exit, at most `timeout`; on timeout it is killed and the
    /// test fails with its stderr.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => {
                let status = status.expect("wait for the server");
                self.exited = Some(status);
                status
            }
            Err(_) => {
                let _ = self.child.kill().await;
                panic!(
                    "the server did not exit within {timeout:?}\n--- server stderr ---\n{}",
                    self.stderr_log()
                );
            }
        }
    }

    /// SIGTERM, then waits (at most [`STOP_TIMEOUT`]) for the exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.send_sigterm();
        self.wait_exit(STOP_TIMEOUT).await
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.exited.is_none() {
            // SIGKILL; `kill_on_drop` and tokio's orphan reaper collect the child.
            let _ = self.child.start_kill();
        }
    }
}

/// Reads the child's stdout up to the "listening" line, then keeps draining it in the
/// background so that later output never blocks the server.
async fn read_listening_line(stdout: ChildStdout) -> Result<SocketAddr, String> {
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => {
                return Err(format!(
                    "stdout ended before the listening line (stdout was {seen:?})"
                ))
            }
            Err(e) => return Err(format!("cannot read stdout: {e}")),
        };
        if let Some(addr) = line.strip_prefix(LISTENING_PREFIX) {
            let addr = addr
                .trim()
                .trim_end_matches('/')
                .parse::<SocketAddr>()
                .map_err(|e| format!("bad address in {line:?}: {e}"))?;
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(addr);
        }
        seen.push(line);
    }
}
