//! API tests of the risk service: the service on port 0 against its own
//! database and bus (Postgres + Redis, or SQLite + the in-process bus):
//! intents in, orders and risk events out; redeliveries; Halt / Resume;
//! SetLimits compare-and-set; a breaker tripped by fills and bars; a restart
//! that rebuilds the state from the journal; and the service binary killed
//! with SIGKILL mid-stream (restart.rs).

mod helpers;
mod restart;

use std::collections::HashSet;

use grodt_proto::v1;
use grodt_risk::RiskSettings;
use tonic::Code;

use helpers::{
    DAY, Env, Reader, T0, bar, cancel_intent, d, fill, intent, limits_of, metric, order_coid,
    publish, publish_as, rejected_coid, spec,
};

fn qty_limit(max: &str) -> v1::RiskLimits {
    v1::RiskLimits {
        max_order_quantity: d(max),
        ..v1::RiskLimits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intents_become_orders_or_rejections_once_each() {
    let env = Env::redis().await;
    let mut svc = env.spawn(RiskSettings::default()).await;
    let mut orders = Reader::<v1::OrderEvent>::new(env.bus.clone()).await;
    let mut events = Reader::<v1::RiskEvent>::new(env.bus.clone()).await;
    svc.set_limits(qty_limit("100")).await;
    publish(&*env.bus, &bar("SPY", "100.5", T0)).await;
    svc.snapshot_until("the bar", |s| s.as_of.is_some()).await;
    let a = intent(spec("a-1", "SPY", v1::Side::Buy, "10"), T0);
    let a_id = publish(&*env.bus, &a).await;
    let b = intent(spec("b-1", "SPY", v1::Side::Buy, "500"), T0);
    publish(&*env.bus, &b).await;
    // An invalid order is rejected, naming the field.
    let mut bad = spec("c-1", "SPY", v1::Side::Unspecified, "1");
    bad.strategy_id = "s9".into();
    publish(&*env.bus, &intent(bad, T0)).await;
    orders.until("order a-1", 10, |s| s.len() == 1).await;
    let (order_id, o) = &orders.seen[0];
    assert_eq!(order_coid(o), "a-1");
    assert_eq!(o.intent_event_id, a_id.to_string());
    assert_eq!(o.reference_price.as_ref().unwrap().value, "100.5");
    assert_eq!(order_id.get_version_num(), 7);
    events
        .until("two rejections", 10, |s| {
            s.iter().filter(|(_, e)| rejected_coid(e).is_some()).count() == 2
        })
        .await;
    let rejections: Vec<&v1::RiskEvent> = events
        .seen
        .iter()
        .map(|(_, e)| e)
        .filter(|e| rejected_coid(e).is_some())
        .collect();
    let b_rej = rejections
        .iter()
        .find(|e| rejected_coid(e) == Some("b-1"))
        .unwrap();
    assert_eq!(limits_of(b_rej), ["max_order_quantity"]);
    assert_eq!(b_rej.order.as_ref().unwrap().strategy_id, "s1");
    assert_eq!(
        b_rej.violations[0].observed_value.as_ref().unwrap().value,
        "500"
    );
    let c_rej = rejections
        .iter()
        .find(|e| rejected_coid(e) == Some("c-1"))
        .unwrap();
    assert_eq!(limits_of(c_rej), ["order"]);
    assert!(
        c_rej.violations[0].message.starts_with("order.side"),
        "{c_rej:?}"
    );
    assert_eq!(c_rej.order.as_ref().unwrap().strategy_id, "s9");

    // Redeliveries: the same envelope again, and the same client order id
    // under a new event id with a different size. Neither decides again.
    publish_as(&*env.bus, &a, a_id).await;
    publish(
        &*env.bus,
        &intent(spec("a-1", "SPY", v1::Side::Buy, "5000"), T0),
    )
    .await;
    publish(
        &*env.bus,
        &intent(spec("d-1", "SPY", v1::Side::Sell, "1"), T0),
    )
    .await;
    orders
        .until("order d-1", 10, |s| {
            s.iter().any(|(_, o)| order_coid(o) == "d-1")
        })
        .await;
    let text = svc.metrics().await;
    assert_eq!(
        metric(
            &text,
            "grodt_risk_inputs_total{outcome=\"duplicate\",stream=\"grodt.order-intents.v1\"}"
        ),
        Some(2.0),
        "{text}"
    );
    orders.drain().await;
    let a_events: Vec<_> = orders
        .seen
        .iter()
        .filter(|(_, o)| order_coid(o) == "a-1")
        .collect();
    let distinct: HashSet<_> = a_events.iter().map(|(id, _)| *id).collect();
    assert_eq!(distinct.len(), 1, "one decision for a-1: {a_events:?}");
    assert!(
        a_events.iter().all(|(_, o)| o == &orders.seen[0].1),
        "republished unchanged"
    );
    events.drain().await;
    assert!(
        !events
            .seen
            .iter()
            .any(|(_, e)| rejected_coid(e) == Some("a-1"))
    );
    assert_eq!(
        metric(
            &text,
            "grodt_risk_order_checks_total{decision=\"accepted\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &text,
            "grodt_risk_order_checks_total{decision=\"rejected\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &text,
            "grodt_risk_violations_total{limit=\"max_order_quantity\"}"
        ),
        Some(1.0)
    );
    let (sum, count) = (
        metric(&text, "grodt_risk_input_handling_duration_seconds_sum").unwrap(),
        metric(&text, "grodt_risk_input_handling_duration_seconds_count").unwrap(),
    );
    println!(
        "Postgres + Redis: {count} inputs, mean handling {:.3} ms",
        sum / count * 1e3
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_stops_every_order_and_resume_lets_them_through() {
    let env = Env::redis().await;
    let mut svc = env.spawn(RiskSettings::default()).await;
    let mut orders = Reader::<v1::OrderEvent>::new(env.bus.clone()).await;
    let mut events = Reader::<v1::RiskEvent>::new(env.bus.clone()).await;
    publish(&*env.bus, &bar("SPY", "100", T0)).await;
    let halted = svc
        .client
        .halt(v1::HaltRequest {
            reason: "incident 42".into(),
            by: "oncall".into(),
            cancel_open_orders: false,
        })
        .await
        .expect("Halt")
        .into_inner()
        .state
        .unwrap();
    assert!(halted.halted);
    assert_eq!(halted.cause, v1::HaltCause::Manual as i32);
    assert_eq!(
        (halted.reason.as_str(), halted.by.as_str()),
        ("incident 42", "oncall")
    );
    let text = svc.metrics().await;
    assert_eq!(metric(&text, "grodt_risk_halted "), Some(1.0), "{text}");
    for i in 0..5 {
        publish(
            &*env.bus,
            &intent(spec(&format!("h-{i}"), "SPY", v1::Side::Buy, "1"), T0),
        )
        .await;
    }
    events
        .until("five halt rejections", 10, |s| {
            s.iter().filter(|(_, e)| rejected_coid(e).is_some()).count() == 5
        })
        .await;
    for (_, e) in events
        .seen
        .iter()
        .filter(|(_, e)| rejected_coid(e).is_some())
    {
        assert_eq!(limits_of(e), ["halt"]);
    }
    assert!(
        events
            .seen
            .iter()
            .any(|(_, e)| e.kind == v1::RiskEventKind::Halted as i32)
    );
    orders.drain().await;
    assert!(
        orders.seen.is_empty(),
        "no order reaches grodt.orders.v1 while halted"
    );
    // A cancellation still passes, once however often it is delivered.
    let cancel = cancel_intent("h-0", "SPY", T0);
    let id = publish(&*env.bus, &cancel).await;
    publish_as(&*env.bus, &cancel, id).await;
    orders
        .until("the cancellation", 10, |s| !s.is_empty())
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while metric(
        &svc.metrics().await,
        "grodt_risk_inputs_total{outcome=\"duplicate\",stream=\"grodt.order-intents.v1\"}",
    ) != Some(1.0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the redelivery is seen"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    orders.drain().await;
    // A redelivery republishes the journaled event: the same event id.
    let ids: HashSet<_> = orders.seen.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 1, "one cancellation event: {:?}", orders.seen);
    let passed = &orders.seen[0].1;
    assert_eq!(passed.order, None);
    assert_eq!(passed.cancel, cancel.cancel);
    assert_eq!(passed.intent_event_id, id.to_string());
    assert_eq!(passed.decision_bar_time, cancel.decision_bar_time);
    orders.seen.clear();
    let resumed = svc
        .client
        .resume(v1::ResumeRequest {
            reason: "resolved".into(),
            by: "oncall".into(),
        })
        .await
        .expect("Resume")
        .into_inner()
        .state
        .unwrap();
    assert!(!resumed.halted);
    publish(
        &*env.bus,
        &intent(spec("r-1", "SPY", v1::Side::Buy, "1"), T0),
    )
    .await;
    orders.until("r-1 approved", 10, |s| s.len() == 1).await;
    assert_eq!(order_coid(&orders.seen[0].1), "r-1");
    events
        .until("RESUMED", 10, |s| {
            s.iter()
                .any(|(_, e)| e.kind == v1::RiskEventKind::Resumed as i32)
        })
        .await;
    let snap = svc
        .client
        .get_snapshot(v1::GetSnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(snap.rejected_today, 5);
    assert!(!snap.halt.unwrap().halted);
    // Bad commands name their field.
    let err = svc
        .client
        .halt(v1::HaltRequest {
            reason: String::new(),
            by: "x".into(),
            cancel_open_orders: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("reason:"), "{}", err.message());
    let err = svc
        .client
        .resume(v1::ResumeRequest {
            reason: "x".into(),
            by: "y".repeat(129),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("by:"), "{}", err.message());
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_limits_is_compare_and_set_and_check_order_changes_nothing() {
    let env = Env::redis().await;
    let mut svc = env.spawn(RiskSettings::default()).await;
    let mut events = Reader::<v1::RiskEvent>::new(env.bus.clone()).await;
    let got = svc
        .client
        .get_limits(v1::GetLimitsRequest {})
        .await
        .unwrap()
        .into_inner()
        .limits
        .unwrap();
    assert_eq!(got.version, 0);
    let set = |l: v1::RiskLimits, v: u64| v1::SetLimitsRequest {
        limits: Some(l),
        expected_version: v,
        updated_by: "alice".into(),
        reason: "tighten".into(),
    };
    let l1 = svc
        .client
        .set_limits(set(qty_limit("10"), 0))
        .await
        .expect("first set")
        .into_inner()
        .limits
        .unwrap();
    assert_eq!((l1.version, l1.updated_by.as_str()), (1, "alice"));
    assert!(l1.updated_at.is_some());
    let stale = svc
        .client
        .set_limits(set(qty_limit("20"), 0))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let bad = svc
        .client
        .set_limits(set(
            v1::RiskLimits {
                max_drawdown: d("1.5"),
                ..Default::default()
            },
            1,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().starts_with("limits.max_drawdown"),
        "{}",
        bad.message()
    );
    // The whole-book leverage limits a portfolio uses travel and validate too.
    let bad = svc
        .client
        .set_limits(set(
            v1::RiskLimits {
                max_gross_leverage: d("0"),
                ..Default::default()
            },
            1,
        ))
        .await
        .unwrap_err();
    assert!(
        bad.message().starts_with("limits.max_gross_leverage"),
        "{}",
        bad.message()
    );
    let mut no_by = set(qty_limit("20"), 1);
    no_by.updated_by.clear();
    let e = svc.client.set_limits(no_by).await.unwrap_err();
    assert!(e.message().starts_with("updated_by"), "{}", e.message());
    let mut sym = v1::RiskLimits {
        max_gross_leverage: d("2"),
        max_net_leverage: d("1"),
        max_symbol_exposure: d("0.5"),
        ..Default::default()
    };
    sym.symbol_limits.insert(
        "SPY".into(),
        v1::SymbolLimits {
            max_position_quantity: d("5"),
            ..Default::default()
        },
    );
    let l2 = svc
        .client
        .set_limits(set(sym, 1))
        .await
        .expect("second set")
        .into_inner()
        .limits
        .unwrap();
    assert_eq!(l2.version, 2);
    assert_eq!(
        (
            l2.max_gross_leverage.map(|x| x.value),
            l2.max_net_leverage.map(|x| x.value),
            l2.max_symbol_exposure.map(|x| x.value)
        ),
        (Some("2".into()), Some("1".into()), Some("0.5".into()))
    );
    events
        .until("two LIMITS_CHANGED", 10, |s| {
            s.iter()
                .filter(|(_, e)| e.kind == v1::RiskEventKind::LimitsChanged as i32)
                .count()
                == 2
        })
        .await;
    // CheckOrder: no price yet -> FAILED_PRECONDITION; with one, the violation names the symbol limit.
    let check = |coid: &str, qty: &str, price: Option<v1::Decimal>| v1::CheckOrderRequest {
        order: Some(spec(coid, "SPY", v1::Side::Buy, qty)),
        reference_price: price,
    };
    let e = svc
        .client
        .check_order(check("k1", "1", None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let r = svc
        .client
        .check_order(check("k1", "6", d("100")))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.approved);
    assert_eq!(
        r.violations[0].limit,
        "symbol_limits[SPY].max_position_quantity"
    );
    let ok = svc
        .client
        .check_order(check("k1", "5", d("100")))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.approved && ok.violations.is_empty());
    assert_eq!(ok.reference_price.unwrap().value, "100");
    let e = svc
        .client
        .check_order(check("k 1", "5", d("100")))
        .await
        .unwrap_err();
    assert!(
        e.message().starts_with("order.client_order_id"),
        "{}",
        e.message()
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_loss_from_fills_and_bars_trips_the_breaker() {
    let env = Env::redis().await;
    let mut svc = env.spawn(RiskSettings::default()).await;
    let mut events = Reader::<v1::RiskEvent>::new(env.bus.clone()).await;
    svc.set_limits(v1::RiskLimits {
        max_daily_loss: d("1000"),
        max_drawdown: d("0.5"),
        ..Default::default()
    })
    .await;
    publish(&*env.bus, &bar("SPY", "100", T0)).await;
    publish(
        &*env.bus,
        &fill("f1", "SPY", v1::Side::Buy, "100", "100", T0 + 1),
    )
    .await;
    // The same fill again (a redelivery under a new event id) counts once.
    publish(
        &*env.bus,
        &fill("f1", "SPY", v1::Side::Buy, "100", "100", T0 + 1),
    )
    .await;
    let s = svc
        .snapshot_until("the fill", |s| !s.exposures.is_empty())
        .await;
    assert_eq!(s.exposures[0].quantity.as_ref().unwrap().value, "100");
    publish(&*env.bus, &bar("SPY", "89", T0 + 2)).await;
    events
        .until("the breaker trip", 10, |s| {
            s.iter()
                .any(|(_, e)| e.kind == v1::RiskEventKind::CircuitBreakerTripped as i32)
        })
        .await;
    let trip = events
        .seen
        .iter()
        .find(|(_, e)| e.kind == v1::RiskEventKind::CircuitBreakerTripped as i32)
        .unwrap();
    assert_eq!(
        trip.1.halt.as_ref().unwrap().cause,
        v1::HaltCause::DailyLoss as i32
    );
    let snap = svc
        .client
        .get_snapshot(v1::GetSnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(snap.equity.unwrap().value, "98900");
    assert_eq!(snap.daily_pnl.unwrap().value, "-1100");
    assert_eq!(snap.halt.unwrap().cause, v1::HaltCause::DailyLoss as i32);
    let text = svc.metrics().await;
    assert_eq!(
        metric(
            &text,
            "grodt_risk_circuit_breaker_tripped{breaker=\"daily_loss\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "grodt_risk_breaker_trips_total{breaker=\"daily_loss\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "grodt_risk_equity{account=\"paper\"}"),
        Some(98900.0)
    );
    publish(
        &*env.bus,
        &intent(spec("t-1", "SPY", v1::Side::Buy, "1"), T0 + 3),
    )
    .await;
    events
        .until("t-1 rejected", 10, |s| {
            s.iter().any(|(_, e)| rejected_coid(e) == Some("t-1"))
        })
        .await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_rebuilds_limits_halt_and_positions_from_the_journal() {
    for env in [Env::redis().await, Env::embedded().await] {
        let mut svc = env.spawn(RiskSettings::default()).await;
        svc.set_limits(qty_limit("1000")).await;
        // 30 days of two symbols, a position in each: history for the VaR.
        for i in 0..30i64 {
            let p = format!("{}", 100 + (i * 7) % 11);
            let q = format!("{}", 50 + (i * 5) % 13);
            publish(&*env.bus, &bar("SPY", &p, T0 + i * DAY)).await;
            publish(&*env.bus, &bar("QQQ", &q, T0 + i * DAY)).await;
        }
        publish(
            &*env.bus,
            &fill("f1", "SPY", v1::Side::Buy, "10", "101", T0 + 29 * DAY + 1),
        )
        .await;
        publish(
            &*env.bus,
            &fill("f2", "QQQ", v1::Side::Sell, "20", "55", T0 + 29 * DAY + 2),
        )
        .await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = svc.metrics().await;
            let n = |stream: &str| {
                metric(
                    &text,
                    &format!("grodt_risk_inputs_total{{outcome=\"applied\",stream=\"{stream}\"}}"),
                )
            };
            if n("grodt.bars.v1") == Some(60.0) && n("grodt.fills.v1") == Some(2.0) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "inputs not applied: {text}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let before = svc
            .client
            .get_snapshot(v1::GetSnapshotRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_ne!(before.var_95.as_ref().unwrap().value, "0", "{before:?}");
        svc.client
            .halt(v1::HaltRequest {
                reason: "before restart".into(),
                by: "op".into(),
                cancel_open_orders: false,
            })
            .await
            .unwrap();
        let limits = svc
            .client
            .get_limits(v1::GetLimitsRequest {})
            .await
            .unwrap()
            .into_inner();
        let before = svc
            .client
            .get_snapshot(v1::GetSnapshotRequest {})
            .await
            .unwrap()
            .into_inner();
        svc.stop().await;
        let mut again = env.spawn(RiskSettings::default()).await;
        let after_limits = again
            .client
            .get_limits(v1::GetLimitsRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(after_limits, limits);
        let after = again
            .client
            .get_snapshot(v1::GetSnapshotRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(after, before, "the same state after the restart");
        assert!(after.halt.as_ref().unwrap().halted);
        again.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_limits_warnings_and_the_reject_rate_breaker() {
    let env = Env::embedded().await;
    let settings = RiskSettings {
        breakers: grodt_risk_rules::BreakerSettings {
            order_rate_per_minute: 0,
            reject_window: 3,
            reject_threshold: 2,
        },
        limits: Some(grodt_risk_rules::Limits {
            max_order_quantity: Some(rust_decimal::Decimal::from(10)),
            max_gross_exposure: Some(rust_decimal::Decimal::from(1000)),
            ..Default::default()
        }),
        ..RiskSettings::default()
    };
    let mut svc = env.spawn(settings).await;
    let mut events = Reader::<v1::RiskEvent>::new(env.bus.clone()).await;
    let limits = svc
        .client
        .get_limits(v1::GetLimitsRequest {})
        .await
        .unwrap()
        .into_inner()
        .limits
        .unwrap();
    assert_eq!((limits.version, limits.updated_by.as_str()), (0, "config"));
    assert_eq!(limits.max_order_quantity.unwrap().value, "10");
    publish(&*env.bus, &bar("SPY", "100", T0)).await;
    // 9 x 100 = 900: past 80% of the gross limit -> LIMIT_WARNING.
    publish(
        &*env.bus,
        &fill("w1", "SPY", v1::Side::Buy, "9", "100", T0 + 1),
    )
    .await;
    events
        .until("the warning", 10, |s| {
            s.iter()
                .any(|(_, e)| e.kind == v1::RiskEventKind::LimitWarning as i32)
        })
        .await;
    publish(
        &*env.bus,
        &intent(spec("x-1", "SPY", v1::Side::Sell, "50"), T0 + 2),
    )
    .await;
    publish(
        &*env.bus,
        &intent(spec("x-2", "QQQ", v1::Side::Buy, "50"), T0 + 3),
    )
    .await;
    events
        .until("the reject-rate trip", 10, |s| {
            s.iter()
                .any(|(_, e)| e.kind == v1::RiskEventKind::CircuitBreakerTripped as i32)
        })
        .await;
    let snap = svc
        .client
        .get_snapshot(v1::GetSnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    let halt = snap.halt.unwrap();
    assert!(halt.halted);
    assert_eq!(
        (halt.cause, halt.by.as_str()),
        (v1::HaltCause::RejectRate as i32, "risk")
    );
    let text = svc.metrics().await;
    assert_eq!(
        metric(
            &text,
            "grodt_risk_circuit_breaker_tripped{breaker=\"reject_rate\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "grodt_risk_halted "), Some(1.0));
    assert_eq!(
        metric(
            &text,
            "grodt_risk_limit_warnings_total{limit=\"max_gross_exposure\"}"
        ),
        Some(1.0)
    );
    let (sum, count) = (
        metric(&text, "grodt_risk_input_handling_duration_seconds_sum").unwrap(),
        metric(&text, "grodt_risk_input_handling_duration_seconds_count").unwrap(),
    );
    println!(
        "embedded (SQLite + in-process bus): {count} inputs, mean handling {:.3} ms",
        sum / count * 1e3
    );
    svc.stop().await;
}
