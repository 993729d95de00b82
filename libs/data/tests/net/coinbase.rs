//! Coinbase candles over HTTPS: the real hourly sample served as the venue sends it
//! (JSON numbers, newest first, 300 per window) comes back exact; the limiter spaces
//! requests at 10 per second; a 429 without and a 5xx are retried, a 404 is a typed error.

use std::sync::Arc;
use std::time::Duration;

use grodt_data::error::DataError;
use grodt_data::venues::coinbase::CoinbaseClient;
use grodt_data::venues::testing::{Fault, MockExchange, TestPki, serve_https};
use grodt_data::venues::{FetchStats, candles_to_bars};

use crate::{VirtualTimer, coinbase_hours, retry, transport};

const HOUR: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_the_real_hourly_sample_exactly_in_windows_of_300() {
    let pki = TestPki::new();
    let rows = coinbase_hours("2018-06-01 00:00");
    let n = rows.len();
    assert!(n > 11_000, "{n} rows");
    let m = MockExchange::new(
        "BTC-USD",
        HOUR,
        rows.clone(),
        vec![
            (
                3,
                Fault::RateLimited {
                    banned: false,
                    retry_after_s: 1,
                },
            ),
            (5, Fault::ServerError),
        ],
    );
    let base = serve_https(&pki, m.router()).await;
    let timer = Arc::new(VirtualTimer::default());
    let c = CoinbaseClient::new(
        &base,
        retry(5),
        3,
        transport(Some(&pki.ca_file), 2000),
        timer.clone(),
    )
    .unwrap();
    let mut stats = FetchStats::default();
    let (first, last) = (rows[0].open_ms, rows[n - 1].open_ms);
    let candles = c
        .fetch_candles("BTC-USD", "1h", first, last, &mut stats)
        .await
        .unwrap();
    assert_eq!(candles.len(), n);
    for (c, r) in candles.iter().zip(&rows) {
        assert_eq!(c.open_time_ms, r.open_ms);
        // The numbers went through JSON doubles and came back as the text the file has.
        assert_eq!(
            [&c.open, &c.high, &c.low, &c.close, &c.volume].map(String::as_str),
            r.fields.each_ref().map(String::as_str),
            "at {}",
            r.open_ms
        );
    }
    let bars = candles_to_bars(&candles).unwrap();
    assert_eq!(bars.len(), n);
    let windows = ((last - first) / HOUR) as u32 / 300 + 1;
    assert_eq!(stats.pages, windows);
    assert_eq!(stats.requests, windows + 2);
    assert_eq!((stats.rate_limited, stats.transient_failures), (1, 1));
    // 10 per second (burst 10): N requests take at least (N - 10) x 100 ms, and the
    // limiter's own waits are never longer than one cell.
    use grodt_data::venues::rest::Timer;
    assert!(
        timer.now() >= Duration::from_millis(100) * (stats.requests - 10),
        "{:?} for {} requests",
        timer.now(),
        stats.requests
    );
    assert!(stats.limiter_waits >= stats.requests - 10 - 15, "{stats:?}");
    assert!(
        stats.paused.contains(&Duration::from_secs(1)),
        "Retry-After of the 429"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_products_and_granularities_are_typed_errors() {
    let pki = TestPki::new();
    let m = MockExchange::new("BTC-USD", HOUR, coinbase_hours("2019-10-01 00:00"), vec![]);
    let base = serve_https(&pki, m.router()).await;
    let timer = Arc::new(VirtualTimer::default());
    let c = CoinbaseClient::new(
        &base,
        retry(3),
        3,
        transport(Some(&pki.ca_file), 2000),
        timer,
    )
    .unwrap();
    let e = c
        .fetch_candles("BTC-EUR", "1h", 0, HOUR, &mut FetchStats::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DataError::VenueStatus { venue: "coinbase", status: 404, message, .. } if message == "NotFound"),
        "{e}"
    );
    let e = c
        .fetch_candles("BTC-USD", "4h", 0, HOUR, &mut FetchStats::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            DataError::InvalidOption {
                field: "timeframe",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(m.calls(), 1, "the 4h request never left");
}
