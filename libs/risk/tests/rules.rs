//! The risk rules: checks, breakers, halt/resume, the fold's determinism,
//! with examples and proptest properties.

use std::collections::{BTreeMap, BTreeSet};

use grodt_risk_rules::{
    ARITHMETIC_OVERFLOW, Breaker, BreakerSettings, HaltCause, Input, Limits, Order, Output,
    RiskState, Settings, Side, Size, SymbolLimits,
};
use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

const DAY: i64 = 86_400_000_000_000;
const MIN: i64 = 60_000_000_000;
/// 2024-01-02T00:00Z
const T0: i64 = 19_724 * DAY;

fn order(id: &str, symbol: &str, side: Side, qty: Decimal) -> Order {
    Order {
        client_order_id: id.into(),
        strategy_id: "s1".into(),
        symbol: symbol.into(),
        side,
        size: Size::Quantity(qty),
        limit_price: None,
    }
}

fn bar(symbol: &str, close: Decimal, at_ns: i64) -> Input {
    Input::Bar {
        symbol: symbol.into(),
        close,
        at_ns,
    }
}

fn fill(symbol: &str, side: Side, qty: Decimal, price: Decimal, at_ns: i64) -> Input {
    Input::Fill {
        fill_id: format!("f{at_ns}{symbol}"),
        client_order_id: String::new(),
        strategy_id: "s1".into(),
        symbol: symbol.into(),
        side,
        quantity: qty,
        price,
        commission: Decimal::ZERO,
        at_ns,
    }
}

fn set_limits(s: &mut RiskState, limits: Limits) {
    let v = s.limits().version;
    let out = s.apply(&Input::SetLimits {
        limits,
        expected_version: v,
        by: "test".into(),
        reason: "test".into(),
        at_ns: 0,
    });
    assert!(matches!(out[0], Output::LimitsChanged { .. }));
}

fn intent(s: &mut RiskState, o: Order, at_ns: i64) -> Vec<Output> {
    s.apply(&Input::Intent { order: o, at_ns })
}

fn rejected_limits(out: &[Output]) -> Vec<String> {
    match &out[0] {
        Output::Rejected { violations, .. } => violations.iter().map(|v| v.limit.clone()).collect(),
        Output::Approved { .. } => Vec::new(),
        o => panic!("first output is a decision, got {o:?}"),
    }
}

#[test]
fn each_order_limit_is_named_in_its_violation() {
    let mut s = RiskState::default();
    s.apply(&bar("SPY", dec!(100), T0));
    let mut sl = BTreeMap::new();
    sl.insert(
        "SPY".to_owned(),
        SymbolLimits {
            max_position_quantity: Some(dec!(50)),
            max_position_notional: Some(dec!(4000)),
            max_order_quantity: Some(dec!(30)),
        },
    );
    set_limits(
        &mut s,
        Limits {
            max_order_quantity: Some(dec!(40)),
            max_order_notional: Some(dec!(3500)),
            max_position_notional: Some(dec!(4500)),
            max_gross_exposure: Some(dec!(4200)),
            max_net_exposure: Some(dec!(4100)),
            symbol_limits: sl,
            ..Limits::default()
        },
    );
    assert!(
        rejected_limits(&intent(&mut s, order("a", "SPY", Side::Buy, dec!(10)), T0)).is_empty()
    );
    let got = rejected_limits(&intent(&mut s, order("b", "SPY", Side::Buy, dec!(60)), T0));
    assert_eq!(
        got,
        [
            "max_order_quantity",
            "symbol_limits[SPY].max_order_quantity",
            "symbol_limits[SPY].max_position_quantity",
            "max_order_notional",
            "max_position_notional",
            "symbol_limits[SPY].max_position_notional",
            "max_gross_exposure",
            "max_net_exposure",
        ]
    );
    let out = intent(&mut s, order("c", "SPY", Side::Buy, dec!(36)), T0);
    let Output::Rejected { violations, .. } = &out[0] else {
        panic!("rejected")
    };
    let v = violations
        .iter()
        .find(|v| v.limit == "max_order_notional")
        .unwrap();
    assert_eq!(
        (v.limit_value, v.observed),
        (Some(dec!(3500)), Some(dec!(3600)))
    );
}

#[test]
fn a_reducing_order_passes_position_limits_but_not_the_halt() {
    let mut s = RiskState::default();
    s.apply(&bar("SPY", dec!(100), T0));
    s.apply(&fill("SPY", Side::Buy, dec!(100), dec!(100), T0 + 1));
    set_limits(
        &mut s,
        Limits {
            max_position_notional: Some(dec!(5000)),
            max_order_quantity: Some(dec!(10)),
            restricted_symbols: BTreeSet::from(["SPY".to_owned()]),
            ..Limits::default()
        },
    );
    // Over every limit already, but selling reduces.
    assert!(
        rejected_limits(&intent(
            &mut s,
            order("r1", "SPY", Side::Sell, dec!(60)),
            T0 + 2
        ))
        .is_empty()
    );
    let close = Order {
        size: Size::ClosePosition,
        ..order("r2", "SPY", Side::Sell, dec!(0))
    };
    assert!(rejected_limits(&intent(&mut s, close.clone(), T0 + 3)).is_empty());
    // Flipping the position is not reducing.
    assert!(
        !rejected_limits(&intent(
            &mut s,
            order("r3", "SPY", Side::Sell, dec!(250)),
            T0 + 4
        ))
        .is_empty()
    );
    s.apply(&Input::Halt {
        reason: "test".into(),
        by: "op".into(),
        at_ns: 5,
    });
    let r = rejected_limits(&intent(
        &mut s,
        Order {
            client_order_id: "r4".into(),
            ..close
        },
        T0 + 5,
    ));
    assert_eq!(r, ["halt"]);
}

