//! A headless Chromium driven over WebDriver (`chromedriver` + fantoccini), for tests of
//! the product as a person uses it.
//!
//! Every [`Browser`] has its own chromedriver on a free port and its own fresh profile
//! directory. The waits poll the DOM for a condition until a deadline ([`WAIT_TIMEOUT`])
//! and fail with what the page showed instead; nothing waits for a fixed time.
//!
//! `CHROMIUM_BIN` and `CHROMEDRIVER_BIN` override `/usr/bin/chromium` and `chromedriver`.
//!
//! Invariant: chromedriver runs in a process group of its own, and dropping the
//! `Browser` kills that group, so no browser outlives its test, even a failed one.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, WindowHandle};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long a wait for the page may take.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long chromedriver may take to answer `GET /status`.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a wait looks at the page again.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// A headless Chromium with one WebDriver session.
pub struct Browser {
    pub client: Client,
    driver: Child,
    driver_log: PathBuf,
    /// The browser profile and chromedriver's log; removed on drop.
    _dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile.
    pub async fn start() -> Browser {
        let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let chromedriver =
            std::env::var("CHROMEDRIVER_BIN").unwrap_or_else(|_| "chromedriver".into());
        let dir = tempfile::tempdir().expect("create a browser profile directory");
        let profile = dir.path().join("profile");
        let driver_log = dir.path().join("chromedriver.log");
        let log_file = std::fs::File::create(&driver_log).expect("create the chromedriver log");
        let port = free_port();
        let mut command = Command::new(&chromedriver);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                log_file.try_clone().expect("clone the log file handle"),
            ))
            .stderr(Stdio::from(log_file));
        {
            use std::os::unix::process::CommandExt;
            // Its own process group, so that drop can end Chromium with it.
            command.process_group(0);
        }
        let mut driver = command.spawn().unwrap_or_else(|e| {
            panic!("start {chromedriver} (install chromium-driver, or set CHROMEDRIVER_BIN): {e}")
        });
        let webdriver_url = format!("http://127.0.0.1:{port}");
        if let Err(why) = wait_for_driver(&webdriver_url).await {
            kill_group(&mut driver);
            panic!(
                "chromedriver did not become ready: {why}\n--- chromedriver log ---\n{}",
                std::fs::read_to_string(&driver_log).unwrap_or_default()
            );
        }

        let mut capabilities = Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = match ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&webdriver_url)
            .await
        {
            Ok(client) => client,
            Err(err) => {
                kill_group(&mut driver);
                panic!(
                    "cannot open a Chromium session ({chromium}; set CHROMIUM_BIN to override): {err}\n--- chromedriver log ---\n{}",
                    std::fs::read_to_string(&driver_log).unwrap_or_default()
                );
            }
        };
        Browser {
            client,
            driver,
            driver_log,
            _dir: dir,
        }
    }

    /// Loads `url` in the current tab.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("load {url}: {e}"));
    }

    /// The first element matching `css`, once there is one.
    pub async fn wait_for(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(WAIT_TIMEOUT)
            .every(POLL_EVERY)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(err) => {
                let page = self.describe_page().await;
                panic!("no element matches {css} after {WAIT_TIMEOUT:?} ({err})\n{page}")
            }
        }
    }

    /// Waits until some element matching `css` has attribute `attr` equal to `value`.
    pub async fn wait_for_attr(&self, css: &str, attr: &str, value: &str) {
        self.wait_until(
            &format!("{css} with {attr}={value:?}"),
            "return Array.from(document.querySelectorAll(arguments[0]))
                .some(e => e.getAttribute(arguments[1]) === arguments[2]);",
            vec![json!(css), json!(attr), json!(value)],
            css,
        )
        .await;
    }

    /// Waits until some element matching `css` has exactly `text` (trimmed) as its text.
    pub async fn wait_for_text(&self, css: &str, text: &str) {
        self.wait_until(
            &format!("{css} with the text {text:?}"),
            "return Array.from(document.querySelectorAll(arguments[0]))
                .some(e => e.textContent.trim() === arguments[1]);",
            vec![json!(css), json!(text)],
            css,
        )
        .await;
    }

    /// Waits until some element matching `css` contains `text`.
    pub async fn wait_for_text_containing(&self, css: &str, text: &str) {
        self.wait_until(
            &format!("{css} containing {text:?}"),
            "return Array.from(document.querySelectorAll(arguments[0]))
                .some(e => e.textContent.includes(arguments[1]));",
            vec![json!(css), json!(text)],
            css,
        )
        .await;
    }

    /// Polls `script` (a function body that returns a boolean; `args` are its
    /// `arguments`) until it returns true. On timeout the test fails naming `what` and
    /// showing the elements that match `show` and the page's text.
    pub async fn wait_until(&self, what: &str, script: &str, args: Vec<Value>, show: &str) {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        let mut last_error = None;
        loop {
            match self.client.execute(script, args.clone()).await {
                Ok(Value::Bool(true)) => return,
                Ok(_) => {}
                Err(err) => last_error = Some(err.to_string()),
            }
            if Instant::now() >= deadline {
                let matches = self.describe_matches(show).await;
                let page = self.describe_page().await;
                panic!(
                    "waited {WAIT_TIMEOUT:?} for {what}; last script error: {last_error:?}\nelements matching {show}: {matches}\n{page}"
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Types `text` into the (first) element matching `css`, replacing what it held.
    ///
    /// The field is emptied with an `input` event (WebDriver's clear sends none), so that
    /// a controlled input's state is empty too: otherwise a re-render that lands between
    /// the clear and the typing (a slow machine) writes the old value back, and the text
    /// is typed after it.
    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.wait_for(css).await;
        self.client
            .execute(
                "arguments[0].value = ''; \
                 arguments[0].dispatchEvent(new Event('input', {bubbles: true})); return true;",
                vec![serde_json::to_value(&input).expect("an element serialises")],
            )
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        input
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Clicks the (first) element matching `css`, once there is one. The element is
    /// scrolled to the middle of the window first: WebDriver only scrolls what is off
    /// screen, and an element just under the sticky top bar would be covered by it.
    pub async fn click(&self, css: &str) {
        let element = self.wait_for(css).await;
        self.client
            .execute(
                "arguments[0].scrollIntoView({block: 'center', inline: 'nearest'}); return true;",
                vec![serde_json::to_value(&element).expect("an element serialises")],
            )
            .await
            .unwrap_or_else(|e| panic!("scroll {css} into view: {e}"));
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Opens a new tab (not switching to it) and returns its handle.
    pub async fn open_tab(&self) -> WindowHandle {
        self.client
            .new_window(true)
            .await
            .expect("open a new tab")
            .handle
    }

    /// The current tab's handle.
    pub async fn current_tab(&self) -> WindowHandle {
        self.client.window().await.expect("the current tab")
    }

    /// Makes `tab` the one the next commands act on.
    pub async fn switch_to(&self, tab: &WindowHandle) {
        self.client
            .switch_to_window(tab.clone())
            .await
            .expect("switch tabs");
    }

    /// Ends the WebDriver session (closing Chromium) and chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop kills chromedriver's process group.
    }

    /// The chromedriver log so far, for diagnostics.
    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(&self.driver_log).unwrap_or_default()
    }

    async fn describe_matches(&self, css: &str) -> String {
        self.client
            .execute(
                "return Array.from(document.querySelectorAll(arguments[0]))
                    .map(e => e.outerHTML.slice(0, 300));",
                vec![json!(css)],
            )
            .await
            .map(|v| v.to_string())
            .unwrap_or_else(|e| format!("(cannot read: {e})"))
    }

    /// The URL and the visible text of the page, shortened.
    async fn describe_page(&self) -> String {
        let url = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_else(|e| format!("(unknown: {e})"));
        let text = self
            .client
            .execute(
                "return document.body ? document.body.innerText.slice(0, 2000) : '(no body)';",
                vec![],
            )
            .await
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|e| format!("(cannot read: {e})"));
        format!("page {url} shows:\n{text}")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}

/// SIGKILL to chromedriver's process group (chromedriver and the Chromium it started),
/// then reaps chromedriver.
fn kill_group(driver: &mut Child) {
    let group = format!("-{}", driver.id());
    let _ = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = driver.kill();
    let _ = driver.wait();
}

/// A port that was free a moment ago (bound to `127.0.0.1:0`, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Polls chromedriver's `GET /status` until it says it is ready.
async fn wait_for_driver(webdriver_url: &str) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let status_url = format!("{webdriver_url}/status");
    let deadline = Instant::now() + DRIVER_START_TIMEOUT;
    let mut last;
    loop {
        match http.get(&status_url).send().await {
            Ok(response) => match response.json::<Value>().await {
                Ok(body) if body["value"]["ready"] == Value::Bool(true) => return Ok(()),
                Ok(body) => last = format!("not ready: {body}"),
                Err(e) => last = format!("unreadable /status: {e}"),
            },
            Err(e) => last = format!("GET {status_url}: {e}"),
        }
        if Instant::now() >= deadline {
            return Err(format!("after {DRIVER_START_TIMEOUT:?}: {last}"));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The repository's `static/` with the built web UI bundle in `static/pkg/`; fails the
/// test, saying how to build it, when the bundle is missing.
pub fn built_static_dir() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../static");
    let manifest = dir.join("pkg/manifest.json");
    assert!(
        manifest.is_file(),
        "{} is missing: the web UI is not built. Run scripts/build-web.sh first.",
        manifest.display()
    );
    dir
}

/// ChromeDriver's network emulation (`POST /session/{id}/chromium/network_conditions`):
/// offline makes the page see `navigator.onLine == false` and refuses its connections;
/// otherwise every request waits `latency_ms` and transfers at most `bytes_per_s` each
/// way (`None`: unlimited).
#[derive(Debug)]
struct NetworkConditions {
    offline: bool,
    latency_ms: u64,
    bytes_per_s: Option<u64>,
}

impl fantoccini::wd::WebDriverCompatibleCommand for NetworkConditions {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/chromium/network_conditions",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        let body = serde_json::json!({
            "network_conditions": {
                "offline": self.offline,
                "latency": self.latency_ms,
                "download_throughput": self.bytes_per_s.map_or(-1, |b| b as i64),
                "upload_throughput": self.bytes_per_s.map_or(-1, |b| b as i64),
            }
        });
        (http::Method::POST, Some(body.to_string()))
    }
}

