//! `[grpc.tls]`: a server with TLS answers a TLS client that trusts its CA and
//! refuses a plaintext client; with `client_ca_file` (mTLS) it refuses a
//! client without a certificate of that CA; bad files stop it at bind with
//! the key named. Certificates are made per test with rcgen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use grodt_kit::GrpcServerBuilder;
use grodt_kit::config::GrpcTlsConfig;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use sha2::Digest as _;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{gate, health_check, spawn, test_config};

const WAIT: Duration = Duration::from_secs(5);

/// A CA, a server certificate for `localhost` signed by it, and a client
/// certificate signed by it, written as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
            .expect("ca");
        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("write pem");
        };
        write("ca.pem", ca.pem());
        for (name, sans) in [
            (
                "server",
                vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            ),
            ("client", vec!["grodt-test-client".to_owned()]),
            ("stranger", vec!["grodt-test-stranger".to_owned()]),
        ] {
            let key = KeyPair::generate().expect("key");
            let cert = CertificateParams::new(sans)
                .expect("params")
                .signed_by(&key, &ca)
                .expect("sign");
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
            // The fingerprint an auth.identities_file lists it by.
            let fp: Vec<String> = sha2::Sha256::digest(cert.der())
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect();
            write(&format!("{name}.sha256"), fp.join(":"));
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read pem")
    }

    fn server_tls(&self) -> GrpcTlsConfig {
        GrpcTlsConfig {
            cert_file: self.path("server.pem"),
            key_file: self.path("server.key"),
            client_ca_file: PathBuf::new(),
        }
    }

    /// A TLS client trusting the test CA, with the client certificate if `identity`.
    async fn client(&self, addr: std::net::SocketAddr, identity: bool) -> Result<Channel, String> {
        self.client_as(addr, identity.then_some("client")).await
    }

    /// A TLS client trusting the test CA, presenting certificate `name` if given.
    async fn client_as(
        &self,
        addr: std::net::SocketAddr,
        name: Option<&str>,
    ) -> Result<Channel, String> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.read("ca.pem")))
            .domain_name("localhost");
        if let Some(name) = name {
            tls = tls.identity(Identity::from_pem(
                self.read(&format!("{name}.pem")),
                self.read(&format!("{name}.key")),
            ));
        }
        Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
            .expect("endpoint")
            .tls_config(tls)
            .map_err(|e| e.to_string())?
            .connect_timeout(WAIT)
            .timeout(WAIT)
            .connect()
            .await
            .map_err(|e| format!("{e:?}"))
    }
}

