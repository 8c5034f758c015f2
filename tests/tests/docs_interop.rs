//! A client nobody here wrote edits with ours: the npm `yjs` + `y-websocket`
//! (`WebsocketProvider`) client, run by Node (`tests/js/interop-client.cjs`, driven over
//! stdin/stdout JSON lines), and our Rust client (`meridian_tests::yjs`) on the real
//! server, both backends. They type into one document at once and converge; formatting,
//! headings, awareness states and cursors (relative positions as JSON) cross in both
//! directions; killing the Node process removes its presence at once; a viewer's
//! JavaScript client is refused and changes nothing.
//!
//! Needs `node` and `tests/js/node_modules`: without them these tests fail, saying to run
//! scripts/test.sh. Randomised: the seed is printed; `MERIDIAN_TEST_SEED=<n>` replays.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meridian_shared::api::Me;
use meridian_shared::docs::rich::{Block, Run};
use meridian_shared::docs::{close_code, schema, CreateDoc, Doc, Role, ShareDoc};
use meridian_tests::both_backends;
use meridian_tests::client::{Client, RECV_TIMEOUT};
use meridian_tests::db::TestDatabase;
use meridian_tests::server::{TestServer, PATIENCE};
use meridian_tests::ybench::{collect, js_dir, require_node_deps};
use meridian_tests::yjs::{attrs, cursor_state, sorted_chars, test_seed, YClient};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use yrs::Any;

const PASSWORD: &str = "typing-together-42";

/// The stock JavaScript client in a Node process (see `tests/js/interop-client.cjs`).
struct NodeClient {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    next_id: u64,
    /// Events (`{"event": ...}`) read so far, in order.
    events: Vec<Value>,
    stderr: Arc<Mutex<String>>,
}

