//! The streaming classifier and its decisions.

use std::collections::VecDeque;

use grodt_core::fixed::MAX_PRECISION;
use grodt_core::{Bar, Price};
use grodt_indicators::{AtrRaw, RollingVwapRaw};
use serde::{Deserialize, Serialize};

use crate::config::{RegimeConfig, RegimeError, Thresholds};
use crate::dwell::Dwell;
use crate::regime::{Regime, Rule};

/// Nanoseconds in a minute.
const MINUTE_NS: i64 = 60_000_000_000;

/// The measured inputs of one evaluation (all scale-free except `close`/`vwap`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    /// VWAP slope in ATRs per bar: `(vwap_t - vwap_{t-L}) / (L * atr_t)`, 0 when the ATR is 0.
    pub slope: f64,
    /// Mid-rank of `atr / close` among the last `atr_rank_window` evaluations, in 0..1.
    pub atr_percentile: f64,
    /// Short over long realized volatility; 1 when the long one is 0.
    pub vol_ratio: f64,
    /// Realized volatility (root mean square log return per bar) over `vol_short` returns.
    pub vol_short: f64,
    /// Realized volatility over `vol_long` returns.
    pub vol_long: f64,
    /// ATR relative to the close.
    pub atr_rel: f64,
    /// The rolling VWAP, in price units.
    pub vwap: f64,
    /// The close of the evaluated bar.
    pub close: Price,
}

/// One evaluation after warm-up: the regime in force, the rule's candidate, and
/// everything that decided them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Open time of the evaluated bar (UTC ns).
    pub ts: i64,
    /// 1-based number of this decision in the classifier's life (survives a restore).
    pub seq: u64,
    /// The regime in force after this evaluation (after confirmation and dwell).
    pub regime: Regime,
    /// Whether `regime` differs from the previous decision's (true on the first).
    pub changed: bool,
    /// Evaluations `regime` has been in force, this one included.
    pub held: u32,
    /// What the rules gave at this evaluation.
    pub candidate: Regime,
    /// The rule that gave `candidate`.
    pub rule: Rule,
    /// The measured inputs.
    pub inputs: Inputs,
    /// The thresholds the rules compared them with.
    pub thresholds: Thresholds,
}

/// The ordered rule list (docs/regimes.md): the first rule that matches wins.
pub fn decide(slope: f64, atr_percentile: f64, vol_ratio: f64, t: &Thresholds) -> Rule {
    if atr_percentile >= t.atr_percentile_high {
        Rule::AtrPercentileHigh
    } else if vol_ratio >= t.vol_ratio_high {
        Rule::VolRatioHigh
    } else if slope >= t.slope_trend {
        Rule::SlopeUp
    } else if slope <= -t.slope_trend {
        Rule::SlopeDown
    } else if slope.abs() < t.slope_flat && vol_ratio < t.vol_ratio_range {
        Rule::Flat
    } else {
        Rule::Otherwise
    }
}

/// Everything the classifier holds, as persisted. Integers only (besides the
/// config), so it serializes and restores exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct State {
    config: RegimeConfig,
    price_precision: u8,
    /// Open time of the last bar taken; bars at or before it are ignored.
    last_ts: Option<i64>,
    /// The `eval_minutes` bucket of the last evaluation.
    last_bucket: Option<i64>,
    /// Decisions made so far.
    decisions: u64,
    vwap: RollingVwapRaw,
    /// VWAP fractions of the last `slope_lag + 1` bars, oldest first.
    vwap_hist: VecDeque<(i128, i128)>,
    atr: AtrRaw,
    /// The last `vol_long + 1` closes, oldest first.
    closes: VecDeque<i64>,
    /// The log returns of consecutive `closes` (one fewer), oldest first:
    /// each computed once when its close arrives instead of at every
    /// evaluation. Derived from `closes`, so not serialized: rebuilt on restore.
    #[serde(skip)]
    rets: VecDeque<f64>,
    /// `(ATR window sum, close)` at the last `atr_rank_window` evaluations, oldest first.
    atr_hist: VecDeque<(i128, i64)>,
    /// The `atr_hist` entries whose cross products stay inside i128, in
    /// ascending order of `atr / |close|`, so an evaluation ranks the current
    /// one by binary search. Derived from `atr_hist`: not serialized, rebuilt
    /// on restore.
    #[serde(skip)]
    atr_sorted: RankWindow,
    dwell: Dwell,
}

