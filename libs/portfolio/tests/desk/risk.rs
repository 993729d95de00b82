//! The risk service's rules (`grodt-risk-rules`) inside the desk: its limits
//! refuse orders across strategies, its breakers halt the portfolio, and its
//! positions are the account's after every timestamp.

use std::collections::BTreeSet;

use grodt_core::{Bar, Decimal, Instrument, OrderStatus, Quantity, Side, Size};
use grodt_portfolio::{Desk, Member, Plan, PortfolioLimits, PortfolioResult};
use grodt_risk_rules::{Breaker, Limits, RiskState, SymbolLimits};
use grodt_sim::{BacktestConfig, CommissionSpec};
use proptest::prelude::*;

use crate::helpers::{Script, Step, bars, dec, fixed, member, plan};

fn step(bar: usize, instrument: usize, side: Side, size: Size) -> Step {
    Step {
        bar,
        instrument,
        side,
        size,
    }
}

/// Drives the desk bar by bar; after every timestamp the books add up and
/// the risk rules hold the account's position in every instrument. Returns
/// the results and the risk state at the end.
fn run(
    config: &BacktestConfig,
    instruments: &[Instrument],
    series: &[Vec<Bar>],
    members: Vec<Member>,
    plan: Plan,
) -> (PortfolioResult, RiskState) {
    let mut desk = Desk::new(config, instruments.to_vec(), members, plan).unwrap();
    let mut cursor = vec![0usize; series.len()];
    loop {
        let ts = series
            .iter()
            .zip(&cursor)
            .filter_map(|(s, &k)| s.get(k).map(|b| b.ts))
            .min();
        let Some(ts) = ts else { break };
        for (i, s) in series.iter().enumerate() {
            if let Some(b) = s.get(cursor[i])
                && b.ts == ts
            {
                desk.on_bar(i, b).unwrap();
                cursor[i] += 1;
            }
        }
        desk.end_of_timestamp(ts).unwrap();
        desk.check_books().unwrap();
        let risk = desk.risk().unwrap();
        for (i, inst) in instruments.iter().enumerate() {
            let account = Quantity::from_raw(desk.account_position_raw(i), inst.size_precision)
                .unwrap()
                .to_decimal();
            assert_eq!(risk.position(&inst.id), account, "{} at {ts}", inst.id);
        }
    }
    let risk = desk.risk().unwrap().clone();
    (desk.finish().unwrap(), risk)
}

fn with_risk(n: usize, limits: Limits) -> Plan {
    let w = Decimal::ONE / Decimal::from(n);
    let mut p = plan(n, vec![w; n], true);
    p.risk = Some(limits);
    p
}

#[test]
fn a_position_limit_sees_every_strategys_orders() {
    // Price 100: each order of 200 is 20,000, within 30,000 alone; the second
    // strategy's order on the same bar would take the account to 40,000.
    let inst = Instrument::equity("XYZ", 4, 0);
    let series = bars(&[1_000_000; 5]);
    let limits = Limits {
        max_position_notional: Some(dec("30000")),
        ..Limits::default()
    };
    let (r, risk) = run(
        &BacktestConfig::default(),
        std::slice::from_ref(&inst),
        &[series],
        vec![
            member(
                "first",
                Script::new(vec![step(1, 0, Side::Buy, fixed(200))]),
                vec![0],
            ),
            member(
                "second",
                Script::new(vec![step(1, 0, Side::Buy, fixed(200))]),
                vec![0],
            ),
        ],
        with_risk(2, limits),
    );
    assert_eq!(r.members[0].positions, vec![200]);
    assert_eq!(r.members[1].positions, vec![0]);
    assert_eq!(r.members[0].orders[0].status(), OrderStatus::Filled);
    let refused = &r.members[1].orders[0];
    assert_eq!(refused.status(), OrderStatus::Rejected);
    let reason = refused.reject_reason.as_deref().unwrap();
    assert!(
        reason.starts_with(
            "risk: max_position_notional: XYZ position notional after the order 40000"
        ),
        "{reason}"
    );
    assert_eq!(r.refusals.len(), 1);
    assert_eq!(r.refusals[0].member, "second");
    assert_eq!(risk.decisions(), (1, 1));
    // The approved order settled on its fill; the rejected one left nothing.
    assert_eq!(risk.pending_orders(), 0);
    assert_eq!(risk.strategy_position("first", "XYZ"), dec("200"));
    assert_eq!(risk.strategy_position("second", "XYZ"), Decimal::ZERO);
}

