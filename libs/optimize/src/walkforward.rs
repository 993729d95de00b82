//! Walk-forward analysis: the windows, and what the folds add up to.
//!
//! A walk-forward run splits a time range into folds. Each fold searches its
//! parameters on an in-sample window and trades the best of them, unchanged,
//! on the out-of-sample window that follows. The out-of-sample windows tile
//! the end of the range back to back, so their equity curves stitch into one
//! out-of-sample history, the only figure of the run that no search saw.
//!
//! Windows ([`windows`]): with `n` folds, an in-sample share `f` and a
//! validation share `v` of each window (training, validation, test), the
//! window length `W` solves `(f + v) W + n (1 - f - v) W = span`; fold `k`
//! tests the `T = (1 - f - v) W` starting `(f + v) W + k T` into the range,
//! validates on the `v W` before it and trains on the `f W` before that
//! (rolling) or on everything from the range start (anchored, growing). Or
//! explicit lengths ([`Lengths`]: train, validation, test, step): as many
//! folds as fit, tests a step apart. Every window is half-open,
//! `[start, end)`, as the catalog reads ranges; training ends where
//! validation starts and validation where the test starts: no bar of a test
//! window is in its training or validation window.
//!
//! Each test window is traded with the strategy warmed up on the bars
//! before it ([`warmup_bars`]): a test window that starts with cold
//! indicators would sit out its first `slow` bars and understate what the
//! chosen parameters do out of sample.
//!
//! Aggregation ([`summarize`]): the out-of-sample curves chained by returns
//! ([`stitch`]), the walk-forward efficiency (mean out-of-sample objective
//! over mean in-sample objective), the decay per fold (in-sample minus
//! out-of-sample objective), and the stability of each chosen parameter
//! across folds ([`Stability`]).

use std::collections::BTreeMap;

use grodt_analytics::metrics::{EquityPoint, MetricsConfig, PerformanceInput, compute};
use serde::{Deserialize, Serialize};

use crate::space::Params;

/// Why a walk-forward set-up or aggregation was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WalkForwardError {
    /// A setting out of its range, naming it.
    #[error("{field}: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The metrics of the stitched curve could not be computed.
    #[error("stitched out-of-sample metrics: {0}")]
    Metrics(#[from] grodt_analytics::error::AnalyticsError),
}

/// How the range is split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowSpec {
    /// Folds: 2..=100 with shares; with [`Lengths`], 0 = as many as fit,
    /// else at most this many (the latest).
    pub folds: u32,
    /// Training share of each window, in (0, 1); 0 with [`Lengths`].
    pub in_sample_fraction: f64,
    /// Validation share of each window, in [0, 1 - in_sample_fraction); 0
    /// with [`Lengths`] (or none).
    #[serde(default)]
    pub validation_fraction: f64,
    /// In-sample windows all start at the range start (they grow) instead
    /// of rolling with a fixed length.
    pub anchored: bool,
    /// Explicit window lengths instead of shares.
    #[serde(default)]
    pub lengths: Option<Lengths>,
}

/// Explicit window lengths, ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lengths {
    /// Training (with `anchored`, the first fold's; later ones grow).
    pub train: i64,
    /// Validation, between training and test; 0 = none.
    pub validation: i64,
    /// Test.
    pub test: i64,
    /// From one fold's test start to the next; 0 = `test` (back to back);
    /// never below `test`, so test windows never overlap.
    pub step: i64,
}

/// One fold's windows, half-open Unix-nanosecond ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// 0-based.
    pub fold: u32,
    /// Where the search runs.
    pub in_sample: (i64, i64),
    /// Where the search's best candidates are compared, between the two:
    /// starts where `in_sample` ends and ends where `out_of_sample` starts.
    #[serde(default)]
    pub validation: Option<(i64, i64)>,
    /// Where the chosen parameters trade.
    pub out_of_sample: (i64, i64),
}

/// Most folds.
pub const MAX_FOLDS: u32 = 100;

fn invalid(field: &'static str, reason: &str) -> WalkForwardError {
    WalkForwardError::Invalid {
        field,
        reason: reason.to_owned(),
    }
}

