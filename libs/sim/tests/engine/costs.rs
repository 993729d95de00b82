//! Cost models in the engine: itemised, against the trader, accrued by day count.

use grodt_core::time::NANOS_PER_DAY;
use grodt_core::{Decimal, Instrument, OrderRequest, Side, Size};
use grodt_sim::{BacktestConfig, CommissionSpec, DayCount, SlippageSpec, run_backtest};

use crate::helpers::{Action, Script, bar, flat, p, q, run};

#[test]
fn commission_and_slippage_are_itemised_and_reconcile() {
    let config = BacktestConfig {
        slippage: SlippageSpec::FixedBps {
            bps: Decimal::from(10),
        },
        commission: CommissionSpec::PerShare {
            rate: Decimal::new(5, 3),
            minimum: Decimal::ONE,
        },
        ..BacktestConfig::default()
    };
    let plan = vec![
        (
            0,
            Action::Submit(OrderRequest::market(0, Side::Buy, q(100))),
        ),
        (
            2,
            Action::Submit(OrderRequest::market(0, Side::Sell, Size::ClosePosition)),
        ),
    ];
    let (r, _) = run(&config, flat(4), plan);
    assert_eq!(r.fills.len(), 2);
    // 100.00 +/- 10 bps = 100.10 / 99.90; commission max(0.50, 1.00) = 1.00 each.
    assert_eq!(r.fills[0].price, p(10_010));
    assert_eq!(r.fills[1].price, p(9_990));
    assert_eq!(r.fills[0].slippage, Decimal::new(10, 0));
    assert_eq!(r.costs.commission, Decimal::new(2, 0));
    assert_eq!(r.costs.slippage, Decimal::new(20, 0));
    assert_eq!(
        r.last.equity,
        Decimal::new(100_000, 0) - Decimal::new(22, 0)
    );
    let t = &r.trades[0];
    assert_eq!(
        (t.gross_pnl, t.fees, t.net_pnl),
        (
            Decimal::new(-20, 0),
            Decimal::new(2, 0),
            Decimal::new(-22, 0)
        )
    );
}

#[test]
fn maker_rebate_on_limit_fills_taker_fee_on_market() {
    let config = BacktestConfig {
        commission: CommissionSpec::MakerTaker {
            maker: Decimal::new(-2, 4),
            taker: Decimal::new(3, 4),
        },
        ..BacktestConfig::default()
    };
    let bars = vec![
        flat(1)[0],
        bar(1, 10_000, 10_000, 9_800, 9_900, 1_000),
        bar(2, 9_900, 9_900, 9_900, 9_900, 1_000),
    ];
    let plan = vec![
        (
            0,
            Action::Submit(OrderRequest::limit(0, Side::Buy, q(100), p(9_900))),
        ),
        (
            1,
            Action::Submit(OrderRequest::market(0, Side::Sell, q(100))),
        ),
    ];
    let (r, _) = run(&config, bars, plan);
    assert_eq!(
        (r.fills[0].commission, r.fills[0].rebate),
        (Decimal::ZERO, Decimal::new(198, 2))
    );
    assert_eq!(
        (r.fills[1].commission, r.fills[1].rebate),
        (Decimal::new(297, 2), Decimal::ZERO)
    );
    assert_eq!(r.costs.rebates, Decimal::new(198, 2));
    assert_eq!(
        r.last.equity,
        Decimal::new(100_000, 0) + Decimal::new(198, 2) - Decimal::new(297, 2)
    );
}

#[test]
fn tiered_commission_resets_each_month() {
    let tiers = vec![
        (Decimal::ZERO, Decimal::new(1, 2)),
        (Decimal::from(150), Decimal::new(5, 3)),
    ];
    let config = BacktestConfig {
        commission: CommissionSpec::TieredMonthly {
            tiers,
            minimum: Decimal::ZERO,
        },
        ..BacktestConfig::default()
    };
    // Days 0..40: fills on days 1, 2 (January) and 32 (February).
    let bars: Vec<_> = (0..40)
        .map(|d| bar(d, 10_000, 10_000, 10_000, 10_000, 1_000))
        .collect();
    let plan = vec![
        (
            0,
            Action::Submit(OrderRequest::market(0, Side::Buy, q(100))),
        ),
        (
            1,
            Action::Submit(OrderRequest::market(0, Side::Buy, q(100))),
        ),
        (
            31,
            Action::Submit(OrderRequest::market(0, Side::Buy, q(100))),
        ),
    ];
    let (r, _) = run(&config, bars, plan);
    let fees: Vec<Decimal> = r.fills.iter().map(|f| f.commission).collect();
    assert_eq!(fees, [Decimal::ONE, Decimal::ONE, Decimal::ONE]);
    let plan = vec![
        (
            0,
            Action::Submit(OrderRequest::market(0, Side::Buy, q(200))),
        ),
        (
            1,
            Action::Submit(OrderRequest::market(0, Side::Buy, q(100))),
        ),
    ];
    let (r, _) = run(&config, flat(3), plan);
    assert_eq!(
        r.fills[1].commission,
        Decimal::new(5, 1),
        "second fill in the cheaper tier"
    );
}

