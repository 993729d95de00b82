//! `grodt health ADDR [SERVICE]`: one grpc.health.v1 Check, used by container
//! health checks and scripts. Only SERVING counts as healthy.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

/// Asks `addr` for the health of `service` ("" is the whole server).
///
/// Returns the status the server reported; connection failures, time-outs
/// and an unknown service (NOT_FOUND) are errors.
pub async fn check(addr: &str, service: &str, timeout: Duration) -> Result<ServingStatus> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let endpoint = tonic::transport::Endpoint::from_shared(uri.clone())
        .with_context(|| format!("`{addr}` is not a valid address"))?
        .connect_timeout(timeout)
        .timeout(timeout);
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
