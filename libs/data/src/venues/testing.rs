//! Test support (feature `testing`): a throwaway CA and a `localhost` certificate,
//! HTTPS and WSS servers on loopback trusting nothing else, and a mock exchange
//! answering Binance's klines and Coinbase's candles in their exact formats from
//! given rows, with scripted faults (rate limits, 5xx, hangs, error and malformed
//! bodies). Used by this crate's tests and by market-data's.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::time::{TimeFormat, Zone, parse_timestamp};

/// A CA (its PEM in `ca_file`) and a server certificate for `localhost` and 127.0.0.1.
pub struct TestPki {
    _dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    acceptor: TlsAcceptor,
}

impl TestPki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
            .expect("ca");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write ca");
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("sign");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server config");
        Self {
            _dir: dir,
            ca_file,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        }
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A client that does not trust the CA aborts the handshake: wait for the next.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Serves `app` over HTTPS on loopback; returns `https://localhost:PORT`.
pub async fn serve_https(pki: &TestPki, app: Router) -> String {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = tcp.local_addr().expect("addr").port();
    let listener = TlsListener {
        tcp,
        acceptor: pki.acceptor(),
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("https://localhost:{port}")
}

/// Serves WebSocket over TLS on loopback: the n-th connection is sent the messages of
/// `sessions[n]` and then dropped (a lost connection); connections beyond the
/// sessions are held open and silent. Returns `wss://localhost:PORT`.
pub async fn serve_wss(pki: &TestPki, sessions: Vec<Vec<String>>) -> String {
    use futures::SinkExt;
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = tcp.local_addr().expect("addr").port();
    let acceptor = pki.acceptor();
    tokio::spawn(async move {
        let mut sessions = sessions.into_iter();
        loop {
            let Ok((stream, _)) = tcp.accept().await else {
                continue;
            };
            let Ok(tls) = acceptor.accept(stream).await else {
                continue;
            };
            let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                continue;
            };
            match sessions.next() {
                Some(messages) => {
                    for m in messages {
                        if ws
                            .send(tokio_tungstenite::tungstenite::Message::text(m))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    // Dropped without a close frame, as a broken connection is.
                    drop(ws);
                }
                None => {
                    tokio::spawn(async move {
                        use futures::StreamExt;
                        while ws.next().await.is_some() {}
                    });
                }
            }
        }
    });
    format!("wss://localhost:{port}")
}

/// A Binance kline stream message for `row`, closed or still open.
pub fn kline_message(
    symbol: &str,
    interval: &str,
    interval_ms: i64,
    row: &MockRow,
    closed: bool,
) -> String {
    let [o, h, l, c, v] = &row.fields;
    format!(
        r#"{{"e":"kline","E":{},"s":"{symbol}","k":{{"t":{},"T":{},"s":"{symbol}","i":"{interval}","f":1,"L":2,"o":"{o}","c":"{c}","h":"{h}","l":"{l}","v":"{v}","n":2,"x":{closed},"q":"0","V":"0","Q":"0","B":"0"}}}}"#,
        row.open_ms + interval_ms,
        row.open_ms,
        row.open_ms + interval_ms - 1
    )
}

/// What the mock does to one call (numbered from 1 over all routes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 (or 418 with `banned`) with `Retry-After: secs` and the venue's body.
    RateLimited { banned: bool, retry_after_s: u32 },
    /// 502 with an HTML body, as a proxy in front of the venue sends.
    ServerError,
    /// Never answers.
    Hang,
    /// Answers normally but reports this used weight.
    Weight(u32),
    /// 200 with a body cut short.
    Malformed,
}

/// One bar as the venue would send it (decimal text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockRow {
    pub open_ms: i64,
    /// open, high, low, close, volume
    pub fields: [String; 5],
}

/// Rows of a normalised sample CSV (`timestamp,open,high,low,close,volume`, ISO-8601).
pub fn rows_from_csv(text: &str) -> Vec<MockRow> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            MockRow {
                open_ms: parse_timestamp(f[0], &TimeFormat::Iso8601, Zone::UTC).expect("timestamp")
                    / 1_000_000,
                fields: [f[1], f[2], f[3], f[4], f[5]].map(str::to_owned),
            }
        })
        .collect()
}

/// The mock exchange's state.
pub struct MockExchange {
    /// The symbol (Binance) or product (Coinbase) it knows.
    pub symbol: String,
    pub interval_ms: i64,
    pub rows: Mutex<Vec<MockRow>>,
    pub calls: AtomicU32,
    pub faults: Mutex<Vec<(u32, Fault)>>,
    /// Every URL path and query asked for, in order.
    pub log: Mutex<Vec<String>>,
}

impl MockExchange {
    pub fn new(
        symbol: &str,
        interval_ms: i64,
        rows: Vec<MockRow>,
        faults: Vec<(u32, Fault)>,
    ) -> Arc<Self> {
        Arc::new(Self {
            symbol: symbol.to_owned(),
            interval_ms,
            rows: Mutex::new(rows),
            calls: AtomicU32::new(0),
            faults: Mutex::new(faults),
            log: Mutex::new(Vec::new()),
        })
    }

    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The router: `/api/v3/klines` (Binance) and `/products/{id}/candles` (Coinbase).
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/api/v3/klines", get(binance_klines))
            .route("/products/{product}/candles", get(coinbase_candles))
            .with_state(self.clone())
    }

    fn rows_in(&self, start_ms: i64, end_ms: i64, limit: usize) -> Vec<MockRow> {
        let rows = self.rows.lock().expect("rows");
        let from = rows.partition_point(|r| r.open_ms < start_ms);
        let to = rows
            .partition_point(|r| r.open_ms <= end_ms)
            .min(from + limit)
            .max(from);
        rows[from..to].to_vec()
    }

    /// The fault of this call, after counting and logging it.
    async fn enter(&self, what: String) -> Option<Fault> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.log.lock().expect("log").push(what);
        let fault = self
            .faults
            .lock()
            .expect("faults")
            .iter()
            .find(|f| f.0 == call)
            .map(|f| f.1.clone());
        if fault == Some(Fault::Hang) {
            std::future::pending::<()>().await;
        }
        fault
    }
}

