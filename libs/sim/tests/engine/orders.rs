//! Order types, time in force, contingencies and the timing rules.

use grodt_core::time::NANOS_PER_DAY;
use grodt_core::{
    BracketRequest, Decimal, Instrument, OrderKind, OrderRequest, OrderStatus, Side, Size,
    TimeInForce, TrailingOffset,
};
use grodt_sim::{BacktestConfig, LatencySpec, LimitFill, run_backtest};

use crate::helpers::{Action, Script, bar, flat, p, q, run};

fn cfg() -> BacktestConfig {
    BacktestConfig::default()
}

#[test]
fn market_order_fills_at_the_next_open_never_the_decision_bar() {
    let bars = vec![
        bar(0, 10_000, 10_100, 9_900, 10_050, 1_000),
        bar(1, 10_200, 10_300, 10_100, 10_250, 1_000),
    ];
    let (r, s) = run(
        &cfg(),
        bars,
        vec![(0, Action::Submit(OrderRequest::market(0, Side::Buy, q(10))))],
    );
    assert_eq!(r.fills.len(), 1);
    assert_eq!(r.fills[0].ts, NANOS_PER_DAY);
    assert_eq!(r.fills[0].price, p(10_200));
    assert_eq!(s.fills, r.fills, "on_fill saw every fill");
    assert_eq!(r.positions, [10]);
    // Cash moved by exactly the notional; equity marks the position at the close.
    assert_eq!(r.last.cash, Decimal::new(9_898_000, 2));
    assert_eq!(r.last.equity, Decimal::new(10_000_500, 2));
    for (now, seen) in s.max_visible_ts {
        assert!(seen <= now, "strategy saw a bar from the future");
    }
}

#[test]
fn a_bar_decided_order_waits_when_the_series_ends() {
    let (r, _) = run(
        &cfg(),
        flat(1),
        vec![(0, Action::Submit(OrderRequest::market(0, Side::Buy, q(1))))],
    );
    assert!(r.fills.is_empty());
    assert_eq!(r.orders[0].status(), OrderStatus::Accepted);
}

#[test]
fn limit_trade_through_by_default_touch_if_configured_gap_at_open() {
    let bars = vec![
        flat(1)[0],
        bar(1, 10_000, 10_050, 9_900, 10_000, 1_000),
        bar(2, 9_800, 9_850, 9_700, 9_800, 1_000),
    ];
    let plan = vec![(
        0,
        Action::Submit(OrderRequest::limit(0, Side::Buy, q(5), p(9_900))),
    )];
    let (r, _) = run(&cfg(), bars.clone(), plan.clone());
    // Bar 1 only touches 99.00; bar 2 gaps below it and fills at its open, 98.00.
    assert_eq!(r.fills.len(), 1);
    assert_eq!(
        (r.fills[0].ts, r.fills[0].price),
        (2 * NANOS_PER_DAY, p(9_800))
    );
    assert_eq!(r.fills[0].liquidity, grodt_core::Liquidity::Maker);
    let touch = BacktestConfig {
        limit_fill: LimitFill::Touch,
        ..cfg()
    };
    let (r, _) = run(&touch, bars, plan);
    assert_eq!((r.fills[0].ts, r.fills[0].price), (NANOS_PER_DAY, p(9_900)));
}

#[test]
fn stops_trigger_then_fill_at_the_level_or_a_worse_open() {
    let bars = vec![
        flat(1)[0],
        bar(1, 10_000, 10_300, 9_950, 10_100, 1_000),
        bar(2, 10_500, 10_600, 10_400, 10_500, 1_000),
    ];
    let plan = vec![
        (
            0,
            Action::Submit(OrderRequest::stop(0, Side::Buy, q(1), p(10_200))),
        ),
        (
            0,
            Action::Submit(OrderRequest::stop(0, Side::Buy, q(1), p(10_400))),
        ),
    ];
    let (r, _) = run(&cfg(), bars, plan);
    assert_eq!(r.fills.len(), 2);
    assert_eq!(
        (r.fills[0].ts, r.fills[0].price),
        (NANOS_PER_DAY, p(10_200))
    );
    // Gapped over 104.00 at the open of bar 2: fills at the open 105.00.
    assert_eq!(
        (r.fills[1].ts, r.fills[1].price),
        (2 * NANOS_PER_DAY, p(10_500))
    );
}