#[test]
fn a_symbol_limit_refuses_what_the_desks_own_limits_let_through() {
    let inst = Instrument::equity("XYZ", 4, 0);
    let series = bars(&[1_000_000; 5]);
    let mut limits = Limits::default();
    limits.symbol_limits.insert(
        "XYZ".into(),
        SymbolLimits {
            max_position_quantity: Some(dec("150")),
            ..SymbolLimits::default()
        },
    );
    let (r, _) = run(
        &BacktestConfig::default(),
        std::slice::from_ref(&inst),
        &[series],
        vec![
            member(
                "a",
                Script::new(vec![step(1, 0, Side::Buy, fixed(100))]),
                vec![0],
            ),
            member(
                "b",
                Script::new(vec![
                    step(1, 0, Side::Buy, fixed(100)),
                    step(2, 0, Side::Buy, fixed(50)),
                    // Reducing always passes.
                    step(3, 0, Side::Sell, fixed(20)),
                ]),
                vec![0],
            ),
        ],
        with_risk(2, limits),
    );
    assert_eq!(r.members[0].positions, vec![100]);
    assert_eq!(r.members[1].positions, vec![30]);
    let reason = r.members[1].orders[0].reject_reason.as_deref().unwrap();
    assert!(
        reason.starts_with("risk: symbol_limits[XYZ].max_position_quantity"),
        "{reason}"
    );
    assert_eq!(r.account.positions, vec![130]);
}

#[test]
fn the_risk_rules_come_before_the_desks_own_limits() {
    // Price 100; the desk's own limit: 30% of equity in one asset; the risk
    // rules: 35,000 of notional per symbol.
    let inst = Instrument::equity("XYZ", 4, 0);
    let series = bars(&[1_000_000; 5]);
    let limits = Limits {
        max_position_notional: Some(dec("35000")),
        ..Limits::default()
    };
    let mut p = with_risk(2, limits);
    p.limits = PortfolioLimits {
        max_asset_exposure: Some(dec("0.3")),
        ..PortfolioLimits::default()
    };
    let (r, risk) = run(
        &BacktestConfig::default(),
        std::slice::from_ref(&inst),
        &[series],
        vec![
            member(
                "a",
                Script::new(vec![step(1, 0, Side::Buy, fixed(250))]),
                vec![0],
            ),
            member(
                "b",
                Script::new(vec![
                    // 35,000: within the risk rules, over the desk's 30%.
                    step(1, 0, Side::Buy, fixed(100)),
                    // 45,000: over both; the risk rules name it.
                    step(2, 0, Side::Buy, fixed(200)),
                ]),
                vec![0],
            ),
        ],
        p,
    );
    assert_eq!(r.account.positions, vec![250]);
    let b = &r.members[1].orders;
    let first = b[0].reject_reason.as_deref().unwrap();
    assert!(
        first.starts_with("exposure to XYZ across strategies"),
        "{first}"
    );
    let second = b[1].reject_reason.as_deref().unwrap();
    assert!(
        second.starts_with(
            "risk: max_position_notional: XYZ position notional after the order 45000"
        ),
        "{second}"
    );
    // The order only the desk refused never reached the fold: nothing of it
    // is left pending there.
    assert_eq!(risk.decisions(), (1, 1));
    assert_eq!(risk.pending_orders(), 0);
}