impl Browser {
    /// Takes the browser off the network (`true`) or back on it (`false`).
    pub async fn set_offline(&self, offline: bool) {
        self.client
            .issue_cmd(NetworkConditions {
                offline,
                latency_ms: 0,
                bytes_per_s: None,
            })
            .await
            .unwrap_or_else(|e| panic!("set network conditions offline={offline}: {e}"));
    }

    /// Emulates a slower network: `latency_ms` added to every request and at most
    /// `bits_per_s` each way.
    pub async fn emulate_network(&self, latency_ms: u64, bits_per_s: u64) {
        self.client
            .issue_cmd(NetworkConditions {
                offline: false,
                latency_ms,
                bytes_per_s: Some(bits_per_s / 8),
            })
            .await
            .unwrap_or_else(|e| panic!("emulate {latency_ms} ms, {bits_per_s} bit/s: {e}"));
    }
}

impl Browser {
    /// Waits until no element matches `css` (it was removed, or never rendered).
    pub async fn wait_for_absence(&self, css: &str) {
        self.wait_until(
            &format!("no element matching {css}"),
            "return document.querySelector(arguments[0]) === null;",
            vec![json!(css)],
            css,
        )
        .await;
    }

    /// Puts a mark on the page's `window` that a reload would wipe out.
    pub async fn mark_page(&self, mark: &str) {
        self.client
            .execute(
                "window.__meridianNoReload = arguments[0]; return true;",
                vec![json!(mark)],
            )
            .await
            .expect("mark the page");
    }