#[test]
fn approved_orders_count_until_filled_or_expired() {
    let mut s = RiskState::default();
    s.apply(&bar("SPY", dec!(100), T0));
    let mut sl = BTreeMap::new();
    sl.insert(
        "SPY".to_owned(),
        SymbolLimits {
            max_position_quantity: Some(dec!(150)),
            ..SymbolLimits::default()
        },
    );
    set_limits(
        &mut s,
        Limits {
            symbol_limits: sl,
            max_gross_exposure: Some(dec!(25000)),
            ..Limits::default()
        },
    );
    // Two buys of 100 on the same bar: the second would make 200.
    assert!(
        rejected_limits(&intent(
            &mut s,
            order("p1", "SPY", Side::Buy, dec!(100)),
            T0
        ))
        .is_empty()
    );
    assert_eq!(s.pending_orders(), 1);
    assert_eq!(
        rejected_limits(&intent(
            &mut s,
            order("p2", "SPY", Side::Buy, dec!(100)),
            T0
        )),
        ["symbol_limits[SPY].max_position_quantity"]
    );
    // Pending in another symbol counts in the gross exposure.
    s.apply(&bar("QQQ", dec!(100), T0));
    assert_eq!(
        rejected_limits(&intent(
            &mut s,
            order("p3", "QQQ", Side::Buy, dec!(160)),
            T0
        )),
        ["max_gross_exposure"]
    );
    // The fill of p1 (in two parts) moves it from pending to the position: still 100.
    let part = |q: Decimal, t: i64| Input::Fill {
        fill_id: format!("pf{t}"),
        client_order_id: "p1".into(),
        strategy_id: "s1".into(),
        symbol: "SPY".into(),
        side: Side::Buy,
        quantity: q,
        price: dec!(100),
        commission: Decimal::ZERO,
        at_ns: t,
    };
    s.apply(&part(dec!(40), T0 + 1));
    assert_eq!(s.pending_orders(), 1);
    s.apply(&part(dec!(60), T0 + 2));
    assert_eq!((s.pending_orders(), s.position("SPY")), (0, dec!(100)));
    assert_eq!(
        rejected_limits(&intent(
            &mut s,
            order("p4", "SPY", Side::Buy, dec!(100)),
            T0 + 3
        )),
        ["symbol_limits[SPY].max_position_quantity"]
    );
    // An approved order that never fills stops counting after the TTL (a day).
    assert!(
        rejected_limits(&intent(
            &mut s,
            order("p5", "SPY", Side::Buy, dec!(50)),
            T0 + 4
        ))
        .is_empty()
    );
    assert!(
        !rejected_limits(&intent(
            &mut s,
            order("p6", "SPY", Side::Buy, dec!(1)),
            T0 + 5
        ))
        .is_empty()
    );
    s.apply(&bar("SPY", dec!(100), T0 + DAY + 5));
    assert_eq!(s.pending_orders(), 0);
    assert!(
        rejected_limits(&intent(
            &mut s,
            order("p7", "SPY", Side::Buy, dec!(50)),
            T0 + DAY + 6
        ))
        .is_empty()
    );
}

#[test]
fn a_cancellation_passes_while_halted_and_frees_its_pending_quantity() {
    let mut s = RiskState::default();
    s.apply(&bar("SPY", dec!(100), T0));
    let mut sl = BTreeMap::new();
    sl.insert(
        "SPY".to_owned(),
        SymbolLimits {
            max_position_quantity: Some(dec!(150)),
            ..SymbolLimits::default()
        },
    );
    set_limits(
        &mut s,
        Limits {
            symbol_limits: sl,
            ..Limits::default()
        },
    );
    assert!(
        rejected_limits(&intent(
            &mut s,
            order("c1", "SPY", Side::Buy, dec!(100)),
            T0
        ))
        .is_empty()
    );
    assert_eq!(
        rejected_limits(&intent(
            &mut s,
            order("c2", "SPY", Side::Buy, dec!(100)),
            T0
        )),
        ["symbol_limits[SPY].max_position_quantity"],
        "c1's 100 pending counts"
    );
    s.apply(&Input::Halt {
        reason: "incident".into(),
        by: "oncall".into(),
        at_ns: T0 + 1,
    });
    // Halted: a cancellation still passes (it only takes risk away).
    let out = s.apply(&Input::Cancel {
        client_order_id: "c1".into(),
        at_ns: T0 + 2,
    });
    assert_eq!(
        out,
        [Output::CancelPassed {
            client_order_id: "c1".into()
        }]
    );
    assert_eq!(s.pending_orders(), 0);
    s.apply(&Input::Resume {
        reason: "fixed".into(),
        by: "oncall".into(),
        at_ns: T0 + 3,
    });
    assert!(
        rejected_limits(&intent(
            &mut s,
            order("c3", "SPY", Side::Buy, dec!(100)),
            T0 + 4
        ))
        .is_empty(),
        "the cancelled order no longer counts against the position limit"
    );
    // Cancelling an order risk does not hold (filled, expired, unknown) passes too.
    assert_eq!(
        s.apply(&Input::Cancel {
            client_order_id: "gone".into(),
            at_ns: T0 + 5,
        })
        .len(),
        1
    );
    assert_eq!(s.pending_orders(), 1);
}

