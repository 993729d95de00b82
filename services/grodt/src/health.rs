//! `grodt health ADDR [SERVICE] [--tls-ca FILE [--tls-domain NAME]]`: one
//! grpc.health.v1 Check, used by container health checks and scripts. Only
//! SERVING counts as healthy. With `--tls-ca` the call goes over TLS, trusting
//! the CA certificates of FILE, and checks the server's certificate for NAME
//! (default: the host of ADDR).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

/// Asks `addr` for the health of `service` ("" is the whole server).
///
/// Returns the status the server reported; connection failures, time-outs
/// and an unknown service (NOT_FOUND) are errors.
pub async fn check(addr: &str, service: &str, timeout: Duration) -> Result<ServingStatus> {
    check_with(addr, service, timeout, None).await
}

/// TLS for a health check: the CA to trust and the name the server's
/// certificate must carry (None: the host of the address).
#[derive(Debug, Clone)]
pub struct HealthTls {
    /// PEM CA certificates.
    pub ca_file: std::path::PathBuf,
    /// The server name to verify.
    pub domain: Option<String>,
}

/// [`check`], over TLS when `tls` is given.
pub async fn check_with(
    addr: &str,
    service: &str,
    timeout: Duration,
    tls: Option<&HealthTls>,
) -> Result<ServingStatus> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("{scheme}://{addr}")
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(uri.clone())
        .with_context(|| format!("`{addr}` is not a valid address"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    if let Some(tls) = tls {
        let ca = std::fs::read(&tls.ca_file)
            .with_context(|| format!("--tls-ca {}", tls.ca_file.display()))?;
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca));
        if let Some(domain) = &tls.domain {
            config = config.domain_name(domain.clone());
        }
        endpoint = endpoint
            .tls_config(config)
            .with_context(|| format!("TLS settings for {uri}"))?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to {uri}"))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await;
    match response {
        Ok(r) => {
            Ok(ServingStatus::try_from(r.into_inner().status).unwrap_or(ServingStatus::Unknown))
        }
        Err(status) if status.code() == tonic::Code::NotFound => {
            bail!("{uri} does not know service `{service}`")
        }
        Err(status) => bail!(
            "health check of {uri} failed: {} ({})",
            status.message(),
            status.code()
        ),
    }
}
