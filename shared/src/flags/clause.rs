//! Clauses as the evaluator runs them: a [`CompiledClause`] reads one attribute and
//! applies its [`Test`] (a value set, a string operator, a number or semantic version
//! comparison, or segment membership), with the rules for missing attributes, arrays,
//! negation and case-insensitive comparison that the module documentation of
//! [`crate::flags`] gives.

use std::cmp::Ordering;

use super::compiled::CompiledSegment;
use super::context::{Attribute, ContextView};
use super::print::PrintMap;
use super::semver::SemverRef;
use super::{Semver, SMALL_SET};
use serde_json::Value;

#[derive(Debug, Clone)]
pub(super) struct CompiledClause {
    pub(super) attribute: Attribute,
    pub(super) test: Test,
    /// `not_equals`, `not_in`, `not_in_segment`: true when the attribute is present and
    /// the positive test fails.
    pub(super) negate: bool,
}

#[derive(Debug, Clone)]
pub(super) enum Test {
    /// Indices into the flag's segments; the context is in any of them.
    Segment(Box<[usize]>),
    OneOf {
        set: ValueSet,
        case_insensitive: bool,
    },
    Text {
        op: TextOp,
        needles: Box<[Box<str>]>,
        case_insensitive: bool,
    },
    Number {
        comparison: Comparison,
        value: f64,
    },
    Semver {
        comparison: Comparison,
        value: Semver,
    },
}

#[derive(Debug, Clone, Copy)]
pub(super) enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Comparison {
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
}

impl Comparison {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Comparison::Eq => ordering == Ordering::Equal,
            Comparison::Lt => ordering == Ordering::Less,
            Comparison::Lte => ordering != Ordering::Greater,
            Comparison::Gt => ordering == Ordering::Greater,
            Comparison::Gte => ordering != Ordering::Less,
        }
    }
}

/// The scalars of an `equals`/`in` list, by type.
#[derive(Debug, Clone)]
pub(super) struct ValueSet {
    pub(super) strings: StringSet,
    pub(super) numbers: Box<[f64]>,
    /// Whether `false`, `true` are in the list.
    pub(super) booleans: [bool; 2],
}

#[derive(Debug, Clone)]
pub(super) enum StringSet {
    Small(Box<[Box<str>]>),
    Hashed(PrintMap),
}

impl StringSet {
    pub(super) fn new(mut strings: Vec<Box<str>>) -> StringSet {
        if strings.len() <= SMALL_SET {
            StringSet::Small(strings.into_boxed_slice())
        } else {
            strings.sort_unstable();
            strings.dedup();
            StringSet::Hashed(PrintMap::new(strings))
        }
    }

    #[inline(always)]
    pub(super) fn contains(&self, text: &str) -> bool {
        match self {
            StringSet::Small(strings) => strings.iter().any(|s| **s == *text),
            StringSet::Hashed(strings) => strings.contains(text),
        }
    }
}

/// An attribute's value, seen as one scalar.
#[derive(Clone, Copy)]
enum Scalar<'c> {
    Str(&'c str),
    Num(f64),
    Bool(bool),
    /// An object, a nested array or `null`: matches nothing.
    Other,
}

#[inline]
fn scalar(value: &Value) -> Scalar<'_> {
    match value {
        Value::String(text) => Scalar::Str(text),
        Value::Number(number) => number.as_f64().map_or(Scalar::Other, Scalar::Num),
        Value::Bool(flag) => Scalar::Bool(*flag),
        _ => Scalar::Other,
    }
}

