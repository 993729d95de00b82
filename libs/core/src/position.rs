//! Netting positions: one signed quantity per instrument with an exact cost basis.
//!
//! The cost basis is kept as the exact signed notional of the open quantity, so a
//! round trip's realised PnL is exactly proceeds minus cost; a partial reduction
//! takes its share of the basis rounded to the notional's scale (the residue stays in
//! the basis and is realised when the position closes, so no money is created or lost).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::CoreError;
use crate::fixed::{Price, Quantity, notional};
use crate::order::Side;
use crate::rounding::{RoundingMode, round_money};

/// A net position in one instrument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Signed raw quantity (long > 0, short < 0) at `size_precision`.
    pub qty_raw: i64,
    /// Size precision of `qty_raw`.
    pub size_precision: u8,
    /// Contract multiplier.
    pub multiplier: i64,
    /// Signed notional paid for the open quantity (negative for shorts).
    pub cost_basis: Decimal,
    /// Realised PnL to date (gross of fees).
    pub realized_pnl: Decimal,
}

impl Position {
    /// A flat position.
    pub fn flat(size_precision: u8, multiplier: i64) -> Self {
        Self {
            qty_raw: 0,
            size_precision,
            multiplier,
            cost_basis: Decimal::ZERO,
            realized_pnl: Decimal::ZERO,
        }
    }

    /// The signed quantity.
    pub fn quantity(&self) -> Decimal {
        Decimal::new(self.qty_raw, u32::from(self.size_precision))
    }

    /// Whether the position is flat.
    pub const fn is_flat(&self) -> bool {
        self.qty_raw == 0
    }

    /// Average entry price (cost basis / quantity / multiplier), `None` when flat.
    pub fn avg_price(&self) -> Option<Decimal> {
        if self.qty_raw == 0 {
            return None;
        }
        Some(self.cost_basis / self.quantity() / Decimal::from(self.multiplier))
    }

    /// Market value at `mark` (signed).
    pub fn market_value(&self, mark: Price) -> Result<Decimal, CoreError> {
        let q = Quantity::from_raw(self.qty_raw.abs(), self.size_precision)?;
        let v = notional(q, mark, self.multiplier)?;
        Ok(if self.qty_raw < 0 { -v } else { v })
    }

    /// Unrealised PnL at `mark`.
    pub fn unrealized_pnl(&self, mark: Price) -> Result<Decimal, CoreError> {
        self.market_value(mark)?
            .checked_sub(self.cost_basis)
            .ok_or(CoreError::Overflow {
                what: "unrealized PnL",
            })
    }

