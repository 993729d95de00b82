//! Monte Carlo analysis of one backtest (the best trial of a study): how
//! much of its result is the luck of the order its trades came in, or of
//! the particular returns the sample happened to have.
//!
//! - [`Method::TradeShuffle`]: the closed trades' net PnL in a random order
//!   (a permutation per simulation). The final equity is the same in every
//!   simulation (a sum does not depend on order); the drawdown is what
//!   varies: the observed path's drawdown against the distribution of
//!   drawdowns the same trades could have produced.
//! - [`Method::ReturnBootstrap`]: the per-bar returns of the equity curve
//!   drawn with replacement (as many as there were) and compounded: final
//!   equity and drawdown both vary.
//!
//! - [`Method::PriceNoise`]: the backtest re-run on N seeded noisy copies of
//!   its data (the workers run them; [`from_runs`] sums them up): final
//!   equity, drawdown and the objective all vary, and the objective's
//!   degradation (observed minus the median of the noisy runs) says how much
//!   of the result depends on the exact prices.
//!
//! Figures: 5th, 50th and 95th percentiles (nearest rank) of final equity
//! and max drawdown (a fraction <= 0), the share of simulations ending below
//! the initial equity, and where the observed result falls (the share of
//! simulations at or below it). Seeded and deterministic.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// What is resampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Trades' net PnL, permuted.
    TradeShuffle,
    /// Per-bar returns, drawn with replacement.
    ReturnBootstrap,
    /// Re-runs on noisy copies of the prices.
    PriceNoise,
}

/// Why an analysis could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MonteCarloError {
    /// Too few simulations or too many.
    #[error("simulations must be in 100..=100000, got {0}")]
    Simulations(u32),
    /// Nothing to resample.
    #[error("the backtest has no {0} to resample")]
    Empty(&'static str),
    /// The initial equity is not positive and finite.
    #[error("initial equity must be positive, got {0}")]
    Equity(f64),
}

/// Percentiles of one figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// 5th percentile.
    pub p5: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
}

/// The analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonteCarlo {
    /// What was resampled.
    pub method: Method,
    /// Simulations run.
    pub simulations: u32,
    /// Final equity across simulations.
    pub final_equity: Spread,
    /// Max drawdown (<= 0) across simulations.
    pub max_drawdown: Spread,
    /// Share of simulations ending below the initial equity.
    pub probability_of_loss: f64,
    /// The backtest's own final equity and drawdown.
    pub observed_final_equity: f64,
    /// Its max drawdown.
    pub observed_max_drawdown: f64,
    /// Share of simulations whose final equity is at or below the observed.
    pub observed_final_percentile: f64,
    /// Share of simulations whose drawdown is at or below (as deep as or
    /// deeper than) the observed.
    pub observed_drawdown_percentile: f64,
    /// Price noise only: the objective across the noisy runs.
    #[serde(default)]
    pub objective: Option<ObjectiveSpread>,
}

/// The objective across price-noise runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveSpread {
    /// The backtest's own objective.
    pub observed: f64,
    /// Percentiles over the runs the objective scored.
    pub spread: Spread,
    /// Runs the objective scored (the others had too few trades or an
    /// undefined ratio).
    pub scored: u32,
    /// `observed - spread.p50`: how much the median noisy run gives up.
    pub degradation: f64,
    /// Share of scored runs at or below the observed objective.
    pub observed_percentile: f64,
}

/// One backtest's figures, for [`from_runs`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunFigures {
    /// Final equity.
    pub final_equity: f64,
    /// Max drawdown (<= 0).
    pub max_drawdown: f64,
    /// The objective, `None` when it could not be scored.
    pub objective: Option<f64>,
}

/// Noisy runs at most.
pub const MAX_NOISE_RUNS: u32 = 1000;

/// The price-noise analysis of `observed` against its noisy re-runs.
///
/// # Errors
/// No runs (or more than [`MAX_NOISE_RUNS`]), or a non-positive initial
/// equity.
pub fn from_runs(
    initial_equity: f64,
    observed: RunFigures,
    runs: &[RunFigures],
) -> Result<MonteCarlo, MonteCarloError> {
    if runs.is_empty() {
        return Err(MonteCarloError::Empty("noisy runs"));
    }
    let n = u32::try_from(runs.len()).unwrap_or(u32::MAX);
    if n > MAX_NOISE_RUNS {
        return Err(MonteCarloError::Simulations(n));
    }
    if !(initial_equity.is_finite() && initial_equity > 0.0) {
        return Err(MonteCarloError::Equity(initial_equity));
    }
    let (final_equity, finals) = spread(runs.iter().map(|r| r.final_equity).collect());
    let (max_drawdown, dds) = spread(runs.iter().map(|r| r.max_drawdown).collect());
    #[allow(clippy::cast_precision_loss, reason = "at most 1000 runs")]
    let probability_of_loss = runs
        .iter()
        .filter(|r| r.final_equity < initial_equity)
        .count() as f64
        / runs.len() as f64;
    let scored: Vec<f64> = runs.iter().filter_map(|r| r.objective).collect();
    let objective = match (observed.objective, scored.is_empty()) {
        (Some(o), false) => {
            let count = u32::try_from(scored.len()).unwrap_or(u32::MAX);
            let (s, sorted) = spread(scored);
            Some(ObjectiveSpread {
                observed: o,
                spread: s,
                scored: count,
                degradation: o - s.p50,
                observed_percentile: share_at_or_below(&sorted, o),
            })
        }
        _ => None,
    };
    Ok(MonteCarlo {
        method: Method::PriceNoise,
        simulations: n,
        final_equity,
        max_drawdown,
        probability_of_loss,
        observed_final_equity: observed.final_equity,
        observed_max_drawdown: observed.max_drawdown,
        observed_final_percentile: share_at_or_below(&finals, observed.final_equity),
        observed_drawdown_percentile: share_at_or_below(&dds, observed.max_drawdown),
        objective,
    })
}

