//! The accounting back ends the engine can run with: the exact Decimal ledger
//! (`ExactLedger`, the only one for real results) and an `f64` ledger kept solely
//! to measure what exactness costs (benchmarks).

use grodt_core::fixed::notional;
use grodt_core::rounding::pow10_f64;
use grodt_core::{CostTotals, Decimal, Fill, Instrument, Portfolio, Quantity};
use serde::Serialize;

use crate::SimError;

/// Cash, position value and equity at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Mark<V> {
    /// Cash.
    pub cash: V,
    /// Signed market value of all positions.
    pub position_value: V,
    /// `cash + position_value`.
    pub equity: V,
}

/// What the engine needs from an accounting back end.
pub trait Ledger: Sized {
    /// Money type of marks (Decimal or f64).
    type Value: Copy + std::fmt::Debug + PartialEq + Serialize;
    /// A ledger with starting cash and flat positions.
    fn open(initial_cash: Decimal, instruments: &[Instrument]) -> Self;
    /// Books a fill.
    fn apply_fill(&mut self, fill: &Fill) -> Result<(), SimError>;
    /// Charges borrow (>= 0).
    fn charge_borrow(&mut self, amount: Decimal) -> Result<(), SimError>;
    /// Charges financing (>= 0).
    fn charge_financing(&mut self, amount: Decimal) -> Result<(), SimError>;
    /// Cash as a Decimal (used at fills and day changes only).
    fn cash(&self) -> Decimal;
    /// True when cash is below zero (cheap; checked daily).
    fn cash_negative(&self) -> bool;
    /// Signed raw position of an instrument.
    fn position_raw(&self, instrument: usize) -> i64;
    /// True when any position is short (cheap; checked daily).
    fn any_short(&self) -> bool;
    /// Equity at raw prices (one per instrument): the per-bar call.
    fn equity(&self, marks: &[i64]) -> Result<Self::Value, SimError>;
    /// Cash, position value and equity at raw prices.
    fn mark(&self, marks: &[i64]) -> Result<Mark<Self::Value>, SimError>;
    /// Equity as a Decimal at raw marks (sizing, margin).
    fn equity_decimal(&self, marks: &[i64]) -> Result<Decimal, SimError>;
    /// Itemised costs.
    fn costs(&self) -> CostTotals;
}

/// The exact ledger: `grodt_core::Portfolio` plus the price precisions to mark with.
#[derive(Clone, Debug)]
pub struct ExactLedger {
    portfolio: Portfolio,
    price_precision: Vec<u8>,
    shorts: usize,
    /// Per-bar fast path, refreshed whenever cash or a position changes: equity is
    /// `(cash_m + Σ qty_raw * mark_raw * factor) / 10^scale`, all in i128.
    fast: Option<FastMark>,
    /// 10^(size + price precision) scale of each instrument's notional, and its multiplier.
    notional_scale: Vec<(u32, i64)>,
    max_notional_scale: u32,
}

#[derive(Clone, Debug, Default)]
struct FastMark {
    cash_m: i128,
    scale: u32,
    /// 10^(scale - notional scale) * multiplier, per instrument.
    factor: Vec<i128>,
    /// Instruments with a non-zero position.
    /// `(instrument, qty_raw * factor)` of open positions, when that fits an i64.
    open: Vec<(usize, i64)>,
}

impl ExactLedger {
    /// Rebuilds the fast-path state after cash or a position changed (fills and
    /// accruals only, never per bar); no allocation once the vectors have grown.
    fn refresh(&mut self) {
        self.shorts = self
            .portfolio
            .positions()
            .iter()
            .filter(|p| p.qty_raw < 0)
            .count();
        let cash = self.portfolio.cash();
        let scale = self.max_notional_scale.max(cash.scale());
        let mut fast = self.fast.take().unwrap_or_default();
        let ok = (|| {
            if scale > 28 {
                return None;
            }
            if fast.factor.is_empty() || fast.scale != scale {
                fast.factor.clear();
                for &(s, m) in &self.notional_scale {
                    fast.factor
                        .push(10i128.checked_pow(scale - s)?.checked_mul(i128::from(m))?);
                }
            }
            fast.scale = scale;
            fast.cash_m = cash
                .mantissa()
                .checked_mul(10i128.checked_pow(scale - cash.scale())?)?;
            fast.open.clear();
            for (i, p) in self.portfolio.positions().iter().enumerate() {
                if p.qty_raw != 0 {
                    let qf = i128::from(p.qty_raw).checked_mul(fast.factor[i])?;
                    fast.open.push((i, i64::try_from(qf).ok()?));
                }
            }
            Some(())
        })();
        if ok.is_some() {
            self.fast = Some(fast);
        } else {
            fast.factor.clear();
        }
    }
}

