//! Redis over TLS (`rediss://` with `redis.ca_file`): a real `redis-server`
//! started on a TLS-only port with a certificate of a CA made per test
//! (rcgen). A client that trusts that CA connects and its bus works (a
//! publish and a read through TLS); without the CA (the platform's roots), over
//! plaintext, or with a CA file on a `redis://` URL it is refused at start,
//! naming the key.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grodt_bus::{ConsumerName, Envelope, EventBus, GroupName, StartFrom, StreamName};
use grodt_kit::config::{CommonConfig, Secret};
use grodt_kit::infra::Infra;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

fn database_url() -> String {
    std::env::var("GRODT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A `redis-server` listening only on a TLS port, killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TlsRedis {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("write pem");
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
            .expect("ca");
        write("ca.pem", ca.pem());
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("sign");
        write("server.pem", cert.pem());
        write("server.key", key.serialize_pem());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let path = |name: &str| dir.path().join(name);
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .arg("--tls-cert-file")
            .arg(path("server.pem"))
            .arg("--tls-key-file")
            .arg(path("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(path("ca.pem"))
            .args([
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server with TLS did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, dir }
    }

    fn ca(&self) -> &Path {
        self.dir.path()
    }

    fn common(&self, scheme: &str, ca_file: Option<&str>) -> CommonConfig {
        let mut common = CommonConfig::with_ports(0, 0);
        common.redis.url = Secret::new(format!("{scheme}://localhost:{}", self.port));
        common.redis.key_prefix = format!("kit-redis-tls-{}:", std::process::id());
        common.redis.ca_file = ca_file.map(|f| self.ca().join(f)).unwrap_or_default();
        common.database.url = Secret::new(database_url());
        common
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_client_that_trusts_the_ca_uses_the_bus_over_tls() {
    let redis = TlsRedis::start();
    let infra = Infra::connect(&redis.common("rediss", Some("ca.pem")))
        .await
        .expect("rediss:// with the CA connects");
    let bus: Arc<dyn EventBus> = infra.bus.clone();
    let stream = StreamName::parse("grodt.bars.v1").expect("stream");
    let group = GroupName::parse("tls-test").expect("group");
    bus.ensure_group(&stream, &group, StartFrom::Beginning)
        .await
        .expect("group over TLS");
    let envelope = Envelope::new("grodt.v1.Test", chrono::Utc::now(), &b"over tls"[..]);
    bus.publish(&stream, &envelope)
        .await
        .expect("publish over TLS");
    let consumer = ConsumerName::parse("c1").expect("consumer");
    let got = bus
        .consume(&stream, &group, &consumer, 10, Duration::from_millis(500))
        .await
        .expect("read over TLS");
    assert_eq!(got.len(), 1, "one event published, one read");
    assert_eq!(got[0].envelope.event_id, envelope.event_id);
    assert_eq!(got[0].envelope.payload, envelope.payload);
}

#[tokio::test]
async fn without_the_ca_over_plaintext_or_with_a_ca_on_redis_url_start_is_refused() {
    let redis = TlsRedis::start();
    // The platform's roots do not know the test CA.
    let err = Infra::connect(&redis.common("rediss", None))
        .await
        .expect_err("an unknown CA must not connect")
        .to_string();
    assert!(err.starts_with("redis.url:"), "{err}");
    assert!(
        err.to_lowercase().contains("certificate"),
        "names the certificate: {err}"
    );
    // Plaintext to a TLS-only port: no Redis answer.
    let err = Infra::connect(&redis.common("redis", None))
        .await
        .expect_err("plaintext to a TLS port must not connect")
        .to_string();
    assert!(err.starts_with("redis.url:"), "{err}");
    // A CA file on a plaintext URL would silently not be used: refused.
    let err = Infra::connect(&redis.common("redis", Some("ca.pem")))
        .await
        .expect_err("a CA file needs rediss://")
        .to_string();
    assert!(err.starts_with("redis.ca_file:"), "{err}");
    // A file that holds no certificate.
    let err = Infra::connect(&redis.common("rediss", Some("server.key")))
        .await
        .expect_err("a key is not a CA certificate")
        .to_string();
    assert!(err.starts_with("redis.ca_file:"), "{err}");
    assert!(err.contains("no PEM certificate"), "{err}");
}
