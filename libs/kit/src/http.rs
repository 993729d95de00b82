//! The HTTP side listener: `/metrics`, `/healthz` and `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::Metrics;

/// How long one readiness check may take before it counts as failed, so a
/// hung dependency makes `/readyz` answer 503 instead of hanging the probe.
pub const READINESS_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A dependency the service needs before it takes traffic (a Redis or Postgres ping).
#[async_trait::async_trait]
pub trait ReadinessCheck: Send + Sync + 'static {
    /// Short name shown when the check fails (`redis`, `postgres`).
    fn name(&self) -> &str;
    /// `Err(reason)` while the dependency is not usable.
    async fn check(&self) -> Result<(), String>;
}

/// The checks behind `/readyz`, plus the draining flag set at shutdown.
#[derive(Clone)]
pub struct Readiness {
    checks: Arc<Vec<Arc<dyn ReadinessCheck>>>,
    draining: Arc<AtomicBool>,
    check_timeout: Duration,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field(
                "checks",
                &self
                    .checks
                    .iter()
                    .map(|c| c.name().to_owned())
                    .collect::<Vec<_>>(),
            )
            .field("draining", &self.draining.load(Ordering::Relaxed))
            .finish()
    }
}

impl Readiness {
    /// Readiness over these checks.
    pub fn new(checks: Vec<Arc<dyn ReadinessCheck>>) -> Self {
        Self {
            checks: Arc::new(checks),
            draining: Arc::new(AtomicBool::new(false)),
            check_timeout: READINESS_CHECK_TIMEOUT,
        }
    }

    /// Overrides [`READINESS_CHECK_TIMEOUT`].
    pub fn with_check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout;
        self
    }

    /// From now on the service reports not ready (it is shutting down).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// `Ok` when every check passes; otherwise the first failing check's
    /// name and reason (checks run concurrently).
    pub async fn evaluate(&self) -> Result<(), String> {
        if self.draining.load(Ordering::SeqCst) {
            return Err("shutting down".to_owned());
        }
        let limit = self.check_timeout;
        let results = futures::future::join_all(self.checks.iter().map(|check| async move {
            match tokio::time::timeout(limit, check.check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(reason)) => Err(format!("{}: {reason}", check.name())),
                Err(_) => Err(format!(
                    "{}: no answer within {} ms",
                    check.name(),
                    limit.as_millis()
                )),
            }
        }))
        .await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, String>>()
            .map(|_| ())
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    readiness: Readiness,
}

/// The axum router of the side listener.
pub fn router(metrics: Metrics, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz_handler))
        .with_state(AppState { metrics, readiness })
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    // `ready` means "/readyz would answer 200", even when nothing probes /readyz.
    let ready = state.readiness.evaluate().await.is_ok();
    state.metrics.ready.set(i64::from(ready));
    match state.metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz_handler(State(state): State<AppState>) -> Response {
    match state.readiness.evaluate().await {
        Ok(()) => {
            state.metrics.ready.set(1);
            (StatusCode::OK, "ready\n").into_response()
        }
        Err(reason) => {
            state.metrics.ready.set(0);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, Result<(), &'static str>);

    #[async_trait::async_trait]
    impl ReadinessCheck for Fixed {
        fn name(&self) -> &str {
            self.0
        }
        async fn check(&self) -> Result<(), String> {
            self.1.map_err(str::to_owned)
        }
    }

    struct Hangs;

    #[async_trait::async_trait]
    impl ReadinessCheck for Hangs {
        fn name(&self) -> &str {
            "hangs"
        }
        async fn check(&self) -> Result<(), String> {
            futures::future::pending().await
        }
    }

    #[tokio::test]
    async fn the_failing_check_is_named() {
        let readiness = Readiness::new(vec![
            Arc::new(Fixed("redis", Ok(()))),
            Arc::new(Fixed("postgres", Err("connection refused"))),
        ]);
        assert_eq!(
            readiness.evaluate().await,
            Err("postgres: connection refused".to_owned())
        );
        assert_eq!(
            Readiness::new(vec![Arc::new(Fixed("redis", Ok(())))])
                .evaluate()
                .await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn a_hung_check_fails_after_its_timeout() {
        let readiness =
            Readiness::new(vec![Arc::new(Hangs)]).with_check_timeout(Duration::from_millis(20));
        let err = readiness.evaluate().await.expect_err("hung check");
        assert!(err.starts_with("hangs: no answer"), "{err}");
    }

    #[tokio::test]
    async fn draining_is_not_ready() {
        let readiness = Readiness::new(vec![]);
        assert_eq!(readiness.evaluate().await, Ok(()));
        readiness.set_draining();
        assert_eq!(readiness.evaluate().await, Err("shutting down".to_owned()));
    }
}
