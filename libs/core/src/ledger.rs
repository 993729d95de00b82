//! The portfolio ledger: cash, positions, fees, borrow and financing, with the
//! accounting identity checked on demand.
//!
//! Invariant: `equity == initial_cash + realised + unrealised - commissions
//! \+ rebates - borrow - financing`, and `equity == cash + Σ market value`.
//! Every amount is an exact Decimal; nothing here rounds.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::CoreError;
use crate::fill::Fill;
use crate::fixed::{POW10, Price, notional};
use crate::order::Side;
use crate::position::Position;

/// Cumulative costs, itemised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostTotals {
    /// Commissions paid.
    pub commission: Decimal,
    /// Maker rebates received.
    pub rebates: Decimal,
    /// Slippage cost (already inside fill prices; reported, not charged again).
    pub slippage: Decimal,
    /// Borrow fees on shorts.
    pub borrow: Decimal,
    /// Financing interest on borrowed cash.
    pub financing: Decimal,
}

/// Cash and positions of one account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Portfolio {
    initial_cash: Decimal,
    cash: Decimal,
    positions: Vec<Position>,
    costs: CostTotals,
}

impl Portfolio {
    /// A portfolio with `initial_cash` and one flat position per `(size_precision, multiplier)`.
    pub fn new(initial_cash: Decimal, instruments: &[(u8, i64)]) -> Self {
        Self {
            initial_cash,
            cash: initial_cash,
            positions: instruments
                .iter()
                .map(|&(p, m)| Position::flat(p, m))
                .collect(),
            costs: CostTotals::default(),
        }
    }

    /// Cash balance.
    pub const fn cash(&self) -> Decimal {
        self.cash
    }

    /// Starting cash.
    pub const fn initial_cash(&self) -> Decimal {
        self.initial_cash
    }

    /// Positions, by instrument index.
    pub fn positions(&self) -> &[Position] {
        &self.positions
    }

    /// Position of one instrument.
    pub fn position(&self, instrument: usize) -> Option<&Position> {
        self.positions.get(instrument)
    }

    /// Itemised costs so far.
    pub const fn costs(&self) -> CostTotals {
        self.costs
    }

    /// Books a fill: moves cash by the notional, charges commission, credits rebate,
    /// updates the position. Returns the realised PnL of the fill.
    pub fn apply_fill(&mut self, fill: &Fill) -> Result<Decimal, CoreError> {
        if fill.commission < Decimal::ZERO
            || fill.rebate < Decimal::ZERO
            || fill.slippage < Decimal::ZERO
        {
            return Err(CoreError::Ledger {
                reason: format!("fill {}: negative cost item", fill.seq),
            });
        }
        let pos = self
            .positions
            .get_mut(fill.instrument)
            .ok_or_else(|| CoreError::Ledger {
                reason: format!("fill {}: unknown instrument {}", fill.seq, fill.instrument),
            })?;
        let n = notional(fill.qty, fill.price, pos.multiplier)?;
        let realized = pos.apply(fill.side, fill.qty, fill.price)?;
        match fill.side {
            Side::Buy => self.cash -= n,
            Side::Sell => self.cash += n,
        }
        self.cash -= fill.commission;
        self.cash += fill.rebate;
        self.costs.commission += fill.commission;
        self.costs.rebates += fill.rebate;
        self.costs.slippage += fill.slippage;
        Ok(realized)
    }

    /// Charges a borrow fee (>= 0).
    pub fn charge_borrow(&mut self, amount: Decimal) -> Result<(), CoreError> {
        if amount < Decimal::ZERO {
            return Err(CoreError::Ledger {
                reason: format!("borrow charge {amount} is negative"),
            });
        }
        self.cash -= amount;
        self.costs.borrow += amount;
        Ok(())
    }

    /// Charges financing interest (>= 0).
    pub fn charge_financing(&mut self, amount: Decimal) -> Result<(), CoreError> {
        if amount < Decimal::ZERO {
            return Err(CoreError::Ledger {
                reason: format!("financing charge {amount} is negative"),
            });
        }
        self.cash -= amount;
        self.costs.financing += amount;
        Ok(())
    }

    /// Moves `amount` of cash into (positive) or out of (negative) the
    /// ledger: a capital transfer between ledgers, not a cost.
    pub fn transfer(&mut self, amount: Decimal) -> Result<(), CoreError> {
        self.cash = self
            .cash
            .checked_add(amount)
            .ok_or(CoreError::Overflow { what: "cash" })?;
        Ok(())
    }

    /// Σ signed market value at raw marks (one raw close per instrument at `price_precision[i]`),
    /// as an exact `(mantissa, scale)` computed on integers only.
    pub fn position_value_raw(&self, marks: &[i64], price_precision: &[u8]) -> (i128, u32) {
        let mut total: i128 = 0;
        let mut scale: u32 = 0;
        for (i, pos) in self.positions.iter().enumerate() {
            if pos.qty_raw == 0 {
                continue;
            }
            let s = u32::from(pos.size_precision) + u32::from(price_precision[i]);
            let v = i128::from(pos.qty_raw) * i128::from(marks[i]) * i128::from(pos.multiplier);
            if s > scale {
                total *= i128::from(POW10[(s - scale) as usize]);
                scale = s;
                total += v;
            } else {
                total += v * i128::from(POW10[(scale - s) as usize]);
            }
        }
        (total, scale)
    }