    /// Whether the mark of [`Browser::mark_page`] is still there (the page was not
    /// reloaded).
    pub async fn page_mark(&self) -> Option<String> {
        self.client
            .execute("return window.__meridianNoReload || null;", vec![])
            .await
            .expect("read the mark")
            .as_str()
            .map(str::to_owned)
    }
}

/// A server on a fresh database of `db` serving the built web UI.
pub async fn start_web_server(db: &crate::db::TestDatabase) -> crate::server::TestServer {
    let static_dir = built_static_dir();
    crate::server::TestServer::start_with(db, move |config| config.static_dir = static_dir).await
}

/// The CSS selector of an element by its `data-testid`.
pub fn testid(id: &str) -> String {
    format!("[data-testid='{id}']")
}

impl Browser {
    /// Signs up through the form; the browser's session is then the account's.
    pub async fn sign_up(
        &self,
        server: &crate::server::TestServer,
        username: &str,
        password: &str,
    ) {
        self.goto(&server.url("/signup")).await;
        self.wait_for_text("[data-testid=whoami]", "Guest").await;
        self.fill("input[name=username]", username).await;
        self.fill("input[name=password]", password).await;
        self.click("form button[type=submit]").await;
        self.wait_for_text("[data-testid=whoami]", username).await;
    }

    /// An HTTP client holding this browser's session cookie.
    pub async fn session_client(
        &self,
        server: &crate::server::TestServer,
    ) -> crate::client::Client {
        let cookie = self
            .client
            .get_named_cookie(crate::client::SESSION_COOKIE)
            .await
            .expect("the browser holds a session cookie");
        crate::client::Client::with_session_token(server, cookie.value())
    }
}
