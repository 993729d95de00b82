//! Exact conversions between wire types and the types services compute with.
//!
//! `v1::Decimal` text follows one strict grammar (see `common.proto`):
//! `-?[0-9]+(\.[0-9]+)?`, at most 28 fractional digits and a magnitude below
//! 2^96. Anything else is rejected rather than guessed at, because `1e5`,
//! `1,000` or `+1` are how a mistyped price slips through. Parsing never goes
//! through f64 and never rounds: a value that does not fit exactly is an error.

use chrono::{DateTime, Utc};
use grodt_core::error::{Classify, ErrorKind};
use rust_decimal::Decimal;

use crate::v1;

/// Largest number of fractional digits a `rust_decimal::Decimal` holds.
const MAX_SCALE: usize = 28;

/// A wire value that cannot be converted exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// Decimal text outside the grammar or range.
    #[error("invalid decimal {text:?}: {reason}")]
    InvalidDecimal {
        /// The text as received.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A timestamp outside chrono's range or with nanos outside [0, 1e9).
    #[error("invalid timestamp (seconds={seconds}, nanos={nanos}): {reason}")]
    InvalidTimestamp {
        /// Seconds since the Unix epoch as received.
        seconds: i64,
        /// Nanoseconds as received.
        nanos: i32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A required message field was absent.
    #[error("{field} is required")]
    MissingField {
        /// The field, as named in the .proto file (dotted path if nested).
        field: &'static str,
    },
    /// A field's value is well-formed but outside what the field accepts.
    #[error("{field}: {reason}")]
    InvalidValue {
        /// The field, as named in the .proto file (dotted path if nested).
        field: &'static str,
        /// What the field accepts.
        reason: String,
    },
    /// A field's value could not be converted.
    #[error("{field}: {source}")]
    Field {
        /// The field, as named in the .proto file (dotted path if nested).
        field: &'static str,
        /// Why.
        source: Box<ProtoError>,
    },
}

impl Classify for ProtoError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}

impl ProtoError {
    /// Attaches the name of the field the error came from.
    #[must_use]
    pub fn in_field(self, field: &'static str) -> Self {
        Self::Field {
            field,
            source: Box::new(self),
        }
    }
}

fn invalid(text: &str, reason: &'static str) -> ProtoError {
    ProtoError::InvalidDecimal {
        text: text.to_owned(),
        reason,
    }
}

/// Parses decimal text in the wire grammar, exactly.
///
/// # Errors
/// [`ProtoError::InvalidDecimal`] naming the text and what is wrong with it.
pub fn parse_decimal(text: &str) -> Result<Decimal, ProtoError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() {
        return Err(invalid(text, "empty"));
    }
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    if int_part.is_empty() {
        return Err(invalid(text, "no digit before the decimal point"));
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            text,
            "only digits, one optional leading '-' and one optional '.' are allowed",
        ));
    }
    if let Some(frac) = frac_part {
        if frac.is_empty() {
            return Err(invalid(text, "no digit after the decimal point"));
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                text,
                "only digits, one optional leading '-' and one optional '.' are allowed",
            ));
        }
        if frac.len() > MAX_SCALE {
            return Err(invalid(text, "more than 28 digits after the decimal point"));
        }
    }
    // The grammar is checked above, so the only failure left is magnitude
    // (or a mantissa that cannot hold every fractional digit): from_str_exact
    // reports it instead of rounding.
    Decimal::from_str_exact(text).map_err(|_| invalid(text, "does not fit in 96 bits exactly"))
}

impl TryFrom<&v1::Decimal> for Decimal {
    type Error = ProtoError;

    fn try_from(value: &v1::Decimal) -> Result<Self, Self::Error> {
        parse_decimal(&value.value)
    }
}

impl TryFrom<v1::Decimal> for Decimal {
    type Error = ProtoError;

    fn try_from(value: v1::Decimal) -> Result<Self, Self::Error> {
        parse_decimal(&value.value)
    }
}