    /// `(cash, position value, equity)` at raw marks, exactly. Integer fast path,
    /// falling back to Decimal addition when the mantissas would not fit.
    pub fn mark(
        &self,
        marks: &[i64],
        price_precision: &[u8],
    ) -> Result<(Decimal, Decimal, Decimal), CoreError> {
        let (pv_m, pv_s) = self.position_value_raw(marks, price_precision);
        let pv =
            Decimal::try_from_i128_with_scale(pv_m, pv_s).map_err(|_| CoreError::Overflow {
                what: "position value",
            })?;
        if pv_m == 0 {
            return Ok((self.cash, pv, self.cash));
        }
        let cm = self.cash.mantissa();
        let cs = self.cash.scale();
        let s = cs.max(pv_s);
        let fast = (|| {
            let a = cm.checked_mul(10i128.checked_pow(s - cs)?)?;
            let b = pv_m.checked_mul(10i128.checked_pow(s - pv_s)?)?;
            Decimal::try_from_i128_with_scale(a.checked_add(b)?, s).ok()
        })();
        let equity = match fast {
            Some(e) => e,
            None => self
                .cash
                .checked_add(pv)
                .ok_or(CoreError::Overflow { what: "equity" })?,
        };
        Ok((self.cash, pv, equity))
    }

    /// Equity at raw marks, exactly; the per-bar path: integers only while the
    /// mantissas fit, Decimal addition otherwise.
    #[inline]
    pub fn equity_at(&self, marks: &[i64], price_precision: &[u8]) -> Result<Decimal, CoreError> {
        let (pv_m, pv_s) = self.position_value_raw(marks, price_precision);
        if pv_m == 0 {
            return Ok(self.cash);
        }
        let cm = self.cash.mantissa();
        let cs = self.cash.scale();
        let s = cs.max(pv_s);
        let fast = (|| {
            let a = cm.checked_mul(10i128.checked_pow(s - cs)?)?;
            let b = pv_m.checked_mul(10i128.checked_pow(s - pv_s)?)?;
            Decimal::try_from_i128_with_scale(a.checked_add(b)?, s).ok()
        })();
        match fast {
            Some(e) => Ok(e),
            None => {
                let pv = Decimal::try_from_i128_with_scale(pv_m, pv_s).map_err(|_| {
                    CoreError::Overflow {
                        what: "position value",
                    }
                })?;
                self.cash
                    .checked_add(pv)
                    .ok_or(CoreError::Overflow { what: "equity" })
            }
        }
    }

    /// Checks the accounting identity at the given marks.
    pub fn check_invariants(&self, marks: &[Price]) -> Result<(), CoreError> {
        let mut value = Decimal::ZERO;
        let mut unrealized = Decimal::ZERO;
        let mut realized = Decimal::ZERO;
        for (pos, &m) in self.positions.iter().zip(marks) {
            value += pos.market_value(m)?;
            unrealized += pos.unrealized_pnl(m)?;
            realized += pos.realized_pnl;
            if pos.qty_raw == 0 && !pos.cost_basis.is_zero() {
                return Err(CoreError::Ledger {
                    reason: format!("flat position keeps basis {}", pos.cost_basis),
                });
            }
        }
        let equity = self.cash + value;
        let c = self.costs;
        let expected = self.initial_cash + realized + unrealized - c.commission + c.rebates
            - c.borrow
            - c.financing;
        if equity != expected {
            return Err(CoreError::Ledger {
                reason: format!("equity {equity} != identity {expected}"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fill::Liquidity;
    use crate::fixed::Quantity;
    use crate::order::OrderId;

    fn fill(seq: u64, side: Side, qty: &str, price: &str, fee: i64) -> Fill {
        let price = Price::parse(price, 2).unwrap();
        Fill {
            seq,
            order_id: OrderId(seq),
            instrument: 0,
            ts: 0,
            side,
            qty: Quantity::parse(qty, 0).unwrap(),
            price,
            reference_price: price,
            commission: Decimal::new(fee, 2),
            rebate: Decimal::ZERO,
            slippage: Decimal::ZERO,
            liquidity: Liquidity::Taker,
        }
    }

    #[test]
    fn identity_holds_through_trades_and_charges() {
        let mut pf = Portfolio::new(Decimal::new(100_000, 0), &[(0, 1)]);
        pf.apply_fill(&fill(0, Side::Buy, "896", "111.53", 100))
            .unwrap();
        assert_eq!(pf.cash(), Decimal::new(10_000_000 - 9_993_088 - 100, 2));
        pf.charge_financing(Decimal::new(5, 2)).unwrap();
        let mark = Price::parse("110.72", 2).unwrap();
        pf.check_invariants(&[mark]).unwrap();
        let (cash, pv, eq) = pf.mark(&[11072], &[2]).unwrap();
        assert_eq!(cash + pv, eq);
        pf.apply_fill(&fill(1, Side::Sell, "1000", "110.72", 0))
            .unwrap();
        pf.charge_borrow(Decimal::new(1, 2)).unwrap();
        pf.check_invariants(&[mark]).unwrap();
        assert_eq!(pf.position(0).unwrap().qty_raw, -104);
        assert!(pf.charge_borrow(Decimal::new(-1, 2)).is_err());
    }
}