#[test]
fn a_drawdown_breaker_of_the_risk_rules_flattens_and_halts_every_strategy() {
    let inst = Instrument::equity("XYZ", 4, 0);
    // Entry at 100, a crash to 60 (about -36% of the account), then a recovery
    // the halt must not trade into.
    let series = bars(&[
        1_000_000, 1_000_000, 1_000_000, 600_000, 600_000, 800_000, 1_000_000,
    ]);
    let limits = Limits {
        max_drawdown: Some(dec("0.2")),
        ..Limits::default()
    };
    let (r, risk) = run(
        &BacktestConfig::default(),
        std::slice::from_ref(&inst),
        std::slice::from_ref(&series),
        vec![
            member(
                "a",
                Script::new(vec![
                    step(0, 0, Side::Buy, Size::EquityFraction(dec("0.9"))),
                    step(5, 0, Side::Buy, fixed(1)),
                ]),
                vec![0],
            ),
            member(
                "b",
                Script::new(vec![step(
                    0,
                    0,
                    Side::Buy,
                    Size::EquityFraction(dec("0.9")),
                )]),
                vec![0],
            ),
        ],
        with_risk(2, limits),
    );
    assert_eq!(risk.tripped(), Some(Breaker::Drawdown));
    // Tripped by the crash bar's close, halted at the end of that timestamp.
    assert_eq!(r.halted_at, Some(series[3].ts));
    let reason = r.halt_reason.as_deref().unwrap();
    assert!(
        reason.starts_with("risk breaker drawdown tripped: drawdown"),
        "{reason}"
    );
    assert!(reason.contains("max_drawdown 0.2"), "{reason}");
    // Flattened at the next open, whatever the fold's halt says.
    assert!(r.members.iter().all(|m| m.halted && m.positions == vec![0]));
    assert_eq!(r.account.positions, vec![0]);
    assert_eq!(risk.position("XYZ"), Decimal::ZERO);
    // Bar 5's order never happened: the strategy saw no bar after the halt.
    assert!(
        r.members[0]
            .orders
            .iter()
            .all(|o| o.request.size != fixed(1))
    );
}

#[test]
fn restricted_symbols_and_the_order_rate_are_the_risk_services() {
    let insts = [Instrument::equity("A", 4, 0), Instrument::equity("B", 4, 0)];
    let series = [bars(&[1_000_000; 5]), bars(&[500_000; 5])];
    let limits = Limits {
        max_orders_per_minute: Some(1),
        restricted_symbols: BTreeSet::from(["B".to_owned()]),
        ..Limits::default()
    };
    let (r, risk) = run(
        &BacktestConfig::default(),
        &insts,
        &series,
        vec![
            member(
                "a",
                Script::new(vec![
                    // Two orders resolved at one bar time: the second is one
                    // too many for the minute.
                    step(1, 0, Side::Buy, fixed(10)),
                    step(1, 0, Side::Buy, fixed(5)),
                    // A day later the minute is over.
                    step(2, 0, Side::Buy, fixed(5)),
                ]),
                vec![0, 1],
            ),
            member(
                "b",
                Script::new(vec![
                    step(1, 1, Side::Buy, fixed(10)),
                    step(2, 0, Side::Buy, fixed(3)),
                ]),
                vec![0, 1],
            ),
        ],
        with_risk(2, limits),
    );
    assert_eq!(r.members[0].positions, vec![15, 0]);
    assert_eq!(r.members[1].positions, vec![3, 0]);
    let a = &r.members[0].orders;
    assert_eq!(a[0].status(), OrderStatus::Filled);
    let reason = a[1].reject_reason.as_deref().unwrap();
    assert!(
        reason.starts_with("risk: max_orders_per_minute: strategy \"a\" has 1 orders"),
        "{reason}"
    );
    assert_eq!(a[2].status(), OrderStatus::Filled);
    let reason = r.members[1].orders[0].reject_reason.as_deref().unwrap();
    assert!(
        reason.starts_with("risk: restricted_symbols: B is restricted"),
        "{reason}"
    );
    assert_eq!(risk.decisions(), (3, 2));
    assert_eq!(risk.tripped(), None);
}

