//! HTTPS for the venue adapters: hyper's pooled HTTP/1.1 client over rustls with the
//! ring provider (no OpenSSL, no aws-lc build), trusting Mozilla's roots from
//! `webpki-roots` (compiled in, so a slim image without a CA bundle still works) plus,
//! when given, the certificates of one PEM file (a private CA, or a test server's).
//! Plain `http://` is refused: an exchange is never spoken to in clear text.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::rest::{BoxFuture, HttpResponse, Transport, TransportFailure};
use crate::error::{DataError, Result};

/// The client TLS configuration of every venue connection (REST and WebSocket):
/// webpki roots, plus the certificates in `extra_ca` (PEM) when given.
pub fn client_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_ca {
        let bad = |reason: String| DataError::InvalidOption {
            field: "ca_file",
            reason: format!("{}: {reason}", path.display()),
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no certificate in the file".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| bad(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DataError::InvalidOption {
            field: "tls",
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// GETs over HTTPS with a pooled client and a timeout per request (connect, TLS,
/// headers and body together).
#[derive(Clone)]
pub struct HttpsTransport {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsTransport")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpsTransport {
    pub fn new(config: rustls::ClientConfig, timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Self { client, timeout }
    }

    async fn fetch(&self, url: &str) -> Result<HttpResponse, TransportFailure> {
        let fail = |e: Box<dyn std::error::Error + Send + Sync>| TransportFailure::Failed(e);
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| fail(e.into()))?;
        let req = http::Request::get(uri)
            .header(http::header::USER_AGENT, "grodt-data")
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.into()))?;
        let resp = self.client.request(req).await.map_err(|e| fail(e.into()))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| fail(e.into()))?.to_bytes();
        Ok(HttpResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}

impl Transport for HttpsTransport {
    fn get<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<HttpResponse, TransportFailure>> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.fetch(url)).await {
                Ok(r) => r,
                Err(_) => Err(TransportFailure::Timeout(self.timeout)),
            }
        })
    }
}
