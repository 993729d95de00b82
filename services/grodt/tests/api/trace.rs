//! Issue 10 item 4: one trace runs from a bar to the fill of the order it
//! decided, across the services in the distributed mode. Regime, strategy,
//! risk and execution run as `grodt serve` processes over Redis and
//! Postgres (telemetry is process-global), exporting OTLP/gRPC to a
//! receiver in this test; the bars are published in lockstep, each under a
//! `paper.bar` root span of this test.
//!
//! The rule (docs/operations.md, "Traces"): a fill belongs to the trace of
//! the bar that decided its order (bar k: bar -> execution -> report ->
//! strategy -> intent -> risk -> order -> execution -> fill), and its
//! `execution.fill` span links to the input that filled it (bar k+1, the
//! next open, in that bar's own trace).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grodt_bus::{
    ConsumerName, EventBus, GroupName, RedisBus, RedisBusConfig, StartFrom, StreamName,
};
use grodt_proto::topic::{Topic, decode};
use grodt_proto::v1;
use grodt_proto::v1::execution_service_client::ExecutionServiceClient;
use grodt_proto::v1::strategy_service_client::StrategyServiceClient;
use grodt_store::testing::TestDb;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

use crate::cluster::{Cluster, redis_url};

const CONSUMERS: [&str; 4] = ["regime", "strategy", "risk", "execution"];
/// The service name of this test's own spans (the bars' roots).
const TEST_SERVICE: &str = "grodt-trace-test";

#[derive(Debug, Clone)]
struct SpanRecord {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    /// Empty for a root.
    parent: String,
    /// Integer and string attributes, as text.
    attributes: HashMap<String, String>,
    /// (trace id, span id) of each link.
    links: Vec<(String, String)>,
}

/// The OTLP/gRPC receiver: keeps every span exported to it.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<SpanRecord>>>);