#[test]
fn stop_limit_stays_triggered_until_its_limit_is_reachable() {
    // Up bar path 100 -> 99.5 -> 103 -> 102.5: the 102 trigger is hit on the way up,
    // the 101.5 buy limit is never traded through afterwards; bar 2 dips to 101.
    let bars = vec![
        flat(1)[0],
        bar(1, 10_000, 10_300, 9_950, 10_250, 1_000),
        bar(2, 10_200, 10_250, 10_100, 10_150, 1_000),
    ];
    let mut r0 = OrderRequest::market(0, Side::Buy, q(3));
    r0.kind = OrderKind::StopLimit {
        trigger: p(10_200),
        limit: p(10_150),
    };
    let (r, _) = run(&cfg(), bars.clone(), vec![(0, Action::Submit(r0))]);
    assert_eq!(r.fills.len(), 1);
    assert_eq!(
        (r.fills[0].ts, r.fills[0].price),
        (2 * NANOS_PER_DAY, p(10_150))
    );
    let (r, _) = run(&cfg(), bars[..2].to_vec(), vec![(0, Action::Submit(r0))]);
    assert_eq!(r.orders[0].status(), OrderStatus::Triggered);
}

#[test]
fn trailing_stop_follows_the_high_and_fills_on_the_pullback() {
    let bars = vec![
        flat(1)[0],
        bar(1, 10_000, 10_500, 10_000, 10_500, 1_000),
        bar(2, 10_500, 11_000, 10_400, 11_000, 1_000),
        bar(3, 11_000, 11_000, 10_600, 10_700, 1_000),
    ];
    let mut tr = OrderRequest::market(0, Side::Sell, q(1));
    tr.kind = OrderKind::TrailingStop {
        offset: TrailingOffset::Amount(p(300)),
    };
    let plan = vec![
        (0, Action::Submit(OrderRequest::market(0, Side::Buy, q(1)))),
        (0, Action::Submit(tr)),
    ];
    let (r, _) = run(&cfg(), bars, plan);
    // Level after bar 2 is 110.00 - 3.00 = 107.00; bar 3 falls to 106.00.
    assert_eq!(r.fills.len(), 2);
    assert_eq!(
        (r.fills[1].ts, r.fills[1].price),
        (3 * NANOS_PER_DAY, p(10_700))
    );

    let mut pct = OrderRequest::market(0, Side::Sell, q(1));
    pct.kind = OrderKind::TrailingStop {
        offset: TrailingOffset::Percent(Decimal::new(5, 2)),
    };
    let bars = vec![flat(1)[0], bar(1, 10_000, 10_000, 9_400, 9_700, 1_000)];
    let (r, _) = run(&cfg(), bars, vec![(0, Action::Submit(pct))]);
    assert_eq!(r.fills[0].price, p(9_500), "5% below 100.00");
}

#[test]
fn bracket_exits_live_only_after_the_entry_fills_and_cancel_each_other() {
    let entry = OrderRequest::limit(0, Side::Buy, q(10), p(9_800));
    let b = BracketRequest {
        entry,
        take_profit: p(10_500),
        stop_loss: p(9_500),
    };
    // Bar 1 never reaches the entry but spans both exits: nothing may happen.
    // Bar 2 fills the entry; bar 3 (up bar: low first) hits the stop before the target.
    let bars = vec![
        flat(1)[0],
        bar(1, 10_000, 10_600, 9_400, 10_000, 1_000).with_low(9_850),
        bar(2, 9_900, 10_000, 9_700, 9_900, 1_000),
        bar(3, 9_900, 10_600, 9_400, 10_500, 1_000),
    ];
    let (r, s) = run(&cfg(), bars.clone(), vec![(0, Action::Bracket(b))]);
    let [e, tp, sl] = [s.ids[0], s.ids[1], s.ids[2]].map(|id| &r.orders[id.0 as usize]);
    assert_eq!(e.status(), OrderStatus::Filled);
    assert_eq!(sl.status(), OrderStatus::Filled);
    assert_eq!(tp.status(), OrderStatus::Cancelled);
    assert_eq!(r.fills.len(), 2);
    assert_eq!(
        (r.fills[0].ts, r.fills[0].price),
        (2 * NANOS_PER_DAY, p(9_800))
    );
    assert_eq!(
        (r.fills[1].ts, r.fills[1].price, r.fills[1].qty.raw()),
        (3 * NANOS_PER_DAY, p(9_500), 10)
    );
    assert_eq!(r.positions, [0]);

    // Down bar (high first): the target wins.
    let mut down = bars.clone();
    down[3] = bar(3, 9_900, 10_600, 9_400, 9_450, 1_000);
    let (r, _) = run(&cfg(), down, vec![(0, Action::Bracket(b))]);
    assert_eq!(r.fills[1].price, p(10_500));

    // Entry cancelled before filling: exits never go live.
    let (r, s) = run(
        &cfg(),
        bars[..2].to_vec(),
        vec![
            (0, Action::Bracket(b)),
            (1, Action::Cancel(grodt_core::OrderId(0))),
        ],
    );
    assert!(r.fills.is_empty());
    assert!(
        s.ids.len() == 3
            && r.orders
                .iter()
                .all(|o| o.status() == OrderStatus::Cancelled)
    );
}

