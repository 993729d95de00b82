//! Logs (JSON or pretty), OTLP trace export and W3C trace context.
//!
//! Spans always get OpenTelemetry ids, with or without an exporter, so trace
//! context flows through gRPC calls and events even when nothing collects it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::KitError;
use crate::config::{LogFormat, TelemetryConfig};

/// Bound on one OTLP export and on the flush at shutdown, so a missing
/// collector costs at most this long and never blocks a service.
pub const OTLP_TIMEOUT: Duration = Duration::from_secs(3);

/// Flushes pending spans when dropped (bounded by [`OTLP_TIMEOUT`] per
/// export). The pipeline itself lives as long as the process, because every
/// service embedded in the process shares it.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    installed: bool,
}

impl TelemetryGuard {
    /// Whether this call installed the process-wide subscriber; false for
    /// every call after the first (services embedded in one process share it).
    pub fn installed(&self) -> bool {
        self.installed
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Export errors are already logged by the SDK; nobody is left to tell.
            let _ = provider.force_flush();
        }
    }
}

/// A tracer provider for `service`, exporting over OTLP/gRPC to `endpoint`
/// with `timeout` per export, or exporting nothing when `endpoint` is empty.
/// Needs a Tokio runtime when an endpoint is set.
pub fn tracer_provider(
    service: &str,
    endpoint: &str,
    timeout: Duration,
) -> Result<SdkTracerProvider, KitError> {
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    if endpoint.is_empty() {
        return Ok(builder.build());
    }
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(timeout)
        .build()
        .map_err(|e| KitError::Telemetry(format!("telemetry.otlp_endpoint `{endpoint}`: {e}")))?;
    Ok(builder.with_batch_exporter(exporter).build())
}

/// Whether the kit installed the process-wide subscriber; the lock also
/// serializes services starting at once in one process.
static INSTALLED: Mutex<bool> = Mutex::new(false);

/// Installs logging and tracing for `service`. Safe to call more than once in
/// a process: later calls validate their config and keep the first
/// subscriber and its export pipeline.
pub fn init(service: &str, config: &TelemetryConfig) -> Result<TelemetryGuard, KitError> {
    let filter = EnvFilter::try_new(&config.log_level)
        .map_err(|e| KitError::Telemetry(format!("telemetry.log_level: {e}")))?;
    let mut installed = INSTALLED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if *installed {
        return Ok(TelemetryGuard {
            provider: None,
            installed: false,
        });
    }
    let provider = tracer_provider(service, &config.otlp_endpoint, OTLP_TIMEOUT)?;
    let tracer = provider.tracer(service.to_owned());

    let (json, pretty) = match config.log_format {
        LogFormat::Json => (
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            ),
            None,
        ),
        LogFormat::Pretty => (None, Some(tracing_subscriber::fmt::layer().pretty())),
    };
    // The log filter applies to log output only; spans for traces are kept at
    // INFO whatever the log level, so trace context never disappears.
    let logs = json
        .map(|l| l.boxed())
        .or_else(|| pretty.map(|l| l.boxed()))
        .with_filter(filter);
    let traces = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(LevelFilter::INFO);

    if tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .is_err()
    {
        // Someone else owns the global subscriber; nothing can reach this pipeline.
        let _ = provider.shutdown_with_timeout(OTLP_TIMEOUT);
        return Ok(TelemetryGuard {
            provider: None,
            installed: false,
        });
    }
    *installed = true;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(TelemetryGuard {
        provider: Some(provider),
        installed: true,
    })
}

/// Writes trace context into gRPC metadata.
struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Reads trace context from HTTP headers.
pub(crate) struct HeaderExtractor<'a>(pub(crate) &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// A tonic client interceptor putting the current span's `traceparent` and
/// `tracestate` into every outgoing call:
/// `XClient::with_interceptor(channel, TraceContextInterceptor)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let cx = tracing::Span::current().context();
        TraceContextPropagator::new()
            .inject_context(&cx, &mut MetadataInjector(request.metadata_mut()));
        Ok(request)
    }
}

