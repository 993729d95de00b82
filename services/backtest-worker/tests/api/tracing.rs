//! Issue 5 item 5: one SubmitBacktest call from a traced client yields spans of
//! ONE trace in the gRPC handler and in the job handling after the bus hop.
//! The worker runs as its own process (telemetry is process-global) exporting
//! OTLP/gRPC to a receiver in this test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grodt_kit::TraceContextInterceptor;
use grodt_proto::v1;
use grodt_proto::v1::backtest_service_client::BacktestServiceClient;
use grodt_store::testing::TestDb;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tracing::Instrument;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

use crate::helpers::{eventually, redis_url, sma_spec};

#[derive(Debug, Clone)]
struct SpanRecord {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<SpanRecord>>>);

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
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
                .and_then(|a| a.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push(SpanRecord {
                        service: service.clone(),
                        name: s.name,
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_submit_is_one_trace_across_grpc_and_the_bus() {
    // The receiver.
    let sink = Sink::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(sink.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    // The worker process, its traces to the receiver.
    let db = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_grodt-backtest-worker"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GRODT_CONFIG_DIR", dir.path())
        .env("GRODT_GRPC__ADDR", "127.0.0.1:0")
        .env("GRODT_HTTP__ADDR", "127.0.0.1:0")
        .env("GRODT_TELEMETRY__LOG_FORMAT", "json")
        .env("GRODT_TELEMETRY__LOG_LEVEL", "info")
        .env("GRODT_TELEMETRY__OTLP_ENDPOINT", &otlp)
        .env("GRODT_REDIS__URL", redis_url())
        .env(
            "GRODT_REDIS__KEY_PREFIX",
            format!("test-trace-{}:", uuid::Uuid::now_v7().simple()),
        )
        .env("GRODT_DATABASE__URL", db.url())
        .env(
            "GRODT_BACKTEST_WORKER__CATALOG_DIR",
            dir.path().join("catalog"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("worker binary starts");
    let stdout = child.stdout.take().unwrap();
    let worker = Worker(child);
    let grpc = tokio::task::spawn_blocking(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.ok()?;
            if line.contains("listening")
                && let Some(rest) = line.split("\"grpc\":\"").nth(1)
            {
                return rest.split('"').next().map(str::to_owned);
            }
        }
        None
    });
    let grpc = tokio::time::timeout(Duration::from_secs(30), grpc)
        .await
        .expect("worker listens within 30 s")
        .unwrap()
        .expect("worker logged its gRPC address");

    // A traced client: its own tracer provider, a subscriber only for this future.
    let provider =
        grodt_kit::telemetry::tracer_provider("test-client", &otlp, Duration::from_secs(5))
            .unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client =
        BacktestServiceClient::with_interceptor(channel.clone(), TraceContextInterceptor);
    let submitted = async {
        client
            .submit_backtest(v1::SubmitBacktestRequest {
                spec: Some(sma_spec()),
                backtest_id: "traced".into(),
            })
            .instrument(tracing::info_span!("client.submit"))
            .await
    }
    .with_subscriber(subscriber)
    .await
    .expect("submitted");
    assert_eq!(submitted.into_inner().backtest_id, "traced");
    // The exporter blocks on the receiver, which this runtime serves: flush off it.
    let flushed = provider.clone();
    tokio::task::spawn_blocking(move || flushed.force_flush())
        .await
        .unwrap()
        .expect("client span exported");

    // The job is handled (the catalog of this process is empty: it fails, traced).
    let mut plain = BacktestServiceClient::new(channel);
    eventually(30, "the job to finish", || {
        let mut c = plain.clone();
        async move {
            let r = c
                .get_result(v1::GetResultRequest {
                    backtest_id: "traced".into(),
                    detail: None,
                })
                .await
                .ok()?
                .into_inner()
                .result?;
            (r.status >= v1::BacktestStatus::Succeeded as i32).then_some(())
        }
    })
    .await;
    let _ = &mut plain;
    // SIGTERM: the worker drains and flushes its spans.
    let pid = worker.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );

    let spans = eventually(30, "the job span to arrive", || {
        let spans = sink.0.lock().unwrap().clone();
        async move {
            spans
                .iter()
                .any(|s| s.name == "backtest.job")
                .then_some(spans)
        }
    })
    .await;
    drop(worker);

    let client_span = spans
        .iter()
        .find(|s| s.name == "client.submit" && s.service == "test-client")
        .unwrap_or_else(|| panic!("client span exported: {spans:#?}"));
    let trace: Vec<&SpanRecord> = spans
        .iter()
        .filter(|s| s.trace_id == client_span.trace_id)
        .collect();
    let by_id: HashMap<&str, &SpanRecord> =
        trace.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    let server = trace
        .iter()
        .find(|s| {
            s.service == "backtest-worker"
                && s.name.contains("SubmitBacktest")
                && s.parent == client_span.span_id
        })
        .unwrap_or_else(|| panic!("gRPC server span under the client span: {trace:#?}"));
    let job = trace
        .iter()
        .find(|s| s.service == "backtest-worker" && s.name == "backtest.job")
        .unwrap_or_else(|| panic!("job span in the same trace: {spans:#?}"));
    // The job's ancestry leads back to the server span through the envelope's traceparent.
    let mut cursor = *job;
    let mut hops = 0;
    while cursor.span_id != server.span_id {
        cursor = by_id.get(cursor.parent.as_str()).unwrap_or_else(|| {
            panic!("{} has a parent outside the trace: {trace:#?}", cursor.name)
        });
        hops += 1;
        assert!(hops < 10);
    }
    // One root: every span but the client's has its parent in the trace.
    for s in &trace {
        if s.span_id != client_span.span_id {
            assert!(
                by_id.contains_key(s.parent.as_str()),
                "{} is orphaned",
                s.name
            );
        }
    }
}
