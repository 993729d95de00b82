//! Allocation, portfolio limits, the drawdown halt and rebalancing.

use grodt_core::{Decimal, Instrument, OrderStatus, Side, Size};
use grodt_portfolio::PortfolioLimits;
use grodt_portfolio::allocation::{Allocator, Method, Schedule};
use grodt_sim::BacktestConfig;

use crate::helpers::{Script, Step, bars, dec, fixed, member, plan, run_checked};

fn step(bar: usize, side: Side, size: Size) -> Step {
    Step {
        bar,
        instrument: 0,
        side,
        size,
    }
}

#[test]
fn a_strategy_spends_only_its_allocation() {
    // 100,000 split 10% / 90%; price 100: the small strategy can carry 100
    // shares (less the commission), the big one 900.
    let inst = Instrument::equity("XYZ", 4, 0);
    let series = bars(&[1_000_000; 6]);
    let r = run_checked(
        &BacktestConfig::default(),
        &[inst],
        &[series],
        vec![
            member(
                "small",
                Script::new(vec![
                    step(1, Side::Buy, fixed(150)),
                    step(2, Side::Buy, fixed(90)),
                    step(3, Side::Buy, fixed(20)),
                    step(4, Side::Sell, fixed(40)),
                ]),
                vec![0],
            ),
            member(
                "big",
                Script::new(vec![step(1, Side::Buy, Size::EquityFraction(Decimal::ONE))]),
                vec![0],
            ),
        ],
        plan(2, vec![dec("0.1"), dec("0.9")], true),
    );
    assert_eq!(r.members[0].initial, dec("10000"));
    assert_eq!(r.members[1].initial, dec("90000"));
    // 150 and then 20 more than it can carry are refused; reducing always passes.
    assert_eq!(r.members[0].positions, vec![50]);
    assert_eq!(r.members[1].positions, vec![900]);
    let status: Vec<OrderStatus> = r.members[0].orders.iter().map(|o| o.status()).collect();
    assert_eq!(
        status,
        vec![
            OrderStatus::Rejected,
            OrderStatus::Filled,
            OrderStatus::Rejected,
            OrderStatus::Filled
        ]
    );
    let reason = r.members[0].orders[0].reject_reason.as_deref().unwrap();
    assert!(
        reason.starts_with("exceeds its allocation: needs margin 15000"),
        "{reason}"
    );
    assert_eq!(r.refusals.len(), 2);
}

#[test]
fn portfolio_limits_see_the_whole_book() {
    // Each strategy alone is within its allocation; together they would hold
    // 80% of equity in one asset, above the 50% limit.
    let inst = Instrument::equity("XYZ", 4, 0);
    let series = bars(&[1_000_000; 6]);
    let mut p = plan(2, vec![dec("0.5"), dec("0.5")], true);
    p.limits = PortfolioLimits {
        max_asset_exposure: Some(dec("0.5")),
        ..PortfolioLimits::default()
    };
    let r = run_checked(
        &BacktestConfig::default(),
        &[inst],
        &[series],
        vec![
            member(
                "a",
                Script::new(vec![step(1, Side::Buy, fixed(400))]),
                vec![0],
            ),
            member(
                "b",
                Script::new(vec![step(1, Side::Buy, fixed(400))]),
                vec![0],
            ),
        ],
        p,
    );
    assert_eq!(r.members[0].positions, vec![400]);
    assert_eq!(r.members[1].positions, vec![0]);
    assert!(
        r.members[1].orders[0]
            .reject_reason
            .as_deref()
            .unwrap()
            .contains("exposure to XYZ")
    );
}

#[test]
fn the_drawdown_limit_flattens_and_halts_every_strategy() {
    let inst = Instrument::equity("XYZ", 4, 0);
    // Falls 30% after the entry, then recovers; the halt must hold.
    let series = bars(&[
        1_000_000, 1_000_000, 1_000_000, 900_000, 700_000, 700_000, 800_000, 1_000_000, 1_100_000,
    ]);
    let mut p = plan(2, vec![dec("0.5"), dec("0.5")], true);
    p.limits.max_drawdown = Some(dec("0.2"));
    let r = run_checked(
        &BacktestConfig::default(),
        &[inst],
        &[series],
        vec![
            member(
                "a",
                Script::new(vec![
                    step(1, Side::Buy, Size::EquityFraction(Decimal::ONE)),
                    step(7, Side::Buy, fixed(1)),
                ]),
                vec![0],
            ),
            member(
                "b",
                Script::new(vec![step(1, Side::Buy, Size::EquityFraction(Decimal::ONE))]),
                vec![0],
            ),
        ],
        p,
    );
    assert!(r.halted_at.is_some());
    assert!(r.members.iter().all(|m| m.halted && m.positions == vec![0]));
    assert_eq!(r.account.positions, vec![0]);
    // Bar 7's order never happened: the strategy saw no bar after the halt.
    assert!(
        r.members[0]
            .orders
            .iter()
            .all(|o| o.request.size != fixed(1))
    );
}

