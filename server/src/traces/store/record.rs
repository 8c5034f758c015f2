//! One stored span: the fields the store indexes by, fixed-width, then the rest of the
//! OTLP span as protobuf (with the indexed fields cleared, so they are not stored twice).
//!
//! ```text
//! trace_id 16 | span_id 8 | parent_span_id 8 | start_ns u64 | end_ns u64 | flags u8 |
//! service_len u16 | service | body_len u32 | body (prost-encoded OTLP Span)
//! ```
//! All integers little-endian. `flags` bit 0: the span's status is an error.

use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};
use prost::Message;

use super::StoreError;

/// A span as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// All zeros for a root span.
    pub parent_span_id: [u8; 8],
    pub start_ns: u64,
    pub end_ns: u64,
    pub error: bool,
    /// `service.name` of the span's resource.
    pub service: String,
    /// The OTLP span with trace, span and parent ids and both times cleared.
    pub body: Vec<u8>,
}

/// Why an OTLP span cannot be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RejectedSpan {
    #[error("trace_id must be 16 bytes and not all zero")]
    TraceId,
    #[error("span_id must be 8 bytes and not all zero")]
    SpanId,
    #[error("parent_span_id must be empty or 8 bytes")]
    ParentSpanId,
}

const FIXED: usize = 16 + 8 + 8 + 8 + 8 + 1 + 2 + 4;

impl SpanRecord {
    /// Takes an OTLP span of `service`.
    pub fn from_otlp(service: &str, mut span: Span) -> Result<SpanRecord, RejectedSpan> {
        let trace_id: [u8; 16] = span
            .trace_id
            .as_slice()
            .try_into()
            .map_err(|_| RejectedSpan::TraceId)?;
        let span_id: [u8; 8] = span
            .span_id
            .as_slice()
            .try_into()
            .map_err(|_| RejectedSpan::SpanId)?;
        if trace_id == [0; 16] {
            return Err(RejectedSpan::TraceId);
        }
        if span_id == [0; 8] {
            return Err(RejectedSpan::SpanId);
        }
        let parent_span_id: [u8; 8] = match span.parent_span_id.len() {
            0 => [0; 8],
            8 => span.parent_span_id.as_slice().try_into().expect("8 bytes"),
            _ => return Err(RejectedSpan::ParentSpanId),
        };
        let start_ns = span.start_time_unix_nano;
        let end_ns = span.end_time_unix_nano.max(start_ns);
        let error = span
            .status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32);
        span.trace_id = Vec::new();
        span.span_id = Vec::new();
        span.parent_span_id = Vec::new();
        span.start_time_unix_nano = 0;
        span.end_time_unix_nano = 0;
        let mut service = service.to_owned();
        truncate_to_char_boundary(&mut service, u16::MAX as usize);
        Ok(SpanRecord {
            trace_id,
            span_id,
            parent_span_id,
            start_ns,
            end_ns,
            error,
            service,
            body: span.encode_to_vec(),
        })
    }

    /// The whole OTLP span back.
    pub fn to_otlp(&self) -> Result<Span, StoreError> {
        let mut span = Span::decode(self.body.as_slice())
            .map_err(|e| StoreError::Corrupt(format!("span body: {e}")))?;
        span.trace_id = self.trace_id.to_vec();
        span.span_id = self.span_id.to_vec();
        if self.parent_span_id != [0; 8] {
            span.parent_span_id = self.parent_span_id.to_vec();
        }
        span.start_time_unix_nano = self.start_ns;
        span.end_time_unix_nano = self.end_ns;
        Ok(span)
    }

    pub fn has_parent(&self) -> bool {
        self.parent_span_id != [0; 8]
    }

    pub fn encoded_len(&self) -> usize {
        FIXED + self.service.len() + self.body.len()
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.trace_id);
        out.extend_from_slice(&self.span_id);
        out.extend_from_slice(&self.parent_span_id);
        out.extend_from_slice(&self.start_ns.to_le_bytes());
        out.extend_from_slice(&self.end_ns.to_le_bytes());
        out.push(u8::from(self.error));
        out.extend_from_slice(&(self.service.len() as u16).to_le_bytes());
        out.extend_from_slice(self.service.as_bytes());
        out.extend_from_slice(&(self.body.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.body);
    }

    /// Decodes every record of `bytes` (records back to back).
    pub fn decode_all(mut bytes: &[u8]) -> Result<Vec<SpanRecord>, StoreError> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let (record, rest) = SpanRecord::decode_one(bytes)?;
            out.push(record);
            bytes = rest;
        }
        Ok(out)
    }

    fn decode_one(bytes: &[u8]) -> Result<(SpanRecord, &[u8]), StoreError> {
        let corrupt = || StoreError::Corrupt("truncated span record".into());
        if bytes.len() < FIXED {
            return Err(corrupt());
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        let service_len = u16::from_le_bytes([bytes[49], bytes[50]]) as usize;
        let service_end = 51 + service_len;
        if bytes.len() < service_end + 4 {
            return Err(corrupt());
        }
        let body_len =
            u32::from_le_bytes(bytes[service_end..service_end + 4].try_into().expect("4")) as usize;
        let body_start = service_end + 4;
        if bytes.len() < body_start + body_len {
            return Err(corrupt());
        }
        let record = SpanRecord {
            trace_id: bytes[0..16].try_into().expect("16"),
            span_id: bytes[16..24].try_into().expect("8"),
            parent_span_id: bytes[24..32].try_into().expect("8"),
            start_ns: u64_at(32),
            end_ns: u64_at(40),
            error: bytes[48] & 1 == 1,
            service: String::from_utf8(bytes[51..service_end].to_vec())
                .map_err(|_| StoreError::Corrupt("service name is not UTF-8".into()))?,
            body: bytes[body_start..body_start + body_len].to_vec(),
        };
        Ok((record, &bytes[body_start + body_len..]))
    }
}

