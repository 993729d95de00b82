//! Objectives: one number per trial, higher is better, from a trial's
//! metrics. A trial that cannot be scored (too few trades, a metric
//! undefined or not finite) scores `None` and counts as failed.
//!
//! Max drawdown is scored as the drawdown itself, a fraction in `[-1, 0]`
//! (`-0.25` for a 25 % fall): maximising it minimises the depth of the fall.

use serde::{Deserialize, Serialize};

/// The metrics an objective reads, mirroring `grodt_analytics::Metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct TrialMetrics {
    /// Compounded return over the run.
    #[serde(with = "crate::exact")]
    pub total_return: f64,
    /// Annualised Sharpe ratio (None when undefined, e.g. zero volatility).
    #[serde(with = "crate::exact::option")]
    pub sharpe: Option<f64>,
    /// Annualised Sortino ratio.
    #[serde(with = "crate::exact::option")]
    pub sortino: Option<f64>,
    /// CAGR over the absolute maximum drawdown.
    #[serde(with = "crate::exact::option")]
    pub calmar: Option<f64>,
    /// Deepest fall from a running peak, a fraction in `[-1, 0]`.
    #[serde(with = "crate::exact")]
    pub max_drawdown: f64,
    /// Number of trades.
    pub trades: usize,
}

impl From<&grodt_analytics::Metrics> for TrialMetrics {
    fn from(m: &grodt_analytics::Metrics) -> Self {
        Self {
            total_return: m.total_return,
            sharpe: m.sharpe,
            sortino: m.sortino,
            calmar: m.calmar,
            max_drawdown: m.drawdown.max_drawdown,
            trades: m.trades.count,
        }
    }
}

/// One metric an objective can weigh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Annualised Sharpe ratio.
    Sharpe,
    /// Annualised Sortino ratio.
    Sortino,
    /// Calmar ratio.
    Calmar,
    /// Compounded total return.
    TotalReturn,
    /// Max drawdown as a fraction in `[-1, 0]` (higher = shallower).
    MaxDrawdown,
}

impl Metric {
    /// The metric's value, if defined and finite.
    pub fn value(self, m: &TrialMetrics) -> Option<f64> {
        let v = match self {
            Self::Sharpe => m.sharpe?,
            Self::Sortino => m.sortino?,
            Self::Calmar => m.calmar?,
            Self::TotalReturn => m.total_return,
            Self::MaxDrawdown => m.max_drawdown,
        };
        v.is_finite().then_some(v)
    }
}

/// Why an objective was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObjectiveError {
    /// No metric to score.
    #[error("objective: at least one metric is needed")]
    Empty,
    /// A weight that is zero or not finite.
    #[error("objective: weight of {metric:?} must be finite and non-zero, got {weight}")]
    BadWeight {
        /// The metric.
        metric: Metric,
        /// The weight given.
        weight: f64,
    },
}

/// A weighted sum of metrics with a minimum-trade filter; higher is better.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    terms: Vec<(Metric, f64)>,
    min_trades: usize,
}

impl Objective {
    /// One metric, weight 1, no trade filter.
    pub fn single(metric: Metric) -> Self {
        Self {
            terms: vec![(metric, 1.0)],
            min_trades: 0,
        }
    }

    /// `sum(weight * metric)`.
    ///
    /// # Errors
    /// No terms, or a weight zero or not finite.
    pub fn weighted(terms: Vec<(Metric, f64)>) -> Result<Self, ObjectiveError> {
        if terms.is_empty() {
            return Err(ObjectiveError::Empty);
        }
        if let Some(&(metric, weight)) = terms.iter().find(|(_, w)| !(w.is_finite() && *w != 0.0)) {
            return Err(ObjectiveError::BadWeight { metric, weight });
        }
        Ok(Self {
            terms,
            min_trades: 0,
        })
    }

    /// Trials with fewer than `n` trades score as failed.
    #[must_use]
    pub fn min_trades(mut self, n: usize) -> Self {
        self.min_trades = n;
        self
    }