/// The streaming regime classifier of one instrument. Feed it bars in time order
/// with [`Classifier::on_bar`]; serialize it (serde) to persist it, deserialize to
/// restore it (the restored state is checked).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "State", into = "State")]
pub struct Classifier {
    s: State,
}

impl TryFrom<State> for Classifier {
    type Error = RegimeError;

    fn try_from(s: State) -> Result<Self, RegimeError> {
        s.config.validate()?;
        check_precision(s.price_precision)?;
        let c = &s.config;
        let bad = |what: &str| Err(RegimeError::InvalidState(what.to_string()));
        if s.vwap.period() != c.vwap_window || s.atr.period() != c.atr_period {
            return bad("indicator periods differ from the config");
        }
        if s.vwap_hist.len() > c.slope_lag + 1
            || s.closes.len() > c.vol_long + 1
            || s.atr_hist.len() > c.atr_rank_window
        {
            return bad("a history is longer than its window");
        }
        if s.last_bucket.is_some() != s.last_ts.is_some() {
            return bad("last_bucket and last_ts disagree");
        }
        let mut s = s;
        s.atr_sorted = RankWindow::from_entries(&s.atr_hist);
        s.rets = s
            .closes
            .iter()
            .zip(s.closes.iter().skip(1))
            .map(|(&a, &b)| log_return(a, b))
            .collect();
        Ok(Self { s })
    }
}

impl From<Classifier> for State {
    fn from(c: Classifier) -> Self {
        c.s
    }
}

/// Below this, the rank's cross products of ATR sums and closes cannot leave
/// i128 (2^62 x 2^62 = 2^124), so they order the ratios truly.
const RATIO_BOUND: u64 = 1 << 62;

/// `atr / max(|close|, 1)` as an exact fraction with operands below
/// [`RATIO_BOUND`]. Ordered by the fraction's value, then by `atr` and
/// `close_abs` (a total order, so the sorted window is canonical: the same
/// entries give the same vector, whatever the order they came in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RankKey {
    atr: i64,
    close_abs: u64,
}

impl RankKey {
    /// The key of an `atr_hist` entry, `None` when its operands are too large
    /// for exact i128 cross products (those entries are ranked one by one,
    /// with the former saturating products).
    fn new(atr: i128, close: i64) -> Option<Self> {
        let close_abs = close.unsigned_abs().max(1);
        (atr.unsigned_abs() < u128::from(RATIO_BOUND) && close_abs < RATIO_BOUND).then(|| Self {
            atr: i64::try_from(atr).unwrap_or_default(),
            close_abs,
        })
    }

    /// The order of the two fractions' values (exact: no overflow below the bound).
    fn cmp_value(&self, other: &Self) -> std::cmp::Ordering {
        let lhs = i128::from(self.atr) * i128::from(other.close_abs);
        let rhs = i128::from(other.atr) * i128::from(self.close_abs);
        lhs.cmp(&rhs)
    }
}

impl Ord for RankKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.cmp_value(other)
            .then(self.atr.cmp(&other.atr))
            .then(self.close_abs.cmp(&other.close_abs))
    }
}

impl PartialOrd for RankKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The ATR rank window kept sorted: the exact keys of the `atr_hist` entries
/// that have one, ascending, and the number of entries too large for a key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct RankWindow {
    sorted: Vec<RankKey>,
    large: usize,
}

