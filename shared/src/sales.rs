//! The flash sale's wire types (`/api/sales`, `/api/reservations`, `/api/orders`) and the
//! pure rules both the server and the page run: validation of a new sale and RFC 3339
//! parsing of its start.
//!
//! Statuses of a checkout: 200 `reserved` (a unit is held until `expires_at`), 202
//! `queued` (an honest position in this server's queue; the same request repeated with
//! its `Idempotency-Key` answers the current state), 410 `sold_out`, 409
//! `limit_reached`.

use serde::{Deserialize, Serialize};

use crate::ids::format_rfc3339_ms;

/// The largest stock of one sale.
pub const MAX_STOCK: i64 = 10_000_000;
/// The longest a reservation may be held unpaid.
pub const MAX_RESERVATION_TTL_S: i64 = 24 * 3600;
/// The most units one account may buy in one sale.
pub const MAX_PER_USER_LIMIT: i64 = 1_000;
/// The longest sale name, in characters.
pub const MAX_NAME_LEN: usize = 200;
/// The longest `Idempotency-Key`, in bytes (printable ASCII).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// `POST /api/sales`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateSale {
    pub name: String,
    pub product_id: String,
    /// Units on sale (1 to 10,000,000).
    pub stock: i64,
    /// When checkouts open, RFC 3339 (`2026-12-07T04:00:00Z`).
    pub starts_at: String,
    /// Units one buyer (an account, or a guest session) may hold or buy (1 to 1,000).
    pub per_user_limit: i64,
    /// Seconds an unpaid reservation holds its unit (1 to 86,400).
    pub reservation_ttl_s: i64,
}

/// A [`CreateSale`] that passed [`CreateSale::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSale {
    pub name: String,
    pub product_id: String,
    pub stock: i64,
    pub starts_at_ms: i64,
    pub per_user_limit: i64,
    pub reservation_ttl_ms: i64,
}

/// Why a new sale was refused (each is a 422 with [`SaleInputError::code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaleInputError {
    InvalidName,
    InvalidProduct,
    InvalidStock,
    InvalidStart,
    InvalidLimit,
    InvalidTtl,
}

impl SaleInputError {
    pub fn code(&self) -> &'static str {
        match self {
            SaleInputError::InvalidName => "invalid_name",
            SaleInputError::InvalidProduct => "invalid_product",
            SaleInputError::InvalidStock => "invalid_stock",
            SaleInputError::InvalidStart => "invalid_starts_at",
            SaleInputError::InvalidLimit => "invalid_per_user_limit",
            SaleInputError::InvalidTtl => "invalid_reservation_ttl",
        }
    }
}

impl std::fmt::Display for SaleInputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SaleInputError::InvalidName => {
                "a sale's name is 1 to 200 characters, none a control character"
            }
            SaleInputError::InvalidProduct => {
                "product_id is 1 to 64 letters, digits, `-`, `_` or `.`"
            }
            SaleInputError::InvalidStock => "stock is 1 to 10,000,000",
            SaleInputError::InvalidStart => {
                "starts_at is an RFC 3339 time with an offset, e.g. 2026-12-07T04:00:00Z"
            }
            SaleInputError::InvalidLimit => "per_user_limit is 1 to 1,000",
            SaleInputError::InvalidTtl => "reservation_ttl_s is 1 to 86,400",
        })
    }
}

impl std::error::Error for SaleInputError {}

impl CreateSale {
    pub fn validate(&self) -> Result<ValidSale, SaleInputError> {
        let name = self.name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_LEN
            || name.chars().any(char::is_control)
        {
            return Err(SaleInputError::InvalidName);
        }
        let product = self.product_id.trim();
        if product.is_empty()
            || product.len() > 64
            || !product
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(SaleInputError::InvalidProduct);
        }
        if !(1..=MAX_STOCK).contains(&self.stock) {
            return Err(SaleInputError::InvalidStock);
        }
        let starts_at_ms = parse_rfc3339_ms(&self.starts_at).ok_or(SaleInputError::InvalidStart)?;
        if !(1..=MAX_PER_USER_LIMIT).contains(&self.per_user_limit) {
            return Err(SaleInputError::InvalidLimit);
        }
        if !(1..=MAX_RESERVATION_TTL_S).contains(&self.reservation_ttl_s) {
            return Err(SaleInputError::InvalidTtl);
        }
        Ok(ValidSale {
            name: name.to_owned(),
            product_id: product.to_owned(),
            stock: self.stock,
            starts_at_ms,
            per_user_limit: self.per_user_limit,
            reservation_ttl_ms: self.reservation_ttl_s * 1000,
        })
    }
}

/// Where a sale stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SaleState {
    /// Before `starts_at`: checkouts are refused with 409 `not_started`.
    Scheduled,
    /// Open: units may be reserved (or queued for while all are reserved).
    Live,
    /// Every unit is sold: checkouts answer 410 `sold_out`.
    SoldOut,
}

/// The live figures of a sale (also the payload of its realtime topic's events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SaleFigures {
    pub stock: i64,
    pub sold: i64,
    /// Units held by unpaid reservations that have not expired yet.
    pub reserved: i64,
    /// `stock - sold - reserved`: units a checkout can reserve now.
    pub stock_left: i64,
}

impl SaleFigures {
    pub fn new(stock: i64, sold: i64, reserved: i64) -> SaleFigures {
        SaleFigures {
            stock,
            sold,
            reserved,
            stock_left: stock - sold - reserved,
        }
    }
}