    /// The trial's score, or None (failed): too few trades, or a metric
    /// undefined or not finite.
    pub fn score(&self, m: &TrialMetrics) -> Option<f64> {
        if m.trades < self.min_trades {
            return None;
        }
        let mut sum = 0.0;
        for (metric, w) in &self.terms {
            sum += w * metric.value(m)?;
        }
        sum.is_finite().then_some(sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn weighted_score_is_the_sum_of_weighted_metrics(
            sharpe in -5.0..5.0f64, sortino in -5.0..5.0f64, calmar in -5.0..5.0f64,
            ret in -1.0..3.0f64, dd in -1.0..=0.0f64, trades in 0usize..50, min in 0usize..50,
            w in proptest::collection::vec(0.1..3.0f64, 5),
        ) {
            let m = TrialMetrics {
                total_return: ret,
                sharpe: Some(sharpe),
                sortino: Some(sortino),
                calmar: Some(calmar),
                max_drawdown: dd,
                trades,
            };
            let o = Objective::weighted(vec![
                (Metric::Sharpe, w[0]),
                (Metric::Sortino, w[1]),
                (Metric::Calmar, -w[2]),
                (Metric::TotalReturn, w[3]),
                (Metric::MaxDrawdown, w[4]),
            ])
            .unwrap()
            .min_trades(min);
            let want = w[0] * sharpe + w[1] * sortino - w[2] * calmar + w[3] * ret + w[4] * dd;
            match o.score(&m) {
                Some(v) => {
                    prop_assert!(trades >= min);
                    prop_assert!((v - want).abs() <= 1e-12 * want.abs().max(1.0));
                }
                None => prop_assert!(trades < min),
            }
        }
    }

    fn metrics() -> TrialMetrics {
        TrialMetrics {
            total_return: 0.2,
            sharpe: Some(1.5),
            sortino: Some(2.0),
            calmar: Some(0.8),
            max_drawdown: -0.25,
            trades: 10,
        }
    }

    #[test]
    fn single_metrics_score_their_value() {
        let m = metrics();
        assert_eq!(Objective::single(Metric::Sharpe).score(&m), Some(1.5));
        assert_eq!(Objective::single(Metric::Sortino).score(&m), Some(2.0));
        assert_eq!(Objective::single(Metric::Calmar).score(&m), Some(0.8));
        assert_eq!(Objective::single(Metric::TotalReturn).score(&m), Some(0.2));
        assert_eq!(
            Objective::single(Metric::MaxDrawdown).score(&m),
            Some(-0.25)
        );
    }

    #[test]
    fn max_drawdown_prefers_the_shallower_fall() {
        let o = Objective::single(Metric::MaxDrawdown);
        let deep = TrialMetrics {
            max_drawdown: -0.5,
            ..metrics()
        };
        assert!(o.score(&metrics()) > o.score(&deep));
    }

    #[test]
    fn weighted_sums_the_terms() {
        let o =
            Objective::weighted(vec![(Metric::Sharpe, 0.5), (Metric::MaxDrawdown, 2.0)]).unwrap();
        assert_eq!(o.score(&metrics()), Some(0.5 * 1.5 + 2.0 * -0.25));
    }

    #[test]
    fn too_few_trades_or_undefined_metrics_fail() {
        let o = Objective::single(Metric::Sharpe).min_trades(11);
        assert_eq!(o.score(&metrics()), None);
        let o = Objective::single(Metric::Sharpe).min_trades(10);
        assert_eq!(o.score(&metrics()), Some(1.5));
        let undefined = TrialMetrics {
            sharpe: None,
            ..metrics()
        };
        assert_eq!(Objective::single(Metric::Sharpe).score(&undefined), None);
        let nan = TrialMetrics {
            total_return: f64::NAN,
            ..metrics()
        };
        assert_eq!(Objective::single(Metric::TotalReturn).score(&nan), None);
    }

    #[test]
    fn bad_weights_are_refused() {
        assert_eq!(Objective::weighted(vec![]), Err(ObjectiveError::Empty));
        assert!(matches!(
            Objective::weighted(vec![(Metric::Calmar, 0.0)]),
            Err(ObjectiveError::BadWeight { .. })
        ));
        assert!(Objective::weighted(vec![(Metric::Calmar, f64::NAN)]).is_err());
    }

    #[test]
    fn converts_from_analytics_metrics() {
        use grodt_analytics::{EquityPoint, MetricsConfig, PerformanceInput, compute};
        let day = 86_400_000_000_000i64;
        let equity: Vec<EquityPoint> = [100.0, 110.0, 99.0, 120.0]
            .iter()
            .zip(0i64..)
            .map(|(e, i)| EquityPoint {
                ts: i * day,
                equity: *e,
            })
            .collect();
        let input = PerformanceInput {
            equity: &equity,
            positions: None,
            trades: &[],
        };
        let a = compute(&input, &MetricsConfig::equities_daily()).unwrap();
        let m = TrialMetrics::from(&a);
        assert!((m.total_return - 0.2).abs() < 1e-12);
        assert!((m.max_drawdown - (99.0 / 110.0 - 1.0)).abs() < 1e-12);
        assert_eq!(m.sharpe, a.sharpe);
        assert_eq!(m.sortino, a.sortino);
        assert_eq!(m.calmar, a.calmar);
        assert_eq!(m.trades, 0);
        assert_eq!(
            Objective::single(Metric::Sharpe).min_trades(1).score(&m),
            None
        );
    }
}
