//! A journaled input whose report could not be published (the bus failed
//! after the commit) goes out before any later input's report, so the
//! strategy never sees the bar that filled an order before the order.

use std::sync::Arc;

use grodt_bus::faulty::Faulty;
use grodt_execution::engine::{Engine, EngineSettings, REPORTS_STREAM};
use grodt_execution::metrics::ExecMetrics;
use grodt_proto::v1;

use crate::helpers::{Env, Reader, order, settings, spy_bars, to_proto, venue};

fn bar_event(b: &grodt_core::Bar) -> v1::BarEvent {
    v1::BarEvent {
        bar: Some(to_proto("SPY", b)),
        dataset_id: String::new(),
        replay_id: "test".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_failed_to_publish_goes_out_before_any_later_one() {
    let env = Env::embedded().await;
    let flaky = Arc::new(Faulty::new(env.bus.clone()));
    let reports = Reader::new(env.bus.clone(), REPORTS_STREAM).await;
    let metrics = grodt_kit::Metrics::new("execution", "test").unwrap();
    let engine = Engine::start(
        env.db.store().clone(),
        flaky.clone(),
        EngineSettings {
            venue: venue(),
            instruments: settings().instruments,
            portfolio: None,
        },
        ExecMetrics::register(&metrics, "paper").unwrap(),
    )
    .await
    .unwrap();
    let bars = spy_bars()[..3].to_vec();
    engine.on_bar("bar-0", &bar_event(&bars[0])).await.unwrap();
    // The order is journaled; its report cannot be published.
    flaky.set_publish_down(true);
    let spec = order("o-1", true, 1, Some(bars[0].close * 2));
    engine
        .submit("order-1", &spec, false, Some(bars[0].ts))
        .await
        .expect_err("the publish fails after the commit");
    flaky.set_publish_down(false);
    // The bars consumer comes back first: the bar that fills the order.
    engine.on_bar("bar-1", &bar_event(&bars[1])).await.unwrap();
    // The order's redelivery later republishes the same report (a no-op).
    engine
        .submit("order-1", &spec, false, Some(bars[0].ts))
        .await
        .unwrap();

    let got = reports.drain::<v1::ExecutionReportEvent>().await;
    let kinds: Vec<&str> = got
        .iter()
        .map(|r| {
            let fills = r
                .event
                .updates
                .iter()
                .any(|u| matches!(u.update, Some(v1::execution_update::Update::Fill(_))));
            match (r.event.bar.is_some(), fills) {
                (true, true) => "bar with a fill",
                (true, false) => "bar",
                (false, _) => "order",
            }
        })
        .collect();
    assert_eq!(
        kinds,
        ["bar", "order", "bar with a fill", "order"],
        "the order's report before the bar that filled it"
    );
    assert!(got[0].event.sequence < got[1].event.sequence);
    assert!(got[1].event.sequence < got[2].event.sequence);
    assert_eq!(got[1].event_id, got[3].event_id, "the same report again");
}