/// A 29-digit value in a violation message: rust_decimal's `{:.4}` panics
/// on it (found by the overflow proptest); the message is built without it.
#[test]
fn a_huge_price_deviation_is_reported_not_a_panic() {
    let mut s = RiskState::default();
    s.apply(&bar("SPY", dec!(1), T0));
    set_limits(
        &mut s,
        Limits {
            max_price_deviation: Some(dec!(0.5)),
            ..Limits::default()
        },
    );
    let mut o = order("big", "SPY", Side::Buy, dec!(1));
    o.limit_price = Some(Decimal::MAX - dec!(1));
    let c = s.check(&o, None, T0);
    let v = c
        .violations
        .iter()
        .find(|v| v.limit == "max_price_deviation")
        .expect("the deviation is named");
    assert!(
        v.message.contains("79228162514264337593543950333.0000"),
        "{}",
        v.message
    );
}

#[test]
fn halt_rejects_everything_and_resume_lifts_it() {
    let mut s = RiskState::default();
    s.apply(&bar("SPY", dec!(100), T0));
    let out = s.apply(&Input::Halt {
        reason: "incident".into(),
        by: "oncall".into(),
        at_ns: 7,
    });
    assert!(
        matches!(&out[..], [Output::Halted { halt }] if halt.cause == HaltCause::Manual && halt.since_ns == 7)
    );
    // A second halt changes nothing.
    assert!(
        s.apply(&Input::Halt {
            reason: "x".into(),
            by: "y".into(),
            at_ns: 8
        })
        .is_empty()
    );
    assert_eq!(
        rejected_limits(&intent(&mut s, order("h1", "SPY", Side::Buy, dec!(1)), T0)),
        ["halt"]
    );
    let out = s.apply(&Input::Resume {
        reason: "fixed".into(),
        by: "oncall".into(),
        at_ns: 9,
    });
    assert!(matches!(&out[..], [Output::Resumed { .. }]));
    assert!(
        s.apply(&Input::Resume {
            reason: "x".into(),
            by: "y".into(),
            at_ns: 10
        })
        .is_empty()
    );
    assert!(
        rejected_limits(&intent(&mut s, order("h2", "SPY", Side::Buy, dec!(1)), T0)).is_empty()
    );
    assert_eq!(s.snapshot().rejected_today, 1);
}

#[test]
fn price_deviation_and_restricted_symbols() {
    let mut s = RiskState::default();
    s.apply(&bar("SPY", dec!(100), T0));
    set_limits(
        &mut s,
        Limits {
            max_price_deviation: Some(dec!(0.05)),
            restricted_symbols: BTreeSet::from(["GME".to_owned()]),
            ..Limits::default()
        },
    );
    let mut o = order("p1", "SPY", Side::Buy, dec!(1));
    o.limit_price = Some(dec!(106));
    assert_eq!(
        rejected_limits(&intent(&mut s, o.clone(), T0)),
        ["max_price_deviation"]
    );
    o.limit_price = Some(dec!(104.99));
    o.client_order_id = "p2".into();
    assert!(rejected_limits(&intent(&mut s, o, T0)).is_empty());
    assert_eq!(
        rejected_limits(&intent(&mut s, order("p3", "GME", Side::Buy, dec!(1)), T0)),
        ["restricted_symbols"]
    );
}

#[test]
fn orders_per_minute_count_approved_orders_by_intent_time() {
    let mut s = RiskState::default();
    s.apply(&bar("SPY", dec!(100), T0));
    set_limits(
        &mut s,
        Limits {
            max_orders_per_minute: Some(2),
            ..Limits::default()
        },
    );
    assert!(
        rejected_limits(&intent(&mut s, order("o1", "SPY", Side::Buy, dec!(1)), T0)).is_empty()
    );
    assert!(
        rejected_limits(&intent(
            &mut s,
            order("o2", "SPY", Side::Buy, dec!(1)),
            T0 + 10
        ))
        .is_empty()
    );
    assert_eq!(
        rejected_limits(&intent(
            &mut s,
            order("o3", "SPY", Side::Buy, dec!(1)),
            T0 + 20
        )),
        ["max_orders_per_minute"]
    );
    // Another strategy has its own window.
    let mut other = order("o4", "SPY", Side::Buy, dec!(1));
    other.strategy_id = "s2".into();
    assert!(rejected_limits(&intent(&mut s, other, T0 + 30)).is_empty());
    // A minute after the first, one slot is free again.
    assert!(
        rejected_limits(&intent(
            &mut s,
            order("o5", "SPY", Side::Buy, dec!(1)),
            T0 + MIN
        ))
        .is_empty()
    );
}

#[test]
fn equity_fraction_is_sized_at_the_reference_price() {
    let mut s = RiskState::default();
    s.apply(&bar("SPY", dec!(400), T0));
    let o = Order {
        size: Size::EquityFraction(dec!(0.5)),
        ..order("e1", "SPY", Side::Buy, dec!(0))
    };
    let c = s.check(&o, None, T0);
    assert_eq!(c.quantity, Some(dec!(125)));
    set_limits(
        &mut s,
        Limits {
            max_order_notional: Some(dec!(40000)),
            ..Limits::default()
        },
    );
    assert_eq!(
        rejected_limits(&intent(&mut s, o.clone(), T0)),
        ["max_order_notional"]
    );
    // Without a price for the symbol, a limit that needs one refuses.
    let unknown = Order {
        symbol: "QQQ".into(),
        client_order_id: "e2".into(),
        ..o
    };
    assert_eq!(
        rejected_limits(&intent(&mut s, unknown, T0)),
        ["reference_price"]
    );
}

