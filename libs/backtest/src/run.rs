//! The one code path of a backtest, shared by the worker's RPCs and jobs and by
//! `grodt backtest`: a strategy configured through the registry, catalog bars
//! turned into engine bars, the engine run, the metrics computed. No I/O here
//! except [`load_csv`]; callers load data and decide where the result goes.

use std::collections::BTreeMap;

use grodt_analytics as analytics;
use grodt_core::error::{Classify, ErrorKind};
use grodt_core::{Bar, Decimal, Fill, Instrument, OrderUpdate, Side};
use grodt_regimes::{Regime, RegimeConfig};
use grodt_sim::{BacktestConfig, BacktestResult, Context, SimError, Strategy};
use grodt_strategies::registry::{Configured, RegistryError};

/// Size precision of instruments in fractional runs (parity with fractional references).
pub const FRACTIONAL_SIZE_PRECISION: u8 = 8;

/// Bars between two progress callbacks.
const PROGRESS_EVERY: u64 = 4096;

/// Why a backtest could not run. Messages name the field, parameter or bar at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    /// The strategy name or its parameters were refused by the registry.
    #[error(transparent)]
    Params(#[from] RegistryError),
    /// Input data the engine cannot use (empty, overflowing, unreadable).
    #[error("data {what}: {reason}")]
    Data {
        /// The dataset or file.
        what: String,
        /// Why.
        reason: String,
    },
    /// The engine refused the configuration or the bars.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// The metrics could not be computed (for example fewer than two bars).
    #[error("metrics: {0}")]
    Analytics(#[from] analytics::AnalyticsError),
    /// The regime classifier's configuration was refused.
    #[error("regimes: {0}")]
    Regimes(#[from] grodt_regimes::RegimeError),
    /// The portfolio file or run was refused (the error names the field).
    #[error("portfolio: {0}")]
    Portfolio(#[from] grodt_portfolio::PortfolioError),
    /// A portfolio strategy's name or parameters were refused.
    #[error("portfolio strategy {id}: {source}")]
    Member {
        /// The strategy's id in the file.
        id: String,
        /// Why.
        source: RegistryError,
    },
}

impl Classify for RunError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Params(e) => e.kind(),
            Self::Sim(e) => e.kind(),
            Self::Portfolio(e) => e.kind(),
            Self::Analytics(e) => e.kind(),
            Self::Regimes(e) => e.kind(),
            Self::Data { .. } | Self::Member { .. } => ErrorKind::InvalidArgument,
        }
    }
}

/// One instrument's bars, ready for the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The instrument.
    pub instrument: Instrument,
    /// Its bars, oldest first.
    pub bars: Vec<Bar>,
}

fn rescale(raw: i64, from: u8, to: u8) -> Option<i64> {
    if to >= from {
        raw.checked_mul(10i64.checked_pow(u32::from(to - from))?)
    } else {
        // Volume finer than the size step: truncate, it only bounds participation.
        Some(raw / 10i64.checked_pow(u32::from(from - to))?)
    }
}

/// Converts catalog bars (fixed-point columns at the dataset's scales) into an
/// equity instrument at the dataset's price scale and engine bars. Volume is
/// rescaled to the instrument's size precision (0, or
/// [`FRACTIONAL_SIZE_PRECISION`] when `fractional`).
///
/// # Errors
/// [`RunError::Data`] naming `symbol` when there are no bars or a volume overflows.
pub fn series_from_bars(
    symbol: &str,
    bars: &grodt_data::Bars,
    fractional: bool,
) -> Result<Series, RunError> {
    let size_precision = size_precision(fractional);
    let mut out = Vec::with_capacity(bars.len());
    for i in 0..bars.len() {
        out.push(Bar {
            ts: bars.ts[i],
            open: bars.open[i],
            high: bars.high[i],
            low: bars.low[i],
            close: bars.close[i],
            volume: volume_at(symbol, i, bars.volume[i], bars.volume_scale, size_precision)?,
        });
    }
    series_of(symbol, bars.price_scale, size_precision, out)
}

