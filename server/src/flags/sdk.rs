//! The Rust SDK: evaluates flags locally (no network on the hot path) from the
//! configuration a Meridian server streams over Server-Sent Events, and keeps serving the
//! last known configuration while the server is away (from memory, and from a cache
//! file across restarts of the program).
//!
//! ```text
//! let flags = FlagClient::connect(SdkOptions::new("http://127.0.0.1:8080", "mk_srv_..."));
//! if flags.bool_value("new-checkout", &EvaluationContext::new("user-1"), false) { ... }
//! ```
//!
//! It authenticates with a server key of the environment (`Authorization: Bearer KEY`;
//! an admin creates one with `POST /api/flags/environments/{name}/keys`). A refused key
//! (revoked, unknown) is retried with backoff, serving the last known configuration.
//!
//! The stream is read with a small HTTP/1.1 client of its own (plain `http://`; put TLS
//! in front with a local proxy), so the SDK needs nothing but tokio. It reconnects with
//! exponential backoff and jitter, sending `Last-Event-ID` so that an up-to-date client
//! is not sent the whole configuration again.
//!
//! The server itself gates its own features through [`FlagSource`], implemented by this
//! client and by the server's in-process snapshot alike.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use meridian_shared::flags::admin::FlagSnapshot;
use meridian_shared::flags::{CompiledFlag, Evaluation, EvaluationContext, Segments};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Where flags come from: evaluates `key` for `context`, `None` when there is no such
/// flag (the caller's default applies).
pub trait FlagSource: Send + Sync {
    fn evaluate(&self, key: &str, context: &EvaluationContext) -> Option<Evaluation>;

    /// A boolean flag's value, or `default` if the flag is missing, not boolean, or its
    /// evaluation failed.
    fn bool_value(&self, key: &str, context: &EvaluationContext, default: bool) -> bool {
        self.evaluate(key, context)
            .filter(|e| !e.is_error())
            .and_then(|e| e.value.as_bool())
            .unwrap_or(default)
    }
}

