//! A journaled input whose report could not be published (the bus failed
//! after the commit) goes out before any later input's report, so the
//! strategy never sees the bar that filled an order before the order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use grodt_bus::{
    BusError, ConsumerInfo, ConsumerName, Delivery, EntryId, Envelope, EventBus, GroupInfo,
    GroupName, StartFrom, StreamName,
};
use grodt_execution::engine::{Engine, EngineSettings, REPORTS_STREAM};
use grodt_execution::metrics::ExecMetrics;
use grodt_proto::v1;

use crate::helpers::{Env, Reader, order, settings, spy_bars, to_proto, venue};

/// The in-process bus, whose publishes fail while `down` is set.
struct Flaky {
    inner: Arc<dyn EventBus>,
    down: AtomicBool,
}

#[async_trait]
impl EventBus for Flaky {
    async fn publish(&self, stream: &StreamName, envelope: &Envelope) -> Result<EntryId, BusError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BusError::Timeout {
                op: "publish",
                after: Duration::ZERO,
            });
        }
        self.inner.publish(stream, envelope).await
    }
    async fn ensure_group(
        &self,
        s: &StreamName,
        g: &GroupName,
        start: StartFrom,
    ) -> Result<(), BusError> {
        self.inner.ensure_group(s, g, start).await
    }
    async fn consume(
        &self,
        s: &StreamName,
        g: &GroupName,
        c: &ConsumerName,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        self.inner.consume(s, g, c, max, block).await
    }
    async fn ack(&self, s: &StreamName, g: &GroupName, ids: &[EntryId]) -> Result<u64, BusError> {
        self.inner.ack(s, g, ids).await
    }
    async fn claim_stale(
        &self,
        s: &StreamName,
        g: &GroupName,
        c: &ConsumerName,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        self.inner.claim_stale(s, g, c, min_idle, max).await
    }
    async fn groups(&self, s: &StreamName) -> Result<Vec<GroupInfo>, BusError> {
        self.inner.groups(s).await
    }
    async fn consumers(
        &self,
        s: &StreamName,
        g: &GroupName,
    ) -> Result<Vec<ConsumerInfo>, BusError> {
        self.inner.consumers(s, g).await
    }
    async fn renew(
        &self,
        s: &StreamName,
        g: &GroupName,
        c: &ConsumerName,
        ids: &[EntryId],
    ) -> Result<u64, BusError> {
        self.inner.renew(s, g, c, ids).await
    }
}

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
    let flaky = Arc::new(Flaky {
        inner: env.bus.clone(),
        down: AtomicBool::new(false),
    });
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
    flaky.down.store(true, Ordering::SeqCst);
    let spec = order("o-1", true, 1, Some(bars[0].close * 2));
    engine
        .submit("order-1", &spec, false, Some(bars[0].ts))
        .await
        .expect_err("the publish fails after the commit");
    flaky.down.store(false, Ordering::SeqCst);
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