#[test]
fn drawdown_breaker_trips_from_fills_and_bars_and_resume_rebases_it() {
    let mut s = RiskState::new(Settings {
        initial_equity: dec!(10000),
        ..Settings::default()
    });
    set_limits(
        &mut s,
        Limits {
            max_drawdown: Some(dec!(0.1)),
            ..Limits::default()
        },
    );
    s.apply(&bar("SPY", dec!(100), T0));
    s.apply(&fill("SPY", Side::Buy, dec!(100), dec!(100), T0 + 1));
    // Up 20%: new peak 12000.
    s.apply(&bar("SPY", dec!(120), T0 + 2));
    assert_eq!(s.snapshot().peak_equity, dec!(12000));
    // 11000: 8.3% down -> a warning (past 80% of the limit), no trip.
    let out = s.apply(&bar("SPY", dec!(110), T0 + 3));
    assert!(
        matches!(&out[..], [Output::LimitWarning { limit, .. }] if limit == "max_drawdown"),
        "{out:?}"
    );
    // 10800: exactly 10% down -> trips.
    let out = s.apply(&bar("SPY", dec!(108), T0 + 4));
    assert!(
        matches!(&out[..], [Output::BreakerTripped { halt }] if halt.cause == HaltCause::Breaker(Breaker::Drawdown)),
        "{out:?}"
    );
    assert_eq!(s.tripped(), Some(Breaker::Drawdown));
    assert_eq!(
        rejected_limits(&intent(
            &mut s,
            order("d1", "SPY", Side::Buy, dec!(1)),
            T0 + 5
        )),
        ["halt"]
    );
    let snap = s.snapshot();
    assert_eq!(snap.drawdown, dec!(-0.1));
    s.apply(&Input::Resume {
        reason: "reviewed".into(),
        by: "op".into(),
        at_ns: 1,
    });
    // Resumed: the breaker measures from the equity at the resume.
    assert!(s.apply(&bar("SPY", dec!(100), T0 + 6)).is_empty());
    let out = s.apply(&bar("SPY", dec!(97), T0 + 7));
    assert!(matches!(&out[0], Output::BreakerTripped { .. }), "{out:?}");
}

#[test]
fn daily_loss_breaker_counts_from_the_utc_day_start() {
    let mut s = RiskState::default();
    set_limits(
        &mut s,
        Limits {
            max_daily_loss: Some(dec!(1000)),
            ..Limits::default()
        },
    );
    s.apply(&bar("SPY", dec!(100), T0));
    s.apply(&fill("SPY", Side::Buy, dec!(100), dec!(100), T0 + 1));
    // -900 today: no trip (a warning past 800).
    s.apply(&bar("SPY", dec!(91), T0 + 2));
    assert!(s.halt().is_none());
    // Next day: the day starts at -900, so another -900 does not trip.
    s.apply(&bar("SPY", dec!(82), T0 + DAY));
    assert!(s.halt().is_none());
    assert_eq!(s.snapshot().daily_pnl, dec!(-900));
    // -1000 since the day start trips.
    let out = s.apply(&bar("SPY", dec!(81), T0 + DAY + 1));
    assert!(
        out.iter().any(|o| matches!(o, Output::BreakerTripped { halt } if halt.cause == HaltCause::Breaker(Breaker::DailyLoss))),
        "{out:?}"
    );
}

#[test]
fn order_rate_and_reject_rate_breakers() {
    let mut s = RiskState::new(Settings {
        breakers: BreakerSettings {
            order_rate_per_minute: 3,
            reject_window: 4,
            reject_threshold: 2,
        },
        ..Settings::default()
    });
    s.apply(&bar("SPY", dec!(100), T0));
    for i in 0..3 {
        assert!(
            rejected_limits(&intent(
                &mut s,
                order(&format!("a{i}"), "SPY", Side::Buy, dec!(1)),
                T0 + i
            ))
            .is_empty()
        );
    }
    let out = intent(&mut s, order("a3", "SPY", Side::Buy, dec!(1)), T0 + 4);
    assert_eq!(rejected_limits(&out), ["halt"]);
    assert_eq!(s.tripped(), Some(Breaker::OrderRate));
    s.apply(&Input::Resume {
        reason: "r".into(),
        by: "op".into(),
        at_ns: 0,
    });
    set_limits(
        &mut s,
        Limits {
            max_order_quantity: Some(dec!(5)),
            ..Limits::default()
        },
    );
    // Two limit rejections in the last four intents trip the reject-rate breaker.
    assert_eq!(
        rejected_limits(&intent(
            &mut s,
            order("b0", "SPY", Side::Buy, dec!(9)),
            T0 + 2 * MIN
        )),
        ["max_order_quantity"]
    );
    assert!(s.halt().is_none());
    let out = intent(
        &mut s,
        order("b1", "SPY", Side::Buy, dec!(9)),
        T0 + 2 * MIN + 1,
    );
    assert!(
        matches!(out.last(), Some(Output::BreakerTripped { halt }) if halt.cause == HaltCause::Breaker(Breaker::RejectRate))
    );
}

#[test]
fn configured_limits_apply_only_before_any_set_limits() {
    let mut s = RiskState::default();
    let configured = Limits {
        max_order_quantity: Some(dec!(5)),
        ..Limits::default()
    };
    let out = s.apply(&Input::Configure {
        settings: Settings::default(),
        limits: Some(configured.clone()),
    });
    assert!(matches!(&out[..], [Output::LimitsChanged { record, .. }] if record.version == 0));
    set_limits(&mut s, Limits::default());
    assert_eq!(s.limits().version, 1);
    assert!(
        s.apply(&Input::Configure {
            settings: Settings::default(),
            limits: Some(configured)
        })
        .is_empty()
    );
    assert_eq!(s.limits().limits, Limits::default());
    // A stale SetLimits changes nothing.
    assert!(
        s.apply(&Input::SetLimits {
            limits: Limits::default(),
            expected_version: 0,
            by: "x".into(),
            reason: "x".into(),
            at_ns: 0
        })
        .is_empty()
    );
}

