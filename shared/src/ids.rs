//! Meridian's IDs: the 64-bit layout, UUIDv7 (RFC 9562), and the API's wire types.
//!
//! Pure functions only: the server's generator encodes with them and the browser decodes
//! with them, so both always agree on what an ID means.
//!
//! # The 64-bit layout
//!
//! ```text
//!  63 62                                       22 21          10 9          0
//! ┌──┬───────────────────────────────────────────┬──────────────┬────────────┐
//! │0 │ milliseconds since 2026-01-01T00:00:00Z   │   node id    │  sequence  │
//! │1b│ 41 bits                                   │   12 bits    │  10 bits   │
//! └──┴───────────────────────────────────────────┴──────────────┴────────────┘
//! ```
//!
//! - **Sign bit 0**: an ID is a non-negative `i64`, so it fits PostgreSQL's `BIGINT`,
//!   SQLite's `INTEGER` and Java's `long` without a sign surprise.
//! - **41 bits of milliseconds** since our epoch [`EPOCH_UNIX_MS`] (2026-01-01): 2^41 ms
//!   is 69.7 years, until 2095-09-07. A recent epoch spends no range on the past.
//! - **12 bits of node id**: 4,096 nodes. Twitter's Snowflake splits the 22 low bits
//!   10/12 (1,024 workers, 4,096 IDs per ms each); we need at least 4,096 nodes, so the
//!   node field takes two bits from the sequence. Nodes lease their id (see the server's
//!   `ids::lease`), so ids are reused as nodes come and go and 4,096 bounds the nodes
//!   *alive at once*, not the nodes ever started (Baidu's uid-generator burns a worker
//!   id per start and needs far more bits for it).
//! - **10 bits of sequence**: 1,024 IDs per millisecond per node, 1.024 million IDs per
//!   second per node, and 4.2 billion per second for a full cluster. One node serving
//!   more than a million IDs a second would be better served by a second node id than
//!   by more sequence bits. When a millisecond's sequence is used up the generator waits
//!   for the next millisecond: it never wraps.
//!
//! Ordering: the time field is the most significant, so an ID minted in a later
//! millisecond is larger than any ID of an earlier millisecond, whatever the nodes
//! (property-tested below); within one node and one millisecond, by sequence.
//!
//! # UUIDv7
//!
//! Exactly RFC 9562 §5.7: 48-bit big-endian Unix milliseconds, the version nibble `7`,
//! 12 bits `rand_a`, the variant bits `10`, 62 bits `rand_b`. `rand_a` is used as a
//! monotonic counter (§6.2, method 1, "fixed bit-length dedicated counter"): seeded at
//! random with its top bit clear each millisecond and incremented within it, so the UUIDs
//! of one generator sort in the order they were issued. `rand_b` stays random.
//!
//! IDs cross JSON as strings: a snowflake as its decimal digits (a JavaScript number holds
//! only 53 bits), a UUID as its 36-character lowercase text.

use std::fmt;

use serde::{Deserialize, Serialize};

/// 2026-01-01T00:00:00Z in milliseconds since the Unix epoch.
pub const EPOCH_UNIX_MS: i64 = 1_767_225_600_000;
pub const TIME_BITS: u32 = 41;
pub const NODE_BITS: u32 = 12;
pub const SEQUENCE_BITS: u32 = 10;
pub const NODE_SHIFT: u32 = SEQUENCE_BITS;
pub const TIME_SHIFT: u32 = NODE_BITS + SEQUENCE_BITS;
/// The largest time field: 2^41 − 1 ms after the epoch (2095-09-07).
pub const MAX_MS_SINCE_EPOCH: u64 = (1 << TIME_BITS) - 1;
pub const MAX_NODE: u16 = (1 << NODE_BITS) - 1;
pub const MAX_SEQUENCE: u16 = (1 << SEQUENCE_BITS) - 1;
/// How many node ids exist (4,096).
pub const NODE_COUNT: u32 = 1 << NODE_BITS;
/// IDs one node can issue per millisecond (1,024).
pub const SEQUENCES_PER_MS: u32 = 1 << SEQUENCE_BITS;