#[test]
fn borrow_accrues_daily_on_shorts_with_the_day_count() {
    let mut inst = Instrument::equity("X", 2, 0);
    inst.borrow.annual_rate = Some(Decimal::new(36, 3));
    let config = BacktestConfig {
        borrow_day_count: DayCount::Act360,
        ..BacktestConfig::default()
    };
    // Short 100 @ 10.00 filled on day 1; marks stay 10.00; days 2 and 5 (weekend gap).
    let bars = vec![
        bar(0, 1_000, 1_000, 1_000, 1_000, 1_000),
        bar(1, 1_000, 1_000, 1_000, 1_000, 1_000),
        bar(2, 1_000, 1_000, 1_000, 1_000, 1_000),
        bar(5, 1_000, 1_000, 1_000, 1_000, 1_000),
    ];
    let mut s = Script {
        plan: vec![(
            0,
            Action::Submit(OrderRequest::market(0, Side::Sell, q(100))),
        )],
        ..Script::default()
    };
    let r = run_backtest(
        &config,
        &[inst.clone()],
        std::slice::from_ref(&bars),
        &mut s,
    )
    .unwrap();
    // 1000.00 * 3.6% / 360 = 0.10 per day, for 1 + 3 days.
    assert_eq!(r.costs.borrow, Decimal::new(40, 2));
    assert_eq!(
        r.last.equity,
        Decimal::new(100_000, 0) - Decimal::new(40, 2)
    );
    // The engine default applies when the instrument has no rate.
    inst.borrow.annual_rate = None;
    let config = BacktestConfig {
        borrow_rate: Decimal::new(72, 3),
        ..config
    };
    let mut s = Script {
        plan: vec![(
            0,
            Action::Submit(OrderRequest::market(0, Side::Sell, q(100))),
        )],
        ..Script::default()
    };
    let r = run_backtest(&config, &[inst.clone()], &[bars], &mut s).unwrap();
    assert_eq!(r.costs.borrow, Decimal::new(80, 2));
    // Not shortable: refused.
    inst.borrow.shortable = false;
    let mut s = Script {
        plan: vec![(
            0,
            Action::Submit(OrderRequest::market(0, Side::Sell, q(100))),
        )],
        ..Script::default()
    };
    let r = run_backtest(&config, &[inst], &[flat(3)], &mut s).unwrap();
    assert_eq!(r.orders[0].status(), grodt_core::OrderStatus::Rejected);
}

#[test]
fn financing_on_leverage_uses_365_or_360() {
    let mut inst = Instrument::equity("X", 2, 0);
    inst.margin.initial = Decimal::new(5, 1);
    let bars: Vec<_> = (0..3)
        .map(|d| bar(d, 10_000, 10_000, 10_000, 10_000, 10_000))
        .collect();
    for (dc, expected) in [
        (DayCount::Act365, Decimal::new(10, 0)),
        (DayCount::Act360, Decimal::new(1_013_888_889, 8)),
    ] {
        let config = BacktestConfig {
            financing_rate: Decimal::new(73, 3),
            financing_day_count: dc,
            ..BacktestConfig::default()
        };
        // 1500 shares @ 100.00 with 100,000 cash: 50,000 borrowed from day 1.
        let mut s = Script {
            plan: vec![(
                0,
                Action::Submit(OrderRequest::market(0, Side::Buy, q(1_500))),
            )],
            ..Script::default()
        };
        let r = run_backtest(
            &config,
            &[inst.clone()],
            std::slice::from_ref(&bars),
            &mut s,
        )
        .unwrap();
        // 50,000 * 7.3% / 365 = 10.00 for the one night (day 1 -> 2); /360 rounds up at 8 places.
        assert_eq!(r.costs.financing, expected, "{dc:?}");
        assert_eq!(r.fills[0].ts, NANOS_PER_DAY);
    }
}

