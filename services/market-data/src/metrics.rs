//! The service's own metrics, registered on the kit's registry.

use std::sync::Mutex;

use grodt_data::cache::CacheStats;
use grodt_kit::{KitError, Metrics};
use prometheus::{Gauge, IntCounter, IntCounterVec, Opts};

/// Counters and gauges of imports, the cache and replays.
#[derive(Debug)]
pub struct MdMetrics {
    pub rows_imported: IntCounter,
    pub rows_rejected: IntCounterVec,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub cache_hit_ratio: Gauge,
    pub replay_lag: Gauge,
    pub bars_published: IntCounterVec,
    pub feed_messages: IntCounter,
    pub feed_reconnects: IntCounter,
    pub feed_gap_bars: IntCounter,
    pub feed_duplicates: IntCounter,
    pub feed_lag: Gauge,
    /// Cache counters already exported, so the Prometheus counters advance by deltas.
    seen: Mutex<(u64, u64)>,
}

impl MdMetrics {
    pub fn register(m: &Metrics) -> Result<Self, KitError> {
        let err = KitError::Metrics;
        let r = m.registry();
        let counter = |what: &str, help: &str| -> Result<IntCounter, KitError> {
            let c = IntCounter::new(m.name(what), help).map_err(err)?;
            r.register(Box::new(c.clone())).map_err(err)?;
            Ok(c)
        };
        let gauge = |what: &str, help: &str| -> Result<Gauge, KitError> {
            let g = Gauge::new(m.name(what), help).map_err(err)?;
            r.register(Box::new(g.clone())).map_err(err)?;
            Ok(g)
        };
        let vec = |what: &str, help: &str, label: &str| -> Result<IntCounterVec, KitError> {
            let c = IntCounterVec::new(Opts::new(m.name(what), help), &[label]).map_err(err)?;
            r.register(Box::new(c.clone())).map_err(err)?;
            Ok(c)
        };
        Ok(Self {
            rows_imported: counter(
                "rows_imported_total",
                "Bars stored by CSV imports and FetchBars",
            )?,
            rows_rejected: vec(
                "rows_rejected_total",
                "Source rows rejected or dropped by an import, by validation check",
                "reason",
            )?,
            cache_hits: counter("cache_hits_total", "Frame cache lookups served from memory")?,
            cache_misses: counter(
                "cache_misses_total",
                "Frame cache lookups that read Parquet",
            )?,
            cache_hit_ratio: gauge(
                "cache_hit_ratio",
                "Frame cache hits / (hits + misses) since start",
            )?,
            replay_lag: gauge(
                "replay_lag_seconds",
                "How late the last replayed bar was published against its schedule",
            )?,
            bars_published: vec(
                "bars_published_total",
                "Bars published to grodt.bars.v1",
                "symbol",
            )?,
            feed_messages: counter(
                "feed_messages_total",
                "Messages received from the live kline streams",
            )?,
            feed_reconnects: counter(
                "feed_reconnects_total",
                "Live kline stream connections lost or refused, each followed by a new attempt",
            )?,
            feed_gap_bars: counter(
                "feed_gap_bars_total",
                "Bars fetched over REST to fill a hole in a live stream",
            )?,
            feed_duplicates: counter(
                "feed_duplicates_total",
                "Closed klines dropped because the bar was already published",
            )?,
            feed_lag: gauge(
                "feed_lag_seconds",
                "From the close of the last live bar to its publish on grodt.bars.v1",
            )?,
            seen: Mutex::new((0, 0)),
        })
    }

    /// Brings the cache metrics up to `stats`.
    pub fn observe_cache(&self, stats: &CacheStats) {
        if let Ok(mut seen) = self.seen.lock() {
            self.cache_hits.inc_by(stats.hits.saturating_sub(seen.0));
            self.cache_misses
                .inc_by(stats.misses.saturating_sub(seen.1));
            *seen = (seen.0.max(stats.hits), seen.1.max(stats.misses));
        }
        self.cache_hit_ratio.set(stats.hit_ratio());
    }
}
