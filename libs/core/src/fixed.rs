//! Fixed-point prices and quantities: an `i64` raw value and a decimal precision.
//!
//! Values are parsed exactly from decimal text (never through `f64`) and all
//! arithmetic and comparisons work on the raw integers, so `0.1 + 0.2 == 0.3`.

use std::cmp::Ordering;
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::CoreError;

/// Largest supported precision (decimal places). 10^9 keeps prices up to 9.2e9
/// representable in an `i64`.
pub const MAX_PRECISION: u8 = 9;

/// Powers of ten up to 10^18, used to rescale raw values without floating point.
pub const POW10: [i64; 19] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
    10_000_000_000_000_000,
    100_000_000_000_000_000,
    1_000_000_000_000_000_000,
];

/// Why decimal text could not be read as a fixed-point value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextError {
    /// Nothing but blanks.
    Empty,
    /// Not a plain decimal number (`1e5`, `.`, `1,5`, letters).
    Invalid,
    /// More significant decimals than the scale allows (trailing zeros are fine).
    ExcessPrecision {
        /// Significant decimals written.
        decimals: usize,
        /// Scale asked for.
        scale: u8,
    },
    /// Does not fit an `i64` at the scale.
    Overflow,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty value"),
            Self::Invalid => f.write_str("not a decimal number"),
            Self::ExcessPrecision { decimals, scale } => {
                write!(f, "{decimals} decimals exceed the scale of {scale}")
            }
            Self::Overflow => f.write_str("does not fit a 64-bit fixed-point value"),
        }
    }
}

/// A decimal as written: `mantissa * 10^-decimals`, trailing fractional zeros dropped
/// (`"61.20"` is 612 with 1 decimal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenDecimal {
    /// The significant digits with the sign.
    pub mantissa: i64,
    /// Significant fractional digits.
    pub decimals: usize,
}

impl WrittenDecimal {
    /// The value divided by `10^exp` (a file of integers scaled by 10,000 reads
    /// with `exp = 4`), trailing zeros dropped again: exact, no rounding.
    #[must_use]
    pub fn shifted(self, exp: u8) -> Self {
        let (mut mantissa, mut decimals) = (self.mantissa, self.decimals + usize::from(exp));
        while decimals > 0 && mantissa % 10 == 0 {
            mantissa /= 10;
            decimals -= 1;
        }
        Self { mantissa, decimals }
    }

    /// The value at `scale` (`mantissa * 10^(scale - decimals)`).
    ///
    /// # Errors
    /// More significant decimals than `scale`, or overflow.
    pub fn at_scale(self, scale: u8) -> Result<i64, TextError> {
        let s = usize::from(scale);
        if self.decimals > s {
            return Err(TextError::ExcessPrecision {
                decimals: self.decimals,
                scale,
            });
        }
        POW10
            .get(s - self.decimals)
            .and_then(|p| self.mantissa.checked_mul(*p))
            .ok_or(TextError::Overflow)
    }
}