fn size_precision(fractional: bool) -> u8 {
    if fractional {
        FRACTIONAL_SIZE_PRECISION
    } else {
        0
    }
}

/// Bar `i`'s volume at the instrument's size precision.
fn volume_at(symbol: &str, i: usize, volume: i64, from: u8, to: u8) -> Result<i64, RunError> {
    rescale(volume, from, to).ok_or_else(|| RunError::Data {
        what: symbol.to_owned(),
        reason: format!("bar {i}: volume {volume} overflows at size precision {to}"),
    })
}

/// An equity instrument at `price_scale` with `bars`, which must not be empty.
fn series_of(
    symbol: &str,
    price_scale: u8,
    size_precision: u8,
    bars: Vec<Bar>,
) -> Result<Series, RunError> {
    if bars.is_empty() {
        return Err(RunError::Data {
            what: symbol.to_owned(),
            reason: "no bars in the requested range".into(),
        });
    }
    Ok(Series {
        instrument: Instrument::equity(symbol, price_scale, size_precision),
        bars,
    })
}

/// Reads a CSV file with grodt-data's importer, normalised
/// (`timestamp,open,high,low,close,volume`) or in a layout
/// `CsvOptions::detect` knows; the scales are the largest number of decimals found.
///
/// # Errors
/// [`RunError::Data`] naming the file and the first line at fault.
pub fn load_csv(path: &std::path::Path) -> Result<grodt_data::Bars, RunError> {
    let rows = CsvRows::read(path)?;
    let raw = &rows.raw;
    let mut bars =
        grodt_data::Bars::with_capacity(raw.price_scale, raw.volume_scale, raw.rows.len());
    rows.each(|ts, ohlcv| {
        bars.push(ts, ohlcv);
        Ok(())
    })?;
    Ok(bars)
}

/// [`series_from_bars`] of [`load_csv`] in one step, without the columns
/// between them (a one-shot backtest's second largest cost was building
/// them and then reading them back); the same series and the same errors.
///
/// # Errors
/// As [`load_csv`], then as [`series_from_bars`].
pub fn load_csv_series(
    path: &std::path::Path,
    symbol: &str,
    fractional: bool,
) -> Result<Series, RunError> {
    let rows = CsvRows::read(path)?;
    let raw = &rows.raw;
    let size_precision = size_precision(fractional);
    let mut bars = Vec::with_capacity(raw.rows.len());
    rows.each(|ts, [open, high, low, close, volume]| {
        let volume = volume_at(symbol, bars.len(), volume, raw.volume_scale, size_precision)?;
        bars.push(Bar {
            ts,
            open,
            high,
            low,
            close,
            volume,
        });
        Ok(())
    })?;
    series_of(symbol, raw.price_scale, size_precision, bars)
}

/// A CSV file's rows, checked: no finding, no missing value.
struct CsvRows {
    raw: grodt_data::import::RawTable,
    newest_first: bool,
}

impl CsvRows {
    fn read(path: &std::path::Path) -> Result<Self, RunError> {
        let what = path.display().to_string();
        let bad = |reason: String| RunError::Data {
            what: what.clone(),
            reason,
        };
        let options =
            grodt_data::import::CsvOptions::detect_file(path).map_err(|e| bad(e.to_string()))?;
        // A one-shot run keeps no record of the file: no hash to compute.
        let raw = grodt_data::import::read_csv_unhashed(path, &options)
            .map_err(|e| bad(e.to_string()))?;
        if let Some(f) = raw.findings.first() {
            let line = f
                .rows
                .first()
                .map_or(String::new(), |l| format!("line {l}: "));
            return Err(bad(format!("{line}{}", f.message)));
        }
        if let Some(row) = raw.rows.iter().find(|r| full(r).is_none()) {
            return Err(bad(format!("line {}: a value is missing", row.line)));
        }
        // Newest-first files (exchange downloads often are) read oldest first; any
        // other disorder is left for the engine to refuse, naming the bar.
        let newest_first = raw.rows.len() > 1 && raw.rows.windows(2).all(|w| w[0].ts > w[1].ts);
        Ok(Self { raw, newest_first })
    }

