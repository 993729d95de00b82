//! The EMA crossover, S2 (Bollinger with RSI) and S3 (Donchian with volume)
//! kernels against the engine running the registry's strategies: every fill,
//! trade, refusal and the final equity, on the real samples and on random
//! series.

use std::collections::BTreeMap;

use grodt_analytics::MetricsConfig;
use grodt_core::{Bar, Decimal, Instrument};
use grodt_sim::{BacktestConfig, CommissionSpec, SlippageSpec};
use grodt_sweep::{Series, Threads, sweep};
use proptest::prelude::*;

use crate::helpers::{assert_registry_parity, btc, spy};

fn set(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

fn s2(
    period: u32,
    k: &str,
    rsi: u32,
    oversold: u32,
    overbought: u32,
    short: bool,
) -> BTreeMap<String, String> {
    set(&[
        ("period", period.to_string()),
        ("k", k.into()),
        ("rsi_period", rsi.to_string()),
        ("oversold", oversold.to_string()),
        ("overbought", overbought.to_string()),
        ("allow_short", short.to_string()),
    ])
}

fn s3(entry: u32, exit: u32, volume: u32, mult: &str, short: bool) -> BTreeMap<String, String> {
    set(&[
        ("entry_window", entry.to_string()),
        ("exit_window", exit.to_string()),
        ("volume_window", volume.to_string()),
        ("volume_mult", mult.into()),
        ("allow_short", short.to_string()),
    ])
}

fn ema(fast: u32, slow: u32, short: bool) -> BTreeMap<String, String> {
    set(&[
        ("fast", fast.to_string()),
        ("slow", slow.to_string()),
        ("long_short", short.to_string()),
    ])
}

/// A sample of an EMA grid: fast 2..40, slow 10..200, fast < slow.
fn ema_grid() -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    for fast in [2, 5, 12, 20, 40] {
        for slow in [10, 26, 50, 100, 200] {
            if fast < slow {
                out.push(ema(fast, slow, out.len() % 2 == 1));
            }
        }
    }
    out
}

/// A sample of an S2 grid: period 10..40, k 1..2.5, RSI 2..14, levels 30/70 and 40/60.
fn s2_grid() -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut n = 0;
    for period in [10, 20, 40] {
        for k in ["1", "1.5", "2.5"] {
            for rsi in [2, 7, 14] {
                for (lo, hi) in [(30, 70), (40, 60)] {
                    n += 1;
                    out.push(s2(period, k, rsi, lo, hi, n % 2 == 0));
                }
            }
        }
    }
    out
}

/// A sample of an S3 grid: entry 5..55, exit 3..20, volume window 5..20, multiples 0..1.5.
fn s3_grid() -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut n = 0;
    for entry in [5, 20, 55] {
        for exit in [3, 10, 20] {
            for (volume, mult) in [(5, "0"), (10, "0.8"), (20, "1.5")] {
                n += 1;
                out.push(s3(entry, exit, volume, mult, n % 2 == 0));
            }
        }
    }
    out
}

fn with_costs(bps: u32, rate: &str) -> BacktestConfig {
    BacktestConfig {
        slippage: SlippageSpec::FixedBps {
            bps: Decimal::from(bps),
        },
        commission: CommissionSpec::Percentage {
            rate: rate.parse().unwrap(),
        },
        ..BacktestConfig::default()
    }
}

/// Every set of `grid` traced against the engine, and the batch (all cores)
/// equal to the traces; returns the fills over the grid.
fn grid_parity(
    strategy: &str,
    series: &Series,
    bars: &[Bar],
    grid: &[BTreeMap<String, String>],
    config: &BacktestConfig,
) -> u32 {
    let batch = sweep(
        strategy,
        series,
        grid,
        config,
        &MetricsConfig::default(),
        Threads::All,
    )
    .unwrap();
    let mut fills = 0;
    for (b, p) in batch.iter().zip(grid) {
        let (out, _, _) = assert_registry_parity(strategy, series, bars, p, config);
        assert_eq!(*b, out, "{strategy} {p:?}: batch against trace");
        fills += out.fills;
    }
    fills
}

#[test]
fn ema_cross_on_spy_daily_equals_the_engine_fill_by_fill() {
    let (inst, bars) = spy();
    let series = Series::new(&inst, &bars).unwrap();
    let grid = ema_grid();
    for config in [BacktestConfig::default(), with_costs(5, "0.0005")] {
        let fills = grid_parity("ema_cross", &series, &bars, &grid, &config);
        assert!(fills > 2_000, "{fills}");
    }
}

