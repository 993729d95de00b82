//! Per-regime performance on a real sample: the breakdown by regime adds back
//! up to the whole backtest (periods, trades, PnL, compounded return).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use grodt_analytics::MetricsConfig;
use grodt_backtest::{RegimeLabel, RunSpec, load_csv, regime_labels, run, series_from_bars};
use grodt_regimes::{Regime, RegimeConfig, classify};
use grodt_sim::BacktestConfig;

fn sample(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples")
        .join(file)
}

fn spec(regimes: Option<RegimeConfig>) -> RunSpec {
    let params: BTreeMap<String, String> = [("fast", "10"), ("slow", "30")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    RunSpec {
        config: BacktestConfig::default(),
        strategy: grodt_strategies::registry::parse("sma_cross", &params).unwrap(),
        metrics: MetricsConfig::equities_daily(),
        regimes,
    }
}

#[test]
fn spy_breakdown_by_regime_sums_back_to_the_whole() {
    let bars = load_csv(&sample("spy_1d_1998-2021.csv")).unwrap();
    let series = series_from_bars("SPY", &bars, false).unwrap();
    let started = Instant::now();
    let plain = run(&spec(None), std::slice::from_ref(&series), &mut |_| {}).unwrap();
    let plain_time = started.elapsed();
    let started = Instant::now();
    let o = run(
        &spec(Some(RegimeConfig::default())),
        std::slice::from_ref(&series),
        &mut |_| {},
    )
    .unwrap();
    let with_time = started.elapsed();
    assert!(plain.regimes.is_none());
    // Labelling changes no trade and no whole-run metric.
    assert_eq!(o.metrics, plain.metrics);
    assert_eq!(o.result.trades, plain.result.trades);

    let b = o.regimes.as_ref().expect("regimes asked for");
    let m = &o.metrics;
    assert_eq!(b.labels.len(), o.equity.len() - 1);
    // every regime occurs, plus the warm-up: the first decision is at bar 262
    let labels: Vec<RegimeLabel> = b.by_regime.iter().map(|(l, _)| *l).collect();
    let mut expected: Vec<RegimeLabel> = Regime::ALL
        .iter()
        .map(|&r| RegimeLabel::Regime(r))
        .collect();
    expected.push(RegimeLabel::WarmUp);
    assert_eq!(labels, expected);
    let warm = &b.by_regime.last().unwrap().1;
    assert_eq!(warm.periods, 262);

    let periods: usize = b.by_regime.iter().map(|(_, x)| x.periods).sum();
    assert_eq!(periods, m.periods);
    let trades: usize = b.by_regime.iter().map(|(_, x)| x.trades.count).sum();
    assert_eq!(trades, m.trades.count);
    let pnl: f64 = b.by_regime.iter().map(|(_, x)| x.trades.net_pnl).sum();
    assert!(
        (pnl - m.trades.net_pnl).abs() < 1e-6,
        "{pnl} vs {}",
        m.trades.net_pnl
    );
    let wins: f64 = b
        .by_regime
        .iter()
        .map(|(_, x)| x.trades.win_rate.unwrap_or(0.0) * x.trades.count as f64)
        .sum();
    assert!((wins - m.trades.win_rate.unwrap() * m.trades.count as f64).abs() < 1e-6);
    let growth: f64 = b
        .by_regime
        .iter()
        .map(|(_, x)| 1.0 + x.total_return)
        .product();
    assert!(
        (growth - (1.0 + m.total_return)).abs() < 1e-9,
        "{growth} vs {}",
        1.0 + m.total_return
    );
    let shares: f64 = labels.iter().map(|&l| b.time_share(l)).sum();
    assert!((shares - 1.0).abs() < 1e-12);

    // The labels are the classifier's decisions, carried forward: daily bars
    // are each evaluated, so period i carries the decision at bar i.
    let d = classify(
        RegimeConfig::default(),
        series.instrument.price_precision,
        &series.bars,
    )
    .unwrap();
    assert_eq!(d.len(), b.labels.len() + 1 - 262);
    for (i, x) in d.iter().enumerate().take(d.len() - 1) {
        assert_eq!(b.labels[262 + i], RegimeLabel::Regime(x.regime));
    }
    let started = Instant::now();
    let again = regime_labels(&RegimeConfig::default(), &series, &o.equity).unwrap();
    let label_time = started.elapsed();
    assert_eq!(again, b.labels);
    println!(
        "SPY sma_cross: run {:.1} ms without regimes, {:.1} ms with; labelling alone {:.1} ms",
        plain_time.as_secs_f64() * 1e3,
        with_time.as_secs_f64() * 1e3,
        label_time.as_secs_f64() * 1e3
    );
    for (l, x) in &b.by_regime {
        println!(
            "  {:<16} periods {:>5} return {:>8.2}% trades {:>3} pnl {:>10.2}",
            l.name(),
            x.periods,
            x.total_return * 100.0,
            x.trades.count,
            x.trades.net_pnl
        );
    }
}

#[test]
fn a_bad_regime_config_is_refused_naming_the_field() {
    let bars = load_csv(&sample("spy_1d_1998-2021.csv")).unwrap();
    let series = series_from_bars("SPY", &bars, false).unwrap();
    let bad = RegimeConfig {
        vol_long: 1,
        ..RegimeConfig::default()
    };
    let e = run(&spec(Some(bad)), &[series], &mut |_| {}).unwrap_err();
    assert!(e.to_string().starts_with("regimes: "), "{e}");
    assert!(e.to_string().contains("vol_long"), "{e}");
}
