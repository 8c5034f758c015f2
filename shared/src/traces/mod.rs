//! Distributed tracing: the wire types of `/api/tracing/...` and the pure assembly of a
//! trace (tree, orphans, duplicate spans, clock-skew adjustment, critical path) that the
//! server runs before answering and the page could run again on its own data.
//!
//! Times cross JSON as microseconds since the Unix epoch (a JavaScript number holds
//! 2^53 µs, 285 years); trace and span ids as lowercase hex (32 and 16 digits).

pub mod assemble;

use serde::{Deserialize, Serialize};

pub use assemble::{assemble_trace, AssembleOptions};

/// One key/value attribute, its value rendered as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TraceAttribute {
    #[serde(rename = "key")]
    pub key: String,
    #[serde(rename = "value")]
    pub value: String,
}

/// A timestamped event inside a span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpanEvent {
    #[serde(rename = "time_us")]
    pub time_us: i64,
    #[serde(rename = "name")]
    pub name: String,
    #[serde(rename = "attributes", default)]
    pub attributes: Vec<TraceAttribute>,
}

/// A link from a span to another span (follows-from, batch members).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpanLink {
    #[serde(rename = "trace_id")]
    pub trace_id: String,
    #[serde(rename = "span_id")]
    pub span_id: String,
}

/// Whether a span succeeded, as OTLP says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SpanStatus {
    #[default]
    #[serde(rename = "unset")]
    Unset,
    #[serde(rename = "ok")]
    Ok,
    #[serde(rename = "error")]
    Error,
}

/// One span of an assembled trace, in depth-first order. Empty and default fields are
/// left out of the JSON (a 100,000-span trace is mostly such fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TraceSpan {
    #[serde(rename = "span_id")]
    pub span_id: String,
    /// Empty for a root span.
    #[serde(
        rename = "parent_span_id",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub parent_span_id: String,
    #[serde(rename = "service")]
    pub service: String,
    #[serde(rename = "name")]
    pub name: String,
    /// `internal`, `server`, `client`, `producer`, `consumer` or `unspecified`.
    #[serde(rename = "kind")]
    pub kind: String,
    /// Start after skew adjustment.
    #[serde(rename = "start_us")]
    pub start_us: i64,
    #[serde(rename = "duration_us")]
    pub duration_us: i64,
    /// How far the start was moved to fit its parent (0 when the clocks agreed).
    #[serde(rename = "skew_us", default, skip_serializing_if = "is_zero")]
    pub skew_us: i64,
    #[serde(rename = "depth")]
    pub depth: u32,
    #[serde(rename = "status")]
    pub status: SpanStatus,
    #[serde(
        rename = "status_message",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub status_message: String,
    /// Its parent is named but was never received.
    #[serde(rename = "orphan", default, skip_serializing_if = "is_false")]
    pub orphan: bool,
    /// On the trace's critical path.
    #[serde(rename = "critical", default, skip_serializing_if = "is_false")]
    pub critical: bool,
    #[serde(rename = "attributes", default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<TraceAttribute>,
    #[serde(rename = "events", default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<SpanEvent>,
    #[serde(rename = "links", default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<SpanLink>,
}

/// `GET /api/tracing/traces/{trace_id}`: the whole trace, assembled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TraceTree {
    #[serde(rename = "trace_id")]
    pub trace_id: String,
    #[serde(rename = "root_service")]
    pub root_service: String,
    #[serde(rename = "root_name")]
    pub root_name: String,
    #[serde(rename = "start_us")]
    pub start_us: i64,
    #[serde(rename = "duration_us")]
    pub duration_us: i64,
    #[serde(rename = "services")]
    pub services: Vec<String>,
    #[serde(rename = "error_count")]
    pub error_count: u32,
    #[serde(rename = "orphan_count")]
    pub orphan_count: u32,
    /// Spans received more than once (retried exports), shown once.
    #[serde(rename = "duplicate_count")]
    pub duplicate_count: u32,
    /// Depth-first, children by start time.
    #[serde(rename = "spans")]
    pub spans: Vec<TraceSpan>,
}

/// One trace in search results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TraceSummary {
    #[serde(rename = "trace_id")]
    pub trace_id: String,
    #[serde(rename = "root_service")]
    pub root_service: String,
    #[serde(rename = "root_name")]
    pub root_name: String,
    #[serde(rename = "start_us")]
    pub start_us: i64,
    #[serde(rename = "duration_us")]
    pub duration_us: i64,
    #[serde(rename = "span_count")]
    pub span_count: u32,
    #[serde(rename = "error_count")]
    pub error_count: u32,
    #[serde(rename = "services")]
    pub services: Vec<String>,
}

/// `GET /api/tracing/search`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TraceSearchResponse {
    #[serde(rename = "traces")]
    pub traces: Vec<TraceSummary>,
}

/// A service and the operations (span names) seen from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TracedService {
    #[serde(rename = "name")]
    pub name: String,
    #[serde(rename = "operations")]
    pub operations: Vec<String>,
}

/// `GET /api/tracing/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TracedServicesResponse {
    #[serde(rename = "services")]
    pub services: Vec<TracedService>,
}

/// One edge of the service map: `parent` called `child` this many times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceDependency {
    #[serde(rename = "parent")]
    pub parent: String,
    #[serde(rename = "child")]
    pub child: String,
    #[serde(rename = "call_count")]
    pub call_count: u64,
    #[serde(rename = "error_count")]
    pub error_count: u64,
}

/// `GET /api/tracing/dependencies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceDependenciesResponse {
    #[serde(rename = "dependencies")]
    pub dependencies: Vec<ServiceDependency>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Parses a 32-digit hex trace id (any case); `None` for anything else or all zeros.
pub fn parse_trace_id(text: &str) -> Option<[u8; 16]> {
    let bytes = parse_hex::<16>(text)?;
    (bytes != [0; 16]).then_some(bytes)
}

/// Parses a 16-digit hex span id; `None` for anything else or all zeros.
pub fn parse_span_id(text: &str) -> Option<[u8; 8]> {
    let bytes = parse_hex::<8>(text)?;
    (bytes != [0; 8]).then_some(bytes)
}

fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in text.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Lowercase hex of any id.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex() {
        let id = [0xab; 16];
        assert_eq!(parse_trace_id(&to_hex(&id)), Some(id));
        assert_eq!(parse_trace_id(&to_hex(&id).to_uppercase()), Some(id));
        assert_eq!(parse_trace_id(&"0".repeat(32)), None);
        assert_eq!(parse_trace_id("abc"), None);
        assert_eq!(parse_span_id("zz00000000000000"), None);
        assert_eq!(
            parse_span_id("00000000000000ff"),
            Some([0, 0, 0, 0, 0, 0, 0, 0xff])
        );
    }
}