#[test]
fn s2_on_spy_daily_equals_the_engine_fill_by_fill() {
    let (inst, bars) = spy();
    let series = Series::new(&inst, &bars).unwrap();
    let grid = s2_grid();
    for config in [BacktestConfig::default(), with_costs(5, "0.0005")] {
        let fills = grid_parity("s2", &series, &bars, &grid, &config);
        assert!(fills > 2_000, "{fills}");
    }
}

#[test]
fn s3_on_spy_daily_equals_the_engine_fill_by_fill() {
    let (inst, bars) = spy();
    let series = Series::new(&inst, &bars).unwrap();
    let grid = s3_grid();
    for config in [BacktestConfig::default(), with_costs(5, "0.0005")] {
        let fills = grid_parity("s3", &series, &bars, &grid, &config);
        assert!(fills > 2_000, "{fills}");
    }
}

#[test]
fn ema_s2_and_s3_on_btc_minutes_equal_the_engine() {
    let (inst, bars) = btc();
    let bars = &bars[..30_000];
    let series = Series::new(&inst, bars).unwrap();
    // 99% of equity leaves room for the commission (see the SMA parity test).
    let mut costs = with_costs(2, "0.001");
    costs.starting_cash = Decimal::from(10_000);
    let mut s2_grid = s2_grid();
    for p in &mut s2_grid {
        p.insert("fraction".into(), "0.99".into());
    }
    let mut s3_grid = s3_grid();
    for p in &mut s3_grid {
        p.insert("fraction".into(), "0.99".into());
    }
    let mut ema_grid = ema_grid();
    for p in &mut ema_grid {
        p.insert("fraction".into(), "0.99".into());
    }
    for config in [BacktestConfig::default(), costs] {
        let f2 = grid_parity("s2", &series, bars, &s2_grid[..12], &config);
        let f3 = grid_parity("s3", &series, bars, &s3_grid[..12], &config);
        let fe = grid_parity("ema_cross", &series, bars, &ema_grid[..10], &config);
        assert!(
            f2 > 1_000 && f3 > 1_000 && fe > 1_000,
            "s2 {f2} s3 {f3} ema {fe}"
        );
    }
}

#[test]
fn one_core_equals_all_cores_and_bad_sets_are_named() {
    let (inst, bars) = spy();
    let series = Series::new(&inst, &bars).unwrap();
    let m = MetricsConfig::default();
    let c = BacktestConfig::default();
    for (strategy, grid) in [
        ("ema_cross", ema_grid()),
        ("s2", s2_grid()),
        ("s3", s3_grid()),
    ] {
        let one = sweep(strategy, &series, &grid, &c, &m, Threads::One).unwrap();
        let all = sweep(strategy, &series, &grid, &c, &m, Threads::All).unwrap();
        assert_eq!(one, all, "{strategy}");
        assert!(one.iter().zip(&grid).all(|(o, p)| &o.params == p));
    }
    let bad = vec![
        s2(20, "2", 14, 30, 70, false),
        s2(20, "2", 14, 70, 30, false),
    ];
    let e = sweep("s2", &series, &bad, &c, &m, Threads::One).unwrap_err();
    assert!(e.to_string().contains("set 1"), "{e}");
    let mut gated = s3(20, 10, 20, "1.2", false);
    gated.insert("on_disallowed".into(), "flatten".into());
    let e = sweep("s3", &series, &[gated], &c, &m, Threads::One).unwrap_err();
    assert!(e.to_string().contains("on_disallowed"), "{e}");
}

