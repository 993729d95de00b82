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

/// Buys with a limit under the close every 20 bars (cancelled if still
/// working 3 bars later), protects with a DAY stop under the close, exits
/// with a stop-limit (both fixed sizes; they can overshoot into a short, in
/// both runs alike) and at market: resting orders go to the venue unchanged,
/// so a one-strategy portfolio fills them as its backtest does.
struct Resting {
    bar: usize,
    entry: Option<grodt_core::OrderId>,
}

impl grodt_strategy_api::Strategy for Resting {
    fn on_bar(
        &mut self,
        ctx: &mut grodt_strategy_api::Context<'_>,
        instrument: usize,
        bar: &grodt_core::Bar,
    ) {
        use grodt_core::{OrderKind, OrderRequest, Price, Quantity, Side, Size};
        let k = self.bar;
        self.bar += 1;
        let px = |x: i64| Price::from_raw(x - x % 100, 4).unwrap();
        let pos = ctx.position(instrument);
        match k % 20 {
            0 if pos == 0 => {
                let id = ctx.submit(OrderRequest {
                    instrument,
                    side: Side::Buy,
                    size: Size::Fixed(Quantity::from_raw(100, 0).unwrap()),
                    kind: OrderKind::Limit {
                        price: px(bar.close * 99 / 100),
                    },
                    tif: grodt_core::TimeInForce::Gtc,
                });
                self.entry = Some(id);
            }
            3 => {
                if let Some(id) = self.entry.take() {
                    ctx.cancel(id);
                }
            }
            5 if pos > 0 => {
                ctx.submit(OrderRequest {
                    instrument,
                    side: Side::Sell,
                    size: Size::Fixed(Quantity::from_raw(pos, 0).unwrap()),
                    kind: OrderKind::Stop {
                        trigger: px(bar.close * 98 / 100),
                    },
                    tif: grodt_core::TimeInForce::Day,
                });
            }
            12 if pos > 0 => {
                ctx.submit(OrderRequest {
                    instrument,
                    side: Side::Sell,
                    size: Size::Fixed(Quantity::from_raw(pos, 0).unwrap()),
                    kind: OrderKind::StopLimit {
                        trigger: px(bar.close * 101 / 100),
                        limit: px(bar.close * 100 / 100),
                    },
                    tif: grodt_core::TimeInForce::Gtc,
                });
            }
            19 if pos > 0 => {
                ctx.submit(OrderRequest::market(
                    instrument,
                    Side::Sell,
                    Size::ClosePosition,
                ));
            }
            _ => {}
        }
    }
}

#[test]
fn resting_orders_fill_as_in_the_backtest() {
    let (inst, bars) = sample("spy_1d_1998-2021.csv", "SPY", 0);
    let config = BacktestConfig {
        commission: CommissionSpec::PerShare {
            rate: dec("0.005"),
            minimum: dec("1"),
        },
        ..BacktestConfig::default()
    };
    let mut alone = Resting {
        bar: 0,
        entry: None,
    };
    let reference = run_backtest(
        &config,
        std::slice::from_ref(&inst),
        std::slice::from_ref(&bars),
        &mut alone,
    )
    .unwrap();
    let r = run_checked(
        &config,
        &[inst],
        &[bars],
        vec![member(
            "resting",
            Resting {
                bar: 0,
                entry: None,
            },
            vec![0],
        )],
        plan(1, vec![Decimal::ONE], true),
    );
    let m = &r.members[0];
    assert!(
        reference.fills.len() > 100,
        "the strategy trades: {}",
        reference.fills.len()
    );
    assert_eq!(m.fills.len(), reference.fills.len());
    for (a, b) in m.fills.iter().zip(&reference.fills) {
        assert_eq!(
            (a.ts, a.side, a.qty, a.price, a.commission),
            (b.ts, b.side, b.qty, b.price, b.commission)
        );
    }
    let status = |o: &[grodt_core::Order]| o.iter().map(|o| o.status()).collect::<Vec<_>>();
    assert_eq!(status(&m.orders), status(&reference.orders));
    assert_eq!(m.equity, reference.equity);
}