/// The folds' windows over `[start, end)`.
///
/// # Errors
/// [`WalkForwardError::Invalid`] naming the setting: a fold count outside
/// its range, shares outside theirs (or given with lengths), lengths that
/// are not positive or a step below the test length, an empty range, or a
/// range too short to give every window at least one nanosecond (with
/// lengths: to hold one fold).
pub fn windows(start: i64, end: i64, spec: &WindowSpec) -> Result<Vec<Window>, WalkForwardError> {
    if end <= start {
        return Err(invalid("base.range", "end must be after start"));
    }
    match spec.lengths {
        Some(l) => explicit(start, end, spec, l),
        None => shares(start, end, spec),
    }
}

/// A fold whose test window starts at `test_start` (offsets from `start`).
fn fold(
    start: i64,
    end: i64,
    k: u32,
    (train_from, validation, test_start, test_end): (i128, i128, i128, i128),
) -> Window {
    let at = |offset: i128| -> i64 { i64::try_from(i128::from(start) + offset).unwrap_or(end) };
    let val_start = test_start - validation;
    Window {
        fold: k,
        in_sample: (at(train_from), at(val_start)),
        validation: (validation > 0).then(|| (at(val_start), at(test_start))),
        out_of_sample: (at(test_start), at(test_end)),
    }
}

fn shares(start: i64, end: i64, spec: &WindowSpec) -> Result<Vec<Window>, WalkForwardError> {
    if !(2..=MAX_FOLDS).contains(&spec.folds) {
        return Err(invalid("walk_forward.folds", "must be in 2..=100"));
    }
    let (f, v) = (spec.in_sample_fraction, spec.validation_fraction);
    if !(f > 0.0 && f < 1.0) {
        return Err(invalid(
            "walk_forward.in_sample_fraction",
            "must be in (0, 1)",
        ));
    }
    if !(v >= 0.0 && f + v < 1.0) {
        return Err(invalid(
            "walk_forward.validation_fraction",
            "must be in [0, 1 - in_sample_fraction)",
        ));
    }
    // i128: a span of the whole i64 range must not overflow.
    let span = i128::from(end) - i128::from(start);
    let n = f64::from(spec.folds);
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        reason = "window lengths in ns, rounded down; the last window ends at `end` exactly"
    )]
    let (train, validation, test) = {
        let w = span as f64 / (f + v + n * (1.0 - f - v));
        let test = ((1.0 - f - v) * w).floor() as i128;
        let validation = (v * w).floor() as i128;
        let train = span - i128::from(spec.folds) * test - validation;
        (train, validation, test)
    };
    if test < 1 || train < 1 || (v > 0.0 && validation < 1) {
        return Err(invalid(
            "base.range",
            "too short for these folds and fractions",
        ));
    }
    Ok((0..spec.folds)
        .map(|k| {
            let test_start = train + validation + i128::from(k) * test;
            let test_end = if k + 1 == spec.folds {
                span
            } else {
                test_start + test
            };
            let train_from = if spec.anchored {
                0
            } else {
                i128::from(k) * test
            };
            fold(
                start,
                end,
                k,
                (train_from, validation, test_start, test_end),
            )
        })
        .collect())
}

fn explicit(
    start: i64,
    end: i64,
    spec: &WindowSpec,
    l: Lengths,
) -> Result<Vec<Window>, WalkForwardError> {
    if spec.in_sample_fraction != 0.0 || spec.validation_fraction != 0.0 {
        return Err(invalid(
            "walk_forward.in_sample_fraction",
            "not with explicit window lengths (leave the fractions 0)",
        ));
    }
    if spec.folds > MAX_FOLDS {
        return Err(invalid(
            "walk_forward.folds",
            "must be at most 100 (0 = as many as fit)",
        ));
    }
    if l.train < 1 {
        return Err(invalid("walk_forward.train_seconds", "must be positive"));
    }
    if l.test < 1 {
        return Err(invalid("walk_forward.test_seconds", "must be positive"));
    }
    if l.validation < 0 {
        return Err(invalid(
            "walk_forward.validation_seconds",
            "must not be negative",
        ));
    }
    let step = if l.step == 0 { l.test } else { l.step };
    if step < l.test {
        return Err(invalid(
            "walk_forward.step_seconds",
            "must be at least test_seconds: test windows may not overlap",
        ));
    }
    let span = i128::from(end) - i128::from(start);
    let (train, validation, test, step) = (
        i128::from(l.train),
        i128::from(l.validation),
        i128::from(l.test),
        i128::from(step),
    );
    let first = train + validation;
    if first + test > span {
        return Err(invalid(
            "base.range",
            "too short for one fold of these lengths",
        ));
    }
    let fit = (span - first - test) / step + 1;
    let cap = if spec.folds == 0 {
        i128::from(MAX_FOLDS)
    } else {
        i128::from(spec.folds)
    };
    // The latest folds when more fit than asked for.
    let skip = (fit - cap).max(0);
    let count = fit.min(cap);
    Ok((0..count)
        .map(|j| {
            let k = u32::try_from(j).unwrap_or(u32::MAX);
            let test_start = first + (skip + j) * step;
            let train_from = if spec.anchored { 0 } else { test_start - first };
            fold(
                start,
                end,
                k,
                (train_from, validation, test_start, test_start + test),
            )
        })
        .collect())
}