/// Powers of ten that f64 holds exactly (10^22 is the last).
const POW10_F64: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A Decimal as the nearest f64, for statistics (equity curves, trade
/// figures). A mantissa below 2^53 at a scale up to 22 is one IEEE division
/// of two exact doubles, hence correctly rounded and several times faster
/// than `Decimal::to_f64` (which the rest falls back to).
pub fn decimal_to_f64(d: Decimal) -> f64 {
    const EXACT: u64 = 1 << 53;
    if let Ok(m) = i64::try_from(d.mantissa())
        && m.unsigned_abs() < EXACT
        && let Some(p) = POW10_F64.get(d.scale() as usize)
    {
        #[allow(clippy::cast_precision_loss, reason = "below 2^53: exact")]
        return m as f64 / p;
    }
    use rust_decimal::prelude::ToPrimitive;
    d.to_f64().unwrap_or(f64::NAN)
}

/// Reads decimal bytes (`-12.340`, `7`, `+.5`, surrounding blanks allowed) exactly,
/// never through `f64`, without allocating: the CSV reader's hot path.
///
/// # Errors
/// Empty, not a plain decimal, or more than 18 significant digits.
pub fn parse_written(bytes: &[u8]) -> Result<WrittenDecimal, TextError> {
    let t = bytes.trim_ascii();
    let (neg, body) = match t.first() {
        None => return Err(TextError::Empty),
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        Some(_) => (false, t),
    };
    let (int, frac) = match body.iter().position(|&b| b == b'.') {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, &body[..0]),
    };
    if int.is_empty() && frac.is_empty() {
        return Err(TextError::Invalid);
    }
    let mut end = frac.len();
    while end > 0 && frac[end - 1] == b'0' {
        end -= 1;
    }
    let significant = &frac[..end];
    let m = if int.len() + significant.len() <= 18 {
        // At most 18 digits cannot leave i64 (10^18 - 1 < 2^63): plain
        // arithmetic and two plain loops (no checked step, no chained
        // iterator), which were most of a CSV cell's cost.
        let mut m: i64 = 0;
        for part in [int, significant] {
            for &b in part {
                let d = b.wrapping_sub(b'0');
                if d > 9 {
                    return Err(TextError::Invalid);
                }
                m = m * 10 + i64::from(d);
            }
        }
        m
    } else {
        let mut m: i64 = 0;
        for &b in int.iter().chain(significant) {
            if !b.is_ascii_digit() {
                return Err(TextError::Invalid);
            }
            m = m
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(b - b'0')))
                .ok_or(TextError::Overflow)?;
        }
        m
    };
    Ok(WrittenDecimal {
        mantissa: if neg { -m } else { m },
        decimals: significant.len(),
    })
}

/// Reads decimal bytes exactly into `value * 10^scale` ([`parse_written`] then
/// [`WrittenDecimal::at_scale`]).
///
/// # Errors
/// See [`TextError`].
pub fn parse_fixed_bytes(bytes: &[u8], scale: u8) -> Result<i64, TextError> {
    parse_written(bytes)?.at_scale(scale)
}

/// Parses decimal text (`"-12.340"`, `"7"`, `"+0.5"`) into a raw integer at `precision`.
/// Fails if the text has more significant fractional digits than `precision`
/// (trailing zeros are fine) or overflows `i64`.
pub fn parse_raw(text: &str, precision: u8, what: &'static str) -> Result<i64, CoreError> {
    parse_raw_bytes(text.as_bytes(), precision, what)
}

/// [`parse_raw`] over bytes; allocates only for the error.
pub fn parse_raw_bytes(bytes: &[u8], precision: u8, what: &'static str) -> Result<i64, CoreError> {
    let bad = |reason: &str| CoreError::Parse {
        what,
        text: String::from_utf8_lossy(bytes).into_owned(),
        reason: reason.to_string(),
    };
    if precision > MAX_PRECISION {
        return Err(bad("precision above 9"));
    }
    parse_fixed_bytes(bytes, precision).map_err(|e| match e {
        TextError::Empty => bad("no digits"),
        TextError::Invalid => bad("not a decimal number"),
        TextError::ExcessPrecision { .. } => bad("more decimal places than the precision allows"),
        TextError::Overflow => bad("out of range"),
    })
}

/// Number of decimal places written in `text` (ignoring trailing zeros), at most 9.
pub fn written_precision(text: &str) -> u8 {
    let frac = text
        .trim()
        .split_once('.')
        .map_or("", |(_, f)| f)
        .trim_end_matches('0');
    u8::try_from(frac.len().min(usize::from(MAX_PRECISION))).unwrap_or(MAX_PRECISION)
}

fn fmt_raw(raw: i64, precision: u8, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if precision == 0 {
        return write!(f, "{raw}");
    }
    let scale = POW10[usize::from(precision)].unsigned_abs();
    let sign = if raw < 0 { "-" } else { "" };
    let abs = raw.unsigned_abs();
    write!(
        f,
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = usize::from(precision)
    )
}