// ---- properties ----

fn dec_in(lo: i64, hi: i64, scale: u32) -> impl Strategy<Value = Decimal> {
    (lo..hi).prop_map(move |m| Decimal::new(m, scale))
}

fn opt(s: impl Strategy<Value = Decimal>) -> impl Strategy<Value = Option<Decimal>> {
    prop::option::of(s)
}

prop_compose! {
    fn limits()(
        max_order_quantity in opt(dec_in(1, 500, 0)),
        max_order_notional in opt(dec_in(100, 100_000, 0)),
        max_position_notional in opt(dec_in(100, 100_000, 0)),
        max_gross_exposure in opt(dec_in(100, 200_000, 0)),
        max_net_exposure in opt(dec_in(100, 200_000, 0)),
        spy_pos_qty in opt(dec_in(1, 500, 0)),
    ) -> Limits {
        let mut symbol_limits = BTreeMap::new();
        if spy_pos_qty.is_some() {
            symbol_limits.insert("SPY".into(), SymbolLimits { max_position_quantity: spy_pos_qty, ..SymbolLimits::default() });
        }
        Limits {
            max_order_quantity, max_order_notional, max_position_notional,
            max_gross_exposure, max_net_exposure, symbol_limits, ..Limits::default()
        }
    }
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn symbol() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("SPY"), Just("QQQ")]
}

prop_compose! {
    fn market_input()(kind in 0..2u8, sym in symbol(), side in side(),
                      qty in dec_in(1, 300, 1), price in dec_in(5_000, 50_000, 2),
                      commission in dec_in(0, 500, 2), dt in 0..(2 * DAY)) -> Input {
        if kind == 0 {
            Input::Bar { symbol: sym.into(), close: price, at_ns: T0 + dt }
        } else {
            Input::Fill { fill_id: format!("f{dt}"), client_order_id: format!("c{}", dt % 50), strategy_id: format!("s{}", dt % 3), symbol: sym.into(), side, quantity: qty, price, commission, at_ns: T0 + dt }
        }
    }
}