/// UUIDv7's `rand_a`, used as the counter: 12 bits.
pub const UUID_COUNTER_BITS: u32 = 12;
pub const MAX_UUID_COUNTER: u16 = (1 << UUID_COUNTER_BITS) - 1;
/// UUIDv7's `rand_b`: 62 random bits.
pub const UUID_RANDOM_BITS: u32 = 62;
pub const UUID_RANDOM_MASK: u64 = (1 << UUID_RANDOM_BITS) - 1;
/// The largest 48-bit Unix millisecond timestamp a UUIDv7 holds.
pub const MAX_UUID_UNIX_MS: u64 = (1 << 48) - 1;

/// The most an API request may ask for at once.
pub const MAX_IDS_PER_REQUEST: u32 = 10_000;

/// The fields of a 64-bit ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnowflakeParts {
    /// The time field: milliseconds since [`EPOCH_UNIX_MS`].
    pub ms_since_epoch: u64,
    /// The same instant in milliseconds since the Unix epoch.
    pub unix_ms: i64,
    pub node: u16,
    pub sequence: u16,
}

/// Why values do not fit the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// The time is before 2026-01-01 (snowflake) or before 1970 (UUIDv7).
    TimeBeforeEpoch,
    /// The time is past the last millisecond the layout can hold.
    TimeOutOfRange,
    NodeOutOfRange,
    SequenceOutOfRange,
    CounterOutOfRange,
    /// A snowflake never has its top bit set.
    SignBitSet,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayoutError::TimeBeforeEpoch => "the time is before the layout's epoch",
            LayoutError::TimeOutOfRange => "the time is past the layout's range",
            LayoutError::NodeOutOfRange => "the node id is larger than 4095",
            LayoutError::SequenceOutOfRange => "the sequence is larger than 1023",
            LayoutError::CounterOutOfRange => "the UUIDv7 counter is larger than 4095",
            LayoutError::SignBitSet => "a snowflake ID never has its top bit set",
        })
    }
}

impl std::error::Error for LayoutError {}

/// Packs the fields without checking them: for the generator's hot path, which only ever
/// holds values in range. Out-of-range values corrupt neighbouring fields.
#[inline]
pub const fn pack_snowflake(ms_since_epoch: u64, node: u16, sequence: u16) -> u64 {
    (ms_since_epoch << TIME_SHIFT) | ((node as u64) << NODE_SHIFT) | sequence as u64
}

/// Packs the fields into an ID, checking each against its width.
pub fn encode_snowflake(ms_since_epoch: u64, node: u16, sequence: u16) -> Result<u64, LayoutError> {
    if ms_since_epoch > MAX_MS_SINCE_EPOCH {
        return Err(LayoutError::TimeOutOfRange);
    }
    if node > MAX_NODE {
        return Err(LayoutError::NodeOutOfRange);
    }
    if sequence > MAX_SEQUENCE {
        return Err(LayoutError::SequenceOutOfRange);
    }
    Ok(pack_snowflake(ms_since_epoch, node, sequence))
}

/// Splits an ID into its fields.
pub fn decode_snowflake(id: u64) -> Result<SnowflakeParts, LayoutError> {
    if id >> 63 != 0 {
        return Err(LayoutError::SignBitSet);
    }
    let ms_since_epoch = id >> TIME_SHIFT;
    Ok(SnowflakeParts {
        ms_since_epoch,
        unix_ms: EPOCH_UNIX_MS + ms_since_epoch as i64,
        node: ((id >> NODE_SHIFT) & MAX_NODE as u64) as u16,
        sequence: (id & MAX_SEQUENCE as u64) as u16,
    })
}

/// The time field for a Unix millisecond timestamp.
pub fn ms_since_epoch(unix_ms: i64) -> Result<u64, LayoutError> {
    if unix_ms < EPOCH_UNIX_MS {
        return Err(LayoutError::TimeBeforeEpoch);
    }
    let ms = (unix_ms - EPOCH_UNIX_MS) as u64;
    if ms > MAX_MS_SINCE_EPOCH {
        return Err(LayoutError::TimeOutOfRange);
    }
    Ok(ms)
}

/// The smallest ID any node can mint at or after `unix_ms`: `WHERE id >= this` selects
/// what was created since then.
pub fn first_snowflake_at(unix_ms: i64) -> Result<u64, LayoutError> {
    Ok(pack_snowflake(ms_since_epoch(unix_ms)?, 0, 0))
}

