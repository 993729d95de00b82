//! Overflow-checked `Decimal` arithmetic for values that come from outside
//! (bars, fills, intents, limits, capital, and anything accumulated from them).
//!
//! `rust_decimal`'s operators panic when a result leaves the representable
//! range (about ±7.9e28); a panic in the risk service's consumer loop would
//! kill it, and the redelivered input would kill it again. Every helper here
//! returns an [`Overflow`] naming the quantity and its operands instead.

use std::fmt;

use rust_decimal::Decimal;

/// The arithmetic operation that overflowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a x b`.
    Mul,
    /// `a / b`.
    Div,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Add => "+",
            Self::Sub => "-",
            Self::Mul => "x",
            Self::Div => "/",
        })
    }
}

/// A result outside `Decimal`'s range (or a division by zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} {lhs} {op} {rhs} exceeds the decimal range")]
pub struct Overflow {
    /// The quantity being computed (`order notional`, `equity`, ...).
    pub what: &'static str,
    /// The operation.
    pub op: Op,
    /// Its left operand.
    pub lhs: Decimal,
    /// Its right operand.
    pub rhs: Decimal,
}

fn fail(what: &'static str, op: Op, lhs: Decimal, rhs: Decimal) -> Overflow {
    Overflow { what, op, lhs, rhs }
}

/// `a + b`.
///
/// # Errors
/// The sum is out of range.
pub fn add(a: Decimal, b: Decimal, what: &'static str) -> Result<Decimal, Overflow> {
    a.checked_add(b).ok_or_else(|| fail(what, Op::Add, a, b))
}

/// `a - b`.
///
/// # Errors
/// The difference is out of range.
pub fn sub(a: Decimal, b: Decimal, what: &'static str) -> Result<Decimal, Overflow> {
    a.checked_sub(b).ok_or_else(|| fail(what, Op::Sub, a, b))
}

/// `a x b`.
///
/// # Errors
/// The product is out of range.
pub fn mul(a: Decimal, b: Decimal, what: &'static str) -> Result<Decimal, Overflow> {
    a.checked_mul(b).ok_or_else(|| fail(what, Op::Mul, a, b))
}

/// `a / b`.
///
/// # Errors
/// The quotient is out of range, or `b` is zero.
pub fn div(a: Decimal, b: Decimal, what: &'static str) -> Result<Decimal, Overflow> {
    a.checked_div(b).ok_or_else(|| fail(what, Op::Div, a, b))
}

/// The sum of `items`, in order.
///
/// # Errors
/// A partial sum is out of range.
pub fn sum(
    items: impl IntoIterator<Item = Decimal>,
    what: &'static str,
) -> Result<Decimal, Overflow> {
    items
        .into_iter()
        .try_fold(Decimal::ZERO, |acc, x| add(acc, x, what))
}

/// `a / b`, or ±`Decimal::MAX` (the sign of the true quotient) when out of
/// range; 0 when `b` is zero. For display values only (a snapshot), never
/// for a decision.
#[must_use]
pub fn saturating_div(a: Decimal, b: Decimal) -> Decimal {
    if b.is_zero() {
        return Decimal::ZERO;
    }
    a.checked_div(b)
        .unwrap_or(if a.is_sign_negative() == b.is_sign_negative() {
            Decimal::MAX
        } else {
            Decimal::MIN
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_names_the_quantity_and_its_operands() {
        let e = mul(
            Decimal::from_i128_with_scale(10_i128.pow(20), 0),
            Decimal::from_i128_with_scale(10_i128.pow(10), 0),
            "order notional",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "order notional 100000000000000000000 x 10000000000 exceeds the decimal range"
        );
        assert!(add(Decimal::MAX, Decimal::ONE, "x").is_err());
        assert!(sub(Decimal::MIN, Decimal::ONE, "x").is_err());
        assert!(div(Decimal::ONE, Decimal::ZERO, "x").is_err());
        assert_eq!(sum([Decimal::ONE, Decimal::TWO], "x"), Ok(Decimal::from(3)));
        assert!(sum([Decimal::MAX, Decimal::ONE, Decimal::NEGATIVE_ONE], "x").is_err());
        assert_eq!(
            saturating_div(Decimal::MAX, Decimal::new(1, 3)),
            Decimal::MAX
        );
        assert_eq!(
            saturating_div(Decimal::MIN, Decimal::new(1, 3)),
            Decimal::MIN
        );
        assert_eq!(saturating_div(Decimal::ONE, Decimal::ZERO), Decimal::ZERO);
    }
}
