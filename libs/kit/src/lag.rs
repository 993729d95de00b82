//! The consumer-lag gauge every consuming service exports: how many entries
//! of each stream its group has not been delivered yet (XINFO GROUPS lag),
//! labelled `stream` and `group`.

use std::time::Duration;

use grodt_bus::{EventBus, StreamName};
use prometheus::{IntGaugeVec, Opts};

use crate::{KitError, Metrics};

/// Creates and registers the gauge, `grodt_<service>_bus_consumer_lag_entries{stream, group}`.
pub fn gauge(metrics: &Metrics) -> Result<IntGaugeVec, KitError> {
    let gauge = IntGaugeVec::new(
        Opts::new(
            metrics.name("bus_consumer_lag_entries"),
            "entries of a stream not yet delivered to the group (XINFO GROUPS lag)",
        ),
        &["stream", "group"],
    )?;
    metrics.registry().register(Box::new(gauge.clone()))?;
    Ok(gauge)
}

/// Sets `gauge{stream, group}` from the bus for each of `streams` once.
pub async fn record(bus: &dyn EventBus, streams: &[&str], group: &str, gauge: &IntGaugeVec) {
    for name in streams {
        let Ok(s) = StreamName::parse(*name) else {
            continue;
        };
        match bus.groups(&s).await {
            Ok(groups) => {
                for g in groups.iter().filter(|g| g.group == group) {
                    gauge
                        .with_label_values(&[name, group])
                        .set(i64::try_from(g.lag).unwrap_or(i64::MAX));
                }
            }
            Err(e) => tracing::debug!(error = %e, "consumer lag not read"),
        }
    }
}

/// [`record`] every `every` until `stop` turns true.
pub async fn watch(
    bus: &dyn EventBus,
    streams: &[&str],
    group: &str,
    gauge: &IntGaugeVec,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        record(bus, streams, group, gauge).await;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
