//! Sweep kernels: many parameter sets of a simple signal strategy evaluated in
//! one pass over one instrument's bars, with the same trades as the event-driven
//! engine (`grodt_sim::run_backtest` with the strategy of `grodt-strategies`).
//!
//! The SMA crossover ([`sweep_sma`]) is the first kernel:
//!
//! - Indicators once: integer prefix sums of the raw closes ([`Series`]), so any
//!   window sum is two loads and a subtraction; the crossover is decided exactly
//!   on `sum_fast * slow - sum_slow * fast`, as `SmaCross` decides it (backtrader's
//!   `CrossOver`, the last non-zero difference). The sums run in `i64` when the
//!   data and the periods bound them below 2^62, in `i128` otherwise.
//! - Fills as the venue makes them: market orders at the next bar's open,
//!   entries sized `floor(fraction * equity / price)` to the quantity step with
//!   grodt-core's rounding, the venue's slippage and commission models
//!   (`FixedBps`, `Percentage`), its cost rounding, its minimum-size and margin
//!   refusals. Cash is the ledger's exact `Decimal`; fills are rare, so the
//!   exact arithmetic costs little per bar.
//!   Per time block a lane computes the sign of that difference at every bar
//!   in f64 SIMD lanes (exact below 2^53, checked once) as bit masks, and steps
//!   from crossing to crossing (`Masks`).
//! - Metrics without curves: a mark to market in `f64` feeds running sums
//!   (return moments, downside, peak and drawdown), closing fills feed the
//!   trade statistics; definitions are `grodt-analytics`' (`metrics::compute`).
//!   A held long position's return moments come from sums of the bar returns
//!   shared by every lane (`Held`), its peak and drawdown exactly as bar by bar.
//! - Layout: parameter sets in groups of [`GROUP`] lanes, each group walks the
//!   bars in time blocks of [`BLOCK`] bars so a block's prices stay in cache while
//!   every lane of the group passes over it; groups run on all cores with rayon
//!   and each set's result depends only on its own lane, so one core and many
//!   cores give identical results.
//!
//! Supported settings (others are refused, naming the field): next-open fills,
//! no participation cap, no latency, slippage none or fixed bps, commission none
//! or a percentage, zero borrow and financing rates.
//!
//! # Entry point for the optimizer and workers
//!
//! [`sweep`] takes what a study holds: a registry strategy name, parameter
//! sets as `name -> text` maps (parsed and checked by
//! `grodt_strategies::registry::parse`, defaults filled in), the engine's
//! `BacktestConfig` and the metrics settings; it returns one [`Outcome`] per
//! set in order. [`supports`] (and [`check`], with the reason) says beforehand
//! whether a strategy and config can be swept, so a caller sends the others to
//! the event engine:
//!
//! ```no_run
//! # use std::collections::BTreeMap;
//! # fn demo(series: &grodt_sweep::Series) -> Result<(), grodt_sweep::SweepError> {
//! let config = grodt_sim::BacktestConfig::default();
//! assert!(grodt_sweep::supports("sma_cross", &config));
//! let sets: Vec<BTreeMap<String, String>> = (5..=50)
//!     .map(|f| BTreeMap::from([("fast".into(), f.to_string()), ("slow".into(), "100".into())]))
//!     .collect();
//! let metrics = grodt_analytics::MetricsConfig::default();
//! let out = grodt_sweep::sweep("sma_cross", series, &sets, &config, &metrics, grodt_sweep::Threads::All)?;
//! assert_eq!(out.len(), sets.len());
//! # Ok(()) }
//! ```

use std::ops::{Mul, Sub};

use grodt_analytics::MetricsConfig;
use grodt_core::fixed::notional;
use grodt_core::rounding::{RoundingMode, round_money, round_quantity};
use grodt_core::{Bar, CoreError, Decimal, Instrument, Liquidity, Price, Quantity, Side};
use grodt_sim::models::{
    CommissionInput, CommissionModel, FixedBps, Percentage, SlippageInput, SlippageModel,
};
use grodt_sim::{BacktestConfig, CommissionSpec, FillTiming, LatencySpec, SlippageSpec};
use rayon::prelude::*;
use wide::f64x4;

mod api;
mod rules;
pub use api::{Outcome, STRATEGIES, check, supports, sweep, sweep_with_progress, trace};
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

/// Parameter sets per group (lanes walked together over each time block).
pub const GROUP: usize = 32;
/// Bars per time block.
pub const BLOCK: usize = 4096;

/// Why a sweep could not run.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A setting the kernel does not model.
    #[error("unsupported {field}: {reason}")]
    Unsupported {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Bad input.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The input.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Fixed-point arithmetic out of range.
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// One instrument's bars, prepared once for any number of sweeps.
#[derive(Clone, Debug)]
pub struct Series {
    inst: Instrument,
    ts: Vec<i64>,
    open: Vec<i64>,
    high: Vec<i64>,
    low: Vec<i64>,
    close: Vec<i64>,
    volume: Vec<i64>,
    /// Closes in price units, for the f64 mark to market.
    close_f: Vec<f64>,
    /// `prefix[t] = close[0] + ... + close[t - 1]` (raw).
    prefix: Vec<i128>,
    max_abs_close: i128,
    /// The shared sums of the bar returns (built on first use, see [`Held`]).
    held: std::sync::OnceLock<Option<Held>>,
}

impl Series {
    /// Prepares `bars` of `inst` (timestamps strictly increasing).
    pub fn new(inst: &Instrument, bars: &[Bar]) -> Result<Self, SweepError> {
        inst.validate()?;
        // The engine's bar checks (`venue::check_bar`): the sweep takes what it takes.
        let tick = inst.tick_size.raw();
        for (k, b) in bars.iter().enumerate() {
            let bad = |reason: &str| SweepError::Invalid {
                field: "bars",
                reason: format!("bar {k}: {reason}"),
            };
            b.check().map_err(bad)?;
            if k > 0 && b.ts <= bars[k - 1].ts {
                return Err(bad("timestamp not after the previous bar"));
            }
            if tick > 1
                && [b.open, b.high, b.low, b.close]
                    .iter()
                    .any(|p| p % tick != 0)
            {
                return Err(bad("price not on the tick"));
            }
        }
        let scale = grodt_core::rounding::pow10_f64(inst.price_precision);
        let mut prefix = Vec::with_capacity(bars.len() + 1);
        let mut acc = 0i128;
        prefix.push(acc);
        for b in bars {
            acc += i128::from(b.close);
            prefix.push(acc);
        }
        #[allow(
            clippy::cast_precision_loss,
            reason = "closes feed the f64 mark to market only"
        )]
        let close_f = bars.iter().map(|b| b.close as f64 / scale).collect();
        Ok(Self {
            inst: inst.clone(),
            ts: bars.iter().map(|b| b.ts).collect(),
            open: bars.iter().map(|b| b.open).collect(),
            high: bars.iter().map(|b| b.high).collect(),
            low: bars.iter().map(|b| b.low).collect(),
            close: bars.iter().map(|b| b.close).collect(),
            volume: bars.iter().map(|b| b.volume).collect(),
            close_f,
            prefix,
            max_abs_close: bars
                .iter()
                .map(|b| i128::from(b.close).abs())
                .max()
                .unwrap_or(0),
            held: std::sync::OnceLock::new(),
        })
    }

    /// Number of bars.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// True when there are no bars.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// The instrument.
    pub fn instrument(&self) -> &Instrument {
        &self.inst
    }
}

/// One SMA-crossover parameter set (`grodt_strategies::SmaCrossParams` without
/// the fraction, which is shared by a sweep).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SmaParams {
    /// Fast SMA period.
    pub fast: u32,
    /// Slow SMA period.
    pub slow: u32,
    /// Also go short on a downward cross.
    pub long_short: bool,
}

impl SmaParams {
    /// Every `fast < slow` pair of the two ranges, fast-major.
    pub fn grid(
        fast: impl IntoIterator<Item = u32>,
        slow: impl IntoIterator<Item = u32> + Clone,
        long_short: bool,
    ) -> Vec<Self> {
        let mut out = Vec::new();
        for f in fast {
            for s in slow.clone() {
                if f < s {
                    out.push(Self {
                        fast: f,
                        slow: s,
                        long_short,
                    });
                }
            }
        }
        out
    }
}

/// What a sweep shares across its parameter sets.
#[derive(Clone, Debug)]
pub struct SweepConfig {
    /// The engine settings the trades must match (see the module doc for those supported).
    pub backtest: BacktestConfig,
    /// Fraction of equity per entry (`SmaCrossParams::fraction`).
    pub fraction: Decimal,
    /// Periods per year, risk-free and required return of the metrics.
    pub metrics: MetricsConfig,
    /// Book cash in integers where the settings allow (no commission, fraction
    /// 1, margin 1): the same exact results, faster fills. `false` forces the
    /// `Decimal` book everywhere (the parity tests run both).
    pub integer_book: bool,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            backtest: BacktestConfig::default(),
            fraction: Decimal::ONE,
            metrics: MetricsConfig::default(),
            integer_book: true,
        }
    }
}