#[test]
fn monthly_rebalancing_moves_free_capital_towards_the_weights() {
    let inst = Instrument::equity("XYZ", 4, 0);
    // 70 daily bars: several month ends.
    let closes: Vec<i64> = (0..70).map(|k| 1_000_000 + 5_000 * k).collect();
    let series = bars(&closes);
    let mut p = plan(2, vec![dec("0.5"), dec("0.5")], true);
    p.schedule = Schedule::Monthly;
    let r = run_checked(
        &BacktestConfig::default(),
        &[inst],
        &[series],
        vec![
            // "a" goes all in and gains; "b" stays in cash.
            member(
                "a",
                Script::new(vec![step(1, Side::Buy, Size::EquityFraction(dec("0.5")))]),
                vec![0],
            ),
            member("b", Script::new(vec![]), vec![0]),
        ],
        p,
    );
    assert!(!r.rebalances.is_empty());
    for rb in &r.rebalances {
        let moved: Decimal = rb.moved.iter().copied().sum();
        assert!(
            moved <= Decimal::ZERO && moved > dec("-0.01"),
            "moves add up: {moved}"
        );
    }
    // a's gains flowed to b; a never gave capital backing its position.
    assert!(r.members[0].transferred < Decimal::ZERO);
    assert_eq!(r.members[0].transferred, -r.members[1].transferred);
    let e: Vec<Decimal> = r
        .members
        .iter()
        .map(|m| m.equity.last().unwrap().equity)
        .collect();
    let w0 = e[0] / (e[0] + e[1]);
    assert!(
        w0 > dec("0.45") && w0 < dec("0.55"),
        "weight after rebalancing {w0}"
    );
}

#[test]
fn risk_parity_gives_the_calmer_strategy_more() {
    let a = Instrument::equity("CALM", 4, 0);
    let b = Instrument::equity("WILD", 4, 0);
    let calm: Vec<i64> = (0..80)
        .map(|k| 1_000_000 + if k % 2 == 0 { 5_000 } else { -5_000 })
        .collect();
    let wild: Vec<i64> = (0..80)
        .map(|k| 1_000_000 + if k % 2 == 0 { 50_000 } else { -50_000 })
        .collect();
    let mut p = plan(2, vec![dec("0.5"), dec("0.5")], true);
    p.allocator =
        Allocator::new(Method::InverseVolatility { lookback: 20 }, Vec::new(), 2).unwrap();
    p.schedule = Schedule::Weekly;
    let r = run_checked(
        &BacktestConfig::default(),
        &[a, b],
        &[bars(&calm), bars(&wild)],
        vec![
            member(
                "calm",
                Script::new(vec![step(1, Side::Buy, Size::EquityFraction(dec("0.5")))]),
                vec![0],
            ),
            member(
                "wild",
                Script::new(vec![Step {
                    bar: 1,
                    instrument: 0,
                    side: Side::Buy,
                    size: Size::EquityFraction(dec("0.5")),
                }]),
                vec![1],
            ),
        ],
        p,
    );
    let last = r.rebalances.last().expect("rebalanced");
    assert!(
        last.target[0] > dec("0.85"),
        "calm gets most: {:?}",
        last.target
    );
}

#[test]
fn correlated_strategies_are_cut_and_the_capital_held_back() {
    // Two copies of one strategy: correlation 1. With the cut above 0.5 at
    // full strength, each is cut to nothing and the free capital goes to the
    // reserve; their positions stay (only free capital moves).
    let inst = Instrument::equity("XYZ", 4, 0);
    let closes: Vec<i64> = (0..40)
        .map(|k| 1_000_000 + if k % 3 == 0 { 20_000 } else { -10_000 } * (k % 5))
        .collect();
    let mut p = plan(2, vec![dec("0.5"), dec("0.5")], true);
    p.schedule = Schedule::Weekly;
    p.lookback = 10;
    p.correlation_cut = Some((dec("0.5"), Decimal::ONE));
    let script = || Script::new(vec![step(1, Side::Buy, Size::EquityFraction(dec("0.5")))]);
    let r = run_checked(
        &BacktestConfig::default(),
        &[inst],
        &[bars(&closes)],
        vec![
            member("a", script(), vec![0]),
            member("b", script(), vec![0]),
        ],
        p,
    );
    assert!(
        r.rebalances
            .iter()
            .any(|rb| rb.target == vec![Decimal::ZERO, Decimal::ZERO])
    );
    assert!(r.reserve > dec("40000"), "reserve {}", r.reserve);
    assert_eq!(r.members[0].positions, r.members[1].positions);
    assert!(r.members.iter().all(|m| m.transferred < Decimal::ZERO));
}

#[test]
fn a_volatility_target_scales_the_allocation_down() {
    let inst = Instrument::equity("XYZ", 4, 0);
    // ±5% a day: far above a 0.5% per-day target.
    let closes: Vec<i64> = (0..40)
        .map(|k| if k % 2 == 0 { 1_000_000 } else { 1_050_000 })
        .collect();
    let mut p = plan(1, vec![Decimal::ONE], true);
    p.schedule = Schedule::Weekly;
    p.lookback = 10;
    p.vol_target = Some((dec("0.005"), Decimal::ONE));
    let r = run_checked(
        &BacktestConfig::default(),
        &[inst],
        &[bars(&closes)],
        vec![member(
            "a",
            Script::new(vec![step(1, Side::Buy, Size::EquityFraction(dec("0.3")))]),
            vec![0],
        )],
        p,
    );
    let last = r.rebalances.last().expect("rebalanced");
    assert!(last.target[0] < dec("0.5"), "target {:?}", last.target);
    assert!(r.reserve > Decimal::ZERO);
}