fn steps() -> impl proptest::strategy::Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (0usize..12, 0usize..2, any::<bool>(), 0u8..4, 1i64..300),
        0..8,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(bar, instrument, buy, kind, q)| Step {
                bar,
                instrument,
                side: if buy { Side::Buy } else { Side::Sell },
                size: match kind {
                    0 | 1 => fixed(q),
                    2 => Size::ClosePosition,
                    _ => Size::EquityFraction(Decimal::new(q % 100 + 1, 3)),
                },
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the orders, limits and breakers: the fold's positions are
    /// the account's after every timestamp (asserted by `run`), and each
    /// strategy's position at the fold is its sub-ledger's.
    #[test]
    fn the_risk_rules_hold_the_accounts_positions(
        scripts in prop::collection::vec(steps(), 2..5),
        rate in 0i64..50,
        netting in any::<bool>(),
        notional in prop::option::of(5_000i64..60_000),
        per_minute in prop::option::of(1u32..3),
        drawdown in prop::option::of(1i64..20),
        restricted in any::<bool>(),
        asset in prop::option::of(1i64..10),
    ) {
        let insts = [Instrument::equity("A", 4, 0), Instrument::equity("B", 4, 0)];
        let a: Vec<i64> = (0..16).map(|k| 1_000_000 + 7_000 * ((k * 5) % 7)).collect();
        let b: Vec<i64> = (0..16).map(|k| 500_000 + 3_000 * ((k * 3) % 5)).collect();
        let config = BacktestConfig {
            starting_cash: Decimal::from(100_000),
            commission: CommissionSpec::PerShare { rate: Decimal::new(rate, 3), minimum: Decimal::ONE },
            slippage: grodt_sim::SlippageSpec::FixedBps { bps: Decimal::from(rate % 7) },
            borrow_rate: Decimal::new(rate % 9, 2),
            ..BacktestConfig::default()
        };
        let limits = Limits {
            max_position_notional: notional.map(Decimal::from),
            max_orders_per_minute: per_minute,
            max_drawdown: drawdown.map(|d| Decimal::new(d, 3)),
            restricted_symbols: if restricted { BTreeSet::from(["B".to_owned()]) } else { BTreeSet::new() },
            ..Limits::default()
        };
        let n = scripts.len();
        let members = scripts.iter().enumerate().map(|(k, s)| {
            member(&format!("m{k}"), Script::new(s.clone()), vec![0, 1])
        }).collect();
        let mut p = with_risk(n, limits);
        p.netting = netting;
        // The desk's own limit too: the orders it refuses after the risk
        // rules must leave the fold's positions the account's.
        p.limits.max_asset_exposure = asset.map(|a| Decimal::new(a, 1));
        let series = [bars(&a), bars(&b)];
        let last = series[0][series[0].len() - 1].ts;
        let (r, risk) = run(&config, &insts, &series, members, p);
        for m in &r.members {
            for (k, inst) in insts.iter().enumerate() {
                prop_assert_eq!(
                    risk.strategy_position(&m.id, &inst.id),
                    Decimal::from(m.positions[k])
                );
            }
        }
        if let Some(at) = r.halted_at {
            prop_assert!(r.halt_reason.is_some());
            // Flattened at the next bar, if there is one.
            if at < last {
                prop_assert_eq!(&r.account.positions, &vec![0, 0], "halted at {}: {:?}", at, r.halt_reason);
            }
        }
    }
}

#[test]
fn the_risk_services_leverage_limits_see_the_whole_book() {
    // 100,000 split in two; price 100. Each strategy buys 300 (30% of the
    // account); together 60% of equity in one symbol, above the 50% limit.
    let inst = Instrument::equity("XYZ", 4, 0);
    let series = bars(&[1_000_000; 5]);
    let limits = Limits {
        max_symbol_exposure: Some(dec("0.5")),
        max_gross_leverage: Some(dec("1")),
        ..Limits::default()
    };
    let (r, _) = run(
        &BacktestConfig::default(),
        std::slice::from_ref(&inst),
        std::slice::from_ref(&series),
        vec![
            member(
                "a",
                Script::new(vec![step(1, 0, Side::Buy, fixed(300))]),
                vec![0],
            ),
            member(
                "b",
                Script::new(vec![step(1, 0, Side::Buy, fixed(300))]),
                vec![0],
            ),
        ],
        with_risk(2, limits),
    );
    assert_eq!(r.members[0].positions, vec![300]);
    assert_eq!(r.members[1].positions, vec![0]);
    let why = r.members[1].orders[0].reject_reason.as_deref().unwrap();
    assert!(why.starts_with("risk: max_symbol_exposure"), "{why}");
}
