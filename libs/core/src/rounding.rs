//! The one place that rounds: prices to an instrument's tick, quantities to its
//! step, money to a number of decimal places. Every call names its rounding mode.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::CoreError;
use crate::fixed::{POW10, Price, Quantity};
use crate::instrument::Instrument;

/// How to round a value that falls between two representable values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoundingMode {
    /// Toward negative infinity.
    Floor,
    /// Toward positive infinity.
    Ceil,
    /// Toward zero (truncate).
    TowardZero,
    /// Away from zero.
    AwayFromZero,
    /// To nearest, ties to even (banker's rounding).
    HalfEven,
    /// To nearest, ties away from zero.
    HalfAwayFromZero,
}

impl RoundingMode {
    fn strategy(self) -> RoundingStrategy {
        match self {
            Self::Floor => RoundingStrategy::ToNegativeInfinity,
            Self::Ceil => RoundingStrategy::ToPositiveInfinity,
            Self::TowardZero => RoundingStrategy::ToZero,
            Self::AwayFromZero => RoundingStrategy::AwayFromZero,
            Self::HalfEven => RoundingStrategy::MidpointNearestEven,
            Self::HalfAwayFromZero => RoundingStrategy::MidpointAwayFromZero,
        }
    }
}

/// Integer division `num / den` (den > 0) rounded with `mode`.
pub fn div_round(num: i128, den: i128, mode: RoundingMode) -> i128 {
    debug_assert!(den > 0, "div_round needs a positive divisor");
    let q = num.div_euclid(den);
    let r = num.rem_euclid(den);
    if r == 0 {
        return q;
    }
    // q is the floor; q + 1 the ceiling.
    let up = match mode {
        RoundingMode::Floor => false,
        RoundingMode::Ceil => true,
        RoundingMode::TowardZero => num < 0,
        RoundingMode::AwayFromZero => num >= 0,
        RoundingMode::HalfEven => match (2 * r).cmp(&den) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Equal => q.rem_euclid(2) == 1,
        },
        RoundingMode::HalfAwayFromZero => match (2 * r).cmp(&den) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Equal => num >= 0,
        },
    };
    if up { q + 1 } else { q }
}

/// Rounds a raw value to a multiple of `increment` (raw units, > 0).
pub fn round_raw_to_increment(
    raw: i64,
    increment: i64,
    mode: RoundingMode,
) -> Result<i64, CoreError> {
    if increment <= 0 {
        return Err(CoreError::InvalidInstrument {
            field: "increment",
            reason: "must be positive".into(),
        });
    }
    let n = div_round(i128::from(raw), i128::from(increment), mode) * i128::from(increment);
    i64::try_from(n).map_err(|_| CoreError::Overflow {
        what: "rounded value",
    })
}

/// Rounds an exact Decimal to a raw integer at `precision`, then to `increment`.
fn decimal_to_raw(
    value: Decimal,
    precision: u8,
    increment: i64,
    mode: RoundingMode,
) -> Result<i64, CoreError> {
    // value = m / 10^s; raw units are 10^-precision; the target is a multiple of `increment` raw units.
    let m = value.mantissa();
    let s = value.scale();
    let p = u32::from(precision);
    let (num, den) = if s >= p {
        (m, 10i128.pow(s - p))
    } else {
        (
            m.checked_mul(10i128.pow(p - s))
                .ok_or(CoreError::Overflow {
                    what: "rounded value",
                })?,
            1,
        )
    };
    let den = den
        .checked_mul(i128::from(increment))
        .ok_or(CoreError::Overflow {
            what: "rounded value",
        })?;
    let n = div_round(num, den, mode) * i128::from(increment);
    i64::try_from(n).map_err(|_| CoreError::Overflow {
        what: "rounded value",
    })
}

/// Rounds a Decimal price to the instrument's tick.
pub fn round_price(
    inst: &Instrument,
    value: Decimal,
    mode: RoundingMode,
) -> Result<Price, CoreError> {
    let raw = decimal_to_raw(value, inst.price_precision, inst.tick_size.raw(), mode)?;
    Price::from_raw(raw, inst.price_precision)
}

/// Rounds a raw price (at the instrument's precision) to the instrument's tick.
pub fn round_price_raw(
    inst: &Instrument,
    raw: i64,
    mode: RoundingMode,
) -> Result<Price, CoreError> {
    Price::from_raw(
        round_raw_to_increment(raw, inst.tick_size.raw(), mode)?,
        inst.price_precision,
    )
}

/// Rounds a Decimal quantity to the instrument's step.
pub fn round_quantity(
    inst: &Instrument,
    value: Decimal,
    mode: RoundingMode,
) -> Result<Quantity, CoreError> {
    let raw = decimal_to_raw(value, inst.size_precision, inst.size_step.raw(), mode)?;
    Quantity::from_raw(raw, inst.size_precision)
}

/// Rounds money to `dp` decimal places.
pub fn round_money(value: Decimal, dp: u32, mode: RoundingMode) -> Decimal {
    value.round_dp_with_strategy(dp, mode.strategy())
}