async fn plaintext_health(addr: std::net::SocketAddr) -> Result<i32, String> {
    let ch = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(WAIT)
        .timeout(WAIT)
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    health_check(ch, "").await.map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn a_tls_server_answers_a_tls_client_and_refuses_plaintext() {
    let pki = Pki::new();
    let mut config = test_config();
    config.grpc.tls = pki.server_tls();
    let (g, _control) = gate(true);
    let mut server = spawn(GrpcServerBuilder::new("kit-tls", &config), g).await;

    let ch = pki
        .client(server.grpc_addr, false)
        .await
        .expect("TLS client connects");
    assert_eq!(
        health_check(ch, "").await.expect("health over TLS"),
        ServingStatus::Serving as i32
    );
    let refused = plaintext_health(server.grpc_addr).await;
    assert!(
        refused.is_err(),
        "a plaintext client was answered: {refused:?}"
    );

    server.stop();
    server.run.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn with_a_client_ca_a_client_needs_a_certificate_of_it() {
    let pki = Pki::new();
    let mut config = test_config();
    config.grpc.tls = GrpcTlsConfig {
        client_ca_file: pki.path("ca.pem"),
        ..pki.server_tls()
    };
    let (g, _control) = gate(true);
    let mut server = spawn(GrpcServerBuilder::new("kit-mtls", &config), g).await;

    let ch = pki
        .client(server.grpc_addr, true)
        .await
        .expect("mTLS client");
    assert_eq!(
        health_check(ch, "")
            .await
            .expect("health with a client certificate"),
        ServingStatus::Serving as i32
    );
    let anonymous = match pki.client(server.grpc_addr, false).await {
        Ok(ch) => health_check(ch, "").await.map_err(|e| format!("{e:?}")),
        Err(e) => Err(e),
    };
    assert!(
        anonymous.is_err(),
        "a client without a certificate was answered"
    );
    assert!(plaintext_health(server.grpc_addr).await.is_err());

    server.stop();
    server.run.await.expect("join").expect("clean stop");
}

/// mTLS identity instead of a token: with tokens required, a client whose
/// certificate `auth.identities_file` lists calls without a token; another
/// certificate of the same CA is no credential (UNAUTHENTICATED).
#[tokio::test]
async fn a_listed_client_certificate_stands_in_for_a_token() {
    use grodt_kit::auth::{AuthConfig, AuthMode};
    let pki = Pki::new();
    let identities = pki.path("identities");
    std::fs::write(
        &identities,
        format!("read {}  # the test client\n", pki.read("client.sha256")),
    )
    .unwrap();
    let mut config = test_config();
    config.grpc.tls = GrpcTlsConfig {
        client_ca_file: pki.path("ca.pem"),
        ..pki.server_tls()
    };
    config.auth = AuthConfig {
        mode: AuthMode::Required,
        tokens_file: PathBuf::new(),
        identities_file: identities,
    };
    let (g, _control) = gate(true);
    let mut server = spawn(GrpcServerBuilder::new("kit-mtls-id", &config), g).await;

    let listed = pki
        .client_as(server.grpc_addr, Some("client"))
        .await
        .expect("mTLS client");
    crate::helpers::gated_check(listed)
        .await
        .expect("a listed certificate reads without a token");
    let stranger = pki
        .client_as(server.grpc_addr, Some("stranger"))
        .await
        .expect("a certificate of the CA completes the handshake");
    let err = crate::helpers::gated_check(stranger)
        .await
        .expect_err("an unlisted certificate is no credential");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    server.stop();
    server.run.await.expect("join").expect("clean stop");
}

async fn bind_error(tls: GrpcTlsConfig) -> String {
    let mut config = test_config();
    config.grpc.tls = tls;
    GrpcServerBuilder::new("kit-tls-bad", &config)
        .bind()
        .await
        .expect_err("a bad [grpc.tls] must stop the server at bind")
        .to_string()
}

#[tokio::test]
async fn bad_certificate_files_stop_the_server_naming_the_key() {
    let pki = Pki::new();
    let missing = Path::new("/nonexistent/grodt/server.pem").to_path_buf();

    let err = bind_error(GrpcTlsConfig {
        cert_file: missing.clone(),
        ..pki.server_tls()
    })
    .await;
    assert!(
        err.starts_with("grpc.tls.cert_file: /nonexistent/grodt/server.pem"),
        "{err}"
    );

    let err = bind_error(GrpcTlsConfig {
        key_file: missing.clone(),
        ..pki.server_tls()
    })
    .await;
    assert!(err.starts_with("grpc.tls.key_file: /nonexistent"), "{err}");

    // A certificate where the key should be, and a key that is not the certificate's.
    let err = bind_error(GrpcTlsConfig {
        key_file: pki.path("server.pem"),
        ..pki.server_tls()
    })
    .await;
    assert!(err.starts_with("grpc.tls.key_file:"), "{err}");
    let err = bind_error(GrpcTlsConfig {
        key_file: pki.path("client.key"),
        ..pki.server_tls()
    })
    .await;
    assert!(err.starts_with("grpc.tls.key_file:"), "{err}");

    let err = bind_error(GrpcTlsConfig {
        client_ca_file: missing,
        ..pki.server_tls()
    })
    .await;
    assert!(
        err.starts_with("grpc.tls.client_ca_file: /nonexistent"),
        "{err}"
    );
}
