//! The gRPC server every service runs: health, reflection (v1 and v1alpha),
//! request timeout, a global concurrency limit, metrics and a tracing span
//! per call, the HTTP side listener, and graceful shutdown.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;
use tonic::body::Body;
use tonic::codegen::Bytes;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Code, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::KitError;
use crate::auth::{self, Tokens};
use crate::config::{CommonConfig, ConfigError, GrpcTlsConfig};
use crate::http::{Readiness, ReadinessCheck};
use crate::metrics::Metrics;
use crate::status::code_label;
use crate::telemetry::extract_parent;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long the HTTP side listener may take to close after the gRPC drain.
const HTTP_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Builds a service's gRPC server and HTTP side listener.
///
/// ```text
/// let server = GrpcServerBuilder::new("risk", &config.common)
///     .reflection(grodt_proto::FILE_DESCRIPTOR_SET)
///     .readiness_check(RedisPing::new(pool.clone()))
///     .add_service(RiskServiceServer::new(handler))
///     .bind()
///     .await?;
/// server.run_until_stopped(grodt_kit::shutdown_signal()).await?;
/// ```
#[must_use]
pub struct GrpcServerBuilder {
    service: String,
    config: CommonConfig,
    version: String,
    descriptors: Vec<&'static [u8]>,
    health_names: Vec<String>,
    checks: Vec<Arc<dyn ReadinessCheck>>,
    routes: RoutesBuilder,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for GrpcServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServerBuilder")
            .field("service", &self.service)
            .field("health_names", &self.health_names)
            .finish_non_exhaustive()
    }
}

impl GrpcServerBuilder {
    /// A server for `service` (the short name: `risk`, `market-data`).
    pub fn new(service: &str, config: &CommonConfig) -> Self {
        Self {
            service: service.to_owned(),
            config: config.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            descriptors: Vec::new(),
            health_names: Vec::new(),
            checks: Vec::new(),
            routes: RoutesBuilder::default(),
            metrics: None,
        }
    }

    /// What every GRODT service registers: `grpc_service` in health, the
    /// contracts' descriptor set for reflection, and readiness that follows
    /// the bus and the store of `infra`. Add the tonic service and `bind`.
    pub fn for_service(
        service: &str,
        grpc_service: &str,
        config: &CommonConfig,
        infra: &crate::Infra,
        file_descriptor_set: &'static [u8],
    ) -> Self {
        Self::new(service, config)
            .reflection(file_descriptor_set)
            .infra(infra)
            .health_service(grpc_service)
    }