/// Metrics of one parameter set, as `grodt_analytics::metrics::compute` defines
/// them over the engine's equity curve (one point per bar) and closed trades.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepMetrics {
    /// Final over first equity, minus one.
    pub total_return: f64,
    /// Compound annual growth rate.
    pub cagr: f64,
    /// Annualised Sharpe ratio (`None` when returns do not vary).
    pub sharpe: Option<f64>,
    /// Annualised Sortino ratio (`None` without downside).
    pub sortino: Option<f64>,
    /// Maximum drawdown (<= 0).
    pub max_drawdown: f64,
    /// CAGR over the absolute maximum drawdown (`None` without drawdown).
    pub calmar: Option<f64>,
    /// Winning closed trades over closed trades (`None` without closed trades).
    pub win_rate: Option<f64>,
    /// Gross profit over gross loss of closed trades (`None` without a loss).
    pub profit_factor: Option<f64>,
}

/// The result of one parameter set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SmaOutcome {
    /// The parameter set.
    pub params: SmaParams,
    /// Exact equity at the last close (cash plus the position at the last close).
    pub final_equity: Decimal,
    /// Round trips, an open one at the end included (the engine's `trades.len()`).
    pub trades: u32,
    /// Closed round trips.
    pub closed_trades: u32,
    /// Fills.
    pub fills: u32,
    /// Orders the venue would refuse (size below the minimum, margin, ...).
    pub rejected: u32,
    /// Metrics.
    pub metrics: SweepMetrics,
}

/// What one lane ends with, whatever its strategy.
#[derive(Clone, Debug, PartialEq)]
struct Tally {
    final_equity: Decimal,
    trades: u32,
    closed_trades: u32,
    fills: u32,
    rejected: u32,
    metrics: SweepMetrics,
}

impl Tally {
    fn sma(self, params: SmaParams) -> SmaOutcome {
        SmaOutcome {
            params,
            final_equity: self.final_equity,
            trades: self.trades,
            closed_trades: self.closed_trades,
            fills: self.fills,
            rejected: self.rejected,
            metrics: self.metrics,
        }
    }
}

/// A fill of a traced run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepFill {
    /// Bar time.
    pub ts: i64,
    /// Buy or sell.
    pub side: Side,
    /// Quantity.
    pub qty: Quantity,
    /// Execution price.
    pub price: Price,
    /// Commission.
    pub commission: Decimal,
}

/// A closed round trip of a traced run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepTrade {
    /// `Buy` for a long trade, `Sell` for a short one.
    pub direction: Side,
    /// Entry fill time.
    pub entry_ts: i64,
    /// Exit fill time.
    pub exit_ts: i64,
    /// Quantity.
    pub qty: Quantity,
    /// Entry price.
    pub entry_price: Price,
    /// Exit price.
    pub exit_price: Price,
    /// PnL after commissions.
    pub net_pnl: Decimal,
}

/// Everything one traced parameter set did (for parity checks and the top K).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    /// Every fill, in order.
    pub fills: Vec<SweepFill>,
    /// Closed round trips, in order.
    pub trades: Vec<SweepTrade>,
    /// Refused orders: bar time and side.
    pub rejected: Vec<(i64, Side)>,
    /// Equity at every close (f64 mark to market).
    pub equity: Vec<f64>,
}

/// Receives what a lane does; the sweep's recorder does nothing.
trait Recorder {
    /// Whether the recorder keeps anything (the batch skips building what it would drop).
    const RECORDS: bool = true;
    fn fill(&mut self, fill: SweepFill, entry: Option<&SweepFill>, pnl: Option<Decimal>);
    fn rejected(&mut self, ts: i64, side: Side);
    fn equity(&mut self, e: f64);
}

struct NoRecord;

impl Recorder for NoRecord {
    const RECORDS: bool = false;
    #[inline(always)]
    fn fill(&mut self, _: SweepFill, _: Option<&SweepFill>, _: Option<Decimal>) {}
    #[inline(always)]
    fn rejected(&mut self, _: i64, _: Side) {}
    #[inline(always)]
    fn equity(&mut self, _: f64) {}
}

impl Recorder for Trace {
    fn fill(&mut self, fill: SweepFill, entry: Option<&SweepFill>, pnl: Option<Decimal>) {
        if let (Some(e), Some(net_pnl)) = (entry, pnl) {
            self.trades.push(SweepTrade {
                direction: e.side,
                entry_ts: e.ts,
                exit_ts: fill.ts,
                qty: e.qty,
                entry_price: e.price,
                exit_price: fill.price,
                net_pnl,
            });
        }
        self.fills.push(fill);
    }
    fn rejected(&mut self, ts: i64, side: Side) {
        self.rejected.push((ts, side));
    }
    fn equity(&mut self, e: f64) {
        self.equity.push(e);
    }
}

/// Costs and sizing shared by every lane, checked once.
#[derive(Clone, Debug)]
struct Costs {
    slippage: Option<FixedBps>,
    commission: Option<Percentage>,
    cost_dp: u32,
    enforce_margin: bool,
    fraction: Decimal,
}

impl Costs {
    fn of(config: &SweepConfig, inst: &Instrument) -> Result<Self, SweepError> {
        let b = &config.backtest;
        b.validate().map_err(|e| SweepError::Invalid {
            field: "backtest",
            reason: e.to_string(),
        })?;
        config.metrics.validate().map_err(|e| SweepError::Invalid {
            field: "metrics",
            reason: e.to_string(),
        })?;
        let no = |field: &'static str, reason: &str| {
            Err(SweepError::Unsupported {
                field,
                reason: reason.into(),
            })
        };
        if b.fill_timing != FillTiming::NextOpen {
            return no("fill_timing", "the sweep fills at the next open only");
        }
        if b.max_participation.is_some() {
            return no("max_participation", "no participation cap in the sweep");
        }
        if b.latency != (LatencySpec::Fixed { nanos: 0 }) {
            return no("latency", "no latency in the sweep");
        }
        if !b.borrow_rate.is_zero() || inst.borrow.annual_rate.is_some_and(|r| !r.is_zero()) {
            return no("borrow_rate", "borrow accrual is not modelled by the sweep");
        }
        if !b.financing_rate.is_zero() {
            return no("financing_rate", "financing is not modelled by the sweep");
        }
        if b.trade_from.is_some() {
            return no(
                "trade_from",
                "the sweep trades from the first bar (no warm-up)",
            );
        }
        let slippage = match b.slippage {
            SlippageSpec::None => None,
            SlippageSpec::FixedBps { bps } => Some(FixedBps { bps }),
            _ => return no("slippage", "the sweep models none or fixed bps"),
        };
        let commission = match &b.commission {
            CommissionSpec::None => None,
            CommissionSpec::Percentage { rate } => Some(Percentage { rate: *rate }),
            _ => return no("commission", "the sweep models none or a percentage"),
        };
        if config.fraction <= Decimal::ZERO {
            return Err(SweepError::Invalid {
                field: "fraction",
                reason: "must be positive".into(),
            });
        }
        Ok(Self {
            slippage,
            commission,
            cost_dp: b.cost_dp,
            enforce_margin: b.enforce_margin,
            fraction: config.fraction,
        })
    }

    /// The venue's taker price: the model's, never better than the reference.
    fn price(&self, inst: &Instrument, side: Side, ref_raw: i64, qty_raw: i64) -> i64 {
        let Some(m) = self.slippage else {
            return ref_raw;
        };
        let p = m.apply(&SlippageInput {
            instrument: inst,
            side,
            price_raw: ref_raw,
            qty_raw,
            volume_share: 0.0,
        });
        match side {
            Side::Buy => p.max(ref_raw),
            Side::Sell => p.min(ref_raw),
        }
    }

    /// The venue's commission: the model's charge, rounded up to `cost_dp`.
    fn fee(&self, side: Side, qty: Quantity, price: Price, n: Decimal, ts: i64) -> Decimal {
        let Some(mut m) = self.commission else {
            return Decimal::ZERO;
        };
        let charge = m.charge(&CommissionInput {
            side,
            qty,
            price,
            notional: n,
            liquidity: Liquidity::Taker,
            ts,
        });
        round_cost(charge.fee, self.cost_dp, RoundingMode::Ceil)
    }
}

/// The venue's cost rounding (`venue::round_cost`).
fn round_cost(x: Decimal, dp: u32, mode: RoundingMode) -> Decimal {
    if x.is_zero() && x.scale() == 0 && x.is_sign_positive() {
        return x;
    }
    round_money(x.max(Decimal::ZERO), dp, mode)
}

/// The venue's `scale_by`.
fn scale_by(x: Decimal, k: Decimal) -> Decimal {
    if k == Decimal::ONE { x } else { x * k }
}