#[test]
fn trades_carry_excursions_from_the_bars_they_span() {
    // Buy 10 at 100.00 (bar 1 open); bars 2-3 range 95.00..110.00; sell at bar 4 open 105.00.
    let bars = vec![
        bar(0, 10_000, 10_000, 10_000, 10_000, 1_000),
        bar(1, 10_000, 10_100, 9_900, 10_000, 1_000),
        bar(2, 10_000, 11_000, 9_800, 10_500, 1_000),
        bar(3, 10_500, 10_600, 9_500, 10_400, 1_000),
        bar(4, 10_500, 10_500, 10_500, 10_500, 1_000),
    ];
    let plan = vec![
        (0, Action::Submit(OrderRequest::market(0, Side::Buy, q(10)))),
        (
            3,
            Action::Submit(OrderRequest::market(0, Side::Sell, Size::ClosePosition)),
        ),
    ];
    let (r, _) = run(&BacktestConfig::default(), bars, plan);
    assert_eq!(r.trades.len(), 1);
    let t = &r.trades[0];
    assert_eq!(
        (t.entry_price, t.exit_price),
        (Decimal::from(100), Some(Decimal::from(105)))
    );
    assert_eq!(t.mae, Decimal::from(-50), "low 95.00 after the entry bar");
    assert_eq!(t.mfe, Decimal::from(100), "high 110.00");
    assert_eq!(
        (t.gross_pnl, t.bars_held, t.fills),
        (Decimal::from(50), 4, 2)
    );
}

#[test]
fn tiered_notional_commission_resets_each_utc_month() {
    // 10 bps below 15,000 of monthly notional, 5 bps from there.
    let config = BacktestConfig {
        commission: CommissionSpec::TieredNotional {
            tiers: vec![
                (Decimal::ZERO, Decimal::new(1, 3)),
                (Decimal::from(15_000), Decimal::new(5, 4)),
            ],
        },
        ..BacktestConfig::default()
    };
    let buy = |d: usize, n: i64| (d, Action::Submit(OrderRequest::market(0, Side::Buy, q(n))));
    // Fills at 100.00 on days 1 and 2 (January 1970) and 32 (February).
    let (r, _) = run(
        &config,
        flat(40),
        vec![buy(0, 100), buy(1, 100), buy(31, 100)],
    );
    let fees: Vec<Decimal> = r.fills.iter().map(|f| f.commission).collect();
    // 10,000 each: the second fill starts at 10,000 < 15,000 (first tier);
    // February starts again from 0.
    assert_eq!(fees, [Decimal::TEN, Decimal::TEN, Decimal::TEN]);
    let (r, _) = run(&config, flat(4), vec![buy(0, 200), buy(1, 100)]);
    let fees: Vec<Decimal> = r.fills.iter().map(|f| f.commission).collect();
    // 20,000 at 10 bps, then 10,000 at 5 bps.
    assert_eq!(fees, [Decimal::from(20), Decimal::from(5)]);
}

#[test]
fn percentage_minimum_and_per_share_cap_reach_the_fills() {
    let buy = vec![(0, Action::Submit(OrderRequest::market(0, Side::Buy, q(10))))];
    // 10 x 100.00 = 1,000 of notional.
    let pct = BacktestConfig {
        commission: CommissionSpec::PercentageWithMinimum {
            rate: Decimal::new(1, 3),
            minimum: Decimal::from(5),
        },
        ..BacktestConfig::default()
    };
    let (r, _) = run(&pct, flat(3), buy.clone());
    assert_eq!(
        r.fills[0].commission,
        Decimal::from(5),
        "1.00 raised to the minimum"
    );
    let capped = BacktestConfig {
        commission: CommissionSpec::PerShareCapped {
            rate: Decimal::ONE,
            minimum: Decimal::ONE,
            maximum_fraction: Decimal::new(5, 3),
        },
        ..BacktestConfig::default()
    };
    let (r, _) = run(&capped, flat(3), buy);
    assert_eq!(
        r.fills[0].commission,
        Decimal::from(5),
        "10.00 capped at 0.5%"
    );
}

#[test]
fn log_normal_latency_is_seeded_and_capped() {
    let plan: Vec<_> = (0..20)
        .map(|k| (k, Action::Submit(OrderRequest::market(0, Side::Buy, q(1)))))
        .collect();
    let config = |seed| BacktestConfig {
        seed,
        latency: grodt_sim::LatencySpec::LogNormal {
            median: NANOS_PER_DAY,
            sigma: Decimal::ONE,
            max: Some(3 * NANOS_PER_DAY),
        },
        ..BacktestConfig::default()
    };
    let (a, _) = run(&config(7), flat(30), plan.clone());
    let (b, _) = run(&config(7), flat(30), plan.clone());
    let (c, _) = run(&config(8), flat(30), plan);
    let ts = |r: &grodt_sim::BacktestResult| {
        r.fills
            .iter()
            .map(|f| (f.order_id, f.ts))
            .collect::<Vec<_>>()
    };
    assert_eq!(ts(&a), ts(&b), "same seed, same fills");
    assert_ne!(ts(&a), ts(&c), "another seed, other delays");
    assert_eq!(a.fills.len(), 20);
    for f in &a.fills {
        let decided = a.orders[f.order_id.0 as usize].created_ts;
        assert!(
            f.ts > decided && f.ts <= decided + 3 * NANOS_PER_DAY,
            "capped at 3 days"
        );
    }
}