prop_compose! {
    fn any_input()(m in market_input(), kind in 0..11u8, sym in symbol(), side in side(),
                   qty in dec_in(1, 300, 0), frac in dec_in(1, 150, 2), l in limits(), id in 0..50u32,
                   dt in 0..(2 * DAY)) -> Input {
        match kind {
            0..=3 => m,
            4..=6 => Input::Intent { order: Order { client_order_id: format!("c{id}"), strategy_id: format!("s{}", id % 3), symbol: sym.into(), side,
                size: if id % 4 == 0 { Size::EquityFraction(frac) } else if id % 7 == 0 { Size::ClosePosition } else { Size::Quantity(qty) }, limit_price: None }, at_ns: T0 + dt },
            7 => Input::SetLimits { limits: l, expected_version: u64::from(id % 3), by: "p".into(), reason: "p".into(), at_ns: 0 },
            8 => Input::Halt { reason: "p".into(), by: "p".into(), at_ns: 0 },
            10 => Input::Cancel { client_order_id: format!("c{id}"), at_ns: T0 + dt },
            _ => Input::Resume { reason: "p".into(), by: "p".into(), at_ns: 0 },
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// An approved order that adds risk never takes a value past a set limit.
    #[test]
    fn an_approved_order_respects_every_limit(
        history in prop::collection::vec(market_input(), 0..20),
        l in limits(),
        sym in symbol(), side in side(), qty in dec_in(1, 600, 0),
    ) {
        let mut s = RiskState::default();
        for i in &history { s.apply(i); }
        s.apply(&bar("SPY", dec!(101.25), T0 + 3 * DAY));
        s.apply(&bar("QQQ", dec!(388.5), T0 + 3 * DAY));
        let _ = s.apply(&Input::Resume { reason: "p".into(), by: "p".into(), at_ns: 0 });
        set_limits(&mut s, l.clone());
        let o = order("x", sym, side, qty);
        let c = s.check(&o, None, T0 + 3 * DAY);
        let r = c.reference_price.unwrap();
        let pos = s.position(sym);
        let new_pos = pos + side.sign() * qty;
        // exact notional arithmetic
        if let Some(v) = c.violations.iter().find(|v| v.limit == "max_order_notional") {
            prop_assert_eq!(v.observed, Some(qty * r));
        }
        if c.approved() && !c.reducing {
            if let Some(m) = l.max_order_quantity { prop_assert!(qty <= m); }
            if let Some(m) = l.max_order_notional { prop_assert!(qty * r <= m); }
            if let Some(m) = l.max_position_notional { prop_assert!((new_pos * r).abs() <= m); }
            if let Some(m) = l.symbol_limits.get(sym).and_then(|x| x.max_position_quantity) { prop_assert!(new_pos.abs() <= m); }
            let other = if sym == "SPY" { "QQQ" } else { "SPY" };
            let on = s.position(other) * s.last_close(other).unwrap();
            let n = new_pos * r;
            if let Some(m) = l.max_gross_exposure { prop_assert!(n.abs() + on.abs() <= m); }
            if let Some(m) = l.max_net_exposure { prop_assert!((n + on).abs() <= m); }
        }
        if c.reducing { prop_assert!(new_pos.abs() <= pos.abs()); }
    }

    /// While halted, every intent is rejected, naming only the halt, nothing
    /// is approved, and every cancellation passes.
    #[test]
    fn halted_rejects_every_order(inputs in prop::collection::vec(any_input(), 0..40)) {
        let mut s = RiskState::default();
        s.apply(&Input::Halt { reason: "p".into(), by: "p".into(), at_ns: 0 });
        for i in inputs.iter().filter(|i| !matches!(i, Input::Resume { .. })) {
            let out = s.apply(i);
            if let Input::Intent { .. } = i {
                match &out[0] {
                    Output::Rejected { violations, .. } => {
                        prop_assert_eq!(violations.len(), 1);
                        prop_assert_eq!(&violations[0].limit, "halt");
                    }
                    o => prop_assert!(false, "not rejected: {:?}", o),
                }
            }
            let approved = out.iter().any(|o| matches!(o, Output::Approved { .. }));
            prop_assert!(!approved);
            if let Input::Cancel { client_order_id, .. } = i {
                prop_assert_eq!(&out, &vec![Output::CancelPassed { client_order_id: client_order_id.clone() }]);
            }
        }
    }

    /// The fold is deterministic: a replay of the same inputs gives the same
    /// outputs and the same state; each intent gets exactly one decision.
    #[test]
    fn replay_rebuilds_the_same_state(inputs in prop::collection::vec(any_input(), 0..60)) {
        let mut a = RiskState::default();
        let outs: Vec<Vec<Output>> = inputs.iter().map(|i| a.apply(i)).collect();
        let mut b = RiskState::default();
        for (i, o) in inputs.iter().zip(&outs) {
            prop_assert_eq!(&b.apply(i), o);
            if let Input::Intent { .. } = i {
                let decisions = o.iter().filter(|x| matches!(x, Output::Approved { .. } | Output::Rejected { .. })).count();
                prop_assert_eq!(decisions, 1);
            }
        }
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.snapshot(), b.snapshot());
    }

    /// Equity is exact: initial + cash flows + positions at the marks; a
    /// round trip at one price with no commission leaves it unchanged.
    #[test]
    fn equity_is_exact(fills in prop::collection::vec((side(), dec_in(1, 10_000, 3), dec_in(1, 1_000_000, 4)), 1..20)) {
        let mut s = RiskState::default();
        let mut t = T0;
        for (side, q, p) in &fills {
            t += 1;
            s.apply(&fill("SPY", *side, *q, *p, t));
            s.apply(&fill("SPY", if *side == Side::Buy { Side::Sell } else { Side::Buy }, *q, *p, t));
        }
        prop_assert_eq!(s.equity(), Ok(dec!(100000)));
        prop_assert_eq!(s.position("SPY"), Decimal::ZERO);
    }
}

/// A fill of `cid` at 100 (settling its pending quantity).
fn filled(cid: &str, symbol: &str, side: Side, qty: Decimal, at_ns: i64) -> Input {
    let Input::Fill {
        fill_id,
        strategy_id,
        commission,
        price,
        ..
    } = fill(symbol, side, qty, dec!(100), at_ns)
    else {
        unreachable!("fill builds a fill")
    };
    Input::Fill {
        fill_id,
        client_order_id: cid.into(),
        strategy_id,
        symbol: symbol.into(),
        side,
        quantity: qty,
        price,
        commission,
        at_ns,
    }
}

/// Leverage limits see the whole book: exposure of every strategy over the
/// account's equity, as a portfolio's limits do.
#[test]
fn leverage_and_single_symbol_share_of_equity_are_limited() {
    let mut s = RiskState::new(Settings {
        initial_equity: dec!(100000),
        ..Settings::default()
    });
    s.apply(&bar("SPY", dec!(100), T0));
    s.apply(&bar("QQQ", dec!(100), T0));
    set_limits(
        &mut s,
        Limits {
            max_gross_leverage: Some(dec!(1.5)),
            max_net_leverage: Some(dec!(1)),
            max_symbol_exposure: Some(dec!(0.6)),
            ..Limits::default()
        },
    );
    // 600 SPY = 60% of equity: at the symbol limit, passes.
    assert!(
        rejected_limits(&intent(&mut s, order("a", "SPY", Side::Buy, dec!(600)), T0)).is_empty()
    );
    s.apply(&filled("a", "SPY", Side::Buy, dec!(600), T0 + 1));
    // One more SPY share breaks the symbol share.
    assert_eq!(
        rejected_limits(&intent(
            &mut s,
            order("b", "SPY", Side::Buy, dec!(1)),
            T0 + 2
        )),
        ["max_symbol_exposure"]
    );
    // 500 QQQ: net 110% > 100%, gross 110% <= 150%.
    assert_eq!(
        rejected_limits(&intent(
            &mut s,
            order("c", "QQQ", Side::Buy, dec!(500)),
            T0 + 3
        )),
        ["max_net_leverage"]
    );
    // Short 600 QQQ: net 0, gross 120%: passes; then 400 more short: gross 160%.
    assert!(
        rejected_limits(&intent(
            &mut s,
            order("d", "QQQ", Side::Sell, dec!(600)),
            T0 + 4
        ))
        .is_empty()
    );
    s.apply(&filled("d", "QQQ", Side::Sell, dec!(600), T0 + 5));
    let out = intent(&mut s, order("e", "QQQ", Side::Sell, dec!(400)), T0 + 6);
    assert!(
        rejected_limits(&out).contains(&"max_gross_leverage".to_owned()),
        "{out:?}"
    );
    // Reducing always passes.
    assert!(
        rejected_limits(&intent(
            &mut s,
            order("f", "SPY", Side::Sell, dec!(600)),
            T0 + 7
        ))
        .is_empty()
    );
    // Invalid values are named.
    let bad = Limits {
        max_gross_leverage: Some(dec!(0)),
        ..Limits::default()
    };
    assert_eq!(bad.validate().unwrap_err().field, "max_gross_leverage");
}

// ---- decimal overflow: fail closed, never panic ----

/// `m x 10^e` for an integer mantissa.
fn e(m: i64, exp: u32) -> Decimal {
    Decimal::from_i128_with_scale(i128::from(m) * 10_i128.pow(exp), 0)
}

fn resume(s: &mut RiskState) -> Vec<Output> {
    s.apply(&Input::Resume {
        reason: "fixed".into(),
        by: "op".into(),
        at_ns: 1,
    })
}

fn tripped_accounting(out: &[Output]) -> Option<String> {
    out.iter().find_map(|o| match o {
        Output::BreakerTripped { halt }
            if halt.cause == HaltCause::Breaker(Breaker::Accounting) =>
        {
            Some(halt.reason.clone())
        }
        _ => None,
    })
}

#[test]
fn an_intent_whose_notional_overflows_is_rejected_naming_arithmetic_overflow() {
    let mut s = RiskState::default();
    s.apply(&bar("SPY", e(1, 10), T0));
    // With a notional limit, and without any limit: the notional is always
    // computed for an order that adds risk, and its overflow always rejects.
    for limits in [
        Limits {
            max_order_notional: Some(dec!(1000000)),
            ..Limits::default()
        },
        Limits::default(),
    ] {
        set_limits(&mut s, limits);
        let o = order("big", "SPY", Side::Buy, e(1, 20));
        let c = s.check(&o, None, T0 + 1);
        assert!(!c.approved());
        assert_eq!(c.violations.len(), 1, "{:?}", c.violations);
        assert_eq!(c.violations[0].limit, ARITHMETIC_OVERFLOW);
        assert_eq!(
            c.violations[0].message,
            format!(
                "order notional {} x {} exceeds the decimal range",
                e(1, 20),
                e(1, 10)
            )
        );
        let out = intent(&mut s, o, T0 + 1);
        assert_eq!(rejected_limits(&out), vec![ARITHMETIC_OVERFLOW.to_owned()]);
    }
    // A position after the order out of range is refused the same way, as
    // is an equity fraction sized at an absurdly small price.
    s.apply(&fill(
        "QQQ",
        Side::Buy,
        e(7, 28),
        dec!(0.0000000001),
        T0 + 2,
    ));
    let c = s.check(&order("more", "QQQ", Side::Buy, e(7, 28)), None, T0 + 3);
    assert_eq!(c.violations[0].limit, ARITHMETIC_OVERFLOW);
    assert!(
        c.violations[0].message.starts_with("position"),
        "{:?}",
        c.violations
    );
    let mut frac = order("frac", "SPY", Side::Buy, Decimal::ONE);
    frac.size = Size::EquityFraction(dec!(1));
    let c = s.check(&frac, Some(Decimal::new(1, 28)), T0 + 3);
    assert_eq!(c.violations[0].limit, ARITHMETIC_OVERFLOW);
    assert!(
        c.violations[0]
            .message
            .starts_with("equity-fraction quantity")
    );
    // Reasonable orders still pass.
    assert!(
        s.check(&order("ok", "SPY", Side::Buy, dec!(1)), None, T0 + 3)
            .approved()
    );
}

#[test]
fn a_fill_whose_cash_flow_overflows_halts_until_an_operator_resumes() {
    let mut s = RiskState::default();
    s.apply(&bar("SPY", dec!(100), T0));
    let out = s.apply(&fill("SPY", Side::Buy, e(1, 15), e(1, 15), T0 + 1));
    let reason = tripped_accounting(&out).expect("the accounting breaker trips");
    assert!(reason.contains(&format!("f{}SPY", T0 + 1)), "{reason}");
    assert!(reason.contains("fill cash flow"), "{reason}");
    assert!(reason.contains("exceeds the decimal range"), "{reason}");
    assert_eq!(s.tripped(), Some(Breaker::Accounting));
    // The fill could not be represented: the book is as it was.
    assert_eq!(s.position("SPY"), Decimal::ZERO);
    assert_eq!(s.equity(), Ok(dec!(100000)));
    // Every later intent is rejected by the halt, naming the breaker.
    let out = intent(&mut s, order("a", "SPY", Side::Buy, dec!(1)), T0 + 2);
    let Output::Rejected { violations, .. } = &out[0] else {
        panic!("rejected: {out:?}")
    };
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].limit, "halt");
    assert!(
        violations[0]
            .message
            .contains("the accounting breaker tripped"),
        "{}",
        violations[0].message
    );
    let _ = s.snapshot();
    // Resume lifts it; trading goes on.
    let out = resume(&mut s);
    assert!(
        matches!(&out[..], [Output::Resumed { lifted, .. }] if lifted.cause == HaltCause::Breaker(Breaker::Accounting))
    );
    assert!(s.halt().is_none());
    let out = intent(&mut s, order("b", "SPY", Side::Buy, dec!(1)), T0 + 3);
    assert!(matches!(out[0], Output::Approved { .. }), "{out:?}");
}