impl Sink {
    fn spans(&self) -> Vec<SpanRecord> {
        self.0.lock().unwrap().clone()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn text(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> Option<String> {
    match v?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| text(a.value.as_ref()))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push(SpanRecord {
                        service: service.clone(),
                        name: s.name,
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                        attributes: s
                            .attributes
                            .iter()
                            .filter_map(|a| Some((a.key.clone(), text(a.value.as_ref())?)))
                            .collect(),
                        links: s
                            .links
                            .iter()
                            .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                            .collect(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// `00-<trace id>-<span id>-<flags>` -> (trace id, span id).
fn ids(traceparent: &str) -> (String, String) {
    let mut parts = traceparent.split('-').skip(1);
    let trace = parts.next().unwrap_or_default().to_owned();
    let span = parts.next().unwrap_or_default().to_owned();
    (trace, span)
}

fn ns(t: Option<&prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
}

/// Every entry of `stream` from the beginning, read by a fresh group.
async fn read_all(bus: &dyn EventBus, stream: &str) -> Vec<grodt_bus::Delivery> {
    let stream = StreamName::parse(stream).unwrap();
    let group = GroupName::parse("trace-audit").unwrap();
    let me = ConsumerName::parse("trace-audit").unwrap();
    bus.ensure_group(&stream, &group, StartFrom::Beginning)
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let batch = bus
            .consume(&stream, &group, &me, 500, Duration::ZERO)
            .await
            .unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

/// The spans of `trace` once `ready` holds for them (the services export
/// in batches, every 200 ms here), or a failure naming what was missing.
async fn trace_when(
    sink: &Sink,
    trace: &str,
    what: &str,
    ready: impl Fn(&[SpanRecord]) -> bool,
) -> Vec<SpanRecord> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let spans: Vec<SpanRecord> = sink
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace)
            .collect();
        if ready(&spans) {
            return spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "trace {trace}: {what} not exported within 30 s; have {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn has(spans: &[SpanRecord], service: &str, name: &str) -> bool {
    spans.iter().any(|s| s.service == service && s.name == name)
}

/// The trace as an indented tree, for the failure messages and the log.
fn render(spans: &[SpanRecord]) -> String {
    fn walk(spans: &[SpanRecord], s: &SpanRecord, depth: usize, out: &mut String) {
        out.push_str(&format!(
            "{}{} [{}]{}\n",
            "  ".repeat(depth),
            s.name,
            s.service,
            if s.links.is_empty() {
                String::new()
            } else {
                format!(" (links {:?})", s.links)
            }
        ));
        for c in spans.iter().filter(|c| c.parent == s.span_id) {
            walk(spans, c, depth + 1, out);
        }
    }
    let mut out = String::new();
    let ids: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    for root in spans.iter().filter(|s| !ids.contains(&s.parent.as_str())) {
        walk(spans, root, 0, &mut out);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_deciding_bar_to_the_fill_across_the_services() {
    // The receiver.
    let sink = Sink::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(sink.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    // The bars, and the fills a backtest of them makes (there must be some).
    let db = TestDb::postgres().await;
    let (inst, bars) = crate::cluster::spy_tail(90);
    let params = crate::cluster::sma_params();
    let mut reference = grodt_strategies::registry::build("sma_cross", &params, &inst).unwrap();
    let want = grodt_sim::run_backtest(
        &grodt_sim::config::BacktestConfig {
            starting_cash: grodt_core::Decimal::from(100_000),
            ..Default::default()
        },
        std::slice::from_ref(&inst),
        std::slice::from_ref(&bars),
        &mut *reference,
    )
    .unwrap();
    assert!(
        want.fills.len() >= 2,
        "the window must trade: {:?}",
        want.fills
    );

    // The four consumers, their spans to the receiver, exported every 200 ms
    // (the SDK's batch processor reads OTEL_BSP_*); a large queue so the
    // lockstep's polling calls (a span each) push out nothing.
    let dir = tempfile::tempdir().unwrap();
    crate::fault::write_config(dir.path(), &inst);
    let prefix = format!("test-trace-{}:", uuid::Uuid::now_v7().simple());
    let mut cluster = Cluster::of(
        dir.path(),
        &prefix,
        crate::cluster::redis_url(),
        db.url().to_owned(),
        &CONSUMERS,
    );
    cluster.env = [
        ("GRODT_TELEMETRY__OTLP_ENDPOINT", otlp.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "65536"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    cluster.start_all().await;
    let channel = |port: u16| async move {
        tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .expect("connects")
    };
    let mut strategy = StrategyServiceClient::new(channel(cluster.procs[1].grpc).await);
    let mut execution = ExecutionServiceClient::new(channel(cluster.procs[3].grpc).await);
    crate::cluster::deploy_sma(&mut strategy, "trace-1").await;

    // The bars, each published under its own root span of this test.
    let bus = RedisBus::connect(RedisBusConfig::new(redis_url(), prefix.clone()))
        .await
        .unwrap_or_else(|e| panic!("Redis must be running at {}: {e}", redis_url()));
    let provider =
        grodt_kit::telemetry::tracer_provider(TEST_SERVICE, &otlp, Duration::from_secs(5)).unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    grodt::paper::lockstep(
        &bus,
        &bars,
        "SPY",
        v1::Timeframe::Day1 as i32,
        (inst.price_precision, inst.size_precision),
        "trace-1",
        &mut strategy,
        &mut execution,
    )
    .with_subscriber(subscriber)
    .await
    .expect("lockstep");
    // The exporter blocks on the receiver, which this runtime serves: flush off it.
    let flushed = provider.clone();
    tokio::task::spawn_blocking(move || flushed.force_flush())
        .await
        .unwrap()
        .expect("the bars' root spans exported");

    // Which trace is which bar's: the roots carry the bar's time.
    let roots: HashMap<i64, String> = sink
        .spans()
        .iter()
        .filter(|s| s.service == TEST_SERVICE && s.name == "paper.bar")
        .filter_map(|s| {
            Some((
                s.attributes.get("bar_ts")?.parse().ok()?,
                s.trace_id.clone(),
            ))
        })
        .collect();
    assert_eq!(roots.len(), bars.len(), "one root span per bar");
    let bar_of_trace: HashMap<&str, i64> = roots.iter().map(|(t, id)| (id.as_str(), *t)).collect();

    // The decision bar of each order (the intents), and the fills as published.
    let decided: HashMap<String, i64> = read_all(&bus, <v1::OrderIntentEvent as Topic>::STREAM)
        .await
        .iter()
        .filter_map(|d| {
            let i =
                decode::<v1::OrderIntentEvent>(&d.envelope.event_type, d.envelope.payload.as_ref())
                    .ok()?;
            Some((i.order?.client_order_id, ns(i.decision_bar_time.as_ref())))
        })
        .collect();
    let fills: Vec<(Option<String>, v1::Fill)> = read_all(&bus, <v1::FillEvent as Topic>::STREAM)
        .await
        .into_iter()
        .map(|d| {
            let ev = decode::<v1::FillEvent>(&d.envelope.event_type, d.envelope.payload.as_ref())
                .expect("a fill event");
            (d.envelope.traceparent.clone(), ev.fill.expect("a fill"))
        })
        .collect();
    // The last order of the window may still wait for its next bar.
    assert!(
        fills.len() + 1 >= want.fills.len() && !fills.is_empty(),
        "fills on the stream: {} (the backtest: {})",
        fills.len(),
        want.fills.len()
    );

    for (traceparent, fill) in &fills {
        let traceparent = traceparent
            .as_deref()
            .unwrap_or_else(|| panic!("fill {} published without a trace", fill.fill_id));
        let (trace, publisher) = ids(traceparent);
        let decision = decided
            .get(&fill.client_order_id)
            .copied()
            .unwrap_or_else(|| panic!("an intent for {}", fill.client_order_id));
        let filled_at = ns(fill.filled_at.as_ref());
        assert!(decision < filled_at, "decided before it filled");

        // The fill's trace is the trace of the bar that decided its order.
        assert_eq!(
            bar_of_trace.get(trace.as_str()),
            Some(&decision),
            "fill {} is in the trace of its decision bar",
            fill.fill_id
        );
        let spans = trace_when(&sink, &trace, "every hop of the fill", |spans| {
            has(spans, TEST_SERVICE, "paper.bar")
                && has(spans, "regime", "regime.bar")
                && has(spans, "execution", "execution.input")
                && has(spans, "strategy", "strategy.report")
                && has(spans, "risk", "risk.intent")
                && has(spans, "execution", "execution.fill")
                && has(spans, "risk", "risk.fill")
        })
        .await;
        let tree = render(&spans);
        let by_id: HashMap<&str, &SpanRecord> =
            spans.iter().map(|s| (s.span_id.as_str(), s)).collect();

        // One connected tree under this test's root span.
        let roots: Vec<&SpanRecord> = spans
            .iter()
            .filter(|s| !by_id.contains_key(s.parent.as_str()))
            .collect();
        assert_eq!(roots.len(), 1, "one root:\n{tree}");
        assert_eq!(
            (
                roots[0].service.as_str(),
                roots[0].name.as_str(),
                roots[0].parent.as_str()
            ),
            (TEST_SERVICE, "paper.bar", ""),
            "the root is the test's bar span:\n{tree}"
        );

        // The fill event was published in its `execution.fill` span, whose
        // ancestry is the whole chain back to the bar.
        let fill_span = by_id
            .get(publisher.as_str())
            .unwrap_or_else(|| panic!("the fill's publishing span is in the trace:\n{tree}"));
        assert_eq!(
            (fill_span.service.as_str(), fill_span.name.as_str()),
            ("execution", "execution.fill"),
            "{tree}"
        );
        let mut chain = Vec::new();
        let mut cursor = *fill_span;
        while let Some(parent) = by_id.get(cursor.parent.as_str()) {
            chain.push(format!("{}:{}", parent.service, parent.name));
            cursor = parent;
        }
        assert_eq!(
            chain,
            [
                "execution:execution.input", // the order
                "risk:risk.intent",
                "strategy:strategy.report",  // the report of bar k
                "execution:execution.input", // bar k applied
                &format!("{TEST_SERVICE}:paper.bar"),
            ],
            "fill -> order -> intent -> report -> bar:\n{tree}"
        );
        assert!(
            spans
                .iter()
                .any(|s| s.name == "risk.fill" && s.parent == fill_span.span_id),
            "risk books the fill in the same trace:\n{tree}"
        );

        // The fill span links to the input that filled it: bar k+1, in that
        // bar's own trace.
        let filling = fill_span
            .links
            .iter()
            .find(|(t, _)| bar_of_trace.get(t.as_str()) == Some(&filled_at))
            .unwrap_or_else(|| {
                panic!(
                    "execution.fill links to the filling bar's trace: {:?}\n{tree}",
                    fill_span.links
                )
            });
        let linked = trace_when(&sink, &filling.0, "the filling bar's input span", |spans| {
            spans.iter().any(|s| s.span_id == filling.1)
        })
        .await;
        let target = linked.iter().find(|s| s.span_id == filling.1).unwrap();
        assert_eq!(
            (target.service.as_str(), target.name.as_str()),
            ("execution", "execution.input"),
            "the link names execution's span of the filling bar"
        );
        println!(
            "fill {} (decided {decision}, filled {filled_at}) trace {trace}:\n{tree}",
            fill.fill_id
        );
    }
    drop(cluster);
}
