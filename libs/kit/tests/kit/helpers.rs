//! A kit server on port 0 with a gated test service, and small clients.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use grodt_kit::config::CommonConfig;
use grodt_kit::{GrpcServerBuilder, KitError, ReadinessCheck};
use http::uri::PathAndQuery;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::Service;

/// Name the tests' own service is served under.
pub const GATED: &str = "grodt.test.v1.Gated";

/// A bound limit on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// Config on 127.0.0.1 port 0, quiet logs.
pub fn test_config() -> CommonConfig {
    let mut config = CommonConfig::with_ports(0, 0);
    config.grpc.addr = "127.0.0.1:0".parse().expect("addr");
    config.http.addr = "127.0.0.1:0".parse().expect("addr");
    config.telemetry.log_level = "warn".into();
    config
}

/// Controls the gated service: every call reports that it started (with the
/// trace context its handler saw) and then waits for a permit on `release`.
#[derive(Clone)]
pub struct Gate {
    started: mpsc::UnboundedSender<Option<(String, String)>>,
    release: Arc<Semaphore>,
}

/// The test's side of a [`Gate`].
pub struct GateControl {
    pub started: mpsc::UnboundedReceiver<Option<(String, String)>>,
    pub release: Arc<Semaphore>,
}

impl GateControl {
    /// Waits until a call reached the handler; returns the trace context it ran under.
    pub async fn next_started(&mut self) -> Option<(String, String)> {
        tokio::time::timeout(WAIT, self.started.recv())
            .await
            .expect("a call should reach the handler")
            .expect("gate alive")
    }
}

/// A gate; `open` lets every call through at once.
pub fn gate(open: bool) -> (Gate, GateControl) {
    let (tx, rx) = mpsc::unbounded_channel();
    let release = Arc::new(Semaphore::new(if open {
        Semaphore::MAX_PERMITS
    } else {
        0
    }));
    (
        Gate {
            started: tx,
            release: release.clone(),
        },
        GateControl {
            started: rx,
            release,
        },
    )
}

/// `grodt.test.v1.Gated/Check`: grpc.health.v1 Check behind a gate, so a test
/// decides when a call finishes.
#[derive(Clone)]
pub struct Gated<S> {
    inner: S,
    gate: Gate,
}

impl<S> NamedService for Gated<S> {
    const NAME: &'static str = GATED;
}

impl<S> Service<http::Request<Body>> for Gated<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let path = request
            .uri()
            .path()
            .replacen(GATED, "grpc.health.v1.Health", 1);
        let mut parts = request.uri().clone().into_parts();
        parts.path_and_query = Some(path.parse().expect("path"));
        *request.uri_mut() = http::Uri::from_parts(parts).expect("uri");
        let mut inner = self.inner.clone();
        let gate = self.gate.clone();
        Box::pin(async move {
            let _ = gate
                .started
                .send(grodt_kit::telemetry::current_traceparent());
            let permit = gate.release.acquire().await.expect("gate open");
            permit.forget();
            inner.call(request).await
        })
    }
}

/// A readiness check the test flips.
pub struct Switch {
    pub name: &'static str,
    pub ok: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait::async_trait]
impl ReadinessCheck for Switch {
    fn name(&self) -> &str {
        self.name
    }
    async fn check(&self) -> Result<(), String> {
        if self.ok.load(std::sync::atomic::Ordering::SeqCst) {
            Ok(())
        } else {
            Err("switched off".into())
        }
    }
}

/// A running kit server.
pub struct TestServer {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub run: JoinHandle<Result<(), KitError>>,
}

impl TestServer {
    /// Starts graceful shutdown.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds `builder` with the gated service added and runs it until stopped.
pub async fn spawn(builder: GrpcServerBuilder, gate: Gate) -> TestServer {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let server = builder
        .add_service(Gated {
            inner: health,
            gate,
        })
        .bind()
        .await
        .expect("bind");
    let grpc_addr = server.grpc_addr();
    let http_addr = server.http_addr();
    assert_ne!(grpc_addr.port(), 0);
    assert_ne!(http_addr.port(), 0);
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(server.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestServer {
        grpc_addr,
        http_addr,
        stop: Some(stop),
        run,
    }
}

pub async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(WAIT)
        .connect()
        .await
        .expect("connect")
}

pub async fn health_check(channel: Channel, service: &str) -> Result<i32, tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
}

/// Calls `grodt.test.v1.Gated/Check` over any tonic client transport.
pub async fn gated_check<T>(transport: T) -> Result<HealthCheckResponse, tonic::Status>
where
    T: tonic::client::GrpcService<Body>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let mut grpc = tonic::client::Grpc::new(transport);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.into().to_string()))?;
    grpc.unary(
        tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        }),
        PathAndQuery::from_static("/grodt.test.v1.Gated/Check"),
        tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// A bare HTTP/1.1 GET: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect http");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .expect("http answer in time")
        .expect("read");
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of one sample line in a Prometheus text page, if present.
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
