//! Regime gating on SPY daily, every strategy built through the registry: no
//! entry is submitted in a disallowed regime, `close` flattens on the first bar
//! after the regime turns disallowed, `hold` keeps the position, and an ungated
//! run (or a gate that allows everything) equals the bare strategy exactly.
//! Regimes are recomputed independently with `grodt_regimes::classify` over the
//! same bars.

use std::collections::BTreeMap;

use grodt_core::{Bar, Instrument, Size};
use grodt_regimes::{Regime, RegimeConfig, classify};
use grodt_sim::{BacktestConfig, BacktestResult, run_backtest};
use grodt_strategies::registry::{self, RANGE_REGIMES, TREND_REGIMES};
use grodt_strategies::{GateConfig, Gated, OnDisallowed};
use grodt_strategy_api::Strategy;

use crate::sma_parity::spy;

const STRATEGIES: [&str; 4] = ["sma_cross", "s1", "s2", "s3"];

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn run(strategy: &mut dyn Strategy, inst: &Instrument, bars: &[Bar]) -> BacktestResult {
    run_backtest(
        &BacktestConfig::default(),
        std::slice::from_ref(inst),
        &[bars.to_vec()],
        strategy,
    )
    .unwrap()
}

fn run_registry(name: &str, p: &[(&str, &str)], inst: &Instrument, bars: &[Bar]) -> BacktestResult {
    let mut s = registry::build(name, &params(p), inst).unwrap();
    run(&mut s, inst, bars)
}

/// The regime in force after each bar (None during warm-up), from an
/// independent classifier run over the whole series.
fn regimes(bars: &[Bar]) -> Vec<Option<Regime>> {
    let decisions = classify(RegimeConfig::default(), 4, bars).unwrap();
    let mut d = decisions.iter().peekable();
    let mut now = None;
    bars.iter()
        .map(|b| {
            while let Some(x) = d.next_if(|x| x.ts <= b.ts) {
                now = Some(x.regime);
            }
            now
        })
        .collect()
}

fn default_regimes(name: &str) -> &'static [Regime] {
    if name == "s2" {
        &RANGE_REGIMES
    } else {
        &TREND_REGIMES
    }
}

/// Signed position after all the fills at or before each bar's open.
fn positions(r: &BacktestResult, bars: &[Bar]) -> Vec<i64> {
    let mut pos = 0i64;
    let mut f = r.fills.iter().peekable();
    bars.iter()
        .map(|b| {
            while let Some(x) = f.next_if(|x| x.ts <= b.ts) {
                pos += x.side.sign() * x.qty.raw();
            }
            pos
        })
        .collect()
}

/// Asserts every order made in a disallowed regime is an exit; returns how many there were.
fn check_no_entry_when_disallowed(
    name: &str,
    rule: &str,
    r: &BacktestResult,
    bars: &[Bar],
    regime: &[Option<Regime>],
) -> usize {
    let allowed = default_regimes(name);
    let index: BTreeMap<i64, usize> = bars.iter().enumerate().map(|(i, b)| (b.ts, i)).collect();
    let mut checked = 0;
    for o in &r.orders {
        let t = index[&o.created_ts];
        let ok = regime[t].is_some_and(|g| allowed.contains(&g));
        if !ok {
            // Only exits: closes of the position, or the exits of a bracket.
            assert!(
                o.request.size == Size::ClosePosition || o.parent.is_some(),
                "{name} {rule}: entry {:?} submitted on bar {t} in regime {:?}",
                o.request,
                regime[t]
            );
            checked += 1;
        }
    }
    assert!(!r.orders.is_empty(), "{name} {rule}: no orders at all");
    checked
}

#[test]
fn no_entry_is_submitted_in_a_disallowed_regime() {
    let (inst, bars) = spy(0);
    let regime = regimes(&bars);
    for name in STRATEGIES {
        for rule in ["hold", "close"] {
            let r = run_registry(name, &[("on_disallowed", rule)], &inst, &bars);
            let exits = check_no_entry_when_disallowed(name, rule, &r, &bars, &regime);
            if rule == "close" {
                assert!(exits > 0, "{name}: no exit was made in a disallowed regime");
            }
        }
        // Ungated, the same strategy does enter in disallowed regimes (so the
        // check above has something to catch).
        let bare = run_registry(name, &[], &inst, &bars);
        let allowed = default_regimes(name);
        let index: BTreeMap<i64, usize> = bars.iter().enumerate().map(|(i, b)| (b.ts, i)).collect();
        assert!(bare.orders.iter().any(|o| {
            o.request.size != Size::ClosePosition
                && o.parent.is_none()
                && !regime[index[&o.created_ts]].is_some_and(|g| allowed.contains(&g))
        }));
    }
}

