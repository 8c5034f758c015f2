//! The W3C Trace Context `traceparent` header (version 00):
//! `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
//!
//! Invariants: a parsed context never has an all-zero trace id or parent id, and
//! formatting then parsing gives back the same context.

use std::fmt;

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

/// Why a `traceparent` value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceParentError {
    Length,
    Version,
    Format,
    ZeroId,
}

impl fmt::Display for TraceParentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TraceParentError::Length => "traceparent has the wrong length",
            TraceParentError::Version => "traceparent version ff is invalid",
            TraceParentError::Format => {
                "traceparent is not `vv-traceid-parentid-flags` in lowercase hex"
            }
            TraceParentError::ZeroId => "traceparent trace id and parent id must not be all zeros",
        })
    }
}

impl TraceParent {
    /// The `sampled` flag.
    pub const SAMPLED: u8 = 0x01;

    /// Parses a header value. Versions above 00 are accepted as the spec asks (their
    /// first four fields are read; anything after a further `-` is ignored).
    pub fn parse(value: &str) -> Result<TraceParent, TraceParentError> {
        let value = value.trim();
        if value.len() < 55 {
            return Err(TraceParentError::Length);
        }
        let bytes = value.as_bytes();
        let version = hex_byte(&bytes[0..2]).ok_or(TraceParentError::Format)?;
        if version == 0xff {
            return Err(TraceParentError::Version);
        }
        if version == 0 && value.len() != 55 {
            return Err(TraceParentError::Length);
        }
        if version != 0 && value.len() > 55 && bytes[55] != b'-' {
            return Err(TraceParentError::Format);
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(TraceParentError::Format);
        }
        let mut trace_id = [0u8; 16];
        for (i, out) in trace_id.iter_mut().enumerate() {
            *out = hex_byte(&bytes[3 + 2 * i..5 + 2 * i]).ok_or(TraceParentError::Format)?;
        }
        let mut parent_id = [0u8; 8];
        for (i, out) in parent_id.iter_mut().enumerate() {
            *out = hex_byte(&bytes[36 + 2 * i..38 + 2 * i]).ok_or(TraceParentError::Format)?;
        }
        let flags = hex_byte(&bytes[53..55]).ok_or(TraceParentError::Format)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return Err(TraceParentError::ZeroId);
        }
        Ok(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The same trace with a new span as parent: what a server forwards downstream.
    pub fn child(self, span_id: [u8; 8]) -> TraceParent {
        TraceParent {
            parent_id: span_id,
            ..self
        }
    }

    pub fn trace_id_hex(&self) -> String {
        to_hex(&self.trace_id)
    }

    pub fn parent_id_hex(&self) -> String {
        to_hex(&self.parent_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            to_hex(&self.trace_id),
            to_hex(&self.parent_id),
            self.flags
        )
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    Some(nibble(pair[0])? << 4 | nibble(pair[1])?)
}

fn to_hex(bytes: &[u8]) -> String {
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
    use proptest::prelude::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let tp = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id_hex(), "00f067aa0ba902b7");
        assert_eq!(tp.flags, TraceParent::SAMPLED);
        assert_eq!(tp.to_string(), EXAMPLE);
    }

    #[test]
    fn refuses_invalid_values() {
        let bad = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ];
        for value in bad {
            assert!(TraceParent::parse(value).is_err(), "accepted {value:?}");
        }
    }

    #[test]
    fn accepts_future_versions_with_extra_fields() {
        let tp = TraceParent::parse(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next",
        )
        .unwrap();
        assert_eq!(tp.flags, 1);
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(
            trace_id in any::<[u8; 16]>(),
            parent_id in any::<[u8; 8]>(),
            flags in any::<u8>(),
        ) {
            prop_assume!(trace_id != [0; 16] && parent_id != [0; 8]);
            let tp = TraceParent { trace_id, parent_id, flags };
            prop_assert_eq!(TraceParent::parse(&tp.to_string()), Ok(tp));
        }

        #[test]
        fn never_panics_on_any_input(value in ".{0,80}") {
            let _ = TraceParent::parse(&value);
        }
    }
}
