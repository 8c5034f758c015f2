//! Ingest: OTLP/HTTP at `POST /v1/traces` and Zipkin v2 JSON at `POST /api/v2/spans`.
//!
//! A body is read up to [`MAX_INGEST_BYTES`] (413 past it), decompressed (gzip or
//! deflate) up to the same size, decoded, and handed to the store; the answer waits
//! until the store says the spans are durable. Spans with malformed ids are refused one
//! by one and reported as OTLP's partial success; a body that does not decode is 400.

use std::io::Read;

use futures_util::StreamExt;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use meridian_shared::api::ApiErrorBody;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode as OtlpStatus, Span, Status};
use prost::Message;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::convert::{flatten, string_attribute, UNKNOWN_SERVICE};
use super::store::IngestOutcome;
use super::MAX_INGEST_BYTES;
use crate::error::ApiError;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(otlp_traces))
        .routes(routes!(zipkin_spans))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// How much of an oversized body is read (and dropped) before answering 413.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is larger than {MAX_INGEST_BYTES} bytes"),
    )
}

/// The request body, decompressed, at most [`MAX_INGEST_BYTES`] either way.
pub async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return Err(too_large());
    }
    // Read up to the limit; past it, read on (and discard) up to DRAIN_LIMIT so that
    // the client, still sending, gets to read the 413 instead of a broken pipe.
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    let mut stream = body.into_data_stream();
    while let Some(frame) = stream.next().await {
        let frame = frame.map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
        seen += frame.len();
        if seen > DRAIN_LIMIT {
            return Err(too_large());
        }
        if seen <= MAX_INGEST_BYTES {
            bytes.extend_from_slice(&frame);
        }
    }
    if seen > MAX_INGEST_BYTES {
        return Err(too_large());
    }
    let encoding = headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let limit = MAX_INGEST_BYTES as u64 + 1;
    let mut out = Vec::new();
    let result = match encoding.as_str() {
        "" | "identity" => return Ok(bytes),
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(&bytes[..])
            .take(limit)
            .read_to_end(&mut out),
        "deflate" => {
            // HTTP's deflate is zlib-wrapped; some clients send raw deflate.
            let zlib = flate2::read::ZlibDecoder::new(&bytes[..])
                .take(limit)
                .read_to_end(&mut out);
            if zlib.is_err() {
                out.clear();
                flate2::read::DeflateDecoder::new(&bytes[..])
                    .take(limit)
                    .read_to_end(&mut out)
            } else {
                zlib
            }
        }
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!("Content-Encoding {other:?} is not supported: use gzip or deflate"),
            ))
        }
    };
    result.map_err(|e| ApiError::bad_request("invalid_body", format!("cannot decompress: {e}")))?;
    if out.len() > MAX_INGEST_BYTES {
        return Err(too_large());
    }
    Ok(out)
}

/// Decodes an OTLP export request in either encoding.
pub fn decode_otlp(encoding: Encoding, body: &[u8]) -> Result<ExportTraceServiceRequest, ApiError> {
    match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body).map_err(|e| {
            ApiError::bad_request("invalid_otlp", format!("not an OTLP protobuf export: {e}"))
        }),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request("invalid_otlp", format!("not an OTLP JSON export: {e}"))
        }),
    }
}

fn partial_success(outcome: &IngestOutcome) -> Option<ExportTracePartialSuccess> {
    (outcome.rejected > 0).then(|| ExportTracePartialSuccess {
        rejected_spans: outcome.rejected as i64,
        error_message: outcome
            .first_rejection
            .map(|why| why.to_string())
            .unwrap_or_default(),
    })
}