/// Two copies of the resting-order strategy on one account: each strategy's
/// resting orders are its own at the venue (never netted), so each fills as
/// the single backtest does, and the books add up after every bar.
#[test]
fn resting_orders_of_two_strategies_stay_their_own() {
    let (inst, bars) = sample("spy_1d_1998-2021.csv", "SPY", 0);
    let config = BacktestConfig::default();
    let mut alone = Resting {
        bar: 0,
        entry: None,
    };
    let reference = run_backtest(
        &config,
        std::slice::from_ref(&inst),
        std::slice::from_ref(&bars),
        &mut alone,
    )
    .unwrap();
    let half = dec("0.5");
    let r = run_checked(
        &config,
        &[inst],
        &[bars],
        vec![
            member(
                "a",
                Resting {
                    bar: 0,
                    entry: None,
                },
                vec![0],
            ),
            member(
                "b",
                Resting {
                    bar: 0,
                    entry: None,
                },
                vec![0],
            ),
        ],
        plan(2, vec![half, half], true),
    );
    for m in &r.members {
        let got: Vec<_> = m
            .fills
            .iter()
            .map(|f| (f.ts, f.side, f.qty, f.price))
            .collect();
        let want: Vec<_> = reference
            .fills
            .iter()
            .map(|f| (f.ts, f.side, f.qty, f.price))
            .collect();
        assert_eq!(got, want, "{}", m.id);
    }
}

/// A resting order sized by equity or to close the position is refused with
/// the reason: the venue sizes those at the fill, against the whole account.
#[test]
fn resting_orders_need_a_fixed_size() {
    struct CloseStop;
    impl grodt_strategy_api::Strategy for CloseStop {
        fn on_bar(
            &mut self,
            ctx: &mut grodt_strategy_api::Context<'_>,
            instrument: usize,
            bar: &grodt_core::Bar,
        ) {
            use grodt_core::{OrderKind, OrderRequest, Price, Side, Size};
            if ctx.open_orders().next().is_none() && ctx.order(grodt_core::OrderId(0)).is_none() {
                ctx.submit(OrderRequest {
                    instrument,
                    side: Side::Buy,
                    size: Size::EquityFraction(dec("0.5")),
                    kind: OrderKind::Limit {
                        price: Price::from_raw(bar.close, 4).unwrap(),
                    },
                    tif: grodt_core::TimeInForce::Gtc,
                });
            }
        }
    }
    let (inst, bars) = sample("spy_1d_1998-2021.csv", "SPY", 0);
    let r = run_checked(
        &BacktestConfig::default(),
        &[inst],
        &[bars[..10].to_vec()],
        vec![member("s", CloseStop, vec![0])],
        plan(1, vec![Decimal::ONE], true),
    );
    let o = &r.members[0].orders[0];
    assert_eq!(o.status(), grodt_core::OrderStatus::Rejected);
    assert_eq!(
        o.reject_reason.as_deref(),
        Some("a resting (limit or stop) order in a portfolio needs a fixed size")
    );
}

/// S1 enters with a bracket (a market entry sized by equity at the open, a
/// take-profit and a stop-loss the venue activates on the fill): through the
/// desk it trades as in its backtest, fill for fill, and every order ends in
/// the same state.
#[test]
fn a_bracket_strategy_trades_as_in_its_backtest() {
    let (inst, bars) = sample("spy_1d_1998-2021.csv", "SPY", 0);
    let config = BacktestConfig {
        commission: CommissionSpec::PerShare {
            rate: dec("0.005"),
            minimum: dec("1"),
        },
        ..BacktestConfig::default()
    };
    let params = std::collections::BTreeMap::from([("fraction".to_owned(), "0.9".to_owned())]);
    let build = || grodt_strategies::registry::build("s1", &params, &inst).unwrap();
    let mut alone = build();
    let reference = run_backtest(
        &config,
        std::slice::from_ref(&inst),
        std::slice::from_ref(&bars),
        alone.as_mut(),
    )
    .unwrap();
    let r = run_checked(
        &config,
        std::slice::from_ref(&inst),
        std::slice::from_ref(&bars),
        vec![grodt_portfolio::Member {
            id: "s1".into(),
            strategy: build(),
            instruments: vec![0],
            max_leverage: Decimal::ONE,
        }],
        plan(1, vec![Decimal::ONE], true),
    );
    let m = &r.members[0];
    assert!(
        reference.fills.len() > 50,
        "S1 trades: {}",
        reference.fills.len()
    );
    let key = |f: &grodt_core::Fill| (f.ts, f.side, f.qty, f.price, f.commission);
    assert_eq!(
        m.fills.iter().map(key).collect::<Vec<_>>(),
        reference.fills.iter().map(key).collect::<Vec<_>>()
    );
    let status = |o: &[grodt_core::Order]| o.iter().map(|o| o.status()).collect::<Vec<_>>();
    assert_eq!(status(&m.orders), status(&reference.orders));
    assert_eq!(m.trades, reference.trades);
    assert_eq!(m.equity, reference.equity);
}
