//! The OpenAPI document tells the truth: schemathesis generates requests from
//! `/api/openapi.json` against a real server (in-process, SQLite, on 127.0.0.1) with a
//! signed-in administrator's cookie, and checks every answer:
//!
//! - `not_a_server_error`: no 5xx;
//! - `status_code_conformance`: no status that the operation does not declare;
//! - `content_type_conformance`: the declared media type;
//! - `response_schema_conformance`: the body matches the declared schema.
//!
//! schemathesis is a Python program, pinned in `scripts/schemathesis-requirements.txt`;
//! `scripts/test.sh` installs it and sets `MERIDIAN_SCHEMATHESIS` to its executable.
//! Without that variable the test fails, naming it: it is never skipped silently.
//!
//! The run is bounded (`--max-time`, and a deadline after which the process is killed)
//! and reproducible: its seed is printed, and `MERIDIAN_SCHEMATHESIS_SEED=<seed>` replays
//! it. Requests go only to the server's loopback address (proxies are switched off).

use std::process::Stdio;
use std::time::Duration;

use meridian_tests::client::Client;
use meridian_tests::db::{Backend, TestDatabase};
use meridian_tests::server::TestServer;

/// The variable naming the schemathesis executable.
const SCHEMATHESIS_VAR: &str = "MERIDIAN_SCHEMATHESIS";
/// The variable that replays a run with its seed.
const SEED_VAR: &str = "MERIDIAN_SCHEMATHESIS_SEED";
/// The seed of a run that names none.
const DEFAULT_SEED: u64 = 20_261_207;
/// schemathesis' own time budget, in seconds (its fuzzing and stateful phases repeat
/// until it is spent).
const MAX_TIME_SECS: u64 = 100;
/// Past this, the run is killed and the test fails.
const DEADLINE: Duration = Duration::from_secs(MAX_TIME_SECS + 80);

const CHECKS: &str = "not_a_server_error,status_code_conformance,\
                      content_type_conformance,response_schema_conformance";

/// Operations left out of the run, by path (one regular expression: schemathesis keeps
/// only the last `--exclude-path-regex` it is given), each with its reason.
const EXCLUDED_PATHS: &[(&str, &str)] = &[
    // WebSockets are not HTTP request/response.
    ("/api/realtime$", "a WebSocket"),
    ("/yjs/", "a WebSocket"),
    // These would end the session whose cookie the run uses (a successful sign-up or
    // sign-in replaces it), leaving the rest of the run signed out.
    ("/api/auth/signup$", "replaces the session"),
    ("/api/auth/signin$", "replaces the session"),
    ("/api/auth/signout$", "ends the session"),
    // The page's WAL routes speak to a local cluster of node processes, which this
    // in-process server does not start (every answer would be 503 `wal_off`); their
    // answers are tested against a running cluster in wal_local.rs.
    ("/api/wal/", "needs the local WAL cluster"),
];

/// The stateful phase feeds `GET /api/auth/sessions`' ids to this one, which would revoke
/// the run's own session.
const EXCLUDED_OPERATION: &str = "DELETE /api/auth/sessions/{id}";

fn excluded_paths_regex() -> String {
    let alternatives: Vec<&str> = EXCLUDED_PATHS.iter().map(|(path, _why)| *path).collect();
    format!("^({})", alternatives.join("|"))
}

fn schemathesis() -> String {
    std::env::var(SCHEMATHESIS_VAR).unwrap_or_else(|_| {
        panic!(
            "the OpenAPI conformance test needs {SCHEMATHESIS_VAR}=<path of the schemathesis \
             executable>; scripts/test.sh installs the pinned version and sets it"
        )
    })
}

fn seed() -> u64 {
    match std::env::var(SEED_VAR) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VAR} is a number, not {text:?}")),
        Err(_) => DEFAULT_SEED,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_answer() {
    let program = schemathesis();
    let seed = seed();
    eprintln!("schemathesis seed={seed} ({SEED_VAR}={seed} replays it)");

    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let admin = Client::new(&server);
    // The first account is the administrator: every permission.
    admin
        .signup("conformance", "correct horse battery staple")
        .await
        .expect::<serde_json::Value>(201);
    let cookie = admin
        .cookie_header()
        .expect("a session cookie after signing up");
    let schema_url = server.url("/api/openapi.json");
    let work_dir = tempfile::tempdir().expect("a directory for schemathesis");

    let mut command = tokio::process::Command::new(&program);
    command
        .arg("run")
        .arg(&schema_url)
        .args(["--header", &format!("Cookie: {cookie}")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", "25"])
        .args(["--max-time", &MAX_TIME_SECS.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .args(["--generation-database", "none"])
        .args(["--max-redirects", "0"])
        .arg("--no-color");
    command
        .args(["--exclude-path-regex", &excluded_paths_regex()])
        .args(["--exclude-name", EXCLUDED_OPERATION]);
    // Loopback only: no proxy may carry the requests elsewhere.
    for proxy in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
    ] {
        command.env_remove(proxy);
    }
    command
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .current_dir(work_dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("run {program} ({SCHEMATHESIS_VAR}): {e}"));
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran past {DEADLINE:?} (seed {seed})"))
        .expect("schemathesis' output");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found answers the OpenAPI document does not describe \
         (seed {seed}, {SEED_VAR}={seed} replays it; {}):\n{report}",
        output.status
    );
    // A run that tested nothing would pass vacuously.
    assert!(
        report.contains("passed") && !report.contains(" 0 selected"),
        "schemathesis tested no operation:\n{report}"
    );
    // What was covered, for the log (`--nocapture`): schemathesis' summary lines.
    for line in report
        .lines()
        .filter(|l| l.contains("selected") || l.contains("passed") || l.contains("cases"))
    {
        eprintln!("schemathesis: {}", line.trim());
    }
    // The run signed nobody out: the cookie still names the administrator.
    let me = admin.me().await;
    assert!(me.user.is_some(), "the run ended the session it used");
    server.shutdown().await;
}
