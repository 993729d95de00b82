//! Telemetry init, OTLP export against absent collectors, W3C trace context.

use std::time::{Duration, Instant};

use grodt_kit::config::TelemetryConfig;
use grodt_kit::telemetry::{self, OTLP_TIMEOUT, current_traceparent};
use grodt_kit::{GrpcServerBuilder, TraceContextInterceptor};
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use tonic::service::interceptor::InterceptedService;
use tracing::Instrument;

use crate::helpers::{channel, gate, gated_check, spawn, test_config};

fn quiet() -> TelemetryConfig {
    TelemetryConfig {
        log_level: "warn".into(),
        ..TelemetryConfig::default()
    }
}

fn trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).expect("trace id field")
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_twice_in_one_process_does_not_panic() {
    let first = telemetry::init("kit-a", &quiet()).expect("first init");
    let second = telemetry::init("kit-b", &quiet()).expect("second init");
    assert!(
        !second.installed(),
        "the second init keeps the first subscriber"
    );
    drop(second);
    drop(first);
    let bad = TelemetryConfig {
        log_level: "info,=[".into(),
        ..quiet()
    };
    assert!(telemetry::init("kit-c", &bad).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_otlp_port_blocks_neither_init_nor_shutdown() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let config = TelemetryConfig {
        otlp_endpoint: endpoint.clone(),
        ..quiet()
    };
    let started = Instant::now();
    let guard = telemetry::init("kit-otlp", &config).expect("init with a dead collector");
    tracing::info_span!("work").in_scope(|| tracing::warn!("exported nowhere"));
    drop(guard);
    let took = started.elapsed();
    assert!(
        took < OTLP_TIMEOUT + Duration::from_secs(1),
        "init+drop took {took:?}"
    );

    // The same pipeline with spans certainly queued for export.
    let provider = telemetry::tracer_provider("kit-otlp", &endpoint, Duration::from_millis(500))
        .expect("provider");
    let tracer = provider.tracer("test");
    for i in 0..20 {
        let mut span = tracer.start(format!("span-{i}"));
        span.end();
    }
    let started = Instant::now();
    let _ =
        tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(Duration::from_secs(1)))
            .await
            .expect("join");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_costs_at_most_the_timeout() {
    // Accepts connections and never speaks.
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", blackhole.local_addr().expect("addr"));
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = blackhole.accept().await {
            held.push(socket);
        }
    });
    let provider = telemetry::tracer_provider("kit-otlp", &endpoint, Duration::from_millis(500))
        .expect("provider");
    let tracer = provider.tracer("test");
    for i in 0..20 {
        let mut span = tracer.start(format!("span-{i}"));
        span.end();
    }
    let started = Instant::now();
    let _ =
        tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(Duration::from_secs(2)))
            .await
            .expect("join");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_crosses_a_call_through_the_interceptor() {
    let _guard = telemetry::init("kit-trace", &quiet()).expect("init");
    let (g, mut control) = gate(true);
    let mut server = spawn(GrpcServerBuilder::new("kit-test", &test_config()), g).await;
    let ch = channel(server.grpc_addr).await;

    let span = tracing::info_span!("client");
    let (client_tp, _) = span
        .in_scope(current_traceparent)
        .expect("a traced span has a traceparent");
    gated_check(InterceptedService::new(ch.clone(), TraceContextInterceptor))
        .instrument(span.clone())
        .await
        .expect("call");
    let (server_tp, _) = control
        .next_started()
        .await
        .expect("the handler runs in a traced span");
    assert_eq!(
        trace_id(&server_tp),
        trace_id(&client_tp),
        "server joins the client's trace"
    );
    assert_ne!(
        server_tp, client_tp,
        "the server span is a child, not the client span"
    );

    // Without the interceptor the server starts a trace of its own.
    gated_check(ch).instrument(span).await.expect("call");
    let (lone_tp, _) = control.next_started().await.expect("traced");
    assert_ne!(trace_id(&lone_tp), trace_id(&client_tp));

    server.stop();
    server.run.await.expect("join").expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_envelope_traceparent_round_trips() {
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let _guard = telemetry::init("kit-trace", &quiet()).expect("init");
    let producer = tracing::info_span!("produce");
    let (traceparent, tracestate) = producer.in_scope(current_traceparent).expect("traceparent");

    let cx = telemetry::context_from_traceparent(&traceparent, &tracestate).expect("valid");
    let consumer = tracing::info_span!("consume");
    consumer.set_parent(cx).expect("set parent");
    let (consumed, _) = consumer.in_scope(current_traceparent).expect("traceparent");
    assert_eq!(trace_id(&consumed), trace_id(&traceparent));
    assert_ne!(consumed, traceparent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_span_linked_to_the_current_one_starts_its_own_trace() {
    let _guard = telemetry::init("kit-link", &quiet()).expect("init");
    let replay = tracing::info_span!("replay");
    let (outer, bars) = replay.in_scope(|| {
        let outer = current_traceparent().expect("traceparent").0;
        let bars: Vec<String> = (0..2)
            .map(|_| {
                let bar = tracing::info_span!(parent: None, "bar");
                telemetry::link_to_current(&bar);
                bar.in_scope(current_traceparent).expect("traceparent").0
            })
            .collect();
        (outer, bars)
    });
    for b in &bars {
        assert_ne!(
            trace_id(b),
            trace_id(&outer),
            "not inside the replay's trace"
        );
    }
    assert_ne!(trace_id(&bars[0]), trace_id(&bars[1]), "one trace per bar");
}