/// How a [`FlagClient`] connects.
#[derive(Debug, Clone)]
pub struct SdkOptions {
    /// `http://host:port` of a Meridian server.
    pub base_url: String,
    /// A server key (`mk_srv_...`), sent as `Authorization: Bearer`.
    pub key: String,
    /// The environment to follow; the key's own when `None` (a key reads no other).
    pub environment: Option<String>,
    /// Keeps the last configuration here, and starts from it when the server is down.
    pub cache_file: Option<PathBuf>,
    /// The first reconnect delay; it doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl SdkOptions {
    /// Follows the environment of the server key `key`.
    pub fn new(base_url: impl Into<String>, key: impl Into<String>) -> SdkOptions {
        SdkOptions {
            base_url: base_url.into(),
            key: key.into(),
            environment: None,
            cache_file: None,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// The configuration a client evaluates.
#[derive(Default)]
struct Compiled {
    version: u64,
    flags: HashMap<String, CompiledFlag>,
}

impl Compiled {
    fn from_snapshot(snapshot: &FlagSnapshot) -> Compiled {
        let segments: Segments = snapshot.segments.iter().cloned().collect();
        let flags = snapshot
            .flags
            .iter()
            .filter_map(|config| {
                CompiledFlag::compile(config, &segments)
                    .map(|c| (config.key.clone(), c))
                    .ok()
            })
            .collect();
        Compiled {
            version: snapshot.version,
            flags,
        }
    }
}

/// Whether the client follows the server right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdkState {
    Connecting,
    /// Streaming: changes arrive as they are made.
    Live,
    /// The server is unreachable: serving the last known configuration.
    Offline,
}

struct Inner {
    compiled: RwLock<Arc<Compiled>>,
    version: watch::Sender<u64>,
    state: watch::Sender<SdkState>,
    stop: CancellationToken,
}

/// A client of one environment's flags. Cheap to clone; stops when the last clone drops
/// (or on [`FlagClient::close`]).
#[derive(Clone)]
pub struct FlagClient {
    inner: Arc<Inner>,
    _owner: Arc<StopOnDrop>,
}

struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl FlagClient {
    /// Starts following the server in the background (on the current tokio runtime),
    /// serving the cache file's configuration until the first answer.
    pub fn connect(options: SdkOptions) -> FlagClient {
        let client = FlagClient::new();
        if let Some(snapshot) = options.cache_file.as_ref().and_then(read_cache) {
            client.install(&snapshot);
        }
        let inner = client.inner.clone();
        tokio::spawn(follow(inner, options));
        client
    }

    /// A client that evaluates a fixed configuration (tests, offline tools).
    pub fn from_snapshot(snapshot: &FlagSnapshot) -> FlagClient {
        let client = FlagClient::new();
        client.install(snapshot);
        client
    }

    fn new() -> FlagClient {
        let stop = CancellationToken::new();
        FlagClient {
            inner: Arc::new(Inner {
                compiled: RwLock::new(Arc::new(Compiled::default())),
                version: watch::Sender::new(0),
                state: watch::Sender::new(SdkState::Connecting),
                stop: stop.clone(),
            }),
            _owner: Arc::new(StopOnDrop(stop)),
        }
    }

    fn install(&self, snapshot: &FlagSnapshot) {
        install(&self.inner, snapshot);
    }

    /// The configuration version being evaluated (0 before any).
    pub fn version(&self) -> u64 {
        *self.inner.version.borrow()
    }

    pub fn state(&self) -> SdkState {
        *self.inner.state.borrow()
    }

    /// Waits until the client evaluates `version` or a later one.
    pub async fn wait_for_version(&self, version: u64) {
        let mut rx = self.inner.version.subscribe();
        let _ = rx.wait_for(|v| *v >= version).await;
    }

    /// Waits until the client is in `state`.
    pub async fn wait_for_state(&self, state: SdkState) {
        let mut rx = self.inner.state.subscribe();
        let _ = rx.wait_for(|s| *s == state).await;
    }

    /// Evaluates with a borrowed answer: the hot path (no allocation for most flags).
    pub fn with_evaluation<R>(
        &self,
        key: &str,
        context: &EvaluationContext,
        f: impl FnOnce(Option<meridian_shared::flags::EvaluationRef<'_>>) -> R,
    ) -> R {
        let compiled = self.current();
        f(compiled.flags.get(key).map(|flag| flag.evaluate(context)))
    }

    /// The configuration as it is now, to evaluate many times without touching the
    /// client's lock (a request handler takes one view per request).
    pub fn view(&self) -> FlagView {
        FlagView {
            compiled: self.current(),
        }
    }

    fn current(&self) -> Arc<Compiled> {
        self.inner
            .compiled
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops following the server (evaluation goes on with what it has).
    pub fn close(&self) {
        self.inner.stop.cancel();
    }
}

/// One version of the configuration, evaluated locally.
pub struct FlagView {
    compiled: Arc<Compiled>,
}

impl FlagView {
    pub fn version(&self) -> u64 {
        self.compiled.version
    }

    /// Evaluates `key`: `None` when there is no such flag.
    pub fn evaluate(
        &self,
        key: &str,
        context: &EvaluationContext,
    ) -> Option<meridian_shared::flags::EvaluationRef<'_>> {
        self.compiled
            .flags
            .get(key)
            .map(|flag| flag.evaluate(context))
    }
}

impl FlagSource for FlagClient {
    fn evaluate(&self, key: &str, context: &EvaluationContext) -> Option<Evaluation> {
        self.with_evaluation(key, context, |e| e.map(|e| e.into_owned()))
    }
}

fn install(inner: &Inner, snapshot: &FlagSnapshot) {
    let compiled = Arc::new(Compiled::from_snapshot(snapshot));
    let version = compiled.version;
    *inner.compiled.write().unwrap_or_else(|e| e.into_inner()) = compiled;
    inner.version.send_replace(version);
}

fn read_cache(path: &PathBuf) -> Option<FlagSnapshot> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_cache(path: &PathBuf, data: &str) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, data).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

async fn follow(inner: Arc<Inner>, options: SdkOptions) {
    let mut backoff = options.min_backoff;
    loop {
        let last = *inner.version.borrow();
        let outcome = tokio::select! {
            _ = inner.stop.cancelled() => return,
            outcome = stream_once(&inner, &options, last) => outcome,
        };
        if outcome.is_ok() {
            backoff = options.min_backoff;
        }
        inner.state.send_replace(SdkState::Offline);
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        let wait = backoff.mul_f64(jitter);
        backoff = (backoff * 2).min(options.max_backoff);
        tokio::select! {
            _ = inner.stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Splits `http://host:port/prefix` into the address and the path prefix.
fn split_url(base_url: &str) -> Result<(String, String), String> {
    let rest = base_url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{base_url:?}: the SDK speaks plain http://"))?;
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let address = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((address, prefix.to_owned()))
}

/// Whether `text` can go into a request line or header as it is.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
}

/// The HTTP request that opens the stream.
fn stream_request(
    address: &str,
    prefix: &str,
    options: &SdkOptions,
    last: u64,
) -> Result<String, String> {
    if !is_token(&options.key) {
        return Err("the key is not a Meridian delivery key".into());
    }
    let query = match &options.environment {
        Some(env) if is_token(env) => format!("?environment={env}"),
        Some(env) => return Err(format!("{env:?} is not an environment name")),
        None => String::new(),
    };
    let mut request = format!(
        "GET {prefix}/api/flags/stream{query} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nAuthorization: Bearer {}\r\n",
        options.key
    );
    if last > 0 {
        request.push_str(&format!("Last-Event-ID: {last}\r\n"));
    }
    request.push_str("\r\n");
    Ok(request)
}

/// One connection: reads `put` events until the stream ends. `Ok` if it got as far as
/// a `200`.
async fn stream_once(inner: &Inner, options: &SdkOptions, last: u64) -> Result<(), String> {
    let (address, prefix) = split_url(&options.base_url)?;
    let stream = TcpStream::connect(&address)
        .await
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let request = stream_request(&address, &prefix, options, last)?;
    reader
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .await
        .map_err(|e| e.to_string())?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(format!("the server answered {}", line.trim()));
    }
    let mut chunked = false;
    loop {
        line.clear();
        reader
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    inner.state.send_replace(SdkState::Live);
    let mut events = EventParser::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if chunked {
            line.clear();
            if reader
                .read_line(&mut line)
                .await
                .map_err(|e| e.to_string())?
                == 0
            {
                return Ok(());
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| format!("a bad chunk size {line:?}"))?;
            if size == 0 {
                return Ok(());
            }
            buf.resize(size + 2, 0);
            reader
                .read_exact(&mut buf)
                .await
                .map_err(|e| e.to_string())?;
            buf.truncate(size);
        } else {
            buf.resize(8192, 0);
            let n = reader.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(());
            }
            buf.truncate(n);
        }
        for (event, data) in events.feed(&buf) {
            if event != "put" {
                continue;
            }
            match serde_json::from_str::<FlagSnapshot>(&data) {
                Ok(snapshot) => {
                    install(inner, &snapshot);
                    if let Some(path) = &options.cache_file {
                        write_cache(path, &data);
                    }
                }
                Err(err) => tracing::warn!(%err, "ignoring a malformed flag snapshot"),
            }
        }
    }
}

/// The Server-Sent Events wire format: lines of `field: value`, events ended by a blank
/// line.
#[derive(Default)]
struct EventParser {
    pending: Vec<u8>,
    event: String,
    data: String,
}

impl EventParser {
    /// Feeds bytes; returns the events they completed, as `(event, data)`.
    fn feed(&mut self, bytes: &[u8]) -> Vec<(String, String)> {
        self.pending.extend_from_slice(bytes);
        let mut done = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&raw);
            let line = text.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() || !self.event.is_empty() {
                    let event = std::mem::take(&mut self.event);
                    let event = if event.is_empty() {
                        "message".into()
                    } else {
                        event
                    };
                    done.push((event, std::mem::take(&mut self.data)));
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => self.event = value.to_owned(),
                "data" => {
                    if !self.data.is_empty() {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                }
                _ => {}
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_across_arbitrary_splits() {
        let wire = b": keep-alive\n\nevent: put\nid: 3\ndata: {\"a\":1}\n\nevent: put\r\ndata: x\r\ndata: y\r\n\r\n";
        for split in 0..wire.len() {
            let mut parser = EventParser::default();
            let mut events = parser.feed(&wire[..split]);
            events.extend(parser.feed(&wire[split..]));
            assert_eq!(
                events,
                vec![
                    ("put".to_owned(), "{\"a\":1}".to_owned()),
                    ("put".to_owned(), "x\ny".to_owned())
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn urls_split_into_address_and_prefix() {
        assert_eq!(
            split_url("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1:8080".into(), String::new())
        );
        assert_eq!(
            split_url("http://flags.local/meridian/").unwrap(),
            ("flags.local:80".into(), "/meridian".into())
        );
        assert!(split_url("https://x").is_err());
    }

    #[test]
    fn the_request_carries_the_key_and_names_the_environment_if_asked() {
        let mut options = SdkOptions::new("http://h:1", "mk_srv_00ff");
        let request = stream_request("h:1", "/m", &options, 0).unwrap();
        assert!(
            request.starts_with("GET /m/api/flags/stream HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("\r\nAuthorization: Bearer mk_srv_00ff\r\n"));
        assert!(!request.contains("Last-Event-ID"));
        options.environment = Some("development".into());
        let request = stream_request("h:1", "", &options, 7).unwrap();
        assert!(request.starts_with("GET /api/flags/stream?environment=development HTTP/1.1"));
        assert!(request.ends_with("Last-Event-ID: 7\r\n\r\n"));
        options.key = "mk_srv_1\r\nX-Evil: 1".into();
        assert!(
            stream_request("h:1", "", &options, 0).is_err(),
            "no header injection"
        );
    }
}