    /// `f(ts, [open, high, low, close, volume])` of every row, oldest first.
    fn each(
        &self,
        mut f: impl FnMut(i64, [i64; 5]) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        let mut take = |row| full(row).map_or(Ok(()), |(ts, ohlcv)| f(ts, ohlcv));
        if self.newest_first {
            self.raw.rows.iter().rev().try_for_each(&mut take)
        } else {
            self.raw.rows.iter().try_for_each(&mut take)
        }
    }
}

/// A row's timestamp and values, when none is missing.
fn full(row: &grodt_data::import::RawRow) -> Option<(i64, [i64; 5])> {
    match (row.ts, row.values) {
        (Some(ts), [Some(o), Some(h), Some(l), Some(c), Some(v)]) => Some((ts, [o, h, l, c, v])),
        _ => None,
    }
}

/// What to run: engine configuration, strategy, and how to annualise metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    /// Costs, fills, cash, seed.
    pub config: BacktestConfig,
    /// The strategy, configured and checked through the registry.
    pub strategy: Configured,
    /// Periods per year and risk-free rate of the metrics.
    pub metrics: analytics::MetricsConfig,
    /// Label every bar with the regime of the traded series (grodt-regimes
    /// with this configuration) and break the metrics down by regime;
    /// `None` skips it. The CLI and the worker run it by default.
    pub regimes: Option<RegimeConfig>,
}

/// What a period of a backtest is labelled with: the regime in force at its
/// start, or warm-up before the classifier's first decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RegimeLabel {
    /// The regime in force.
    Regime(Regime),
    /// Before the first decision (the classifier's windows are filling).
    WarmUp,
}

impl RegimeLabel {
    /// The regime's stable name, or `warm_up`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Regime(r) => r.name(),
            Self::WarmUp => "warm_up",
        }
    }
}

/// The metrics of a backtest broken down by regime.
#[derive(Debug, Clone)]
pub struct RegimeBreakdown {
    /// One label per period of the equity curve (`equity.len() - 1`): period
    /// `i`, from mark `i` to mark `i + 1`, carries the regime in force at mark
    /// `i` (known at its start, from bars up to that mark).
    pub labels: Vec<RegimeLabel>,
    /// Every metric per label present, regimes in [`Regime::ALL`] order, then warm-up.
    pub by_regime: Vec<(RegimeLabel, analytics::Metrics)>,
}

impl RegimeBreakdown {
    /// Share of periods carrying `label`.
    pub fn time_share(&self, label: RegimeLabel) -> f64 {
        let n = self.labels.iter().filter(|&&l| l == label).count();
        #[allow(clippy::cast_precision_loss, reason = "a share of counts")]
        let share = n as f64 / self.labels.len().max(1) as f64;
        share
    }
}

/// A finished run: the engine's exact result and the metrics of its equity curve.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Fills, trades, costs, equity curve, exact.
    pub result: BacktestResult,
    /// The metric set.
    pub metrics: analytics::Metrics,
    /// The equity curve in the analytics' plain numbers (for reports).
    pub equity: Vec<analytics::EquityPoint>,
    /// Closed trades in the analytics' plain numbers (for reports).
    pub closed_trades: Vec<analytics::Trade>,
    /// The metrics by regime, when [`RunSpec::regimes`] asked for them.
    pub regimes: Option<RegimeBreakdown>,
}

