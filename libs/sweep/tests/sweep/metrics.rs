//! The sweep's curve-free metrics equal grodt-analytics' of the engine's curve.

use grodt_analytics::MetricsConfig;
use grodt_sim::{BacktestConfig, CommissionSpec};
use grodt_sweep::{Series, SweepConfig, Threads, sweep_sma};

use crate::helpers::{assert_metrics, assert_parity, btc, grid_sample, spy};

#[test]
fn spy_metrics_match_analytics_of_the_engine_curve() {
    let (inst, bars) = spy();
    let series = Series::new(&inst, &bars).unwrap();
    let sets = grid_sample(5);
    let config = SweepConfig {
        backtest: BacktestConfig {
            commission: CommissionSpec::Percentage {
                rate: "0.0002".parse().unwrap(),
            },
            ..BacktestConfig::default()
        },
        metrics: MetricsConfig::equities_daily().with_annual_risk_free(0.02),
        ..SweepConfig::default()
    };
    let batch = sweep_sma(&series, &sets, &config, Threads::All).unwrap();
    for (out, &p) in batch.iter().zip(&sets) {
        let (_, _, r) = assert_parity(&series, &bars, p, &config);
        assert_metrics(out, &r, &config);
    }
}

#[test]
fn btc_metrics_match_analytics_of_the_engine_curve() {
    let (inst, bars) = btc();
    let series = Series::new(&inst, &bars).unwrap();
    let sets = grid_sample(23);
    let config = SweepConfig {
        metrics: MetricsConfig {
            periods_per_year: 525_600.0,
            risk_free: 0.0,
            required_return: 0.0,
        },
        ..SweepConfig::default()
    };
    let batch = sweep_sma(&series, &sets, &config, Threads::All).unwrap();
    for (out, &p) in batch.iter().zip(&sets) {
        let (_, _, r) = assert_parity(&series, &bars, p, &config);
        assert_metrics(out, &r, &config);
    }
}
