//! The browser's part of a trace: every HTTP call is a client span, with a new W3C
//! `traceparent` on its request (so the server's span joins the same trace), and the
//! finished span is sent as OTLP JSON to `/v1/traces` (fire and forget: a lost span
//! never fails or delays the call it describes; the export itself is not traced).

use gloo_net::http::Request;
use meridian_shared::traceparent::TraceParent;
use serde_json::{json, Value};

/// The service name of the web app's spans.
pub const SERVICE: &str = "meridian-web";

/// Random bytes, not all zero: `crypto.getRandomValues`, else `Math.random`.
fn random_id<const N: usize>() -> [u8; N] {
    loop {
        let mut bytes = [0u8; N];
        let filled = web_sys::window()
            .and_then(|w| w.crypto().ok())
            .is_some_and(|c| c.get_random_values_with_u8_array(&mut bytes).is_ok());
        if !filled {
            for b in bytes.iter_mut() {
                *b = (crate::browser::random_unit() * 256.0) as u8;
            }
        }
        if bytes != [0; N] {
            return bytes;
        }
    }
}

/// A new sampled trace whose root is this call's span.
pub fn new_call_context() -> TraceParent {
    TraceParent {
        trace_id: random_id::<16>(),
        parent_id: random_id::<8>(),
        flags: TraceParent::SAMPLED,
    }
}

/// The path of a URL, without origin or query (`/api/x` from `http://h/api/x?y`).
pub fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("/", |at| &after_scheme[at..]);
    path.split(['?', '#']).next().unwrap_or("/")
}

/// One finished client span as an OTLP JSON export request.
pub fn client_span_export(
    context: &TraceParent,
    method: &str,
    path: &str,
    start_ms: f64,
    end_ms: f64,
    status: Option<u16>,
) -> Value {
    let ns = |ms: f64| ((ms * 1_000_000.0) as u64).to_string();
    let mut attributes = vec![
        json!({"key": "http.request.method", "value": {"stringValue": method}}),
        json!({"key": "url.path", "value": {"stringValue": path}}),
    ];
    if let Some(code) = status {
        attributes.push(
            json!({"key": "http.response.status_code", "value": {"intValue": code.to_string()}}),
        );
    }
    let failed = status.is_none_or(|s| s >= 500);
    let mut span = json!({
        "traceId": context.trace_id_hex(),
        "spanId": context.parent_id_hex(),
        "name": format!("{method} {path}"),
        "kind": 3,
        "startTimeUnixNano": ns(start_ms),
        "endTimeUnixNano": ns(end_ms.max(start_ms)),
        "attributes": attributes,
    });
    if failed {
        span["status"] = json!({"code": 2, "message": status.map_or("no answer".to_owned(), |s| format!("HTTP {s}"))});
    }
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": SERVICE}}]},
        "scopeSpans": [{"scope": {"name": SERVICE}, "spans": [span]}]
    }]})
}

/// Sends a finished span in the background.
pub fn export(body: Value) {
    wasm_bindgen_futures::spawn_local(async move {
        if let Ok(request) = Request::post("/v1/traces").json(&body) {
            let _ = request.send().await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_lose_origin_and_query() {
        assert_eq!(url_path("http://h:8/api/x?y=1"), "/api/x");
        assert_eq!(url_path("/api/y#z"), "/api/y");
        assert_eq!(url_path("http://h"), "/");
    }

    #[test]
    fn a_client_span_is_otlp_json_the_server_decodes() {
        let context = TraceParent {
            trace_id: [1; 16],
            parent_id: [2; 8],
            flags: 1,
        };
        let body = client_span_export(&context, "GET", "/api/x", 1_000.5, 1_002.0, Some(503));
        let span = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "01010101010101010101010101010101");
        assert_eq!(span["spanId"], "0202020202020202");
        assert_eq!(span["startTimeUnixNano"], "1000500000");
        assert_eq!(span["status"]["code"], 2);
        let ok = client_span_export(&context, "GET", "/", 0.0, 1.0, Some(200));
        assert!(ok["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
            .get("status")
            .is_none());
    }
}
