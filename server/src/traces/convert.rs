//! Conversions: OTLP spans ⇄ the store's records ⇄ `meridian_shared::traces` wire types.

use std::collections::BTreeMap;

use meridian_shared::traces::{
    to_hex, SpanEvent, SpanLink, SpanStatus, TraceAttribute, TraceSpan, TraceSummary, TraceTree,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span,
};

use super::store::{value_text, SpanRecord, StoreError};

/// The service of spans whose resource names none (as the OpenTelemetry SDKs default).
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// A string attribute.
pub fn string_attribute(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn service_of(resource: Option<&Resource>) -> String {
    resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(|kv| kv.value.as_ref())
        .map(value_text)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| UNKNOWN_SERVICE.to_owned())
}

/// Every span of an export request with its resource's service name.
pub fn flatten(request: ExportTraceServiceRequest) -> Vec<(String, Span)> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let service = service_of(resource_spans.resource.as_ref());
        for scope in resource_spans.scope_spans {
            out.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
        }
    }
    out
}

/// Records grouped back into OTLP, one resource per service.
pub fn to_resource_spans(records: &[SpanRecord]) -> Result<Vec<ResourceSpans>, StoreError> {
    let mut by_service: BTreeMap<&str, Vec<Span>> = BTreeMap::new();
    for r in records {
        by_service.entry(&r.service).or_default().push(r.to_otlp()?);
    }
    Ok(by_service
        .into_iter()
        .map(|(service, spans)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_attribute("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect())
}

fn attributes(list: &[KeyValue]) -> Vec<TraceAttribute> {
    list.iter()
        .map(|kv| TraceAttribute {
            key: kv.key.clone(),
            value: kv.value.as_ref().map(value_text).unwrap_or_default(),
        })
        .collect()
}

fn kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Unspecified => "unspecified",
        SpanKind::Internal => "internal",
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
    }
}

fn micros(ns: u64) -> i64 {
    (ns / 1_000) as i64
}

/// A stored span as the page shows it (before assembly).
pub fn to_trace_span(r: &SpanRecord) -> Result<TraceSpan, StoreError> {
    let span = r.to_otlp()?;
    let status = match span.status.as_ref().map(|s| s.code) {
        Some(c) if c == StatusCode::Error as i32 => SpanStatus::Error,
        Some(c) if c == StatusCode::Ok as i32 => SpanStatus::Ok,
        _ => SpanStatus::Unset,
    };
    Ok(TraceSpan {
        span_id: to_hex(&r.span_id),
        parent_span_id: if r.has_parent() {
            to_hex(&r.parent_span_id)
        } else {
            String::new()
        },
        service: r.service.clone(),
        name: span.name,
        kind: kind_name(span.kind).to_owned(),
        start_us: micros(r.start_ns),
        duration_us: micros(r.end_ns) - micros(r.start_ns),
        skew_us: 0,
        depth: 0,
        status,
        status_message: span.status.map(|s| s.message).unwrap_or_default(),
        orphan: false,
        critical: false,
        attributes: attributes(&span.attributes),
        events: span
            .events
            .iter()
            .map(|e| SpanEvent {
                time_us: micros(e.time_unix_nano),
                name: e.name.clone(),
                attributes: attributes(&e.attributes),
            })
            .collect(),
        links: span
            .links
            .iter()
            .map(|l| SpanLink {
                trace_id: to_hex(&l.trace_id),
                span_id: to_hex(&l.span_id),
            })
            .collect(),
    })
}

/// A search result line from an assembled trace.
pub fn summarise(tree: &TraceTree) -> TraceSummary {
    TraceSummary {
        trace_id: tree.trace_id.clone(),
        root_service: tree.root_service.clone(),
        root_name: tree.root_name.clone(),
        start_us: tree.start_us,
        duration_us: tree.duration_us,
        span_count: tree.spans.len() as u32,
        error_count: tree.error_count,
        services: tree.services.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_keep_their_service_through_a_round_trip() {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "GET".into(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: 5_000,
            end_time_unix_nano: 9_000,
            attributes: vec![string_attribute("k", "v")],
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string_attribute("service.name", "api")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span.clone()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let flat = flatten(request);
        assert_eq!(flat, vec![("api".to_owned(), span.clone())]);
        let record = SpanRecord::from_otlp("api", span.clone()).unwrap();
        let back = to_resource_spans(std::slice::from_ref(&record)).unwrap();
        assert_eq!(
            flatten(ExportTraceServiceRequest {
                resource_spans: back
            }),
            flat
        );
        let view = to_trace_span(&record).unwrap();
        assert_eq!(view.kind, "server");
        assert_eq!((view.start_us, view.duration_us), (5, 4));
        assert_eq!(view.attributes[0].value, "v");
        assert!(view.parent_span_id.is_empty());
    }

    #[test]
    fn a_resource_without_a_service_name_is_unknown_service() {
        assert_eq!(service_of(None), UNKNOWN_SERVICE);
    }
}
