//! The strategy service end to end over its gRPC API and the bus: Deploy's
//! validation, paper equals backtest with a real broker playing execution,
//! pause/resume/stop, redelivery, risk rejections, a restart rebuilt from
//! the journal, configured instances, and a kill -9 of the binary
//! (restart.rs); a three-strategy portfolio run from its file against the
//! portfolio desk equals its backtest (portfolio.rs).

mod helpers;
mod portfolio;
mod restart;

use std::time::Instant;

use grodt_paper::Input;
use grodt_proto::v1;
use grodt_sim::run_backtest;
use tonic::Code;

use helpers::{
    Env, Exec, INSTANCE, costly, dec, deploy_request, intent_cid, metric, settings, sma_params, spy,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_validates_and_is_idempotent_by_instance_id() {
    let env = Env::embedded().await;
    let (inst, _) = spy();
    let mut s = env.spawn(settings(&inst)).await;
    type Edit = Box<dyn Fn(&mut v1::DeployRequest)>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|r| r.instance_id = String::new()), "instance_id"),
        (Box::new(|r| r.instance_id = "a b".into()), "instance_id"),
        (Box::new(|r| r.instance_id = "x".repeat(65)), "instance_id"),
        (
            Box::new(|r| r.strategy_name = "nope".into()),
            "strategy_name",
        ),
        (
            Box::new(|r| {
                r.params.insert("fats".into(), "3".into());
            }),
            "params.fats",
        ),
        (
            Box::new(|r| {
                r.params.insert("fast".into(), "x".into());
            }),
            "params.fast",
        ),
        (
            Box::new(|r| {
                r.params.insert("fast".into(), "40".into());
            }),
            "params.fast",
        ),
        (Box::new(|r| r.symbols.clear()), "symbols"),
        (Box::new(|r| r.symbols.push("SPY".into())), "symbols[1]"),
        (Box::new(|r| r.symbols = vec!["QQQ".into()]), "symbols[0]"),
        (Box::new(|r| r.timeframe = 0), "timeframe"),
        (Box::new(|r| r.capital = None), "capital"),
        (
            Box::new(|r| r.capital = Some(v1::Decimal { value: "0".into() })),
            "capital",
        ),
        (
            Box::new(|r| {
                r.capital = Some(v1::Decimal {
                    value: "1e5".into(),
                })
            }),
            "capital",
        ),
        (
            Box::new(|r| {
                r.allowed_regimes = vec![v1::Regime::Ranging as i32];
                r.params.insert("on_disallowed".into(), "off".into());
            }),
            "allowed_regimes",
        ),
    ];
    for (edit, field) in cases {
        let mut r = deploy_request("bad-1", false);
        edit(&mut r);
        let e = s.client.deploy(r).await.expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(
            e.message().starts_with(field),
            "{field}: message {:?}",
            e.message()
        );
    }
    let first = s
        .client
        .deploy(deploy_request(INSTANCE, false))
        .await
        .expect("deploys")
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(first.state, v1::InstanceState::Deployed as i32);
    assert_eq!(dec(first.capital.as_ref()), 100_000.into());
    let again = s
        .client
        .deploy(deploy_request(INSTANCE, false))
        .await
        .expect("same settings: the same instance")
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(again, first);
    let mut other = deploy_request(INSTANCE, false);
    other.params.insert("fast".into(), "5".into());
    let e = s.client.deploy(other).await.expect_err("other settings");
    assert_eq!(e.code(), Code::AlreadyExists);
    let e = s
        .client
        .get_state(v1::GetStateRequest {
            instance_id: "missing".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound);
    let e = s
        .client
        .pause(v1::PauseRequest {
            instance_id: INSTANCE.into(),
            reason: String::new(),
        })
        .await
        .expect_err("not running");
    assert_eq!(e.code(), Code::FailedPrecondition);
    // Gating: allowed_regimes becomes the registry's regimes + hold.
    let mut gated = deploy_request("gated-1", false);
    gated.allowed_regimes = vec![v1::Regime::TrendingUp as i32];
    s.client.deploy(gated).await.expect("a gated instance");
    let list = s
        .client
        .list_strategies(v1::ListStrategiesRequest {
            page: Some(v1::PageRequest {
                page_size: 1,
                page_token: String::new(),
            }),
            state: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(list.strategies.iter().any(|i| {
        i.name == "sma_cross"
            && i.parameters
                .iter()
                .any(|p| p.name == "fast" && p.kind == v1::ParameterKind::Integer as i32)
    }));
    assert_eq!(list.instances.len(), 1);
    let token = list.page.unwrap().next_page_token;
    assert!(!token.is_empty());
    let next = s
        .client
        .list_strategies(v1::ListStrategiesRequest {
            page: Some(v1::PageRequest {
                page_size: 1,
                page_token: token,
            }),
            state: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = list
        .instances
        .iter()
        .chain(&next.instances)
        .map(|i| i.instance_id.as_str())
        .collect();
    assert_eq!(ids, ["gated-1", INSTANCE]);
    assert!(next.page.unwrap().next_page_token.is_empty());
    let text = s.metrics().await;
    assert_eq!(
        metric(&text, "grodt_strategy_instances{state=\"deployed\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric(&text, "grodt_strategy_instances{state=\"failed\"}"),
        Some(0.0)
    );
    assert!(text.contains("grodt_strategy_order_intents_total{side=\"buy\",strategy=\"sma-1\"} 0"));
    s.stop().await;
}

/// Drives `bars` through the service with a real broker and checks every
/// fill and the final equity against `run_backtest` of the same strategy.
async fn parity(env: &Env, bars_n: usize) {
    let (inst, bars) = spy();
    let bars = &bars[..bars_n];
    let config = costly();
    let mut s = env.spawn(settings(&inst)).await;
    s.client
        .deploy(deploy_request(INSTANCE, true))
        .await
        .expect("deploys");
    let mut exec = Exec::new(env, &config, &inst).await;
    let started = Instant::now();
    for b in bars {
        exec.bar(b).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let mut strategy =
        grodt_strategies::registry::build("sma_cross", &sma_params(), &inst).expect("strategy");
    let want = run_backtest(
        &config,
        std::slice::from_ref(&inst),
        &[bars.to_vec()],
        &mut *strategy,
    )
    .expect("backtest");
    let got = exec.broker.fills();
    assert_eq!(got.len(), want.fills.len(), "fill count");
    for (k, (g, w)) in got.iter().zip(&want.fills).enumerate() {
        let same = g.ts == w.ts
            && g.side == w.side
            && g.qty == w.qty
            && g.price == w.price
            && g.commission == w.commission
            && g.rebate == w.rebate
            && g.slippage == w.slippage;
        assert!(same, "fill {k} differs\npaper    {g:?}\nbacktest {w:?}");
    }
    let equity = exec.broker.snapshot().expect("snapshot").equity;
    assert_eq!(equity, want.last.equity, "final equity");
    let st = s.state(INSTANCE).await;
    assert_eq!(st.state, v1::InstanceState::Running as i32, "{}", st.error);
    assert_eq!(st.bars_processed, bars.len() as u64);
    assert_eq!(st.intents_emitted as usize, exec.broker.orders().len());
    // Its own view: position as the venue's, PnL adding up to the equity.
    let snap = exec.broker.snapshot().unwrap();
    let pos = dec(st.positions[0].quantity.as_ref());
    let venue = snap
        .positions
        .iter()
        .find(|p| p.symbol == "SPY")
        .map_or(rust_decimal::Decimal::ZERO, |p| p.quantity);
    assert_eq!(pos, venue, "position");
    let pnl = dec(st.realized_pnl.as_ref()) + dec(st.unrealized_pnl.as_ref());
    // Average-cost PnL (28-digit division) against the venue's exact equity.
    let diff = (config.starting_cash + pnl - equity).abs();
    assert!(
        diff < rust_decimal::Decimal::new(1, 2),
        "pnl vs equity: {diff}"
    );
    let text = s.metrics().await;
    assert_eq!(
        metric(&text, "grodt_strategy_bars_processed{strategy=\"sma-1\"}"),
        Some(bars.len() as f64)
    );
    println!(
        "paper = backtest over {} SPY bars: {} fills, final equity {equity}; {} reports, {secs:.1} s \
         (waiting for journal entries {:?}, for intents {:?})",
        bars.len(),
        got.len(),
        exec.reports,
        exec.waited.0,
        exec.waited.1
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paper_through_the_service_equals_the_backtest_over_redis_and_postgres() {
    parity(&Env::redis().await, 3000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paper_through_the_service_equals_the_backtest_embedded() {
    parity(&Env::embedded().await, 1500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_books_without_bars_resume_continues_stop_flattens() {
    let env = Env::embedded().await;
    let (inst, bars) = spy();
    let mut s = env.spawn(settings(&inst)).await;
    s.client
        .deploy(deploy_request(INSTANCE, false))
        .await
        .unwrap();
    let mut exec = Exec::new(&env, &costly(), &inst).await;
    // Deployed, not started: sees nothing.
    for b in &bars[..20] {
        exec.bar(b).await;
    }
    assert_eq!(s.state(INSTANCE).await.bars_processed, 0);
    s.client
        .start(v1::StartRequest {
            instance_id: INSTANCE.into(),
        })
        .await
        .unwrap();
    // Run until it holds a position.
    let mut k = 20;
    while dec(s.state(INSTANCE).await.positions[0].quantity.as_ref()).is_zero() {
        exec.bar(&bars[k]).await;
        k += 1;
        assert!(k < 400, "no position taken");
    }
    let before = s.state(INSTANCE).await;
    let intents_before = exec.intents.seen.len();
    let paused = s
        .client
        .pause(v1::PauseRequest {
            instance_id: INSTANCE.into(),
            reason: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(paused.state, v1::InstanceState::Paused as i32);
    for b in &bars[k..k + 50] {
        exec.bar(b).await;
    }
    let during = s.state(INSTANCE).await;
    assert_eq!(
        during.bars_processed, before.bars_processed,
        "no bars shown while paused"
    );
    assert_eq!(
        exec.intents.seen.len(),
        intents_before,
        "no intents while paused"
    );
    assert_eq!(during.positions, before.positions);
    s.client
        .start(v1::StartRequest {
            instance_id: INSTANCE.into(),
        })
        .await
        .unwrap();
    for b in &bars[k + 50..k + 60] {
        exec.bar(b).await;
    }
    assert_eq!(
        s.state(INSTANCE).await.bars_processed,
        before.bars_processed + 10
    );
    // Stop with flatten: one close order (if it still holds a position), and
    // a cancellation of every order still working at the venue.
    let held = dec(s.state(INSTANCE).await.positions[0].quantity.as_ref());
    let mut working: Vec<String> = exec
        .broker
        .orders()
        .iter()
        .filter(|o| !o.status.is_terminal())
        .map(|o| o.ticket.client_order_id.clone())
        .collect();
    working.sort();
    let n = exec
        .intents
        .seen
        .iter()
        .filter(|(_, e)| e.order.is_some())
        .count();
    let stopped = s
        .client
        .stop(v1::StopRequest {
            instance_id: INSTANCE.into(),
            cancel_open_orders: true,
            flatten: true,
            reason: "end of test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(stopped.state, v1::InstanceState::Stopped as i32);
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    let want = usize::from(!held.is_zero());
    let orders_seen = |e: &Exec| {
        e.intents
            .seen
            .iter()
            .filter(|(_, e)| e.order.is_some())
            .count()
    };
    let cancels_seen = |e: &Exec| {
        e.intents
            .seen
            .iter()
            .filter_map(|(_, e)| e.cancel.as_ref().map(|c| c.client_order_id.clone()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    };
    while orders_seen(&exec) < n + want || cancels_seen(&exec).len() < working.len() {
        exec.intents.drain().await;
        assert!(
            Instant::now() < deadline,
            "the flatten intent and the cancellations"
        );
    }
    assert_eq!(
        cancels_seen(&exec),
        working,
        "one cancellation per working order"
    );
    assert_eq!(stopped.cancels_emitted, working.len() as u64);
    for cid in &working {
        exec.run(Input::Cancel {
            client_order_id: cid.clone(),
        })
        .await;
    }
    if want == 1 {
        let (_, e) = exec
            .intents
            .seen
            .iter()
            .rev()
            .find(|(_, e)| e.order.is_some())
            .unwrap();
        let o = e.order.as_ref().unwrap();
        assert_eq!(o.size, Some(v1::order_spec::Size::ClosePosition(true)));
        // The venue takes it and fills it at the next bar; the instance books it.
        let t = grodt_strategy::convert::spec_to_ticket(
            o,
            &inst,
            grodt_strategy::convert::ts_from_proto("t", e.decision_bar_time.as_ref()).unwrap(),
        )
        .unwrap();
        exec.run(Input::Submit(t)).await;
    }
    let k = k + 60;
    for b in &bars[k..k + 3] {
        exec.bar(b).await;
    }
    let end = s.state(INSTANCE).await;
    assert!(
        dec(end.positions[0].quantity.as_ref()).is_zero(),
        "flat after the stop"
    );
    assert_eq!(
        end.bars_processed,
        before.bars_processed + 10,
        "no bars after the stop"
    );
    let e = s
        .client
        .start(v1::StartRequest {
            instance_id: INSTANCE.into(),
        })
        .await
        .expect_err("a stopped instance stays stopped");
    assert_eq!(e.code(), Code::FailedPrecondition);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_report_republishes_the_same_intents_and_a_refusal_reaches_the_strategy() {
    let env = Env::redis().await;
    let (inst, bars) = spy();
    let mut s = env.spawn(settings(&inst)).await;
    s.client
        .deploy(deploy_request(INSTANCE, true))
        .await
        .unwrap();
    let mut exec = Exec::new(&env, &costly(), &inst).await;
    // Bars until the strategy asks for an order; hold that report.
    let mut k = 0;
    let (report, tickets, id) = loop {
        let report = exec
            .broker
            .apply(&Input::Bar {
                symbol: "SPY".into(),
                bar: bars[k],
            })
            .unwrap();
        let id = uuid::Uuid::now_v7();
        let t = exec.publish_report(&report, Some(id)).await;
        k += 1;
        if !t.is_empty() {
            break (report, t, id);
        }
    };
    let journaled = env.journaled().await;
    let first: Vec<_> = exec
        .intents
        .seen
        .iter()
        .filter(|(_, e)| intent_cid(e) == tickets[0].client_order_id)
        .map(|(i, _)| *i)
        .collect();
    // The same report again (same event id): the same intent, same event id.
    let again = exec.publish_report(&report, Some(id)).await;
    assert_eq!(again, tickets);
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    let ids = loop {
        exec.intents.drain().await;
        let ids: Vec<_> = exec
            .intents
            .seen
            .iter()
            .filter(|(_, e)| intent_cid(e) == tickets[0].client_order_id)
            .map(|(i, _)| *i)
            .collect();
        if ids.len() >= 2 {
            break ids;
        }
        assert!(Instant::now() < deadline, "the republished intent");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_eq!(env.journaled().await, journaled, "journaled once");
    assert_eq!(ids.len(), 2);
    assert!(
        ids.iter().all(|i| *i == first[0]),
        "republished under its id"
    );
    // Risk refuses it: the strategy is told; nothing fails.
    let spec = grodt_strategy::convert::ticket_to_spec(&tickets[0]);
    helpers::publish(
        &*env.bus,
        &v1::RiskEvent {
            kind: v1::RiskEventKind::OrderRejected as i32,
            message: "max_order_quantity: too big".into(),
            order: Some(spec),
            ..v1::RiskEvent::default()
        },
        None,
    )
    .await;
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while env.journaled().await < journaled + 1 {
        assert!(Instant::now() < deadline, "the refusal is journaled");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for b in &bars[k..k + 40] {
        exec.bar(b).await;
    }
    let st = s.state(INSTANCE).await;
    assert_eq!(st.state, v1::InstanceState::Running as i32, "{}", st.error);
    let text = s.metrics().await;
    assert_eq!(
        metric(&text, "grodt_strategy_rejections_total{strategy=\"sma-1\"}"),
        Some(1.0)
    );
    assert!(
        metric(
            &text,
            "grodt_strategy_inputs_total{outcome=\"duplicate\",stream=\"grodt.execution-reports.v1\"}"
        )
        .is_some_and(|v| v >= 1.0)
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_rebuilds_every_instance_from_the_journal() {
    let env = Env::redis().await;
    let (inst, bars) = spy();
    let config = costly();
    let mut cfg = settings(&inst);
    cfg.instances = vec![grodt_strategy::InstanceConfig {
        instance_id: INSTANCE.into(),
        strategy_name: "sma_cross".into(),
        params: sma_params(),
        symbols: vec!["SPY".into()],
        timeframe: "1d".into(),
        allowed_regimes: Vec::new(),
        capital: 100_000.into(),
        start: true,
    }];
    let mut s = env.spawn(cfg.clone()).await;
    let mut exec = Exec::new(&env, &config, &inst).await;
    for b in &bars[..400] {
        exec.bar(b).await;
    }
    let before = s.state(INSTANCE).await;
    assert_eq!(before.bars_processed, 400);
    s.stop().await;
    // Same configuration again: idempotent; the state is the journal's.
    let mut s = env.spawn(cfg).await;
    let after = s.state(INSTANCE).await;
    assert_eq!(after, before, "rebuilt exactly");
    let text = s.metrics().await;
    let replayed = metric(&text, "grodt_strategy_journal_replayed_entries").unwrap();
    assert!(replayed >= 400.0, "{replayed}");
    // And it goes on as if nothing happened.
    for b in &bars[400..800] {
        exec.bar(b).await;
    }
    let (want, _) = helpers::in_process(&config, &inst, &bars[..800], &sma_params());
    assert_eq!(
        exec.broker.fills(),
        want.fills(),
        "fills as an unbroken run"
    );
    assert_eq!(s.state(INSTANCE).await.bars_processed, 800);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_regime_stream_sets_gated_and_repeats_are_not_journaled() {
    let env = Env::embedded().await;
    let (inst, _) = spy();
    let mut s = env.spawn(settings(&inst)).await;
    let mut r = deploy_request("gated-1", true);
    r.allowed_regimes = vec![v1::Regime::TrendingUp as i32];
    let i = s
        .client
        .deploy(r)
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert!(!i.gated, "unknown regime: not gated by the stream");
    let regime = |r: v1::Regime| v1::RegimeEvent {
        state: Some(v1::RegimeState {
            symbol: "SPY".into(),
            timeframe: v1::Timeframe::Day1 as i32,
            regime: r as i32,
            ..v1::RegimeState::default()
        }),
        previous: 0,
        heartbeat: false,
    };
    let base = env.journaled().await;
    let wait = |n: u64| {
        let env = &env;
        async move {
            let deadline = Instant::now() + std::time::Duration::from_secs(5);
            while env.journaled().await < n {
                assert!(Instant::now() < deadline, "journal at {n}");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    };
    helpers::publish(&*env.bus, &regime(v1::Regime::Ranging), None).await;
    wait(base + 1).await;
    assert!(s.state("gated-1").await.gated);
    // A repeat (or a heartbeat) of the regime in force changes nothing.
    helpers::publish(&*env.bus, &regime(v1::Regime::Ranging), None).await;
    helpers::publish(&*env.bus, &regime(v1::Regime::TrendingUp), None).await;
    wait(base + 2).await;
    assert!(!s.state("gated-1").await.gated);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(env.journaled().await, base + 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_instance_that_conflicts_with_the_deployed_one_stops_the_start() {
    let env = Env::embedded().await;
    let (inst, _) = spy();
    let mut cfg = settings(&inst);
    cfg.instances = vec![grodt_strategy::InstanceConfig {
        instance_id: INSTANCE.into(),
        strategy_name: "sma_cross".into(),
        params: sma_params(),
        symbols: vec!["SPY".into()],
        timeframe: "1d".into(),
        allowed_regimes: Vec::new(),
        capital: 100_000.into(),
        start: false,
    }];
    let mut s = env.spawn(cfg.clone()).await;
    assert_eq!(
        s.state(INSTANCE).await.state,
        v1::InstanceState::Deployed as i32
    );
    s.stop().await;
    cfg.instances[0].params.insert("fast".into(), "5".into());
    let mut config = grodt_strategy::defaults_with_settings();
    let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    config.common.grpc.addr = any;
    config.common.http.addr = any;
    config.service = cfg;
    let e = grodt_strategy::build_with_settings(config, env.infra())
        .await
        .map(|_| ())
        .expect_err("refused");
    assert!(
        e.to_string().contains("strategy.instances[0]") && e.to_string().contains("other settings"),
        "{e}"
    );
}
