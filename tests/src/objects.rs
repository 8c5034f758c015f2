//! An S3-compatible server for the object storage tests: moto's `moto_server`, from the
//! virtualenv `scripts/test.sh` installs (`ensure_moto`), named by `MERIDIAN_MOTO`.
//! Without the variable a test says it skipped and passes: a developer's quick run needs
//! no Python; CI sets it.
//!
//! Each test starts its own server on a free port (killed when it is dropped) and makes
//! its own bucket; the `--object-store` URL carries the endpoint and the dummy
//! credentials (moto takes any), so tests share no process environment.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// The variable naming the `moto_server` executable.
pub const MOTO_VAR: &str = "MERIDIAN_MOTO";

/// How long moto may take to answer after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `moto_server`.
pub struct Moto {
    child: Child,
    port: u16,
    http: reqwest::Client,
}

impl Moto {
    /// Starts moto if `MERIDIAN_MOTO` names it; `None` (after printing that `test`
    /// skipped) otherwise.
    pub async fn start(test: &str) -> Option<Moto> {
        let Some(bin) = std::env::var_os(MOTO_VAR).filter(|v| !v.is_empty()) else {
            println!("{test}: skipped, {MOTO_VAR} is not set (scripts/test.sh sets it)");
            return None;
        };
        // A free port: bound, read and let go just before moto binds it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("find a free port")
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.to_string_lossy()));
        let moto = Moto {
            child,
            port,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let answered = moto
                .http
                .get(moto.endpoint())
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if matches!(&answered, Ok(response) if response.status().is_success()) {
                return Some(moto);
            }
            assert!(
                Instant::now() < deadline,
                "moto did not answer on port {port} within {START_TIMEOUT:?}: {answered:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket`; answers the `--object-store` URL of `s3://bucket/prefix` here.
    pub async fn bucket(&self, bucket: &str, prefix: &str) -> String {
        let response = self
            .http
            .put(format!("{}/{bucket}", self.endpoint()))
            .send()
            .await
            .expect("create the bucket");
        assert!(
            response.status().is_success(),
            "create bucket {bucket}: {}",
            response.status()
        );
        format!(
            "s3://{bucket}/{prefix}?endpoint={}&allow_http=true&region=us-east-1\
             &access_key_id=test&secret_access_key=test",
            self.endpoint()
        )
    }

    /// The process id (to tell it apart in a failure's output).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