#[test]
fn a_bar_that_puts_the_book_out_of_range_halts_and_resume_does_not_panic() {
    let mut s = RiskState::default();
    s.apply(&fill("SPY", Side::Buy, e(1, 14), dec!(0.0001), T0));
    assert_eq!(s.tripped(), None);
    let out = s.apply(&bar("SPY", e(1, 16), T0 + 1));
    let reason = tripped_accounting(&out).expect("the accounting breaker trips");
    assert!(reason.contains("position notional"), "{reason}");
    assert!(s.equity().is_err());
    // The snapshot saturates its display values rather than panicking.
    let snap = s.snapshot();
    assert_eq!(snap.gross_exposure, Decimal::MAX);
    assert_eq!(snap.exposures[0].notional, Decimal::MAX);
    assert!(snap.equity > e(79, 27), "{}", snap.equity);
    // Resume lifts the halt (the bases stay, the book being out of range);
    // an order adding risk is still refused while the book cannot be
    // represented, whatever the limits.
    resume(&mut s);
    assert!(s.halt().is_none());
    let out = intent(&mut s, order("a", "QQQ", Side::Buy, dec!(1)), T0 + 2);
    assert_eq!(rejected_limits(&out), vec![ARITHMETIC_OVERFLOW.to_owned()]);
    // A reducing order passes: the position can be cut.
    let out = intent(&mut s, order("cut", "SPY", Side::Sell, e(5, 13)), T0 + 2);
    assert!(matches!(out[0], Output::Approved { .. }), "{out:?}");
    // The next bar in range trips nothing and risk is back.
    let out = s.apply(&bar("SPY", dec!(0.0001), T0 + 3));
    assert_eq!(tripped_accounting(&out), None);
    assert_eq!(s.equity(), Ok(dec!(100000)));
    let out = intent(&mut s, order("b", "QQQ", Side::Buy, dec!(1)), T0 + 4);
    assert!(!matches!(out[0], Output::Rejected { .. }), "{out:?}");
}