fn params(uri: &axum::http::Uri) -> std::collections::HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn json_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        "application/json;charset=UTF-8".parse().expect("header"),
    );
    h
}

fn common_fault(
    fault: &Option<Fault>,
    mut headers: HeaderMap,
    limit_body: &'static str,
) -> Option<Response> {
    match fault {
        Some(Fault::RateLimited {
            banned,
            retry_after_s,
        }) => {
            headers.insert(
                "retry-after",
                retry_after_s.to_string().parse().expect("header"),
            );
            let status = if *banned {
                StatusCode::IM_A_TEAPOT
            } else {
                StatusCode::TOO_MANY_REQUESTS
            };
            Some((status, headers, limit_body).into_response())
        }
        Some(Fault::ServerError) => Some(
            (
                StatusCode::BAD_GATEWAY,
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response(),
        ),
        Some(Fault::Malformed) => {
            Some((StatusCode::OK, headers, "[[1747699200000,\"105").into_response())
        }
        _ => None,
    }
}

async fn binance_klines(State(m): State<Arc<MockExchange>>, uri: axum::http::Uri) -> Response {
    let q = params(&uri);
    let fault = m.enter(uri.to_string()).await;
    let mut headers = json_headers();
    let used = match &fault {
        Some(Fault::Weight(w)) => *w,
        _ => m.calls() * 5,
    };
    headers.insert(
        "x-mbx-used-weight-1m",
        used.to_string().parse().expect("header"),
    );
    headers.insert(
        "date",
        "Tue, 20 May 2025 00:00:45 GMT".parse().expect("header"),
    );
    if let Some(r) = common_fault(
        &fault,
        headers.clone(),
        r#"{"code":-1003,"msg":"Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute. Please use WebSocket Streams for live updates to avoid polling the API."}"#,
    ) {
        return r;
    }
    if q.get("symbol") != Some(&m.symbol) {
        return (
            StatusCode::BAD_REQUEST,
            headers,
            r#"{"code":-1121,"msg":"Invalid symbol."}"#,
        )
            .into_response();
    }
    let num = |k: &str, d: i64| q.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(d);
    let limit = num("limit", 500);
    if !(1..=1000).contains(&limit) {
        return (
            StatusCode::BAD_REQUEST,
            headers,
            r#"{"code":-1130,"msg":"Invalid limit."}"#,
        )
            .into_response();
    }
    let rows = m.rows_in(
        num("startTime", 0),
        num("endTime", i64::MAX),
        limit as usize,
    );
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            let [o, h, l, c, v] = &r.fields;
            format!(
                "[{},\"{o}\",\"{h}\",\"{l}\",\"{c}\",\"{v}\",{},\"0.00000000\",0,\"0.00000000\",\"0.00000000\",\"0\"]",
                r.open_ms,
                r.open_ms + m.interval_ms - 1
            )
        })
        .collect();
    (StatusCode::OK, headers, format!("[{}]", items.join(","))).into_response()
}

async fn coinbase_candles(
    State(m): State<Arc<MockExchange>>,
    Path(product): Path<String>,
    uri: axum::http::Uri,
) -> Response {
    let q = params(&uri);
    let fault = m.enter(uri.to_string()).await;
    let headers = json_headers();
    if let Some(r) = common_fault(
        &fault,
        headers.clone(),
        r#"{"message":"Public rate limit exceeded"}"#,
    ) {
        return r;
    }
    if product != m.symbol {
        return (StatusCode::NOT_FOUND, headers, r#"{"message":"NotFound"}"#).into_response();
    }
    let g: i64 = q
        .get("granularity")
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    if g * 1000 != m.interval_ms {
        return (
            StatusCode::BAD_REQUEST,
            headers,
            r#"{"message":"Unsupported granularity"}"#,
        )
            .into_response();
    }
    let time = |k: &str| {
        q.get(k)
            .and_then(|t| parse_timestamp(t, &TimeFormat::Iso8601, Zone::UTC).ok())
            .map(|ns| ns / 1_000_000)
    };
    let (Some(start), Some(end)) = (time("start"), time("end")) else {
        return (
            StatusCode::BAD_REQUEST,
            headers,
            r#"{"message":"start and end required"}"#,
        )
            .into_response();
    };
    if (end - start) / m.interval_ms + 1 > 300 {
        return (
            StatusCode::BAD_REQUEST,
            headers,
            r#"{"message":"granularity too small for the requested time range. Count of aggregations requested exceeds 300"}"#,
        )
            .into_response();
    }
    let mut rows = m.rows_in(start, end, 300);
    rows.reverse();
    // Coinbase sends numbers, not strings: [time, low, high, open, close, volume].
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            let [o, h, l, c, v] = &r.fields;
            format!("[{},{l},{h},{o},{c},{v}]", r.open_ms / 1000)
        })
        .collect();
    (StatusCode::OK, headers, format!("[{}]", items.join(","))).into_response()
}
