//! Typed helpers for the server's HTTP endpoints, over `fetch` (gloo-net).
//!
//! Every helper returns `Result<T, HttpError>`. Errors keep three cases apart, because
//! the UI says different things about them: the request never got an answer
//! ([`HttpError::Network`], including a timeout), the server answered with its
//! `{"code", "message"}` error body ([`HttpError::Api`]), or the server answered
//! something this client cannot read ([`HttpError::Unexpected`]).
//!
//! Requests are same-origin, so the session cookie travels with them (fetch's default
//! `credentials: same-origin`); responses are never taken from the HTTP cache. Each call
//! carries a new `traceparent` and is reported as a client span (see [`super::trace`]).

use std::fmt;

use gloo_net::http::{Request, RequestBuilder, Response};
use gloo_timers::callback::Timeout;

use meridian_shared::api::{ApiErrorBody, Credentials, HealthResponse, Me};

use super::trace;
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
    let context = trace::new_call_context();
    let builder = builder
        .header("Accept", "application/json")
        .header("traceparent", &context.to_string())
        .cache(RequestCache::NoStore)
        .abort_signal(signal.as_ref());
    let request = match body {
        Some(body) => builder.json(body),
        None => builder.build(),
    }
    .map_err(|error| HttpError::Network(error.to_string()))?;
    let (method, path) = (
        request.method().to_string(),
        trace::url_path(&request.url()).to_owned(),
    );
    let started = crate::browser::now_ms() as f64;
    let answer = request.send().await;
    trace::export(trace::client_span_export(
        &context,
        &method,
        &path,
        started,
        crate::browser::now_ms() as f64,
        answer.as_ref().ok().map(|r| r.status()),
    ));
    answer.map_err(|error| {
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
    fn path_segments_escape_what_is_not_unreserved() {
        assert_eq!(path_segment("new-checkout"), "new-checkout");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(path_segment("ü"), "%C3%BC");
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
