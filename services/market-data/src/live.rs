//! The live feed: one grodt-data kline stream per configured symbol, its closed bars
//! published on `grodt.bars.v1` through the replay's publish path, each once and in
//! order. The open time of the last bar published is kept in a file per stream
//! (written after each publish, atomically), so a feed that fails or a service that
//! restarts (kill -9 included) starts from it: repeated klines are dropped and the
//! bars missed meanwhile are fetched over REST. A kill between a publish and its
//! file write publishes that one bar again, under the same event id (derived from
//! the symbol, timeframe and open time), so consumers drop it. Counters go into
//! the service's metrics.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use grodt_bus::StreamName;
use grodt_data::venues::live::{FeedStats, LiveBar, LiveOptions, run};
use grodt_data::venues::tls::client_config;
use grodt_data::venues::{Venue, candles_to_bars};
use grodt_proto::topic::stream_of;
use grodt_proto::v1;
use tokio::sync::mpsc;

use crate::config::FeedsConfig;
use crate::convert::bar;
use crate::error::MdError;
use crate::grpc::Shared;
use crate::replay::publish_bar;

/// Where Binance's public kline streams are.
pub const BINANCE_WS: &str = "wss://stream.binance.com:9443";

fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn publish(
    shared: &Shared,
    stream: &StreamName,
    symbol: &str,
    tf: v1::Timeframe,
    b: &LiveBar,
) -> Result<(), MdError> {
    let bars = candles_to_bars(std::slice::from_ref(&b.candle))?;
    let event = v1::BarEvent {
        bar: Some(bar(&bars, 0, symbol, tf)),
        dataset_id: String::new(),
        replay_id: String::new(),
    };
    // One id per (symbol, timeframe, open time): the bar published again
    // after a kill between its publish and its state write is the same
    // event, which consumers drop by id.
    let id = grodt_bus::derived_id(
        bars.ts[0],
        &format!("live-bar:{symbol}:{}:{}", tf.as_str_name(), bars.ts[0]),
    );
    publish_bar(&*shared.bus, stream, &event, bars.ts[0], Some(id)).await?;
    shared
        .metrics
        .bars_published
        .with_label_values(&[symbol])
        .inc();
    shared
        .metrics
        .feed_lag
        .set((wall_ms() - b.close_ms).max(0) as f64 / 1000.0);
    Ok(())
}

/// Copies the feed's counters into the Prometheus ones (by difference).
fn export(shared: &Shared, stats: &FeedStats, seen: &mut [u64; 4]) {
    let m = &shared.metrics;
    let now = [
        stats.messages.load(Ordering::Relaxed),
        stats.reconnects.load(Ordering::Relaxed),
        stats.gap_bars.load(Ordering::Relaxed),
        stats.duplicates.load(Ordering::Relaxed),
    ];
    for (i, c) in [
        &m.feed_messages,
        &m.feed_reconnects,
        &m.feed_gap_bars,
        &m.feed_duplicates,
    ]
    .into_iter()
    .enumerate()
    {
        c.inc_by(now[i].saturating_sub(seen[i]));
    }
    *seen = now;
}

/// The last published open time of a stream, if a previous run recorded one.
fn read_mark(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

async fn write_mark(path: &Path, open_ms: i64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, open_ms.to_string()).await?;
    tokio::fs::rename(&tmp, path).await
}

/// Starts one feed task per symbol when `[market_data.feeds] enabled`; they end
/// when the service (its `Shared`) goes away.
pub fn start(shared: &Arc<Shared>, catalog_dir: &Path) -> Result<(), MdError> {
    let cfg: FeedsConfig = shared.config.feeds.clone();
    if !cfg.enabled {
        return Ok(());
    }
    let tf = grodt_data::aggregate::Timeframe::parse(&cfg.interval)
        .map_err(|e| MdError::invalid("market_data.feeds.interval", e.to_string()))?;
    let tls = Arc::new(client_config(cfg.ca_file.as_deref())?);
    let state_dir: PathBuf = cfg
        .state_dir
        .clone()
        .unwrap_or_else(|| catalog_dir.join(".feeds"));
    std::fs::create_dir_all(&state_dir).map_err(|e| {
        MdError::invalid(
            "market_data.feeds.state_dir",
            format!("{}: {e}", state_dir.display()),
        )
    })?;
    for (n, symbol) in cfg.symbols.iter().enumerate() {
        let opts = LiveOptions {
            ws_base: cfg.ws_url.clone().unwrap_or_else(|| BINANCE_WS.to_owned()),
            symbol: symbol.clone(),
            interval: cfg.interval.clone(),
            tls: tls.clone(),
            min_backoff: Duration::from_millis(cfg.reconnect_min_ms),
            max_backoff: Duration::from_millis(cfg.reconnect_max_ms),
            seed: n as u64,
        };
        let rest = crate::fetch::source(Venue::Binance, &shared.config.venues.binance, n as u64)?;
        let mark = state_dir.join(format!("binance-{symbol}-{}", cfg.interval));
        let weak: Weak<Shared> = Arc::downgrade(shared);
        let stop = shared.feeds_stop.subscribe();
        let ptf = crate::convert::timeframe_to_proto(tf);
        tokio::spawn(async move {
            let Ok(stream) = StreamName::parse(stream_of::<v1::BarEvent>()) else {
                return;
            };
            let stats = Arc::new(FeedStats::default());
            let mut seen = [0u64; 4];
            let mut last: Option<i64> = read_mark(&mark);
            loop {
                let (tx, mut rx) = mpsc::channel::<LiveBar>(256);
                let feed = run(&opts, rest.as_ref(), last, &stats, tx, stop.clone());
                let consume = async {
                    while let Some(b) = rx.recv().await {
                        let Some(shared) = weak.upgrade() else { return };
                        // Published before the mark moves: a bar the bus refused is fetched again.
                        if let Err(e) = publish(&shared, &stream, &opts.symbol, ptf, &b).await {
                            tracing::warn!(symbol = %opts.symbol, error = %e, "live bar not published");
                            return;
                        }
                        last = Some(b.candle.open_time_ms);
                        if let Err(e) = write_mark(&mark, b.candle.open_time_ms).await {
                            tracing::warn!(path = %mark.display(), error = %e, "feed mark not written");
                        }
                        export(&shared, &stats, &mut seen);
                    }
                };
                let (outcome, ()) = tokio::join!(feed, consume);
                let Some(shared) = weak.upgrade() else { return };
                export(&shared, &stats, &mut seen);
                drop(shared);
                if let Err(e) = outcome {
                    tracing::warn!(symbol = %opts.symbol, error = %e, "live feed failed; restarting");
                }
                if stop.has_changed().is_err() {
                    return;
                }
                tokio::time::sleep(opts.max_backoff).await;
            }
        });
    }
    Ok(())
}
