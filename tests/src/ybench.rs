//! The JavaScript side of the documents tests and benchmark: where the npm packages of
//! `tests/js` live, the reference y-websocket server (`y-websocket@1.5.4`'s
//! `bin/server.js`, run by Node) as a child process, a process's resident memory, and
//! which keystrokes an update carries.
//!
//! Invariants:
//! - A missing `node` or `tests/js/node_modules` is a failure naming the fix
//!   (`scripts/test.sh` installs both), never a skipped test.
//! - A [`ReferenceServer`] never outlives its owner: dropping it kills the child.
//! - Nothing here reaches beyond loopback.

use std::net::{SocketAddr, TcpListener};
use std::ops::Range;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use yrs::{StateVector, Update};

/// How long Node may take to start the reference server.
pub const NODE_START_TIMEOUT: Duration = Duration::from_secs(20);

/// `tests/js`: the npm packages (`yjs`, `y-websocket`, `ws`, `y-protocols`) and the Node
/// scripts.
pub fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Checks that `node` runs and that `npm ci` has been run in `tests/js`; returns Node's
/// version. Fails, saying how to fix it, when either is missing.
pub fn require_node_deps() -> String {
    let fix = "run scripts/test.sh (it installs Debian's nodejs and npm when `node` is \
               missing and runs `npm ci --omit=optional` in tests/js), or run \
               `npm ci --omit=optional` in tests/js yourself";
    let version = match std::process::Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(out) => panic!(
            "`node --version` failed ({}): {}; {fix}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("cannot run `node` ({e}): Node.js is not installed; {fix}"),
    };
    let modules = js_dir().join("node_modules");
    for needed in [
        "yjs/package.json",
        "y-websocket/bin/server.js",
        "y-websocket/dist/y-websocket.cjs",
        "y-protocols/package.json",
        "ws/package.json",
    ] {
        let path = modules.join(needed);
        assert!(
            path.is_file(),
            "{} is missing: the npm packages of tests/js are not installed; {fix}",
            path.display()
        );
    }
    version
}

/// The reference y-websocket server: `node node_modules/y-websocket/bin/server.js` on
/// `127.0.0.1`, documents in memory only (no `YPERSISTENCE`). Room `r` is at `ws://ADDR/r`.
pub struct ReferenceServer {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl ReferenceServer {
    /// Starts the server on a free port and waits until it listens.
    pub async fn start() -> ReferenceServer {
        require_node_deps();
        let port = free_port();
        let server_js = js_dir().join("node_modules/y-websocket/bin/server.js");
        let mut child = Command::new("node")
            .arg(&server_js)
            .current_dir(js_dir())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            // Persistence and the HTTP callback would make it a different server.
            .env_remove("YPERSISTENCE")
            .env_remove("CALLBACK_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn node {}: {e}", server_js.display()));
        let stderr = collect(child.stderr.take().expect("stderr is piped"));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        // bin/server.js prints `running at '127.0.0.1' on port N` once it listens.
        let listening = tokio::time::timeout(NODE_START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("running at") {
                    return true;
                }
            }
            false
        })
        .await;
        if listening != Ok(true) {
            let _ = child.kill().await;
            panic!(
                "the reference y-websocket server did not start within {NODE_START_TIMEOUT:?}\n--- its stderr ---\n{}",
                stderr.lock().expect("stderr buffer").as_str()
            );
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        ReferenceServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            stderr,
        }
    }

    /// `ws://ADDR/{room}`.
    pub fn room_url(&self, room: &str) -> String {
        format!("ws://{}/{room}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the reference server is running")
    }

    /// What Node wrote to stderr so far.
    pub fn stderr_log(&self) -> String {
        self.stderr.lock().expect("stderr buffer").clone()
    }

    /// Kills the server and waits until it is gone.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Collects a child's output in the background (for failure messages).
pub fn collect(output: impl AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<String>> {
    let buffer = Arc::new(Mutex::new(String::new()));
    let sink = buffer.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(output).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut sink = sink.lock().expect("output buffer");
            sink.push_str(&line);
            sink.push('\n');
        }
    });
    buffer
}

/// A port that was free a moment ago (the reference server takes its port from the
/// environment, so it cannot be told to pick one itself).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The resident memory of process `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS line in {path}"))
}

/// CPU time process `pid` has used so far (user + system, all threads), from
/// `/proc/PID/stat` in clock ticks of 1/100 s (Linux's `USER_HZ`).
pub fn cpu_time(pid: u32) -> Duration {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the name: state (field 3) ... utime (field 14), stime (field 15).
    let ticks = |i: usize| -> u64 {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("no field {} in {path}: {stat}", i + 3))
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// The insertions an update carries that a replica whose state vector is `known` does
/// not have yet: `(client id, clocks)`. A keystroke of one ASCII character is one clock,
/// so these are the keystrokes the update delivers to that replica.
pub fn new_insertions(update: &Update, known: &StateVector) -> Vec<(u64, Range<u32>)> {
    let mut out = Vec::new();
    for (client, ranges) in update.insertions(true).iter() {
        let have = known.get(client);
        for range in ranges.iter() {
            let start = range.start.max(have);
            if start < range.end {
                out.push((client.get(), start..range.end));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::docs::schema;
    use yrs::updates::decoder::Decode;
    use yrs::{ReadTxn, Text, Transact};

    /// One keystroke per update, as the benchmark's clients type.
    fn keystroke(doc: &yrs::Doc, at: u32, ch: &str) -> Vec<u8> {
        let text = doc.get_or_insert_text(schema::TEXT);
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, at, ch);
        txn.encode_update_v1()
    }

    #[test]
    fn insertions_name_the_keystrokes_a_replica_lacks() {
        let a = schema::new_doc_with_client(11);
        let b = schema::new_doc_with_client(22);
        let first = keystroke(&a, 0, "h");
        let second = keystroke(&a, 1, "i");
        let other = keystroke(&b, 0, "x");

        let receiver = schema::new_doc_with_client(33);
        let known = receiver.transact().state_vector();
        let update = Update::decode_v1(&first).unwrap();
        assert_eq!(new_insertions(&update, &known), vec![(11, 0..1)]);
        receiver.transact_mut().apply_update(update).unwrap();

        let known = receiver.transact().state_vector();
        // A duplicate delivers nothing new; the next keystroke is clock 1.
        let again = Update::decode_v1(&first).unwrap();
        assert_eq!(new_insertions(&again, &known), vec![]);
        let update = Update::decode_v1(&second).unwrap();
        assert_eq!(new_insertions(&update, &known), vec![(11, 1..2)]);

        // A merged update (as a step 2 carries) names every client's keystrokes.
        let merged = yrs::merge_updates_v1([first.as_slice(), &second, &other]).unwrap();
        let fresh = StateVector::default();
        let mut got = new_insertions(&Update::decode_v1(&merged).unwrap(), &fresh);
        got.sort_by_key(|(client, _)| *client);
        assert_eq!(got, vec![(11, 0..2), (22, 0..1)]);
    }

    #[test]
    fn rss_of_this_process() {
        let kib = rss_kib(std::process::id());
        assert!(
            kib > 100,
            "a running test process has more than 100 KiB resident: {kib}"
        );
    }

    #[test]
    fn cpu_time_of_this_process_grows_with_work() {
        let before = cpu_time(std::process::id());
        // Spin until the process has used 30 ms more CPU (a tick is 10 ms); bounded.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        while cpu_time(std::process::id()) < before + Duration::from_millis(30) {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
            assert!(std::time::Instant::now() < deadline, "no CPU time counted");
        }
    }
}
