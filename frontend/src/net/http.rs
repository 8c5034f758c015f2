//! Typed helpers for the server's HTTP endpoints, over `fetch` (gloo-net).
//!
//! Every helper returns `Result<T, HttpError>`. Errors keep three cases apart, because
//! the UI says different things about them: the request never got an answer
//! ([`HttpError::Network`], including a timeout), the server answered with its
//! `{"code", "message"}` error body ([`HttpError::Api`]), or the server answered
//! something this client cannot read ([`HttpError::Unexpected`]).
//!
//! Requests are same-origin, so the session cookie travels with them (fetch's default
//! `credentials: same-origin`); responses are never taken from the HTTP cache.

use std::fmt;

use gloo_net::http::{Request, RequestBuilder, Response};
use gloo_timers::callback::Timeout;

use meridian_shared::api::{ApiErrorBody, Credentials, HealthResponse, Me};
use meridian_shared::flags::admin::{
    ApprovalList, AuditLog, ChangeOutcome, EnvironmentChange, EnvironmentList, EnvironmentSettings,
    FlagList, KillOutcome, KillRequest, Preview, PreviewRequest, ScheduleList,
};
use meridian_shared::flags::Flag;
use serde::de::DeserializeOwned;
use web_sys::{AbortController, RequestCache};

/// How long a request may wait for its answer before it counts as a network failure.
pub const REQUEST_TIMEOUT_MS: u32 = 15_000;

/// Why an HTTP call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// No answer: the browser is offline, the server is unreachable, or it did not answer
    /// within [`REQUEST_TIMEOUT_MS`]. The detail is for logs and tooltips.
    Network(String),
    /// The server refused the request with its error body.
    Api { status: u16, body: ApiErrorBody },
    /// The server answered, but not with something this client understands.
    Unexpected { status: u16, detail: String },
}

impl HttpError {
    /// A sentence for people, suitable for a form error or a banner.
    pub fn message(&self) -> String {
        match self {
            HttpError::Network(_) => {
                "Could not reach the server. Check your connection and try again.".to_owned()
            }
            HttpError::Api { body, .. } => body.message.clone(),
            HttpError::Unexpected { status, .. } => {
                format!(
                    "The server gave an unexpected answer (HTTP {status}). Try again in a moment."
                )
            }
        }
    }

    /// The server's machine-readable error code, when it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            HttpError::Api { body, .. } => Some(&body.code),
            _ => None,
        }
    }

    /// Whether the failure is about reaching the server rather than about the request.
    pub fn is_network(&self) -> bool {
        matches!(self, HttpError::Network(_))
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Network(detail) => write!(f, "network error: {detail}"),
            HttpError::Api { status, body } => {
                write!(f, "HTTP {status} {}: {}", body.code, body.message)
            }
            HttpError::Unexpected { status, detail } => {
                write!(f, "unexpected answer (HTTP {status}): {detail}")
            }
        }
    }
}

impl std::error::Error for HttpError {}

/// Turns a non-success answer into an [`HttpError`]: the server's error body when it is
/// one, else a description of what came back.
pub fn decode_error(status: u16, body: &str) -> HttpError {
    match serde_json::from_str::<ApiErrorBody>(body) {
        Ok(body) => HttpError::Api { status, body },
        Err(_) => {
            let snippet: String = body.trim().chars().take(120).collect();
            HttpError::Unexpected {
                status,
                detail: if snippet.is_empty() {
                    "empty body".to_owned()
                } else {
                    snippet
                },
            }
        }
    }
}

/// Decodes a success body into `T`.
pub fn decode_success<T: DeserializeOwned>(status: u16, body: &str) -> Result<T, HttpError> {
    serde_json::from_str(body).map_err(|error| HttpError::Unexpected {
        status,
        detail: format!("unreadable body: {error}"),
    })
}

/// `GET /api/health`.
pub async fn health() -> Result<HealthResponse, HttpError> {
    send(Request::get("/api/health"), None::<&()>).await
}

/// `GET /api/auth/me`: who this browser's session belongs to.
pub async fn me() -> Result<Me, HttpError> {
    send(Request::get("/api/auth/me"), None::<&()>).await
}

/// `POST /api/auth/signup`.
pub async fn sign_up(credentials: &Credentials) -> Result<Me, HttpError> {
    send(Request::post("/api/auth/signup"), Some(credentials)).await
}