trait WithLow {
    fn with_low(self, low: i64) -> Self;
}
impl WithLow for grodt_core::Bar {
    fn with_low(mut self, low: i64) -> Self {
        self.low = low;
        self
    }
}

#[test]
fn oco_fill_cancels_the_other() {
    let bars = vec![flat(1)[0], bar(1, 10_000, 10_600, 9_990, 10_500, 1_000)];
    let a = OrderRequest::limit(0, Side::Sell, q(1), p(10_400));
    let b = OrderRequest::stop(0, Side::Sell, q(1), p(9_000));
    let (r, _) = run(&cfg(), bars, vec![(0, Action::Oco(a, b))]);
    assert_eq!(r.orders[0].status(), OrderStatus::Filled);
    assert_eq!(r.orders[1].status(), OrderStatus::Cancelled);
    assert_eq!(r.positions, [-1]);
}

#[test]
fn time_in_force_day_ioc_fok() {
    let bars = vec![
        flat(1)[0],
        bar(1, 10_000, 10_100, 9_950, 10_000, 1_000),
        bar(2, 9_000, 9_100, 8_900, 9_000, 1_000),
    ];
    let day = OrderRequest::limit(0, Side::Buy, q(1), p(9_500)).with_tif(TimeInForce::Day);
    let (r, _) = run(&cfg(), bars.clone(), vec![(0, Action::Submit(day))]);
    assert_eq!(r.orders[0].status(), OrderStatus::Expired);
    assert!(r.fills.is_empty(), "expired before bar 2 could fill it");

    let part = BacktestConfig {
        max_participation: Some(Decimal::new(1, 1)),
        ..cfg()
    };
    let ioc = OrderRequest::market(0, Side::Buy, q(250)).with_tif(TimeInForce::Ioc);
    let (r, _) = run(&part, bars.clone(), vec![(0, Action::Submit(ioc))]);
    assert_eq!(r.fills.len(), 1);
    assert_eq!(r.fills[0].qty.raw(), 100, "10% of 1000");
    assert_eq!(r.orders[0].status(), OrderStatus::Cancelled);

    let fok = OrderRequest::market(0, Side::Buy, q(250)).with_tif(TimeInForce::Fok);
    let (r, _) = run(&part, bars.clone(), vec![(0, Action::Submit(fok))]);
    assert!(r.fills.is_empty());
    assert_eq!(r.orders[0].status(), OrderStatus::Cancelled);
    let fok = OrderRequest::market(0, Side::Buy, q(100)).with_tif(TimeInForce::Fok);
    let (r, _) = run(&part, bars, vec![(0, Action::Submit(fok))]);
    assert_eq!(r.orders[0].status(), OrderStatus::Filled);
}

#[test]
fn participation_carries_the_remainder_to_later_bars() {
    let part = BacktestConfig {
        max_participation: Some(Decimal::new(25, 2)),
        ..cfg()
    };
    let (r, _) = run(
        &part,
        flat(5),
        vec![(
            0,
            Action::Submit(OrderRequest::market(0, Side::Buy, q(600))),
        )],
    );
    let sizes: Vec<i64> = r.fills.iter().map(|f| f.qty.raw()).collect();
    assert_eq!(sizes, [250, 250, 100]);
    assert_eq!(r.orders[0].status(), OrderStatus::Filled);
    assert_eq!(r.positions, [600]);
}

