//! API tests of the execution service: the service on port 0 against its
//! own database and bus (Postgres + Redis, or SQLite + the in-process bus),
//! fed bars of the SPY sample and orders as risk publishes them, held to a
//! `grodt_paper::broker::Broker` fed the same inputs; the gRPC commands and
//! reads; a restart; and the binary killed with SIGKILL mid-stream.

mod helpers;
mod ordering;
mod restart;

use std::collections::HashSet;
use std::time::Duration;

use grodt_core::Decimal;
use grodt_execution::engine::{FILLS_STREAM, REPORTS_STREAM};
use grodt_proto::v1;
use tonic::Code;

use helpers::{
    Env, Reader, cancel_envelope, d, journaled, ladder, ns, order, order_envelope, publish_bars,
    publish_order, reference, settings, spy_bars, stream, wait_journal,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_and_bars_over_the_bus_make_the_reference_fills_and_account() {
    let env = Env::redis().await;
    let reports = Reader::new(env.bus.clone(), REPORTS_STREAM).await;
    let fills = Reader::new(env.bus.clone(), FILLS_STREAM).await;
    let mut svc = env.spawn(settings()).await;
    let bars = spy_bars()[..250].to_vec();
    let specs = ladder("t", 40, bars[0].close);
    for s in &specs {
        publish_order(&*env.bus, s).await;
    }
    // An unknown symbol: rejected with a report, not left hanging.
    let mut qqq = order("q-1", true, 1, None);
    qqq.symbol = "QQQ".into();
    publish_order(&*env.bus, &qqq).await;
    // The same order under a new event id: a no-op.
    publish_order(&*env.bus, &specs[0]).await;
    // The same envelope twice (a redelivery): its report is published again.
    let envelope = order_envelope(&order("t-extra", true, 1, Some(1_0000)));
    let orders = stream(grodt_execution::engine::ORDERS_STREAM);
    env.bus.publish(&orders, &envelope).await.unwrap();
    wait_journal(env.db.store(), 42, 20).await;
    env.bus.publish(&orders, &envelope).await.unwrap();
    publish_bars(&*env.bus, "SPY", &bars).await;
    wait_journal(env.db.store(), 42 + 250, 30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut all_specs = specs.clone();
    all_specs.push(order("t-extra", true, 1, Some(1_0000)));
    let want = reference(&all_specs, &bars);

    // Reports: one per journaled input, in journal order, one republished.
    let got = reports.drain::<v1::ExecutionReportEvent>().await;
    let ids: HashSet<_> = got.iter().map(|r| r.event_id).collect();
    assert_eq!(ids.len(), 42 + 250, "one report per input");
    assert_eq!(
        got.len(),
        42 + 250 + 1,
        "the redelivered envelope's report again"
    );
    let mut seen = HashSet::new();
    let distinct: Vec<_> = got.iter().filter(|r| seen.insert(r.event_id)).collect();
    assert!(
        distinct
            .windows(2)
            .all(|w| w[0].event.sequence < w[1].event.sequence),
        "sequences increase"
    );
    let bar_reports = distinct.iter().filter(|r| r.event.bar.is_some()).count();
    assert_eq!(
        bar_reports, 250,
        "every bar reported, also when nothing happened"
    );
    let rejected = distinct
        .iter()
        .flat_map(|r| &r.event.updates)
        .find_map(|u| match &u.update {
            Some(v1::execution_update::Update::Order(o))
                if o.spec.as_ref().is_some_and(|s| s.symbol == "QQQ") =>
            {
                Some(o.clone())
            }
            _ => None,
        })
        .expect("a report of the QQQ order");
    assert_eq!(rejected.status, v1::OrderStatus::Rejected as i32);
    assert!(
        rejected.status_reason.contains("unknown symbol"),
        "{rejected:?}"
    );

    // Fills: those of the reference broker, ids derived from the fill seq.
    let got_fills = fills.drain::<v1::FillEvent>().await;
    let want_fills = want.fills();
    assert!(
        want_fills.len() > 20,
        "a real number of fills: {}",
        want_fills.len()
    );
    assert_eq!(got_fills.len(), want_fills.len());
    for (g, w) in got_fills.iter().zip(want_fills) {
        let f = g.event.fill.as_ref().unwrap();
        assert_eq!(
            f.fill_id,
            grodt_execution::convert::fill_id(w.seq, w.ts).to_string()
        );
        assert_eq!(
            g.event_id,
            grodt_execution::convert::fill_event_id(w.seq, w.ts)
        );
        assert_eq!(f.client_order_id, w.client_order_id);
        assert_eq!(d(f.quantity.as_ref()), w.qty.to_decimal());
        assert_eq!(d(f.price.as_ref()), w.price.to_decimal());
        assert_eq!(d(f.commission.as_ref()), w.commission - w.rebate);
        assert_eq!(ns(f.filled_at.as_ref()), w.ts);
        let o = g.event.order.as_ref().expect("the order after the fill");
        assert_eq!(o.spec.as_ref().unwrap().client_order_id, w.client_order_id);
    }

    // The account and positions: the reference's, exactly.
    let snap = want.snapshot().unwrap();
    let account = svc.account().await;
    assert_eq!(d(account.cash.as_ref()), snap.cash);
    assert_eq!(d(account.equity.as_ref()), snap.equity);
    assert_eq!(
        d(account.commissions.as_ref()),
        snap.costs.commission - snap.costs.rebates
    );
    let realized_plus_unrealized =
        d(account.realized_pnl.as_ref()) + d(account.unrealized_pnl.as_ref());
    let costs =
        snap.costs.commission - snap.costs.rebates + snap.costs.borrow + snap.costs.financing;
    assert_eq!(
        realized_plus_unrealized - costs,
        snap.equity - Decimal::from(100_000),
        "pnl adds up to the equity change"
    );
    let positions = svc
        .client
        .list_positions(v1::ListPositionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .positions;
    let want_pos: Vec<_> = snap
        .positions
        .iter()
        .map(|p| (p.symbol.clone(), p.quantity))
        .collect();
    let got_pos: Vec<_> = positions
        .iter()
        .map(|p| (p.symbol.clone(), d(p.quantity.as_ref())))
        .collect();
    assert_eq!(got_pos, want_pos);
    // Per strategy: the buyers' and the sellers' positions net to the account's.
    let mut net = Decimal::ZERO;
    for strategy in ["s-buy", "s-sell"] {
        let p = svc
            .client
            .list_positions(v1::ListPositionsRequest {
                strategy_id: strategy.into(),
                include_flat: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .positions;
        net += p.iter().map(|p| d(p.quantity.as_ref())).sum::<Decimal>();
    }
    assert_eq!(net, want_pos.iter().map(|p| p.1).sum::<Decimal>());

    // Orders: newest first across pages, every order of the reference and QQQ.
    let listed = svc.all_orders(7).await;
    assert_eq!(listed.len(), want.orders().len() + 1);
    let mut want_cids: Vec<String> = want
        .orders()
        .iter()
        .map(|o| o.ticket.client_order_id.clone())
        .collect();
    want_cids.insert(40, "q-1".into());
    want_cids.reverse();
    let got_cids: Vec<String> = listed
        .iter()
        .map(|o| o.spec.as_ref().unwrap().client_order_id.clone())
        .collect();
    assert_eq!(got_cids, want_cids);
    for (o, w) in listed
        .iter()
        .filter(|o| o.spec.as_ref().unwrap().symbol == "SPY")
        .zip(want.orders().iter().rev())
    {
        assert_eq!(
            o.status,
            grodt_execution::convert::status_to_proto(w.status) as i32
        );
        assert_eq!(d(o.filled_quantity.as_ref()), w.filled.to_decimal());
    }
    let open = svc
        .client
        .list_orders(v1::ListOrdersRequest {
            open_only: true,
            symbol: "SPY".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(
        open.len(),
        want.orders()
            .iter()
            .filter(|o| !o.status.is_terminal())
            .count()
    );
    // GetOrder by server id: the order and its fills.
    let filled = listed
        .iter()
        .find(|o| o.status == v1::OrderStatus::Filled as i32)
        .expect("a filled order");
    let got = svc
        .client
        .get_order(v1::GetOrderRequest {
            order: Some(v1::OrderRef {
                id: Some(v1::order_ref::Id::OrderId(filled.order_id.clone())),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let fq: Decimal = got.fills.iter().map(|f| d(f.quantity.as_ref())).sum();
    assert_eq!(fq, d(filled.filled_quantity.as_ref()));
    let m = svc.metrics().await;
    let value = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    };
    let (sum, count) = (
        value("grodt_execution_input_handling_duration_seconds_sum "),
        value("grodt_execution_input_handling_duration_seconds_count "),
    );
    println!(
        "input handling (Postgres + Redis, delivery to durable and published): {count} inputs, \
         mean {:.3} ms",
        sum / count.max(1.0) * 1e3
    );
    for line in [
        "grodt_execution_reconciliation_breaks 0",
        &format!(
            "grodt_execution_fills_total{{side=\"buy\"}} {}",
            want_fills
                .iter()
                .filter(|f| f.side == grodt_core::Side::Buy)
                .count()
        ),
        &format!(
            "grodt_execution_account_equity{{account=\"paper\"}} {}",
            snap.equity.to_string().parse::<f64>().unwrap()
        ),
        "grodt_execution_open_positions{account=\"paper\"} 1",
        "grodt_execution_inputs_total{kind=\"bar\"} 250",
        "grodt_execution_inputs_total{kind=\"rejected_order\"} 1",
        "grodt_execution_inputs_dropped_total{reason=\"duplicate_order\"} 1",
        "grodt_execution_republished_total 1",
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }
    svc.stop().await;
}

/// Bars that wait in the stream while the service is down are read 64 at a
/// time and journaled one batch per commit (group commit): the fills and
/// the account are the reference broker's all the same, one report per bar;
/// a bar published twice under one event id inside a batch is applied once
/// and its report published again, as one bar at a time would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_read_together_share_one_commit_and_make_the_reference_fills() {
    let env = Env::redis().await;
    let reports = Reader::new(env.bus.clone(), REPORTS_STREAM).await;
    let fills = Reader::new(env.bus.clone(), FILLS_STREAM).await;
    let svc = env.spawn(settings()).await;
    let bars = spy_bars()[..250].to_vec();
    let specs = ladder("g", 40, bars[0].close);
    for s in &specs {
        publish_order(&*env.bus, s).await;
    }
    wait_journal(env.db.store(), 40, 20).await;
    svc.stop().await;

    // While it is down: every bar, bar 100 twice (a publisher's retry).
    let bars_stream = stream(grodt_execution::engine::BARS_STREAM);
    let mut repeated = None;
    for (k, b) in bars.iter().enumerate() {
        let event = v1::BarEvent {
            bar: Some(helpers::to_proto("SPY", b)),
            dataset_id: String::new(),
            replay_id: "test".into(),
        };
        let out = grodt_proto::topic::Outgoing::new(&event);
        let envelope = grodt_bus::Envelope::new(
            out.event_type(),
            chrono::DateTime::from_timestamp_nanos(b.ts),
            out.payload(),
        );
        env.bus.publish(&bars_stream, &envelope).await.unwrap();
        if k == 100 {
            env.bus.publish(&bars_stream, &envelope).await.unwrap();
            repeated = Some(envelope.event_id);
        }
    }
    let svc = env.spawn(settings()).await;
    wait_journal(env.db.store(), 40 + 250, 30).await;

    let want = reference(&specs, &bars);
    let want_fills = want.fills();
    // Published after the commits: wait for what is expected (or more),
    // then hold it to the reference.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (mut got, mut got_fills) = (Vec::new(), Vec::new());
    while got.len() < 40 + 250 + 1 || got_fills.len() < want_fills.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "published: {} reports, {} fills",
            got.len(),
            got_fills.len()
        );
        got.extend(reports.drain::<v1::ExecutionReportEvent>().await);
        got_fills.extend(fills.drain::<v1::FillEvent>().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(want_fills.len() > 20, "fills: {}", want_fills.len());
    assert_eq!(got_fills.len(), want_fills.len());
    for (g, w) in got_fills.iter().zip(want_fills) {
        let f = g.event.fill.as_ref().unwrap();
        assert_eq!(
            g.event_id,
            grodt_execution::convert::fill_event_id(w.seq, w.ts)
        );
        assert_eq!(f.client_order_id, w.client_order_id);
        assert_eq!(d(f.quantity.as_ref()), w.qty.to_decimal());
        assert_eq!(d(f.price.as_ref()), w.price.to_decimal());
        assert_eq!(ns(f.filled_at.as_ref()), w.ts);
    }
    got.extend(reports.drain::<v1::ExecutionReportEvent>().await);
    let mut seen = HashSet::new();
    let distinct: Vec<_> = got.iter().filter(|r| seen.insert(r.event_id)).collect();
    assert_eq!(
        distinct.iter().filter(|r| r.event.bar.is_some()).count(),
        250
    );
    assert!(
        distinct
            .windows(2)
            .all(|w| w[0].event.sequence < w[1].event.sequence),
        "published in journal order"
    );
    assert_eq!(got.len(), 40 + 250 + 1, "the repeated bar's report twice");
    let again =
        grodt_execution::convert::report_event_id(&repeated.unwrap().to_string(), bars[100].ts);
    assert_eq!(got.iter().filter(|r| r.event_id == again).count(), 2);
    let snap = want.snapshot().unwrap();
    let mut svc = svc;
    let account = svc.account().await;
    assert_eq!(d(account.cash.as_ref()), snap.cash);
    assert_eq!(d(account.equity.as_ref()), snap.equity);

    let m = svc.metrics().await;
    let value = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(-1.0)
    };
    let (commits, journaled) = (
        value("grodt_execution_journal_batch_inputs_count "),
        value("grodt_execution_journal_batch_inputs_sum "),
    );
    assert_eq!(journaled, 250.0, "every bar journaled once, in\n{m}");
    // 251 entries read 64 at a time; the repeat commits what was staged
    // before it: about six commits, far from one per bar.
    assert!(
        (4.0..=12.0).contains(&commits),
        "{commits} commits for 250 bars"
    );
    for line in [
        "grodt_execution_reconciliation_breaks 0",
        "grodt_execution_inputs_total{kind=\"bar\"} 250",
        "grodt_execution_republished_total 1",
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }
    svc.stop().await;
}

async fn expect_code<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, field: &str) {
    let e = r.expect_err("refused");
    assert_eq!(e.code(), code, "{e:?}");
    assert!(e.message().starts_with(field), "{field}: {}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_cancel_and_a_restart_rebuild_the_same_book() {
    let env = Env::embedded().await;
    let mut svc = env.spawn(settings()).await;
    let bars = spy_bars()[..60].to_vec();
    let low = order("m-1", true, 10, Some(5_0000));
    let first = svc
        .client
        .submit_order(v1::SubmitOrderRequest {
            order: Some(low.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(first.status, v1::OrderStatus::Accepted as i32);
    // Idempotent: the same spec returns the same order, nothing journaled.
    let n = journaled(env.db.store()).await;
    let again = svc
        .client
        .submit_order(v1::SubmitOrderRequest {
            order: Some(low.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(again.order_id, first.order_id);
    assert_eq!(journaled(env.db.store()).await, n);
    let mut other = low.clone();
    other.size = Some(v1::order_spec::Size::Quantity(v1::Decimal {
        value: "11".into(),
    }));
    expect_code(
        svc.client
            .submit_order(v1::SubmitOrderRequest { order: Some(other) })
            .await,
        Code::AlreadyExists,
        "order.client_order_id",
    )
    .await;
    let mut bad = order("m-2", true, 10, Some(5_0000));
    bad.side = 0;
    expect_code(
        svc.client
            .submit_order(v1::SubmitOrderRequest { order: Some(bad) })
            .await,
        Code::InvalidArgument,
        "order.side:",
    )
    .await;
    let mut unknown = order("m-3", true, 10, None);
    unknown.symbol = "QQQ".into();
    expect_code(
        svc.client
            .submit_order(v1::SubmitOrderRequest {
                order: Some(unknown),
            })
            .await,
        Code::InvalidArgument,
        "order.symbol:",
    )
    .await;
    expect_code(
        svc.client
            .submit_order(v1::SubmitOrderRequest { order: None })
            .await,
        Code::InvalidArgument,
        "order:",
    )
    .await;
    // Cancel: unknown, then the order, then again (final state).
    let by_cid = |c: &str| v1::OrderRef {
        id: Some(v1::order_ref::Id::ClientOrderId(c.into())),
    };
    expect_code(
        svc.client
            .cancel_order(v1::CancelOrderRequest {
                order: Some(by_cid("nope")),
                reason: String::new(),
            })
            .await,
        Code::NotFound,
        "order",
    )
    .await;
    let cancelled = svc
        .client
        .cancel_order(v1::CancelOrderRequest {
            order: Some(v1::OrderRef {
                id: Some(v1::order_ref::Id::OrderId(first.order_id.clone())),
            }),
            reason: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(cancelled.status, v1::OrderStatus::Cancelled as i32);
    expect_code(
        svc.client
            .cancel_order(v1::CancelOrderRequest {
                order: Some(by_cid("m-1")),
                reason: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        "order m-1",
    )
    .await;
    // Trade: a market buy, bars, a market sell, more bars.
    svc.client
        .submit_order(v1::SubmitOrderRequest {
            order: Some(order("m-4", true, 30, None)),
        })
        .await
        .unwrap();
    publish_bars(&*env.bus, "SPY", &bars[..30]).await;
    wait_journal(env.db.store(), 3 + 30, 10).await;
    let mut sell = order("m-5", false, 10, None);
    sell.strategy_id = "s-buy".into();
    svc.client
        .submit_order(v1::SubmitOrderRequest { order: Some(sell) })
        .await
        .unwrap();
    publish_bars(&*env.bus, "SPY", &bars[30..]).await;
    wait_journal(env.db.store(), 3 + 30 + 1 + 30, 10).await;
    let filled = svc
        .client
        .get_order(v1::GetOrderRequest {
            order: Some(by_cid("m-5")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(filled.order.unwrap().status, v1::OrderStatus::Filled as i32);
    assert_eq!(filled.fills.len(), 1);
    let positions = svc
        .client
        .list_positions(v1::ListPositionsRequest {
            strategy_id: "s-buy".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .positions;
    assert_eq!(positions.len(), 1);
    assert_eq!(d(positions[0].quantity.as_ref()), Decimal::from(20));
    let orders = svc.all_orders(100).await;
    // Filters: statuses, created range, page tokens bound to their filters.
    let filled_only = svc
        .client
        .list_orders(v1::ListOrdersRequest {
            statuses: vec![v1::OrderStatus::Filled as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .orders;
    let names: Vec<_> = filled_only
        .iter()
        .map(|o| o.spec.as_ref().unwrap().client_order_id.as_str())
        .collect();
    assert_eq!(names, ["m-5", "m-4"]);
    expect_code(
        svc.client
            .list_orders(v1::ListOrdersRequest {
                statuses: vec![0],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "statuses[0]:",
    )
    .await;
    let first_page = svc
        .client
        .list_orders(v1::ListOrdersRequest {
            page: Some(v1::PageRequest {
                page_size: 1,
                page_token: String::new(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let token = first_page.page.unwrap().next_page_token;
    assert!(!token.is_empty());
    expect_code(
        svc.client
            .list_orders(v1::ListOrdersRequest {
                page: Some(v1::PageRequest {
                    page_size: 1,
                    page_token: token,
                }),
                symbol: "SPY".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page.page_token:",
    )
    .await;
    let t = |ns: i64| Some(grodt_execution::convert::ts_to_proto(ns));
    let m5_created = helpers::ns(
        orders
            .iter()
            .find(|o| o.spec.as_ref().unwrap().client_order_id == "m-5")
            .unwrap()
            .created_at
            .as_ref(),
    );
    let since_m5 = svc
        .client
        .list_orders(v1::ListOrdersRequest {
            created: Some(v1::TimeRange {
                start: t(m5_created),
                end: None,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(since_m5.len(), 1);
    let account = svc.account().await;
    svc.stop().await;

    // A new life on the same database: the same book, to the cent.
    let mut svc = env.spawn(settings()).await;
    assert_eq!(svc.all_orders(100).await, orders);
    assert_eq!(svc.account().await, account);
    let again = svc
        .client
        .list_positions(v1::ListPositionsRequest {
            strategy_id: "s-buy".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .positions;
    assert_eq!(again, positions);
    let m = svc.metrics().await;
    assert!(m.contains("grodt_execution_reconciliation_breaks 0"), "{m}");
    assert!(
        m.contains(&format!(
            "grodt_execution_journal_replay_entries {}",
            journaled(env.db.store()).await
        )),
        "{m}"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_fills_sends_stored_fills_since_then_live_ones() {
    let env = Env::embedded().await;
    let mut svc = env.spawn(settings()).await;
    // Recent bar times: `since` reaches at most 7 days back.
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let day = 86_400_000_000_000i64;
    let mut bars = spy_bars()[..10].to_vec();
    for (k, b) in bars.iter_mut().enumerate() {
        b.ts = now - 3 * day + i64::try_from(k).unwrap() * day / 4;
    }
    svc.client
        .submit_order(v1::SubmitOrderRequest {
            order: Some(order("f-1", true, 10, None)),
        })
        .await
        .unwrap();
    publish_bars(&*env.bus, "SPY", &bars[..3]).await;
    wait_journal(env.db.store(), 4, 10).await;
    expect_code(
        svc.client
            .stream_fills(v1::StreamFillsRequest {
                since: Some(grodt_execution::convert::ts_to_proto(now - 8 * day)),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "since:",
    )
    .await;
    let mut stream = svc
        .client
        .stream_fills(v1::StreamFillsRequest {
            since: Some(grodt_execution::convert::ts_to_proto(now - 4 * day)),
            symbol: "SPY".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let stored = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .fill
        .unwrap();
    assert_eq!(stored.client_order_id, "f-1");
    svc.client
        .submit_order(v1::SubmitOrderRequest {
            order: Some(order("f-2", false, 4, None)),
        })
        .await
        .unwrap();
    publish_bars(&*env.bus, "SPY", &bars[3..]).await;
    let live = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .fill
        .unwrap();
    assert_eq!(live.client_order_id, "f-2");
    assert_ne!(live.fill_id, stored.fill_id);
    let got = svc
        .client
        .get_order(v1::GetOrderRequest {
            order: Some(v1::OrderRef {
                id: Some(v1::order_ref::Id::ClientOrderId("f-2".into())),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.fills, vec![live]);
    drop(stream);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symbol_of_the_default_grids_joins_the_broker_and_survives_a_restart() {
    let env = Env::embedded().await;
    let mut s = settings();
    s.instruments.default = Some(grodt_paper::instruments::InstrumentSpec {
        price_precision: helpers::SPY_PRECISION,
        size_precision: 0,
    });
    let mut svc = env.spawn(s.clone()).await;
    let bars = spy_bars()[..40].to_vec();
    // SPY (listed) trades first; AAA (default grids) arrives later.
    svc.client
        .submit_order(v1::SubmitOrderRequest {
            order: Some(order("a-1", true, 10, None)),
        })
        .await
        .unwrap();
    publish_bars(&*env.bus, "SPY", &bars[..20]).await;
    wait_journal(env.db.store(), 21, 10).await;
    let mut aaa = order("a-2", true, 7, None);
    aaa.symbol = "AAA".into();
    let placed = svc
        .client
        .submit_order(v1::SubmitOrderRequest {
            order: Some(aaa.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(
        placed.status,
        v1::OrderStatus::Accepted as i32,
        "{placed:?}"
    );
    // Bars of both symbols in time order, as a feed sends them (the venue
    // has one clock: a bar before its time is refused).
    for b in &bars[20..] {
        publish_bars(&*env.bus, "AAA", std::slice::from_ref(b)).await;
        publish_bars(&*env.bus, "SPY", std::slice::from_ref(b)).await;
    }
    wait_journal(env.db.store(), 22 + 40, 10).await;
    let positions = svc
        .client
        .list_positions(v1::ListPositionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .positions;
    let qty: Vec<_> = positions
        .iter()
        .map(|p| (p.symbol.as_str(), d(p.quantity.as_ref())))
        .collect();
    assert_eq!(
        qty,
        vec![("AAA", Decimal::from(7)), ("SPY", Decimal::from(10))]
    );
    let account = svc.account().await;
    let orders = svc.all_orders(10).await;
    svc.stop().await;
    let mut svc = env.spawn(s).await;
    assert_eq!(svc.account().await, account);
    assert_eq!(svc.all_orders(10).await, orders);
    let m = svc.metrics().await;
    assert!(m.contains("grodt_execution_reconciliation_breaks 0"), "{m}");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bracket_entry_brings_its_exits_named_after_it() {
    let env = Env::embedded().await;
    let mut svc = env.spawn(settings()).await;
    // Idle: every metric the dashboards use already has its series.
    let m = svc.metrics().await;
    for name in [
        "grodt_execution_account_equity{account=\"paper\"} 100000",
        "grodt_execution_realized_pnl{account=\"paper\"} 0",
        "grodt_execution_unrealized_pnl{account=\"paper\"} 0",
        "grodt_execution_open_positions{account=\"paper\"} 0",
        "grodt_execution_orders_total{status=\"filled\"} 0",
        "grodt_execution_fills_total{side=\"sell\"} 0",
        "grodt_execution_bus_consumer_lag_entries{group=\"execution\",stream=\"grodt.bars.v1\"}",
        "grodt_execution_reconciliation_breaks 0",
    ] {
        assert!(m.contains(name), "{name} in\n{m}");
    }
    let bars = spy_bars()[..30].to_vec();
    let close = bars[0].close;
    let mut entry = order("b-1", true, 10, None);
    entry.bracket = Some(v1::Bracket {
        take_profit_price: Some(v1::Decimal {
            value: Decimal::new(close * 105 / 100, 4).to_string(),
        }),
        stop_loss_price: Some(v1::Decimal {
            value: Decimal::new(close * 95 / 100, 4).to_string(),
        }),
    });
    let placed = svc
        .client
        .submit_order(v1::SubmitOrderRequest {
            order: Some(entry.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let mut upside_down = entry.clone();
    upside_down.client_order_id = "b-2".into();
    upside_down.bracket.as_mut().unwrap().take_profit_price = upside_down
        .bracket
        .as_ref()
        .unwrap()
        .stop_loss_price
        .clone();
    expect_code(
        svc.client
            .submit_order(v1::SubmitOrderRequest {
                order: Some(upside_down),
            })
            .await,
        Code::InvalidArgument,
        "order.bracket:",
    )
    .await;
    publish_bars(&*env.bus, "SPY", &bars).await;
    wait_journal(env.db.store(), 1 + 30, 10).await;
    let orders = svc.all_orders(10).await;
    let cids: Vec<_> = orders
        .iter()
        .map(|o| o.spec.as_ref().unwrap().client_order_id.as_str())
        .collect();
    assert_eq!(cids, ["b-1-sl", "b-1-tp", "b-1"]);
    for exit in &orders[..2] {
        assert_eq!(exit.parent_order_id, placed.order_id);
    }
    assert_eq!(orders[2].status, v1::OrderStatus::Filled as i32);
    svc.stop().await;
}

/// A strategy's cancellation from the orders stream: the resting order is
/// cancelled (and reported), a redelivery of the same event changes
/// nothing, a cancellation of an order already filled or never seen is a
/// counted no-op, and one that arrives after a later bar counts as late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_on_the_orders_stream_cancels_once() {
    let env = Env::embedded().await;
    let mut svc = env.spawn(settings()).await;
    let reports = Reader::new(env.bus.clone(), REPORTS_STREAM).await;
    let bars = spy_bars()[..4].to_vec();
    let orders = stream(<v1::OrderEvent as grodt_proto::topic::Topic>::STREAM);
    publish_bars(&*env.bus, "SPY", &bars[..1]).await;
    // A limit buy far below the market rests; a market buy fills on bar 2.
    publish_order(&*env.bus, &order("rest", true, 10, Some(bars[0].close / 2))).await;
    publish_order(&*env.bus, &order("mkt", true, 1, None)).await;
    wait_journal(env.db.store(), 3, 10).await;
    let cancel = cancel_envelope("rest", bars[0].ts);
    env.bus.publish(&orders, &cancel).await.unwrap();
    env.bus.publish(&orders, &cancel).await.unwrap(); // redelivered: same event id
    wait_journal(env.db.store(), 4, 10).await;
    publish_bars(&*env.bus, "SPY", &bars[1..2]).await;
    wait_journal(env.db.store(), 5, 10).await;
    // After bar 2: the filled market order, an unknown order, and a late one.
    for (cid, at) in [("mkt", bars[0].ts), ("nope", bars[1].ts)] {
        env.bus
            .publish(&orders, &cancel_envelope(cid, at))
            .await
            .unwrap();
    }
    publish_order(
        &*env.bus,
        &order("rest-2", true, 10, Some(bars[0].close / 2)),
    )
    .await;
    wait_journal(env.db.store(), 6, 10).await;
    env.bus
        .publish(&orders, &cancel_envelope("rest-2", bars[0].ts))
        .await
        .unwrap();
    wait_journal(env.db.store(), 7, 10).await;
    let got = svc.all_orders(10).await;
    let status = |cid: &str| {
        got.iter()
            .find(|o| o.spec.as_ref().unwrap().client_order_id == cid)
            .map(|o| v1::OrderStatus::try_from(o.status).unwrap())
            .unwrap()
    };
    assert_eq!(status("rest"), v1::OrderStatus::Cancelled);
    assert_eq!(status("rest-2"), v1::OrderStatus::Cancelled);
    assert_eq!(status("mkt"), v1::OrderStatus::Filled);
    // The redelivery republishes its journaled report under the same id.
    let cancelled_reports: HashSet<uuid::Uuid> = reports
        .drain::<v1::ExecutionReportEvent>()
        .await
        .into_iter()
        .filter(|r| {
            r.event.bar.is_none()
                && r.event.updates.iter().any(|u| {
                    matches!(&u.update, Some(v1::execution_update::Update::Order(o))
                        if o.status == v1::OrderStatus::Cancelled as i32)
                })
        })
        .map(|r| r.event_id)
        .collect();
    assert_eq!(cancelled_reports.len(), 2, "one report per cancellation");
    let m = svc.metrics().await;
    for line in [
        "grodt_execution_inputs_dropped_total{reason=\"cancel_of_final_order\"} 1",
        "grodt_execution_inputs_dropped_total{reason=\"cancel_of_unknown_order\"} 1",
        "grodt_execution_late_orders_total 1",
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }
    assert_eq!(journaled(env.db.store()).await, 7);
    svc.stop().await;
}

/// An account running a portfolio's desk (`[execution] portfolio`): an
/// order of a strategy that is not a member, or of a member on a symbol it
/// does not trade, is refused with the reason; a bar of a symbol outside the
/// file is dropped without touching the desk; a member's order is taken;
/// a file whose cash or costs are not the venue's stops the start, named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portfolio_account_refuses_strangers_by_name_and_ignores_foreign_bars() {
    use grodt_kit::config::ServiceConfig as _;
    let env = Env::embedded().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portfolio.toml");
    std::fs::write(&file, restart::PORTFOLIO).unwrap();
    let mut s = settings();
    s.portfolio = Some(file.clone());
    s.instruments.symbols.insert(
        "QQQ".into(),
        grodt_paper::instruments::InstrumentSpec {
            price_precision: 4,
            size_precision: 0,
        },
    );
    let mut bad = s.clone();
    bad.venue.starting_cash = Decimal::from(5);
    let e = bad.validate().unwrap_err().to_string();
    assert!(
        e.contains("execution.portfolio") && e.contains("starting_cash"),
        "{e}"
    );
    // Costs other than the file's: named, refused.
    let mut bad = s.clone();
    bad.venue.slippage = grodt_sim::config::SlippageSpec::FixedBps {
        bps: Decimal::from(3),
    };
    let e = bad.validate().unwrap_err().to_string();
    assert!(
        e.contains("execution.venue.slippage") && e.contains("would not equal its backtest"),
        "{e}"
    );
    let mut bad = s.clone();
    bad.venue.borrow_rate = Decimal::new(1, 2);
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("execution.venue.borrow_rate"), "{e}");

    let mut svc = env.spawn(s).await;
    let submit = |spec: v1::OrderSpec| {
        let mut c = svc.client.clone();
        async move {
            c.submit_order(v1::SubmitOrderRequest { order: Some(spec) })
                .await
                .unwrap()
                .into_inner()
                .order
                .unwrap()
        }
    };
    let mut stranger = order("x-1", true, 10, Some(5_0000));
    stranger.strategy_id = "nobody".into();
    let o = submit(stranger).await;
    assert_eq!(o.status, v1::OrderStatus::Rejected as i32);
    assert!(
        o.status_reason.contains("strategy_id"),
        "{}",
        o.status_reason
    );
    let mut elsewhere = order("x-2", true, 10, Some(5_0000));
    elsewhere.symbol = "QQQ".into();
    let o = submit(elsewhere).await;
    assert_eq!(o.status, v1::OrderStatus::Rejected as i32);
    assert!(o.status_reason.contains("QQQ"), "{}", o.status_reason);
    let o = submit(order("x-3", true, 10, Some(5_0000))).await;
    assert_eq!(
        o.status,
        v1::OrderStatus::Accepted as i32,
        "{}",
        o.status_reason
    );

    let bars = spy_bars()[..3].to_vec();
    publish_bars(&*env.bus, "QQQ", &bars).await;
    publish_bars(&*env.bus, "SPY", &bars).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = svc.metrics().await;
        let dropped = m
            .lines()
            .find(|l| {
                l.starts_with("grodt_execution_inputs_dropped_total{")
                    && l.contains("unknown_symbol_bar")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        let account = svc.account().await;
        if dropped >= 3.0 && ns(account.updated_at.as_ref()) == bars[2].ts {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dropped {dropped}, account at {} (want {}): {}",
            ns(account.updated_at.as_ref()),
            bars[2].ts,
            m.lines()
                .filter(|l| l.contains("dropped") || l.contains("bars"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    svc.stop().await;
}