/// Wraps a strategy to report progress every [`PROGRESS_EVERY`] bars; the
/// engine has no callback of its own and the wrapper changes no decision.
struct Observed<'a> {
    inner: &'a mut dyn Strategy,
    seen: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl Strategy for Observed<'_> {
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.inner.on_start(ctx);
    }

    fn on_bar(&mut self, ctx: &mut Context<'_>, instrument: usize, bar: &Bar) {
        self.inner.on_bar(ctx, instrument, bar);
        self.seen += 1;
        if self.seen.is_multiple_of(PROGRESS_EVERY) {
            (self.progress)(self.seen);
        }
    }

    fn on_fill(&mut self, ctx: &mut Context<'_>, fill: &Fill) {
        self.inner.on_fill(ctx, fill);
    }

    fn on_order(&mut self, ctx: &mut Context<'_>, update: &OrderUpdate) {
        self.inner.on_order(ctx, update);
    }

    fn history_bars(&self) -> usize {
        self.inner.history_bars()
    }

    fn on_stop(&mut self, ctx: &mut Context<'_>) {
        self.inner.on_stop(ctx);
        (self.progress)(self.seen);
    }
}

/// An exact equity curve as analytics reads it.
pub fn analytics_equity(points: &[grodt_sim::EquityPoint<Decimal>]) -> Vec<analytics::EquityPoint> {
    points
        .iter()
        .map(|p| analytics::EquityPoint {
            ts: p.ts,
            equity: f64_of(p.equity),
        })
        .collect()
}

/// The closed round trips of a run as analytics reads them.
pub fn analytics_trades(trades: &[grodt_sim::Trade]) -> Vec<analytics::Trade> {
    trades
        .iter()
        .filter_map(|t| {
            let exit_ts = t.exit_ts?;
            Some(analytics::Trade {
                entry_ts: t.entry_ts,
                exit_ts,
                side: match t.direction {
                    Side::Buy => analytics::Side::Long,
                    Side::Sell => analytics::Side::Short,
                },
                qty: f64_of(t.peak_quantity),
                entry_price: f64_of(t.entry_price),
                exit_price: t.exit_price.map_or(f64::NAN, f64_of),
                pnl: f64_of(t.net_pnl),
                // Rebates can make a trade's net fees negative; analytics counts costs only.
                fees: f64_of(t.fees.max(Decimal::ZERO)),
                mae: f64_of(t.mae),
                mfe: f64_of(t.mfe),
            })
        })
        .collect()
}

fn f64_of(d: Decimal) -> f64 {
    grodt_core::fixed::decimal_to_f64(d)
}

/// Runs the strategy over `series` (the first one is the traded instrument).
/// `progress` receives the number of bars handled so far, now and then.
///
/// # Errors
/// Strategy parameters, engine configuration or bars the engine refuses, or
/// too few bars for metrics.
pub fn run(
    spec: &RunSpec,
    series: &[Series],
    progress: &mut dyn FnMut(u64),
) -> Result<Outcome, RunError> {
    let traded = series.first().ok_or_else(|| RunError::Data {
        what: "dataset_ids".into(),
        reason: "no instrument given".into(),
    })?;
    let mut strategy = spec.strategy.build(&traded.instrument)?;
    let instruments: Vec<Instrument> = series.iter().map(|s| s.instrument.clone()).collect();
    let bars: Vec<&[Bar]> = series.iter().map(|s| s.bars.as_slice()).collect();
    let mut observed = Observed {
        inner: strategy.as_mut(),
        seen: 0,
        progress,
    };
    // The classifier reads only the traded bars: it labels them on a second
    // core while the engine runs and this thread turns the run into the
    // analytics' input; the breakdown by regime is then measured there while
    // this thread measures the whole run (the one-shot backtest's wall time;
    // each side is the same computation as in sequence, and the faults are
    // reported in the order they were: engine, metrics, regimes).
    std::thread::scope(|s| {
        let labelling = spec.regimes.as_ref().map(|config| {
            s.spawn(|| {
                grodt_regimes::regime_per_bar(
                    config.clone(),
                    traded.instrument.price_precision,
                    &traded.bars,
                )
            })
        });
        let result = grodt_sim::run_backtest(&spec.config, &instruments, &bars, &mut observed)?;
        let equity = analytics_equity(&result.equity);
        let positions = positions_at_marks(&result);
        let closed_trades = analytics_trades(&result.trades);
        let input = analytics::PerformanceInput {
            equity: &equity,
            positions: Some(&positions),
            trades: &closed_trades,
        };
        let (metrics, regimes) = std::thread::scope(|t| {
            let (input, config) = (&input, &spec.metrics);
            let by_regime = labelling.map(|labelling| {
                t.spawn(move || {
                    let per_bar = joined(labelling)?;
                    regime_breakdown(&per_bar, traded, input, config)
                })
            });
            let metrics = analytics::compute(input, config);
            (metrics, by_regime.map(joined))
        });
        let metrics = metrics?;
        let regimes = regimes.transpose()?;
        Ok(Outcome {
            result,
            metrics,
            equity,
            closed_trades,
            regimes,
        })
    })
}

