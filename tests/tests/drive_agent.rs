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
use meridian_tests::seeded_bytes;
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

/// Two folders, synced with each other through the server.
async fn pair(server: &TestServer) -> (tempfile::TempDir, tempfile::TempDir) {
    alice(server).await;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(a.path(), "notes.txt", b"first");
    write(a.path(), "docs/plan.md", b"# plan");
    write(a.path(), "docs/deep/data.bin", &seeded_bytes(300_000, 1));
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
    assert_eq!(ta["moved.bin"], Some(seeded_bytes(300_000, 1)));
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
    let big = seeded_bytes(48 * 1024 * 1024, 7);
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

mod simulation {
    //! A deterministic randomized simulation: several devices (the agent's `Syncer`, in
    //! this process) make random edits, creates, renames, moves and deletes of files and
    //! folders, sync at random, are cut off from the server (partitions) and crash between
    //! an operation and the save that records it; restarted, they read their saved state.
    //! Then every device syncs until nothing changes: all folders must be identical, and
    //! every content a device held when one of its passes completed must be a version on
    //! the server. Seeded: `MERIDIAN_DRIVE_SIM_SEED=<seed>` replays one run.

    use super::*;
    use meridian_server::drive::agent::api::Api;
    use meridian_server::drive::agent::state::AgentState;
    use meridian_server::drive::agent::sync::Syncer;
    use meridian_shared::drive::chunking::{manifest_id, manifest_of};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashSet;

    const FILE_NAMES: &[&str] = &["a.txt", "b.txt", "A.TXT", "notes.md"];
    const FOLDER_NAMES: &[&str] = &["x", "y", "X"];

    struct Device {
        name: String,
        dir: tempfile::TempDir,
        syncer: Option<Syncer>,
        partitioned: bool,
    }

    async fn start(server: &TestServer, device: &mut Device) {
        if device.syncer.is_none() {
            let url = format!("http://{}", server.addr);
            let api = Api::sign_in(&url, "alice", PASSWORD).await.unwrap();
            let root = device.dir.path().canonicalize().unwrap();
            let state = AgentState::load(&root, &url, "alice").unwrap();
            device.syncer = Some(Syncer::new(api, root, device.name.clone(), state));
        }
    }

    fn folders(dir: &Path) -> Vec<String> {
        let mut out = vec![String::new()];
        out.extend(
            tree(dir)
                .into_iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k),
        );
        out
    }

    fn files(dir: &Path) -> Vec<String> {
        tree(dir)
            .into_iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k)
            .collect()
    }

    fn join(folder: &str, name: &str) -> String {
        if folder.is_empty() {
            name.to_owned()
        } else {
            format!("{folder}/{name}")
        }
    }

    fn content(rng: &mut StdRng) -> Vec<u8> {
        let len = if rng.random_bool(0.1) {
            rng.random_range(70_000..200_000)
        } else {
            rng.random_range(0..300)
        };
        let seed: u64 = rng.random();
        seeded_bytes(len, seed)
    }

    fn mutate(rng: &mut StdRng, dir: &Path) -> String {
        let folders = folders(dir);
        let files = files(dir);
        let folder = folders[rng.random_range(0..folders.len())].clone();
        match rng.random_range(0..10) {
            0..=2 => {
                let path = join(&folder, FILE_NAMES[rng.random_range(0..FILE_NAMES.len())]);
                if !dir.join(&path).is_dir() {
                    let data = content(rng);
                    write(dir, &path, &data);
                    return format!("write {path} {}", short(&data));
                }
            }
            3..=4 if !files.is_empty() => {
                let file = &files[rng.random_range(0..files.len())];
                let data = content(rng);
                write(dir, file, &data);
                return format!("edit {file} {}", short(&data));
            }
            5 if !files.is_empty() => {
                let file = &files[rng.random_range(0..files.len())];
                std::fs::remove_file(dir.join(file)).unwrap();
                return format!("rm {file}");
            }
            6 if !files.is_empty() => {
                let file = &files[rng.random_range(0..files.len())];
                let to = join(&folder, FILE_NAMES[rng.random_range(0..FILE_NAMES.len())]);
                if !dir.join(&to).exists() {
                    std::fs::rename(dir.join(file), dir.join(&to)).unwrap();
                    return format!("mv {file} {to}");
                }
            }
            7 if folder.split('/').count() < 3 => {
                let path = join(
                    &folder,
                    FOLDER_NAMES[rng.random_range(0..FOLDER_NAMES.len())],
                );
                if !dir.join(&path).exists() {
                    std::fs::create_dir(dir.join(&path)).unwrap();
                    return format!("mkdir {path}");
                }
            }
            8 if !folder.is_empty() => {
                std::fs::remove_dir_all(dir.join(&folder)).unwrap();
                return format!("rm -r {folder}");
            }
            9 if !folder.is_empty() => {
                let to = Path::new(&folder)
                    .with_file_name(FOLDER_NAMES[rng.random_range(0..FOLDER_NAMES.len())]);
                if !dir.join(&to).exists() {
                    std::fs::rename(dir.join(&folder), dir.join(&to)).unwrap();
                    return format!("mv {folder} {}", to.display());
                }
            }
            _ => {}
        }
        String::new()
    }

    fn short(data: &[u8]) -> String {
        manifest_id(&manifest_of(data))[..8].to_owned()
    }

    /// The content ids of every file in `dir`.
    fn contents(dir: &Path) -> HashSet<String> {
        tree(dir)
            .into_values()
            .flatten()
            .map(|data| manifest_id(&manifest_of(&data)))
            .collect()
    }

    async fn run(seed: u64, devices: usize, steps: usize) {
        println!("drive simulation seed {seed} (replay: MERIDIAN_DRIVE_SIM_SEED={seed})");
        let mut rng = StdRng::seed_from_u64(seed);
        let db = TestDatabase::create(Backend::Sqlite).await;
        let server = TestServer::start(&db).await;
        alice(&server).await;
        let mut devices: Vec<Device> = (0..devices)
            .map(|i| Device {
                name: format!("device-{i}"),
                dir: tempfile::tempdir().unwrap(),
                syncer: None,
                partitioned: false,
            })
            .collect();
        let mut synced_contents: HashSet<String> = HashSet::new();
        let trace = std::env::var("MERIDIAN_DRIVE_SIM_TRACE").is_ok();
        for step in 0..steps {
            let d = rng.random_range(0..devices.len());
            let device = &mut devices[d];
            match rng.random_range(0..100) {
                0..=49 => {
                    let what = mutate(&mut rng, device.dir.path());
                    if trace && !what.is_empty() {
                        println!("{step} {}: {what}", device.name);
                    }
                }
                50..=89 if !device.partitioned => {
                    start(&server, device).await;
                    let before = contents(device.dir.path());
                    let syncer = device.syncer.as_mut().unwrap();
                    let crash = rng.random_bool(0.2);
                    if crash {
                        syncer.crash_after_saves(rng.random_range(0..6));
                    }
                    let result = syncer.pass().await;
                    if trace {
                        println!("{step} {}: pass {result:?}", device.name);
                    }
                    match result {
                        Ok(_) => {
                            synced_contents.extend(before);
                            if crash {
                                // The crash point lay beyond this pass: disarm it.
                                device.syncer = None;
                            }
                        }
                        Err(meridian_server::drive::agent::AgentError::Crashed) => {
                            device.syncer = None;
                        }
                        Err(err) => {
                            panic!("seed {seed} step {step}: {} failed: {err}", device.name)
                        }
                    }
                }
                90..=99 => device.partitioned = !device.partitioned,
                _ => {}
            }
        }
        // Heal: everyone back, sync until a whole round changes nothing.
        let mut settled = false;
        for _ in 0..10 {
            let mut changed = false;
            for device in devices.iter_mut() {
                device.partitioned = false;
                start(&server, device).await;
                let before = contents(device.dir.path());
                let report = device
                    .syncer
                    .as_mut()
                    .unwrap()
                    .pass()
                    .await
                    .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                synced_contents.extend(before);
                changed |= report.changed_anything();
            }
            if !changed {
                settled = true;
                break;
            }
        }
        assert!(settled, "seed {seed}: still changing after 10 rounds");
        let first = tree(devices[0].dir.path());
        for device in &devices[1..] {
            assert_eq!(
                tree(device.dir.path()),
                first,
                "seed {seed}: {} differs",
                device.name
            );
        }
        let versions: HashSet<String> = sqlx::query_scalar("SELECT content_id FROM drive_versions")
            .fetch_all(&server.state.db.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
        let empty = manifest_id(&[]);
        let lost: Vec<_> = synced_contents
            .iter()
            .filter(|c| **c != empty && !versions.contains(*c))
            .collect();
        assert!(
            lost.is_empty(),
            "seed {seed}: contents never stored: {lost:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn random_devices_converge_and_lose_nothing() {
        let seeds: Vec<u64> = match std::env::var("MERIDIAN_DRIVE_SIM_SEED") {
            Ok(seed) => vec![seed.parse().expect("a u64 seed")],
            Err(_) => (1..=6).collect(),
        };
        for seed in seeds {
            run(seed, 3, 120).await;
        }
    }
}