/// A decimal near the top of the range (mantissa near 2^96, any scale), or
/// an ordinary one.
fn wild() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        2 => dec_in(1, 1_000_000, 2),
        1 => (any::<u32>(), any::<u32>(), (u32::MAX - 0xFFFF)..=u32::MAX, 0..=28u32)
            .prop_map(|(lo, mid, hi, scale)| Decimal::from_parts(lo, mid, hi, false, scale)),
        1 => (any::<u64>(), 0..=28u32)
            .prop_map(|(m, scale)| Decimal::from_i128_with_scale(i128::from(m) << 32, scale)),
    ]
}

prop_compose! {
    fn wild_input()(kind in 0..9u8, sym in symbol(), side in side(), q in wild(), p in wild(),
                    c in wild(), neg in any::<bool>(), id in 0..20u32, dt in 0..(3 * DAY)) -> Input {
        let at_ns = T0 + dt;
        match kind {
            0 | 1 => Input::Bar { symbol: sym.into(), close: p, at_ns },
            2 | 3 => Input::Fill { fill_id: format!("f{dt}"), client_order_id: format!("c{id}"),
                strategy_id: format!("s{}", id % 3), symbol: sym.into(), side, quantity: q, price: p,
                commission: if neg { -c } else { c }, at_ns },
            4 | 5 => Input::Intent { order: Order { client_order_id: format!("c{id}"),
                strategy_id: format!("s{}", id % 3), symbol: sym.into(), side,
                size: match id % 4 { 0 => Size::EquityFraction(c), 1 => Size::ClosePosition, _ => Size::Quantity(q) },
                limit_price: (id % 5 == 0).then_some(p) }, at_ns },
            6 => Input::SetLimits { limits: Limits {
                    max_order_notional: Some(c), max_gross_exposure: Some(p), max_net_leverage: Some(dec!(3)),
                    max_price_deviation: Some(dec!(0.5)), max_drawdown: Some(dec!(0.5)), max_daily_loss: Some(q),
                    ..Limits::default() },
                expected_version: u64::from(id % 3), by: "p".into(), reason: "p".into(), at_ns: 0 },
            7 => Input::Configure { settings: Settings { initial_equity: c, ..Settings::default() }, limits: None },
            _ => Input::Resume { reason: "p".into(), by: "p".into(), at_ns: 0 },
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Huge decimals anywhere: `apply`, `check` and `snapshot` never panic;
    /// no order is approved while the book it would add to cannot be
    /// represented, nor one whose own notional is out of range; and a book
    /// out of range after a market input is always halted.
    #[test]
    fn huge_decimals_never_panic_nor_approve_through_an_overflow(
        inputs in prop::collection::vec(wild_input(), 1..40),
    ) {
        let mut s = RiskState::default();
        // Set only by a Resume: the book may then be out of range, unhalted,
        // until the next input that evaluates it.
        let mut resumed = false;
        for input in &inputs {
            if let Input::Intent { order, at_ns } = input {
                // Move the clock first, so the check below is the one the
                // intent gets (no order-rate breaker is configured).
                s.apply(&Input::Cancel { client_order_id: "none".into(), at_ns: *at_ns });
                let before = s.clone();
                let c = s.check(order, None, *at_ns);
                let out = s.apply(input);
                let approved = matches!(out[0], Output::Approved { .. });
                prop_assert_eq!(approved, c.approved(), "{:?} / {:?}", c, out);
                if approved {
                    prop_assert!(before.halt().is_none());
                    if !c.reducing {
                        prop_assert!(before.equity().is_ok(), "approved on a book out of range: {:?}", c);
                        if let (Some(q), Some(r)) = (c.quantity, c.reference_price) {
                            prop_assert!(q.checked_mul(r).is_some(), "approved notional out of range: {:?}", c);
                        }
                    }
                }
            } else {
                s.apply(input);
            }
            match input {
                Input::Resume { .. } => resumed = true,
                Input::Fill { .. } | Input::Bar { .. } | Input::Configure { .. } => resumed = false,
                _ => {}
            }
            if s.equity().is_err() && !resumed {
                prop_assert!(s.halt().is_some(), "book out of range and not halted after {:?}", input);
            }
            let _ = s.snapshot();
        }
    }
}