/// The remote parent carried by incoming headers, if they hold a valid `traceparent`.
pub(crate) fn extract_parent(headers: &http::HeaderMap) -> Option<Context> {
    // From an empty context: `extract` falls back to the thread's current
    // one, which inside a traced span would pass for a valid parent.
    let cx = TraceContextPropagator::new()
        .extract_with_context(&Context::new(), &HeaderExtractor(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

/// The current span's W3C `(traceparent, tracestate)`, for an event envelope;
/// `None` outside a traced span.
pub fn current_traceparent() -> Option<(String, String)> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    let traceparent = carrier.remove("traceparent")?;
    let tracestate = carrier.remove("tracestate").unwrap_or_default();
    Some((traceparent, tracestate))
}

/// Makes `span` a child of the trace an event carries (its envelope's
/// `traceparent`/`tracestate`), so one trace follows a request across the bus;
/// nothing changes when the envelope carries none.
pub fn follow_envelope(span: &tracing::Span, envelope: &grodt_bus::Envelope) {
    if let Some(parent) = envelope
        .traceparent
        .as_deref()
        .and_then(|p| context_from_traceparent(p, envelope.tracestate.as_deref().unwrap_or("")))
    {
        // Fails only when the span is disabled; then there is nothing to parent.
        let _ = span.set_parent(parent);
    }
}

/// Makes `span` a child of the trace `traceparent`/`tracestate` name, for
/// work done now on behalf of something that happened in that trace (a fill
/// of an order placed there), and links it to the span current now (what
/// triggered the work, in its own trace). Returns whether `span` was
/// re-parented: with a malformed `traceparent` it stays where it was
/// created (under the current span).
pub fn continue_trace(span: &tracing::Span, traceparent: &str, tracestate: &str) -> bool {
    let Some(parent) = context_from_traceparent(traceparent, tracestate) else {
        return false;
    };
    let here = tracing::Span::current()
        .context()
        .span()
        .span_context()
        .clone();
    let there = parent.span().span_context().trace_id();
    if span.set_parent(parent).is_err() {
        // A disabled span: nothing is recorded either way.
        return false;
    }
    if here.is_valid() && here.trace_id() != there {
        span.add_link(here);
    }
    true
}

/// Links `span` to the span current now. Made with `parent: None`, `span` is
/// then the root of a trace of its own that points back at the long-running
/// work it is part of: a replay's bars are one trace each (a bar to its
/// fills), not all of them one trace of the whole replay.
pub fn link_to_current(span: &tracing::Span) {
    let here = tracing::Span::current()
        .context()
        .span()
        .span_context()
        .clone();
    if here.is_valid() {
        span.add_link(here);
    }
}

/// The remote context an event's `traceparent`/`tracestate` describe, to make
/// it the parent of the consuming span (`span.set_parent(cx)`); `None` when
/// `traceparent` is empty or malformed.
pub fn context_from_traceparent(traceparent: &str, tracestate: &str) -> Option<Context> {
    let mut carrier = HashMap::new();
    carrier.insert("traceparent".to_owned(), traceparent.to_owned());
    if !tracestate.is_empty() {
        carrier.insert("tracestate".to_owned(), tracestate.to_owned());
    }
    // From an empty context, as above: a malformed value gives `None`, never
    // the current span's context.
    let cx = TraceContextPropagator::new().extract_with_context(&Context::new(), &carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_traceparents_give_no_context() {
        assert!(context_from_traceparent("", "").is_none());
        assert!(context_from_traceparent("00-xyz-01", "").is_none());
        assert!(
            context_from_traceparent(
                "00-00000000000000000000000000000000-0000000000000000-01",
                ""
            )
            .is_none(),
            "all-zero ids are invalid"
        );
    }

    #[test]
    fn a_valid_traceparent_keeps_ids_and_state() {
        let cx = context_from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "vendor=abc",
        )
        .expect("valid");
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_remote());
        assert_eq!(sc.trace_state().header(), "vendor=abc");
    }

    /// A subscriber that gives spans OpenTelemetry ids (nothing exported).
    fn traced() -> impl tracing::Subscriber + Send + Sync {
        let provider = tracer_provider("test", "", OTLP_TIMEOUT).expect("no exporter");
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
    }

    #[test]
    fn continued_work_joins_the_named_trace_not_the_current_one() {
        tracing::subscriber::with_default(traced(), || {
            let earlier = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let now = tracing::info_span!("now");
            let _in_now = now.enter();
            let now_trace = now.context().span().span_context().trace_id();
            let work = tracing::info_span!("work");
            assert!(continue_trace(&work, earlier, ""));
            let sc = work.context().span().span_context().clone();
            assert_eq!(
                sc.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            assert_ne!(sc.trace_id(), now_trace);
            // What the work publishes carries the earlier trace.
            let (published, _) = work.in_scope(current_traceparent).expect("traced");
            assert!(
                published.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{published}"
            );
            // A malformed one leaves the work under the current span.
            let other = tracing::info_span!("other");
            assert!(!continue_trace(&other, "00-nope", ""));
            assert_eq!(other.context().span().span_context().trace_id(), now_trace);
        });
    }

    #[test]
    fn outside_a_span_there_is_no_traceparent() {
        assert_eq!(current_traceparent(), None);
    }
}