/// The fields of a UUIDv7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UuidV7Parts {
    /// `unix_ts_ms`: 48 bits.
    pub unix_ms: u64,
    /// `rand_a` (12 bits), which Meridian uses as the monotonic counter.
    pub counter: u16,
    /// `rand_b`: 62 random bits.
    pub random: u64,
    /// Always 7.
    pub version: u8,
    /// Always `0b10`.
    pub variant: u8,
}

/// Builds a UUIDv7 (RFC 9562 §5.7). `random` keeps only its low 62 bits.
pub fn encode_uuid_v7(unix_ms: u64, counter: u16, random: u64) -> Result<u128, LayoutError> {
    if unix_ms > MAX_UUID_UNIX_MS {
        return Err(LayoutError::TimeOutOfRange);
    }
    if counter > MAX_UUID_COUNTER {
        return Err(LayoutError::CounterOutOfRange);
    }
    Ok(((unix_ms as u128) << 80)
        | (0x7u128 << 76)
        | ((counter as u128) << 64)
        | (0b10u128 << 62)
        | (random & UUID_RANDOM_MASK) as u128)
}

/// Splits a UUIDv7 into its fields; any other version or variant is refused.
pub fn decode_uuid_v7(uuid: u128) -> Result<UuidV7Parts, IdParseError> {
    let version = ((uuid >> 76) & 0xf) as u8;
    let variant = ((uuid >> 62) & 0b11) as u8;
    if version != 7 {
        return Err(IdParseError::NotUuidV7 { version });
    }
    if variant != 0b10 {
        return Err(IdParseError::UuidVariant);
    }
    Ok(UuidV7Parts {
        unix_ms: (uuid >> 80) as u64,
        counter: ((uuid >> 64) & MAX_UUID_COUNTER as u128) as u16,
        random: (uuid as u64) & UUID_RANDOM_MASK,
        version,
        variant,
    })
}

/// The 36-character lowercase hyphenated form: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn format_uuid(uuid: u128) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(36);
    for i in 0..32 {
        if matches!(i, 8 | 12 | 16 | 20) {
            text.push('-');
        }
        let nibble = (uuid >> (124 - 4 * i)) & 0xf;
        text.push(HEX[nibble as usize] as char);
    }
    text
}

/// Parses the hyphenated form (either case) or 32 bare hex digits.
pub fn parse_uuid(text: &str) -> Result<u128, IdParseError> {
    let bytes = text.as_bytes();
    let hex_digits: Vec<u8> = match bytes.len() {
        36 => {
            if [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
                return Err(IdParseError::Malformed);
            }
            bytes.iter().copied().filter(|&b| b != b'-').collect()
        }
        32 => bytes.to_vec(),
        _ => return Err(IdParseError::Malformed),
    };
    if hex_digits.len() != 32 {
        return Err(IdParseError::Malformed);
    }
    let mut value = 0u128;
    for b in hex_digits {
        let digit = (b as char).to_digit(16).ok_or(IdParseError::Malformed)?;
        value = (value << 4) | digit as u128;
    }
    Ok(value)
}

/// Why a text is not an ID Meridian can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdParseError {
    /// Neither decimal digits nor UUID text.
    Malformed,
    /// Decimal digits, but larger than a non-negative `i64`.
    SnowflakeOutOfRange,
    /// A UUID of another version.
    NotUuidV7 { version: u8 },
    /// A UUID whose variant bits are not `10`.
    UuidVariant,
}

impl fmt::Display for IdParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdParseError::Malformed => f.write_str(
                "an ID is a snowflake in decimal digits or a UUIDv7 as \
                 xxxxxxxx-xxxx-7xxx-xxxx-xxxxxxxxxxxx",
            ),
            IdParseError::SnowflakeOutOfRange => {
                f.write_str("a snowflake ID is at most 9223372036854775807")
            }
            IdParseError::NotUuidV7 { version } => {
                write!(f, "this is a version {version} UUID, not a UUIDv7")
            }
            IdParseError::UuidVariant => {
                f.write_str("this UUID's variant bits are not 10 (RFC 9562)")
            }
        }
    }
}

