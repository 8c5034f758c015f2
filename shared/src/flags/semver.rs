//! Semantic versions, parsed strictly per semver.org 2.0.0 and compared by precedence,
//! for the `semver_*` operators. Parsing borrows ([`SemverRef`]), so evaluating a clause
//! allocates nothing.

use std::cmp::Ordering;
use std::fmt;

/// A semantic version, semver.org 2.0.0: `MAJOR.MINOR.PATCH[-PRE.RELEASE][+BUILD]`.
/// Numbers without leading zeros (each at most `u64::MAX`), identifiers of
/// `[0-9A-Za-z-]`, numeric pre-release identifiers without leading zeros.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Semver {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// Dot-separated identifiers; empty for a release.
    pub pre_release: String,
    /// Dot-separated identifiers; empty when absent. Precedence ignores it.
    pub build: String,
}

impl Semver {
    /// Parses strictly: `1.2`, `v1.2.3` and `1.2.3-01` are not versions.
    pub fn parse(text: &str) -> Option<Semver> {
        let (version, build) = SemverRef::parse(text)?;
        Some(Semver {
            major: version.major,
            minor: version.minor,
            patch: version.patch,
            pre_release: version.pre_release.to_owned(),
            build: build.to_owned(),
        })
    }

    /// Orders by precedence (semver.org §11): build metadata does not count, so two
    /// versions can be unequal and of equal precedence.
    pub fn precedence(&self, other: &Semver) -> Ordering {
        self.borrowed().precedence(&other.borrowed())
    }

    pub(super) fn borrowed(&self) -> SemverRef<'_> {
        SemverRef {
            major: self.major,
            minor: self.minor,
            patch: self.patch,
            pre_release: &self.pre_release,
        }
    }
}

impl fmt::Display for Semver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre_release.is_empty() {
            write!(f, "-{}", self.pre_release)?;
        }
        if !self.build.is_empty() {
            write!(f, "+{}", self.build)?;
        }
        Ok(())
    }
}

/// A version borrowed from its text: what evaluation parses attributes into.
#[derive(Debug, Clone, Copy)]
pub(super) struct SemverRef<'a> {
    major: u64,
    minor: u64,
    patch: u64,
    pre_release: &'a str,
}

impl<'a> SemverRef<'a> {
    /// The version and its build metadata.
    /// One pass over the bytes (evaluation parses attributes on the hot path).
    pub(super) fn parse(text: &'a str) -> Option<(SemverRef<'a>, &'a str)> {
        let bytes = text.as_bytes();
        if let Some([major, minor, patch]) = release(bytes) {
            let version = SemverRef {
                major,
                minor,
                patch,
                pre_release: "",
            };
            return Some((version, ""));
        }
        let mut at = 0;
        let major = version_number(bytes, &mut at)?;
        expect_byte(bytes, &mut at, b'.')?;
        let minor = version_number(bytes, &mut at)?;
        expect_byte(bytes, &mut at, b'.')?;
        let patch = version_number(bytes, &mut at)?;
        if at == bytes.len() {
            // A release: the usual attribute.
            let version = SemverRef {
                major,
                minor,
                patch,
                pre_release: "",
            };
            return Some((version, ""));
        }
        Self::parse_labels(text, at, major, minor, patch)
    }

    /// The pre-release and build labels after `MAJOR.MINOR.PATCH` (ending at `at`).
    #[inline(never)]
    fn parse_labels(
        text: &'a str,
        mut at: usize,
        major: u64,
        minor: u64,
        patch: u64,
    ) -> Option<(SemverRef<'a>, &'a str)> {
        let bytes = text.as_bytes();
        let mut pre_release = "";
        if bytes.get(at) == Some(&b'-') {
            let start = at + 1;
            let end = bytes[start..]
                .iter()
                .position(|&b| b == b'+')
                .map_or(bytes.len(), |offset| start + offset);
            pre_release = text.get(start..end)?;
            if !identifiers_valid(pre_release, true) {
                return None;
            }
            at = end;
        }
        let mut build = "";
        if bytes.get(at) == Some(&b'+') {
            build = text.get(at + 1..)?;
            if !identifiers_valid(build, false) {
                return None;
            }
            at = bytes.len();
        }
        if at != bytes.len() {
            return None;
        }
        let version = SemverRef {
            major,
            minor,
            patch,
            pre_release,
        };
        Some((version, build))
    }

    pub(super) fn precedence(&self, other: &SemverRef<'_>) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| pre_release_precedence(self.pre_release, other.pre_release))
    }
}

/// The numbers of a release, `MAJOR.MINOR.PATCH` of up to 18 digits each without
/// leading zeros (the usual attribute, in one loop); `None` for anything else, which
/// [`SemverRef::parse`] then parses in full.
#[inline(always)]
fn release(bytes: &[u8]) -> Option<[u64; 3]> {
    let mut numbers = [0u64; 3];
    let mut part = 0;
    let mut digits = 0;
    for &byte in bytes {
        if byte == b'.' {
            if digits == 0 || part == 2 {
                return None;
            }
            part += 1;
            digits = 0;
            continue;
        }
        let digit = byte.wrapping_sub(b'0');
        let number = numbers.get_mut(part)?;
        // No leading zero; 18 digits cannot overflow.
        if digit > 9 || (digits == 1 && *number == 0) || digits == 18 {
            return None;
        }
        *number = *number * 10 + u64::from(digit);
        digits += 1;
    }
    (part == 2 && digits != 0).then_some(numbers)
}