    /// The version reported by `build_info` (default: grodt-kit's).
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.to_owned();
        self
    }

    /// An encoded `FileDescriptorSet` to serve over reflection; may be called
    /// for several sets.
    pub fn reflection(mut self, file_descriptor_set: &'static [u8]) -> Self {
        self.descriptors.push(file_descriptor_set);
        self
    }

    /// A fully-qualified service name to report in `grpc.health.v1` besides
    /// the ones added with [`add_service`](Self::add_service).
    pub fn health_service(mut self, name: &str) -> Self {
        self.health_names.push(name.to_owned());
        self
    }

    /// A check `/readyz` runs.
    pub fn readiness_check(mut self, check: impl ReadinessCheck) -> Self {
        self.checks.push(Arc::new(check));
        self
    }

    /// Makes `/readyz` follow the bus and the store the service runs against.
    pub fn infra(self, infra: &crate::Infra) -> Self {
        let (bus, store) = infra.readiness_checks();
        self.readiness_check(bus).readiness_check(store)
    }

    /// Uses a registry the service already registered its own metrics on
    /// (otherwise the server creates one).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Serves a tonic service; its name is reported SERVING in health.
    pub fn add_service<S>(mut self, svc: S) -> Self
    where
        S: Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.health_names.push(S::NAME.to_owned());
        self.routes.add_service(svc);
        self
    }

    /// Binds both listeners (port 0 picks a free port) and builds health and
    /// reflection. Serving starts with [`Server::run_until_stopped`].
    pub async fn bind(mut self) -> Result<Server, KitError> {
        let metrics = match self.metrics.take() {
            Some(metrics) => metrics,
            None => Metrics::new(&self.service, &self.version)?,
        };

        let (health, health_server) = tonic_health::server::health_reporter();
        let mut known: HashSet<String> = self.health_names.iter().cloned().collect();
        known.insert(tonic_health::pb::health_server::SERVICE_NAME.to_owned());
        known.insert(tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME.to_owned());
        known.insert(
            tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME.to_owned(),
        );

        let mut v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        let mut v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for set in &self.descriptors {
            v1 = v1.register_encoded_file_descriptor_set(set);
            v1alpha = v1alpha.register_encoded_file_descriptor_set(set);
        }
        let reflection_v1 = v1
            .build_v1()
            .map_err(|e| KitError::Reflection(e.to_string()))?;
        let reflection_v1alpha = v1alpha
            .build_v1alpha()
            .map_err(|e| KitError::Reflection(e.to_string()))?;

        self.routes
            .add_service(health_server)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        let grpc_listener = TcpListener::bind(self.config.grpc.addr)
            .await
            .map_err(|source| KitError::Bind {
                key: "grpc.addr",
                addr: self.config.grpc.addr,
                source,
            })?;
        let http_listener = TcpListener::bind(self.config.http.addr)
            .await
            .map_err(|source| KitError::Bind {
                key: "http.addr",
                addr: self.config.http.addr,
                source,
            })?;
        let grpc_addr = grpc_listener
            .local_addr()
            .map_err(|source| KitError::Bind {
                key: "grpc.addr",
                addr: self.config.grpc.addr,
                source,
            })?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|source| KitError::Bind {
                key: "http.addr",
                addr: self.config.http.addr,
                source,
            })?;

        let mut health_names = self.health_names;
        health_names.push(String::new());
        for name in &health_names {
            health
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }

        let tls = server_tls(&self.config.grpc.tls)?;
        if tls.is_some() {
            tracing::info!(service = %self.service, "gRPC listener speaks TLS");
        }
        let tokens = auth::tokens_for(&self.config.auth, grpc_addr)?;
        if tokens.is_some() {
            tracing::info!(service = %self.service, "gRPC calls need a bearer token (auth)");
        }
        let server = &self.config.server;
        let layer = KitLayer {
            shared: Arc::new(Shared {
                metrics: metrics.clone(),
                limit: Arc::new(Semaphore::new(server.concurrency_limit)),
                concurrency_limit: server.concurrency_limit,
                timeout: Duration::from_millis(server.request_timeout_ms),
                known_services: known,
                tokens,
            }),
        };
        Ok(Server {
            service: self.service,
            grpc_listener,
            http_listener,
            grpc_addr,
            http_addr,
            routes: self.routes,
            layer,
            health,
            health_names,
            readiness: Readiness::new(self.checks),
            metrics,
            grace: Duration::from_millis(server.shutdown_grace_ms),
            tls,
        })
    }
}

/// Reads a PEM file of `[grpc.tls]`; errors name the key and the file.
fn read_pem(key: &str, path: &std::path::Path, want: &str) -> Result<Vec<u8>, ConfigError> {
    let pem = std::fs::read(path)
        .map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&pem);
    if !text.contains("-----BEGIN ") || !text.contains(want) {
        return Err(ConfigError::invalid(
            key,
            format!("{}: no PEM block with {want}", path.display()),
        ));
    }
    Ok(pem)
}

/// The listener's TLS settings from `[grpc.tls]` (None when off), checked
/// now so that a bad certificate or key stops the server before it serves.
fn server_tls(config: &GrpcTlsConfig) -> Result<Option<ServerTlsConfig>, ConfigError> {
    if !config.enabled() {
        return Ok(None);
    }
    let cert = read_pem("grpc.tls.cert_file", &config.cert_file, "CERTIFICATE")?;
    let key = read_pem("grpc.tls.key_file", &config.key_file, "PRIVATE KEY")?;
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if !config.client_ca_file.as_os_str().is_empty() {
        let ca = read_pem(
            "grpc.tls.client_ca_file",
            &config.client_ca_file,
            "CERTIFICATE",
        )?;
        tls = tls.client_ca_root(Certificate::from_pem(ca));
    }
    // Builds the acceptor once: a key that does not parse or match fails here.
    tonic::transport::Server::builder()
        .tls_config(tls.clone())
        .map_err(|e| {
            ConfigError::invalid(
                "grpc.tls.key_file",
                format!(
                    "{} / {}: {e}",
                    config.cert_file.display(),
                    config.key_file.display()
                ),
            )
        })?;
    Ok(Some(tls))
}

/// Bound listeners, ready to serve.
#[derive(Debug)]
pub struct Server {
    service: String,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    routes: RoutesBuilder,
    layer: KitLayer,
    health: HealthReporter,
    health_names: Vec<String>,
    readiness: Readiness,
    metrics: Metrics,
    grace: Duration,
    tls: Option<ServerTlsConfig>,
}

