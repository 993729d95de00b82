//! Health, reflection, metrics, readiness, timeout and concurrency limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use grodt_kit::GrpcServerBuilder;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{
    GATED, Switch, WAIT, channel, gate, gated_check, health_check, http_get, sample, spawn,
    test_config,
};

#[tokio::test]
async fn health_reports_serving_for_the_service_and_the_server() {
    let (g, _control) = gate(true);
    let mut server = spawn(
        GrpcServerBuilder::new("kit-test", &test_config()).health_service("grodt.v1.ExtraService"),
        g,
    )
    .await;
    let ch = channel(server.grpc_addr).await;
    for name in ["", GATED, "grodt.v1.ExtraService"] {
        assert_eq!(
            health_check(ch.clone(), name).await.expect("check"),
            ServingStatus::Serving as i32,
            "{name:?}"
        );
    }
    let err = health_check(ch, "grodt.v1.Unknown")
        .await
        .expect_err("unknown service");
    assert_eq!(err.code(), Code::NotFound);
    server.stop();
    server.run.await.expect("join").expect("clean stop");
}

async fn list_v1(ch: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("v1 reflection call")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("v1 answer")
        .expect("one message");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected v1 answer {other:?}"),
    }
}

async fn list_v1alpha(ch: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("v1alpha reflection call")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("v1alpha answer")
        .expect("one message");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected v1alpha answer {other:?}"),
    }
}