/// Powers of ten, exact in f64.
const P10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A Decimal as f64 for the mark to market and the trade statistics (within an
/// ulp or two; `Decimal::to_f64` is several times slower and fills are hot).
fn to_f64(d: Decimal) -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "statistics only")]
    let m = d.mantissa() as f64;
    match d.scale() {
        0 => m,
        // 10^s is exact in f64 up to 10^22.
        s @ 1..=22 => m / P10[s as usize],
        _ => d.to_f64().unwrap_or(f64::NAN),
    }
}

/// Integer type of the window sums.
trait Int: Copy + Sub<Output = Self> + Mul<Output = Self> + PartialOrd + Default + Send + Sync {
    fn from_i128(x: i128) -> Self;
}

impl Int for i64 {
    #[allow(
        clippy::cast_possible_truncation,
        reason = "used only when the sums are bounded below 2^62"
    )]
    fn from_i128(x: i128) -> Self {
        x as i64
    }
}

impl Int for i128 {
    fn from_i128(x: i128) -> Self {
        x
    }
}

/// What every lane reads.
struct Ctx<'a, I: ?Sized> {
    series: &'a Series,
    /// The indicators the lanes' rule reads (computed once per sweep).
    ind: &'a I,
    costs: &'a Costs,
    size_scale: f64,
    /// The integer cash book, when the settings allow it (see [`IntBook::of`]).
    int: Option<IntBook>,
    /// The starting cash in the integer book's units.
    int_start: i128,
    /// The shared sums for held positions' marks, when the metrics allow them
    /// (no required return: the downside is then the falling bars').
    held: Option<&'a Held>,
}

/// Cash as an `i128` count of `10^-scale` units, `scale` the notional's
/// (price plus size precision): every amount the ledger books without a
/// commission is such a count, so the integer sum is the ledger's exact
/// `Decimal` sum (kept below `10^27`, far inside `Decimal`'s 96 bits, so the
/// ledger never rounds either), at a fraction of the cost per fill.
#[derive(Clone, Copy, Debug)]
struct IntBook {
    scale: u32,
    /// `10^scale` as f64, for the mark to market.
    unit: f64,
    /// Equity below this sizes exactly by integer division (`size_exact`'s bound).
    exact_size_below: i128,
}

/// Counts beyond this leave the integer book (an error: no run gets there).
const INT_BOUND: i128 = 1_000_000_000_000_000_000_000_000_000;

impl IntBook {
    /// Available with no commission (fees are rounded Decimals), fraction 1,
    /// margin 1 (or not enforced) and a starting cash on the notional's scale.
    fn of(costs: &Costs, inst: &Instrument, cash: Decimal) -> Option<(Self, i128)> {
        let scale = u32::from(inst.price_precision) + u32::from(inst.size_precision);
        if costs.commission.is_some()
            || costs.fraction != Decimal::ONE
            || (costs.enforce_margin && inst.margin.initial != Decimal::ONE)
            || cash.scale() > scale
            || scale > 18
        {
            return None;
        }
        let start = cash
            .mantissa()
            .checked_mul(10i128.pow(scale - cash.scale()))?;
        if start.abs() >= INT_BOUND {
            return None;
        }
        Some((
            Self {
                scale,
                unit: grodt_core::rounding::pow10_f64(u8::try_from(scale).ok()?),
                exact_size_below: 10i128.pow(26) / 10i128.pow(scale),
            },
            start,
        ))
    }

    fn decimal(&self, raw: i128) -> Result<Decimal, SweepError> {
        Decimal::try_from_i128_with_scale(raw, self.scale)
            .map_err(|_| SweepError::Core(CoreError::Overflow { what: "sweep cash" }))
    }

    fn as_f64(self, raw: i128) -> f64 {
        i128_to_f64(raw) / self.unit
    }
}

/// `x as f64` (correctly rounded either way), by the hardware's `i64`
/// conversion when `x` fits: `i128`'s goes through a library routine.
/// (`black_box`: without it LLVM folds the two equal branches back into the
/// library call.)
#[allow(clippy::cast_precision_loss, reason = "f64 statistics only")]
#[inline(always)]
fn i128_to_f64(x: i128) -> f64 {
    match i64::try_from(x) {
        Ok(v) => v as f64,
        Err(_) => std::hint::black_box(x) as f64,
    }
}

/// `floor(a / b)` to a multiple of `step` for `a >= 0`, `b > 0`, `step > 0`
/// (an entry's size in units), by `i64` division when the operands fit: an
/// `i128` division is a library call several times slower.
#[inline(always)]
fn units_to_step(a: i128, b: i64, step: i64) -> i128 {
    match i64::try_from(a) {
        Ok(a) => {
            let u = a / b;
            i128::from(u - u % step)
        }
        Err(_) => {
            let u = a / i128::from(b);
            u - u % i128::from(step)
        }
    }
}

/// `qty_raw * price_raw * multiplier`, the notional's count, checked against the bound.
fn int_value(inst: &Instrument, qty_raw: i64, price_raw: i64) -> Result<i128, SweepError> {
    let v = i128::from(qty_raw) * i128::from(price_raw) * i128::from(inst.multiplier);
    if v.abs() >= INT_BOUND {
        return Err(SweepError::Core(CoreError::Overflow {
            what: "sweep notional",
        }));
    }
    Ok(v)
}

/// A strategy's decisions in a lane: what it decides at a close, and what
/// that decision sends to the venue at the next open. The fills, sizing,
/// costs, books and metrics are the lane's, shared by every strategy.
trait Rule: Copy + Send + Sync {
    /// What the rules of one sweep share, computed once (prefix sums, channels, RSI).
    type Ind: ?Sized + Sync;
    /// The order decided at bar `t`'s close with the position `pos` (raw,
    /// signed) after that bar's fills: 0 for none, else a code for [`Rule::orders`].
    fn decide(&mut self, ind: &Self::Ind, series: &Series, t: usize, pos: i64) -> i8;
    /// What the code `sig` sends at the next open, in the strategy's order:
    /// whether to close the position `pos` first, then the side of an entry.
    fn orders(&self, sig: i8, pos: i64) -> (bool, Option<Side>);
    /// Prepares the decisions of bars `t0..t1` (a time block) in `masks`, for
    /// a rule that decides a block at a time; the others switch the masks off.
    fn prepare(
        &self,
        _ind: &Self::Ind,
        _series: &Series,
        _t0: usize,
        _t1: usize,
        masks: &mut Masks,
    ) {
        masks.on = false;
    }
    /// The first bar `u` of `t..t1` whose decision with the position `pos`
    /// (constant until an order fills) sends an order, with the order's code;
    /// the rule's state is then as after deciding every bar up to `u` (or
    /// `t1 - 1` when none does).
    #[inline(always)]
    fn next_order(
        &mut self,
        ind: &Self::Ind,
        series: &Series,
        _masks: &Masks,
        t: usize,
        t1: usize,
        pos: i64,
    ) -> Option<(usize, i8)> {
        decide_each(self, ind, series, t, t1, pos)
    }
}

/// [`Rule::next_order`] bar by bar.
#[inline(always)]
fn decide_each<R: Rule>(
    rule: &mut R,
    ind: &R::Ind,
    series: &Series,
    t: usize,
    t1: usize,
    pos: i64,
) -> Option<(usize, i8)> {
    (t..t1).find_map(|u| {
        let s = rule.decide(ind, series, u, pos);
        (s != 0).then_some((u, s))
    })
}

/// The sign of a crossover's difference at every bar of a time block, as bit
/// masks (bit `t - t0` of `pos` when positive, of `neg` when negative): a
/// lane then finds its next crossing a word (64 bars) at a time.
#[derive(Debug, Default)]
struct Masks {
    t0: usize,
    pos: Vec<u64>,
    neg: Vec<u64>,
    /// Whether the lane's rule filled the masks for this block.
    on: bool,
}

impl Masks {
    /// Zero masks for the block `t0..t1`.
    fn reset(&mut self, t0: usize, t1: usize) {
        let words = (t1 - t0).div_ceil(64);
        self.t0 = t0;
        self.pos.clear();
        self.pos.resize(words, 0);
        self.neg.clear();
        self.neg.resize(words, 0);
        self.on = true;
    }

    fn set(&mut self, t: usize, positive: bool, negative: bool) {
        let (w, b) = ((t - self.t0) / 64, (t - self.t0) % 64);
        self.pos[w] |= u64::from(positive) << b;
        self.neg[w] |= u64::from(negative) << b;
    }

    /// The first bar of `from..to` whose bit is set in `bits` (`pos` or `neg`).
    #[inline(always)]
    fn first(&self, bits: &[u64], from: usize, to: usize) -> Option<usize> {
        let (mut i, end) = (from - self.t0, to - self.t0);
        while i < end {
            let w = i / 64;
            let m = bits[w] >> (i % 64);
            if m != 0 {
                let j = i + m.trailing_zeros() as usize;
                return (j < end).then_some(j + self.t0);
            }
            i = (w + 1) * 64;
        }
        None
    }
}

