//! Graceful shutdown: NOT_SERVING first, no new connections, in-flight calls finish.

use std::time::{Duration, Instant};

use grodt_kit::GrpcServerBuilder;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{GATED, WAIT, channel, gate, gated_check, http_get, spawn, test_config};

/// Waits until connecting to `addr` is refused.
async fn until_refused(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_an_in_flight_call_and_refuses_new_connections() {
    let (g, mut control) = gate(false);
    let mut server = spawn(GrpcServerBuilder::new("kit-test", &test_config()), g).await;
    let ch = channel(server.grpc_addr).await;

    // A watcher sees the status change the way a load balancer would.
    let mut watch = HealthClient::new(ch.clone())
        .watch(HealthCheckRequest {
            service: GATED.into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("watch").expect("status");
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let slow = tokio::spawn(gated_check(ch.clone()));
    control.next_started().await;
    server.stop();

    let next = tokio::time::timeout(WAIT, watch.message())
        .await
        .expect("status change in time")
        .expect("watch")
        .expect("status");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    drop(watch);

    // Draining: the listener is closed while the slow call is still held.
    until_refused(server.grpc_addr).await;
    assert!(!slow.is_finished());

    control.release.add_permits(1);
    let answer = tokio::time::timeout(WAIT, slow)
        .await
        .expect("in-flight call finishes")
        .expect("join")
        .expect("the in-flight call completes OK");
    assert_eq!(answer.status, ServingStatus::Serving as i32);

    tokio::time::timeout(WAIT, server.run)
        .await
        .expect("shutdown finishes")
        .expect("join")
        .expect("clean stop");
    until_refused(server.grpc_addr).await;
    assert!(
        tokio::net::TcpStream::connect(server.http_addr)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_during_the_drain() {
    let mut config = test_config();
    config.server.shutdown_grace_ms = 60_000;
    let (g, mut control) = gate(false);
    let mut server = spawn(GrpcServerBuilder::new("kit-test", &config), g).await;
    let ch = channel(server.grpc_addr).await;
    let http_addr = server.http_addr;
    assert_eq!(http_get(http_addr, "/readyz").await.0, 200);

    let slow = tokio::spawn(gated_check(ch));
    control.next_started().await;
    server.stop();
    // The side listener stays up during the drain, answering 503 to probes.
    let deadline = Instant::now() + WAIT;
    let body = loop {
        let (status, body) = http_get(http_addr, "/readyz").await;
        if status == 503 {
            break body;
        }
        assert_eq!(status, 200);
        assert!(
            Instant::now() < deadline,
            "/readyz still 200 after shutdown began"
        );
        tokio::task::yield_now().await;
    };
    assert_eq!(body, "not ready: shutting down\n");
    assert_eq!(http_get(http_addr, "/healthz").await.0, 200);
    assert!(!slow.is_finished());
    control.release.add_permits(1);
    slow.await.expect("join").expect("in-flight call completes");
    server.run.await.expect("join").expect("clean stop");
    assert!(tokio::net::TcpStream::connect(http_addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_never_ends_is_cut_at_the_grace_period() {
    let mut config = test_config();
    config.server.shutdown_grace_ms = 300;
    let (g, mut control) = gate(false);
    let mut server = spawn(GrpcServerBuilder::new("kit-test", &config), g).await;
    let ch = channel(server.grpc_addr).await;

    let _stuck = tokio::spawn(gated_check(ch));
    control.next_started().await;
    let started = Instant::now();
    server.stop();
    tokio::time::timeout(WAIT, server.run)
        .await
        .expect("shutdown bounded by the grace period")
        .expect("join")
        .expect("stop");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "returned before the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}