impl ExactLedger {
    /// Moves capital into (positive) or out of (negative) this ledger: a
    /// portfolio's rebalancing between strategies' sub-ledgers, not a cost.
    ///
    /// # Errors
    /// A cash overflow.
    pub fn transfer(&mut self, amount: Decimal) -> Result<(), SimError> {
        self.portfolio.transfer(amount)?;
        self.refresh();
        Ok(())
    }
}

impl Ledger for ExactLedger {
    type Value = Decimal;

    fn open(initial_cash: Decimal, instruments: &[Instrument]) -> Self {
        let spec: Vec<(u8, i64)> = instruments
            .iter()
            .map(|i| (i.size_precision, i.multiplier))
            .collect();
        let notional_scale: Vec<(u32, i64)> = instruments
            .iter()
            .map(|i| {
                (
                    u32::from(i.size_precision) + u32::from(i.price_precision),
                    i.multiplier,
                )
            })
            .collect();
        let mut l = Self {
            max_notional_scale: notional_scale.iter().map(|s| s.0).max().unwrap_or(0),
            portfolio: Portfolio::new(initial_cash, &spec),
            price_precision: instruments.iter().map(|i| i.price_precision).collect(),
            shorts: 0,
            fast: None,
            notional_scale,
        };
        l.refresh();
        l
    }

    fn apply_fill(&mut self, fill: &Fill) -> Result<(), SimError> {
        self.portfolio.apply_fill(fill)?;
        self.refresh();
        Ok(())
    }

    fn charge_borrow(&mut self, amount: Decimal) -> Result<(), SimError> {
        self.portfolio.charge_borrow(amount)?;
        self.refresh();
        Ok(())
    }

    fn charge_financing(&mut self, amount: Decimal) -> Result<(), SimError> {
        self.portfolio.charge_financing(amount)?;
        self.refresh();
        Ok(())
    }

    fn cash(&self) -> Decimal {
        self.portfolio.cash()
    }

    fn cash_negative(&self) -> bool {
        self.portfolio.cash().is_sign_negative() && !self.portfolio.cash().is_zero()
    }

    fn position_raw(&self, instrument: usize) -> i64 {
        self.portfolio.position(instrument).map_or(0, |p| p.qty_raw)
    }

    fn any_short(&self) -> bool {
        self.shorts > 0
    }

    #[inline]
    fn equity(&self, marks: &[i64]) -> Result<Decimal, SimError> {
        if let Some(f) = &self.fast {
            // One i64 multiply per open position; anything that does not fit falls back.
            let mut total = Some(f.cash_m);
            for &(i, qf) in &f.open {
                total = total.and_then(|t| t.checked_add(i128::from(qf.checked_mul(marks[i])?)));
            }
            if let Some(e) = total.and_then(|t| Decimal::try_from_i128_with_scale(t, f.scale).ok())
            {
                return Ok(e);
            }
        }
        Ok(self.portfolio.equity_at(marks, &self.price_precision)?)
    }

    fn mark(&self, marks: &[i64]) -> Result<Mark<Decimal>, SimError> {
        let (cash, position_value, equity) = self.portfolio.mark(marks, &self.price_precision)?;
        Ok(Mark {
            cash,
            position_value,
            equity,
        })
    }

    fn equity_decimal(&self, marks: &[i64]) -> Result<Decimal, SimError> {
        self.equity(marks)
    }

    fn costs(&self) -> CostTotals {
        self.portfolio.costs()
    }
}

/// An `f64` ledger for benchmarking the cost of exact accounting. Never use its
/// figures as results: it rounds on every operation.
#[derive(Clone, Debug)]
pub struct F64Ledger {
    cash: f64,
    pos: Vec<i64>,
    qty_scale: Vec<f64>,
    price_scale: Vec<f64>,
    multiplier: Vec<f64>,
    costs: CostTotals,
}

fn to_f64(d: Decimal) -> f64 {
    use rust_decimal::prelude::ToPrimitive;
    d.to_f64().unwrap_or(f64::NAN)
}

