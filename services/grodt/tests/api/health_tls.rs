//! `grodt health --tls-ca FILE --tls-domain NAME` against a kit server with
//! `[grpc.tls]` (what the Compose prod healthchecks and the Helm smoke test
//! run): SERVING over TLS with the right CA; a plaintext check, or one that
//! trusts another CA, fails.

use std::time::Duration;

use grodt::health::{HealthTls, check, check_with};
use grodt_kit::GrpcServerBuilder;
use grodt_kit::config::{CommonConfig, GrpcTlsConfig};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tonic_health::pb::health_check_response::ServingStatus;

/// A CA (written as `<prefix>ca.pem`) and, signed by it, a server certificate
/// for the given names (`<prefix>server.pem`, `<prefix>server.key`).
fn pki(dir: &std::path::Path, prefix: &str, names: &[&str]) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let cert = CertificateParams::new(sans)
        .expect("params")
        .signed_by(&key, &ca)
        .expect("sign");
    std::fs::write(dir.join(format!("{prefix}ca.pem")), ca.pem()).expect("write");
    std::fs::write(dir.join(format!("{prefix}server.pem")), cert.pem()).expect("write");
    std::fs::write(dir.join(format!("{prefix}server.key")), key.serialize_pem()).expect("write");
}

#[tokio::test]
async fn health_over_tls_needs_the_ca_and_plaintext_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The Compose services' certificate carries the service names and localhost.
    pki(dir.path(), "", &["risk", "localhost"]);
    pki(dir.path(), "other-", &["risk", "localhost"]);

    let mut config = CommonConfig::with_ports(0, 0);
    config.grpc.addr = "127.0.0.1:0".parse().expect("addr");
    config.http.addr = "127.0.0.1:0".parse().expect("addr");
    config.grpc.tls = GrpcTlsConfig {
        cert_file: dir.path().join("server.pem"),
        key_file: dir.path().join("server.key"),
        client_ca_file: Default::default(),
    };
    let server = GrpcServerBuilder::new("health-tls", &config)
        .bind()
        .await
        .expect("bind with TLS");
    let addr = server.grpc_addr().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(server.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let timeout = Duration::from_secs(5);
    let tls = |ca: &str| HealthTls {
        ca_file: dir.path().join(ca),
        domain: Some("localhost".into()),
    };

    let status = check_with(&addr, "", timeout, Some(&tls("ca.pem")))
        .await
        .expect("health over TLS");
    assert_eq!(status, ServingStatus::Serving);
    let plaintext = check(&addr, "", timeout).await;
    assert!(
        plaintext.is_err(),
        "plaintext health answered: {plaintext:?}"
    );
    let wrong_ca = check_with(&addr, "", timeout, Some(&tls("other-ca.pem"))).await;
    assert!(wrong_ca.is_err(), "a server of another CA was trusted");
    let wrong_name = check_with(
        &addr,
        "",
        timeout,
        Some(&HealthTls {
            ca_file: dir.path().join("ca.pem"),
            domain: Some("execution".into()),
        }),
    )
    .await;
    assert!(
        wrong_name.is_err(),
        "a certificate without the name was accepted"
    );

    let _ = stop.send(());
    run.await.expect("join").expect("clean stop");
}