/// The regime label of each period of `equity`: the regime in force after the
/// last traded bar at or before the period's opening mark.
pub fn regime_labels(
    config: &RegimeConfig,
    traded: &Series,
    equity: &[analytics::EquityPoint],
) -> Result<Vec<RegimeLabel>, RunError> {
    let per_bar = grodt_regimes::regime_per_bar(
        config.clone(),
        traded.instrument.price_precision,
        &traded.bars,
    )?;
    Ok(labels_at_marks(&per_bar, traded, equity))
}

/// A thread's result, its panic carried on to this thread.
fn joined<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// The label of each period from the regime in force after each traded bar.
fn labels_at_marks(
    per_bar: &[Option<Regime>],
    traded: &Series,
    equity: &[analytics::EquityPoint],
) -> Vec<RegimeLabel> {
    let mut k = 0; // traded bars at or before the mark
    equity[..equity.len().saturating_sub(1)]
        .iter()
        .map(|mark| {
            while k < traded.bars.len() && traded.bars[k].ts <= mark.ts {
                k += 1;
            }
            k.checked_sub(1)
                .and_then(|i| per_bar[i])
                .map_or(RegimeLabel::WarmUp, RegimeLabel::Regime)
        })
        .collect()
}

fn regime_breakdown(
    per_bar: &[Option<Regime>],
    traded: &Series,
    input: &analytics::PerformanceInput<'_>,
    metrics: &analytics::MetricsConfig,
) -> Result<RegimeBreakdown, RunError> {
    let labels = labels_at_marks(per_bar, traded, input.equity);
    let by = analytics::breakdown(input, &labels, metrics)?;
    Ok(RegimeBreakdown {
        labels,
        by_regime: by.into_iter().collect(),
    })
}

/// Gross absolute position (in units) held after each equity mark, from the fills.
fn positions_at_marks(result: &BacktestResult) -> Vec<f64> {
    gross_units_at(&result.equity, &result.fills)
}

