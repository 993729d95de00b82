//! Walk-forward analysis: the windows, and what the folds add up to.
//!
//! A walk-forward run splits a time range into folds. Each fold searches its
//! parameters on an in-sample window and trades the best of them, unchanged,
//! on the out-of-sample window that follows. The out-of-sample windows tile
//! the end of the range back to back, so their equity curves stitch into one
//! out-of-sample history, the only figure of the run that no search saw.
//!
//! Windows ([`windows`]): with `n` folds and an in-sample share `f` of each
//! window (in-sample plus out-of-sample), the window length `W` solves
//! `f W + n (1 - f) W = span`; fold `k` tests `[S + f W + k T, S + f W + (k + 1) T)`
//! with `T = (1 - f) W`, and trains on the `f W` before it (rolling) or on
//! everything from `S` (anchored, the in-sample window grows). Every window is
//! half-open, `[start, end)`, as the catalog reads ranges, and each in-sample
//! window ends where its out-of-sample window starts: no bar of a test
//! window is in its training window.
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
    /// Folds, >= 2.
    pub folds: u32,
    /// In-sample share of each window, in (0, 1).
    pub in_sample_fraction: f64,
    /// In-sample windows all start at the range start (they grow) instead
    /// of rolling with a fixed length.
    pub anchored: bool,
}

/// One fold's windows, half-open Unix-nanosecond ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// 0-based.
    pub fold: u32,
    /// Where the search runs.
    pub in_sample: (i64, i64),
    /// Where the chosen parameters trade.
    pub out_of_sample: (i64, i64),
}

/// Most folds.
pub const MAX_FOLDS: u32 = 100;

/// The folds' windows over `[start, end)`.
///
/// # Errors
/// [`WalkForwardError::Invalid`] for fewer than 2 or more than
/// [`MAX_FOLDS`] folds, a fraction outside (0, 1), an empty range, or a
/// range too short to give every window at least one nanosecond.
pub fn windows(start: i64, end: i64, spec: &WindowSpec) -> Result<Vec<Window>, WalkForwardError> {
    let invalid = |field, reason: &str| WalkForwardError::Invalid {
        field,
        reason: reason.to_owned(),
    };
    if !(2..=MAX_FOLDS).contains(&spec.folds) {
        return Err(invalid("walk_forward.folds", "must be in 2..=100"));
    }
    let f = spec.in_sample_fraction;
    if !(f > 0.0 && f < 1.0) {
        return Err(invalid(
            "walk_forward.in_sample_fraction",
            "must be in (0, 1)",
        ));
    }
    if end <= start {
        return Err(invalid("base.range", "end must be after start"));
    }
    // i128: a span of the whole i64 range must not overflow.
    let span = i128::from(end) - i128::from(start);
    let n = f64::from(spec.folds);
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        reason = "window lengths in ns, rounded down; the last window ends at `end` exactly"
    )]
    let (train, test) = {
        let w = span as f64 / (f + n * (1.0 - f));
        let test = ((1.0 - f) * w).floor() as i128;
        let train = span - i128::from(spec.folds) * test;
        (train, test)
    };
    if test < 1 || train < 1 {
        return Err(invalid(
            "base.range",
            "too short for these folds and in-sample fraction",
        ));
    }
    let at = |offset: i128| -> i64 { i64::try_from(i128::from(start) + offset).unwrap_or(end) };
    Ok((0..spec.folds)
        .map(|k| {
            let test_start = train + i128::from(k) * test;
            let test_end = if k + 1 == spec.folds {
                span
            } else {
                test_start + test
            };
            let train_start = if spec.anchored {
                0
            } else {
                i128::from(k) * test
            };
            Window {
                fold: k,
                in_sample: (at(train_start), at(test_start)),
                out_of_sample: (at(test_start), at(test_end)),
            }
        })
        .collect())
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
            anchored,
        }
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
            f in 0.05f64..0.95,
            anchored: bool,
        ) {
            let end = start + len;
            let w = windows(start, end, &spec(folds, f, anchored)).unwrap();
            prop_assert_eq!(w.len() as u32, folds);
            prop_assert_eq!(w.last().unwrap().out_of_sample.1, end);
            for (k, x) in w.iter().enumerate() {
                prop_assert!(x.in_sample.0 >= start && x.in_sample.0 < x.in_sample.1);
                prop_assert_eq!(x.in_sample.1, x.out_of_sample.0);
                prop_assert!(x.out_of_sample.0 < x.out_of_sample.1);
                if k > 0 {
                    prop_assert_eq!(w[k - 1].out_of_sample.1, x.out_of_sample.0);
                }
            }
        }
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