/// Compares two raw values at different precisions exactly (widening to i128).
fn cmp_scaled(a: i64, pa: u8, b: i64, pb: u8) -> Ordering {
    let p = pa.max(pb);
    let wa = i128::from(a) * i128::from(POW10[usize::from(p - pa)]);
    let wb = i128::from(b) * i128::from(POW10[usize::from(p - pb)]);
    wa.cmp(&wb)
}

macro_rules! fixed_type {
    ($name:ident, $what:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug, Serialize, Deserialize)]
        pub struct $name {
            raw: i64,
            precision: u8,
        }

        impl $name {
            /// Builds from a raw integer and a precision (`raw = value * 10^precision`).
            pub fn from_raw(raw: i64, precision: u8) -> Result<Self, CoreError> {
                if precision > MAX_PRECISION {
                    return Err(CoreError::Parse {
                        what: $what,
                        text: raw.to_string(),
                        reason: "precision above 9".into(),
                    });
                }
                Ok(Self { raw, precision })
            }

            /// Parses decimal text exactly at the given precision.
            pub fn parse(text: &str, precision: u8) -> Result<Self, CoreError> {
                Ok(Self {
                    raw: parse_raw(text, precision, $what)?,
                    precision,
                })
            }

            /// Parses decimal text at the precision it is written with.
            pub fn parse_auto(text: &str) -> Result<Self, CoreError> {
                Self::parse(text, written_precision(text))
            }

            /// Zero at the given precision.
            pub const fn zero(precision: u8) -> Self {
                Self { raw: 0, precision }
            }

            /// The raw integer (`value * 10^precision`).
            pub const fn raw(self) -> i64 {
                self.raw
            }

            /// Decimal places.
            pub const fn precision(self) -> u8 {
                self.precision
            }

            /// True when the value is zero.
            pub const fn is_zero(self) -> bool {
                self.raw == 0
            }

            /// The exact value as a Decimal.
            pub fn to_decimal(self) -> Decimal {
                Decimal::new(self.raw, u32::from(self.precision))
            }

            /// Approximate value for indicators and statistics only.
            #[allow(
                clippy::cast_precision_loss,
                reason = "f64 view is for indicators, never the ledger"
            )]
            pub fn as_f64(self) -> f64 {
                self.raw as f64 / POW10[usize::from(self.precision)] as f64
            }

            /// Exact sum; both sides must share the precision.
            pub fn checked_add(self, other: Self) -> Result<Self, CoreError> {
                self.same_precision(other)?;
                self.raw
                    .checked_add(other.raw)
                    .map(|raw| Self {
                        raw,
                        precision: self.precision,
                    })
                    .ok_or(CoreError::Overflow { what: $what })
            }

            /// Exact difference; both sides must share the precision.
            pub fn checked_sub(self, other: Self) -> Result<Self, CoreError> {
                self.same_precision(other)?;
                self.raw
                    .checked_sub(other.raw)
                    .map(|raw| Self {
                        raw,
                        precision: self.precision,
                    })
                    .ok_or(CoreError::Overflow { what: $what })
            }

            /// The same value at a higher precision (exact), or an error if it would lose digits.
            pub fn rescale(self, precision: u8) -> Result<Self, CoreError> {
                if precision >= self.precision {
                    let f = POW10[usize::from(precision - self.precision)];
                    self.raw
                        .checked_mul(f)
                        .map(|raw| Self { raw, precision })
                        .ok_or(CoreError::Overflow { what: $what })
                } else {
                    let f = POW10[usize::from(self.precision - precision)];
                    if self.raw % f != 0 {
                        return Err(CoreError::Precision {
                            what: $what,
                            have: self.precision,
                            want: precision,
                        });
                    }
                    Ok(Self {
                        raw: self.raw / f,
                        precision,
                    })
                }
            }

            fn same_precision(self, other: Self) -> Result<(), CoreError> {
                if self.precision == other.precision {
                    Ok(())
                } else {
                    Err(CoreError::Precision {
                        what: $what,
                        have: other.precision,
                        want: self.precision,
                    })
                }
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.cmp(other) == Ordering::Equal
            }
        }
        impl Eq for $name {}
        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for $name {
            fn cmp(&self, other: &Self) -> Ordering {
                if self.precision == other.precision {
                    self.raw.cmp(&other.raw)
                } else {
                    cmp_scaled(self.raw, self.precision, other.raw, other.precision)
                }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt_raw(self.raw, self.precision, f)
            }
        }
    };
}