impl Ledger for F64Ledger {
    type Value = f64;

    #[allow(
        clippy::cast_precision_loss,
        reason = "benchmark baseline ledger is f64 by design"
    )]
    fn open(initial_cash: Decimal, instruments: &[Instrument]) -> Self {
        Self {
            cash: to_f64(initial_cash),
            pos: vec![0; instruments.len()],
            qty_scale: instruments
                .iter()
                .map(|i| pow10_f64(i.size_precision))
                .collect(),
            price_scale: instruments
                .iter()
                .map(|i| pow10_f64(i.price_precision))
                .collect(),
            multiplier: instruments.iter().map(|i| i.multiplier as f64).collect(),
            costs: CostTotals::default(),
        }
    }

    #[allow(
        clippy::cast_precision_loss,
        reason = "benchmark baseline ledger is f64 by design"
    )]
    fn apply_fill(&mut self, fill: &Fill) -> Result<(), SimError> {
        let i = fill.instrument;
        let signed = fill.side.sign() * fill.qty.raw();
        let q = signed as f64 / self.qty_scale[i];
        let p = fill.price.raw() as f64 / self.price_scale[i];
        self.cash -= q * p * self.multiplier[i];
        self.cash -= to_f64(fill.commission) - to_f64(fill.rebate);
        self.pos[i] += signed;
        self.costs.commission += fill.commission;
        self.costs.rebates += fill.rebate;
        self.costs.slippage += fill.slippage;
        Ok(())
    }

    fn charge_borrow(&mut self, amount: Decimal) -> Result<(), SimError> {
        self.cash -= to_f64(amount);
        self.costs.borrow += amount;
        Ok(())
    }

    fn charge_financing(&mut self, amount: Decimal) -> Result<(), SimError> {
        self.cash -= to_f64(amount);
        self.costs.financing += amount;
        Ok(())
    }

    fn cash(&self) -> Decimal {
        Decimal::try_from(self.cash).unwrap_or(Decimal::ZERO)
    }

    fn cash_negative(&self) -> bool {
        self.cash < 0.0
    }

    fn position_raw(&self, instrument: usize) -> i64 {
        self.pos.get(instrument).copied().unwrap_or(0)
    }

    fn any_short(&self) -> bool {
        self.pos.iter().any(|&p| p < 0)
    }

    #[inline]
    #[allow(
        clippy::cast_precision_loss,
        reason = "benchmark baseline ledger is f64 by design"
    )]
    fn equity(&self, marks: &[i64]) -> Result<f64, SimError> {
        let mut pv = 0.0;
        for (i, &p) in self.pos.iter().enumerate() {
            if p != 0 {
                pv += p as f64 / self.qty_scale[i]
                    * (marks[i] as f64 / self.price_scale[i])
                    * self.multiplier[i];
            }
        }
        Ok(self.cash + pv)
    }

    #[inline]
    #[allow(
        clippy::cast_precision_loss,
        reason = "benchmark baseline ledger is f64 by design"
    )]
    fn mark(&self, marks: &[i64]) -> Result<Mark<f64>, SimError> {
        let mut pv = 0.0;
        for (i, &p) in self.pos.iter().enumerate() {
            if p != 0 {
                pv += p as f64 / self.qty_scale[i]
                    * (marks[i] as f64 / self.price_scale[i])
                    * self.multiplier[i];
            }
        }
        Ok(Mark {
            cash: self.cash,
            position_value: pv,
            equity: self.cash + pv,
        })
    }

    fn equity_decimal(&self, marks: &[i64]) -> Result<Decimal, SimError> {
        Ok(Decimal::try_from(self.mark(marks)?.equity).unwrap_or(Decimal::ZERO))
    }

    fn costs(&self) -> CostTotals {
        self.costs
    }
}

/// Exact signed market value of `qty_raw` at `price` (helper for borrow accrual).
pub(crate) fn signed_value(
    inst: &Instrument,
    qty_raw: i64,
    price_raw: i64,
) -> Result<Decimal, SimError> {
    let q = Quantity::from_raw(qty_raw.abs(), inst.size_precision)?;
    let p = grodt_core::Price::from_raw(price_raw, inst.price_precision)?;
    let v = notional(q, p, inst.multiplier)?;
    Ok(if qty_raw < 0 { -v } else { v })
}
