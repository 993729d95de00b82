//! The klines adapter against a local mock that serves the real BTC/USDT minutes in
//! Binance's exact format, with a 429, a 418, a 500, a hung request and a weight warning.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use grodt_data::binance::{BinanceClient, BoxFuture, HyperTransport, Pause, RetryPolicy};
use grodt_data::error::DataError;
use grodt_data::import::{CsvOptions, read_csv};
use grodt_data::validate::{ValidationOptions, validate};

use crate::{now, sample};

#[derive(Default)]
struct RecordingPause(Mutex<Vec<Duration>>);

impl Pause for RecordingPause {
    fn pause(&self, d: Duration) -> BoxFuture<'_, ()> {
        self.0.lock().unwrap().push(d);
        Box::pin(std::future::ready(()))
    }
}

/// A kline row as Binance sends it.
struct Row {
    open_ms: i64,
    fields: [String; 5],
}

struct Mock {
    rows: Vec<Row>,
    calls: AtomicU32,
    /// (call number, fault)
    faults: Vec<(u32, &'static str)>,
}

/// Binance writes every number with 8 decimals.
fn eight(s: &str) -> String {
    let (i, f) = s.split_once('.').unwrap_or((s, ""));
    format!("{i}.{f:0<8}")
}

fn load_rows() -> Vec<Row> {
    let text = std::fs::read_to_string(sample("btcusdt_1m_2025-05-20_2025-08-18.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Row {
                open_ms: crate::ts(f[0]) / 1_000_000,
                fields: [
                    eight(f[1]),
                    eight(f[2]),
                    eight(f[3]),
                    eight(f[4]),
                    eight(f[5]),
                ],
            }
        })
        .collect()
}

fn param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

fn body(rows: &[Row]) -> String {
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            let [o, h, l, c, v] = &r.fields;
            format!(
                "[{},\"{o}\",\"{h}\",\"{l}\",\"{c}\",\"{v}\",{},\"0.00000000\",0,\"0.00000000\",\"0.00000000\",\"0\"]",
                r.open_ms,
                r.open_ms + 59_999
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

async fn klines(State(mock): State<Arc<Mock>>, uri: Uri) -> Response {
    let call = mock.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        "application/json;charset=UTF-8".parse().unwrap(),
    );
    headers.insert(
        "x-mbx-used-weight-1m",
        (call * 5).to_string().parse().unwrap(),
    );
    match mock.faults.iter().find(|f| f.0 == call).map(|f| f.1) {
        Some("429") => {
            headers.insert("retry-after", "3".parse().unwrap());
            return (
                StatusCode::TOO_MANY_REQUESTS,
                headers,
                r#"{"code":-1003,"msg":"Too many requests."}"#,
            )
                .into_response();
        }
        Some("418") => {
            headers.insert("retry-after", "5".parse().unwrap());
            return (
                StatusCode::IM_A_TEAPOT,
                headers,
                r#"{"code":-1003,"msg":"Way too many requests; IP banned."}"#,
            )
                .into_response();
        }
        Some("500") => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "Internal error").into_response();
        }
        Some("hang") => std::future::pending::<()>().await,
        Some("weight") => {
            headers.insert("x-mbx-used-weight-1m", "5998".parse().unwrap());
        }
        _ => {}
    }
    if param(&uri, "symbol").as_deref() != Some("BTCUSDT") {
        return (
            StatusCode::BAD_REQUEST,
            headers,
            r#"{"code":-1121,"msg":"Invalid symbol."}"#,
        )
            .into_response();
    }
    let limit: usize = param(&uri, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(500);
    if limit > 1000 {
        return (
            StatusCode::BAD_REQUEST,
            headers,
            r#"{"code":-1130,"msg":"Invalid limit."}"#,
        )
            .into_response();
    }
    let start: i64 = param(&uri, "startTime")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let end: i64 = param(&uri, "endTime")
        .and_then(|s| s.parse().ok())
        .unwrap_or(i64::MAX);
    let from = mock.rows.partition_point(|r| r.open_ms < start);
    let to = mock
        .rows
        .partition_point(|r| r.open_ms <= end)
        .min(from + limit)
        .max(from);
    (StatusCode::OK, headers, body(&mock.rows[from..to])).into_response()
}