/// `POST /api/auth/signin`.
pub async fn sign_in(credentials: &Credentials) -> Result<Me, HttpError> {
    send(Request::post("/api/auth/signin"), Some(credentials)).await
}

/// `POST /api/auth/signout`: answers with the new guest session.
pub async fn sign_out() -> Result<Me, HttpError> {
    send(Request::post("/api/auth/signout"), None::<&()>).await
}

/// `POST /api/ids`: mint `count` IDs in `format`.
pub async fn mint_ids(
    request: &meridian_shared::ids::IdsRequest,
) -> Result<meridian_shared::ids::IdsResponse, HttpError> {
    send(Request::post("/api/ids"), Some(request)).await
}

/// `GET /api/ids/{id}`: what an ID says.
pub async fn describe_id(id: &str) -> Result<meridian_shared::ids::IdParts, HttpError> {
    let path = format!("/api/ids/{}", js_sys::encode_uri_component(id));
    send(Request::get(&path), None::<&()>).await
}

/// `GET /api/ids/leases`: the node-id leases and this instance's generator.
pub async fn id_leases() -> Result<meridian_shared::ids::IdLeases, HttpError> {
    send(Request::get("/api/ids/leases"), None::<&()>).await
}

/// `GET /api/products`: the catalog, in catalog order.
pub async fn products() -> Result<meridian_shared::cart::ProductList, HttpError> {
    send(Request::get("/api/products"), None::<&()>).await
}

/// `GET /api/cart`: the session's cart (a guest's, or the signed-in account's).
pub async fn cart() -> Result<meridian_shared::cart::CartView, HttpError> {
    send(Request::get("/api/cart"), None::<&()>).await
}

/// `POST /api/cart/ops`: applies the ops all or nothing, in order; answers with the
/// resulting cart.
pub async fn cart_ops(
    request: &meridian_shared::cart::CartOpsRequest,
) -> Result<meridian_shared::cart::CartView, HttpError> {
    send(Request::post("/api/cart/ops"), Some(request)).await
}

/// `GET /api/cart/history`: up to `limit` entries older than the cursor `before` (the
/// newest without it), newest first.
pub async fn cart_history(
    before: Option<u64>,
    limit: u32,
) -> Result<meridian_shared::cart::CartHistory, HttpError> {
    send(Request::get(&cart_history_path(before, limit)), None::<&()>).await
}

/// The path of a page of cart history.
pub fn cart_history_path(before: Option<u64>, limit: u32) -> String {
    match before {
        Some(before) => format!("/api/cart/history?limit={limit}&before={before}"),
        None => format!("/api/cart/history?limit={limit}"),
    }
}

// ---------------------------------------------------------------------------------------
// Feature flags (`/api/flags`): every route but the stream needs a signed-in user and
// answers 401 `sign_in_required` otherwise.

/// The body of `POST /api/flags`.
pub use meridian_shared::flags::admin::FlagDefinition as NewFlag;

/// Percent-encodes one path segment (everything but RFC 3986's unreserved characters),
/// so that a key or an id can never change the route.
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `/api/flags/{key}` followed by `rest` (which starts with `/`, or is empty).
pub fn flag_path(key: &str, rest: &str) -> String {
    format!("/api/flags/{}{rest}", path_segment(key))
}

/// The path of a page of the audit log: every flag's, or one flag's.
pub fn flag_audit_path(key: Option<&str>, before: Option<u64>, limit: u32) -> String {
    let base = match key {
        Some(key) => flag_path(key, "/audit"),
        None => "/api/flags/audit".to_owned(),
    };
    match before {
        Some(before) => format!("{base}?limit={limit}&before={before}"),
        None => format!("{base}?limit={limit}"),
    }
}

/// The stream of one environment's configuration (Server-Sent Events).
pub fn flag_stream_path(environment: &str) -> String {
    format!(
        "/api/flags/stream?environment={}",
        path_segment(environment)
    )
}

/// `GET /api/flags`: every flag, in every environment.
pub async fn flags() -> Result<FlagList, HttpError> {
    send(Request::get("/api/flags"), None::<&()>).await
}

/// `POST /api/flags`: creates a flag (201), or 400 `invalid_flag` naming the field, or
/// 409 `flag_exists`.
pub async fn create_flag(flag: &NewFlag) -> Result<Flag, HttpError> {
    send(Request::post("/api/flags"), Some(flag)).await
}