impl From<Decimal> for v1::Decimal {
    /// Keeps the scale: `1.50` goes out as `"1.50"`.
    fn from(value: Decimal) -> Self {
        Self {
            value: value.to_string(),
        }
    }
}

impl From<&Decimal> for v1::Decimal {
    fn from(value: &Decimal) -> Self {
        Self::from(*value)
    }
}

/// Converts a required decimal field, naming it in the error.
///
/// # Errors
/// [`ProtoError::MissingField`] when absent, [`ProtoError::Field`] when unparsable.
pub fn required_decimal(
    field: &'static str,
    value: Option<&v1::Decimal>,
) -> Result<Decimal, ProtoError> {
    let value = value.ok_or(ProtoError::MissingField { field })?;
    Decimal::try_from(value).map_err(|e| e.in_field(field))
}

/// Converts an optional decimal field, naming it in the error.
///
/// # Errors
/// [`ProtoError::Field`] when present but unparsable.
pub fn optional_decimal(
    field: &'static str,
    value: Option<&v1::Decimal>,
) -> Result<Option<Decimal>, ProtoError> {
    value
        .map(|v| Decimal::try_from(v).map_err(|e| e.in_field(field)))
        .transpose()
}

/// Converts a wire timestamp to a UTC instant, exactly (nanosecond precision).
///
/// # Errors
/// [`ProtoError::InvalidTimestamp`] when nanos is outside `[0, 1e9)` or the
/// instant is outside chrono's range.
pub fn timestamp_to_datetime(ts: &prost_types::Timestamp) -> Result<DateTime<Utc>, ProtoError> {
    let err = |reason| ProtoError::InvalidTimestamp {
        seconds: ts.seconds,
        nanos: ts.nanos,
        reason,
    };
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| err("nanos must be in [0, 999999999]"))?;
    DateTime::from_timestamp(ts.seconds, nanos).ok_or_else(|| err("outside the supported range"))
}

/// Converts a UTC instant to a wire timestamp (always normalised: nanos in `[0, 1e9)`).
#[must_use]
pub fn datetime_to_timestamp(dt: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: dt.timestamp(),
        nanos: i32::try_from(dt.timestamp_subsec_nanos())
            .unwrap_or_else(|_| unreachable!("subsecond nanos of a chrono instant are < 2e9")),
    }
}

/// Converts a required timestamp field, naming it in the error.
///
/// # Errors
/// [`ProtoError::MissingField`] when absent, [`ProtoError::Field`] when out of range.
pub fn required_timestamp(
    field: &'static str,
    value: Option<&prost_types::Timestamp>,
) -> Result<DateTime<Utc>, ProtoError> {
    let value = value.ok_or(ProtoError::MissingField { field })?;
    timestamp_to_datetime(value).map_err(|e| e.in_field(field))
}

/// `OrderSpec.size` -> [`grodt_core::Size`], exactly: `quantity` becomes
/// `Fixed` at the instrument's `size_precision` (more decimals than that is an
/// error, never a rounding), `equity_fraction` becomes `EquityFraction`,
/// `close_position = true` becomes `ClosePosition`.
///
/// # Errors
/// [`ProtoError::MissingField`] when no size is set; [`ProtoError::InvalidValue`]
/// or [`ProtoError::Field`] naming `order.quantity`, `order.equity_fraction` or
/// `order.close_position` when the value is not > 0 (or not true), or does not fit.
pub fn size_from_proto(
    size: Option<&v1::order_spec::Size>,
    size_precision: u8,
) -> Result<grodt_core::Size, ProtoError> {
    use v1::order_spec::Size as Wire;
    let positive = |field: &'static str, d: &v1::Decimal| {
        let v = Decimal::try_from(d).map_err(|e| e.in_field(field))?;
        if v <= Decimal::ZERO {
            return Err(ProtoError::InvalidValue {
                field,
                reason: "must be > 0".into(),
            });
        }
        Ok(v)
    };
    match size {
        None => Err(ProtoError::MissingField {
            field: "order.size",
        }),
        Some(Wire::Quantity(q)) => {
            const F: &str = "order.quantity";
            let v = positive(F, q)?;
            grodt_core::Quantity::parse(&v.to_string(), size_precision)
                .map(grodt_core::Size::Fixed)
                .map_err(|e| ProtoError::InvalidValue {
                    field: F,
                    reason: e.to_string(),
                })
        }
        Some(Wire::EquityFraction(f)) => Ok(grodt_core::Size::EquityFraction(positive(
            "order.equity_fraction",
            f,
        )?)),
        Some(Wire::ClosePosition(true)) => Ok(grodt_core::Size::ClosePosition),
        Some(Wire::ClosePosition(false)) => Err(ProtoError::InvalidValue {
            field: "order.close_position",
            reason: "must be true when set (set another size instead)".into(),
        }),
    }
}