/// A MAJOR, MINOR or PATCH number at `at`: digits, no leading zero, at most `u64::MAX`.
#[inline(always)]
fn version_number(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let start = *at;
    let mut value: u64 = 0;
    while let Some(digit) = bytes.get(*at).and_then(|b| b.checked_sub(b'0')) {
        if digit > 9 {
            break;
        }
        // Up to 19 digits cannot overflow; past that, check.
        value = if *at - start < 19 {
            value * 10 + u64::from(digit)
        } else {
            value.checked_mul(10)?.checked_add(u64::from(digit))?
        };
        *at += 1;
    }
    match *at - start {
        0 => None,
        1 => Some(value),
        _ if bytes.get(start) == Some(&b'0') => None,
        _ => Some(value),
    }
}

#[inline(always)]
fn expect_byte(bytes: &[u8], at: &mut usize, expected: u8) -> Option<()> {
    if bytes.get(*at) == Some(&expected) {
        *at += 1;
        Some(())
    } else {
        None
    }
}

fn is_numeric(identifier: &str) -> bool {
    identifier.bytes().all(|b| b.is_ascii_digit())
}

/// Dot-separated, non-empty identifiers of `[0-9A-Za-z-]`; pre-release numeric ones
/// without leading zeros.
fn identifiers_valid(text: &str, pre_release: bool) -> bool {
    let bytes = text.as_bytes();
    let mut start = 0;
    loop {
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'.')
            .map_or(bytes.len(), |offset| start + offset);
        let identifier = &bytes[start..end];
        let valid = !identifier.is_empty()
            && identifier
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            && !(pre_release
                && identifier.len() > 1
                && identifier[0] == b'0'
                && identifier.iter().all(u8::is_ascii_digit));
        if !valid {
            return false;
        }
        if end == bytes.len() {
            return true;
        }
        start = end + 1;
    }
}

/// semver.org §11: a release outranks its pre-releases; identifiers compare left to
/// right, numeric ones numerically and below alphanumeric ones, which compare in ASCII
/// order; a longer list of equal identifiers ranks higher.
fn pre_release_precedence(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        (false, false) => {}
    }
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        let ordering = match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match (is_numeric(x), is_numeric(y)) {
                // No leading zeros: the longer number is the larger.
                (true, true) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                (false, false) => x.cmp(y),
            },
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn semver_precedence_follows_semver_org() {
        // semver.org §11's own example, in increasing order.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
            "2.1.0",
            "2.1.1",
            "10.0.0",
        ];
        let versions: Vec<Semver> = chain.iter().map(|t| Semver::parse(t).unwrap()).collect();
        for (i, a) in versions.iter().enumerate() {
            for (j, b) in versions.iter().enumerate() {
                assert_eq!(a.precedence(b), i.cmp(&j), "{a} vs {b}");
            }
        }
        let with_build = Semver::parse("1.0.0+20130313144700").unwrap();
        assert_eq!(with_build.precedence(&versions[7]), Ordering::Equal);
        assert_eq!(with_build.build, "20130313144700");
        assert_eq!(with_build.to_string(), "1.0.0+20130313144700");
        // Numeric identifiers beyond u64 still compare numerically.
        let huge = Semver::parse("1.0.0-18446744073709551616").unwrap();
        assert_eq!(
            huge.precedence(&Semver::parse("1.0.0-9").unwrap()),
            Ordering::Greater
        );
        assert_eq!(
            huge.precedence(&Semver::parse("1.0.0-a").unwrap()),
            Ordering::Less
        );
        for valid in [
            "0.0.0",
            "1.2.3-0",
            "1.2.3-0a",
            "1.2.3--",
            "1.2.3-x-y.z",
            "1.0.0+001",
            "1.0.0-a+b.c",
        ] {
            assert!(Semver::parse(valid).is_some(), "{valid}");
        }
        for invalid in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.02.3",
            "1.2.03",
            "1.2.3-01",
            "1.2.3-",
            "1.2.3+",
            "1.2.3-a..b",
            "1.2.3+a..b",
            "v1.2.3",
            "1.2.3-α",
            " 1.2.3",
            "1.2.3 ",
            "-1.2.3",
            "1.2.3-beta!",
            "1.2.3+a+b",
            "1.x",
            "1.2.-3",
            "18446744073709551616.0.0",
        ] {
            assert!(Semver::parse(invalid).is_none(), "{invalid:?}");
        }
    }

    proptest! {
        #[test]
        fn the_release_fast_path_agrees_with_the_full_parse(text in "[0-9.]{0,12}|(0|[1-9][0-9]{0,19})\\.[0-9]{1,3}\\.[0-9]{1,20}") {
            if let Some([major, minor, patch]) = release(text.as_bytes()) {
                let full = Semver::parse(&text);
                prop_assert!(full.is_some(), "{}", text);
                let full = full.unwrap();
                prop_assert_eq!((major, minor, patch), (full.major, full.minor, full.patch));
                prop_assert!(full.pre_release.is_empty() && full.build.is_empty());
            } else if let Some(full) = Semver::parse(&text) {
                // Only versions with more than 18 digits in a number take the long way.
                prop_assert!(text.split('.').any(|n| n.len() > 18), "{} {:?}", text, full);
            }
        }

        #[test]
        fn semver_precedence_is_a_total_order(a in "[0-2]\\.[0-2]\\.[0-2](-(alpha|beta|[0-9]|1[0-9])(\\.(rc|[0-9])){0,2})?", b in "[0-2]\\.[0-2]\\.[0-2](-(alpha|beta|[0-9]|1[0-9])(\\.(rc|[0-9])){0,2})?") {
            let (x, y) = (Semver::parse(&a).unwrap(), Semver::parse(&b).unwrap());
            prop_assert_eq!(x.precedence(&y), y.precedence(&x).reverse());
            prop_assert_eq!(x.precedence(&y) == Ordering::Equal, a == b);
        }
    }
}