/// `DELETE /api/flags/{key}` (204).
pub async fn delete_flag(key: &str) -> Result<(), HttpError> {
    send_no_content(Request::delete(&flag_path(key, ""))).await
}

/// `PUT /api/flags/{key}/environments/{environment}`: applied (200), or waiting for an
/// approval or for its time (202); 400 `invalid_flag` names the rule.
pub async fn change_flag_environment(
    key: &str,
    environment: &str,
    change: &EnvironmentChange,
) -> Result<ChangeOutcome, HttpError> {
    let path = flag_path(key, &format!("/environments/{}", path_segment(environment)));
    send(Request::put(&path), Some(change)).await
}

/// `POST /api/flags/{key}/kill`: the kill switch (or, with `killed: false`, lifting it),
/// answered with how far the change reached the stream's subscribers.
pub async fn kill_flag(key: &str, request: &KillRequest) -> Result<KillOutcome, HttpError> {
    send(Request::post(&flag_path(key, "/kill")), Some(request)).await
}

/// `POST /api/flags/{key}/preview`: the server's evaluation of a context.
pub async fn preview_flag(key: &str, request: &PreviewRequest) -> Result<Preview, HttpError> {
    send(Request::post(&flag_path(key, "/preview")), Some(request)).await
}

/// `GET /api/flags/audit` or `GET /api/flags/{key}/audit`: newest first.
pub async fn flag_audit(
    key: Option<&str>,
    before: Option<u64>,
    limit: u32,
) -> Result<AuditLog, HttpError> {
    send(
        Request::get(&flag_audit_path(key, before, limit)),
        None::<&()>,
    )
    .await
}

/// `GET /api/flags/approvals?status=pending`.
pub async fn pending_approvals() -> Result<ApprovalList, HttpError> {
    send(
        Request::get("/api/flags/approvals?status=pending"),
        None::<&()>,
    )
    .await
}

/// `POST /api/flags/approvals/{id}/approve` or `.../reject`; 403 `self_approval` for the
/// change's own author.
pub async fn decide_approval(id: &str, approve: bool) -> Result<ChangeOutcome, HttpError> {
    let verb = if approve { "approve" } else { "reject" };
    let path = format!("/api/flags/approvals/{}/{verb}", path_segment(id));
    send(Request::post(&path), None::<&()>).await
}

/// `GET /api/flags/schedules`: scheduled changes, latest first.
pub async fn flag_schedules() -> Result<ScheduleList, HttpError> {
    send(Request::get("/api/flags/schedules"), None::<&()>).await
}

/// `GET /api/flags/environments`.
pub async fn flag_environments() -> Result<EnvironmentList, HttpError> {
    send(Request::get("/api/flags/environments"), None::<&()>).await
}

/// `PUT /api/flags/environments/{name}`: whether its changes need a second user.
pub async fn set_flag_environment(
    name: &str,
    require_approval: bool,
) -> Result<EnvironmentSettings, HttpError> {
    let path = format!("/api/flags/environments/{}", path_segment(name));
    let body = serde_json::json!({ "require_approval": require_approval });
    send(Request::put(&path), Some(&body)).await
}

