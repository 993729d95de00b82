//! Live bars from Binance's `<symbol>@kline_<interval>` WebSocket stream over rustls:
//! closed klines (`x: true`) delivered exactly once and in open-time order. A
//! [`Gate`] remembers the last bar delivered (seeded by the caller, e.g. from what a
//! previous run published): a repeated kline is dropped, and a kline past a hole
//! (after a disconnect, or a restart) first fills the hole over REST. The stream
//! reconnects after `backon` delays with seeded jitter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::BackoffBuilder;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::binance::parse::kline_event;
use crate::error::Result;
use crate::venues::{Candle, CandleSource, FetchStats, timeframe_ms};

/// Where and what to subscribe to.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// `wss://stream.binance.com:9443` (no path).
    pub ws_base: String,
    /// As Binance spells it (`BTCUSDT`).
    pub symbol: String,
    /// `1m`, `1h`, ...
    pub interval: String,
    pub tls: Arc<rustls::ClientConfig>,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub seed: u64,
}

/// Counters of a feed, shared with whoever exports them.
#[derive(Debug, Default)]
pub struct FeedStats {
    /// WebSocket messages received.
    pub messages: AtomicU64,
    /// Connections lost or refused, each followed by a new attempt.
    pub reconnects: AtomicU64,
    /// Bars delivered from REST to fill a hole.
    pub gap_bars: AtomicU64,
    /// Closed klines dropped as already delivered.
    pub duplicates: AtomicU64,
    /// Messages that are not the documented kline event (skipped).
    pub malformed: AtomicU64,
}

/// A closed bar, in order, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBar {
    pub candle: Candle,
    /// Open time plus the interval, ms: when the bar closed.
    pub close_ms: i64,
    /// Filled over REST after a hole.
    pub from_gap: bool,
}

/// What to do with a closed bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Deliver,
    Duplicate,
    /// Bars with open times in `[from_ms, to_ms]` are missing before this one.
    Gap {
        from_ms: i64,
        to_ms: i64,
    },
}

/// The exactly-once, in-order rule.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    tf_ms: i64,
    last: Option<i64>,
}

impl Gate {
    /// `last`: open time (ms) of the last bar already delivered, if any.
    pub fn new(tf_ms: i64, last: Option<i64>) -> Self {
        Self { tf_ms, last }
    }

    pub fn last(&self) -> Option<i64> {
        self.last
    }

    pub fn check(&self, open_ms: i64) -> Verdict {
        match self.last {
            Some(l) if open_ms <= l => Verdict::Duplicate,
            Some(l) if open_ms > l + self.tf_ms => Verdict::Gap {
                from_ms: l + self.tf_ms,
                to_ms: open_ms - self.tf_ms,
            },
            _ => Verdict::Deliver,
        }
    }

    pub fn advance(&mut self, open_ms: i64) {
        self.last = Some(self.last.map_or(open_ms, |l| l.max(open_ms)));
    }
}

fn closed(bar: Candle, tf_ms: i64, from_gap: bool) -> LiveBar {
    LiveBar {
        close_ms: bar.open_time_ms + tf_ms,
        candle: bar,
        from_gap,
    }
}

/// Runs the feed until `stop` turns true or `out` closes; `Err` only when a hole
/// cannot be filled over REST (delivering past it would break the order).
pub async fn run(
    opts: &LiveOptions,
    rest: &dyn CandleSource,
    last_delivered: Option<i64>,
    stats: &FeedStats,
    out: mpsc::Sender<LiveBar>,
    mut stop: watch::Receiver<bool>,
) -> Result<Gate> {
    let tf = timeframe_ms(&opts.interval)?;
    let mut gate = Gate::new(tf, last_delivered);
    let url = format!(
        "{}/ws/{}@kline_{}",
        opts.ws_base.trim_end_matches('/'),
        opts.symbol.to_ascii_lowercase(),
        opts.interval
    );
    let backoff = || {
        backon::ExponentialBuilder::new()
            .with_min_delay(opts.min_backoff)
            .with_max_delay(opts.max_backoff)
            .without_max_times()
            .with_jitter()
            .with_jitter_seed(opts.seed)
            .build()
    };
    let mut delays = backoff();
    while !*stop.borrow() {
        let connector = tokio_tungstenite::Connector::Rustls(opts.tls.clone());
        let connect =
            tokio_tungstenite::connect_async_tls_with_config(&url, None, false, Some(connector));
        let ws = tokio::select! {
            r = connect => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        // A refused connection, TLS or handshake failure counts as a reconnect below.
        if let Ok((mut ws, _)) = ws {
            delays = backoff();
            loop {
                let msg = tokio::select! {
                    m = ws.next() => m,
                    _ = stop.wait_for(|s| *s) => return Ok(gate),
                };
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                };
                stats.messages.fetch_add(1, Ordering::Relaxed);
                let event = match kline_event(text.as_str()) {
                    Ok(Some(e)) if e.closed => e,
                    Ok(_) => continue,
                    Err(_) => {
                        stats.malformed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let open = event.candle.open_time_ms;
                match gate.check(open) {
                    Verdict::Duplicate => {
                        stats.duplicates.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Verdict::Gap { from_ms, to_ms } => {
                        let mut fs = FetchStats::default();
                        let missing = rest
                            .candles(&opts.symbol, &opts.interval, from_ms, to_ms, &mut fs)
                            .await?;
                        for c in missing {
                            if gate.check(c.open_time_ms) != Verdict::Duplicate
                                && c.open_time_ms < open
                            {
                                let o = c.open_time_ms;
                                if out.send(closed(c, tf, true)).await.is_err() {
                                    return Ok(gate);
                                }
                                stats.gap_bars.fetch_add(1, Ordering::Relaxed);
                                gate.advance(o);
                            }
                        }
                    }
                    Verdict::Deliver => {}
                }
                if out.send(closed(event.candle, tf, false)).await.is_err() {
                    return Ok(gate);
                }
                gate.advance(open);
            }
        }
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
        let d = delays.next().unwrap_or(opts.max_backoff);
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    Ok(gate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_delivers_once_in_order_and_names_holes() {
        let mut g = Gate::new(60, None);
        assert_eq!(g.check(120), Verdict::Deliver);
        g.advance(120);
        assert_eq!(g.check(120), Verdict::Duplicate);
        assert_eq!(g.check(60), Verdict::Duplicate);
        assert_eq!(g.check(180), Verdict::Deliver);
        assert_eq!(
            g.check(360),
            Verdict::Gap {
                from_ms: 180,
                to_ms: 300
            }
        );
        let g = Gate::new(60, Some(300));
        assert_eq!(g.check(300), Verdict::Duplicate);
        assert_eq!(
            g.check(480),
            Verdict::Gap {
                from_ms: 360,
                to_ms: 420
            }
        );
    }
}