/// [`grodt_core::Size`] -> `OrderSpec.size`, exactly (the quantity's decimals as held).
#[must_use]
pub fn size_to_proto(size: grodt_core::Size) -> v1::order_spec::Size {
    use v1::order_spec::Size as Wire;
    match size {
        grodt_core::Size::Fixed(q) => Wire::Quantity(q.to_decimal().into()),
        grodt_core::Size::EquityFraction(f) => Wire::EquityFraction(f.into()),
        grodt_core::Size::ClosePosition => Wire::ClosePosition(true),
    }
}

/// [`grodt_core::Side`] -> wire side.
#[must_use]
pub const fn side_to_proto(s: grodt_core::Side) -> v1::Side {
    match s {
        grodt_core::Side::Buy => v1::Side::Buy,
        grodt_core::Side::Sell => v1::Side::Sell,
    }
}

/// [`grodt_core::OrderStatus`] -> wire status.
#[must_use]
pub const fn status_to_proto(s: grodt_core::OrderStatus) -> v1::OrderStatus {
    use grodt_core::OrderStatus as S;
    match s {
        S::New => v1::OrderStatus::New,
        S::Accepted => v1::OrderStatus::Accepted,
        S::Triggered => v1::OrderStatus::Triggered,
        S::PartiallyFilled => v1::OrderStatus::PartiallyFilled,
        S::Filled => v1::OrderStatus::Filled,
        S::Cancelled => v1::OrderStatus::Cancelled,
        S::Rejected => v1::OrderStatus::Rejected,
        S::Expired => v1::OrderStatus::Expired,
    }
}

/// Nanoseconds since the epoch -> wire timestamp (normalised: nanos in
/// `[0, 1e9)`, seconds floored).
#[must_use]
pub fn ns_to_timestamp(ns: i64) -> prost_types::Timestamp {
    const NS: i64 = 1_000_000_000;
    prost_types::Timestamp {
        seconds: ns.div_euclid(NS),
        nanos: i32::try_from(ns.rem_euclid(NS)).unwrap_or(0),
    }
}

/// A bar of `inst` (raw prices and volume at its precisions) as the wire's `Bar`.
#[must_use]
pub fn bar_to_proto(
    symbol: &str,
    b: &grodt_core::Bar,
    inst: &grodt_core::Instrument,
    timeframe: i32,
) -> v1::Bar {
    let d = |raw: i64, s: u8| Some(v1::Decimal::from(Decimal::new(raw, u32::from(s))));
    v1::Bar {
        symbol: symbol.to_owned(),
        timeframe,
        timestamp: Some(ns_to_timestamp(b.ts)),
        open: d(b.open, inst.price_precision),
        high: d(b.high, inst.price_precision),
        low: d(b.low, inst.price_precision),
        close: d(b.close, inst.price_precision),
        volume: d(b.volume, inst.size_precision),
    }
}