async fn serve(faults: Vec<(u32, &'static str)>) -> (String, Arc<Mock>) {
    let mock = Arc::new(Mock {
        rows: load_rows(),
        calls: AtomicU32::new(0),
        faults,
    });
    let app = Router::new()
        .route("/api/v3/klines", get(klines))
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), mock)
}

fn client(base: &str, pause: Arc<RecordingPause>, max_attempts: u32) -> BinanceClient {
    let policy = RetryPolicy {
        max_attempts,
        ..RetryPolicy::default()
    };
    let transport = Arc::new(HyperTransport {
        timeout: Duration::from_millis(300),
    });
    BinanceClient::new(base, policy, 7, transport, pause).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_every_minute_exactly_through_faults() {
    let (base, mock) = serve(vec![
        (2, "429"),
        (3, "weight"),
        (4, "500"),
        (6, "418"),
        (7, "hang"),
    ])
    .await;
    let pause = Arc::new(RecordingPause::default());
    let c = client(&base, pause.clone(), 8);
    let first = crate::ts("2025-05-20T00:00:00Z") / 1_000_000;
    let last = crate::ts("2025-08-18T18:27:00Z") / 1_000_000;
    let (bars, stats) = c.fetch_bars("BTCUSDT", "1m", first, last).await.unwrap();

    let raw = read_csv(
        &sample("btcusdt_1m_2025-05-20_2025-08-18.csv"),
        &CsvOptions::default(),
    )
    .unwrap();
    let expected = validate(
        raw,
        grodt_data::import::MissingPolicy::Fail,
        &ValidationOptions::new(now()),
    )
    .bars;
    assert_eq!(bars.len(), 130_708);
    assert_eq!(
        (bars.price_scale, bars.volume_scale),
        (expected.price_scale, expected.volume_scale)
    );
    assert!(bars == expected, "fetched bars differ from the file");

    // 131 pages (130 full, one of 708) plus four failed calls (429, 500, 418, hung).
    assert_eq!(stats.pages, 131);
    assert_eq!(stats.requests, 135);
    assert_eq!(mock.calls.load(Ordering::SeqCst), 135);
    assert_eq!(
        (
            stats.rate_limited,
            stats.transient_failures,
            stats.weight_waits
        ),
        (2, 2, 1)
    );
    let paused = pause.0.lock().unwrap().clone();
    assert_eq!(paused, stats.paused);
    assert_eq!(paused.len(), 5);
    assert_eq!(paused[0], Duration::from_secs(3), "Retry-After of the 429");
    assert!(
        paused[1] >= Duration::from_secs(1) && paused[1] <= Duration::from_secs(61),
        "wait for the next weight minute: {:?}",
        paused[1]
    );
    assert!(
        paused[2] <= Duration::from_millis(250),
        "first backoff within base: {:?}",
        paused[2]
    );
    assert_eq!(paused[3], Duration::from_secs(5), "Retry-After of the 418");
    assert!(
        paused[4] <= Duration::from_millis(500),
        "second backoff within 2x base: {:?}",
        paused[4]
    );
}

#[tokio::test]
async fn client_errors_fail_at_once_and_persistent_failures_exhaust() {
    let (base, mock) = serve(vec![]).await;
    let pause = Arc::new(RecordingPause::default());
    let e = client(&base, pause.clone(), 3)
        .fetch_klines("NOPE", "1m", 0, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DataError::Exchange { reason, .. } if reason.contains("Invalid symbol")),
        "{e}"
    );
    assert_eq!(mock.calls.load(Ordering::SeqCst), 1);

    let (base, mock) = serve((1..=3).map(|n| (n, "500")).collect()).await;
    let e = client(&base, pause.clone(), 3)
        .fetch_klines("BTCUSDT", "1m", 0, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(e, DataError::ExchangeExhausted { attempts: 3, .. }),
        "{e}"
    );
    assert_eq!(mock.calls.load(Ordering::SeqCst), 3);
    // Two waits between three attempts, each within the growing cap.
    let p = pause.0.lock().unwrap();
    assert_eq!(p.len(), 2);
    assert!(p[0] <= Duration::from_millis(250) && p[1] <= Duration::from_millis(500));
}