/// Final equity and max drawdown of a path of equity steps.
fn walk(initial: f64, steps: impl Iterator<Item = f64>, additive: bool) -> (f64, f64) {
    let (mut equity, mut peak, mut dd) = (initial, initial, 0.0f64);
    for s in steps {
        equity = if additive {
            equity + s
        } else {
            equity * (1.0 + s)
        };
        peak = peak.max(equity);
        if peak > 0.0 {
            dd = dd.min(equity / peak - 1.0);
        }
    }
    (equity, dd)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a non-empty slice"
    )]
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn spread(mut xs: Vec<f64>) -> (Spread, Vec<f64>) {
    xs.sort_by(f64::total_cmp);
    (
        Spread {
            p5: percentile(&xs, 0.05),
            p50: percentile(&xs, 0.50),
            p95: percentile(&xs, 0.95),
        },
        xs,
    )
}

#[allow(clippy::cast_precision_loss, reason = "counts far below 2^53")]
fn share_at_or_below(sorted: &[f64], x: f64) -> f64 {
    sorted.partition_point(|v| *v <= x + 1e-9 * x.abs().max(1.0)) as f64 / sorted.len() as f64
}

/// Runs the analysis. `trade_pnls` are the closed trades' net PnL in the
/// order they closed; `bar_returns` the equity curve's per-bar returns.
///
/// # Errors
/// Simulations outside 100..=100000, a non-positive initial equity, or
/// nothing to resample for the method.
pub fn run(
    method: Method,
    initial_equity: f64,
    trade_pnls: &[f64],
    bar_returns: &[f64],
    simulations: u32,
    seed: u64,
) -> Result<MonteCarlo, MonteCarloError> {
    if !(100..=100_000).contains(&simulations) {
        return Err(MonteCarloError::Simulations(simulations));
    }
    if !(initial_equity.is_finite() && initial_equity > 0.0) {
        return Err(MonteCarloError::Equity(initial_equity));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (observed, sims): ((f64, f64), Vec<(f64, f64)>) = match method {
        Method::PriceNoise => return Err(MonteCarloError::Empty("noisy runs (see from_runs)")),
        Method::TradeShuffle => {
            if trade_pnls.is_empty() {
                return Err(MonteCarloError::Empty("closed trades"));
            }
            let observed = walk(initial_equity, trade_pnls.iter().copied(), true);
            let mut order = trade_pnls.to_vec();
            let sims = (0..simulations)
                .map(|_| {
                    order.shuffle(&mut rng);
                    walk(initial_equity, order.iter().copied(), true)
                })
                .collect();
            (observed, sims)
        }
        Method::ReturnBootstrap => {
            if bar_returns.is_empty() {
                return Err(MonteCarloError::Empty("bar returns"));
            }
            let observed = walk(initial_equity, bar_returns.iter().copied(), false);
            let n = bar_returns.len();
            let sims = (0..simulations)
                .map(|_| {
                    let draws =
                        (0..n).map(|_| bar_returns[rand::Rng::random_range(&mut rng, 0..n)]);
                    walk(initial_equity, draws, false)
                })
                .collect();
            (observed, sims)
        }
    };
    let (finals, dds): (Vec<f64>, Vec<f64>) = sims.into_iter().unzip();
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^53")]
    let probability_of_loss =
        finals.iter().filter(|f| **f < initial_equity).count() as f64 / finals.len() as f64;
    let (final_equity, finals) = spread(finals);
    let (max_drawdown, dds) = spread(dds);
    Ok(MonteCarlo {
        method,
        simulations,
        final_equity,
        max_drawdown,
        probability_of_loss,
        observed_final_equity: observed.0,
        observed_max_drawdown: observed.1,
        observed_final_percentile: share_at_or_below(&finals, observed.0),
        observed_drawdown_percentile: share_at_or_below(&dds, observed.1),
        objective: None,
    })
}

/// Per-bar returns of an equity curve (skipping non-positive levels).
pub fn returns(equity: &[f64]) -> Vec<f64> {
    equity
        .windows(2)
        .filter(|w| w[0] > 0.0)
        .map(|w| w[1] / w[0] - 1.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawdown_and_final_of_a_known_path() {
        // 100 -> 110 -> 88 -> 99: peak 110, trough 88: -20 %.
        let (f, dd) = walk(100.0, [10.0, -22.0, 11.0].into_iter(), true);
        assert!((f - 99.0).abs() < 1e-12);
        assert!((dd + 0.2).abs() < 1e-12);
        let (f, dd) = walk(100.0, [0.1, -0.2].into_iter(), false);
        assert!((f - 88.0).abs() < 1e-9);
        assert!((dd + 0.2).abs() < 1e-12);
    }

    #[test]
    fn shuffling_keeps_the_final_equity_and_spreads_the_drawdown() {
        let pnls = [
            500.0, -300.0, 200.0, -400.0, 700.0, -100.0, 300.0, -600.0, 400.0,
        ];
        let mc = run(Method::TradeShuffle, 10_000.0, &pnls, &[], 2000, 7).unwrap();
        let total: f64 = 10_000.0 + pnls.iter().sum::<f64>();
        for x in [mc.final_equity.p5, mc.final_equity.p50, mc.final_equity.p95] {
            assert!((x - total).abs() < 1e-6);
        }
        assert_eq!(
            mc.probability_of_loss, 0.0,
            "the sum is a gain whatever the order"
        );
        assert!(
            mc.max_drawdown.p5 < mc.max_drawdown.p95,
            "orders differ in drawdown"
        );
        // The worst order: every loss first, from the start: 1400 of 10000.
        assert!(mc.max_drawdown.p5 >= -0.14 - 1e-12);
        assert!((0.0..=1.0).contains(&mc.observed_drawdown_percentile));
        // Deterministic for a seed, different for another.
        assert_eq!(
            mc,
            run(Method::TradeShuffle, 10_000.0, &pnls, &[], 2000, 7).unwrap()
        );
        assert_ne!(
            mc,
            run(Method::TradeShuffle, 10_000.0, &pnls, &[], 2000, 8).unwrap()
        );
    }

    #[test]
    fn bootstrapping_returns_centres_on_the_compounded_mean() {
        // Returns alternating +1 % and -0.5 %: over 1000 draws the median
        // final equity is near the compounded mean.
        let r: Vec<f64> = (0..1000)
            .map(|i| if i % 2 == 0 { 0.01 } else { -0.005 })
            .collect();
        let mc = run(Method::ReturnBootstrap, 1.0, &[], &r, 500, 1).unwrap();
        let expected = ((1.01f64.ln() + 0.995f64.ln()) / 2.0 * 1000.0).exp();
        assert!(
            (mc.final_equity.p50 / expected - 1.0).abs() < 0.15,
            "{mc:?}"
        );
        assert!(
            mc.final_equity.p5 < mc.final_equity.p50 && mc.final_equity.p50 < mc.final_equity.p95
        );
        assert!(mc.probability_of_loss < 0.05);
        assert_eq!(returns(&[100.0, 110.0, 99.0]).len(), 2);
    }

    #[test]
    fn noisy_runs_are_summed_up_against_the_observed_run() {
        let observed = RunFigures {
            final_equity: 120.0,
            max_drawdown: -0.1,
            objective: Some(2.0),
        };
        // Objectives 1.0, 1.1, ..., 1.9 and one unscored; finals 95..=105.
        let runs: Vec<RunFigures> = (0..11)
            .map(|i| RunFigures {
                final_equity: 95.0 + f64::from(i),
                max_drawdown: -0.2 + 0.01 * f64::from(i),
                objective: (i < 10).then(|| 1.0 + 0.1 * f64::from(i)),
            })
            .collect();
        let m = from_runs(100.0, observed, &runs).unwrap();
        assert_eq!(m.method, Method::PriceNoise);
        assert_eq!(m.simulations, 11);
        assert_eq!(m.final_equity.p50, 100.0);
        // 95..99 end below 100.
        assert!((m.probability_of_loss - 5.0 / 11.0).abs() < 1e-12);
        assert_eq!(m.observed_final_percentile, 1.0);
        let o = m.objective.unwrap();
        assert_eq!(o.scored, 10);
        // Nearest rank of 10: the 5th value, 1.4.
        assert!((o.spread.p50 - 1.4).abs() < 1e-12, "{}", o.spread.p50);
        assert!((o.degradation - 0.6).abs() < 1e-12);
        assert_eq!(o.observed_percentile, 1.0);
        assert!(from_runs(100.0, observed, &[]).is_err());
        assert!(from_runs(0.0, observed, &runs).is_err());
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert_eq!(
            run(Method::TradeShuffle, 1.0, &[1.0], &[], 99, 0),
            Err(MonteCarloError::Simulations(99))
        );
        assert_eq!(
            run(Method::TradeShuffle, 1.0, &[], &[], 100, 0),
            Err(MonteCarloError::Empty("closed trades"))
        );
        assert_eq!(
            run(Method::ReturnBootstrap, 0.0, &[], &[0.1], 100, 0),
            Err(MonteCarloError::Equity(0.0))
        );
    }
}