impl std::error::Error for IdParseError {}

/// An ID read from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParsedId {
    Snowflake(u64),
    UuidV7(u128),
}

/// Reads an ID as the API writes it: decimal digits (a snowflake) or UUID text (a UUIDv7).
pub fn parse_id(text: &str) -> Result<ParsedId, IdParseError> {
    if !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u64>() {
            Ok(id) if id <= i64::MAX as u64 => Ok(ParsedId::Snowflake(id)),
            _ => Err(IdParseError::SnowflakeOutOfRange),
        };
    }
    let uuid = parse_uuid(text)?;
    decode_uuid_v7(uuid)?;
    Ok(ParsedId::UuidV7(uuid))
}

/// A Unix millisecond timestamp in RFC 3339, UTC, with milliseconds:
/// `2026-01-01T00:00:00.000Z`. (Howard Hinnant's `civil_from_days`; proleptic Gregorian.)
pub fn format_rfc3339_ms(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

/// Days since 1970-01-01 to (year, month 1–12, day 1–31).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------------------

/// Which kind of ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum IdFormat {
    /// Meridian's 64-bit layout, as decimal digits.
    #[default]
    Snowflake,
    /// RFC 9562 UUIDv7, as 36-character text.
    Uuidv7,
}

impl IdFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            IdFormat::Snowflake => "snowflake",
            IdFormat::Uuidv7 => "uuidv7",
        }
    }
}

/// `POST /api/ids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdsRequest {
    /// How many IDs, 1 to 10,000.
    pub count: u32,
    /// `snowflake` (the default) or `uuidv7`.
    #[serde(default)]
    pub format: IdFormat,
}

/// The answer to `POST /api/ids`: the IDs in the order issued (ascending).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdsResponse {
    pub ids: Vec<String>,
}

/// One field of an ID's bits, for showing them coloured by field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdField {
    /// `sign`, `time`, `node`, `sequence`; or `unix_ts_ms`, `ver`, `counter`, `var`,
    /// `rand_b` for a UUIDv7.
    pub name: String,
    /// The field's first bit, counted from the most significant bit (0).
    pub start: u8,
    /// The field's width in bits.
    pub width: u8,
    /// The field's value in decimal (text: `rand_b` exceeds a JavaScript number).
    pub value: String,
}

/// `GET /api/ids/{id}`: what an ID says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdParts {
    pub kind: IdFormat,
    /// The ID in its canonical text.
    pub id: String,
    /// When it was minted, RFC 3339 in UTC with milliseconds.
    pub time: String,
    pub unix_ms: i64,
    /// Snowflake only: the node id that minted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u16>,
    /// Snowflake only: its sequence number within the node's millisecond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u16>,
    /// UUIDv7 only: the monotonic counter in `rand_a`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<u16>,
    /// UUIDv7 only: the version (7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u8>,
    /// UUIDv7 only: the variant bits (2, that is `0b10`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<u8>,
    /// All the bits, most significant first (64 or 128 characters of `0`/`1`).
    pub bits: String,
    /// The fields in bit order, covering `bits` exactly.
    pub fields: Vec<IdField>,
}

fn field(name: &str, start: u8, width: u8, value: impl ToString) -> IdField {
    IdField {
        name: name.to_owned(),
        start,
        width,
        value: value.to_string(),
    }
}

impl IdParts {
    /// Describes a snowflake.
    pub fn of_snowflake(id: u64) -> Result<IdParts, LayoutError> {
        let parts = decode_snowflake(id)?;
        Ok(IdParts {
            kind: IdFormat::Snowflake,
            id: id.to_string(),
            time: format_rfc3339_ms(parts.unix_ms),
            unix_ms: parts.unix_ms,
            node: Some(parts.node),
            sequence: Some(parts.sequence),
            counter: None,
            version: None,
            variant: None,
            bits: format!("{id:064b}"),
            fields: vec![
                field("sign", 0, 1, 0),
                field("time", 1, TIME_BITS as u8, parts.ms_since_epoch),
                field("node", 42, NODE_BITS as u8, parts.node),
                field("sequence", 54, SEQUENCE_BITS as u8, parts.sequence),
            ],
        })
    }

