//! Binance klines over HTTPS: every minute exactly, through a 429, a used-weight
//! warning, a 502, a 418 and a hung request; client errors, exhausted retries,
//! malformed bodies and an untrusted server as typed errors.

use std::sync::Arc;
use std::time::Duration;

use grodt_data::binance::{BinanceClient, BinanceOptions};
use grodt_data::error::DataError;
use grodt_data::import::{CsvOptions, MissingPolicy, parse_csv};
use grodt_data::validate::{ValidationOptions, validate};
use grodt_data::venues::FetchStats;
use grodt_data::venues::testing::{Fault, MockExchange, TestPki, serve_https};

use crate::{VirtualTimer, btc_minutes, retry, transport};

const MINUTE: i64 = 60_000;

async fn mock(n: usize, faults: Vec<(u32, Fault)>) -> (TestPki, String, Arc<MockExchange>, String) {
    let pki = TestPki::new();
    let (rows, csv) = btc_minutes(n);
    let m = MockExchange::new("BTCUSDT", MINUTE, rows, faults);
    let base = serve_https(&pki, m.router()).await;
    (pki, base, m, csv)
}

fn client(pki: &TestPki, base: &str, timer: Arc<VirtualTimer>, max_attempts: u32) -> BinanceClient {
    BinanceClient::new(
        base,
        BinanceOptions {
            retry: retry(max_attempts),
            ..BinanceOptions::default()
        },
        7,
        transport(Some(&pki.ca_file), 300),
        timer,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_every_minute_exactly_through_faults() {
    let (pki, base, m, csv) = mock(
        10_500,
        vec![
            (
                2,
                Fault::RateLimited {
                    banned: false,
                    retry_after_s: 3,
                },
            ),
            (3, Fault::Weight(5998)),
            (4, Fault::ServerError),
            (
                6,
                Fault::RateLimited {
                    banned: true,
                    retry_after_s: 5,
                },
            ),
            (7, Fault::Hang),
        ],
    )
    .await;
    let timer = Arc::new(VirtualTimer::default());
    let c = client(&pki, &base, timer.clone(), 8);
    let first = 1_747_699_200_000; // 2025-05-20T00:00Z
    let (bars, stats) = c
        .fetch_bars("BTCUSDT", "1m", first, first + 20_000 * MINUTE)
        .await
        .unwrap();

    let raw = parse_csv(csv.as_bytes(), "head.csv", &CsvOptions::default()).unwrap();
    let expected = validate(raw, MissingPolicy::Fail, &ValidationOptions::new(i64::MAX)).bars;
    assert_eq!(bars.len(), 10_500);
    assert_eq!(
        (bars.price_scale, bars.volume_scale),
        (expected.price_scale, expected.volume_scale)
    );
    assert!(bars == expected, "fetched bars differ from the file");

    // 11 pages (10 full, one of 500) plus four failed calls (429, 502, 418, hung).
    assert_eq!((stats.pages, stats.requests, m.calls()), (11, 15, 15));
    assert_eq!(
        (
            stats.rate_limited,
            stats.transient_failures,
            stats.weight_waits,
            stats.limiter_waits
        ),
        (2, 2, 1, 0)
    );
    let paused = timer.paused();
    assert_eq!(paused, stats.paused);
    assert_eq!(paused.len(), 5, "{paused:?}");
    assert_eq!(paused[0], Duration::from_secs(3), "Retry-After of the 429");
    // The mock's Date is hh:mm:45: 15 s to the next minute, plus one.
    assert_eq!(
        paused[1],
        Duration::from_secs(16),
        "wait for the next weight minute"
    );
    assert!(
        paused[2] >= Duration::from_millis(250) && paused[2] < Duration::from_millis(500),
        "first backoff: base plus up to as much jitter: {:?}",
        paused[2]
    );
    assert_eq!(paused[3], Duration::from_secs(5), "Retry-After of the 418");
    assert!(
        paused[4] >= Duration::from_millis(500) && paused[4] < Duration::from_millis(1000),
        "the hang is the second failure of the 418's request: its second delay: {:?}",
        paused[4]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_fail_at_once_with_the_venue_message() {
    let (pki, base, m, _) = mock(10, vec![]).await;
    let timer = Arc::new(VirtualTimer::default());
    let e = client(&pki, &base, timer.clone(), 3)
        .fetch_klines("NOPE", "1m", 0, 1, &mut FetchStats::default())
        .await
        .unwrap_err();
    match &e {
        DataError::VenueStatus {
            venue: "binance",
            status: 400,
            code: Some(-1121),
            message,
            ..
        } => assert_eq!(message, "Invalid symbol."),
        other => panic!("{other}"),
    }
    assert!(
        e.to_string()
            .contains("HTTP 400 (code -1121): Invalid symbol."),
        "{e}"
    );
    assert_eq!(m.calls(), 1);
    assert!(timer.paused().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_5xx_exhausts_the_attempts_with_growing_waits() {
    let (pki, base, m, _) = mock(10, (1..=4).map(|n| (n, Fault::ServerError)).collect()).await;
    let timer = Arc::new(VirtualTimer::default());
    let e = client(&pki, &base, timer.clone(), 4)
        .fetch_klines("BTCUSDT", "1m", 0, 1, &mut FetchStats::default())
        .await
        .unwrap_err();
    match &e {
        DataError::ExchangeExhausted {
            attempts: 4, last, ..
        } => {
            assert!(last.contains("HTTP 502"), "{last}")
        }
        other => panic!("{other}"),
    }
    assert_eq!(m.calls(), 4);
    // Three waits between four attempts: 250, 500, 1000 ms each plus up to as much jitter.
    let p = timer.paused();
    assert_eq!(p.len(), 3);
    for (i, d) in p.iter().enumerate() {
        let base = Duration::from_millis(250 << i);
        assert!(*d >= base && *d < base * 2, "wait {i}: {d:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_body_is_a_payload_error() {
    let (pki, base, m, _) = mock(10, vec![(1, Fault::Malformed)]).await;
    let timer = Arc::new(VirtualTimer::default());
    let e = client(&pki, &base, timer, 3)
        .fetch_klines("BTCUSDT", "1m", 0, i64::MAX / 2, &mut FetchStats::default())
        .await
        .unwrap_err();
    match &e {
        DataError::VenuePayload {
            venue: "binance",
            field,
            reason,
            ..
        } => {
            assert_eq!(field, "body");
            assert!(reason.contains("not JSON"), "{reason}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(m.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_or_plain_http_never_gets_through() {
    let (_pki, base, m, _) = mock(10, vec![]).await;
    let timer = Arc::new(VirtualTimer::default());
    // Only the webpki roots: the test CA is not among them.
    let c = BinanceClient::new(
        &base,
        BinanceOptions {
            retry: retry(1),
            ..BinanceOptions::default()
        },
        7,
        transport(None, 2000),
        timer.clone(),
    )
    .unwrap();
    let e = c
        .fetch_klines("BTCUSDT", "1m", 0, 1, &mut FetchStats::default())
        .await
        .unwrap_err();
    assert!(
        e.to_string().to_lowercase().contains("certificate"),
        "the TLS failure is named: {e}"
    );
    assert_eq!(m.calls(), 0, "no request reached the handler");

    let plain = BinanceClient::new(
        &base.replace("https://", "http://"),
        BinanceOptions {
            retry: retry(1),
            ..BinanceOptions::default()
        },
        7,
        transport(None, 2000),
        timer,
    )
    .unwrap();
    let e = plain
        .fetch_klines("BTCUSDT", "1m", 0, 1, &mut FetchStats::default())
        .await
        .unwrap_err();
    assert!(matches!(e, DataError::ExchangeExhausted { .. }), "{e}");
    assert_eq!(m.calls(), 0);
}
