//! `pair` and `sma_cross short_only` run through the event engine
//! (`grodt_sim::run_backtest`) on synthetic bars, built through the registry:
//! the exact orders (bar, instrument, side, size) each emits.

use std::collections::BTreeMap;

use grodt_core::{Bar, Decimal, Instrument, Side, Size};
use grodt_sim::{BacktestConfig, BacktestResult, run_backtest};
use grodt_strategies::registry;

const DAY: i64 = 86_400_000_000_000;

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Daily bars with open = high = low = close (prices in whole units, 2 decimals).
fn bars(closes: &[f64]) -> Vec<Bar> {
    closes
        .iter()
        .zip(0i64..)
        .map(|(c, k)| {
            #[expect(clippy::cast_possible_truncation, reason = "test prices")]
            let raw = (c * 100.0).round() as i64;
            Bar {
                ts: k * DAY,
                open: raw,
                high: raw,
                low: raw,
                close: raw,
                volume: 1_000_000,
            }
        })
        .collect()
}

fn legs() -> Vec<Instrument> {
    vec![Instrument::equity("A", 2, 0), Instrument::equity("B", 2, 0)]
}

fn run_pair(p: &[(&str, &str)], a: &[f64], b: &[f64]) -> BacktestResult {
    let inst = legs();
    let mut s = registry::build_on("pair", &params(p), &inst).unwrap();
    run_backtest(
        &BacktestConfig::default(),
        &inst,
        &[bars(a), bars(b)],
        &mut s,
    )
    .unwrap()
}

/// Every order as (bar index it was decided on, instrument, side, size).
fn orders(r: &BacktestResult) -> Vec<(i64, usize, Side, Size)> {
    r.orders
        .iter()
        .map(|o| {
            (
                o.created_ts / DAY,
                o.request.instrument,
                o.request.side,
                o.request.size,
            )
        })
        .collect()
}

fn half() -> Size {
    Size::EquityFraction(Decimal::new(5, 1))
}

/// a oscillates around 100 for ten bars, spikes to 108 (z = 2.93 over the
/// last ten spreads), then reverts: 106 (z = 1.58), 103 (z = 0.36), ...
const REVERT: [f64; 18] = [
    100.0, 101.0, 100.0, 101.0, 100.0, 101.0, 100.0, 101.0, 100.0, 101.0, 108.0, 106.0, 103.0,
    101.0, 100.5, 101.0, 100.0, 101.0,
];

#[test]
fn a_divergence_enters_both_legs_and_the_reversion_exits_them() {
    let flat = [100.0; 18];
    let p = [("lookback", "10"), ("entry_z", "2"), ("exit_z", "0.5")];
    let r = run_pair(&p, &REVERT, &flat);
    assert_eq!(
        orders(&r),
        [
            // z = 2.93 > 2 on bar 10: short a, long b, half the equity each.
            (10, 0, Side::Sell, half()),
            (10, 1, Side::Buy, half()),
            // z = 0.36 < 0.5 on bar 12: both legs closed.
            (12, 0, Side::Buy, Size::ClosePosition),
            (12, 1, Side::Sell, Size::ClosePosition),
        ]
    );
    // The legs filled at bar 11's open (106 and 100), each about half the
    // equity (100,000), so the pair is dollar-neutral at its fills.
    let entry: Vec<_> = r.fills.iter().filter(|f| f.ts == 11 * DAY).collect();
    assert_eq!(entry.len(), 2);
    let notional = |k: usize| entry[k].qty.raw() * entry[k].price.raw() / 100;
    assert_eq!(entry[0].qty.raw(), 50_000 * 100 / 10_600);
    assert!((notional(0) - notional(1)).abs() < 110, "{entry:?}");
    assert_eq!(r.positions, [0, 0]);
    // The mirror image: b spikes, so z < -2: long a, short b.
    let r = run_pair(&p, &flat, &REVERT);
    assert_eq!(
        orders(&r),
        [
            (10, 0, Side::Buy, half()),
            (10, 1, Side::Sell, half()),
            (12, 0, Side::Sell, Size::ClosePosition),
            (12, 1, Side::Buy, Size::ClosePosition),
        ]
    );
    assert_eq!(r.positions, [0, 0]);
}

