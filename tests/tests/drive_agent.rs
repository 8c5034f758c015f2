//! The `meridian sync` agent as real processes against a real server, on both backends:
//! two folders converge; concurrent edits keep both (a conflicted copy); delete against
//! edit keeps the edit; rename against edit applies both; an agent killed with kill -9
//! mid-upload resumes (sending only the chunks still missing) and converges; in watch
//! mode a change reaches the other folder on its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use meridian_tests::both_backends;
use meridian_tests::client::Client;
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::server::TestServer;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_meridian-under-test");
const PASSWORD: &str = "syncing-files-42";

async fn alice(server: &TestServer) {
    Client::new(server)
        .signup("alice", PASSWORD)
        .await
        .expect::<serde_json::Value>(201);
}

fn agent(server: &TestServer, dir: &Path, device: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("sync")
        .arg(dir)
        .args(["--server", &format!("http://{}", server.addr)])
        .args(["--username", "alice", "--device", device, "--poll-ms", "50"])
        .env("MERIDIAN_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// One `--once` pass; answers what it printed.
async fn once(server: &TestServer, dir: &Path, device: &str) -> String {
    let output = agent(server, dir, device)
        .arg("--once")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "sync --once failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Every file (with its bytes) and folder (`None`) under `dir`, but the agent's state.
fn tree(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(dir.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let path = rel.join(entry.file_name());
            if path == Path::new(".meridian-sync") {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                stack.push(path.clone());
                out.insert(path.to_string_lossy().into_owned(), None);
            } else {
                out.insert(
                    path.to_string_lossy().into_owned(),
                    Some(std::fs::read(entry.path()).unwrap()),
                );
            }
        }
    }
    out
}

fn write(dir: &Path, rel: &str, data: &[u8]) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Deterministic bytes (xorshift), so failures replay.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Two folders, synced with each other through the server.
async fn pair(server: &TestServer) -> (tempfile::TempDir, tempfile::TempDir) {
    alice(server).await;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(a.path(), "notes.txt", b"first");
    write(a.path(), "docs/plan.md", b"# plan");
    write(a.path(), "docs/deep/data.bin", &bytes(300_000, 1));
    std::fs::create_dir_all(a.path().join("empty")).unwrap();
    once(server, a.path(), "laptop").await;
    once(server, b.path(), "desktop").await;
    assert_eq!(tree(a.path()), tree(b.path()));
    (a, b)
}

both_backends!(two_folders_converge, |db: TestDatabase| async move {
    let server = TestServer::start(&db).await;
    let (a, b) = pair(&server).await;
    assert_eq!(tree(b.path())["docs/plan.md"], Some(b"# plan".to_vec()));

    // Changes on both sides: new, edited, deleted, renamed and moved, a new folder.
    write(b.path(), "docs/plan.md", b"# plan, edited on the desktop");
    write(b.path(), "new/from-desktop.txt", b"hello");
    std::fs::rename(
        b.path().join("docs/deep/data.bin"),
        b.path().join("moved.bin"),
    )
    .unwrap();
    std::fs::remove_dir(b.path().join("empty")).unwrap();
    write(a.path(), "from-laptop.txt", b"hi");
    std::fs::remove_file(a.path().join("notes.txt")).unwrap();
    let report = once(&server, b.path(), "desktop").await;
    assert!(
        report.contains("1 moved"),
        "a move is a move, not a new upload: {report}"
    );
    once(&server, a.path(), "laptop").await;
    once(&server, b.path(), "desktop").await;
    let (ta, tb) = (tree(a.path()), tree(b.path()));
    assert_eq!(ta, tb);
    assert!(!ta.contains_key("notes.txt") && !ta.contains_key("empty"));
    assert_eq!(ta["moved.bin"], Some(bytes(300_000, 1)));
    assert_eq!(
        ta["docs/plan.md"],
        Some(b"# plan, edited on the desktop".to_vec())
    );
    assert_eq!(ta["new/from-desktop.txt"], Some(b"hello".to_vec()));
    // A pass with nothing to do changes nothing.
    let idle = once(&server, a.path(), "laptop").await;
    assert!(
        idle.contains("0 uploaded") && idle.contains("0 downloaded"),
        "{idle}"
    );
});

both_backends!(conflicts_keep_every_edit, |db: TestDatabase| async move {
    let server = TestServer::start(&db).await;
    let (a, b) = pair(&server).await;

    // Concurrent edits of one file: both kept, the later one as a conflicted copy.
    write(a.path(), "notes.txt", b"laptop edit");
    write(b.path(), "notes.txt", b"desktop edit");
    once(&server, a.path(), "laptop").await;
    once(&server, b.path(), "desktop").await;
    once(&server, a.path(), "laptop").await;
    let ta = tree(a.path());
    assert_eq!(ta, tree(b.path()));
    assert_eq!(ta["notes.txt"], Some(b"laptop edit".to_vec()));
    let copies: Vec<_> = ta
        .keys()
        .filter(|k| k.starts_with("notes (conflicted copy, desktop, "))
        .collect();
    assert_eq!(copies.len(), 1, "{:?}", ta.keys());
    assert_eq!(ta[copies[0]], Some(b"desktop edit".to_vec()));

    // Delete against edit: the edit survives, whichever syncs first.
    std::fs::remove_file(a.path().join("docs/plan.md")).unwrap();
    write(b.path(), "docs/plan.md", b"edited while deleted elsewhere");
    once(&server, a.path(), "laptop").await;
    once(&server, b.path(), "desktop").await;
    once(&server, a.path(), "laptop").await;
    assert_eq!(
        tree(a.path())["docs/plan.md"],
        Some(b"edited while deleted elsewhere".to_vec())
    );
    assert_eq!(tree(a.path()), tree(b.path()));
    write(a.path(), "docs/plan.md", b"edited first this time");
    std::fs::remove_file(b.path().join("docs/plan.md")).unwrap();
    once(&server, a.path(), "laptop").await;
    once(&server, b.path(), "desktop").await;
    assert_eq!(
        tree(b.path())["docs/plan.md"],
        Some(b"edited first this time".to_vec())
    );

    // Rename against edit: both apply.
    std::fs::rename(
        a.path().join("docs/plan.md"),
        a.path().join("docs/renamed.md"),
    )
    .unwrap();
    write(b.path(), "docs/plan.md", b"edited, not renamed");
    once(&server, a.path(), "laptop").await;
    once(&server, b.path(), "desktop").await;
    once(&server, a.path(), "laptop").await;
    let ta = tree(a.path());
    assert_eq!(ta, tree(b.path()));
    assert!(!ta.contains_key("docs/plan.md"), "{:?}", ta.keys());
    assert_eq!(ta["docs/renamed.md"], Some(b"edited, not renamed".to_vec()));
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_upload_then_resume() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    alice(&server).await;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let big = bytes(48 * 1024 * 1024, 7);
    write(a.path(), "big.bin", &big);
    let total = meridian_shared::drive::chunking::manifest_of(&big).len() as i64;

    let mut child = agent(&server, a.path(), "laptop")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let stored = loop {
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM drive_chunks")
            .fetch_one(&server.state.db.pool)
            .await
            .unwrap();
        if stored >= 20 {
            break stored;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never started uploading"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let after_kill: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM drive_chunks")
        .fetch_one(&server.state.db.pool)
        .await
        .unwrap();
    let committed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM drive_versions")
        .fetch_one(&server.state.db.pool)
        .await
        .unwrap();
    assert!(
        stored < total && after_kill < total && committed == 0,
        "killed mid-upload: {after_kill} of {total} chunks"
    );

    // Restarted, it sends only what is missing, and the other folder gets the file whole.
    let report = once(&server, a.path(), "laptop").await;
    let sent: i64 = report
        .split('(')
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(sent, total - after_kill, "{report}");
    once(&server, b.path(), "desktop").await;
    assert_eq!(std::fs::read(b.path().join("big.bin")).unwrap(), big);
    assert!(!b
        .path()
        .join(".meridian-sync/downloads")
        .read_dir()
        .unwrap()
        .any(|_| true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_agents_stay_in_step() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let (a, b) = pair(&server).await;
    let _agent_a = agent(&server, a.path(), "laptop")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _agent_b = agent(&server, b.path(), "desktop")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    for round in 0..3 {
        let name = format!("live-{round}.txt");
        let (from, to) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let started = Instant::now();
        write(from.path(), &name, format!("round {round}").as_bytes());
        while std::fs::read(to.path().join(&name)).ok()
            != Some(format!("round {round}").into_bytes())
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{name} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!("{name} arrived in {:?}", started.elapsed());
    }
}