impl NodeClient {
    async fn spawn() -> NodeClient {
        let version = require_node_deps();
        println!("the stock Yjs client on Node {version}");
        let script = js_dir().join("interop-client.cjs");
        let mut child = Command::new("node")
            .arg(&script)
            .current_dir(js_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn node {}: {e}", script.display()));
        let stderr = collect(child.stderr.take().expect("stderr is piped"));
        NodeClient {
            stdin: child.stdin.take().expect("stdin is piped"),
            stdout: BufReader::new(child.stdout.take().expect("stdout is piped")).lines(),
            child,
            next_id: 1,
            events: Vec::new(),
            stderr,
        }
    }

    fn stderr_log(&self) -> String {
        self.stderr.lock().expect("stderr buffer").clone()
    }

    /// The next line from Node, as JSON, within `wait`.
    async fn read(&mut self, wait: Duration, what: &str) -> Value {
        let line = match tokio::time::timeout(wait, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => panic!(
                "the Node client exited while we waited for {what}\n--- its stderr ---\n{}",
                self.stderr_log()
            ),
            Ok(Err(e)) => panic!("cannot read the Node client's stdout: {e}"),
            Err(_) => panic!(
                "no answer from the Node client within {wait:?} waiting for {what}; events {:?}\n--- its stderr ---\n{}",
                self.events,
                self.stderr_log()
            ),
        };
        serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!("the Node client printed a line that is not JSON ({e}): {line}")
        })
    }

    /// Sends a command and returns its successful reply (events read meanwhile are kept).
    async fn call(&mut self, mut command: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        command["id"] = json!(id);
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to the Node client");
        let what = format!("the answer to {command}");
        let deadline = Instant::now() + RECV_TIMEOUT;
        loop {
            let message = self
                .read(deadline.saturating_duration_since(Instant::now()), &what)
                .await;
            if message.get("event").is_some() {
                self.events.push(message);
                continue;
            }
            assert_eq!(message["id"], json!(id), "answers come in order: {message}");
            assert_eq!(
                message["ok"],
                json!(true),
                "the Node client failed {command}: {message}\n--- its stderr ---\n{}",
                self.stderr_log()
            );
            return message;
        }
    }

    /// Reads events until one satisfies `matches` (also among those already read).
    async fn wait_event(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(event) = self.events.iter().find(|e| matches(e)) {
            return event.clone();
        }
        let deadline = Instant::now() + RECV_TIMEOUT;
        loop {
            let message = self
                .read(deadline.saturating_duration_since(Instant::now()), what)
                .await;
            assert!(
                message.get("event").is_some(),
                "an answer without a command: {message}"
            );
            self.events.push(message.clone());
            if matches(&message) {
                return message;
            }
        }
    }

    /// Connects to `/yjs/{doc_id}` as `client` (its session cookie) and waits until the
    /// provider has synced. Returns the Yjs client id (also its awareness id).
    async fn connect(&mut self, server: &TestServer, doc_id: &str, client: &Client) -> u64 {
        let reply = self
            .call(json!({
                "cmd": "connect",
                "url": format!("ws://{}/yjs", server.addr),
                "room": doc_id,
                "cookie": client.cookie_header().expect("a signed-in client has a cookie"),
                // A refused client must not retry for ever behind the test's back.
                "reconnect": false,
            }))
            .await;
        self.call(json!({
            // Node gives up first, so that its error (not our timeout) is what fails.
            "cmd": "wait_synced",
            "timeout_ms": RECV_TIMEOUT.as_millis() as u64 * 3 / 4,
        }))
        .await;
        reply["client_id"].as_u64().expect("a numeric client id")
    }

    async fn insert(&mut self, index: u32, text: &str) {
        self.call(json!({"cmd": "insert", "index": index, "text": text}))
            .await;
    }

    /// Inserts after the first `codepoints` characters of its text as it is when Node runs
    /// the command (remote edits may arrive between our commands, so an offset computed
    /// from an earlier read could fall inside a surrogate pair).
    async fn insert_after_chars(&mut self, codepoints: usize, text: &str) {
        self.call(json!({"cmd": "insert", "codepoint": codepoints, "text": text}))
            .await;
    }

    async fn delete(&mut self, index: u32, length: u32) {
        self.call(json!({"cmd": "delete", "index": index, "length": length}))
            .await;
    }

    async fn format(&mut self, index: u32, length: u32, attributes: Value) {
        self.call(
            json!({"cmd": "format", "index": index, "length": length, "attributes": attributes}),
        )
        .await;
    }

    /// The text and its Quill delta.
    async fn text(&mut self) -> (String, Value) {
        let reply = self.call(json!({"cmd": "text"})).await;
        let text = reply["text"].as_str().expect("text").to_owned();
        (text, reply["delta"].clone())
    }

    /// The awareness states it knows, by client id.
    async fn awareness(&mut self) -> serde_json::Map<String, Value> {
        let reply = self.call(json!({"cmd": "awareness"})).await;
        reply["states"].as_object().expect("states").clone()
    }

    /// Where a relative position (JSON) points in its replica.
    async fn resolve(&mut self, position: &Value) -> Option<u64> {
        let reply = self
            .call(json!({"cmd": "resolve", "position": position}))
            .await;
        reply["index"].as_u64()
    }

    /// SIGKILL: the process dies without a word; the OS closes its socket.
    async fn kill(mut self) {
        self.child.kill().await.expect("kill the Node client");
    }
}

/// A new browser signed up as `username`.
async fn account(server: &TestServer, username: &str) -> Client {
    let client = Client::new(server);
    let _: Me = client.signup(username, PASSWORD).await.expect(201);
    client
}

async fn create_doc(owner: &Client, title: &str) -> Doc {
    owner
        .post_json(
            "/api/docs",
            &CreateDoc {
                title: title.to_owned(),
            },
        )
        .await
        .expect(201)
}

async fn share(owner: &Client, doc_id: &str, username: &str, role: Role) {
    let _: Doc = owner
        .post_json(
            &format!("/api/docs/{doc_id}/members"),
            &ShareDoc {
                username: username.to_owned(),
                role,
            },
        )
        .await
        .expect(200);
}

/// A random offset (UTF-16) between two characters of `text`, never inside a surrogate
/// pair.
fn random_boundary(text: &str, rng: &mut StdRng) -> u32 {
    let mut boundaries = vec![0u32];
    let mut at = 0;
    for ch in text.chars() {
        at += ch.len_utf16() as u32;
        boundaries.push(at);
    }
    boundaries[rng.random_range(0..boundaries.len())]
}

/// A word of 1 to 4 characters from `alphabet`.
fn random_word(alphabet: &[char], rng: &mut StdRng) -> String {
    (0..rng.random_range(1..=4))
        .map(|_| alphabet[rng.random_range(0..alphabet.len())])
        .collect()
}

fn utf16_len(text: &str) -> u32 {
    text.encode_utf16().count() as u32
}

