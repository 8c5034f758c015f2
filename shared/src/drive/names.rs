//! File and folder names: what is allowed, when two names clash, and the name of a
//! conflicted copy.
//!
//! Rules, chosen so that every synced tree can be written on Linux, macOS and Windows:
//! - A name is stored in Unicode NFC (macOS hands out NFD; the same name typed on two
//!   systems must be one name).
//! - Two names in one folder clash when their [`name_key`]s are equal: NFC, then
//!   lower-cased. macOS (APFS, HFS+) and Windows (NTFS) are case-insensitive by default, so
//!   `Report.txt` and `report.txt` cannot both exist there; the server refuses the second
//!   (`name_taken`), and a file created on two devices under one name keeps both as a
//!   conflicted copy.
//! - Refused: empty, `.` and `..`, longer than 255 bytes of UTF-8, `/`, `\`, control
//!   characters, Windows' `< > : " | ? *`, a trailing dot or space, and Windows' reserved
//!   device names (`CON`, `PRN`, `AUX`, `NUL`, `COM1`-`COM9`, `LPT1`-`LPT9`, with or without
//!   an extension), and the agent's own state folder `.meridian-sync`.

use unicode_normalization::UnicodeNormalization;

/// The longest name, in bytes of UTF-8 (the common limit of ext4, APFS and NTFS).
pub const MAX_NAME_BYTES: usize = 255;

/// The agent keeps its state in this folder at the top of a synced folder.
pub const AGENT_DIR: &str = ".meridian-sync";

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a name cannot be empty, `.` or `..`")]
    Empty,
    #[error("a name has at most {MAX_NAME_BYTES} bytes of UTF-8")]
    TooLong,
    #[error("a name cannot contain {0:?} (not allowed on every operating system)")]
    ForbiddenChar(char),
    #[error("a name cannot end with a dot or a space (Windows drops them)")]
    TrailingDotOrSpace,
    #[error("{0:?} is a reserved device name on Windows")]
    Reserved(String),
    #[error("{AGENT_DIR:?} is the sync agent's own folder")]
    AgentDir,
}

/// Checks a name and returns it in NFC.
pub fn validate_name(name: &str) -> Result<String, NameError> {
    let name: String = name.nfc().collect();
    if name.is_empty() || name == "." || name == ".." {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    if let Some(c) = name.chars().find(|&c| {
        c.is_control() || matches!(c, '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*')
    }) {
        return Err(NameError::ForbiddenChar(c));
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err(NameError::TrailingDotOrSpace);
    }
    let stem = name
        .split('.')
        .next()
        .unwrap_or("")
        .trim_end()
        .to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && matches!(stem.as_bytes()[3], b'1'..=b'9'));
    if reserved {
        return Err(NameError::Reserved(name));
    }
    if name_key(&name) == AGENT_DIR {
        return Err(NameError::AgentDir);
    }
    Ok(name)
}

/// The key under which names clash in one folder: NFC, lower-cased (see the module).
pub fn name_key(name: &str) -> String {
    let lower: String = name.nfc().flat_map(char::to_lowercase).collect();
    lower.nfc().collect()
}

/// `name` with ` (conflicted copy, DEVICE, YYYY-MM-DD HHMMSS)` before its extension
/// (so the copy still opens with the same program), kept within [`MAX_NAME_BYTES`].
pub fn conflict_name(name: &str, device: &str, at_ms: i64) -> String {
    let (stem, ext) = split_extension(name);
    let device: String = device
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' ' | '.'))
        .take(40)
        .collect();
    let device = device.trim().trim_end_matches('.');
    let device = if device.is_empty() {
        "unknown device"
    } else {
        device
    };
    let (date, time) = utc_date_time(at_ms);
    let suffix = format!(" (conflicted copy, {device}, {date} {time})");
    let mut stem = stem.to_owned();
    while stem.len() + suffix.len() + ext.len() > MAX_NAME_BYTES {
        stem.pop();
    }
    format!("{stem}{suffix}{ext}")
}

/// `name` with ` (n)` before its extension: the next try when a name is taken.
pub fn numbered_name(name: &str, n: u32) -> String {
    let (stem, ext) = split_extension(name);
    format!("{stem} ({n}){ext}")
}

/// Splits `report.final.txt` into `report.final` and `.txt`; a leading dot is no
/// extension (`.profile`).
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= 16 => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

/// `YYYY-MM-DD` and `HHMMSS` in UTC.
pub fn utc_date_time(at_ms: i64) -> (String, String) {
    let secs = at_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!(
            "{:02}{:02}{:02}",
            of_day / 3600,
            (of_day / 60) % 60,
            of_day % 60
        ),
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_what_some_system_cannot_hold() {
        for bad in [
            "", ".", "..", "a/b", "a\\b", "a:b", "what?", "x\u{0}", "dot.", "space ",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for reserved in ["CON", "con.txt", "Nul", "COM1", "lpt9.log", "aux .txt"] {
            assert!(
                matches!(validate_name(reserved), Err(NameError::Reserved(_))),
                "{reserved:?}"
            );
        }
        assert_eq!(validate_name(&"a".repeat(256)), Err(NameError::TooLong));
        assert_eq!(validate_name(".Meridian-Sync"), Err(NameError::AgentDir));
        for good in ["COM10", "console.txt", ".profile", "a b.tar.gz", "Ünïcödé"] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn nfc_and_case_clash() {
        let nfd = "Cafe\u{301}.txt";
        let nfc = "Caf\u{e9}.txt";
        assert_eq!(validate_name(nfd).unwrap(), nfc);
        assert_eq!(name_key(nfd), name_key("CAF\u{c9}.TXT"));
        assert_ne!(name_key("a.txt"), name_key("b.txt"));
    }

    #[test]
    fn conflict_names() {
        // 2026-12-07 03:04:05 UTC
        let at = 1_796_612_645_000;
        assert_eq!(
            conflict_name("report.txt", "laptop", at),
            "report (conflicted copy, laptop, 2026-12-07 030405).txt"
        );
        assert_eq!(
            conflict_name("Makefile", "a/b:c", at),
            "Makefile (conflicted copy, abc, 2026-12-07 030405)"
        );
        assert_eq!(numbered_name("a.txt", 2), "a (2).txt");
        let long = conflict_name(&format!("{}.txt", "x".repeat(250)), "d", at);
        assert!(long.len() <= MAX_NAME_BYTES && long.ends_with(").txt"));
        assert!(validate_name(&long).is_ok());
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date_time(0), ("1970-01-01".into(), "000000".into()));
        assert_eq!(
            utc_date_time(951_825_599_000),
            ("2000-02-29".into(), "115959".into())
        );
    }

    proptest! {
        #[test]
        fn a_valid_name_is_stable_and_its_conflict_copy_valid(name in "[a-zA-Z0-9 ._-]{1,40}", device in ".{0,50}") {
            if let Ok(valid) = validate_name(&name) {
                prop_assert_eq!(validate_name(&valid), Ok(valid.clone()));
                prop_assert_eq!(name_key(&valid), name_key(&valid.to_uppercase()));
                let copy = conflict_name(&valid, &device, 1_796_612_645_000);
                prop_assert!(validate_name(&copy).is_ok(), "{:?}", copy);
                prop_assert_ne!(name_key(&copy), name_key(&valid));
            }
        }
    }
}