#[test]
fn close_flattens_on_the_first_bar_after_the_regime_turns_disallowed() {
    let (inst, bars) = spy(0);
    let regime = regimes(&bars);
    for name in STRATEGIES {
        let allowed = default_regimes(name);
        let r = run_registry(name, &[("on_disallowed", "close")], &inst, &bars);
        let pos = positions(&r, &bars);
        let mut closes = 0;
        for t in 0..bars.len() - 1 {
            let disallowed = !regime[t].is_some_and(|g| allowed.contains(&g));
            if disallowed && pos[t] != 0 {
                assert_eq!(
                    pos[t + 1],
                    0,
                    "{name}: position {} held into bar {} after a disallowed regime {:?} on bar {t}",
                    pos[t],
                    t + 1,
                    regime[t]
                );
                assert!(r.fills.iter().any(|f| f.ts == bars[t + 1].ts));
                closes += 1;
            }
        }
        assert!(
            closes > 0,
            "{name}: the gate never had to close on 23 years of SPY"
        );
    }
}

#[test]
fn hold_keeps_positions_through_disallowed_regimes() {
    let (inst, bars) = spy(0);
    let regime = regimes(&bars);
    for name in STRATEGIES {
        let allowed = default_regimes(name);
        let r = run_registry(name, &[("on_disallowed", "hold")], &inst, &bars);
        let pos = positions(&r, &bars);
        let held = (0..bars.len() - 1)
            .filter(|&t| {
                !regime[t].is_some_and(|g| allowed.contains(&g))
                    && pos[t] != 0
                    && pos[t + 1] == pos[t]
            })
            .count();
        assert!(
            held > 0,
            "{name}: hold never kept a position through a disallowed bar"
        );
    }
}

#[test]
fn ungated_runs_equal_the_bare_strategy_exactly() {
    let (inst, bars) = spy(0);
    for name in STRATEGIES {
        let bare = run_registry(name, &[], &inst, &bars);
        // Explicitly off, with any declared regimes: the same strategy, unwrapped.
        let off = run_registry(
            name,
            &[("on_disallowed", "off"), ("regimes", "ranging")],
            &inst,
            &bars,
        );
        assert_eq!(off, bare, "{name}: on_disallowed=off");
        // A gate that allows every regime and the warm-up: every request passes.
        for rule in [OnDisallowed::Hold, OnDisallowed::Close] {
            let inner = registry::build(name, &BTreeMap::new(), &inst).unwrap();
            let config = GateConfig {
                trade_before_first_decision: true,
                ..GateConfig::new(Regime::ALL.to_vec(), rule)
            };
            let mut g = Gated::new(inner, config, inst.price_precision).unwrap();
            let gated = run(&mut g, &inst, &bars);
            assert_eq!(gated, bare, "{name}: everything allowed ({rule:?})");
            assert_eq!(
                g.stats().withdrawn + g.stats().closes + g.stats().disallowed_bars,
                0
            );
            assert!(g.regime().is_some());
        }
    }
}

#[test]
fn gated_and_ungated_figures() {
    // Printed for docs/strategies.md (`-- --nocapture`); asserts the gate changes
    // the runs and that the wrapper's classifier saw the same regimes.
    let (inst, bars) = spy(0);
    for name in STRATEGIES {
        let bare = run_registry(name, &[], &inst, &bars);
        for rule in ["hold", "close"] {
            let r = run_registry(name, &[("on_disallowed", rule)], &inst, &bars);
            assert_ne!(r.fills, bare.fills, "{name} {rule}: gating changed nothing");
            println!(
                "{name:9} {rule:5} final {:>12} fills {:>4} trades {:>3} | ungated final {:>12} fills {:>4}",
                r.last.equity.round_dp(2),
                r.fills.len(),
                r.trades.len(),
                bare.last.equity.round_dp(2),
                bare.fills.len()
            );
        }
    }
    let inner = registry::build("s3", &BTreeMap::new(), &inst).unwrap();
    let mut g = Gated::new(
        inner,
        GateConfig::new(TREND_REGIMES.to_vec(), OnDisallowed::Close),
        inst.price_precision,
    )
    .unwrap();
    run(&mut g, &inst, &bars);
    assert_eq!(g.regime(), *regimes(&bars).last().unwrap());
}