    /// Describes a UUIDv7.
    pub fn of_uuid_v7(uuid: u128) -> Result<IdParts, IdParseError> {
        let parts = decode_uuid_v7(uuid)?;
        let unix_ms = parts.unix_ms as i64;
        Ok(IdParts {
            kind: IdFormat::Uuidv7,
            id: format_uuid(uuid),
            time: format_rfc3339_ms(unix_ms),
            unix_ms,
            node: None,
            sequence: None,
            counter: Some(parts.counter),
            version: Some(parts.version),
            variant: Some(parts.variant),
            bits: format!("{uuid:0128b}"),
            fields: vec![
                field("unix_ts_ms", 0, 48, parts.unix_ms),
                field("ver", 48, 4, parts.version),
                field("counter", 52, UUID_COUNTER_BITS as u8, parts.counter),
                field("var", 64, 2, parts.variant),
                field("rand_b", 66, UUID_RANDOM_BITS as u8, parts.random),
            ],
        })
    }

    /// Parses and describes an ID in either format.
    pub fn parse(text: &str) -> Result<IdParts, IdParseError> {
        match parse_id(text)? {
            ParsedId::Snowflake(id) => {
                IdParts::of_snowflake(id).map_err(|_| IdParseError::SnowflakeOutOfRange)
            }
            ParsedId::UuidV7(uuid) => IdParts::of_uuid_v7(uuid),
        }
    }
}

/// One node id's lease, as the live view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseInfo {
    pub node_id: u16,
    /// The instance that holds (or last held) it.
    pub holder: String,
    /// Incremented on every grant; a renewal must present the current one.
    pub fencing_token: i64,
    pub granted_at_ms: i64,
    pub renewed_at_ms: i64,
    pub expires_at_ms: i64,
    /// No ID of this node id has a time above this (Unix ms); the next holder starts
    /// above it.
    pub high_water_ms: i64,
    /// Whether the lease had not expired at the server's `now_ms`.
    pub live: bool,
    /// Whether the answering instance holds it.
    pub mine: bool,
}

/// The ID generator's counters on one instance, since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdMetrics {
    pub snowflakes_issued: u64,
    pub uuids_issued: u64,
    /// Refused: no lease held.
    pub refused_no_lease: u64,
    /// Refused: the lease's local deadline passed (renewals failing, or a pause).
    pub refused_lease_expired: u64,
    /// Refused: the clock went back by more than the generator waits out.
    pub refused_clock_backwards: u64,
    /// Refused: the clock is past the reserved high-water mark (it jumped forward).
    pub refused_high_water: u64,
    /// Waits for a small clock regression to pass.
    pub waits_clock_backwards: u64,
    /// Waits for the next millisecond because its sequence was used up.
    pub waits_sequence_exhausted: u64,
    pub lease_acquisitions: u64,
    pub lease_renewals: u64,
    pub lease_renewal_failures: u64,
    /// Renewals that found another holder's fencing token: the lease was lost.
    pub lease_losses: u64,
}

