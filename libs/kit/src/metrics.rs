//! A per-service Prometheus registry with the metrics every service exports.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::KitError;

/// The service's registry and the kit's own metrics, named
/// `grodt_<service>_<what>` (with `-` in the service name turned into `_`).
///
/// Cheap to clone: the metrics are shared handles.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    prefix: String,
    /// `grpc_requests_total{method,code}`
    pub grpc_requests_total: IntCounterVec,
    /// `grpc_request_duration_seconds{method}`
    pub grpc_request_duration_seconds: HistogramVec,
    /// `grpc_in_flight_requests`
    pub grpc_in_flight_requests: IntGauge,
    /// `grpc_auth_refusals_total{method,reason}` (missing, unknown, forbidden)
    pub grpc_auth_refusals_total: IntCounterVec,
    /// `ready`: 1 when every readiness check passed (refreshed by `/readyz` and each scrape).
    pub ready: IntGauge,
}

impl Metrics {
    /// A fresh registry for `service` (`market-data` gives `grodt_market_data_`),
    /// with the process collector and `build_info{version}` set to 1.
    pub fn new(service: &str, version: &str) -> Result<Self, KitError> {
        let prefix = format!("grodt_{}_", service.replace('-', "_"));
        let registry = Registry::new();
        let register_err = KitError::Metrics;

        let grpc_requests_total = IntCounterVec::new(
            Opts::new(
                format!("{prefix}grpc_requests_total"),
                "gRPC calls finished, by method and status code",
            ),
            &["method", "code"],
        )
        .map_err(register_err)?;
        let grpc_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                format!("{prefix}grpc_request_duration_seconds"),
                "gRPC call duration until its status is sent",
            ),
            &["method"],
        )
        .map_err(register_err)?;
        let grpc_in_flight_requests = IntGauge::new(
            format!("{prefix}grpc_in_flight_requests"),
            "gRPC calls being served",
        )
        .map_err(register_err)?;
        let grpc_auth_refusals_total = IntCounterVec::new(
            Opts::new(
                format!("{prefix}grpc_auth_refusals_total"),
                "gRPC calls refused for a missing or unknown token or a role too low",
            ),
            &["method", "reason"],
        )
        .map_err(register_err)?;
        let ready = IntGauge::new(
            format!("{prefix}ready"),
            "1 when every readiness check passes (as /readyz would answer 200)",
        )
        .map_err(register_err)?;
        let build_info = IntGaugeVec::new(
            Opts::new(format!("{prefix}build_info"), "Build version; always 1"),
            &["version"],
        )
        .map_err(register_err)?;
        build_info.with_label_values(&[version]).set(1);

        registry
            .register(Box::new(grpc_requests_total.clone()))
            .map_err(register_err)?;
        registry
            .register(Box::new(grpc_request_duration_seconds.clone()))
            .map_err(register_err)?;
        registry
            .register(Box::new(grpc_in_flight_requests.clone()))
            .map_err(register_err)?;
        registry
            .register(Box::new(grpc_auth_refusals_total.clone()))
            .map_err(register_err)?;
        registry
            .register(Box::new(ready.clone()))
            .map_err(register_err)?;
        registry
            .register(Box::new(build_info))
            .map_err(register_err)?;
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .map_err(register_err)?;

        Ok(Self {
            registry,
            prefix,
            grpc_requests_total,
            grpc_request_duration_seconds,
            grpc_in_flight_requests,
            grpc_auth_refusals_total,
            ready,
        })
    }

    /// `grodt_<service>_<what>`: the name a service gives its own metric.
    pub fn name(&self, what: &str) -> String {
        format!("{}{what}", self.prefix)
    }

    /// The registry, for a service to register its own metrics on.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers a histogram named `grodt_<service>_<what>`; a convenience for
    /// the most common custom metric.
    pub fn histogram(
        &self,
        what: &str,
        help: &str,
        buckets: Vec<f64>,
    ) -> Result<Histogram, KitError> {
        let histogram =
            Histogram::with_opts(HistogramOpts::new(self.name(what), help).buckets(buckets))?;
        self.registry.register(Box::new(histogram.clone()))?;
        Ok(histogram)
    }

    /// `grodt_<service>_journal_batch_inputs`, registered: the inputs each
    /// journal commit carried, for the services that journal their inputs
    /// (inputs read together share one commit).
    pub fn journal_batch(&self) -> Result<Histogram, KitError> {
        self.histogram(
            "journal_batch_inputs",
            "inputs journaled per commit (inputs read together share one commit)",
            vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
        )
    }

    /// The Prometheus text exposition of everything registered.
    pub fn render(&self) -> Result<String, KitError> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| KitError::Metrics(prometheus::Error::Msg(e.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_service_prefix_and_process_metrics_do_not() {
        let metrics = Metrics::new("backtest-worker", "1.2.3").expect("metrics");
        metrics
            .grpc_requests_total
            .with_label_values(&["/grodt.v1.BacktestService/RunBacktest", "OK"])
            .inc();
        let text = metrics.render().expect("render");
        assert!(text.contains(
            "grodt_backtest_worker_grpc_requests_total{code=\"OK\",method=\"/grodt.v1.BacktestService/RunBacktest\"} 1"
        ), "{text}");
        assert!(
            text.contains("grodt_backtest_worker_build_info{version=\"1.2.3\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("grodt_backtest_worker_grpc_in_flight_requests 0"),
            "{text}"
        );
        assert!(text.contains("grodt_backtest_worker_ready 0"), "{text}");
        #[cfg(target_os = "linux")]
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
    }

    #[test]
    fn services_register_their_own_metrics() {
        let metrics = Metrics::new("risk", "0").expect("metrics");
        assert_eq!(
            metrics.name("orders_rejected_total"),
            "grodt_risk_orders_rejected_total"
        );
        let h = metrics
            .histogram("check_seconds", "time to check an order", vec![0.001, 0.01])
            .expect("register");
        h.observe(0.005);
        let text = metrics.render().expect("render");
        assert!(
            text.contains("grodt_risk_check_seconds_bucket{le=\"0.01\"} 1"),
            "{text}"
        );
        assert!(
            metrics
                .histogram("check_seconds", "again", vec![1.0])
                .is_err(),
            "a duplicate name is refused"
        );
    }
}