impl CompiledClause {
    #[inline(always)]
    pub(super) fn matches(
        &self,
        view: &mut ContextView<'_, '_>,
        segments: &[CompiledSegment],
    ) -> bool {
        if let Test::Segment(indices) = &self.test {
            let inside = indices.iter().any(|&i| {
                segments
                    .get(i)
                    .is_some_and(|segment| segment.contains(view))
            });
            return inside != self.negate;
        }
        let positive = match self.attribute {
            Attribute::TargetingKey => match view.targeting_key() {
                Some(key) => self.test.holds(Scalar::Str(key)),
                None => return false,
            },
            Attribute::Named(slot) => match view.get(slot) {
                None | Some(Value::Null) => return false,
                Some(Value::Array(items)) => items.iter().any(|item| self.test.holds(scalar(item))),
                Some(value) => self.test.holds(scalar(value)),
            },
        };
        positive != self.negate
    }
}

impl Test {
    #[inline(always)]
    fn holds(&self, value: Scalar<'_>) -> bool {
        match self {
            Test::Segment(_) => false,
            Test::OneOf {
                set,
                case_insensitive,
            } => match value {
                Scalar::Str(text) if *case_insensitive => {
                    with_lowercase(text, |text| set.strings.contains(text))
                }
                Scalar::Str(text) => set.strings.contains(text),
                Scalar::Num(number) => set.numbers.contains(&number),
                Scalar::Bool(flag) => set.booleans[usize::from(flag)],
                Scalar::Other => false,
            },
            Test::Text {
                op,
                needles,
                case_insensitive,
            } => match value {
                Scalar::Str(text) if *case_insensitive => op.any_lowercase(text, needles),
                Scalar::Str(text) => op.any(text, needles),
                _ => false,
            },
            Test::Number {
                comparison,
                value: bound,
            } => {
                let number = match value {
                    Scalar::Num(number) => number,
                    Scalar::Str(text) => match text.parse::<f64>() {
                        Ok(number) if number.is_finite() => number,
                        _ => return false,
                    },
                    _ => return false,
                };
                number
                    .partial_cmp(bound)
                    .is_some_and(|ordering| comparison.holds(ordering))
            }
            Test::Semver {
                comparison,
                value: bound,
            } => match value {
                Scalar::Str(text) => SemverRef::parse(text).is_some_and(|(version, _)| {
                    comparison.holds(version.precedence(&bound.borrowed()))
                }),
                _ => false,
            },
        }
    }
}

impl TextOp {
    #[inline]
    fn any(self, text: &str, needles: &[Box<str>]) -> bool {
        needles.iter().any(|needle| match self {
            TextOp::Contains => text.contains(&**needle),
            TextOp::StartsWith => text.starts_with(&**needle),
            TextOp::EndsWith => text.ends_with(&**needle),
        })
    }

    /// `any` of `text` lowercased, with `needles` already lowercase. An ASCII text's
    /// prefix or suffix is compared in place, ignoring ASCII case (an ASCII text
    /// lowercases to ASCII, so a non-ASCII needle fails either way).
    #[inline]
    fn any_lowercase(self, text: &str, needles: &[Box<str>]) -> bool {
        let bytes = text.as_bytes();
        match self {
            TextOp::StartsWith if text.is_ascii() => needles.iter().any(|needle| {
                bytes
                    .get(..needle.len())
                    .is_some_and(|head| ascii_lowercase_eq(head, needle.as_bytes()))
            }),
            TextOp::EndsWith if text.is_ascii() => needles.iter().any(|needle| {
                bytes
                    .len()
                    .checked_sub(needle.len())
                    .and_then(|start| bytes.get(start..))
                    .is_some_and(|tail| ascii_lowercase_eq(tail, needle.as_bytes()))
            }),
            _ => with_lowercase(text, |text| self.any(text, needles)),
        }
    }
}

/// Whether the ASCII bytes `text`, lowercased, equal `lower` (lowercase already; a
/// non-ASCII byte in it equals nothing): `text.eq_ignore_ascii_case(lower)`, 8 bytes at
/// a time.
#[inline]
fn ascii_lowercase_eq(text: &[u8], lower: &[u8]) -> bool {
    if text.len() != lower.len() {
        return false;
    }
    let mut text_words = text.chunks_exact(8);
    let mut lower_words = lower.chunks_exact(8);
    for (a, b) in (&mut text_words).zip(&mut lower_words) {
        if ascii_lowercase_word(word_of(a)) != word_of(b) {
            return false;
        }
    }
    match (text.last_chunk::<8>(), lower.last_chunk::<8>()) {
        // The last 8 bytes, overlapping the words compared above.
        (Some(a), Some(b)) => {
            ascii_lowercase_word(u64::from_le_bytes(*a)) == u64::from_le_bytes(*b)
        }
        _ => text
            .iter()
            .zip(lower)
            .all(|(x, y)| x.to_ascii_lowercase() == *y),
    }
}