impl RankWindow {
    fn from_entries<'a>(entries: impl IntoIterator<Item = &'a (i128, i64)>) -> Self {
        let mut w = Self::default();
        for &(a, c) in entries {
            match RankKey::new(a, c) {
                Some(k) => w.sorted.push(k),
                None => w.large += 1,
            }
        }
        w.sorted.sort_unstable();
        w
    }

    fn insert(&mut self, atr: i128, close: i64) {
        match RankKey::new(atr, close) {
            Some(k) => {
                let at = self.sorted.partition_point(|x| *x < k);
                self.sorted.insert(at, k);
            }
            None => self.large += 1,
        }
    }

    /// Removes one entry equal to `(atr, close)` (one that was inserted).
    fn remove(&mut self, atr: i128, close: i64) {
        match RankKey::new(atr, close) {
            Some(k) => {
                if let Ok(at) = self.sorted.binary_search(&k) {
                    self.sorted.remove(at);
                }
            }
            None => self.large = self.large.saturating_sub(1),
        }
    }

    /// `(below, equal)`: the keyed entries whose value is below `now`'s and
    /// equal to it, by two binary searches.
    fn count(&self, now: &RankKey) -> (usize, usize) {
        let below = self.sorted.partition_point(|x| x.cmp_value(now).is_lt());
        let upto = below + self.sorted[below..].partition_point(|x| x.cmp_value(now).is_eq());
        (below, upto - below)
    }
}

/// Whether `(a, cl)` ranks below, equal to or above `atr_sum / |close|` by the
/// saturating i128 cross products of the original rank (the path of entries
/// too large for a [`RankKey`]).
fn cmp_saturating(a: i128, cl: i64, atr_sum: i128, close: i64) -> std::cmp::Ordering {
    let lhs = a.saturating_mul(i128::from(close.unsigned_abs().max(1)));
    let rhs = atr_sum.saturating_mul(i128::from(cl.unsigned_abs().max(1)));
    lhs.cmp(&rhs)
}

/// `ln(b / a)` of two raw closes, 0 when either is not positive.
#[allow(clippy::cast_precision_loss, reason = "a ratio of raw closes")]
fn log_return(a: i64, b: i64) -> f64 {
    if a > 0 && b > 0 {
        (b as f64 / a as f64).ln()
    } else {
        0.0
    }
}

fn check_precision(p: u8) -> Result<(), RegimeError> {
    if p > MAX_PRECISION {
        return Err(RegimeError::InvalidConfig {
            field: "price_precision",
            reason: format!("{p} is above {MAX_PRECISION}"),
        });
    }
    Ok(())
}

fn push_capped<T>(q: &mut VecDeque<T>, x: T, cap: usize) {
    if q.len() == cap {
        q.pop_front();
    }
    q.push_back(x);
}

#[allow(clippy::cast_precision_loss, reason = "f64 views of exact integers")]
fn ratio(num: i128, den: i128) -> f64 {
    num as f64 / den as f64
}

impl Classifier {
    /// A fresh classifier for prices at `price_precision` (used only to report the
    /// close and the VWAP in price units: every rule input is a ratio).
    pub fn new(config: RegimeConfig, price_precision: u8) -> Result<Self, RegimeError> {
        config.validate()?;
        check_precision(price_precision)?;
        Ok(Self {
            s: State {
                vwap: RollingVwapRaw::new(config.vwap_window),
                vwap_hist: VecDeque::with_capacity(config.slope_lag + 1),
                atr: AtrRaw::new(config.atr_period),
                closes: VecDeque::with_capacity(config.vol_long + 1),
                rets: VecDeque::with_capacity(config.vol_long),
                atr_hist: VecDeque::with_capacity(config.atr_rank_window),
                atr_sorted: RankWindow {
                    sorted: Vec::with_capacity(config.atr_rank_window + 1),
                    large: 0,
                },
                config,
                price_precision,
                last_ts: None,
                last_bucket: None,
                decisions: 0,
                dwell: Dwell::default(),
            },
        })
    }

    /// The configuration.
    pub const fn config(&self) -> &RegimeConfig {
        &self.s.config
    }