/// The signs of `sum_fast * slow - sum_slow * fast` at bars `start..t1` into
/// `m` (zeroed for its block), on `pf`, the prefix sums of the closes as f64:
/// the caller checked every prefix and every product an integer below 2^53,
/// so each difference, product and comparison is exact, the integer
/// decision's. Whole words four bars to a SIMD lane, ragged ends bar by bar.
fn sma_signs(pf: &[f64], fast: usize, slow: usize, start: usize, t1: usize, m: &mut Masks) {
    #[allow(clippy::cast_precision_loss, reason = "periods, far below 2^53")]
    let (fk, sk) = (fast as f64, slow as f64);
    let one = |t: usize| {
        let hi = pf[t + 1];
        let a = (hi - pf[t + 1 - fast]) * sk;
        let b = (hi - pf[t + 1 - slow]) * fk;
        (a > b, a < b)
    };
    let t0 = m.t0;
    let word_start = t0 + (start - t0).div_ceil(64) * 64;
    let mut t = start;
    while t < t1.min(word_start) {
        let (p, n) = one(t);
        m.set(t, p, n);
        t += 1;
    }
    let (fv, sv) = (f64x4::splat(fk), f64x4::splat(sk));
    while t + 64 <= t1 {
        let h = &pf[t + 1..t + 65];
        let lf = &pf[t + 1 - fast..t + 65 - fast];
        let ls = &pf[t + 1 - slow..t + 65 - slow];
        let (mut pm, mut nm) = (0u64, 0u64);
        for k in (0..64).step_by(4) {
            let x = |s: &[f64]| f64x4::from([s[k], s[k + 1], s[k + 2], s[k + 3]]);
            let hi = x(h);
            let a = (hi - x(lf)) * sv;
            let b = (hi - x(ls)) * fv;
            pm |= u64::from(a.simd_gt(b).to_bitmask()) << k;
            nm |= u64::from(a.simd_lt(b).to_bitmask()) << k;
        }
        let w = (t - t0) / 64;
        m.pos[w] = pm;
        m.neg[w] = nm;
        t += 64;
    }
    while t < t1 {
        let (p, n) = one(t);
        m.set(t, p, n);
        t += 1;
    }
}

const NONE: i8 = 2;

/// The SMA rules' indicators: the integer prefix sums of the closes, and the
/// same in f64 (`pf`, empty unless every prefix and every window product is
/// an integer below 2^53) for the signal masks.
struct SmaInd<P> {
    p: Vec<P>,
    pf: Vec<f64>,
}

/// The SMA crossover (`SmaCross`) as a lane's rule: backtrader's `CrossOver` on
/// the exact difference `sum_fast * slow - sum_slow * fast` over the integer
/// prefix sums `P` of the closes.
#[derive(Clone, Copy, Debug)]
struct SmaRule<P> {
    fast: usize,
    slow: usize,
    fast_k: P,
    slow_k: P,
    /// The last non-zero sign of the difference (`NONE` before the first).
    last: i8,
    long_short: bool,
}

impl<P: Int> SmaRule<P> {
    fn new(params: SmaParams) -> Self {
        Self {
            fast: params.fast as usize,
            slow: params.slow as usize,
            fast_k: P::from_i128(i128::from(params.fast)),
            slow_k: P::from_i128(i128::from(params.slow)),
            last: NONE,
            long_short: params.long_short,
        }
    }
}

impl<P: Int> Rule for SmaRule<P> {
    type Ind = SmaInd<P>;

    #[inline(always)]
    fn decide(&mut self, ind: &SmaInd<P>, _: &Series, t: usize, pos: i64) -> i8 {
        if t + 1 < self.slow {
            return 0;
        }
        let p = &ind.p;
        let hi = p[t + 1];
        let d =
            (hi - p[t + 1 - self.fast]) * self.slow_k - (hi - p[t + 1 - self.slow]) * self.fast_k;
        let zero = P::default();
        crossing(
            &mut self.last,
            i8::from(d > zero) - i8::from(d < zero),
            pos,
            self.long_short,
        )
    }

    fn orders(&self, sig: i8, pos: i64) -> (bool, Option<Side>) {
        cross_orders(sig, pos, self.long_short)
    }

    fn prepare(&self, ind: &SmaInd<P>, _: &Series, t0: usize, t1: usize, masks: &mut Masks) {
        if ind.pf.is_empty() {
            masks.on = false;
            return;
        }
        masks.reset(t0, t1);
        // No decision before the slow window fills: no sign, as no crossing.
        sma_signs(
            &ind.pf,
            self.fast,
            self.slow,
            t0.max(self.slow - 1),
            t1,
            masks,
        );
    }

    /// On the masks: the next bar whose sign is the opposite of the last
    /// non-zero one is the next crossing (zeros never cross), one word scan
    /// per crossing; crossings that send nothing only turn `last`.
    #[inline(always)]
    fn next_order(
        &mut self,
        ind: &SmaInd<P>,
        series: &Series,
        masks: &Masks,
        t: usize,
        t1: usize,
        pos: i64,
    ) -> Option<(usize, i8)> {
        if !masks.on {
            return decide_each(self, ind, series, t, t1, pos);
        }
        let mut t = t;
        loop {
            let (u, sd) = match self.last {
                1 => (masks.first(&masks.neg, t, t1)?, -1),
                -1 => (masks.first(&masks.pos, t, t1)?, 1),
                _ => match (
                    masks.first(&masks.pos, t, t1),
                    masks.first(&masks.neg, t, t1),
                ) {
                    (Some(p), Some(n)) if p < n => (p, 1),
                    (_, Some(n)) => (n, -1),
                    (Some(p), None) => (p, 1),
                    (None, None) => return None,
                },
            };
            let s = crossing(&mut self.last, sd, pos, self.long_short);
            if s != 0 {
                return Some((u, s));
            }
            t = u + 1;
        }
    }
}

/// backtrader's `CrossOver` on the sign `sd` of the averages' difference, with
/// `last` the last non-zero sign (`NONE` before the first): the order a cross
/// sends for the position `pos`, or 0.
#[inline(always)]
fn crossing(last: &mut i8, sd: i8, pos: i64, long_short: bool) -> i8 {
    let prev = *last;
    if sd != 0 || prev == NONE {
        *last = sd;
    }
    if sd != 0 && sd == -prev {
        let act = if sd > 0 {
            pos <= 0
        } else {
            pos > 0 || (long_short && pos >= 0)
        };
        if act {
            return sd;
        }
    }
    0
}

/// What a cross sends (`SmaCross` and `EmaCross` alike): up covers a short,
/// then goes long (unless long already); down sells a long, then goes short
/// when long-short.
fn cross_orders(sig: i8, pos: i64, long_short: bool) -> (bool, Option<Side>) {
    if sig > 0 {
        (pos < 0, (pos <= 0).then_some(Side::Buy))
    } else {
        (pos > 0, (long_short && pos >= 0).then_some(Side::Sell))
    }
}

/// The running sums of a lane's f64 mark to market (see [`Marks::mark`]).
#[derive(Clone, Copy, Debug)]
struct Marks {
    eprev: f64,
    s1: f64,
    s2: f64,
    s3: f64,
    peak: f64,
    mdd: f64,
    /// Bars with a zero return (each adds `min(-required, 0)^2` to the downside).
    flat: u64,
}

impl Marks {
    fn new(e: f64) -> Self {
        Self {
            eprev: e,
            s1: 0.0,
            s2: 0.0,
            s3: 0.0,
            peak: e,
            mdd: 0.0,
            flat: 0,
        }
    }

    /// One close marked at equity `e`: the return's moments, the downside
    /// below `req`, the peak and the deepest drawdown.
    #[inline(always)]
    fn mark(&mut self, e: f64, req: f64) {
        if e == self.eprev {
            // Flat (or unchanged): a zero return, counted for the downside.
            self.flat += 1;
            return;
        }
        let r = e / self.eprev - 1.0;
        self.eprev = e;
        self.s1 += r;
        self.s2 += r * r;
        let d = (r - req).min(0.0);
        self.s3 += d * d;
        self.trough(e);
    }

    /// The peak and the deepest drawdown after a mark at `e`.
    #[inline(always)]
    fn trough(&mut self, e: f64) {
        if e >= self.peak {
            self.peak = e;
        } else if e < self.peak * (1.0 + self.mdd) {
            // Only a deeper trough divides.
            let dd = (e - self.peak) / self.peak;
            if dd < self.mdd {
                self.mdd = dd;
            }
        }
    }