/// `GET /api/ids/leases`: every node id's lease and this instance's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdLeases {
    /// The answering server's time (Unix ms).
    pub now_ms: i64,
    /// This instance's holder name in the lease table.
    pub holder: String,
    /// The node id this instance holds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u16>,
    /// Whether this instance can issue snowflakes right now.
    pub issuing: bool,
    pub lease_ttl_ms: u64,
    pub leases: Vec<LeaseInfo>,
    pub metrics: IdMetrics,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_epoch_is_2026() {
        assert_eq!(format_rfc3339_ms(EPOCH_UNIX_MS), "2026-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_ms(EPOCH_UNIX_MS + MAX_MS_SINCE_EPOCH as i64),
            "2095-09-07T15:47:35.551Z"
        );
        assert_eq!(
            format_rfc3339_ms(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn the_fields_sit_where_the_doc_says() {
        let id = encode_snowflake(1, 2, 3).unwrap();
        assert_eq!(id, (1 << 22) | (2 << 10) | 3);
        let max = encode_snowflake(MAX_MS_SINCE_EPOCH, MAX_NODE, MAX_SEQUENCE).unwrap();
        assert_eq!(max, i64::MAX as u64);
        assert_eq!(
            encode_snowflake(0, 4096, 0),
            Err(LayoutError::NodeOutOfRange)
        );
        assert_eq!(
            encode_snowflake(0, 0, 1024),
            Err(LayoutError::SequenceOutOfRange)
        );
        assert_eq!(
            encode_snowflake(MAX_MS_SINCE_EPOCH + 1, 0, 0),
            Err(LayoutError::TimeOutOfRange)
        );
        assert_eq!(decode_snowflake(1 << 63), Err(LayoutError::SignBitSet));
        assert_eq!(
            ms_since_epoch(EPOCH_UNIX_MS - 1),
            Err(LayoutError::TimeBeforeEpoch)
        );
    }

    #[test]
    fn rfc_9562_appendix_a6_example() {
        // RFC 9562 A.6: 017F22E2-79B0-7CC3-98C4-DC0C0C07398F, Tue 2022-02-22 19:22:22 UTC.
        let uuid = parse_uuid("017F22E2-79B0-7CC3-98C4-DC0C0C07398F").unwrap();
        let parts = decode_uuid_v7(uuid).unwrap();
        assert_eq!(parts.unix_ms, 0x017F_22E2_79B0);
        assert_eq!(parts.version, 7);
        assert_eq!(parts.variant, 0b10);
        assert_eq!(parts.counter, 0xCC3);
        assert_eq!(parts.random, 0x18C4_DC0C_0C07_398F);
        assert_eq!(
            encode_uuid_v7(parts.unix_ms, parts.counter, parts.random).unwrap(),
            uuid
        );
        assert_eq!(format_uuid(uuid), "017f22e2-79b0-7cc3-98c4-dc0c0c07398f");
        let described = IdParts::parse("017f22e2-79b0-7cc3-98c4-dc0c0c07398f").unwrap();
        assert_eq!(described.time, "2022-02-22T19:22:22.000Z");
        assert_eq!(described.counter, Some(0xCC3));
    }

    #[test]
    fn other_uuids_and_garbage_are_refused() {
        // A version 4 UUID.
        assert_eq!(
            parse_id("f47ac10b-58cc-4372-a567-0e02b2c3d479"),
            Err(IdParseError::NotUuidV7 { version: 4 })
        );
        // Version 7 with the variant bits 11.
        assert_eq!(
            parse_id("017f22e2-79b0-7cc3-d8c4-dc0c0c07398f"),
            Err(IdParseError::UuidVariant)
        );
        for bad in ["", "-1", "12a", "017f22e2_79b0_7cc3_98c4_dc0c0c07398f", "é"] {
            assert!(parse_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_id("9223372036854775808"),
            Err(IdParseError::SnowflakeOutOfRange)
        );
        assert_eq!(
            parse_id("9223372036854775807"),
            Ok(ParsedId::Snowflake(i64::MAX as u64))
        );
    }

    #[test]
    fn described_fields_cover_the_bits() {
        let id = encode_snowflake(123_456, 4000, 1000).unwrap();
        let parts = IdParts::parse(&id.to_string()).unwrap();
        assert_eq!(parts.node, Some(4000));
        assert_eq!(parts.sequence, Some(1000));
        assert_eq!(parts.unix_ms, EPOCH_UNIX_MS + 123_456);
        for described in [
            parts,
            IdParts::of_uuid_v7(encode_uuid_v7(5, 6, 7).unwrap()).unwrap(),
        ] {
            let mut next = 0u8;
            for f in &described.fields {
                assert_eq!(f.start, next, "{described:?}");
                let bits = &described.bits[f.start as usize..(f.start + f.width) as usize];
                assert_eq!(u128::from_str_radix(bits, 2).unwrap().to_string(), f.value);
                next += f.width;
            }
            assert_eq!(next as usize, described.bits.len());
        }
    }

    #[test]
    fn wire_names() {
        let request: IdsRequest = serde_json::from_str(r#"{"count": 3}"#).unwrap();
        assert_eq!(request.format, IdFormat::Snowflake);
        let request: IdsRequest =
            serde_json::from_str(r#"{"count": 3, "format": "uuidv7"}"#).unwrap();
        assert_eq!(request.format, IdFormat::Uuidv7);
        let parts = IdParts::of_snowflake(42).unwrap();
        let json = serde_json::to_value(&parts).unwrap();
        assert_eq!(json["kind"], "snowflake");
        assert!(json.get("counter").is_none());
    }

    proptest! {
        #[test]
        fn snowflake_round_trips(ms in 0..=MAX_MS_SINCE_EPOCH, node in 0..=MAX_NODE, seq in 0..=MAX_SEQUENCE) {
            let id = encode_snowflake(ms, node, seq).unwrap();
            prop_assert!(id <= i64::MAX as u64);
            let parts = decode_snowflake(id).unwrap();
            prop_assert_eq!(parts.ms_since_epoch, ms);
            prop_assert_eq!(parts.unix_ms, EPOCH_UNIX_MS + ms as i64);
            prop_assert_eq!(parts.node, node);
            prop_assert_eq!(parts.sequence, seq);
            prop_assert_eq!(parse_id(&id.to_string()).unwrap(), ParsedId::Snowflake(id));
        }

        #[test]
        fn later_millisecond_means_larger_id(
            ms in 0..MAX_MS_SINCE_EPOCH, later in 1..1_000_000u64,
            a in (0..=MAX_NODE, 0..=MAX_SEQUENCE), b in (0..=MAX_NODE, 0..=MAX_SEQUENCE),
        ) {
            let later_ms = (ms + later).min(MAX_MS_SINCE_EPOCH);
            prop_assume!(later_ms > ms);
            let earlier = encode_snowflake(ms, a.0, a.1).unwrap();
            let after = encode_snowflake(later_ms, b.0, b.1).unwrap();
            prop_assert!(after > earlier);
            prop_assert!(first_snowflake_at(EPOCH_UNIX_MS + later_ms as i64).unwrap() > earlier);
        }

        #[test]
        fn uuid_v7_round_trips(ms in 0..=MAX_UUID_UNIX_MS, counter in 0..=MAX_UUID_COUNTER, random: u64) {
            let uuid = encode_uuid_v7(ms, counter, random).unwrap();
            let text = format_uuid(uuid);
            prop_assert_eq!(text.len(), 36);
            prop_assert_eq!(&text[14..15], "7");
            prop_assert!("89ab".contains(&text[19..20]));
            prop_assert_eq!(parse_uuid(&text).unwrap(), uuid);
            prop_assert_eq!(parse_uuid(&text.to_uppercase()).unwrap(), uuid);
            prop_assert_eq!(parse_uuid(&text.replace('-', "")).unwrap(), uuid);
            let parts = decode_uuid_v7(uuid).unwrap();
            prop_assert_eq!((parts.unix_ms, parts.counter, parts.random), (ms, counter, random & UUID_RANDOM_MASK));
            prop_assert_eq!((parts.version, parts.variant), (7, 0b10));
        }

        #[test]
        fn uuid_v7_sorts_by_time_then_counter(
            ms in 0..MAX_UUID_UNIX_MS, c1 in 0..MAX_UUID_COUNTER, r1: u64, r2: u64, step in 0..2u64,
        ) {
            let a = encode_uuid_v7(ms, c1, r1).unwrap();
            let b = if step == 0 { encode_uuid_v7(ms, c1 + 1, r2) } else { encode_uuid_v7(ms + 1, 0, r2) }.unwrap();
            prop_assert!(b > a);
            prop_assert!(format_uuid(b) > format_uuid(a));
        }

        #[test]
        fn rfc3339_matches_the_day_count(days in -1_000_000i64..1_000_000, ms in 0..86_400_000i64) {
            let text = format_rfc3339_ms(days * 86_400_000 + ms);
            let (year, month, day) = civil_from_days(days);
            prop_assert!((1..=12).contains(&month) && (1..=31).contains(&day));
            // Round trip through days_from_civil.
            let y = if month <= 2 { year - 1 } else { year };
            let era = y.div_euclid(400);
            let yoe = y.rem_euclid(400);
            let mp = (month as i64 + 9) % 12;
            let doy = (153 * mp + 2) / 5 + day as i64 - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            prop_assert_eq!(era * 146_097 + doe - 719_468, days);
            prop_assert!(text.ends_with('Z'));
        }
    }
}
