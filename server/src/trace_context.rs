//! W3C Trace Context on every request: an incoming `traceparent` is continued (same trace,
//! a new span for this server), a request without one starts a new trace. Handlers read
//! the [`RequestTrace`] extension; the request and the response both carry the server's
//! `traceparent`, and request logs name the trace id.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use meridian_shared::traceparent::TraceParent;

pub const TRACEPARENT: &str = "traceparent";

/// This request's place in a trace.
#[derive(Debug, Clone, Copy)]
pub struct RequestTrace {
    /// The trace, with this server's span as the parent id.
    pub context: TraceParent,
    /// The caller's span, when the request came with a valid `traceparent`.
    pub caller_span: Option<[u8; 8]>,
}

fn nonzero<const N: usize>() -> [u8; N] {
    loop {
        let bytes: [u8; N] = rand::random();
        if bytes != [0; N] {
            return bytes;
        }
    }
}

pub async fn trace_context_middleware(mut request: Request, next: Next) -> Response {
    let incoming = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| TraceParent::parse(v).ok());
    let span_id = nonzero::<8>();
    let context = match incoming {
        Some(parent) => parent.child(span_id),
        None => TraceParent {
            trace_id: nonzero::<16>(),
            parent_id: span_id,
            flags: TraceParent::SAMPLED,
        },
    };
    let header = HeaderValue::from_str(&context.to_string()).expect("hex is a valid header");
    request.headers_mut().insert(TRACEPARENT, header.clone());
    request.extensions_mut().insert(RequestTrace {
        context,
        caller_span: incoming.map(|p| p.parent_id),
    });
    let mut response = next.run(request).await;
    response.headers_mut().insert(TRACEPARENT, header);
    response
}