    /// The regime in force, once warmed up.
    pub const fn current(&self) -> Option<Regime> {
        self.s.dwell.current()
    }

    /// Open time of the last bar taken.
    pub const fn last_ts(&self) -> Option<i64> {
        self.s.last_ts
    }

    /// Decisions made so far (the `seq` of the last one).
    pub const fn decisions(&self) -> u64 {
        self.s.decisions
    }

    /// Takes one bar. Returns a decision when the bar is evaluated (the first bar
    /// of a new `eval_minutes` bucket) and the windows are full. A bar whose `ts`
    /// is not after the last bar's is ignored (redelivery after a restart) and
    /// returns `None`. O(1) per bar, plus per evaluation O(`vol_long`) and
    /// O(log `atr_rank_window`) comparisons (a binary-search insert and remove
    /// in the sorted ATR window, whose shift moves at most `atr_rank_window`
    /// 16-byte keys).
    pub fn on_bar(&mut self, bar: &Bar) -> Option<Decision> {
        let s = &mut self.s;
        if s.last_ts.is_some_and(|t| bar.ts <= t) {
            return None;
        }
        s.last_ts = Some(bar.ts);
        let c = &s.config;
        if let Some(f) = s.vwap.update(bar.high, bar.low, bar.close, bar.volume) {
            push_capped(&mut s.vwap_hist, f, c.slope_lag + 1);
        }
        let atr = s.atr.update(bar.high, bar.low, bar.close);
        if let Some(&prev) = s.closes.back() {
            push_capped(&mut s.rets, log_return(prev, bar.close), c.vol_long);
        }
        push_capped(&mut s.closes, bar.close, c.vol_long + 1);
        let bucket = bar.ts.div_euclid(i64::from(c.eval_minutes) * MINUTE_NS);
        if s.last_bucket == Some(bucket) {
            return None;
        }
        s.last_bucket = Some(bucket);
        let atr = atr?;
        if s.atr_hist.len() == c.atr_rank_window
            && let Some(&(a, cl)) = s.atr_hist.front()
        {
            s.atr_sorted.remove(a, cl);
        }
        s.atr_sorted.insert(atr, bar.close);
        push_capped(&mut s.atr_hist, (atr, bar.close), c.atr_rank_window);
        if s.vwap_hist.len() <= c.slope_lag
            || s.closes.len() <= c.vol_long
            || s.atr_hist.len() < c.atr_rank_window
        {
            return None;
        }
        let inputs = self.inputs(bar, atr);
        let s = &mut self.s;
        let thresholds = s.config.thresholds();
        let rule = decide(
            inputs.slope,
            inputs.atr_percentile,
            inputs.vol_ratio,
            &thresholds,
        );
        let candidate = rule.regime();
        let (regime, changed) = s
            .dwell
            .step(candidate, s.config.confirm, s.config.min_dwell);
        s.decisions += 1;
        Some(Decision {
            ts: bar.ts,
            seq: s.decisions,
            regime,
            changed,
            held: s.dwell.held(),
            candidate,
            rule,
            inputs,
            thresholds,
        })
    }

