//! Round trips: one tracker of trades from fills, flat to flat per
//! instrument, with fees, excursions and bars held. The venue keeps one for
//! the account; a portfolio keeps one per strategy over the fills allocated
//! to it, so every strategy's trade list follows the same rules.

use grodt_core::fixed::notional;
use grodt_core::rounding::allocate;
use grodt_core::{Bar, Decimal, Fill, Instrument, Quantity, Side};
use serde::Serialize;

use crate::SimError;
use crate::ledger::signed_value;

/// A round trip: from flat to flat (or to the end of the run) in one instrument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Trade {
    /// Instrument index.
    pub instrument: usize,
    /// `Buy` for a long trade, `Sell` for a short one.
    pub direction: Side,
    /// Time of the first fill.
    pub entry_ts: i64,
    /// Time of the closing fill; `None` while open at the end of the run.
    pub exit_ts: Option<i64>,
    /// Largest absolute quantity held.
    pub peak_quantity: Decimal,
    /// Volume-weighted entry price.
    pub entry_price: Decimal,
    /// Volume-weighted exit price (of the quantity closed so far).
    pub exit_price: Option<Decimal>,
    /// Gross PnL: realised for closed trades, realised plus unrealised at the last close for open ones.
    pub gross_pnl: Decimal,
    /// Commissions minus rebates attributed to the trade.
    pub fees: Decimal,
    /// `gross_pnl - fees`.
    pub net_pnl: Decimal,
    /// Maximum adverse excursion (<= 0): worst unrealised PnL, from the extremes of
    /// the bars between entry and exit and the fill prices, at the peak quantity.
    pub mae: Decimal,
    /// Maximum favourable excursion (>= 0), same basis.
    pub mfe: Decimal,
    /// Number of fills.
    pub fills: u32,
    /// Bars of the instrument from the entry bar to the exit bar inclusive.
    pub bars_held: u64,
}

#[derive(Clone, Debug)]
struct OpenTrade {
    direction: Side,
    entry_ts: i64,
    entry_bar: usize,
    peak_raw: i64,
    entry_qty_raw: i64,
    entry_notional: Decimal,
    exit_qty_raw: i64,
    exit_notional: Decimal,
    fees: Decimal,
    low: i64,
    high: i64,
    fills: u32,
}

/// Open and closed round trips of a set of instruments.
#[derive(Clone, Debug, Default)]
pub struct TradeBook {
    open: Vec<Option<OpenTrade>>,
    trades: Vec<Trade>,
}

impl TradeBook {
    /// A book for `instruments` instruments, with room for `reserve` trades.
    pub fn new(instruments: usize, reserve: usize) -> Self {
        Self {
            open: vec![None; instruments],
            trades: Vec::with_capacity(reserve),
        }
    }

    /// The instrument's bar `k` (0-based count of its bars): widens the open
    /// trade's price range for its excursions (from the bar after its entry).
    #[inline]
    pub fn on_bar(&mut self, i: usize, k: usize, bar: &Bar) {
        if let Some(t) = self.open.get_mut(i).and_then(Option::as_mut)
            && k > t.entry_bar
        {
            t.low = t.low.min(bar.low);
            t.high = t.high.max(bar.high);
        }
    }

    /// Closed trades so far, in order of exit.
    pub fn closed(&self) -> &[Trade] {
        &self.trades
    }