    /// Applies a fill; returns the realised PnL it produced. Handles increases,
    /// reductions, closes and flips through zero.
    pub fn apply(&mut self, side: Side, qty: Quantity, price: Price) -> Result<Decimal, CoreError> {
        if qty.precision() != self.size_precision {
            return Err(CoreError::Precision {
                what: "quantity",
                have: qty.precision(),
                want: self.size_precision,
            });
        }
        let overflow = |what| CoreError::Overflow { what };
        let signed = side.sign() * qty.raw();
        let fill_notional = notional(qty, price, self.multiplier)?;
        let same_direction = self.qty_raw == 0 || (self.qty_raw > 0) == (signed > 0);
        if same_direction {
            let qty_raw = self
                .qty_raw
                .checked_add(signed)
                .ok_or(overflow("position"))?;
            let cost_basis = match side {
                Side::Buy => self.cost_basis.checked_add(fill_notional),
                Side::Sell => self.cost_basis.checked_sub(fill_notional),
            }
            .ok_or(overflow("cost basis"))?;
            self.qty_raw = qty_raw;
            self.cost_basis = cost_basis;
            return Ok(Decimal::ZERO);
        }
        let open = self.qty_raw.abs();
        let closing = qty.raw().min(open);
        let closing_q = Quantity::from_raw(closing, self.size_precision)?;
        let closing_notional = if closing == qty.raw() {
            fill_notional
        } else {
            notional(closing_q, price, self.multiplier)?
        };
        // A partial release is rounded to the notional's own scale so every amount
        // stays a multiple of 10^-(size+price precision) and later sums are exact.
        let basis_released = if closing == open {
            self.cost_basis
        } else {
            let share = self
                .cost_basis
                .checked_mul(Decimal::from(closing))
                .ok_or(overflow("cost basis released"))?
                / Decimal::from(open);
            round_money(
                share,
                u32::from(self.size_precision) + u32::from(price.precision()),
                RoundingMode::HalfEven,
            )
        };
        // Long: proceeds - basis. Short: basis (negative) + buyback cost → -(cost) - basis.
        let realized = if self.qty_raw > 0 {
            closing_notional.checked_sub(basis_released)
        } else {
            (-closing_notional).checked_sub(basis_released)
        }
        .ok_or(overflow("realized PnL"))?;
        let realized_pnl = self
            .realized_pnl
            .checked_add(realized)
            .ok_or(overflow("realized PnL"))?;
        // |basis_released| <= |cost_basis| (same sign): the difference is in range.
        let mut cost_basis = self.cost_basis - basis_released;
        let mut qty_raw = self.qty_raw + side.sign() * closing;
        let rest = qty.raw() - closing;
        if rest > 0 {
            let rest_q = Quantity::from_raw(rest, self.size_precision)?;
            qty_raw = side.sign() * rest;
            cost_basis = Decimal::from(side.sign()) * notional(rest_q, price, self.multiplier)?;
        }
        self.qty_raw = qty_raw;
        self.cost_basis = cost_basis;
        self.realized_pnl = realized_pnl;
        Ok(realized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s, 0).unwrap()
    }
    fn p(s: &str) -> Price {
        Price::parse(s, 2).unwrap()
    }

    #[test]
    fn long_round_trip_and_average() {
        let mut pos = Position::flat(0, 1);
        pos.apply(Side::Buy, q("10"), p("100")).unwrap();
        pos.apply(Side::Buy, q("10"), p("110")).unwrap();
        assert_eq!(pos.avg_price().unwrap(), Decimal::new(105, 0));
        assert_eq!(pos.unrealized_pnl(p("120")).unwrap(), Decimal::new(300, 0));
        let r = pos.apply(Side::Sell, q("5"), p("120")).unwrap();
        assert_eq!(r, Decimal::new(75, 0));
        let r = pos.apply(Side::Sell, q("15"), p("100")).unwrap();
        assert_eq!(r, Decimal::new(-75, 0));
        assert!(pos.is_flat());
        assert_eq!(pos.cost_basis, Decimal::ZERO);
        assert_eq!(pos.realized_pnl, Decimal::ZERO);
    }

    #[test]
    fn short_and_flip_through_zero() {
        let mut pos = Position::flat(0, 1);
        pos.apply(Side::Sell, q("10"), p("50")).unwrap();
        assert_eq!(pos.unrealized_pnl(p("40")).unwrap(), Decimal::new(100, 0));
        let r = pos.apply(Side::Buy, q("15"), p("40")).unwrap();
        assert_eq!(r, Decimal::new(100, 0));
        assert_eq!(pos.qty_raw, 5);
        assert_eq!(pos.avg_price().unwrap(), Decimal::new(40, 0));
    }

    #[test]
    fn thirds_release_the_basis_without_losing_money() {
        let mut pos = Position::flat(0, 1);
        pos.apply(Side::Buy, q("3"), p("0.01")).unwrap();
        let mut total = Decimal::ZERO;
        for _ in 0..3 {
            total += pos.apply(Side::Sell, q("1"), p("0.02")).unwrap();
        }
        assert_eq!(total, Decimal::new(3, 2));
        assert_eq!(pos.cost_basis, Decimal::ZERO);
    }
}
