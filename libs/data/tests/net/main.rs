//! The venue adapters over real TLS against a local mock exchange (a throwaway CA,
//! trusted through the adapters' CA-file option, never by turning verification off),
//! serving the real samples in Binance's and Coinbase's formats with scripted
//! rate limits, 5xx, hangs, error and malformed bodies; and the backfill into a catalog.

mod backfill;
mod binance;
mod coinbase;
mod live;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grodt_data::venues::rest::{BoxFuture, RetryPolicy, Timer, Transport};
use grodt_data::venues::testing::MockRow;
use grodt_data::venues::tls::{HttpsTransport, client_config};

pub fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples")
        .join(name)
}

/// A virtual clock: waits are recorded and advance it at once.
#[derive(Default)]
pub struct VirtualTimer {
    now: Mutex<Duration>,
    pub paused: Mutex<Vec<Duration>>,
}

impl VirtualTimer {
    pub fn paused(&self) -> Vec<Duration> {
        self.paused.lock().unwrap().clone()
    }
}

impl Timer for VirtualTimer {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap()
    }
    fn pause(&self, d: Duration) -> BoxFuture<'_, ()> {
        *self.now.lock().unwrap() += d;
        self.paused.lock().unwrap().push(d);
        Box::pin(std::future::ready(()))
    }
}

/// HTTPS trusting the webpki roots and the test CA in `ca_file`.
pub fn transport(ca_file: Option<&std::path::Path>, timeout_ms: u64) -> Arc<dyn Transport> {
    Arc::new(HttpsTransport::new(
        client_config(ca_file).unwrap(),
        Duration::from_millis(timeout_ms),
    ))
}

pub fn retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        ..RetryPolicy::default()
    }
}

/// The first `n` minutes of the Binance BTC/USDT sample, with Binance's 8 decimals.
pub fn btc_minutes(n: usize) -> (Vec<MockRow>, String) {
    let text = std::fs::read_to_string(sample("btcusdt_1m_2025-05-20_2025-08-18.csv")).unwrap();
    let head: Vec<&str> = text.lines().take(n + 1).collect();
    let csv = head.join("\n") + "\n";
    let eight = |s: &str| {
        let (i, f) = s.split_once('.').unwrap_or((s, ""));
        format!("{i}.{f:0<8}")
    };
    let rows = grodt_data::venues::testing::rows_from_csv(&csv)
        .into_iter()
        .map(|r| MockRow {
            open_ms: r.open_ms,
            fields: r.fields.map(|f| eight(&f)),
        })
        .collect();
    (rows, csv)
}

/// The Coinbase hourly sample (CryptoDataDownload's raw file: a banner, newest first,
/// `2019-10-17 09-AM` stamps, two volume columns) from `from` on, oldest first, as
/// the venue's rows; the volume is the base-currency one (`volume_btc`).
pub fn coinbase_hours(from: &str) -> Vec<MockRow> {
    let text = std::fs::read_to_string(sample("coinbase_btcusd_1h_raw.csv")).unwrap();
    let from = chrono::NaiveDateTime::parse_from_str(from, "%Y-%m-%d %H:%M").unwrap();
    let mut rows: Vec<MockRow> = text
        .lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let t =
                chrono::NaiveDateTime::parse_from_str(&format!("{}:00", f[0]), "%Y-%m-%d %I-%p:%M")
                    .unwrap();
            (t >= from).then(|| MockRow {
                open_ms: t.and_utc().timestamp_millis(),
                fields: [f[2], f[3], f[4], f[5], f[6]].map(str::to_owned),
            })
        })
        .collect();
    rows.reverse();
    rows
}