impl Server {
    /// The bound gRPC address (the real port when configured with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound HTTP address of `/metrics`, `/healthz`, `/readyz`.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The service's metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Serves until `shutdown` completes, then: health NOT_SERVING and
    /// `/readyz` 503, stop accepting gRPC connections, let in-flight calls
    /// finish within `server.shutdown_grace_ms`, close the HTTP listener, return.
    pub async fn run_until_stopped<F>(self, shutdown: F) -> Result<(), KitError>
    where
        F: Future<Output = ()> + Send,
    {
        let Server {
            service,
            grpc_listener,
            http_listener,
            routes,
            layer,
            health,
            health_names,
            readiness,
            metrics,
            grace,
            tls,
            ..
        } = self;

        let (grpc_stop, grpc_stopped) = oneshot::channel::<()>();
        let (http_stop, http_stopped) = oneshot::channel::<()>();
        let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder
                .tls_config(tls)
                .map_err(|e| KitError::Config(ConfigError::invalid("grpc.tls.key_file", e)))?;
        }
        let mut grpc = tokio::spawn(
            builder
                .layer(layer)
                .add_routes(routes.routes())
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = grpc_stopped.await;
                }),
        );
        let app = crate::http::router(metrics, readiness.clone());
        let mut http = tokio::spawn(
            axum::serve(http_listener, app)
                .with_graceful_shutdown(async {
                    let _ = http_stopped.await;
                })
                .into_future(),
        );
        tracing::info!(service = %service, "serving");

        tokio::select! {
            () = shutdown => {}
            exit = &mut grpc => return Err(early_exit("gRPC", exit.map(|r| r.map_err(|e| e.to_string())))),
            exit = &mut http => return Err(early_exit("HTTP", exit.map(|r| r.map_err(|e| e.to_string())))),
        }

        // Tell balancers and watchers first, then stop accepting.
        readiness.set_draining();
        for name in &health_names {
            health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        tracing::info!(service = %service, grace_ms = grace.as_millis() as u64, "shutting down, draining in-flight calls");
        let _ = grpc_stop.send(());

        let deadline = Instant::now() + grace;
        let mut result = Ok(());
        match tokio::time::timeout_at(deadline, &mut grpc).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => result = Err(KitError::Serve(format!("gRPC server: {e}"))),
            Ok(Err(e)) => result = Err(KitError::Serve(format!("gRPC server task: {e}"))),
            Err(_) => {
                tracing::warn!(service = %service, "grace period over with gRPC calls still in flight");
                grpc.abort();
            }
        }
        // The side listener outlives the drain so probes see 503 and the last
        // scrape sees the final counts.
        let _ = http_stop.send(());
        if tokio::time::timeout(HTTP_CLOSE_TIMEOUT, &mut http)
            .await
            .is_err()
        {
            http.abort();
        }
        tracing::info!(service = %service, "stopped");
        result
    }
}

fn early_exit(which: &str, exit: Result<Result<(), String>, tokio::task::JoinError>) -> KitError {
    match exit {
        Ok(Ok(())) => KitError::Serve(format!("{which} server stopped before shutdown")),
        Ok(Err(e)) => KitError::Serve(format!("{which} server: {e}")),
        Err(e) => KitError::Serve(format!("{which} server task: {e}")),
    }
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            futures::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                futures::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = futures::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

struct Shared {
    metrics: Metrics,
    /// `None`: no token needed (see `auth.mode`).
    tokens: Option<Tokens>,
    limit: Arc<Semaphore>,
    concurrency_limit: usize,
    timeout: Duration,
    known_services: HashSet<String>,
}

impl Shared {
    /// `/pkg.Service/Method` for served services; anything else is one label,
    /// so scanners probing random paths cannot blow up label cardinality.
    fn method_label(&self, path: &str) -> String {
        let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
        if self.known_services.contains(service) {
            path.to_owned()
        } else {
            "unknown".to_owned()
        }
    }
}

/// Timeout, concurrency limit, metrics and a tracing span per call.
#[derive(Clone)]
struct KitLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KitLayer")
            .field("concurrency_limit", &self.shared.concurrency_limit)
            .field("timeout", &self.shared.timeout)
            .finish()
    }
}

impl<S> Layer<S> for KitLayer {
    type Service = KitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KitService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Clone)]