/// The candidate a fold trades after its validation window: the best
/// validation objective (maximised; `None` where it was undefined or the run
/// failed), ties to the better in-sample rank (the lower index); `None` when
/// no candidate has a defined one (the caller then trades the in-sample best).
pub fn pick_validated(scores: &[Option<f64>]) -> Option<(usize, f64)> {
    let mut pick: Option<(usize, f64)> = None;
    for (rank, score) in scores.iter().enumerate() {
        if let Some(v) = *score
            && pick.is_none_or(|(_, best)| v > best)
        {
            pick = Some((rank, v));
        }
    }
    pick
}

/// Most warm-up bars a test window gets (`BacktestSpec.warmup_bars`' bound).
pub const MAX_WARMUP_BARS: u32 = 100_000;

/// The warm-up of a test window traded with `params` of `strategy`: the bars
/// before the window the strategy needs to decide in it as a run over the
/// whole history would (`Configured::warmup_bars`), at most
/// [`MAX_WARMUP_BARS`]; 0 when the registry refuses the set (its backtest
/// then fails with the reason). The warm-up bars precede the test window,
/// so they are history at the time of the test, never a look ahead.
pub fn warmup_bars(strategy: &str, params: &Params) -> u32 {
    grodt_strategies::registry::parse(strategy, params).map_or(0, |c| {
        u32::try_from(c.warmup_bars())
            .unwrap_or(MAX_WARMUP_BARS)
            .min(MAX_WARMUP_BARS)
    })
}

/// What one fold produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldResult {
    /// The parameters chosen in sample.
    pub params: Params,
    /// Their in-sample objective (as the study scored it: higher is better).
    pub in_sample_objective: f64,
    /// Their out-of-sample objective, `None` when it could not be scored
    /// (too few trades, an undefined ratio).
    pub out_of_sample_objective: Option<f64>,
    /// The out-of-sample equity curve.
    pub curve: Vec<EquityPoint>,
}

/// How steady one parameter's choice was across folds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stability {
    /// The value chosen most often.
    pub modal_value: String,
    /// Folds that chose it, over folds.
    pub modal_share: f64,
    /// For numeric parameters: standard deviation (ddof 0) over the
    /// absolute mean of the chosen values (0 = the same every fold); `None`
    /// for categorical ones or a mean of zero.
    pub coefficient_of_variation: Option<f64>,
}

/// The folds together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The out-of-sample curves chained by returns from the first fold's
    /// starting equity.
    pub stitched: Vec<EquityPoint>,
    /// Metrics of the stitched curve.
    pub metrics: grodt_analytics::Metrics,
    /// Mean out-of-sample objective over mean in-sample objective, over
    /// folds with both; `None` when none has both or the in-sample mean is 0.
    pub efficiency: Option<f64>,
    /// In-sample minus out-of-sample objective, per fold (`None` where the
    /// out-of-sample one is undefined).
    pub decay: Vec<Option<f64>>,
    /// Per parameter.
    pub stability: BTreeMap<String, Stability>,
}