fn truncate_to_char_boundary(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::Status;

    pub(crate) fn otlp_span(trace: u8, span: u8, parent: Option<u8>) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![span; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: "GET /x".into(),
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 5_000,
            status: Some(Status {
                message: "boom".into(),
                code: StatusCode::Error as i32,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_record_round_trips_the_whole_span() {
        let span = otlp_span(7, 3, Some(2));
        let record = SpanRecord::from_otlp("api", span.clone()).unwrap();
        assert!(record.error && record.has_parent());
        let mut bytes = Vec::new();
        record.encode(&mut bytes);
        record.encode(&mut bytes);
        assert_eq!(bytes.len(), 2 * record.encoded_len());
        let back = SpanRecord::decode_all(&bytes).unwrap();
        assert_eq!(back, vec![record.clone(), record.clone()]);
        assert_eq!(back[0].to_otlp().unwrap(), span);
    }

    #[test]
    fn bad_ids_are_rejected_and_truncation_detected() {
        let mut span = otlp_span(7, 3, None);
        span.trace_id = vec![0; 16];
        assert_eq!(
            SpanRecord::from_otlp("a", span).unwrap_err(),
            RejectedSpan::TraceId
        );
        let mut span = otlp_span(7, 3, None);
        span.span_id = vec![1; 4];
        assert_eq!(
            SpanRecord::from_otlp("a", span).unwrap_err(),
            RejectedSpan::SpanId
        );
        let mut span = otlp_span(7, 3, None);
        span.parent_span_id = vec![1; 3];
        assert_eq!(
            SpanRecord::from_otlp("a", span).unwrap_err(),
            RejectedSpan::ParentSpanId
        );
        let record = SpanRecord::from_otlp("a", otlp_span(1, 1, None)).unwrap();
        let mut bytes = Vec::new();
        record.encode(&mut bytes);
        assert!(SpanRecord::decode_all(&bytes[..bytes.len() - 1]).is_err());
    }
}
