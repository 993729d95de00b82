//! Bearer tokens checked by the kit's layer: health and reflection open,
//! everything else refused without a valid token, refusals counted.

use grodt_kit::GrpcServerBuilder;
use grodt_kit::auth::{AuthConfig, AuthMode};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{
    channel, gate, gated_check, health_check, http_get, sample, spawn, test_config,
};

const READ: &str = "r-0123456789abcdef-read";

fn with_token(
    ch: tonic::transport::Channel,
    token: &'static str,
) -> InterceptedService<
    tonic::transport::Channel,
    impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone,
> {
    InterceptedService::new(ch, move |mut req: tonic::Request<()>| {
        let value = format!("Bearer {token}").parse().expect("ascii header");
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    })
}

#[tokio::test]
async fn calls_need_a_valid_token_and_health_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, format!("read {READ}\n")).unwrap();
    let mut config = test_config();
    config.auth = AuthConfig {
        mode: AuthMode::Required,
        tokens_file: file,
        identities_file: std::path::PathBuf::new(),
    };
    let (g, _control) = gate(true);
    let mut server = spawn(GrpcServerBuilder::new("kit-auth", &config), g).await;
    let ch = channel(server.grpc_addr).await;

    // Health is open.
    assert_eq!(
        health_check(ch.clone(), "")
            .await
            .expect("health without a token"),
        ServingStatus::Serving as i32
    );
    // No token, a wrong token: UNAUTHENTICATED.
    let err = gated_check(ch.clone()).await.expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = gated_check(with_token(ch.clone(), "x-not-a-known-token"))
        .await
        .expect_err("unknown token");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    // A read token reads.
    gated_check(with_token(ch.clone(), READ))
        .await
        .expect("a read call with a read token");

    let (status, page) = http_get(server.http_addr, "/metrics").await;
    assert_eq!(status, 200);
    let refusals = |reason: &str| {
        sample(
            &page,
            &format!(
                "grodt_kit_auth_grpc_auth_refusals_total{{method=\"/grodt.test.v1.Gated/Check\",reason=\"{reason}\"}}"
            ),
        )
    };
    assert_eq!(refusals("missing"), Some(1.0), "{page}");
    assert_eq!(refusals("unknown"), Some(1.0), "{page}");
    server.stop();
    server.run.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn loopback_servers_need_no_token_in_auto_mode() {
    let (g, _control) = gate(true);
    let config = test_config();
    assert_eq!(config.auth.mode, AuthMode::Auto);
    let mut server = spawn(GrpcServerBuilder::new("kit-auth-auto", &config), g).await;
    let ch = channel(server.grpc_addr).await;
    gated_check(ch).await.expect("loopback, auto: open");
    server.stop();
    server.run.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn a_malformed_tokens_file_stops_the_server_from_binding() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, "admin 0123456789abcdef0123\n").unwrap();
    let mut config = test_config();
    config.auth = AuthConfig {
        mode: AuthMode::Required,
        tokens_file: file,
        identities_file: std::path::PathBuf::new(),
    };
    let err = GrpcServerBuilder::new("kit-auth-bad", &config)
        .bind()
        .await
        .expect_err("bad tokens file");
    let text = err.to_string();
    assert!(
        text.contains("auth.tokens_file") && text.contains("line 1"),
        "{text}"
    );
}