/// The out-of-sample curves as one: each fold's returns applied to the
/// equity the previous folds ended with. Empty curves are skipped; a fold's
/// first mark continues the previous fold's last (its own starting equity is
/// the same capital, restarted).
pub fn stitch(curves: &[Vec<EquityPoint>]) -> Vec<EquityPoint> {
    let mut out: Vec<EquityPoint> = Vec::new();
    for curve in curves {
        let Some(first) = curve.first() else { continue };
        let scale = out.last().map_or(1.0, |last| last.equity / first.equity);
        let skip = usize::from(!out.is_empty());
        out.extend(curve.iter().skip(skip).map(|p| EquityPoint {
            ts: p.ts,
            equity: p.equity * scale,
        }));
    }
    out
}

/// The stability of each parameter over the folds' choices.
pub fn stability(chosen: &[&Params]) -> BTreeMap<String, Stability> {
    let mut names: Vec<&String> = chosen.iter().flat_map(|p| p.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let values: Vec<&str> = chosen
                .iter()
                .filter_map(|p| p.get(name).map(String::as_str))
                .collect();
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for v in &values {
                *counts.entry(v).or_default() += 1;
            }
            // Most frequent; ties to the smallest text, for determinism.
            let (modal, n) = counts
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map_or(("", 0), |(v, n)| (*v, *n));
            let numbers: Option<Vec<f64>> = values.iter().map(|v| v.parse::<f64>().ok()).collect();
            #[allow(clippy::cast_precision_loss, reason = "fold counts")]
            let cv = numbers.filter(|x| !x.is_empty()).and_then(|x| {
                let len = x.len() as f64;
                let mean = x.iter().sum::<f64>() / len;
                let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / len;
                (mean != 0.0).then(|| var.sqrt() / mean.abs())
            });
            #[allow(clippy::cast_precision_loss, reason = "fold counts")]
            let share = if values.is_empty() {
                0.0
            } else {
                n as f64 / values.len() as f64
            };
            (
                name.clone(),
                Stability {
                    modal_value: modal.to_owned(),
                    modal_share: share,
                    coefficient_of_variation: cv,
                },
            )
        })
        .collect()
}