    /// Bars `a..b` (`a >= 1`) of a long position of `q` units beside the cash
    /// `cash`, held through bar `a - 1`: each return is the bar's `x` shrunk by
    /// the cash, `x / (1 + cash / (q c))`, so the return moments are a few
    /// differences of [`Held`]'s sums (the same returns as [`Self::mark`]'s,
    /// summed in another order: equal within float rounding; zero returns are
    /// not counted in `flat`, which only a required return reads). The peak
    /// and the drawdown are bar by bar's exactly: the bars are scanned only
    /// when their lowest mark under their highest peak could deepen it.
    #[inline(always)]
    fn held(&mut self, h: &Held, (cash, q): (f64, f64), close: &[f64], a: usize, b: usize) {
        let delta = cash / q;
        let (k1, k2) = (-delta, delta * delta);
        let (pa, pb) = (&h.sums[a], &h.sums[b]);
        let d = |k: usize| pb[k] - pa[k];
        self.s1 += d(0) + k1 * d(1) + k2 * d(2);
        self.s2 += d(3) + 2.0 * k1 * d(4) + 3.0 * k2 * d(5);
        self.s3 += d(6) + 2.0 * k1 * d(7) + 3.0 * k2 * d(8);
        let bars = &close[a..b];
        let (lo, hi) = min_max(bars);
        let (e_lo, e_hi) = (cash + q * lo, cash + q * hi);
        let top = self.peak.max(e_hi);
        // The margin covers the rounding of the bar-by-bar drawdowns.
        if e_lo > 0.0 && e_lo / top - 1.0 > self.mdd + 1e-12 {
            self.peak = top;
        } else {
            for &c in bars {
                self.trough(cash + q * c);
            }
        }
        self.eprev = cash + q * close[b - 1];
    }
}

/// The lowest and highest of `c`, four lanes at a time (`fast_min`: no NaN
/// handling, as [`Held::of`] checked every close finite).
fn min_max(c: &[f64]) -> (f64, f64) {
    let (mut lo, mut hi) = (f64x4::splat(f64::INFINITY), f64x4::splat(f64::NEG_INFINITY));
    let mut quads = c.chunks_exact(4);
    for x in &mut quads {
        let v = f64x4::from([x[0], x[1], x[2], x[3]]);
        lo = lo.fast_min(v);
        hi = hi.fast_max(v);
    }
    let (lo, hi) = (lo.to_array(), hi.to_array());
    let (mut l, mut h) = (
        lo[0].min(lo[1]).min(lo[2].min(lo[3])),
        hi[0].max(hi[1]).max(hi[2].max(hi[3])),
    );
    for &x in quads.remainder() {
        l = l.min(x);
        h = h.max(x);
    }
    (l, h)
}

/// Sums of the bar returns shared by every lane's held long positions (see
/// [`Marks::held`]): with `x_u = c_u / c_(u-1) - 1` and `v_u = 1 / c_(u-1)`,
/// `sums[i]` holds, over bars `1..i`, the sums of `x v^k` (k = 0..2, at 0..3),
/// of `x^2 v^k` (at 3..6) and of `x^2 v^k` over the falling bars (the
/// downside, at 6..9). One row per bar, so a hold reads two rows (a cache
/// line or two each) rather than nine columns.
#[derive(Clone, Debug)]
struct Held {
    sums: Vec<[f64; 9]>,
    /// The largest `v` (one over the lowest close).
    vmax: f64,
}

impl Held {
    /// The sums over the closes `close` (in price units); `None` unless every
    /// close is positive and finite.
    fn of(close: &[f64]) -> Option<Self> {
        if close.iter().any(|&c| !(c > 0.0 && c.is_finite())) {
            return None;
        }
        let n = close.len();
        let mut sums = vec![[0.0; 9]; n + 1];
        let mut vmax = 0.0f64;
        for u in 1..n {
            let v = 1.0 / close[u - 1];
            vmax = vmax.max(v);
            let x = (close[u] - close[u - 1]) * v;
            let (x2, fall) = (x * x, x < 0.0);
            let (prev, mut row) = (sums[u], sums[u]);
            let mut vk = 1.0;
            for k in 0..3 {
                row[k] = prev[k] + x * vk;
                row[3 + k] = prev[3 + k] + x2 * vk;
                row[6 + k] = prev[6 + k] + if fall { x2 * vk } else { 0.0 };
                vk *= v;
            }
            sums[u + 1] = row;
        }
        Some(Self { sums, vmax })
    }

    /// Whether a position of `q` units beside the cash `cash` is long with a
    /// residue small enough that three terms of `1 / (1 + cash / (q c))`
    /// leave under 2^-52 of each return.
    fn fits(&self, cash: f64, q: f64) -> bool {
        q > 0.0 && (cash / q).abs() * self.vmax <= 1.0 / f64::from(1u32 << 18)
    }
}

/// One parameter set's state.
#[derive(Clone, Debug)]
struct Lane<R> {
    // hot: read every bar
    rule: R,
    pending: i8,
    pos: i64,
    cash_f: f64,
    q_f: f64,
    m: Marks,
    // cold: at fills
    cash: Decimal,
    trade_cash: Decimal,
    /// The integer book's cash and cash at the trade's entry (see [`IntBook`]).
    cash_i: i128,
    trade_cash_i: i128,
    entry: Option<SweepFill>,
    fills: u32,
    closed: u32,
    wins: u32,
    rejected: u32,
    gross_profit: f64,
    gross_loss: f64,
    first_e: f64,
}

impl<R: Rule> Lane<R> {
    fn new(rule: R, cash: Decimal, cash_i: i128) -> Self {
        let e = to_f64(cash);
        Self {
            rule,
            pending: 0,
            pos: 0,
            cash_f: e,
            q_f: 0.0,
            m: Marks::new(e),
            cash,
            trade_cash: cash,
            cash_i,
            trade_cash_i: cash_i,
            entry: None,
            fills: 0,
            closed: 0,
            wins: 0,
            rejected: 0,
            gross_profit: 0.0,
            gross_loss: 0.0,
            first_e: e,
        }
    }

    /// Bars `t0..t1`: the fills at each open, the mark at the close, the signal.
    #[inline(always)]
    fn run<W: Recorder>(
        &mut self,
        cx: &Ctx<'_, R::Ind>,
        (t0, t1): (usize, usize),
        req: f64,
        masks: &mut Masks,
        rec: &mut W,
    ) -> Result<(), SweepError> {
        let close_f = &cx.series.close_f;
        let (ind, series) = (cx.ind, cx.series);
        // The hot state in locals (registers), written back around the rare fill.
        let mut rule = self.rule;
        rule.prepare(ind, series, t0, t1, masks);
        let (mut pending, mut pos) = (self.pending, self.pos);
        let (mut cash_f, mut q_f) = (self.cash_f, self.q_f);
        let mut m = self.m;
        let mut t = t0;
        while t < t1 {
            if pending != 0 {
                (self.rule, self.pending) = (rule, pending);
                self.fill(cx, t, rec)?;
                (pos, cash_f, q_f) = (self.pos, self.cash_f, self.q_f);
            }
            // The position holds up to the next order's decision (at `end - 1`);
            // its bars are marked, then the order fills at the next open.
            let (end, order) = match rule.next_order(ind, series, masks, t, t1, pos) {
                Some((u, s)) => (u + 1, s),
                None => (t1, 0),
            };
            if pos == 0 {
                // Flat: the equity is the cash, a return only on the first
                // bar after a fill, then zero returns.
                if m.eprev != cash_f {
                    rec.equity(cash_f);
                    m.mark(cash_f, req);
                    t += 1;
                }
                for _ in t..end {
                    rec.equity(cash_f);
                }
                m.flat += (end - t) as u64;
            } else {
                // The first bar's return runs from before the fill (or the
                // block); the rest are the held position's own.
                let e = cash_f + q_f * close_f[t];
                rec.equity(e);
                m.mark(e, req);
                let held = cx.held.filter(|h| h.fits(cash_f, q_f));
                if let (Some(h), true) = (held, t + 1 < end) {
                    if W::RECORDS {
                        for &c in &close_f[t + 1..end] {
                            rec.equity(cash_f + q_f * c);
                        }
                    }
                    m.held(h, (cash_f, q_f), close_f, t + 1, end);
                } else {
                    for &c in &close_f[t + 1..end] {
                        let e = cash_f + q_f * c;
                        rec.equity(e);
                        m.mark(e, req);
                    }
                }
            }
            pending = order;
            t = end;
        }
        self.rule = rule;
        (self.pending, self.pos) = (pending, pos);
        (self.cash_f, self.q_f, self.m) = (cash_f, q_f, m);
        Ok(())
    }

    /// The orders decided at the previous close, filled at bar `t`'s open in the
    /// order the strategy submits them (close first, then the entry).
    #[inline(never)]
    fn fill<W: Recorder>(
        &mut self,
        cx: &Ctx<'_, R::Ind>,
        t: usize,
        rec: &mut W,
    ) -> Result<(), SweepError> {
        let sig = std::mem::take(&mut self.pending);
        let pos0 = self.pos;
        let (close, enter) = self.rule.orders(sig, pos0);
        if close && pos0 != 0 {
            let side = if pos0 > 0 { Side::Sell } else { Side::Buy };
            self.close(cx, t, side, rec)?;
        }
        if let Some(side) = enter {
            self.enter(cx, t, side, rec)?;
        }
        let inst = &cx.series.inst;
        #[allow(clippy::cast_precision_loss, reason = "f64 mark to market only")]
        {
            self.q_f = self.pos as f64 / cx.size_scale * inst.multiplier as f64;
        }
        self.cash_f = match &cx.int {
            Some(b) => b.as_f64(self.cash_i),
            None => to_f64(self.cash),
        };
        Ok(())
    }