/// OTLP/HTTP trace export (protobuf or JSON; gzip or deflate).
#[utoipa::path(
    post,
    path = "/v1/traces",
    tag = "tracing",
    request_body(
        description = "An OTLP ExportTraceServiceRequest",
        content((Vec<u8> = "application/x-protobuf"), (String = "application/json"))
    ),
    responses(
        (status = 200, description = "Stored durably: `{}`, or `partialSuccess` naming the spans refused (same encoding as the request)"),
        (status = 400, description = "`invalid_otlp`, `invalid_body`", body = ApiErrorBody),
        (status = 413, description = "`payload_too_large`: over 20 MiB, compressed or not", body = ApiErrorBody),
        (status = 415, description = "`unsupported_media_type`, `unsupported_encoding`", body = ApiErrorBody),
        (status = 429, description = "The store is behind; with `Retry-After`", body = ApiErrorBody),
        (status = 503, description = "Shutting down", body = ApiErrorBody),
    )
)]
async fn otlp_traces(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let encoding = match media_type(&headers).as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Content-Type {other:?}: use application/x-protobuf or application/json"),
            ))
        }
    };
    let body = read_body(&headers, body).await?;
    let request = decode_otlp(encoding, &body)?;
    let outcome = state.traces.store.ingest(flatten(request)).await?;
    let partial = partial_success(&outcome);
    Ok(match encoding {
        Encoding::Protobuf => (
            [(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            )],
            ExportTraceServiceResponse {
                partial_success: partial,
            }
            .encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => {
            let body = match partial {
                None => serde_json::json!({}),
                Some(p) => serde_json::json!({
                    "partialSuccess": {"rejectedSpans": p.rejected_spans, "errorMessage": p.error_message}
                }),
            };
            axum::Json(body).into_response()
        }
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ZipkinSpan {
    trace_id: String,
    id: String,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    duration: Option<u64>,
    #[serde(default)]
    local_endpoint: Option<ZipkinEndpoint>,
    #[serde(default)]
    remote_endpoint: Option<ZipkinEndpoint>,
    #[serde(default)]
    annotations: Vec<ZipkinAnnotation>,
    #[serde(default)]
    tags: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ZipkinEndpoint {
    #[serde(default)]
    service_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ZipkinAnnotation {
    timestamp: u64,
    value: String,
}

fn hex_bytes(text: &str, len: usize) -> Vec<u8> {
    // Zipkin allows 64-bit trace ids: left-pad to 128 bits. Anything else stays
    // malformed and the store refuses the span.
    let padded = if text.len() < len * 2 {
        format!("{text:0>width$}", width = len * 2)
    } else {
        text.to_owned()
    };
    hex::decode(padded).unwrap_or_default()
}

fn zipkin_to_otlp(z: ZipkinSpan) -> (String, Span) {
    let start = z.timestamp.unwrap_or(0).saturating_mul(1_000);
    let end = start + z.duration.unwrap_or(0).saturating_mul(1_000);
    let kind = match z.kind.as_deref() {
        Some("SERVER") => SpanKind::Server,
        Some("CLIENT") => SpanKind::Client,
        Some("PRODUCER") => SpanKind::Producer,
        Some("CONSUMER") => SpanKind::Consumer,
        _ => SpanKind::Internal,
    };
    let mut attributes: Vec<_> = z
        .tags
        .iter()
        .filter(|(k, _)| k.as_str() != "error")
        .map(|(k, v)| string_attribute(k, v.clone()))
        .collect();
    if let Some(peer) = z.remote_endpoint.and_then(|e| e.service_name) {
        attributes.push(string_attribute("peer.service", peer));
    }
    let status = z.tags.get("error").map(|message| Status {
        message: message.clone(),
        code: OtlpStatus::Error as i32,
    });
    let service = z
        .local_endpoint
        .and_then(|e| e.service_name)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| UNKNOWN_SERVICE.to_owned());
    let span = Span {
        trace_id: hex_bytes(&z.trace_id, 16),
        span_id: hex_bytes(&z.id, 8),
        parent_span_id: z.parent_id.map(|p| hex_bytes(&p, 8)).unwrap_or_default(),
        name: z.name.unwrap_or_default(),
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        events: z
            .annotations
            .into_iter()
            .map(|a| Event {
                time_unix_nano: a.timestamp.saturating_mul(1_000),
                name: a.value,
                ..Default::default()
            })
            .collect(),
        status,
        ..Default::default()
    };
    (service, span)
}

/// Zipkin v2 span upload (JSON list of spans; gzip or deflate).
#[utoipa::path(
    post,
    path = "/api/v2/spans",
    tag = "tracing",
    request_body(content = String, content_type = "application/json", description = "A JSON array of Zipkin v2 spans"),
    responses(
        (status = 202, description = "Stored durably (spans with malformed ids are dropped)"),
        (status = 400, description = "`invalid_zipkin`, `invalid_body`", body = ApiErrorBody),
        (status = 413, description = "`payload_too_large`", body = ApiErrorBody),
        (status = 415, description = "`unsupported_media_type`, `unsupported_encoding`", body = ApiErrorBody),
        (status = 429, description = "The store is behind; with `Retry-After`", body = ApiErrorBody),
        (status = 503, description = "Shutting down", body = ApiErrorBody),
    )
)]
async fn zipkin_spans(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let media = media_type(&headers);
    if !(media.is_empty() || media == "application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type {media:?}: use application/json"),
        ));
    }
    let body = read_body(&headers, body).await?;
    let spans: Vec<ZipkinSpan> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_zipkin",
            format!("not a list of Zipkin v2 spans: {e}"),
        )
    })?;
    state
        .traces
        .store
        .ingest(spans.into_iter().map(zipkin_to_otlp).collect())
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An OTLP JSON export as the specification's example writes it: hex ids, enums as
    /// integers, 64-bit integers as strings.
    const OTLP_JSON: &str = r#"{"resourceSpans":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"my.service"}}]},
        "scopeSpans":[{"scope":{"name":"my.library","version":"1.0.0"},"spans":[{
        "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
        "parentSpanId":"eee19b7ec3c1b173","name":"I'm a server span",
        "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
        "kind":2,"attributes":[{"key":"my.span.attr","value":{"stringValue":"some value"}},
        {"key":"n","value":{"intValue":"42"}}],
        "status":{"code":2,"message":"bad"}}]}]}]}"#;

    #[test]
    fn otlp_json_decodes_with_hex_ids_and_string_integers() {
        let request = decode_otlp(Encoding::Json, OTLP_JSON.as_bytes()).unwrap();
        let spans = flatten(request);
        let (service, span) = &spans[0];
        assert_eq!(service, "my.service");
        assert_eq!(
            hex::encode(&span.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(span.status.as_ref().unwrap().code, OtlpStatus::Error as i32);
    }

    #[test]
    fn otlp_protobuf_decodes_what_json_said() {
        let request = decode_otlp(Encoding::Json, OTLP_JSON.as_bytes()).unwrap();
        let bytes = request.encode_to_vec();
        let again = decode_otlp(Encoding::Protobuf, &bytes).unwrap();
        assert_eq!(again, request);
        assert!(decode_otlp(Encoding::Protobuf, b"\xff\xff\xff").is_err());
        assert!(decode_otlp(Encoding::Json, b"{\"resourceSpans\": 3}").is_err());
    }

    #[test]
    fn zipkin_spans_become_otlp() {
        let z: Vec<ZipkinSpan> = serde_json::from_str(
            r#"[{"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312","parentId":"0020000000000001",
            "name":"get /api","kind":"SERVER","timestamp":1472470996199000,"duration":207000,
            "localEndpoint":{"serviceName":"frontend"},"remoteEndpoint":{"serviceName":"browser"},
            "tags":{"http.path":"/api","error":"500"},"annotations":[{"timestamp":1472470996238000,"value":"ws"}]}]"#,
        )
        .unwrap();
        let (service, span) = zipkin_to_otlp(z.into_iter().next().unwrap());
        assert_eq!(service, "frontend");
        assert_eq!(
            hex::encode(&span.trace_id),
            "0000000000000000463ac35c9f6413ad"
        );
        assert_eq!(
            span.end_time_unix_nano - span.start_time_unix_nano,
            207_000_000
        );
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(span.status.unwrap().message, "500");
        assert_eq!(span.events[0].name, "ws");
        assert!(span.attributes.iter().any(|kv| kv.key == "peer.service"));
    }
}