    /// The inputs at an evaluated bar, from full windows.
    #[allow(
        clippy::cast_precision_loss,
        reason = "f64 statistics of exact integers"
    )]
    fn inputs(&self, bar: &Bar, atr_sum: i128) -> Inputs {
        let s = &self.s;
        let c = &s.config;
        let scale = 10f64.powi(i32::from(s.price_precision));
        // Slope: VWAP now against VWAP `slope_lag` bars ago, in ATRs per bar.
        let (nn, dn) = s.vwap_hist[s.vwap_hist.len() - 1];
        let (nt, dt) = s.vwap_hist[0];
        let (vwap_now, vwap_then) = (ratio(nn, dn), ratio(nt, dt));
        let atr = ratio(atr_sum, c.atr_period as i128);
        let slope = if atr_sum > 0 {
            (vwap_now - vwap_then) / (c.slope_lag as f64 * atr)
        } else {
            0.0
        };
        // ATR percentile: mid-rank of atr/|close| among the window, exactly:
        // the keyed entries by binary search in the sorted window, any entry
        // too large for a key (or all of them, when the current one is) by
        // the saturating cross products, one by one.
        let close_abs = i128::from(bar.close.unsigned_abs().max(1));
        let now = RankKey::new(atr_sum, bar.close);
        let (mut below, mut equal) = now.map_or((0, 0), |k| s.atr_sorted.count(&k));
        if now.is_none() || s.atr_sorted.large > 0 {
            for &(a, cl) in &s.atr_hist {
                if now.is_some() && RankKey::new(a, cl).is_some() {
                    continue;
                }
                match cmp_saturating(a, cl, atr_sum, bar.close) {
                    std::cmp::Ordering::Less => below += 1,
                    std::cmp::Ordering::Equal => equal += 1,
                    std::cmp::Ordering::Greater => {}
                }
            }
        }
        let atr_percentile = (below as f64 + 0.5 * equal as f64) / s.atr_hist.len() as f64;
        // Realized volatility: RMS of log returns over the short and long windows.
        // The same returns summed in the same order as when each was
        // recomputed here: the figures are bit for bit the same.
        // Two straight loops over the ring's halves (no per-return branch);
        // each sum still adds its returns oldest first.
        let (head, tail) = s.rets.as_slices();
        let mut sum_long = 0.0f64;
        for half in [head, tail] {
            for &r in half {
                sum_long += r * r;
            }
        }
        let mut sum_short = 0.0f64;
        for &r in s.rets.range(s.rets.len().saturating_sub(c.vol_short)..) {
            sum_short += r * r;
        }
        let vol_short = (sum_short / c.vol_short as f64).sqrt();
        let vol_long = (sum_long / c.vol_long as f64).sqrt();
        let vol_ratio = if vol_long > 0.0 {
            vol_short / vol_long
        } else {
            1.0
        };
        Inputs {
            slope,
            atr_percentile,
            vol_ratio,
            vol_short,
            vol_long,
            atr_rel: atr / close_abs as f64,
            vwap: vwap_now / scale,
            close: Price::from_raw(bar.close, s.price_precision)
                .unwrap_or_else(|_| Price::zero(s.price_precision)),
        }
    }
}

/// Classifies a whole series with a fresh [`Classifier`]: the decisions of
/// `on_bar` over `bars` in order.
pub fn classify(
    config: RegimeConfig,
    price_precision: u8,
    bars: &[Bar],
) -> Result<Vec<Decision>, RegimeError> {
    let mut c = Classifier::new(config, price_precision)?;
    Ok(bars.iter().filter_map(|b| c.on_bar(b)).collect())
}