struct KitService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, ResBody> Service<http::Request<Body>> for KitService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let method = shared.method_label(request.uri().path());
        let span = tracing::info_span!(
            "grpc.request",
            otel.name = %method,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        if let Some(parent) = extract_parent(request.headers()) {
            // Fails only when the span is disabled; then there is nothing to parent.
            let _ = span.set_parent(parent);
        }

        let refused = shared.tokens.as_ref().and_then(|tokens| {
            let header = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            // The client's certificate, verified by the TLS handshake against
            // grpc.tls.client_ca_file (mTLS); none over plaintext.
            let certs =
                request
                    .extensions()
                    .get::<tonic::transport::server::TlsConnectInfo<
                        tonic::transport::server::TcpConnectInfo,
                    >>()
                    .and_then(tonic::transport::server::TlsConnectInfo::peer_certs);
            let leaf = certs.as_ref().and_then(|c| c.first()).map(AsRef::as_ref);
            tokens.check(request.uri().path(), header, leaf).err()
        });

        Box::pin(async move {
            let start = Instant::now();
            let deadline = start + shared.timeout;
            let mut recorder = Recorder::start(shared.clone(), method, span.clone(), start);

            if let Some((why, status)) = refused {
                shared
                    .metrics
                    .grpc_auth_refusals_total
                    .with_label_values(&[recorder.method.as_str(), why.label()])
                    .inc();
                recorder.finish(status.code());
                return Ok(status_response(status));
            }

            let permit =
                match tokio::time::timeout_at(deadline, shared.limit.clone().acquire_owned()).await
                {
                    Ok(Ok(permit)) => permit,
                    // The semaphore is never closed; treat it like a full one.
                    Ok(Err(_)) | Err(_) => {
                        recorder.finish(Code::ResourceExhausted);
                        return Ok(status_response(Status::resource_exhausted(format!(
                            "server busy: {} calls in flight for {} ms",
                            shared.concurrency_limit,
                            shared.timeout.as_millis()
                        ))));
                    }
                };
            recorder.permit = Some(permit);

            match tokio::time::timeout_at(deadline, inner.call(request).instrument(span)).await {
                Err(_) => {
                    recorder.finish(Code::DeadlineExceeded);
                    Ok(status_response(Status::deadline_exceeded(format!(
                        "no response within server.request_timeout_ms = {}",
                        shared.timeout.as_millis()
                    ))))
                }
                Ok(Err(e)) => {
                    recorder.finish(Code::Unknown);
                    Err(e)
                }
                Ok(Ok(response)) => {
                    // A trailers-only response carries its status in the headers.
                    if let Some(status) = Status::from_header_map(response.headers()) {
                        recorder.finish(status.code());
                        Ok(response.map(Body::new))
                    } else {
                        Ok(response.map(|body| {
                            Body::new(RecordingBody {
                                inner: Body::new(body),
                                recorder: Some(recorder),
                            })
                        }))
                    }
                }
            }
        })
    }
}

fn status_response(status: Status) -> http::Response<Body> {
    status.into_http::<Body>()
}

/// Counts a call once, when its status is known; a call dropped before that
/// (the client went away) counts as CANCELLED.
struct Recorder {
    shared: Arc<Shared>,
    method: String,
    span: tracing::Span,
    start: Instant,
    permit: Option<OwnedSemaphorePermit>,
    done: bool,
}

impl Recorder {
    fn start(shared: Arc<Shared>, method: String, span: tracing::Span, start: Instant) -> Self {
        shared.metrics.grpc_in_flight_requests.inc();
        Self {
            shared,
            method,
            span,
            start,
            permit: None,
            done: false,
        }
    }

    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.permit = None;
        let metrics = &self.shared.metrics;
        metrics.grpc_in_flight_requests.dec();
        metrics
            .grpc_requests_total
            .with_label_values(&[self.method.as_str(), code_label(code)])
            .inc();
        metrics
            .grpc_request_duration_seconds
            .with_label_values(&[self.method.as_str()])
            .observe(self.start.elapsed().as_secs_f64());
        self.span.record("rpc.grpc.status_code", code as i32);
        if code != Code::Ok {
            self.span.in_scope(|| {
                tracing::info!(code = code_label(code), "call failed");
            });
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// Watches the response body for the `grpc-status` trailer.
struct RecordingBody {
    inner: Body,
    recorder: Option<Recorder>,
}

impl HttpBody for RecordingBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = match &this.recorder {
            Some(recorder) => {
                let _entered = recorder.span.enter();
                Pin::new(&mut this.inner).poll_frame(cx)
            }
            None => Pin::new(&mut this.inner).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code =
                        Status::from_header_map(trailers).map_or(Code::Unknown, |s| s.code());
                    if let Some(mut recorder) = this.recorder.take() {
                        recorder.finish(code);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                if let Some(mut recorder) = this.recorder.take() {
                    recorder.finish(Code::Unknown);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