/// The folds' results together.
///
/// # Errors
/// [`WalkForwardError::Metrics`] when the stitched curve is too short or
/// not increasing in time (for example fewer than two marks in all).
pub fn summarize(
    folds: &[FoldResult],
    config: &MetricsConfig,
) -> Result<Summary, WalkForwardError> {
    let curves: Vec<Vec<EquityPoint>> = folds.iter().map(|f| f.curve.clone()).collect();
    let stitched = stitch(&curves);
    let metrics = compute(
        &PerformanceInput {
            equity: &stitched,
            positions: None,
            trades: &[],
        },
        config,
    )?;
    let both: Vec<(f64, f64)> = folds
        .iter()
        .filter_map(|f| {
            f.out_of_sample_objective
                .map(|o| (f.in_sample_objective, o))
        })
        .collect();
    #[allow(clippy::cast_precision_loss, reason = "fold counts")]
    let efficiency = (!both.is_empty()).then(|| {
        let n = both.len() as f64;
        let is = both.iter().map(|x| x.0).sum::<f64>() / n;
        let oos = both.iter().map(|x| x.1).sum::<f64>() / n;
        (is != 0.0).then_some(oos / is)
    });
    let chosen: Vec<&Params> = folds.iter().map(|f| &f.params).collect();
    Ok(Summary {
        stitched,
        metrics,
        efficiency: efficiency.flatten(),
        decay: folds
            .iter()
            .map(|f| f.out_of_sample_objective.map(|o| f.in_sample_objective - o))
            .collect(),
        stability: stability(&chosen),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: i64 = 86_400_000_000_000;

    fn spec(folds: u32, f: f64, anchored: bool) -> WindowSpec {
        WindowSpec {
            folds,
            in_sample_fraction: f,
            validation_fraction: 0.0,
            anchored,
            lengths: None,
        }
    }

    fn lengths(folds: u32, days: (i64, i64, i64, i64), anchored: bool) -> WindowSpec {
        WindowSpec {
            folds,
            in_sample_fraction: 0.0,
            validation_fraction: 0.0,
            anchored,
            lengths: Some(Lengths {
                train: days.0 * DAY,
                validation: days.1 * DAY,
                test: days.2 * DAY,
                step: days.3 * DAY,
            }),
        }
    }

    #[test]
    fn validation_picks_the_best_there_ties_to_the_better_rank() {
        assert_eq!(
            pick_validated(&[Some(0.1), Some(0.5), Some(0.3)]),
            Some((1, 0.5))
        );
        assert_eq!(pick_validated(&[Some(0.5), Some(0.5)]), Some((0, 0.5)));
        assert_eq!(pick_validated(&[None, Some(-1.0), None]), Some((1, -1.0)));
        assert_eq!(pick_validated(&[None, None]), None);
        assert_eq!(pick_validated(&[]), None);
    }

    /// A fold's (training, validation, test) windows in days.
    type Days = ((i64, i64), Option<(i64, i64)>, (i64, i64));

    fn days(w: &Window) -> Days {
        let d = |(a, b): (i64, i64)| (a / DAY, b / DAY);
        (d(w.in_sample), w.validation.map(d), d(w.out_of_sample))
    }

    #[test]
    fn validation_sits_between_training_and_test() {
        // 2 folds, 50% train, 25% validation over 500 days: W = 500 / (0.75
        // + 2 * 0.25) = 400, so test 100, validation 100, train 200.
        let mut s = spec(2, 0.5, false);
        s.validation_fraction = 0.25;
        let w = windows(0, 500 * DAY, &s).unwrap();
        assert_eq!(
            w.iter().map(days).collect::<Vec<_>>(),
            vec![
                ((0, 200), Some((200, 300)), (300, 400)),
                ((100, 300), Some((300, 400)), (400, 500)),
            ]
        );
        assert!(
            windows(0, 500 * DAY, &spec(2, 0.5, false)).unwrap()[0]
                .validation
                .is_none()
        );
    }

    #[test]
    fn explicit_lengths_fit_as_many_folds_as_the_range_holds() {
        // train 200, validation 50, test 100, step 100 over 700 days:
        // tests at 250, 350, 450, 550 (the last ends at 650).
        let w = windows(0, 700 * DAY, &lengths(0, (200, 50, 100, 0), false)).unwrap();
        let got: Vec<_> = w.iter().map(days).collect();
        assert_eq!(
            got,
            vec![
                ((0, 200), Some((200, 250)), (250, 350)),
                ((100, 300), Some((300, 350)), (350, 450)),
                ((200, 400), Some((400, 450)), (450, 550)),
                ((300, 500), Some((500, 550)), (550, 650)),
            ]
        );
        // At most 2 folds: the latest two, renumbered from 0.
        let two = windows(0, 700 * DAY, &lengths(2, (200, 50, 100, 0), false)).unwrap();
        assert_eq!(two.iter().map(days).collect::<Vec<_>>(), got[2..].to_vec());
        assert_eq!((two[0].fold, two[1].fold), (0, 1));
        // A step beyond the test length leaves gaps; anchored trains from 0.
        let a = windows(0, 700 * DAY, &lengths(0, (300, 0, 100, 150), true)).unwrap();
        let got: Vec<_> = a.iter().map(days).collect();
        assert_eq!(
            got,
            vec![
                ((0, 300), None, (300, 400)),
                ((0, 450), None, (450, 550)),
                ((0, 600), None, (600, 700)),
            ]
        );
    }

    #[test]
    fn bad_lengths_name_their_field() {
        let field = |s: WindowSpec| match windows(0, 700 * DAY, &s).unwrap_err() {
            WalkForwardError::Invalid { field, .. } => field,
            e => panic!("{e}"),
        };
        assert_eq!(
            field(lengths(0, (0, 0, 100, 0), false)),
            "walk_forward.train_seconds"
        );
        assert_eq!(
            field(lengths(0, (100, 0, 0, 0), false)),
            "walk_forward.test_seconds"
        );
        assert_eq!(
            field(lengths(0, (100, 0, 100, 50), false)),
            "walk_forward.step_seconds"
        );
        assert_eq!(field(lengths(0, (600, 50, 100, 0), false)), "base.range");
        let mut both = lengths(0, (100, 0, 100, 0), false);
        both.in_sample_fraction = 0.5;
        assert_eq!(field(both), "walk_forward.in_sample_fraction");
        let mut v = spec(3, 0.8, false);
        v.validation_fraction = 0.2;
        assert_eq!(field(v), "walk_forward.validation_fraction");
    }

    #[test]
    fn rolling_windows_of_a_known_split() {
        // 3 folds, 75% in sample over 600 days: W = 600 / (0.75 + 0.75) = 400,
        // train 300, test 100.
        let w = windows(0, 600 * DAY, &spec(3, 0.75, false)).unwrap();
        let days = |(a, b): (i64, i64)| (a / DAY, b / DAY);
        let got: Vec<_> = w
            .iter()
            .map(|w| (days(w.in_sample), days(w.out_of_sample)))
            .collect();
        assert_eq!(
            got,
            vec![
                ((0, 300), (300, 400)),
                ((100, 400), (400, 500)),
                ((200, 500), (500, 600)),
            ]
        );
        let a = windows(0, 600 * DAY, &spec(3, 0.75, true)).unwrap();
        assert!(
            a.iter().all(|w| w.in_sample.0 == 0),
            "anchored from the start"
        );
        assert_eq!(a[2].in_sample.1 / DAY, 500);
    }

    #[test]
    fn bad_settings_name_their_field() {
        let field = |r: Result<Vec<Window>, WalkForwardError>| match r.unwrap_err() {
            WalkForwardError::Invalid { field, .. } => field,
            e => panic!("{e}"),
        };
        assert_eq!(
            field(windows(0, DAY, &spec(1, 0.5, false))),
            "walk_forward.folds"
        );
        assert_eq!(
            field(windows(0, DAY, &spec(2, 1.0, false))),
            "walk_forward.in_sample_fraction"
        );
        assert_eq!(field(windows(5, 5, &spec(2, 0.5, false))), "base.range");
        assert_eq!(field(windows(0, 3, &spec(4, 0.5, false))), "base.range");
    }

    proptest! {
        /// Every fold trains strictly before it tests, the tests tile the
        /// end of the range back to back, and every window lies in the range.
        #[test]
        fn no_test_bar_is_in_its_training_window(
            start in -1_000_000_000_000_000_000i64..1_000_000_000_000_000_000,
            len in 1_000i64..4_000_000_000_000_000_000,
            folds in 2u32..=20,
            f in 0.05f64..0.9,
            v in prop::sample::select(vec![0.0, 0.02, 0.05]),
            anchored: bool,
        ) {
            let end = start + len;
            let mut s = spec(folds, f, anchored);
            s.validation_fraction = v;
            let w = windows(start, end, &s).unwrap();
            prop_assert_eq!(w.len() as u32, folds);
            prop_assert_eq!(w.last().unwrap().out_of_sample.1, end);
            for (k, x) in w.iter().enumerate() {
                ordered(x, start, end)?;
                prop_assert_eq!(x.validation.is_some(), v > 0.0);
                if k > 0 {
                    prop_assert_eq!(w[k - 1].out_of_sample.1, x.out_of_sample.0);
                }
            }
        }

        /// With explicit lengths: the same order in every fold, tests a
        /// step apart and never overlapping, all inside the range.
        #[test]
        fn explicit_windows_keep_their_order(
            start in -1_000_000_000i64..1_000_000_000,
            len in 1_000i64..1_000_000,
            train in 1i64..300,
            validation in 0i64..50,
            test in 1i64..200,
            extra in 0i64..100,
            folds in 0u32..10,
            anchored: bool,
        ) {
            let end = start + len;
            let s = WindowSpec {
                folds,
                in_sample_fraction: 0.0,
                validation_fraction: 0.0,
                anchored,
                lengths: Some(Lengths { train, validation, test, step: test + extra }),
            };
            match windows(start, end, &s) {
                Ok(w) => {
                    prop_assert!(!w.is_empty());
                    prop_assert!(folds == 0 || w.len() as u32 <= folds);
                    for (k, x) in w.iter().enumerate() {
                        ordered(x, start, end)?;
                        prop_assert_eq!(x.out_of_sample.1 - x.out_of_sample.0, test);
                        if k > 0 {
                            prop_assert_eq!(x.out_of_sample.0 - w[k - 1].out_of_sample.0, test + extra);
                        }
                    }
                    // No room for one more fold after the last.
                    prop_assert!(w.last().unwrap().out_of_sample.0 + test + extra + test > end);
                }
                Err(_) => prop_assert!(train + validation + test > len),
            }
        }
    }

    /// Training, then validation (if any), then test, each non-empty, back
    /// to back, inside `[start, end)`.
    fn ordered(x: &Window, start: i64, end: i64) -> Result<(), TestCaseError> {
        prop_assert!(x.in_sample.0 >= start && x.in_sample.0 < x.in_sample.1);
        match x.validation {
            Some((a, b)) => {
                prop_assert_eq!(x.in_sample.1, a);
                prop_assert!(a < b);
                prop_assert_eq!(b, x.out_of_sample.0);
            }
            None => prop_assert_eq!(x.in_sample.1, x.out_of_sample.0),
        }
        prop_assert!(x.out_of_sample.0 < x.out_of_sample.1 && x.out_of_sample.1 <= end);
        Ok(())
    }

    fn curve(points: &[(i64, f64)]) -> Vec<EquityPoint> {
        points
            .iter()
            .map(|&(ts, equity)| EquityPoint { ts, equity })
            .collect()
    }

    #[test]
    fn stitching_chains_the_folds_returns() {
        // +10% then -50% then +20%: 100 -> 110 -> 55 -> 66.
        let s = stitch(&[
            curve(&[(1, 100.0), (2, 110.0)]),
            curve(&[(2, 100.0), (3, 50.0)]),
            Vec::new(),
            curve(&[(3, 100.0), (4, 120.0)]),
        ]);
        let got: Vec<(i64, f64)> = s.iter().map(|p| (p.ts, p.equity)).collect();
        assert_eq!(got.len(), 4);
        for ((ts, e), (wts, we)) in got
            .iter()
            .zip([(1, 100.0), (2, 110.0), (3, 55.0), (4, 66.0)])
        {
            assert_eq!(*ts, wts);
            assert!((e - we).abs() < 1e-9, "{e} vs {we}");
        }
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn stability_of_numeric_and_categorical_choices() {
        let a = params(&[("fast", "10"), ("mode", "long")]);
        let b = params(&[("fast", "10"), ("mode", "short")]);
        let c = params(&[("fast", "40"), ("mode", "long")]);
        let s = stability(&[&a, &b, &c]);
        assert_eq!(s["fast"].modal_value, "10");
        assert!((s["fast"].modal_share - 2.0 / 3.0).abs() < 1e-12);
        // values 10, 10, 40: mean 20, sd sqrt(200): cv = 0.7071...
        let cv = s["fast"].coefficient_of_variation.unwrap();
        assert!((cv - 200f64.sqrt() / 20.0).abs() < 1e-12, "{cv}");
        assert_eq!(s["mode"].modal_value, "long");
        assert_eq!(s["mode"].coefficient_of_variation, None);
        let same = stability(&[&a, &a]);
        assert_eq!(same["fast"].coefficient_of_variation, Some(0.0));
        assert_eq!(same["fast"].modal_share, 1.0);
    }

    #[test]
    fn a_summary_of_known_folds() {
        let folds = vec![
            FoldResult {
                params: params(&[("fast", "10")]),
                in_sample_objective: 2.0,
                out_of_sample_objective: Some(1.0),
                curve: curve(&[(DAY, 100.0), (2 * DAY, 110.0)]),
            },
            FoldResult {
                params: params(&[("fast", "20")]),
                in_sample_objective: 1.0,
                out_of_sample_objective: None,
                curve: curve(&[(2 * DAY, 100.0), (3 * DAY, 50.0)]),
            },
            FoldResult {
                params: params(&[("fast", "10")]),
                in_sample_objective: 4.0,
                out_of_sample_objective: Some(-1.0),
                curve: curve(&[(3 * DAY, 100.0), (4 * DAY, 120.0)]),
            },
        ];
        let s = summarize(&folds, &MetricsConfig::equities_daily()).unwrap();
        // Folds with both objectives: (2, 1) and (4, -1): means 3 and 0.
        assert_eq!(s.efficiency, Some(0.0));
        assert_eq!(s.decay, vec![Some(1.0), None, Some(5.0)]);
        assert!((s.metrics.total_return - (66.0 / 100.0 - 1.0)).abs() < 1e-12);
        // 110 -> 55 is the deepest fall.
        assert!((s.metrics.drawdown.max_drawdown + 0.5).abs() < 1e-12);
        assert_eq!(s.stitched.len(), 4);
        assert_eq!(s.stability["fast"].modal_value, "10");
    }
}