    fn close<W: Recorder>(
        &mut self,
        cx: &Ctx<'_, R::Ind>,
        t: usize,
        side: Side,
        rec: &mut W,
    ) -> Result<(), SweepError> {
        let inst = &cx.series.inst;
        let ts = cx.series.ts[t];
        let qty_raw = self.pos.abs();
        let price_raw = cx.costs.price(inst, side, cx.series.open[t], qty_raw);
        let qty = Quantity::from_raw(qty_raw, inst.size_precision)?;
        let price = Price::from_raw(price_raw, inst.price_precision)?;
        let (fee, pnl) = if let Some(b) = &cx.int {
            let n = int_value(inst, qty_raw, price_raw)?;
            self.book_int(side, n)?;
            let pnl = self.cash_i - self.trade_cash_i;
            self.trade_stats(pnl.signum(), b.as_f64(pnl));
            (
                Decimal::ZERO,
                if W::RECORDS {
                    b.decimal(pnl)?
                } else {
                    Decimal::ZERO
                },
            )
        } else {
            let n = notional(qty, price, inst.multiplier)?;
            let fee = cx.costs.fee(side, qty, price, n, ts);
            self.book(side, n, fee);
            let pnl = self.cash - self.trade_cash;
            let sign = if pnl > Decimal::ZERO {
                1
            } else {
                -i128::from(pnl < Decimal::ZERO)
            };
            self.trade_stats(sign, to_f64(pnl));
            (fee, pnl)
        };
        self.pos = 0;
        let entry = self.entry.take();
        rec.fill(
            SweepFill {
                ts,
                side,
                qty,
                price,
                commission: fee,
            },
            entry.as_ref(),
            Some(pnl),
        );
        Ok(())
    }

    fn trade_stats(&mut self, sign: i128, pnl: f64) {
        self.closed += 1;
        if sign > 0 {
            self.wins += 1;
            self.gross_profit += pnl;
        } else if sign < 0 {
            self.gross_loss += pnl;
        }
    }

    /// [`Self::enter`] on the integer book: the same sizing, refusals and booking.
    fn enter_int<W: Recorder>(
        &mut self,
        cx: &Ctx<'_, R::Ind>,
        b: IntBook,
        t: usize,
        side: Side,
        rec: &mut W,
    ) -> Result<(), SweepError> {
        let inst = &cx.series.inst;
        let costs = cx.costs;
        let ts = cx.series.ts[t];
        let open = cx.series.open[t];
        let px = costs.price(inst, side, open, 0);
        let equity = self.cash_i + int_value(inst, self.pos, px)?;
        if px <= 0 || equity <= 0 {
            return self.refuse(ts, side, rec);
        }
        let target_raw = if equity < b.exact_size_below {
            // floor(equity / price) in size units, to the step (as `size_exact`).
            i64::try_from(units_to_step(equity, px, inst.size_step.raw()))
                .map_err(|_| SweepError::Core(CoreError::Overflow { what: "sweep size" }))?
        } else {
            let price = Price::from_raw(px, inst.price_precision)?.to_decimal();
            match round_quantity(inst, b.decimal(equity)? / price, RoundingMode::TowardZero) {
                Ok(q) => q.raw(),
                Err(_) => return self.refuse(ts, side, rec),
            }
        };
        if target_raw <= 0 || target_raw < inst.min_quantity.raw() {
            return self.refuse(ts, side, rec);
        }
        let qty_raw = target_raw;
        let price_raw = costs.price(inst, side, open, qty_raw);
        let sign = if side == Side::Buy { 1 } else { -1 };
        let new_pos = self.pos + sign * qty_raw;
        if new_pos < 0 && !inst.borrow.shortable {
            return self.refuse(ts, side, rec);
        }
        let n = int_value(inst, qty_raw, price_raw)?;
        if costs.enforce_margin && new_pos.abs() > self.pos.abs() {
            // Margin 1 (IntBook::of): the position's value within the equity.
            let equity = self.cash_i + int_value(inst, self.pos, price_raw)?;
            let required = int_value(inst, new_pos, price_raw)?.abs();
            if required > equity {
                return self.refuse(ts, side, rec);
            }
        }
        self.trade_cash_i = self.cash_i;
        self.book_int(side, n)?;
        self.pos = new_pos;
        let fill = SweepFill {
            ts,
            side,
            qty: Quantity::from_raw(qty_raw, inst.size_precision)?,
            price: Price::from_raw(price_raw, inst.price_precision)?,
            commission: Decimal::ZERO,
        };
        // The entry is only read for a recorded trade.
        if W::RECORDS {
            self.entry = Some(fill.clone());
        }
        rec.fill(fill, None, None);
        Ok(())
    }

    fn book_int(&mut self, side: Side, n: i128) -> Result<(), SweepError> {
        match side {
            Side::Buy => self.cash_i -= n,
            Side::Sell => self.cash_i += n,
        }
        self.fills += 1;
        if self.cash_i.abs() >= INT_BOUND {
            return Err(SweepError::Core(CoreError::Overflow { what: "sweep cash" }));
        }
        Ok(())
    }

    fn enter<W: Recorder>(
        &mut self,
        cx: &Ctx<'_, R::Ind>,
        t: usize,
        side: Side,
        rec: &mut W,
    ) -> Result<(), SweepError> {
        if let Some(b) = cx.int {
            return self.enter_int(cx, b, t, side, rec);
        }
        let inst = &cx.series.inst;
        let costs = cx.costs;
        let ts = cx.series.ts[t];
        let open = cx.series.open[t];
        // Sizing, as the venue: equity at the (slipped) price, floor to the step.
        let px = costs.price(inst, side, open, 0);
        let equity = self.cash + value(inst, self.pos, px)?;
        let price = Price::from_raw(px, inst.price_precision)?.to_decimal();
        if price <= Decimal::ZERO || equity <= Decimal::ZERO {
            return self.refuse(ts, side, rec);
        }
        let target = match size_exact(inst, equity, costs.fraction, px) {
            Some(q) => q,
            None => match round_quantity(
                inst,
                scale_by(equity, costs.fraction) / price,
                RoundingMode::TowardZero,
            ) {
                Ok(q) => q,
                Err(_) => return self.refuse(ts, side, rec),
            },
        };
        if target.raw() <= 0 || target < inst.min_quantity {
            return self.refuse(ts, side, rec);
        }
        let qty_raw = target.raw();
        let price_raw = costs.price(inst, side, open, qty_raw);
        let sign = if side == Side::Buy { 1 } else { -1 };
        let new_pos = self.pos + sign * qty_raw;
        if new_pos < 0 && !inst.borrow.shortable {
            return self.refuse(ts, side, rec);
        }
        let qty = target;
        let price = Price::from_raw(price_raw, inst.price_precision)?;
        let n = notional(qty, price, inst.multiplier)?;
        let fee = costs.fee(side, qty, price, n, ts);
        if costs.enforce_margin && new_pos.abs() > self.pos.abs() {
            let equity = self.cash + value(inst, self.pos, price_raw)? - fee;
            let required = scale_by(value(inst, new_pos, price_raw)?.abs(), inst.margin.initial);
            if required > equity {
                return self.refuse(ts, side, rec);
            }
        }
        self.trade_cash = self.cash;
        self.book(side, n, fee);
        self.pos = new_pos;
        let fill = SweepFill {
            ts,
            side,
            qty,
            price,
            commission: fee,
        };
        // The entry is only read for a recorded trade.
        if W::RECORDS {
            self.entry = Some(fill.clone());
        }
        rec.fill(fill, None, None);
        Ok(())
    }

    fn book(&mut self, side: Side, n: Decimal, fee: Decimal) {
        match side {
            Side::Buy => self.cash -= n,
            Side::Sell => self.cash += n,
        }
        self.cash -= fee;
        self.fills += 1;
    }

    fn refuse<W: Recorder>(&mut self, ts: i64, side: Side, rec: &mut W) -> Result<(), SweepError> {
        self.rejected += 1;
        rec.rejected(ts, side);
        Ok(())
    }