/// Σ |units held| across instruments at each equity mark, from the fills.
pub fn gross_units_at(equity: &[grodt_sim::EquityPoint<Decimal>], fills: &[Fill]) -> Vec<f64> {
    let mut held: BTreeMap<usize, f64> = BTreeMap::new();
    let mut fills = fills.iter().peekable();
    equity
        .iter()
        .map(|mark| {
            while let Some(f) = fills.next_if(|f| f.ts <= mark.ts) {
                let q = f.qty.as_f64();
                *held.entry(f.instrument).or_default() += match f.side {
                    Side::Buy => q,
                    Side::Sell => -q,
                };
            }
            held.values().map(|q| q.abs()).sum()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn registry_errors_pass_through_unchanged() {
        let e = RunError::from(grodt_strategies::registry::parse("rsi", &params(&[])).unwrap_err());
        assert_eq!(
            e.to_string(),
            "unknown strategy \"rsi\"; valid strategies: sma_cross, ema_cross, s1, s2, s3, pair"
        );
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn a_newest_first_file_loads_oldest_first_and_a_gap_in_a_row_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("newest_first.csv");
        std::fs::write(
            &path,
            "timestamp,open,high,low,close,volume\n\
             2024-01-03T00:00:00Z,3.5,4,3,3.75,30\n\
             2024-01-02T00:00:00Z,2.5,3,2,2.75,20\n\
             2024-01-01T00:00:00Z,1.5,2,1,1.25,10\n",
        )
        .unwrap();
        let bars = load_csv(&path).unwrap();
        assert_eq!(bars.price_scale, 2);
        assert_eq!(bars.close, vec![125, 275, 375]);
        assert!(bars.ts.windows(2).all(|w| w[0] < w[1]));
        std::fs::write(
            &path,
            "timestamp,open,high,low,close,volume\n\
             2024-01-01T00:00:00Z,1.5,2,1,1.25,10\n\
             2024-01-02T00:00:00Z,2.5,3,2,,20\n",
        )
        .unwrap();
        let e = load_csv(&path).unwrap_err().to_string();
        assert!(e.contains("line 3: a value is missing"), "{e}");
    }

    /// [`load_csv_series`] is [`series_from_bars`] of [`load_csv`]: same series,
    /// same errors, on the real sample and on files that fail each way.
    #[test]
    fn loading_a_series_in_one_step_is_the_two_steps() {
        let two_steps = |path: &std::path::Path, fractional: bool| {
            load_csv(path).and_then(|b| series_from_bars("X", &b, fractional))
        };
        let same = |path: &std::path::Path| {
            for fractional in [false, true] {
                let one = format!("{:?}", load_csv_series(path, "X", fractional));
                assert_eq!(one, format!("{:?}", two_steps(path, fractional)));
            }
        };
        let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/samples/btcusdt_1m_2025-05-20_2025-08-18.csv");
        same(&sample);
        let series = load_csv_series(&sample, "X", true).unwrap();
        assert_eq!(series.bars.len(), 130_708);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        let header = "timestamp,open,high,low,close,volume\n";
        for body in [
            // newest first
            "2024-01-03T00:00:00Z,3.5,4,3,3.75,30\n2024-01-02T00:00:00Z,2.5,3,2,2.75,20\n",
            // a missing value, a bad cell
            "2024-01-01T00:00:00Z,1.5,2,1,1.25,10\n2024-01-02T00:00:00Z,2.5,3,2,,20\n",
            "2024-01-01T00:00:00Z,1.5,2,1,1.25,x\n",
            // no rows; a volume that overflows at the fractional size precision
            "",
            "2024-01-01T00:00:00Z,1,1,1,1,1\n2024-01-02T00:00:00Z,1,1,1,1,92233720368547\n",
        ] {
            std::fs::write(&path, format!("{header}{body}")).unwrap();
            same(&path);
        }
        let e = load_csv_series(&path, "X", true).unwrap_err().to_string();
        assert!(e.contains("bar 1: volume 92233720368547 overflows"), "{e}");
    }

    #[test]
    fn volume_rescales_exactly_or_reports_overflow() {
        assert_eq!(rescale(12, 0, 8), Some(1_200_000_000));
        assert_eq!(rescale(1234, 2, 0), Some(12));
        assert_eq!(rescale(i64::MAX, 0, 1), None);
    }

    #[test]
    fn empty_data_is_refused_naming_the_symbol() {
        let e = series_from_bars("SPY", &grodt_data::Bars::with_scales(2, 0), false).unwrap_err();
        assert_eq!(e.to_string(), "data SPY: no bars in the requested range");
    }
}