/// `GET /api/sales/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SaleView {
    pub id: String,
    pub name: String,
    pub product_id: String,
    pub stock: i64,
    /// RFC 3339, UTC.
    pub starts_at: String,
    pub starts_at_ms: i64,
    pub per_user_limit: i64,
    pub reservation_ttl_s: i64,
    pub state: SaleState,
    pub sold: i64,
    pub reserved: i64,
    pub stock_left: i64,
    /// Checkouts waiting on this server for a unit to come back.
    pub queue_length: u64,
    /// The realtime topic whose events carry the sale's new [`SaleFigures`].
    pub topic: String,
    /// The server's clock when it answered (the page's countdown corrects by it).
    pub now_ms: i64,
}

/// `GET /api/sales`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SaleList {
    pub sales: Vec<SaleView>,
}

/// The answer to `POST /api/sales/{id}/checkout` (200 `reserved`, 202 `queued`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CheckoutAnswer {
    /// A unit is held for this buyer until `expires_at`; pay before then.
    Reserved {
        reservation_id: String,
        /// RFC 3339, UTC.
        expires_at: String,
        expires_at_ms: i64,
        /// Whether the reservation was already paid (a replay after payment).
        paid: bool,
    },
    /// Every unit left is reserved by others; a unit comes to the queue when one expires.
    Queued { position: u64 },
}

impl CheckoutAnswer {
    pub fn reserved(reservation_id: String, expires_at_ms: i64, paid: bool) -> CheckoutAnswer {
        CheckoutAnswer::Reserved {
            reservation_id,
            expires_at: format_rfc3339_ms(expires_at_ms),
            expires_at_ms,
            paid,
        }
    }
}

/// The answer to `POST /api/reservations/{id}/pay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PaymentAnswer {
    /// Always `confirmed`: the order is durable.
    pub status: String,
    pub order_id: String,
}

/// How far an order's fulfilment got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Fulfilment {
    Pending,
    Fulfilled,
}

/// One confirmed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderView {
    pub order_id: String,
    pub sale_id: String,
    pub reservation_id: String,
    pub product_id: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub fulfilment: Fulfilment,
}

/// `GET /api/orders`: this buyer's orders, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderList {
    pub orders: Vec<OrderView>,
}

/// `GET /api/sales/{id}/dashboard` (the admin's live view).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SaleDashboard {
    pub sale_id: String,
    pub figures: SaleFigures,
    /// Orders confirmed in the last 10 s, per second.
    pub orders_per_second: f64,
    pub orders: i64,
    /// Checkouts queued on this server.
    pub queue_length: u64,
    /// Confirmed orders not fulfilled yet.
    pub fulfilment_backlog: i64,
}

/// The realtime topic of a sale (public: figures only, no buyer).
pub fn sale_topic(sale_id: &str) -> String {
    format!("public:sale-{sale_id}")
}

/// Whether `id` could be a sale's, reservation's or order's id: a snowflake in decimal
/// (anything else names nothing, and is answered 404 without a query).
pub fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

/// Whether an `Idempotency-Key` is acceptable: 1 to 128 printable ASCII characters.
pub fn valid_idempotency_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_graphic())
}

/// Parses an RFC 3339 date-time (`2026-12-07T04:00:00Z`, `...T04:00:00.250+01:00`) into
/// Unix milliseconds. Fractions beyond milliseconds are truncated.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = num(0..4)?;
    let month = num(5..7)?;
    let day = num(8..10)?;
    let hour = num(11..13)?;
    let minute = num(14..16)?;
    let second = num(17..19)?;
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let h = num(i + 1..i + 3)?;
            let m = num(i + 4..i + 6)?;
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 60 + m;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_min * 60;
    Some(secs * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month, day) to days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sale() -> CreateSale {
        CreateSale {
            name: "Lanterns".into(),
            product_id: "lantern".into(),
            stock: 100,
            starts_at: "2026-12-07T04:00:00Z".into(),
            per_user_limit: 2,
            reservation_ttl_s: 120,
        }
    }

    #[test]
    fn rfc3339_reads_offsets_and_fractions() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.5Z"), Some(500));
        assert_eq!(parse_rfc3339_ms("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:00:00-01:00"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2026-01-01T00:00:00.000Z"),
            Some(crate::ids::EPOCH_UNIX_MS)
        );
        for bad in [
            "",
            "2026-02-30T00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01X00:00:00Z",
            "2026-01-01T00:00:00+0100",
            "tomorrow at noon please",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(sale().validate().unwrap().reservation_ttl_ms, 120_000);
        type Change = fn(&mut CreateSale);
        let cases: [(Change, &str); 6] = [
            (|s| s.stock = -1, "invalid_stock"),
            (|s| s.stock = 0, "invalid_stock"),
            (|s| s.name = "a\0b".into(), "invalid_name"),
            (|s| s.starts_at = "soon".into(), "invalid_starts_at"),
            (|s| s.per_user_limit = 0, "invalid_per_user_limit"),
            (|s| s.reservation_ttl_s = 0, "invalid_reservation_ttl"),
        ];
        for (change, code) in cases {
            let mut s = sale();
            change(&mut s);
            assert_eq!(s.validate().unwrap_err().code(), code);
        }
    }

    #[test]
    fn checkout_answers_carry_their_status() {
        let json = serde_json::to_value(CheckoutAnswer::Queued { position: 3 }).unwrap();
        assert_eq!(json, serde_json::json!({"status": "queued", "position": 3}));
        let json = serde_json::to_value(CheckoutAnswer::reserved("7".into(), 0, false)).unwrap();
        assert_eq!(json["status"], "reserved");
        assert_eq!(json["expires_at"], "1970-01-01T00:00:00.000Z");
    }

    proptest! {
        #[test]
        fn rfc3339_round_trips_with_the_formatter(ms in -62_135_596_800_000i64..253_402_300_799_999i64) {
            prop_assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
        }
    }
}
