//! The registry-speaking entry point: same outcomes as the kernel, refusals by name.

use std::collections::BTreeMap;

use grodt_analytics::MetricsConfig;
use grodt_sim::{BacktestConfig, FillTiming};
use grodt_sweep::{Series, SmaParams, SweepConfig, Threads, supports, sweep, sweep_sma};

use crate::helpers::spy;

fn set(fast: u32, slow: u32, long_short: bool) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("fast".into(), fast.to_string()),
        ("slow".into(), slow.to_string()),
        ("long_short".into(), long_short.to_string()),
    ])
}

#[test]
fn sweep_by_registry_names_equals_the_kernel() {
    let (inst, bars) = spy();
    let series = Series::new(&inst, &bars).unwrap();
    let params = vec![set(5, 20, false), set(10, 30, true), set(7, 50, false)];
    let config = BacktestConfig::default();
    let metrics = MetricsConfig::default();
    let out = sweep(
        "sma_cross",
        &series,
        &params,
        &config,
        &metrics,
        Threads::All,
    )
    .unwrap();
    let kernel = sweep_sma(
        &series,
        &[
            SmaParams {
                fast: 5,
                slow: 20,
                long_short: false,
            },
            SmaParams {
                fast: 10,
                slow: 30,
                long_short: true,
            },
            SmaParams {
                fast: 7,
                slow: 50,
                long_short: false,
            },
        ],
        &SweepConfig {
            metrics,
            ..SweepConfig::default()
        },
        Threads::One,
    )
    .unwrap();
    assert_eq!(out.len(), 3);
    for ((o, k), p) in out.iter().zip(&kernel).zip(&params) {
        assert_eq!(&o.params, p);
        assert_eq!(o.final_equity, k.final_equity);
        assert_eq!((o.trades, o.fills), (k.trades, k.fills));
        assert_eq!(o.metrics, k.metrics);
    }
}

#[test]
fn refusals_name_the_strategy_setting_or_set() {
    let (inst, bars) = spy();
    let series = Series::new(&inst, &bars[..200]).unwrap();
    let config = BacktestConfig::default();
    let m = MetricsConfig::default();
    assert!(supports("sma_cross", &config));
    assert!(!supports("s1", &config));
    let close = BacktestConfig {
        fill_timing: FillTiming::SameBarClose,
        ..config.clone()
    };
    assert!(!supports("sma_cross", &close));
    let e = sweep(
        "s1",
        &series,
        &[set(5, 20, false)],
        &config,
        &m,
        Threads::One,
    )
    .unwrap_err();
    assert!(e.to_string().contains("strategy"), "{e}");
    let e = sweep(
        "sma_cross",
        &series,
        &[set(5, 20, false), set(30, 20, false)],
        &config,
        &m,
        Threads::One,
    )
    .unwrap_err();
    assert!(e.to_string().contains("set 1"), "{e}");
    let mut gated = set(5, 20, false);
    gated.insert("on_disallowed".into(), "hold".into());
    let e = sweep("sma_cross", &series, &[gated], &config, &m, Threads::One).unwrap_err();
    assert!(e.to_string().contains("on_disallowed"), "{e}");
    let mut short_only = set(5, 20, false);
    short_only.insert("short_only".into(), "true".into());
    let e = sweep(
        "sma_cross",
        &series,
        &[short_only],
        &config,
        &m,
        Threads::One,
    )
    .unwrap_err();
    assert!(e.to_string().contains("short_only"), "{e}");
}