/// Like [`send`], for an answer without a body (204).
pub async fn send_no_content(builder: RequestBuilder) -> Result<(), HttpError> {
    match send::<serde_json::Value, ()>(builder, None).await {
        Ok(_) => Ok(()),
        // An empty 2xx body does not parse as JSON: that is the expected answer.
        Err(HttpError::Unexpected { status, .. }) if (200..300).contains(&status) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Sends a request (JSON `body` if any) and decodes the JSON answer or the API error.
pub async fn send<T: DeserializeOwned, B: serde::Serialize>(
    builder: RequestBuilder,
    body: Option<&B>,
) -> Result<T, HttpError> {
    let response = send_request(builder, body).await?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|error| HttpError::Network(error.to_string()))?;
    if response.ok() {
        decode_success(status, &text)
    } else {
        Err(decode_error(status, &text))
    }
}

/// Sends a request (JSON `body` if any) that is aborted after [`REQUEST_TIMEOUT_MS`] and
/// never answered from the HTTP cache; the response is the caller's to read, whatever
/// its status.
pub async fn send_request<B: serde::Serialize>(
    builder: RequestBuilder,
    body: Option<&B>,
) -> Result<Response, HttpError> {
    // Dropping `_deadline` when the answer arrives cancels the timer.
    let controller = AbortController::new().ok();
    let signal = controller.as_ref().map(|controller| controller.signal());
    let _deadline = controller
        .clone()
        .map(|controller| Timeout::new(REQUEST_TIMEOUT_MS, move || controller.abort()));
    let builder = builder
        .header("Accept", "application/json")
        .cache(RequestCache::NoStore)
        .abort_signal(signal.as_ref());
    let request = match body {
        Some(body) => builder.json(body),
        None => builder.build(),
    }
    .map_err(|error| HttpError::Network(error.to_string()))?;
    request.send().await.map_err(|error| {
        if signal.as_ref().is_some_and(|signal| signal.aborted()) {
            HttpError::Network(format!("no answer within {} s", REQUEST_TIMEOUT_MS / 1000))
        } else {
            HttpError::Network(error.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::api::SessionKind;

    #[test]
    fn error_bodies_decode_to_their_message() {
        let error = decode_error(
            401,
            r#"{"code":"invalid_credentials","message":"Wrong username or password."}"#,
        );
        assert_eq!(error.code(), Some("invalid_credentials"));
        assert_eq!(error.message(), "Wrong username or password.");
        assert!(!error.is_network());
    }

    #[test]
    fn foreign_error_pages_are_unexpected_not_api_errors() {
        let error = decode_error(502, "<html>Bad Gateway</html>");
        assert_eq!(
            error,
            HttpError::Unexpected {
                status: 502,
                detail: "<html>Bad Gateway</html>".into()
            }
        );
        assert!(error.message().contains("502"));
        assert_eq!(error.code(), None);
        let empty = decode_error(500, "");
        assert_eq!(
            empty,
            HttpError::Unexpected {
                status: 500,
                detail: "empty body".into()
            }
        );
    }

    #[test]
    fn network_errors_say_so() {
        let error = HttpError::Network("TypeError: Failed to fetch".into());
        assert!(error.is_network());
        assert!(error.message().contains("Could not reach the server"));
    }

    #[test]
    fn history_pages_carry_their_cursor() {
        assert_eq!(cart_history_path(None, 50), "/api/cart/history?limit=50");
        assert_eq!(
            cart_history_path(Some(17), 20),
            "/api/cart/history?limit=20&before=17"
        );
    }

    #[test]
    fn flag_paths_escape_what_is_not_a_key() {
        assert_eq!(
            flag_path("new-checkout", "/kill"),
            "/api/flags/new-checkout/kill"
        );
        assert_eq!(flag_path("a/b c", ""), "/api/flags/a%2Fb%20c");
        assert_eq!(path_segment("ü"), "%C3%BC");
        assert_eq!(flag_audit_path(None, None, 50), "/api/flags/audit?limit=50");
        assert_eq!(
            flag_audit_path(Some("beta"), Some(7), 20),
            "/api/flags/beta/audit?limit=20&before=7"
        );
        assert_eq!(
            flag_stream_path("production"),
            "/api/flags/stream?environment=production"
        );
    }

    #[test]
    fn a_new_flag_serialises_as_the_server_reads_it() {
        use meridian_shared::flags::{FlagKind, Variation};
        use std::collections::BTreeMap;
        let flag = NewFlag {
            key: "beta".into(),
            name: "Beta".into(),
            description: String::new(),
            kind: FlagKind::Boolean,
            variations: vec![Variation {
                name: "on".into(),
                value: serde_json::json!(true),
                description: String::new(),
            }],
            environments: BTreeMap::new(),
            tags: Vec::new(),
        };
        assert_eq!(
            serde_json::to_value(&flag).unwrap(),
            serde_json::json!({
                "key": "beta",
                "name": "Beta",
                "kind": "boolean",
                "variations": [{"name": "on", "value": true}],
            })
        );
    }

    #[test]
    fn success_bodies_decode_into_wire_types() {
        let me: Me = decode_success(
            200,
            r#"{"session_id":"s1","kind":"guest","user":null,"guest_session_id":null}"#,
        )
        .unwrap();
        assert_eq!(me.kind, SessionKind::Guest);
        let error = decode_success::<Me>(200, "not json").unwrap_err();
        assert!(matches!(error, HttpError::Unexpected { status: 200, .. }));
    }
}