#[test]
fn latency_pushes_fills_later_and_random_latency_is_seeded() {
    let two_days = BacktestConfig {
        latency: LatencySpec::Fixed {
            nanos: 2 * NANOS_PER_DAY,
        },
        ..cfg()
    };
    let (r, _) = run(
        &two_days,
        flat(5),
        vec![(0, Action::Submit(OrderRequest::market(0, Side::Buy, q(1))))],
    );
    assert_eq!(r.fills[0].ts, 2 * NANOS_PER_DAY);
    let plan: Vec<_> = (0..20)
        .map(|k| (k, Action::Submit(OrderRequest::market(0, Side::Buy, q(1)))))
        .collect();
    let rnd = |seed| BacktestConfig {
        seed,
        latency: LatencySpec::Uniform {
            min: 0,
            max: 4 * NANOS_PER_DAY,
        },
        ..cfg()
    };
    let (a, _) = run(&rnd(7), flat(30), plan.clone());
    let (b, _) = run(&rnd(7), flat(30), plan.clone());
    let (c, _) = run(&rnd(8), flat(30), plan.clone());
    let ts = |r: &grodt_sim::BacktestResult| {
        r.fills
            .iter()
            .map(|f| (f.order_id, f.ts))
            .collect::<Vec<_>>()
    };
    assert_eq!(ts(&a), ts(&b), "same seed, same fills");
    assert_ne!(ts(&a), ts(&c), "another seed, other delays");
    for f in &a.fills {
        let decided = a.orders[f.order_id.0 as usize].created_ts;
        assert!(f.ts > decided && f.ts <= decided + 5 * NANOS_PER_DAY);
    }
}

#[test]
fn invalid_or_unaffordable_orders_are_rejected_with_a_reason() {
    let mut i2 = Instrument::equity("X", 2, 0);
    i2.size_step = grodt_core::Quantity::from_raw(10, 0).unwrap();
    let mut s = Script {
        plan: vec![(0, Action::Submit(OrderRequest::market(0, Side::Buy, q(15))))],
        ..Script::default()
    };
    let r = run_backtest(&cfg(), &[i2], &[flat(3)], &mut s).unwrap();
    assert_eq!(r.orders[0].status(), OrderStatus::Rejected);
    assert!(
        r.orders[0]
            .reject_reason
            .as_deref()
            .unwrap()
            .contains("step")
    );

    let (r, _) = run(
        &cfg(),
        flat(3),
        vec![(
            0,
            Action::Submit(OrderRequest::market(0, Side::Buy, q(1_001))),
        )],
    );
    assert_eq!(r.orders[0].status(), OrderStatus::Rejected);
    assert!(
        r.orders[0]
            .reject_reason
            .as_deref()
            .unwrap()
            .contains("margin")
    );
    let (r, _) = run(
        &cfg(),
        flat(3),
        vec![(
            0,
            Action::Submit(OrderRequest::market(0, Side::Sell, Size::ClosePosition)),
        )],
    );
    assert_eq!(r.orders[0].status(), OrderStatus::Rejected);
}

#[test]
fn bad_inputs_are_named() {
    let mut bars = flat(3);
    bars[2].high = 9_000;
    let mut s = Script::default();
    let e = run_backtest(&cfg(), &[crate::helpers::inst()], &[bars], &mut s)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bar 2") && e.contains("X"), "{e}");
    let mut bars = flat(3);
    bars[1].ts = bars[0].ts;
    let e = run_backtest(&cfg(), &[crate::helpers::inst()], &[bars], &mut s)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bar 1"), "{e}");
    let bad = BacktestConfig {
        starting_cash: Decimal::ZERO,
        ..cfg()
    };
    let e = run_backtest(&bad, &[crate::helpers::inst()], &[flat(2)], &mut s)
        .unwrap_err()
        .to_string();
    assert!(e.contains("starting_cash"), "{e}");
}

#[test]
fn many_instruments_merge_by_time() {
    let a = crate::helpers::inst();
    let mut b = Instrument::equity("Y", 2, 0);
    b.id = "Y".into();
    let bars_a = vec![bar(0, 100, 100, 100, 100, 1), bar(2, 100, 100, 100, 100, 1)];
    let bars_b = vec![
        bar(1, 200, 200, 200, 200, 1),
        bar(2, 300, 300, 300, 300, 1),
        bar(3, 300, 300, 300, 300, 1),
    ];
    // Decided on X's bar 0: buys Y, which fills at Y's next bar (day 1).
    let mut s = Script {
        plan: vec![(0, Action::Submit(OrderRequest::market(1, Side::Buy, q(2))))],
        ..Script::default()
    };
    let r = run_backtest(&cfg(), &[a, b], &[bars_a, bars_b], &mut s).unwrap();
    assert_eq!(r.equity.len(), 4, "one point per distinct timestamp");
    assert_eq!(r.bars, 5);
    assert_eq!((r.fills[0].instrument, r.fills[0].ts), (1, NANOS_PER_DAY));
    assert_eq!(r.last.position_value, Decimal::new(600, 2));
}