    /// Books a fill of `inst` (the fill's instrument index) made on the
    /// instrument's bar `k`, with the position before it and the fill's notional;
    /// fees split on a flip at `cost_dp` places.
    ///
    /// # Errors
    /// A quantity or notional out of range.
    pub fn on_fill(
        &mut self,
        inst: &Instrument,
        fill: &Fill,
        pos_before: i64,
        k: usize,
        fill_notional: Decimal,
        cost_dp: u32,
    ) -> Result<(), SimError> {
        let i = fill.instrument;
        let signed = fill.side.sign() * fill.qty.raw();
        let price = fill.price.raw();
        let net_fee = fill.commission - fill.rebate;
        let opening_same = pos_before == 0 || pos_before.signum() == signed.signum();
        if opening_same {
            let t = self.open[i].get_or_insert(OpenTrade {
                direction: fill.side,
                entry_ts: fill.ts,
                entry_bar: k,
                peak_raw: 0,
                entry_qty_raw: 0,
                entry_notional: Decimal::ZERO,
                exit_qty_raw: 0,
                exit_notional: Decimal::ZERO,
                fees: Decimal::ZERO,
                low: price,
                high: price,
                fills: 0,
            });
            t.entry_qty_raw += fill.qty.raw();
            t.entry_notional += fill_notional;
            t.peak_raw = t.peak_raw.max((pos_before + signed).abs());
            t.fees += net_fee;
            t.low = t.low.min(price);
            t.high = t.high.max(price);
            t.fills += 1;
            return Ok(());
        }
        let closing = fill.qty.raw().min(pos_before.abs());
        let rest = fill.qty.raw() - closing;
        // A flip splits the fee by quantity without creating or losing a unit.
        let fees = if rest == 0 {
            [net_fee, Decimal::ZERO]
        } else {
            let v = allocate(
                net_fee,
                &[closing.unsigned_abs(), rest.unsigned_abs()],
                cost_dp,
            );
            [v[0], v[1]]
        };
        let closing_notional = notional(
            Quantity::from_raw(closing, inst.size_precision)?,
            fill.price,
            inst.multiplier,
        )?;
        if let Some(t) = self.open[i].as_mut() {
            t.exit_qty_raw += closing;
            t.exit_notional += closing_notional;
            t.fees += fees[0];
            t.low = t.low.min(price);
            t.high = t.high.max(price);
            t.fills += 1;
        }
        if closing == pos_before.abs() {
            if let Some(t) = self.open[i].take() {
                let trade = close_trade(inst, i, t, Some(fill.ts), k, 0)?;
                self.trades.push(trade);
            }
            if rest > 0 {
                let rest_notional = notional(
                    Quantity::from_raw(rest, inst.size_precision)?,
                    fill.price,
                    inst.multiplier,
                )?;
                self.open[i] = Some(OpenTrade {
                    direction: fill.side,
                    entry_ts: fill.ts,
                    entry_bar: k,
                    peak_raw: rest,
                    entry_qty_raw: rest,
                    entry_notional: rest_notional,
                    exit_qty_raw: 0,
                    exit_notional: Decimal::ZERO,
                    fees: fees[1],
                    low: price,
                    high: price,
                    fills: 1,
                });
            }
        }
        Ok(())
    }

    /// Closes the book: open trades are reported as open at `marks` (raw
    /// prices), after the closed ones; `seen[i]` is the number of bars of
    /// instrument `i` processed.
    ///
    /// # Errors
    /// A value out of range.
    pub fn finish(
        mut self,
        instruments: &[Instrument],
        seen: &[usize],
        marks: &[i64],
    ) -> Result<Vec<Trade>, SimError> {
        for (i, inst) in instruments.iter().enumerate() {
            if let Some(t) = self.open.get_mut(i).and_then(Option::take) {
                let last = seen.get(i).copied().unwrap_or(0).saturating_sub(1);
                let trade =
                    close_trade(inst, i, t, None, last, marks.get(i).copied().unwrap_or(0))?;
                self.trades.push(trade);
            }
        }
        Ok(self.trades)
    }
}

fn close_trade(
    inst: &Instrument,
    i: usize,
    t: OpenTrade,
    exit_ts: Option<i64>,
    k: usize,
    mark: i64,
) -> Result<Trade, SimError> {
    let sp = u32::from(inst.size_precision);
    let entry_qty = Decimal::new(t.entry_qty_raw, sp);
    let mult = Decimal::from(inst.multiplier);
    let entry_price = t.entry_notional / (entry_qty * mult);
    let exit_price =
        (t.exit_qty_raw > 0).then(|| t.exit_notional / (Decimal::new(t.exit_qty_raw, sp) * mult));
    let long = t.direction == Side::Buy;
    let dir = |x: Decimal| if long { x } else { -x };
    // Gross = signed (exit proceeds - entry cost) + open remainder at the mark.
    let open_raw = t.entry_qty_raw - t.exit_qty_raw;
    let mut gross = dir(t.exit_notional - t.entry_notional);
    if open_raw > 0 {
        let m = mark;
        gross += dir(signed_value(inst, open_raw, m)?);
    }
    let peak = Decimal::new(t.peak_raw, sp);
    let pp = u32::from(inst.price_precision);
    let lo = Decimal::new(t.low, pp);
    let hi = Decimal::new(t.high, pp);
    let (worst, best) = if t.direction == Side::Buy {
        (lo, hi)
    } else {
        (hi, lo)
    };
    let mae = scale_by(dir(worst - entry_price) * peak, mult).min(Decimal::ZERO);
    let mfe = scale_by(dir(best - entry_price) * peak, mult).max(Decimal::ZERO);
    Ok(Trade {
        instrument: i,
        direction: t.direction,
        entry_ts: t.entry_ts,
        exit_ts,
        peak_quantity: peak,
        entry_price,
        exit_price,
        gross_pnl: gross,
        fees: t.fees,
        net_pnl: gross - t.fees,
        mae,
        mfe,
        fills: t.fills,
        bars_held: (k - t.entry_bar + 1) as u64,
    })
}

/// `x * k`, skipping the multiplication for the common `k == 1`.
#[inline]
fn scale_by(x: Decimal, k: Decimal) -> Decimal {
    if k == Decimal::ONE { x } else { x * k }
}