/// Splits `total` into parts proportional to non-negative `weights`, each rounded
/// to `dp` places, such that the parts sum to `total` exactly (largest remainder
/// goes to the first parts). Rounding neither creates nor destroys money.
pub fn allocate(total: Decimal, weights: &[u64], dp: u32) -> Vec<Decimal> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if weights.is_empty() {
        return Vec::new();
    }
    let unit = Decimal::new(1, dp);
    let rounded_total = round_money(total, dp, RoundingMode::TowardZero);
    let mut parts: Vec<Decimal> = weights
        .iter()
        .map(|&w| {
            if sum == 0 {
                Decimal::ZERO
            } else {
                let share = rounded_total * Decimal::from(w) / Decimal::from(sum);
                round_money(share, dp, RoundingMode::TowardZero)
            }
        })
        .collect();
    let mut rest = rounded_total - parts.iter().copied().sum::<Decimal>();
    let step = if rest.is_sign_negative() { -unit } else { unit };
    let n = parts.len();
    let mut i = 0;
    while !rest.is_zero() && rest.abs() >= unit {
        parts[i % n] += step;
        rest -= step;
        i += 1;
    }
    // Sub-unit residue of `total` itself (more places than dp) stays with the first part.
    parts[0] += total - rounded_total + rest;
    parts
}

/// Scales an f64 view back: `10^p` as f64, for indicator conversions.
#[allow(
    clippy::cast_precision_loss,
    reason = "powers of ten up to 1e18 are exact enough for indicator views"
)]
pub fn pow10_f64(p: u8) -> f64 {
    POW10[usize::from(p)] as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instrument::Instrument;

    #[test]
    fn div_round_modes() {
        assert_eq!(div_round(7, 2, RoundingMode::Floor), 3);
        assert_eq!(div_round(-7, 2, RoundingMode::Floor), -4);
        assert_eq!(div_round(-7, 2, RoundingMode::TowardZero), -3);
        assert_eq!(div_round(7, 2, RoundingMode::HalfEven), 4);
        assert_eq!(div_round(5, 2, RoundingMode::HalfEven), 2);
        assert_eq!(div_round(-5, 2, RoundingMode::HalfAwayFromZero), -3);
        assert_eq!(div_round(5, 2, RoundingMode::Ceil), 3);
        assert_eq!(div_round(-5, 2, RoundingMode::AwayFromZero), -3);
    }

    #[test]
    fn rounds_to_tick_and_step() {
        let mut inst = Instrument::equity("X", 2, 0);
        inst.tick_size = Price::parse("0.05", 2).unwrap();
        let p = round_price(&inst, Decimal::new(10_123, 3), RoundingMode::Ceil).unwrap();
        assert_eq!(p.to_string(), "10.15");
        let p = round_price(&inst, Decimal::new(10_123, 3), RoundingMode::Floor).unwrap();
        assert_eq!(p.to_string(), "10.10");
        let q = round_quantity(&inst, Decimal::new(89_66, 1), RoundingMode::TowardZero).unwrap();
        assert_eq!(q.raw(), 896);
    }

    #[test]
    fn allocation_sums_exactly() {
        let parts = allocate(Decimal::new(100, 0), &[1, 1, 1], 2);
        assert_eq!(parts.iter().copied().sum::<Decimal>(), Decimal::new(100, 0));
        assert_eq!(parts[0], Decimal::new(3334, 2));
    }
}

/// `value` cut (toward zero) to `dp` decimal places, as text: what
/// `format!("{value:.dp$}")` prints, without its panic in rust_decimal
/// (1.43) once the digits, the point and the padding pass 32 characters (a
/// 29-digit value with `.4`), a panic a message must never cause.
#[must_use]
pub fn decimal_text(value: Decimal, dp: u32) -> String {
    let rounded = value.round_dp_with_strategy(dp, RoundingStrategy::ToZero);
    let mut text = rounded.to_string();
    // Pad to `dp` places as `{:.dp}` would (`round_dp` keeps fewer when exact).
    if dp > 0 {
        let have = text.split_once('.').map_or(0, |(_, f)| f.len());
        if have == 0 {
            text.push('.');
        }
        for _ in have..dp as usize {
            text.push('0');
        }
    }
    text
}

#[cfg(test)]
mod decimal_text_tests {
    use super::*;

    #[test]
    fn matches_the_format_precision_and_never_panics() {
        for (v, dp) in [
            ("1.23456", 4),
            ("2", 4),
            ("-0.5", 2),
            ("12.3", 0),
            ("0.00005", 4),
        ] {
            let d: Decimal = v.parse().unwrap();
            assert_eq!(
                decimal_text(d, dp),
                format!("{d:.*}", dp as usize),
                "{v} .{dp}"
            );
        }
        // 29 digits with 4 places: `format!("{:.4}")` panics here.
        assert_eq!(
            decimal_text(Decimal::MAX, 4),
            "79228162514264337593543950335.0000"
        );
        assert_eq!(
            decimal_text(Decimal::MIN, 2),
            "-79228162514264337593543950335.00"
        );
    }
}
