//! A portfolio of one strategy with all the capital is that strategy's
//! backtest: the desk adds no fill rule of its own.

use grodt_core::Decimal;
use grodt_sim::{BacktestConfig, CommissionSpec, SlippageSpec, run_backtest};
use grodt_strategies::{SmaCross, SmaCrossParams};

use crate::helpers::{dec, member, plan, run_checked, sample};

fn check(config: &BacktestConfig, size_precision: u8, params: SmaCrossParams) {
    let (inst, bars) = sample("spy_1d_1998-2021.csv", "SPY", size_precision);
    let mut alone = SmaCross::new(params).unwrap();
    let reference = run_backtest(
        config,
        std::slice::from_ref(&inst),
        std::slice::from_ref(&bars),
        &mut alone,
    )
    .unwrap();
    let s = SmaCross::new(params).unwrap();
    let r = run_checked(
        config,
        &[inst],
        &[bars],
        vec![member("sma", s, vec![0])],
        plan(1, vec![Decimal::ONE], true),
    );
    let m = &r.members[0];
    assert_eq!(m.fills.len(), reference.fills.len());
    for (a, b) in m.fills.iter().zip(&reference.fills) {
        assert_eq!(
            (a.ts, a.side, a.qty, a.price),
            (b.ts, b.side, b.qty, b.price)
        );
        assert_eq!(a.commission, b.commission, "commission at {}", a.ts);
    }
    assert_eq!(m.trades, reference.trades);
    assert_eq!(m.equity, reference.equity);
    assert_eq!(r.account.equity, reference.equity);
    // Close-and-reverse reaches the venue as one order.
    assert!(r.account.fills.len() <= reference.fills.len());
    assert_eq!(r.account.positions, reference.positions);
    assert_eq!(m.costs, reference.costs);
}

#[test]
fn one_strategy_portfolio_equals_its_backtest_whole_shares() {
    let config = BacktestConfig::default();
    check(&config, 0, SmaCrossParams::default());
    // The backtrader reference value (data/README.md) holds through the desk.
    let (inst, bars) = sample("spy_1d_1998-2021.csv", "SPY", 0);
    let s = SmaCross::new(SmaCrossParams::default()).unwrap();
    let r = run_checked(
        &config,
        &[inst],
        &[bars],
        vec![member("sma", s, vec![0])],
        plan(1, vec![Decimal::ONE], true),
    );
    assert_eq!(
        r.members[0].equity.last().unwrap().equity.round_dp(2),
        dec("182091.18")
    );
    assert_eq!(r.members[0].fills.len(), 203);
}

#[test]
fn one_strategy_portfolio_equals_its_backtest_with_costs() {
    let config = BacktestConfig {
        commission: CommissionSpec::PerShare {
            rate: dec("0.005"),
            minimum: dec("1"),
        },
        slippage: SlippageSpec::FixedBps { bps: dec("2") },
        ..BacktestConfig::default()
    };
    check(&config, 0, SmaCrossParams::default());
    check(&config, 3, SmaCrossParams::default());
}

/// Close-and-reverse is two orders on one bar, netted into one venue order:
/// with a linear fee the split of its commission is each order's own fee.
/// (With a per-order minimum the netted pair pays less than alone.)
#[test]
fn one_long_short_strategy_pays_the_borrow_its_backtest_pays() {
    let config = BacktestConfig {
        borrow_rate: dec("0.03"),
        commission: CommissionSpec::PerShare {
            rate: dec("0.005"),
            minimum: Decimal::ZERO,
        },
        ..BacktestConfig::default()
    };
    check(
        &config,
        0,
        SmaCrossParams {
            long_short: true,
            ..SmaCrossParams::default()
        },
    );
}