    fn finish(
        &self,
        series: &Series,
        int: Option<IntBook>,
        config: &MetricsConfig,
    ) -> Result<Tally, SweepError> {
        let last = series.close.last().copied().unwrap_or(0);
        let final_equity = match int {
            Some(b) => b
                .decimal(self.cash_i + int_value(&series.inst, self.pos, last)?)?
                .normalize(),
            None => self.cash + value(&series.inst, self.pos, last)?,
        };
        #[allow(clippy::cast_precision_loss, reason = "counts of periods")]
        let n = series.len().saturating_sub(1) as f64;
        let p = config.periods_per_year;
        let d0 = (0.0 - config.required_return).min(0.0);
        // The first bar's zero return is not a period.
        #[allow(clippy::cast_precision_loss, reason = "a count of bars")]
        let m = &self.m;
        let s3 = m.s3 + m.flat.saturating_sub(1) as f64 * d0 * d0;
        let mean = m.s1 / n;
        let var = (m.s2 - m.s1 * mean) / (n - 1.0);
        let std = (n > 1.0).then(|| var.max(0.0).sqrt());
        let sharpe = std.and_then(|s| (s > 0.0).then(|| (mean - config.risk_free) / s * p.sqrt()));
        let downside = (s3 / n).sqrt() * p.sqrt();
        let sortino = (downside > 0.0).then(|| (mean - config.required_return) * p / downside);
        let growth = m.eprev / self.first_e;
        let cagr = if growth <= 0.0 {
            -1.0
        } else {
            growth.powf(p / n) - 1.0
        };
        Ok(Tally {
            final_equity,
            trades: self.closed + u32::from(self.pos != 0),
            closed_trades: self.closed,
            fills: self.fills,
            rejected: self.rejected,
            metrics: SweepMetrics {
                total_return: growth - 1.0,
                cagr,
                sharpe,
                sortino,
                max_drawdown: m.mdd,
                calmar: (m.mdd < 0.0).then(|| cagr / m.mdd.abs()),
                win_rate: (self.closed > 0).then(|| f64::from(self.wins) / f64::from(self.closed)),
                profit_factor: (self.gross_loss < 0.0)
                    .then(|| self.gross_profit / -self.gross_loss),
            },
        })
    }
}

/// `floor(equity / price)` to the quantity step, in integers, when it equals the
/// venue's `round_quantity(equity / price, TowardZero)`: the Decimal quotient
/// is rounded to 28 significant digits, and a quotient that is not on the step
/// lies at least `1 / den` steps from it, so with `num < 10^26` the rounding
/// cannot cross a step. Fraction 1 only; `None` sends the caller to the Decimal path.
fn size_exact(inst: &Instrument, equity: Decimal, fraction: Decimal, px: i64) -> Option<Quantity> {
    if fraction != Decimal::ONE || px <= 0 || equity <= Decimal::ZERO {
        return None;
    }
    let m = equity.mantissa();
    let up = u32::from(inst.price_precision) + u32::from(inst.size_precision);
    let num = m.checked_mul(10i128.checked_pow(up)?)?;
    let den = i128::from(px).checked_mul(10i128.checked_pow(equity.scale())?)?;
    if num >= 10i128.pow(26) {
        return None;
    }
    let units = num / den;
    let step = i128::from(inst.size_step.raw());
    let raw = i64::try_from(units - units % step).ok()?;
    Quantity::from_raw(raw, inst.size_precision).ok()
}

/// Exact signed value of `qty_raw` at `price_raw` (the venue's `signed_value`).
fn value(inst: &Instrument, qty_raw: i64, price_raw: i64) -> Result<Decimal, SweepError> {
    if qty_raw == 0 {
        return Ok(Decimal::ZERO);
    }
    let q = Quantity::from_raw(qty_raw.abs(), inst.size_precision)?;
    let p = Price::from_raw(price_raw, inst.price_precision)?;
    let v = notional(q, p, inst.multiplier)?;
    Ok(if qty_raw < 0 { -v } else { v })
}

/// How many cores a sweep uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// The calling thread only.
    One,
    /// Rayon's pool (all cores by default).
    All,
}

fn check_sets(sets: &[SmaParams]) -> Result<(), SweepError> {
    for s in sets {
        if s.fast == 0 || s.fast >= s.slow {
            return Err(SweepError::Invalid {
                field: "params",
                reason: format!("need 0 < fast < slow, got fast {} slow {}", s.fast, s.slow),
            });
        }
    }
    Ok(())
}

/// Runs one group of lanes over every time block.
fn run_group<R: Rule>(
    cx: &Ctx<'_, R::Ind>,
    rules: &[R],
    config: &SweepConfig,
) -> Result<Vec<Tally>, SweepError> {
    let cash = config.backtest.starting_cash;
    let req = config.metrics.required_return;
    let mut lanes: Vec<Lane<R>> = rules
        .iter()
        .map(|&r| Lane::new(r, cash, cx.int_start))
        .collect();
    let n = cx.series.len();
    let mut masks = Masks::default();
    let mut t0 = 0;
    while t0 < n {
        let t1 = (t0 + BLOCK).min(n);
        for lane in &mut lanes {
            lane.run(cx, (t0, t1), req, &mut masks, &mut NoRecord)?;
        }
        t0 = t1;
    }
    lanes
        .iter()
        .map(|l| l.finish(cx.series, cx.int, &config.metrics))
        .collect()
}

/// Every rule of `rules` over the series, in groups of [`GROUP`] lanes, on one
/// core or all (the same results: a lane depends only on itself).
fn run_rules<R: Rule>(
    cx: &Ctx<'_, R::Ind>,
    rules: &[R],
    config: &SweepConfig,
    threads: Threads,
) -> Result<Vec<Tally>, SweepError> {
    let groups: Vec<Vec<Tally>> = match threads {
        Threads::One => rules
            .chunks(GROUP)
            .map(|g| run_group(cx, g, config))
            .collect::<Result<_, _>>()?,
        Threads::All => rules
            .par_chunks(GROUP)
            .map(|g| run_group(cx, g, config))
            .collect::<Result<_, _>>()?,
    };
    Ok(groups.into_iter().flatten().collect())
}

/// One rule through the same lane code, recording every fill, trade, refusal
/// and equity point.
fn trace_rule<R: Rule>(
    cx: &Ctx<'_, R::Ind>,
    rule: R,
    config: &SweepConfig,
) -> Result<(Tally, Trace), SweepError> {
    let mut lane = Lane::new(rule, config.backtest.starting_cash, cx.int_start);
    let mut trace = Trace::default();
    let n = cx.series.len();
    let mut masks = Masks::default();
    let mut t0 = 0;
    while t0 < n {
        let t1 = (t0 + BLOCK).min(n);
        lane.run(
            cx,
            (t0, t1),
            config.metrics.required_return,
            &mut masks,
            &mut trace,
        )?;
        t0 = t1;
    }
    Ok((lane.finish(cx.series, cx.int, &config.metrics)?, trace))
}

