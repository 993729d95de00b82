//! Spawning services on port 0 and talking to them over plain sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use grodt::up::Member;
use grodt_bus::{BackPressure, InProcessBus};
use grodt_kit::config::ConfigSource;
use grodt_kit::{Infra, KitError};
use grodt_store::testing::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

/// A service running in this test process.
pub struct Spawned {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), KitError>>,
    /// The service's data directory (its catalog, if it has one); removed on drop.
    _data_dir: tempfile::TempDir,
}

impl Spawned {
    /// Asks it to drain and waits for it to stop.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("service did not stop within 15 s")
            .expect("service task panicked")
            .expect("service stopped with an error");
    }
}

/// Embedded infrastructure: an in-process bus and a fresh SQLite store.
pub async fn embedded_infra() -> (Infra, TestDb) {
    let db = TestDb::sqlite().await;
    let bus = InProcessBus::new(BackPressure::default(), 200_000).expect("in-process bus");
    let infra = Infra {
        bus: Arc::new(bus),
        store: db.store().clone(),
    };
    (infra, db)
}

/// Builds `member` on 127.0.0.1:0 and runs it in the background.
pub async fn spawn(member: &Member, infra: Infra) -> Spawned {
    let mut config = (member.defaults)();
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    config.common.grpc.addr = any;
    config.common.http.addr = any;
    let data_dir = tempfile::tempdir().expect("data dir");
    let source = ConfigSource {
        dir: data_dir.path().join("no-config"),
        ..ConfigSource::default()
    };
    let server = (member.build)(config, infra, source, data_dir.path().to_path_buf())
        .await
        .unwrap_or_else(|e| panic!("{} failed to bind: {e}", member.name));
    let (grpc, http) = (server.grpc_addr(), server.http_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    Spawned {
        grpc,
        http,
        stop,
        task,
        _data_dir: data_dir,
    }
}

pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"))
}

/// GET over HTTP/1.0; returns the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
        .await
        .expect("HTTP response within 10 s")
        .expect("read");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The services a server lists through v1alpha reflection (what grpcurl 1.8.6 speaks).
pub async fn reflection_services(addr: SocketAddr) -> Vec<String> {
    let mut client = ServerReflectionClient::new(channel(addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection call")
        .into_inner();
    let first = responses
        .message()
        .await
        .expect("reflection stream")
        .expect("one reflection response");
    match first.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

/// The value of the sample of `metric` whose labels include every `labels` pair.
pub fn sample(exposition: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(metric)?.strip_prefix('{')?;
        let (label_text, value) = rest.split_once("} ")?;
        let all = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if all { value.trim().parse().ok() } else { None }
    })
}