fixed_type!(
    Price,
    "price",
    "A price: fixed-point, possibly negative (spreads, some futures)."
);
fixed_type!(
    Quantity,
    "quantity",
    "An order or fill quantity: fixed-point, never negative when built through `Quantity::parse_non_negative` or an instrument."
);

impl Quantity {
    /// Parses a quantity and refuses negative values.
    pub fn parse_non_negative(text: &str, precision: u8) -> Result<Self, CoreError> {
        let q = Self::parse(text, precision)?;
        if q.raw < 0 {
            return Err(CoreError::Parse {
                what: "quantity",
                text: text.into(),
                reason: "negative".into(),
            });
        }
        Ok(q)
    }
}

/// Exact notional `qty * price * multiplier` as a Decimal (i128 intermediate, no rounding).
pub fn notional(qty: Quantity, price: Price, multiplier: i64) -> Result<Decimal, CoreError> {
    // Two i64 fit an i128 product; the multiplier may not.
    let m = (i128::from(qty.raw()) * i128::from(price.raw()))
        .checked_mul(i128::from(multiplier))
        .ok_or(CoreError::Overflow { what: "notional" })?;
    Decimal::try_from_i128_with_scale(m, u32::from(qty.precision()) + u32::from(price.precision()))
        .map_err(|_| CoreError::Overflow { what: "notional" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly_and_sums_without_float_error() {
        let a = Price::parse("0.1", 2).unwrap();
        let b = Price::parse("0.2", 2).unwrap();
        assert_eq!(a.checked_add(b).unwrap(), Price::parse("0.30", 2).unwrap());
        assert_eq!(Price::parse("111.53", 2).unwrap().raw(), 11153);
        assert_eq!(Price::parse("-1.5", 3).unwrap().raw(), -1500);
        assert_eq!(Price::parse("7", 2).unwrap().to_string(), "7.00");
        assert_eq!(Price::parse("-0.05", 2).unwrap().to_string(), "-0.05");
    }

    #[test]
    fn refuses_lossy_or_malformed_text() {
        assert!(Price::parse("1.234", 2).is_err());
        assert!(Price::parse("1.2300", 2).is_ok());
        assert!(Price::parse("1e5", 2).is_err());
        assert!(Price::parse("", 2).is_err());
        assert!(Price::parse("99999999999999999999", 0).is_err());
        assert!(Quantity::parse_non_negative("-1", 0).is_err());
    }

    #[test]
    fn reads_written_decimals_from_bytes() {
        let w = |t: &str| parse_written(t.as_bytes());
        assert_eq!(
            w(" 61.20 "),
            Ok(WrittenDecimal {
                mantissa: 612,
                decimals: 1
            })
        );
        assert_eq!(w("-0.007").map(|d| (d.mantissa, d.decimals)), Ok((-7, 3)));
        assert_eq!(w("+.5").map(|d| (d.mantissa, d.decimals)), Ok((5, 1)));
        assert_eq!(
            w("124474.00").map(|d| (d.mantissa, d.decimals)),
            Ok((124_474, 0))
        );
        assert_eq!(
            w("136300")
                .map(|d| d.shifted(4))
                .map(|d| (d.mantissa, d.decimals)),
            Ok((1363, 2))
        );
        assert_eq!(
            w("0")
                .map(|d| d.shifted(4))
                .map(|d| (d.mantissa, d.decimals)),
            Ok((0, 0))
        );
        assert_eq!(w("12345").map(|d| d.shifted(4).at_scale(4)), Ok(Ok(12_345)));
        assert_eq!(w(""), Err(TextError::Empty));
        assert_eq!(w("."), Err(TextError::Invalid));
        assert_eq!(w("1,5"), Err(TextError::Invalid));
        assert_eq!(w("1.2.3"), Err(TextError::Invalid));
        assert_eq!(w("99999999999999999999"), Err(TextError::Overflow));
        // 18 digits take the unchecked loop, 19 the checked one.
        assert_eq!(
            w("-999999999.999999999").map(|d| (d.mantissa, d.decimals)),
            Ok((-999_999_999_999_999_999, 9))
        );
        assert_eq!(w("9223372036854775807").map(|d| d.mantissa), Ok(i64::MAX));
        assert_eq!(w("9223372036854775808"), Err(TextError::Overflow));
        assert_eq!(
            w("0.1000000000000000000000").map(|d| (d.mantissa, d.decimals)),
            Ok((1, 1))
        );
        assert_eq!(w("12x4"), Err(TextError::Invalid));
        assert_eq!(w("1.2/"), Err(TextError::Invalid));
        assert_eq!(parse_fixed_bytes(b"1.10785", 5), Ok(110_785));
        assert_eq!(parse_fixed_bytes(b"16", 2), Ok(1600));
        assert_eq!(
            parse_fixed_bytes(b"1.123", 2),
            Err(TextError::ExcessPrecision {
                decimals: 3,
                scale: 2
            })
        );
        assert_eq!(
            parse_fixed_bytes(b"9223372036854775807", 1),
            Err(TextError::Overflow)
        );
        let e = parse_raw("97.845", 2, "price").unwrap_err().to_string();
        assert!(e.contains("97.845") && e.contains("precision"), "{e}");
    }

    #[test]
    fn compares_across_precisions_exactly() {
        assert_eq!(
            Price::parse("1.5", 1).unwrap(),
            Price::parse("1.500", 3).unwrap()
        );
        assert!(Price::parse("1.501", 3).unwrap() > Price::parse("1.5", 1).unwrap());
        assert!(
            Price::parse("1.5", 1)
                .unwrap()
                .checked_add(Price::parse("1", 0).unwrap())
                .is_err()
        );
    }

    #[test]
    fn notional_is_exact() {
        let q = Quantity::parse("896", 0).unwrap();
        let p = Price::parse("111.53", 2).unwrap();
        assert_eq!(notional(q, p, 1).unwrap(), Decimal::new(9_993_088, 2));
    }

    proptest::proptest! {
        /// Any plain decimal reads as rust_decimal reads it (trailing zeros
        /// dropped), or overflows exactly when its mantissa leaves i64.
        #[test]
        fn written_decimals_agree_with_rust_decimal(
            neg in proptest::bool::ANY,
            int in "[0-9]{1,14}",
            frac in "[0-9]{0,14}",
        ) {
            let text = format!("{}{int}.{frac}", if neg { "-" } else { "" });
            let d: Decimal = text.parse().expect("rust_decimal reads it");
            let d = d.normalize();
            let expected = i64::try_from(d.mantissa())
                .map(|m| (m, d.scale() as usize))
                .map_err(|_| TextError::Overflow);
            let got = parse_written(text.as_bytes()).map(|w| (w.mantissa, w.decimals));
            proptest::prop_assert_eq!(got, expected, "{}", text);
        }
    }

    proptest::proptest! {
        /// Correctly rounded: the f64 Rust's own (correctly rounded) parser
        /// reads from the decimal's text.
        #[test]
        fn decimals_convert_to_the_nearest_f64(
            m in -(1i64 << 53) + 1..(1i64 << 53),
            scale in 0u32..=22,
        ) {
            let d = Decimal::new(m, scale);
            let want: f64 = d.to_string().parse().expect("text of a decimal");
            proptest::prop_assert_eq!(decimal_to_f64(d).to_bits(), want.to_bits(), "{}", d);
        }
    }
}