#[test]
fn a_blowout_past_stop_z_closes_both_legs_and_waits_for_the_spread_to_come_back() {
    // z per bar (lookback 10): 10: 2.52, 11: 2.93, 12: 2.62, 13: 2.18, 14: 1.63,
    // ... 20: 0.45, 21: 0.33, 22-23: flat window (no signal), 24: 3.0.
    let a = [
        100.0, 101.0, 100.0, 101.0, 100.0, 101.0, 100.0, 101.0, 100.0, 101.0, 103.0, 115.0, 130.0,
        140.0, 140.0, 140.0, 140.0, 140.0, 140.0, 140.0, 140.0, 140.0, 140.0, 140.0, 150.0, 150.0,
    ];
    let flat = [100.0; 26];
    let p = [
        ("lookback", "10"),
        ("entry_z", "2"),
        ("exit_z", "0.5"),
        ("stop_z", "2.8"),
    ];
    let r = run_pair(&p, &a, &flat);
    assert_eq!(
        orders(&r),
        [
            (10, 0, Side::Sell, half()),
            (10, 1, Side::Buy, half()),
            // z = 2.93 > 2.8: stopped out.
            (11, 0, Side::Buy, Size::ClosePosition),
            (11, 1, Side::Sell, Size::ClosePosition),
            // Bars 12-13 (z 2.62, 2.18 > entry) do not re-enter: not re-armed
            // until |z| <= 2 (bar 14). Bar 24 (z = 3) enters afresh.
            (24, 0, Side::Sell, half()),
            (24, 1, Side::Buy, half()),
        ]
    );
    // Without the stop the position is held through the blowout and exits
    // on the reversion (bar 20, z = 0.45 < 0.5).
    let r = run_pair(&p[..3], &a, &flat);
    let decided: Vec<i64> = orders(&r).iter().map(|o| o.0).collect();
    assert_eq!(decided, [10, 10, 20, 20, 24, 24]);
}

#[test]
fn a_timestamp_missing_for_one_leg_is_skipped() {
    let inst = legs();
    let mut s = registry::build_on(
        "pair",
        &params(&[("lookback", "10"), ("entry_z", "2"), ("exit_z", "0.5")]),
        &inst,
    )
    .unwrap();
    // b has no bar 10 (the spike): nothing is decided there, and the window
    // takes only common timestamps, so bar 11 (106 vs 100) is the 11th spread.
    let mut b = bars(&[100.0; 18]);
    b.remove(10);
    let r = run_backtest(
        &BacktestConfig::default(),
        &inst,
        &[bars(&REVERT), b],
        &mut s,
    )
    .unwrap();
    let o = orders(&r);
    assert!(o.iter().all(|x| x.0 != 10), "{o:?}");
    assert_eq!(o.first().map(|x| x.0), Some(11), "{o:?}");
}

#[test]
fn a_leg_refused_at_entry_leaves_the_other_closed_at_the_next_decision() {
    // b cannot be shorted: b spikes (z < -2), long a fills, short b is refused.
    let mut inst = legs();
    inst[1].borrow.shortable = false;
    let mut s = registry::build_on(
        "pair",
        &params(&[("lookback", "10"), ("entry_z", "2"), ("exit_z", "0.5")]),
        &inst,
    )
    .unwrap();
    let r = run_backtest(
        &BacktestConfig::default(),
        &inst,
        &[bars(&[100.0; 18]), bars(&REVERT)],
        &mut s,
    )
    .unwrap();
    assert_eq!(
        orders(&r),
        [
            (10, 0, Side::Buy, half()),
            (10, 1, Side::Sell, half()),
            // Bar 11 (z = -1.58, no exit yet): a alone is closed.
            (11, 0, Side::Sell, Size::ClosePosition),
        ]
    );
    assert!(r.orders[1].reject_reason.is_some());
    assert_eq!(r.positions, [0, 0]);
}

fn run_sma(p: &[(&str, &str)], closes: &[f64]) -> BacktestResult {
    let inst = Instrument::equity("X", 2, 0);
    let mut s = registry::build("sma_cross", &params(p), &inst).unwrap();
    run_backtest(
        &BacktestConfig::default(),
        std::slice::from_ref(&inst),
        &[bars(closes)],
        &mut s,
    )
    .unwrap()
}

#[test]
fn short_only_shorts_the_downward_cross_and_covers_on_the_upward_one() {
    // fast 1 / slow 2: the difference has the sign of the last change.
    // Crosses: up on bar 3, down on 4, up on 5, down on 7.
    let closes = [10.0, 9.0, 9.0, 12.0, 11.0, 13.0, 14.0, 12.0, 12.0];
    let all = Size::EquityFraction(Decimal::ONE);
    let r = run_sma(
        &[("fast", "1"), ("slow", "2"), ("short_only", "true")],
        &closes,
    );
    assert_eq!(
        orders(&r),
        [
            (4, 0, Side::Sell, all),
            (5, 0, Side::Buy, Size::ClosePosition),
            (7, 0, Side::Sell, all),
        ]
    );
    // Never long: every fill leaves the position at or below zero.
    let mut pos = 0;
    for f in &r.fills {
        pos += f.side.sign() * f.qty.raw();
        assert!(pos <= 0, "{:?}", r.fills);
    }
    assert!(r.positions[0] < 0);
    // The default (long only) on the same bars is unchanged: long on the
    // upward crosses, out on the downward ones.
    let r = run_sma(&[("fast", "1"), ("slow", "2")], &closes);
    assert_eq!(
        orders(&r),
        [
            (3, 0, Side::Buy, all),
            (4, 0, Side::Sell, Size::ClosePosition),
            (5, 0, Side::Buy, all),
            (7, 0, Side::Sell, Size::ClosePosition),
        ]
    );
    let e = registry::build(
        "sma_cross",
        &params(&[("short_only", "true"), ("long_short", "true")]),
        &Instrument::equity("X", 2, 0),
    )
    .err()
    .unwrap();
    assert_eq!(e.param(), Some("short_only"));
}