/// Eight bytes, little-endian (a chunk of exactly 8).
#[inline(always)]
fn word_of(chunk: &[u8]) -> u64 {
    chunk
        .first_chunk::<8>()
        .map_or(0, |bytes| u64::from_le_bytes(*bytes))
}

/// Eight ASCII bytes with `A`..=`Z` lowercased: a byte is upper case when adding
/// 0x80 - b'A' sets its top bit and adding 0x80 - b'Z' - 1 does not (ASCII bytes are below
/// 0x80, so no addition carries into the next byte); its 0x20 bit is then set.
#[inline(always)]
fn ascii_lowercase_word(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const TOP: u64 = 0x8080_8080_8080_8080;
    let at_least_a = word + ONES * u64::from(0x80 - b'A');
    let above_z = word + ONES * u64::from(0x80 - b'Z' - 1);
    let upper = at_least_a & !above_z & TOP;
    word | upper >> 2
}

/// Calls `f` with `text` lowercased: on the stack for ASCII up to 128 bytes, else in a
/// `String`.
#[inline]
fn with_lowercase<R>(text: &str, f: impl FnOnce(&str) -> R) -> R {
    if !text
        .bytes()
        .any(|b| b.is_ascii_uppercase() || !b.is_ascii())
    {
        return f(text);
    }
    if text.len() <= 128 && text.is_ascii() {
        let mut buffer = [0u8; 128];
        let lower = &mut buffer[..text.len()];
        lower.copy_from_slice(text.as_bytes());
        lower.make_ascii_lowercase();
        // ASCII stays valid UTF-8 when lowercased.
        if let Ok(lower) = std::str::from_utf8(lower) {
            return f(lower);
        }
    }
    f(&text.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::test_support::*;
    use crate::flags::{CompiledFlag, Reason, Segment, SegmentRule, Segments};
    use serde_json::json;

    #[test]
    fn every_operator() {
        let many: Vec<String> = (0..40).map(|i| format!("country-{i}")).collect();
        let cases: Vec<(Value, Value, bool)> = vec![
            (clause("a", "equals", json!(["x"])), json!("x"), true),
            (clause("a", "equals", json!(["x"])), json!("X"), false),
            (clause("a", "equals", json!([1])), json!(1.0), true),
            (clause("a", "equals", json!([1])), json!("1"), false),
            (clause("a", "equals", json!([true])), json!(true), true),
            (clause("a", "equals", json!([true])), json!(false), false),
            (clause("a", "equals", json!(["x"])), json!(["y", "x"]), true),
            (clause("a", "equals", json!(["x"])), json!({"x": 1}), false),
            (clause("a", "not_equals", json!(["x"])), json!("y"), true),
            (clause("a", "not_equals", json!(["x"])), json!("x"), false),
            (clause("a", "not_equals", json!([1])), json!(2), true),
            (
                clause("a", "not_equals", json!(["x"])),
                json!(["y", "x"]),
                false,
            ),
            (clause("a", "in", json!(["a", "b", "c"])), json!("b"), true),
            (clause("a", "in", json!(["a", "b", "c"])), json!("d"), false),
            (clause("a", "in", json!([1, 2, 3])), json!(3), true),
            (
                clause("a", "in", json!(["1", 2, false])),
                json!(false),
                true,
            ),
            (clause("a", "in", json!(many)), json!("country-17"), true),
            (clause("a", "in", json!(many)), json!("country-40"), false),
            (clause("a", "not_in", json!(["a", "b"])), json!("d"), true),
            (clause("a", "not_in", json!(["a", "b"])), json!("a"), false),
            (
                clause("a", "not_in", json!(many)),
                json!("country-3"),
                false,
            ),
            (
                clause("a", "contains", json!(["lo w"])),
                json!("hello world"),
                true,
            ),
            (
                clause("a", "contains", json!(["xyz", "ell"])),
                json!("hello"),
                true,
            ),
            (clause("a", "contains", json!(["2"])), json!(123), false),
            (
                clause("a", "starts_with", json!(["alice"])),
                json!("alice@x.dev"),
                true,
            ),
            (
                clause("a", "starts_with", json!(["bob"])),
                json!("alice@x.dev"),
                false,
            ),
            (
                clause("a", "ends_with", json!(["@a.com", "@b.com"])),
                json!("x@b.com"),
                true,
            ),
            (
                clause("a", "ends_with", json!(["@a.com"])),
                json!("x@a.co"),
                false,
            ),
            (clause("a", "lt", json!([10])), json!(5), true),
            (clause("a", "lt", json!([10])), json!(10), false),
            (clause("a", "lte", json!([10])), json!(10), true),
            (clause("a", "lte", json!([10])), json!(10.5), false),
            (clause("a", "gt", json!([10])), json!(11), true),
            (clause("a", "gt", json!([10])), json!(10), false),
            (clause("a", "gte", json!([10])), json!(10), true),
            (clause("a", "gte", json!([-1.5])), json!(-2), false),
            (clause("a", "lt", json!([10])), json!("7"), true),
            (clause("a", "lt", json!([10])), json!("seven"), false),
            (clause("a", "lt", json!([10])), json!("NaN"), false),
            (clause("a", "lt", json!([10])), json!(true), false),
            (
                clause("a", "semver_eq", json!(["1.2.3"])),
                json!("1.2.3+build.5"),
                true,
            ),
            (
                clause("a", "semver_eq", json!(["1.2.3"])),
                json!("1.2.3-rc.1"),
                false,
            ),
            (
                clause("a", "semver_lt", json!(["1.0.0"])),
                json!("1.0.0-alpha"),
                true,
            ),
            (
                clause("a", "semver_lt", json!(["2.0.0"])),
                json!("10.0.0"),
                false,
            ),
            (
                clause("a", "semver_lte", json!(["1.0.0-beta"])),
                json!("1.0.0-beta"),
                true,
            ),
            (
                clause("a", "semver_lte", json!(["1.0.0-beta"])),
                json!("1.0.0-beta.2"),
                false,
            ),
            (
                clause("a", "semver_gt", json!(["1.9.0"])),
                json!("1.10.0"),
                true,
            ),
            (
                clause("a", "semver_gt", json!(["1.0.0-alpha.beta"])),
                json!("1.0.0-alpha.1"),
                false,
            ),
            (
                clause("a", "semver_gte", json!(["1.0.0-rc.1"])),
                json!("1.0.0"),
                true,
            ),
            (
                clause("a", "semver_gte", json!(["1.0.0"])),
                json!("1.2"),
                false,
            ),
            (clause("a", "semver_gte", json!(["1.0.0"])), json!(2), false),
            (
                clause("targetingKey", "equals", json!(["k"])),
                json!("ignored"),
                true,
            ),
            (
                clause("targetingKey", "starts_with", json!(["x"])),
                json!("ignored"),
                false,
            ),
        ];
        for (clause, attribute, expected) in &cases {
            let ctx = json!({"targetingKey": "k", "a": attribute});
            assert_eq!(
                clause_matches(clause, &ctx),
                *expected,
                "{clause} with a = {attribute}"
            );
        }
    }

    #[test]
    fn ascii_lowercase_comparison_equals_the_byte_by_byte_one() {
        for byte in 0..0x80u8 {
            let word = u64::from_le_bytes([byte, b'Q', byte, b'a', byte, b'@', byte, b'Z']);
            let expected = u64::from_le_bytes(
                [byte, b'Q', byte, b'a', byte, b'@', byte, b'Z'].map(|b| b.to_ascii_lowercase()),
            );
            assert_eq!(ascii_lowercase_word(word), expected, "byte {byte:#x}");
        }
        let texts = [
            "",
            "A",
            "x@Meridian.DEV",
            "X@MERIDIAN.DEV-and-more",
            "[`@{~",
        ];
        let lowers = [
            "",
            "a",
            "x@meridian.dev",
            "x@meridian.dev-and-more",
            "[`@{~",
            "é",
        ];
        for text in texts {
            for lower in lowers {
                assert_eq!(
                    ascii_lowercase_eq(text.as_bytes(), lower.as_bytes()),
                    text.as_bytes().eq_ignore_ascii_case(lower.as_bytes()),
                    "{text:?} {lower:?}"
                );
            }
        }
    }

    #[test]
    fn case_insensitive_string_operators() {
        let ci = |operator: &str, values: Value| json!({"attribute": "a", "operator": operator, "values": values, "case_insensitive": true});
        let cases = [
            (ci("equals", json!(["Alice"])), json!("aLICE"), true),
            (ci("not_equals", json!(["Alice"])), json!("ALICE"), false),
            (ci("in", json!(["DE", "Fr"])), json!("fr"), true),
            (
                ci("ends_with", json!(["@Meridian.DEV"])),
                json!("X@MERIDIAN.dev"),
                true,
            ),
            (ci("contains", json!(["ÉTÉ"])), json!("un été chaud"), true),
            (
                ci("starts_with", json!(["straße"])),
                json!("STRASSE"),
                false,
            ),
            (
                ci("equals", json!(["x".repeat(200)])),
                json!("X".repeat(200)),
                true,
            ),
        ];
        for (clause, attribute, expected) in &cases {
            let ctx = json!({"a": attribute});
            assert_eq!(
                clause_matches(clause, &ctx),
                *expected,
                "{clause} with {attribute}"
            );
        }
    }

    #[test]
    fn a_missing_attribute_fails_every_clause() {
        let segments: Segments = [Segment {
            key: "s".into(),
            name: "S".into(),
            description: String::new(),
            included: vec![],
            excluded: vec![],
            rules: vec![SegmentRule {
                description: String::new(),
                clauses: vec![serde_json::from_value(clause("a", "equals", json!(["x"]))).unwrap()],
            }],
        }]
        .into_iter()
        .collect();
        let clauses = [
            clause("a", "equals", json!(["x"])),
            clause("a", "not_equals", json!(["x"])),
            clause("a", "in", json!(["x"])),
            clause("a", "not_in", json!(["x"])),
            clause("a", "contains", json!(["x"])),
            clause("a", "starts_with", json!(["x"])),
            clause("a", "ends_with", json!(["x"])),
            clause("a", "lt", json!([1])),
            clause("a", "lte", json!([1])),
            clause("a", "gt", json!([1])),
            clause("a", "gte", json!([1])),
            clause("a", "semver_eq", json!(["1.0.0"])),
            clause("a", "semver_lt", json!(["1.0.0"])),
            clause("a", "semver_lte", json!(["1.0.0"])),
            clause("a", "semver_gt", json!(["1.0.0"])),
            clause("a", "semver_gte", json!(["1.0.0"])),
            clause("targetingKey", "not_equals", json!(["x"])),
            json!({"operator": "in_segment", "values": ["s"]}),
        ];
        for clause in &clauses {
            let flag =
                CompiledFlag::compile(&config(rule_flag(json!([clause]))), &segments).unwrap();
            for ctx in [json!({}), json!({"a": null}), json!({"b": "x"})] {
                let answer = flag.evaluate(&context(ctx.clone()));
                assert_eq!(answer.reason, Reason::Default, "{clause} with {ctx}");
                assert_eq!(answer.variant, "off");
            }
        }
    }
}