#[tokio::test]
async fn reflection_lists_services_over_v1_and_v1alpha() {
    let (g, _control) = gate(true);
    let mut server = spawn(
        GrpcServerBuilder::new("kit-test", &test_config())
            .reflection(tonic_health::pb::FILE_DESCRIPTOR_SET),
        g,
    )
    .await;
    let ch = channel(server.grpc_addr).await;
    for (protocol, mut names) in [
        ("v1", list_v1(ch.clone()).await),
        ("v1alpha", list_v1alpha(ch.clone()).await),
    ] {
        names.sort();
        assert_eq!(
            names,
            [
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ],
            "{protocol}"
        );
    }
    server.stop();
    server.run.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn metrics_count_calls_by_method_and_code() {
    let (g, _control) = gate(true);
    let mut server = spawn(GrpcServerBuilder::new("kit-test", &test_config()), g).await;
    let ch = channel(server.grpc_addr).await;

    let (status, page) = http_get(server.http_addr, "/metrics").await;
    assert_eq!(status, 200);
    let ok_series =
        r#"grodt_kit_test_grpc_requests_total{code="OK",method="/grpc.health.v1.Health/Check"}"#;
    let not_found_series = r#"grodt_kit_test_grpc_requests_total{code="NotFound",method="/grpc.health.v1.Health/Check"}"#;
    assert_eq!(
        sample(&page, ok_series),
        None,
        "nothing counted yet:\n{page}"
    );

    health_check(ch.clone(), "").await.expect("ok call");
    health_check(ch.clone(), "").await.expect("ok call");
    // NOT_FOUND travels in a trailers-only response (status in the headers).
    health_check(ch.clone(), "grodt.v1.Nope")
        .await
        .expect_err("not found");
    gated_check(ch.clone()).await.expect("gated call");

    let (_, page) = http_get(server.http_addr, "/metrics").await;
    assert_eq!(sample(&page, ok_series), Some(2.0), "{page}");
    assert_eq!(sample(&page, not_found_series), Some(1.0), "{page}");
    assert_eq!(
        sample(
            &page,
            r#"grodt_kit_test_grpc_requests_total{code="OK",method="/grodt.test.v1.Gated/Check"}"#
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            r#"grodt_kit_test_grpc_request_duration_seconds_count{method="/grpc.health.v1.Health/Check"}"#
        ),
        Some(3.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, "grodt_kit_test_grpc_in_flight_requests"),
        Some(0.0)
    );
    assert!(
        page.contains("grodt_kit_test_build_info{version="),
        "{page}"
    );
    assert!(page.contains("\nprocess_start_time_seconds "), "{page}");

    // A path no service serves is one `unknown` series, not one per path.
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.expect("ready");
    let err = grpc
        .unary(
            tonic::Request::new(tonic_health::pb::HealthCheckRequest::default()),
            http::uri::PathAndQuery::from_static("/scanner.Probe/Anything"),
            tonic_prost::ProstCodec::<
                tonic_health::pb::HealthCheckRequest,
                tonic_health::pb::HealthCheckResponse,
            >::default(),
        )
        .await
        .expect_err("no such service");
    assert_eq!(err.code(), Code::Unimplemented);
    let (_, page) = http_get(server.http_addr, "/metrics").await;
    assert_eq!(
        sample(
            &page,
            r#"grodt_kit_test_grpc_requests_total{code="Unimplemented",method="unknown"}"#
        ),
        Some(1.0),
        "{page}"
    );
    assert!(!page.contains("scanner.Probe"), "{page}");

    server.stop();
    server.run.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn readyz_follows_the_checks_and_healthz_the_process() {
    let redis = Arc::new(AtomicBool::new(true));
    let postgres = Arc::new(AtomicBool::new(false));
    let (g, _control) = gate(true);
    let mut server = spawn(
        GrpcServerBuilder::new("kit-test", &test_config())
            .readiness_check(Switch {
                name: "redis",
                ok: redis.clone(),
            })
            .readiness_check(Switch {
                name: "postgres",
                ok: postgres.clone(),
            }),
        g,
    )
    .await;

    assert_eq!(http_get(server.http_addr, "/healthz").await.0, 200);
    let (status, body) = http_get(server.http_addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("postgres: switched off"), "{body}");
    assert!(!body.contains("redis"), "{body}");
    let (_, page) = http_get(server.http_addr, "/metrics").await;
    assert_eq!(sample(&page, "grodt_kit_test_ready"), Some(0.0));

    postgres.store(true, Ordering::SeqCst);
    // A scrape alone refreshes the gauge.
    let (_, page) = http_get(server.http_addr, "/metrics").await;
    assert_eq!(sample(&page, "grodt_kit_test_ready"), Some(1.0));
    assert_eq!(
        http_get(server.http_addr, "/readyz").await,
        (200, "ready\n".to_owned())
    );

    redis.store(false, Ordering::SeqCst);
    let (status, body) = http_get(server.http_addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("redis: switched off"), "{body}");
    assert_eq!(http_get(server.http_addr, "/healthz").await.0, 200);

    server.stop();
    server.run.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn a_call_past_the_request_timeout_is_deadline_exceeded_and_counted() {
    let mut config = test_config();
    config.server.request_timeout_ms = 100;
    let (g, mut control) = gate(false);
    let mut server = spawn(GrpcServerBuilder::new("kit-test", &config), g).await;
    let ch = channel(server.grpc_addr).await;

    let err = tokio::time::timeout(WAIT, gated_check(ch))
        .await
        .expect("the server answers in time")
        .expect_err("held past the timeout");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("request_timeout_ms"), "{err:?}");
    control.next_started().await;

    let (_, page) = http_get(server.http_addr, "/metrics").await;
    assert_eq!(
        sample(
            &page,
            r#"grodt_kit_test_grpc_requests_total{code="DeadlineExceeded",method="/grodt.test.v1.Gated/Check"}"#
        ),
        Some(1.0),
        "{page}"
    );
    server.stop();
    server.run.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn calls_beyond_the_concurrency_limit_wait_for_a_slot() {
    let mut config = test_config();
    config.server.concurrency_limit = 1;
    let (g, mut control) = gate(false);
    let mut server = spawn(GrpcServerBuilder::new("kit-test", &config), g).await;
    let ch = channel(server.grpc_addr).await;

    let first = tokio::spawn(gated_check(ch.clone()));
    control.next_started().await;
    let second = tokio::spawn(gated_check(ch.clone()));
    // Both are in flight (the second waiting for the slot) before it reaches a handler.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, page) = http_get(server.http_addr, "/metrics").await;
        if sample(&page, "grodt_kit_test_grpc_in_flight_requests") == Some(2.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "second call never arrived:\n{page}"
        );
        tokio::task::yield_now().await;
    }
    assert!(
        control.started.try_recv().is_err(),
        "the second call got past the limit"
    );

    control.release.add_permits(1);
    first.await.expect("join").expect("first call");
    control.next_started().await;
    control.release.add_permits(1);
    second.await.expect("join").expect("second call");

    server.stop();
    server.run.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn a_call_that_cannot_get_a_slot_in_time_is_resource_exhausted() {
    let mut config = test_config();
    config.server.concurrency_limit = 1;
    config.server.request_timeout_ms = 200;
    let (g, _control) = gate(true);
    let mut server = spawn(GrpcServerBuilder::new("kit-test", &config), g).await;
    let ch = channel(server.grpc_addr).await;

    // A streaming response holds its slot until the stream ends, past the
    // request timeout (which bounds the time to the response headers).
    let mut watch = HealthClient::new(ch.clone())
        .watch(HealthCheckRequest::default())
        .await
        .expect("watch")
        .into_inner();
    watch.message().await.expect("watch").expect("first status");

    let err = health_check(ch.clone(), "")
        .await
        .expect_err("no free slot");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("server busy"), "{err:?}");

    // Ending the stream frees the slot.
    drop(watch);
    let deadline = std::time::Instant::now() + WAIT;
    while health_check(ch.clone(), "").await.is_err() {
        assert!(std::time::Instant::now() < deadline, "slot never freed");
    }
    let (_, page) = http_get(server.http_addr, "/metrics").await;
    assert_eq!(
        sample(
            &page,
            r#"grodt_kit_test_grpc_requests_total{code="Cancelled",method="/grpc.health.v1.Health/Watch"}"#
        ),
        Some(1.0),
        "a stream the client dropped counts as cancelled:\n{page}"
    );

    server.stop();
    server.run.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn bind_errors_name_the_listener_and_bad_descriptors_are_refused() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut config = test_config();
    config.http.addr = taken.local_addr().expect("addr");
    let err = GrpcServerBuilder::new("kit-test", &config)
        .bind()
        .await
        .expect_err("port in use");
    assert!(
        err.to_string()
            .starts_with(&format!("http.addr: cannot bind {}", config.http.addr)),
        "{err}"
    );

    let err = GrpcServerBuilder::new("kit-test", &test_config())
        .reflection(b"\x0a\x05not a descriptor")
        .bind()
        .await
        .expect_err("malformed descriptor set");
    assert!(matches!(err, grodt_kit::KitError::Reflection(_)), "{err}");
}
