//! The live kline feed against a local WSS server replaying Binance stream messages
//! (open updates and closed klines), dropping the connection mid-stream, resuming
//! with a repeated kline and a hole that the mock REST venue fills; then a restart
//! seeded with the last delivered bar.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use grodt_data::binance::{BinanceClient, BinanceOptions};
use grodt_data::venues::live::{FeedStats, LiveBar, LiveOptions, run};
use grodt_data::venues::testing::{
    MockExchange, MockRow, TestPki, kline_message, serve_https, serve_wss,
};
use grodt_data::venues::tls::client_config;
use tokio::sync::{mpsc, watch};

use crate::{VirtualTimer, btc_minutes, retry, transport};

const MINUTE: i64 = 60_000;

fn msgs(rows: &[MockRow], idx: &[usize], with_updates: bool) -> Vec<String> {
    let mut out = Vec::new();
    for &i in idx {
        if with_updates {
            out.push(kline_message("BTCUSDT", "1m", MINUTE, &rows[i], false));
        }
        out.push(kline_message("BTCUSDT", "1m", MINUTE, &rows[i], true));
    }
    out
}

/// Runs the feed until `n` bars arrived; returns them and the stats.
async fn collect(
    pki: &TestPki,
    ws: &str,
    rest: &BinanceClient,
    last: Option<i64>,
    n: usize,
) -> (Vec<LiveBar>, Arc<FeedStats>) {
    let opts = LiveOptions {
        ws_base: ws.to_owned(),
        symbol: "BTCUSDT".into(),
        interval: "1m".into(),
        tls: Arc::new(client_config(Some(&pki.ca_file)).unwrap()),
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        seed: 5,
    };
    let stats = Arc::new(FeedStats::default());
    let (tx, mut rx) = mpsc::channel(64);
    let (stop_tx, stop) = watch::channel(false);
    let got = async {
        let mut got = Vec::new();
        while got.len() < n {
            got.push(rx.recv().await.expect("feed ended early"));
        }
        let _ = stop_tx.send(true);
        got
    };
    let (gate, got) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(run(&opts, rest, last, &stats, tx, stop), got)
    })
    .await
    .expect("bars within 20 s");
    let gate = gate.unwrap();
    assert_eq!(gate.last(), got.last().map(|b| b.candle.open_time_ms));
    (got, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_closed_bar_once_in_order_across_a_drop_a_hole_and_a_restart() {
    let pki = TestPki::new();
    let (rows, _) = btc_minutes(16);
    let m = MockExchange::new("BTCUSDT", MINUTE, rows.clone(), vec![]);
    let base = serve_https(&pki, m.router()).await;
    let rest = BinanceClient::new(
        &base,
        BinanceOptions {
            retry: retry(3),
            ..BinanceOptions::default()
        },
        1,
        transport(Some(&pki.ca_file), 2000),
        Arc::new(VirtualTimer::default()),
    )
    .unwrap();
    // First connection: bars 0..=5 (each with an open update first), then dropped.
    // Second: bar 5 again, then 9, 10, 11: 6..=8 are missing.
    let ws = serve_wss(
        &pki,
        vec![
            msgs(&rows, &[0, 1, 2, 3, 4, 5], true),
            msgs(&rows, &[5, 9, 10, 11], false),
        ],
    )
    .await;
    let (got, stats) = collect(&pki, &ws, &rest, None, 12).await;
    let opens: Vec<i64> = got.iter().map(|b| b.candle.open_time_ms).collect();
    let want: Vec<i64> = rows[..12].iter().map(|r| r.open_ms).collect();
    assert_eq!(opens, want, "every bar once, in order");
    for (b, r) in got.iter().zip(&rows) {
        assert_eq!(b.candle.close, r.fields[3]);
        assert_eq!(b.close_ms, r.open_ms + MINUTE);
    }
    let gap: Vec<bool> = got.iter().map(|b| b.from_gap).collect();
    assert_eq!(gap.iter().filter(|g| **g).count(), 3);
    assert!(gap[6] && gap[7] && gap[8] && !gap[9]);
    assert_eq!(stats.gap_bars.load(Ordering::Relaxed), 3);
    assert_eq!(stats.duplicates.load(Ordering::Relaxed), 1);
    assert!(stats.reconnects.load(Ordering::Relaxed) >= 1);
    assert_eq!(stats.messages.load(Ordering::Relaxed), 12 + 4);
    assert_eq!(m.calls(), 1, "one REST request filled the hole");

    // A restart (a new feed task) seeded with the last bar delivered: the stream
    // repeats 10 and 11 and jumps to 14; 12 and 13 come from REST, nothing twice.
    let ws = serve_wss(&pki, vec![msgs(&rows, &[10, 11, 14, 15], false)]).await;
    let (got, stats) = collect(&pki, &ws, &rest, Some(rows[11].open_ms), 4).await;
    let opens: Vec<i64> = got.iter().map(|b| b.candle.open_time_ms).collect();
    let want: Vec<i64> = rows[12..16].iter().map(|r| r.open_ms).collect();
    assert_eq!(opens, want);
    assert_eq!(stats.duplicates.load(Ordering::Relaxed), 2);
    assert_eq!(stats.gap_bars.load(Ordering::Relaxed), 2);
}