/// An order's parts, as every service that hands orders on holds them.
#[derive(Debug, Clone, Copy)]
pub struct OrderParts<'a> {
    /// The idempotency key downstream.
    pub client_order_id: &'a str,
    /// The deciding strategy instance (empty for a manual order).
    pub strategy_id: &'a str,
    /// The instrument.
    pub symbol: &'a str,
    /// Buy or sell.
    pub side: grodt_core::Side,
    /// How much.
    pub size: grodt_core::Size,
    /// Order type and its prices.
    pub kind: grodt_core::OrderKind,
    /// Time in force.
    pub tif: grodt_core::TimeInForce,
    /// Take-profit and stop-loss prices of a bracket.
    pub bracket: Option<(grodt_core::Price, grodt_core::Price)>,
}

/// An order as the wire's `OrderSpec`, exactly (prices and sizes at their
/// decimals as held; a trailing percentage as percent points).
#[must_use]
pub fn order_spec(o: OrderParts<'_>) -> v1::OrderSpec {
    use grodt_core::{OrderKind, TimeInForce, TrailingOffset};
    let d = |p: grodt_core::Price| Some(v1::Decimal::from(p.to_decimal()));
    let (order_type, limit_price, stop_price, trailing_offset) = match o.kind {
        OrderKind::Market => (v1::OrderType::Market, None, None, None),
        OrderKind::Limit { price } => (v1::OrderType::Limit, d(price), None, None),
        OrderKind::Stop { trigger } => (v1::OrderType::Stop, None, d(trigger), None),
        OrderKind::StopLimit { trigger, limit } => {
            (v1::OrderType::StopLimit, d(limit), d(trigger), None)
        }
        OrderKind::TrailingStop { offset } => {
            let offset = match offset {
                TrailingOffset::Amount(a) => {
                    v1::trailing_offset::Offset::Amount(a.to_decimal().into())
                }
                TrailingOffset::Percent(f) => v1::trailing_offset::Offset::Percent(
                    (f * Decimal::ONE_HUNDRED).normalize().into(),
                ),
            };
            (
                v1::OrderType::TrailingStop,
                None,
                None,
                Some(v1::TrailingOffset {
                    offset: Some(offset),
                }),
            )
        }
    };
    let tif = match o.tif {
        TimeInForce::Gtc => v1::TimeInForce::Gtc,
        TimeInForce::Day => v1::TimeInForce::Day,
        TimeInForce::Ioc => v1::TimeInForce::Ioc,
        TimeInForce::Fok => v1::TimeInForce::Fok,
    };
    v1::OrderSpec {
        client_order_id: o.client_order_id.to_owned(),
        strategy_id: o.strategy_id.to_owned(),
        symbol: o.symbol.to_owned(),
        side: side_to_proto(o.side) as i32,
        order_type: order_type as i32,
        size: Some(size_to_proto(o.size)),
        limit_price,
        stop_price,
        trailing_offset,
        time_in_force: tif as i32,
        reduce_only: false,
        bracket: o.bracket.map(|(take_profit, stop_loss)| v1::Bracket {
            take_profit_price: d(take_profit),
            stop_loss_price: d(stop_loss),
        }),
        oco_group: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timestamps_are_normalised_and_bars_keep_their_decimals() {
        let t = ns_to_timestamp(-1);
        assert_eq!((t.seconds, t.nanos), (-1, 999_999_999));
        let t = ns_to_timestamp(1_700_000_000_123_456_789);
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_456_789));
        let inst = grodt_core::Instrument::equity("BTCUSDT", 2, 5);
        let bar = grodt_core::Bar {
            ts: 60_000_000_000,
            open: 10_050,
            high: 10_100,
            low: 10_000,
            close: 10_075,
            volume: 123_456,
        };
        let w = bar_to_proto("BTCUSDT", &bar, &inst, 3);
        let text = |d: &Option<v1::Decimal>| d.as_ref().map(|d| d.value.clone());
        assert_eq!(text(&w.open).as_deref(), Some("100.50"));
        assert_eq!(text(&w.close).as_deref(), Some("100.75"));
        assert_eq!(text(&w.volume).as_deref(), Some("1.23456"));
        assert_eq!(w.timestamp.map(|t| t.seconds), Some(60));
        assert_eq!((w.symbol.as_str(), w.timeframe), ("BTCUSDT", 3));
    }

    #[test]
    fn order_size_round_trips_every_variant_exactly() {
        use grodt_core::{Quantity, Size};
        let sizes = [
            Size::Fixed(Quantity::parse("12.345", 3).unwrap()),
            Size::Fixed(Quantity::parse("100", 0).unwrap()),
            Size::EquityFraction(parse_decimal("0.25").unwrap()),
            Size::EquityFraction(parse_decimal("1.5").unwrap()),
            Size::ClosePosition,
        ];
        for size in sizes {
            let precision = match size {
                Size::Fixed(q) => q.precision(),
                _ => 0,
            };
            let wire = size_to_proto(size);
            assert_eq!(size_from_proto(Some(&wire), precision).unwrap(), size);
        }
        // The wire text is the exact decimal.
        assert_eq!(
            size_to_proto(Size::Fixed(Quantity::parse("0.50", 2).unwrap())),
            v1::order_spec::Size::Quantity(wire("0.50"))
        );
        // A quantity with fewer decimals than the instrument's precision is exact too.
        assert_eq!(
            size_from_proto(Some(&v1::order_spec::Size::Quantity(wire("3"))), 4).unwrap(),
            Size::Fixed(Quantity::parse("3", 4).unwrap())
        );
    }

    #[test]
    fn order_size_rejections_name_the_field() {
        use v1::order_spec::Size as Wire;
        let cases = [
            (None, "order.size"),
            (Some(Wire::Quantity(wire("0"))), "order.quantity"),
            (Some(Wire::Quantity(wire("-1"))), "order.quantity"),
            (Some(Wire::Quantity(wire("1.5"))), "order.quantity"),
            (Some(Wire::Quantity(wire("1e3"))), "order.quantity"),
            (
                Some(Wire::EquityFraction(wire("0"))),
                "order.equity_fraction",
            ),
            (Some(Wire::ClosePosition(false)), "order.close_position"),
        ];
        for (size, field) in cases {
            let e = size_from_proto(size.as_ref(), 0).unwrap_err();
            assert!(e.to_string().starts_with(field), "{e} should name {field}");
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        }
    }

    fn wire(text: &str) -> v1::Decimal {
        v1::Decimal {
            value: text.to_owned(),
        }
    }

    #[test]
    fn decimal_text_round_trips_digit_for_digit() {
        for text in [
            "0",
            "1",
            "-1",
            "1.50",
            "-0.0000000000000000000000000001",
            "0.0000000000000000000000000001",
            "123456.78901234567890123",
            "79228162514264337593543950335",
            "-79228162514264337593543950335",
            "7.9228162514264337593543950335",
            "124474.00",
            "-98765432109876543210.12345678",
        ] {
            let parsed = Decimal::try_from(&wire(text)).expect(text);
            assert_eq!(
                v1::Decimal::from(parsed).value,
                text,
                "round trip of {text}"
            );
        }
    }

    #[test]
    fn decimal_values_are_exact_not_float_approximations() {
        let sum = parse_decimal("0.1").unwrap() + parse_decimal("0.2").unwrap();
        assert_eq!(sum, parse_decimal("0.3").unwrap());
        let d = parse_decimal("-12.345").unwrap();
        assert_eq!(d.mantissa(), -12_345);
        assert_eq!(d.scale(), 3);
    }

    #[test]
    fn decimal_rejects_text_outside_the_grammar() {
        for (text, reason_part) in [
            ("1e5", "only digits"),
            ("1E5", "only digits"),
            ("", "empty"),
            ("-", "empty"),
            ("abc", "only digits"),
            ("1.2.3", "only digits"),
            ("+1", "only digits"),
            (" 1", "only digits"),
            ("1 ", "only digits"),
            ("1_000", "only digits"),
            ("1,5", "only digits"),
            ("--1", "only digits"),
            (".5", "before the decimal point"),
            ("5.", "after the decimal point"),
            ("NaN", "only digits"),
            ("0.00000000000000000000000000001", "more than 28 digits"),
            ("79228162514264337593543950336", "96 bits"),
        ] {
            let err = Decimal::try_from(wire(text)).expect_err(text);
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("{text:?}")),
                "error must name the text {text:?}: {msg}"
            );
            assert!(msg.contains(reason_part), "{text:?}: {msg}");
            assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        }
    }

    #[test]
    fn field_helpers_name_the_field() {
        let missing = required_decimal("order.quantity", None).unwrap_err();
        assert_eq!(missing.to_string(), "order.quantity is required");
        let bad = required_decimal("order.limit_price", Some(&wire("1e5"))).unwrap_err();
        assert!(
            bad.to_string()
                .starts_with("order.limit_price: invalid decimal \"1e5\""),
            "{bad}"
        );
        assert_eq!(optional_decimal("x", None), Ok(None));
        assert_eq!(
            optional_decimal("x", Some(&wire("2.5"))),
            Ok(Some(Decimal::new(25, 1)))
        );
        let ts = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        let bad_ts = required_timestamp("range.start", Some(&ts)).unwrap_err();
        assert!(
            bad_ts
                .to_string()
                .starts_with("range.start: invalid timestamp"),
            "{bad_ts}"
        );
        assert_eq!(
            required_timestamp("range.end", None)
                .unwrap_err()
                .to_string(),
            "range.end is required"
        );
    }

    #[test]
    fn timestamp_round_trips_with_nanoseconds() {
        let dt = DateTime::parse_from_rfc3339("2025-08-14T12:34:56.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let ts = datetime_to_timestamp(dt);
        assert_eq!(ts.seconds, 1_755_174_896);
        assert_eq!(ts.nanos, 123_456_789);
        assert_eq!(timestamp_to_datetime(&ts), Ok(dt));

        let before_epoch = DateTime::parse_from_rfc3339("1969-12-31T23:59:59.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let ts = datetime_to_timestamp(before_epoch);
        assert_eq!((ts.seconds, ts.nanos), (-1, 500_000_000));
        assert_eq!(timestamp_to_datetime(&ts), Ok(before_epoch));
    }

    #[test]
    fn timestamp_rejects_unnormalised_or_out_of_range_values() {
        for (seconds, nanos) in [(0, -1), (0, 1_000_000_000), (i64::MAX, 0), (i64::MIN, 0)] {
            let ts = prost_types::Timestamp { seconds, nanos };
            let err = timestamp_to_datetime(&ts).expect_err("must be rejected");
            assert!(
                err.to_string()
                    .contains(&format!("seconds={seconds}, nanos={nanos}"))
            );
        }
    }

    proptest! {
        #[test]
        fn any_decimal_round_trips_exactly(
            mantissa in -(1i128 << 96) + 1..(1i128 << 96),
            scale in 0u32..=28,
        ) {
            let d = Decimal::from_i128_with_scale(mantissa, scale);
            let back = Decimal::try_from(v1::Decimal::from(d)).unwrap();
            prop_assert_eq!(back, d);
            prop_assert_eq!(back.scale(), d.scale());
            prop_assert_eq!(back.mantissa(), d.mantissa());
        }

        #[test]
        fn canonical_text_round_trips(text in "-?[1-9][0-9]{0,17}(\\.[0-9]{1,10})?") {
            let parsed = parse_decimal(&text).unwrap();
            prop_assert_eq!(v1::Decimal::from(parsed).value, text);
        }

        #[test]
        fn any_instant_round_trips(seconds in -62_135_596_800i64..253_402_300_799, nanos in 0u32..1_000_000_000) {
            let dt = DateTime::from_timestamp(seconds, nanos).unwrap();
            prop_assert_eq!(timestamp_to_datetime(&datetime_to_timestamp(dt)), Ok(dt));
        }
    }
}