/// The lanes' context over the indicators `ind`: costs checked, the integer
/// book when the settings allow it.
fn with_ctx<I: ?Sized, T>(
    series: &Series,
    config: &SweepConfig,
    ind: &I,
    f: impl FnOnce(&Ctx<'_, I>) -> Result<T, SweepError>,
) -> Result<T, SweepError> {
    let costs = Costs::of(config, &series.inst)?;
    let size_scale = grodt_core::rounding::pow10_f64(series.inst.size_precision);
    let (int, int_start) = match IntBook::of(&costs, &series.inst, config.backtest.starting_cash) {
        Some((b, start)) if config.integer_book => (Some(b), start),
        _ => (None, 0),
    };
    let held = if config.metrics.required_return == 0.0 {
        series
            .held
            .get_or_init(|| Held::of(&series.close_f))
            .as_ref()
    } else {
        None
    };
    f(&Ctx {
        series,
        ind,
        costs: &costs,
        size_scale,
        int,
        int_start,
        held,
    })
}

/// The SMA rules' context: the prefix sums in `i64` when the data and the
/// longest period bound every product below 2^62, in `i128` otherwise.
fn with_prefix<T>(
    series: &Series,
    max_slow: u32,
    config: &SweepConfig,
    i64_path: impl FnOnce(&Ctx<'_, SmaInd<i64>>) -> Result<T, SweepError>,
    i128_path: impl FnOnce(&Ctx<'_, SmaInd<i128>>) -> Result<T, SweepError>,
) -> Result<T, SweepError> {
    let bound = 1i128 << 62;
    let last = series.prefix.last().copied().unwrap_or(0).abs();
    let max_prefix = series
        .prefix
        .iter()
        .map(|p| p.abs())
        .max()
        .unwrap_or(0)
        .max(last);
    let k = i128::from(max_slow);
    let fits = max_prefix < bound / 2
        && series
            .max_abs_close
            .checked_mul(k * k)
            .is_some_and(|x| x < bound / 2);
    // The signal masks' f64 sums: every prefix, window sum and product (a
    // window sum times a period) an integer below 2^53, so exact.
    let exact = 1i128 << 53;
    let pf = if max_prefix < exact
        && series
            .max_abs_close
            .checked_mul(k * k)
            .is_some_and(|x| x < exact)
    {
        #[allow(clippy::cast_precision_loss, reason = "integers below 2^53, exact")]
        series.prefix.iter().map(|&p| p as f64).collect()
    } else {
        Vec::new()
    };
    if fits {
        let p: Vec<i64> = series.prefix.iter().map(|&p| i64::from_i128(p)).collect();
        with_ctx(series, config, &SmaInd { p, pf }, i64_path)
    } else {
        let p = series.prefix.clone();
        with_ctx(series, config, &SmaInd { p, pf }, i128_path)
    }
}

fn sma_rules<P: Int>(sets: &[SmaParams]) -> Vec<SmaRule<P>> {
    sets.iter().map(|&s| SmaRule::new(s)).collect()
}

/// The SMA sets' tallies, in order (see [`sweep_sma`]).
fn sma_tallies(
    series: &Series,
    sets: &[SmaParams],
    config: &SweepConfig,
    threads: Threads,
) -> Result<Vec<Tally>, SweepError> {
    check_sets(sets)?;
    let max_slow = sets.iter().map(|s| s.slow).max().unwrap_or(1);
    with_prefix(
        series,
        max_slow,
        config,
        |cx| run_rules(cx, &sma_rules::<i64>(sets), config, threads),
        |cx| run_rules(cx, &sma_rules::<i128>(sets), config, threads),
    )
}

/// One SMA set's tally and trace (see [`trace_sma`]).
fn trace_sma_tally(
    series: &Series,
    params: SmaParams,
    config: &SweepConfig,
) -> Result<(Tally, Trace), SweepError> {
    check_sets(&[params])?;
    with_prefix(
        series,
        params.slow,
        config,
        |cx| trace_rule(cx, SmaRule::new(params), config),
        |cx| trace_rule(cx, SmaRule::new(params), config),
    )
}

/// Evaluates every SMA-crossover parameter set of `sets` over `series`: one
/// outcome per set, in the order of `sets`, identical whatever `threads`.
pub fn sweep_sma(
    series: &Series,
    sets: &[SmaParams],
    config: &SweepConfig,
    threads: Threads,
) -> Result<Vec<SmaOutcome>, SweepError> {
    let tallies = sma_tallies(series, sets, config, threads)?;
    Ok(sets.iter().zip(tallies).map(|(&p, t)| t.sma(p)).collect())
}

/// One parameter set through the same lane code, recording every fill, trade,
/// refusal and equity point.
pub fn trace_sma(
    series: &Series,
    params: SmaParams,
    config: &SweepConfig,
) -> Result<(SmaOutcome, Trace), SweepError> {
    let (tally, trace) = trace_sma_tally(series, params, config)?;
    Ok((tally.sma(params), trace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The integer sizing equals the venue's Decimal sizing whenever it answers.
        #[test]
        fn integer_sizing_is_the_decimal_sizing(
            mantissa in 1i64..i64::MAX,
            scale in 0u32..12,
            px in 1i64..10_000_000_000,
            pp in 0u8..6,
            sp in prop::sample::select(vec![0u8, 2, 3, 8]),
        ) {
            let inst = Instrument::equity("X", pp, sp);
            let equity = Decimal::new(mantissa, scale);
            let price = Price::from_raw(px, pp).unwrap().to_decimal();
            if let Some(q) = size_exact(&inst, equity, Decimal::ONE, px) {
                let d = round_quantity(&inst, equity / price, RoundingMode::TowardZero).unwrap();
                prop_assert_eq!(q, d);
            }
        }
    }

    /// A walk over few distinct closes (exact ties of the averages are common).
    fn tied_series(n: usize) -> Series {
        let inst = Instrument::equity("X", 2, 0);
        let bars: Vec<Bar> = (0..n)
            .map(|k| {
                let c = 100 + i64::try_from((k * 7 + k / 13) % 5).unwrap();
                Bar {
                    ts: 1_700_000_000 + i64::try_from(k).unwrap() * 60,
                    open: c,
                    high: c + 1,
                    low: c - 1,
                    close: c,
                    volume: 10,
                }
            })
            .collect();
        Series::new(&inst, &bars).unwrap()
    }

    /// The orders of `rule` over `series` in blocks of `block` bars, the
    /// position flipping at each (as fills would), with the masks `on` or off.
    fn orders_of(
        series: &Series,
        ind: &SmaInd<i64>,
        mut rule: SmaRule<i64>,
        block: usize,
    ) -> Vec<(usize, i8)> {
        let (mut out, mut masks, mut pos) = (Vec::new(), Masks::default(), 0i64);
        let mut t0 = 0;
        while t0 < series.len() {
            let t1 = (t0 + block).min(series.len());
            rule.prepare(ind, series, t0, t1, &mut masks);
            assert_eq!(masks.on, !ind.pf.is_empty());
            let mut t = t0;
            while let Some((u, s)) = rule.next_order(ind, series, &masks, t, t1, pos) {
                out.push((u, s));
                pos = if s > 0 {
                    1
                } else {
                    -i64::from(rule.long_short)
                };
                t = u + 1;
            }
            t0 = t1;
        }
        out
    }

    #[test]
    fn signal_masks_decide_as_the_integer_rule_bar_by_bar() {
        let series = tied_series(1_000);
        let p: Vec<i64> = series.prefix.iter().map(|&x| i64::from_i128(x)).collect();
        #[allow(clippy::cast_precision_loss, reason = "small integers")]
        let pf: Vec<f64> = p.iter().map(|&x| x as f64).collect();
        let with = SmaInd { p: p.clone(), pf };
        let without = SmaInd { p, pf: Vec::new() };
        let mut orders = 0;
        for (fast, slow) in [(1, 2), (2, 3), (3, 5), (5, 10), (7, 70), (13, 200)] {
            for long_short in [false, true] {
                let rule = SmaRule::<i64>::new(SmaParams {
                    fast,
                    slow,
                    long_short,
                });
                let want = orders_of(&series, &without, rule, BLOCK);
                orders += want.len();
                // Blocks cutting words, warm-ups inside a block, one bar a block.
                for block in [BLOCK, 64, 100, 7, 1] {
                    assert_eq!(
                        orders_of(&series, &with, rule, block),
                        want,
                        "{fast}/{slow} {block}"
                    );
                }
            }
        }
        assert!(orders > 100, "{orders}");
    }

    /// Held positions' marks from the shared sums: the return moments of
    /// bar-by-bar marking within float rounding, the peak, drawdown and last
    /// equity exactly, whether the bars are scanned or skipped.
    #[test]
    fn held_marks_equal_bar_by_bar_marks() {
        // A deterministic walk with flat bars, rallies and slides.
        let mut c = vec![100.0f64];
        let mut x = 12_345u64;
        for k in 1..5_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let step = f64::from(u32::try_from(x >> 59).unwrap()) - 15.0
                + if k % 1_000 < 500 { 0.4 } else { -0.4 };
            c.push((c[k - 1] + step * 0.01 * c[k - 1] / 100.0).max(1.0));
        }
        let h = Held::of(&c).unwrap();
        let (mut bar, mut fast) = (Marks::new(1_000.0), Marks::new(1_000.0));
        let (mut skipped, mut held) = (0, 0);
        let mut a = 1;
        for (k, len) in [3usize, 40, 1, 700, 64, 2, 900, 13, 1_500]
            .into_iter()
            .cycle()
            .take(30)
            .enumerate()
        {
            let b = (a + len).min(c.len());
            if a >= b {
                break;
            }
            // Equity `cash + q c`: a small cash residue, a position of about 10 units.
            let (cash, q) = (1e-5 * (k as f64), 9.5 + k as f64 * 0.01);
            assert!(h.fits(cash, q));
            // The first bar from the flat equity, as the lane does, then the hold.
            let e = cash + q * c[a - 1];
            bar.mark(e, 0.0);
            fast.mark(e, 0.0);
            let mdd = fast.mdd;
            for &x in &c[a..b] {
                bar.mark(cash + q * x, 0.0);
            }
            fast.held(&h, (cash, q), &c, a, b);
            held += 1;
            skipped += usize::from(fast.mdd == mdd && bar.mdd == mdd);
            assert_eq!(
                (fast.peak, fast.mdd, fast.eprev),
                (bar.peak, bar.mdd, bar.eprev),
                "{k}"
            );
            for (f, s) in [(fast.s1, bar.s1), (fast.s2, bar.s2), (fast.s3, bar.s3)] {
                assert!((f - s).abs() <= 1e-12 * s.abs().max(1e-9), "{k}: {f} {s}");
            }
            a = b + 1;
        }
        assert!(
            held > 10 && skipped > 0 && bar.mdd < -0.01,
            "{held} {skipped} {}",
            bar.mdd
        );
        assert!(!h.fits(1e6, 1.0) && !h.fits(0.0, -1.0));
        assert!(Held::of(&[1.0, 0.0]).is_none());
    }

    #[test]
    fn integer_sizing_declines_what_it_cannot_prove() {
        let inst = Instrument::equity("X", 2, 8);
        let half = Decimal::new(5, 1);
        assert!(size_exact(&inst, Decimal::from(100), half, 100).is_none());
        assert!(size_exact(&inst, Decimal::from(i64::MAX), Decimal::ONE, 1).is_none());
        let q = size_exact(&inst, Decimal::from(100), Decimal::ONE, 300).unwrap();
        assert_eq!(q.raw(), 3_333_333_333);
    }
}