/// A random walk with small moves and a volume that swings, so ties with the
/// bands and channels, and loud and quiet bars, all happen.
fn walk(steps: &[i64], start: i64) -> Vec<Bar> {
    let mut price = start;
    let mut out = Vec::with_capacity(steps.len());
    for (k, &s) in steps.iter().enumerate() {
        let k = k as i64;
        let open = price;
        let close = (price + s).max(1);
        let jitter = (k % 3) * (start / 200).max(1);
        out.push(Bar {
            ts: 1_700_000_000_000_000_000 + k * 60_000_000_000,
            open,
            high: open.max(close) + jitter,
            low: (open.min(close) - jitter).max(1),
            close,
            volume: 500 + (k * 7919) % 1_000 + s.abs() * 20,
        });
        price = (close + s.signum() * (k % 2)).max(1);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_series_and_s2_parameters_match_the_engine(
        steps in prop::collection::vec(-30i64..=30, 40..300),
        start in 500i64..5_000,
        period in 2u32..25,
        k in prop::sample::select(vec!["0.5", "1", "1.7", "2.2"]),
        rsi in 1u32..15,
        (lo, hi) in prop::sample::select(vec![(30u32, 70u32), (45, 55), (20, 90)]),
        short in any::<bool>(),
        bps in prop::sample::select(vec![0u32, 3]),
        rate in prop::sample::select(vec!["none", "0.0005"]),
        fraction in prop::sample::select(vec!["1", "0.5"]),
    ) {
        let inst = Instrument::equity("X", 2, 0);
        let bars = walk(&steps, start);
        let series = Series::new(&inst, &bars).unwrap();
        let mut p = s2(period, k, rsi, lo, hi, short);
        p.insert("fraction".into(), fraction.into());
        assert_registry_parity("s2", &series, &bars, &p, &config(bps, rate));
    }

    #[test]
    fn random_series_and_ema_parameters_match_the_engine(
        steps in prop::collection::vec(-30i64..=30, 40..300),
        start in 500i64..5_000,
        fast in 1u32..15,
        extra in 1u32..25,
        short in any::<bool>(),
        bps in prop::sample::select(vec![0u32, 3]),
        rate in prop::sample::select(vec!["none", "0.0005"]),
        fraction in prop::sample::select(vec!["1", "0.5"]),
    ) {
        let inst = Instrument::equity("X", 2, 0);
        let bars = walk(&steps, start);
        let series = Series::new(&inst, &bars).unwrap();
        let mut p = ema(fast, fast + extra, short);
        p.insert("fraction".into(), fraction.into());
        assert_registry_parity("ema_cross", &series, &bars, &p, &config(bps, rate));
    }

    #[test]
    fn random_series_and_s3_parameters_match_the_engine(
        steps in prop::collection::vec(-30i64..=30, 40..300),
        start in 500i64..5_000,
        entry in 1u32..30,
        exit in 1u32..20,
        volume in 1u32..20,
        mult in prop::sample::select(vec!["0", "0.9", "1.1", "2"]),
        short in any::<bool>(),
        bps in prop::sample::select(vec![0u32, 3]),
        rate in prop::sample::select(vec!["none", "0.0005"]),
        size_precision in prop::sample::select(vec![0u8, 3]),
    ) {
        let inst = Instrument::equity("X", 2, size_precision);
        let bars = walk(&steps, start);
        let series = Series::new(&inst, &bars).unwrap();
        let p = s3(entry, exit, volume, mult, short);
        assert_registry_parity("s3", &series, &bars, &p, &config(bps, rate));
    }
}

fn config(bps: u32, rate: &str) -> BacktestConfig {
    BacktestConfig {
        slippage: if bps == 0 {
            SlippageSpec::None
        } else {
            SlippageSpec::FixedBps {
                bps: Decimal::from(bps),
            }
        },
        commission: if rate == "none" {
            CommissionSpec::None
        } else {
            CommissionSpec::Percentage {
                rate: rate.parse().unwrap(),
            }
        },
        ..BacktestConfig::default()
    }
}

/// The walks of the property tests trade every strategy, both sides (so
/// their parity is not vacuous).
#[test]
fn the_random_walks_trade() {
    let inst = Instrument::equity("X", 2, 0);
    let (mut f2, mut f3, mut fe) = (0, 0, 0);
    for seed in 0..20i64 {
        let steps: Vec<i64> = (0..200)
            .map(|k| (k * 7919 + seed * 104_729) % 61 - 30)
            .collect();
        let bars = walk(&steps, 1_000 + seed * 100);
        let series = Series::new(&inst, &bars).unwrap();
        let c = config(0, "none");
        let p2 = s2(10, "1", 5, 40, 60, true);
        f2 += assert_registry_parity("s2", &series, &bars, &p2, &c)
            .0
            .fills;
        let p3 = s3(10, 5, 5, "0.9", true);
        f3 += assert_registry_parity("s3", &series, &bars, &p3, &c)
            .0
            .fills;
        let pe = ema(3, 8, true);
        fe += assert_registry_parity("ema_cross", &series, &bars, &pe, &c)
            .0
            .fills;
    }
    assert!(f2 > 40 && f3 > 40 && fe > 40, "s2 {f2} s3 {f3} ema {fe}");
}