/// The regime in force at every bar of `bars` (same length): the last
/// decision's regime at or before the bar, carried between evaluations;
/// `None` before the first decision (warm-up). Runs [`classify`]'s classifier.
///
/// # Errors
/// An invalid `config` or precision.
pub fn regime_per_bar(
    config: RegimeConfig,
    price_precision: u8,
    bars: &[Bar],
) -> Result<Vec<Option<Regime>>, RegimeError> {
    let mut c = Classifier::new(config, price_precision)?;
    let mut now = None;
    Ok(bars
        .iter()
        .map(|b| {
            if let Some(d) = c.on_bar(b) {
                now = Some(d.regime);
            }
            now
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> RegimeConfig {
        RegimeConfig {
            vwap_window: 3,
            slope_lag: 2,
            atr_period: 3,
            atr_rank_window: 4,
            vol_short: 2,
            vol_long: 4,
            confirm: 1,
            min_dwell: 1,
            ..RegimeConfig::default()
        }
    }

    fn bar(ts: i64, close: i64) -> Bar {
        Bar {
            ts,
            open: close,
            high: close + 2,
            low: close - 2,
            close,
            volume: 10,
        }
    }

    /// The ATR percentile of the last `atr_hist` entry as the original code
    /// ranked it (every comparison by saturating exact cross products, one by
    /// one), and the number of entries equal to it.
    #[allow(clippy::cast_precision_loss, reason = "the former code, verbatim")]
    fn former_atr_percentile(hist: &VecDeque<(i128, i64)>) -> (f64, usize) {
        let &(atr_sum, close) = hist.back().unwrap();
        let close_abs = i128::from(close.unsigned_abs().max(1));
        let (mut below, mut equal) = (0usize, 0usize);
        for &(a, cl) in hist {
            let lhs = a.saturating_mul(close_abs);
            let rhs = atr_sum.saturating_mul(i128::from(cl.unsigned_abs().max(1)));
            match lhs.cmp(&rhs) {
                std::cmp::Ordering::Less => below += 1,
                std::cmp::Ordering::Equal => equal += 1,
                std::cmp::Ordering::Greater => {}
            }
        }
        (
            (below as f64 + 0.5 * equal as f64) / hist.len() as f64,
            equal,
        )
    }

    /// Feeds `bars` (restoring from JSON before bar `restore_at`) and checks
    /// every decision's ATR percentile against the former code bit for bit,
    /// the sorted window against one rebuilt from the history, and the
    /// restored classifier against the live one. Returns the decisions
    /// checked, those with ties, and those ranked with entries too large for
    /// an exact key.
    fn check_rank(config: &RegimeConfig, bars: &[Bar], restore_at: usize) -> (usize, usize, usize) {
        let mut c = Classifier::new(config.clone(), 2).unwrap();
        let (mut checked, mut ties, mut large) = (0, 0, 0);
        for (k, b) in bars.iter().enumerate() {
            if k == restore_at {
                let text = serde_json::to_string(&c).unwrap();
                let restored: Classifier = serde_json::from_str(&text).unwrap();
                assert_eq!(restored, c, "restore at bar {k}");
                c = restored;
            }
            let Some(d) = c.on_bar(b) else {
                continue;
            };
            let (want, equal) = former_atr_percentile(&c.s.atr_hist);
            assert_eq!(d.inputs.atr_percentile.to_bits(), want.to_bits(), "bar {k}");
            assert_eq!(c.s.atr_sorted, RankWindow::from_entries(&c.s.atr_hist));
            ties += usize::from(equal > 1);
            large += usize::from(c.s.atr_sorted.large > 0);
            checked += 1;
        }
        (checked, ties, large)
    }

    /// Closes beyond 2^62 (and ATR sums beyond it) take the saturating path,
    /// mixed with ordinary ones that take the binary search, zero and
    /// negative closes among them; ranks and ties as the former code's.
    #[test]
    fn the_sorted_rank_is_the_former_rank_with_huge_and_odd_closes() {
        let huge = (1i64 << 62) + 12_345;
        let bars: Vec<Bar> = (0..300i64)
            .map(|k| {
                let close = match k % 23 {
                    3 | 4 => huge,
                    7 => huge + 2 * (k % 5),
                    11 => 0,
                    13 => -1_000,
                    17..=20 => 500,
                    _ => 1_000 + (k * 37 % 19),
                };
                bar(k * 5 * MINUTE_NS, close)
            })
            .collect();
        let (checked, ties, large) = check_rank(&small(), &bars, 150);
        assert!(
            checked > 250 && ties > 20 && large > 100 && large < checked,
            "{checked} checked, {ties} with ties, {large} with large entries"
        );
    }

    proptest::proptest! {
        /// Any series of closes drawn from a few values (ties everywhere),
        /// with zero, negative and huge ones and random ranges: the sorted
        /// rank gives the former rank bit for bit, through a restore.
        #[test]
        fn the_sorted_rank_is_the_former_rank_on_any_series(
            picks in proptest::collection::vec((0usize..8, 0i64..4), 40..160),
            restore_at in 0usize..160,
            window in 2usize..12,
        ) {
            let closes = [1_000, 1_000, 2_000, 0, -3_000, 1 << 62, 999, 4_000_000];
            let bars: Vec<Bar> = picks
                .iter()
                .enumerate()
                .map(|(k, &(i, spread))| {
                    let close = closes[i];
                    Bar {
                        ts: i64::try_from(k).unwrap() * 5 * MINUTE_NS,
                        open: close,
                        high: close + spread,
                        low: close - spread,
                        close,
                        volume: 10,
                    }
                })
                .collect();
            let config = RegimeConfig {
                atr_rank_window: window,
                ..small()
            };
            check_rank(&config, &bars, restore_at);
        }
    }

    /// The volatility ratio from the cached returns and the ATR percentile
    /// from the cached ratios are bit for bit the former code's (returns
    /// recomputed from the closes, every rank comparison by exact cross
    /// products), on a series with zero, negative and flat closes and
    /// through a restore.
    #[test]
    #[allow(clippy::cast_precision_loss, reason = "the former code, verbatim")]
    fn cached_returns_give_the_recomputed_volatility_exactly() {
        let config = RegimeConfig {
            vol_short: 3,
            vol_long: 7,
            ..small()
        };
        let mut c = Classifier::new(config.clone(), 2).unwrap();
        let (mut checked, mut ties) = (0, 0);
        for k in 0..400i64 {
            let close = match k % 97 {
                13 => 0,
                41 => -5,
                // Flat stretches: equal ATR ratios, the exact path's ties.
                60..=75 => 1_000,
                _ => 1_000 + (k * 7_919 % 211) - 100,
            };
            if k == 200 {
                let text = serde_json::to_string(&c).unwrap();
                c = serde_json::from_str(&text).unwrap();
            }
            let Some(d) = c.on_bar(&bar(k * 60_000_000_000 * 5, close)) else {
                continue;
            };
            let closes = &c.s.closes;
            let n = closes.len();
            let (mut long, mut short) = (0.0f64, 0.0f64);
            for (i, w) in closes.iter().zip(closes.iter().skip(1)).enumerate() {
                let (a, b) = (*w.0, *w.1);
                let r = if a > 0 && b > 0 {
                    (b as f64 / a as f64).ln()
                } else {
                    0.0
                };
                long += r * r;
                if i + 1 + config.vol_short >= n {
                    short += r * r;
                }
            }
            let (vs, vl) = (
                (short / config.vol_short as f64).sqrt(),
                (long / config.vol_long as f64).sqrt(),
            );
            let want = if vl > 0.0 { vs / vl } else { 1.0 };
            assert_eq!(d.inputs.vol_ratio.to_bits(), want.to_bits(), "bar {k}");
            // The ATR percentile by exact cross products only (the former code).
            let (want, equal) = former_atr_percentile(&c.s.atr_hist);
            assert_eq!(d.inputs.atr_percentile.to_bits(), want.to_bits(), "bar {k}");
            assert_eq!(c.s.atr_sorted, RankWindow::from_entries(&c.s.atr_hist));
            ties += usize::from(equal > 1);
            checked += 1;
        }
        assert!(
            checked > 300 && ties > 10,
            "{checked} checked, {ties} with ties"
        );
    }

    #[test]
    fn the_rule_list_is_ordered() {
        let t = RegimeConfig::default().thresholds();
        assert_eq!(decide(1.0, 0.95, 1.0, &t), Rule::AtrPercentileHigh);
        assert_eq!(decide(1.0, 0.5, 2.0, &t), Rule::VolRatioHigh);
        assert_eq!(decide(0.08, 0.5, 1.0, &t), Rule::SlopeUp);
        assert_eq!(decide(-0.08, 0.5, 1.0, &t), Rule::SlopeDown);
        assert_eq!(decide(0.0, 0.5, 1.0, &t), Rule::Flat);
        assert_eq!(decide(0.0, 0.5, 1.3, &t), Rule::Otherwise);
        assert_eq!(decide(0.05, 0.5, 1.0, &t), Rule::Otherwise);
    }

    #[test]
    fn warm_up_then_one_decision_per_bucket() {
        let day = 24 * 60 * MINUTE_NS;
        // Daily bars: every bar is evaluated once warm.
        let daily: Vec<Bar> = (0..20).map(|i| bar(i * day, 1_000 + i)).collect();
        let d = classify(small(), 2, &daily).unwrap();
        // closes need vol_long + 1 = 5 bars; the ATR exists from bar 3 and needs
        // 4 evaluations: the first decision is at bar index 5.
        assert_eq!(d.len(), 15);
        assert_eq!(d[0].ts, 5 * day);
        assert_eq!(d[0].seq, 1);
        assert!(d[0].changed);
        // 1-minute bars: one decision per 5-minute bucket, at its first bar.
        let minutes: Vec<Bar> = (0..100)
            .map(|i| bar(i * MINUTE_NS, 1_000 + i % 7))
            .collect();
        let d = classify(small(), 2, &minutes).unwrap();
        assert!(d.iter().all(|x| x.ts % (5 * MINUTE_NS) == 0));
        assert!(d.windows(2).all(|w| w[1].ts - w[0].ts == 5 * MINUTE_NS));
        // the ATR exists from minute 2, evaluations at 5, 10, 15, 20 fill its history
        assert_eq!(d[0].ts, 20 * MINUTE_NS);
    }

    #[test]
    fn redelivered_bars_are_ignored() {
        let day = 24 * 60 * MINUTE_NS;
        let bars: Vec<Bar> = (0..12).map(|i| bar(i * day, 1_000 + i * i)).collect();
        let once = classify(small(), 2, &bars).unwrap();
        let mut c = Classifier::new(small(), 2).unwrap();
        let mut twice = Vec::new();
        for (i, b) in bars.iter().enumerate() {
            twice.extend(c.on_bar(b));
            // replay the bar and its predecessor: nothing happens
            assert!(c.on_bar(b).is_none());
            assert!(c.on_bar(&bars[i.saturating_sub(1)]).is_none());
        }
        assert_eq!(once, twice);
    }

    #[test]
    fn inputs_follow_the_formulas() {
        let day = 24 * 60 * MINUTE_NS;
        // closes rise by 1 per bar, range 4, true range 4 (|h - pc| = 3 < 4): ATR 4.
        let bars: Vec<Bar> = (0..8).map(|i| bar(i * day, 1_000 + i)).collect();
        let d = classify(small(), 2, &bars).unwrap();
        let last = d.last().unwrap();
        // VWAP moves 1 per bar: slope = 2 / (2 * 4)
        assert!((last.inputs.slope - 0.25).abs() < 1e-12, "{last:?}");
        // the VWAP of closes 10.05, 10.06, 10.07 (typical price = close here)
        assert!((last.inputs.vwap - 10.06).abs() < 1e-9, "{last:?}");
        // ATR/close falls as the close rises: the current one ranks lowest of 4 (mid-rank 0.5/4)
        assert!((last.inputs.atr_percentile - 0.125).abs() < 1e-12);
        assert_eq!(last.rule, Rule::SlopeUp);
        assert_eq!(last.regime, Regime::TrendingUp);
        assert_eq!(last.inputs.close.to_string(), "10.07");
    }

    #[test]
    fn a_bad_precision_or_state_is_refused() {
        assert!(matches!(
            Classifier::new(small(), 10),
            Err(RegimeError::InvalidConfig {
                field: "price_precision",
                ..
            })
        ));
        let c = Classifier::new(small(), 2).unwrap();
        let mut v = serde_json::to_value(&c).unwrap();
        v["config"]["atr_period"] = serde_json::json!(5);
        assert!(serde_json::from_value::<Classifier>(v).is_err());
        let mut v = serde_json::to_value(&c).unwrap();
        v["closes"] = serde_json::json!([1, 2, 3, 4, 5, 6, 7]);
        assert!(serde_json::from_value::<Classifier>(v).is_err());
    }
}