/// Polls until the Rust replica (synced with the server) and the JavaScript one hold the
/// same text and `accept` holds of it; returns it. Fails after [`PATIENCE`].
async fn converge(
    js: &mut NodeClient,
    rust: &mut YClient,
    what: &str,
    accept: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        rust.sync().await;
        let (js_text, _) = js.text().await;
        let rust_text = rust.text();
        if js_text == rust_text && accept(&rust_text) {
            return rust_text;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence within {PATIENCE:?} ({what}):\n  JavaScript: {js_text:?}\n  Rust:       {rust_text:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls the JavaScript client's awareness until `matches` holds of it.
async fn js_awareness_until(
    js: &mut NodeClient,
    what: &str,
    matches: impl Fn(&serde_json::Map<String, Value>) -> bool,
) -> serde_json::Map<String, Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let states = js.awareness().await;
        if matches(&states) {
            return states;
        }
        assert!(
            Instant::now() < deadline,
            "the JavaScript client never saw {what}: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

both_backends!(
    the_javascript_client_and_ours_edit_together,
    |db: TestDatabase| async move {
        let seed = test_seed("the_javascript_client_and_ours_edit_together");
        let mut rng = StdRng::seed_from_u64(seed);
        let server = TestServer::start(&db).await;
        let alice = account(&server, "alice").await;
        let bob = account(&server, "bob").await;
        let doc = create_doc(&alice, "Typed from two worlds").await;
        share(&alice, &doc.id, "bob", Role::Editor).await;

        let mut js = NodeClient::spawn().await;
        let js_id = js.connect(&server, &doc.id, &alice).await;
        let mut rust = YClient::connect(&bob, &doc.id)
            .await
            .expect("bob may open it");

        // Both type words at random places of what each sees, without waiting for the
        // other: JavaScript's edits reach the server while ours are made, and ours read
        // the server only now and then. Multi-byte and astral characters make UTF-16
        // offsets matter on both sides.
        const JS_ALPHABET: [char; 6] = ['a', 'b', 'c', 'é', '😀', 'z'];
        const RUST_ALPHABET: [char; 6] = ['X', 'Y', 'ß', '🦀', '中', 'Q'];
        let mut typed = String::new();
        for _ in 0..40 {
            let (seen, _) = js.text().await;
            let word = random_word(&JS_ALPHABET, &mut rng);
            let chars = rng.random_range(0..=seen.chars().count());
            js.insert_after_chars(chars, &word).await;
            typed.push_str(&word);

            let word = random_word(&RUST_ALPHABET, &mut rng);
            let at = random_boundary(&rust.text(), &mut rng);
            rust.insert(at, &word).await;
            typed.push_str(&word);
            if rng.random_bool(0.3) {
                rust.drain().await;
            }
        }
        let want = sorted_chars(&typed);
        let text = converge(&mut js, &mut rust, "every character typed", |t| {
            sorted_chars(t) == want
        })
        .await;

        // Concurrent deletions of disjoint ranges: JavaScript the first two characters,
        // Rust the last two.
        let chars: Vec<char> = text.chars().collect();
        let head: String = chars[..2].iter().collect();
        let tail: String = chars[chars.len() - 2..].iter().collect();
        js.delete(0, utf16_len(&head)).await;
        rust.delete(utf16_len(&text) - utf16_len(&tail), utf16_len(&tail))
            .await;
        let middle: String = chars[2..chars.len() - 2].iter().collect();
        converge(&mut js, &mut rust, "both deletions", |t| t == middle).await;

        // Rich text from JavaScript, as Quill writes it: a bold run and a heading line.
        js.insert(0, "Hello world\n").await;
        js.format(0, 5, json!({"bold": true})).await;
        js.format(11, 1, json!({"header": 1})).await;
        let hello = Run {
            text: "Hello".into(),
            bold: true,
            italic: false,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            rust.sync().await;
            let blocks = rust.blocks();
            if blocks[0].heading == Some(1) && blocks[0].runs.first() == Some(&hello) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the Rust client never saw JavaScript's bold heading: {blocks:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // ... and italic from Rust, seen by JavaScript in its delta.
        rust.format(6, 5, attrs(schema::ITALIC, Any::Bool(true)))
            .await;
        rust.sync().await;
        assert_eq!(
            rust.blocks()[0],
            Block {
                heading: Some(1),
                runs: vec![
                    hello,
                    Run {
                        text: " ".into(),
                        ..Run::default()
                    },
                    Run {
                        text: "world".into(),
                        bold: false,
                        italic: true
                    },
                ],
            }
        );
        let want_delta = json!([
            {"insert": "Hello", "attributes": {"bold": true}},
            {"insert": " "},
            {"insert": "world", "attributes": {"italic": true}},
            {"insert": "\n", "attributes": {"header": 1}},
        ]);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (_, delta) = js.text().await;
            let ops = delta.as_array().expect("a delta is a list");
            if ops.len() >= 4 && ops[..4] == want_delta.as_array().expect("a list")[..] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the JavaScript client never saw Rust's italic: {delta}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        converge(&mut js, &mut rust, "after formatting", |_| true).await;

        // Awareness from JavaScript: a user and a selection over "Hello" as Yjs relative
        // positions, which our replica resolves to the same offsets.
        js.call(json!({
            "cmd": "set_awareness",
            "field": "user",
            "value": {"name": "alice", "color": "#e91e63"},
        }))
        .await;
        let cursor = js
            .call(json!({"cmd": "set_cursor", "anchor": 0, "head": 5}))
            .await["cursor"]
            .clone();
        rust.recv_until("JavaScript's awareness state with a cursor", |c| {
            c.peer(js_id)
                .is_some_and(|s| s["user"]["name"] == "alice" && !s["cursor"].is_null())
        })
        .await;
        let state = rust.peer(js_id).expect("present").clone();
        assert_eq!(state["user"]["color"], "#e91e63");
        assert_eq!(state["cursor"], cursor);
        assert_eq!(rust.resolve_sticky(&state["cursor"]["anchor"]), Some(0));
        assert_eq!(rust.resolve_sticky(&state["cursor"]["head"]), Some(5));

        // Awareness from Rust: the JavaScript client sees it and resolves our cursor.
        let rust_id = rust.client_id();
        let (anchor, head) = (rust.sticky_json(6), rust.sticky_json(11));
        rust.set_awareness(cursor_state(
            "bob",
            "#2196f3",
            Some((anchor.clone(), head.clone())),
        ))
        .await;
        let states = js_awareness_until(&mut js, "bob's state", |states| {
            states
                .get(&rust_id.to_string())
                .is_some_and(|s| s["user"]["name"] == "bob")
        })
        .await;
        assert_eq!(states[&rust_id.to_string()]["user"]["color"], "#2196f3");
        assert_eq!(js.resolve(&anchor).await, Some(6));
        assert_eq!(js.resolve(&head).await, Some(11));

        // The Node process dies without a goodbye: the server removes its state at once.
        js.kill().await;
        rust.recv_until("the killed JavaScript client's removal", |c| {
            c.saw_removed(js_id)
        })
        .await;
        assert!(rust.peer(js_id).is_none());
        rust.close().await;
        server.shutdown().await;
    }
);

both_backends!(
    a_javascript_viewer_is_refused_and_changes_nothing,
    |db: TestDatabase| async move {
        let server = TestServer::start(&db).await;
        let alice = account(&server, "alice").await;
        let carol = account(&server, "carol").await;
        let doc = create_doc(&alice, "Read, do not touch").await;
        share(&alice, &doc.id, "carol", Role::Viewer).await;
        let mut owner = YClient::connect(&alice, &doc.id)
            .await
            .expect("the owner opens it");
        owner.insert(0, "Written by alice\n").await;
        owner.sync().await;

        // The viewer's JavaScript client syncs and reads...
        let mut js = NodeClient::spawn().await;
        js.connect(&server, &doc.id, &carol).await;
        let (text, _) = js.text().await;
        assert_eq!(text, "Written by alice\n");

        // ... but its edit is refused with the auth message, and the socket closed.
        js.insert(0, "carol was here ").await;
        let auth = js
            .wait_event("the auth message (permission denied)", |e| {
                e["event"] == "auth"
            })
            .await;
        assert!(
            auth["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "a permission denied message carries a reason: {auth}"
        );
        js.wait_event("the close of the viewer's socket", |e| {
            e["event"] == "close" && e["code"] == json!(close_code::READ_ONLY)
        })
        .await;

        // The server had refused it before it closed: nothing reached the owner, nothing
        // was stored.
        owner.sync().await;
        assert_eq!(owner.text(), "Written by alice\n");
        let fresh = YClient::connect(&alice, &doc.id)
            .await
            .expect("opens again");
        assert_eq!(fresh.text(), "Written by alice\n");
        fresh.close().await;
        owner.close().await;
        drop(js);
        server.shutdown().await;
    }
);
