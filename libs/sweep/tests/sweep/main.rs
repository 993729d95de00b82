//! grodt-sweep: parity with the event-driven engine (every fill, trade, refusal
//! and the final equity) for the SMA, EMA, S2 and S3 kernels, metrics against
//! grodt-analytics, one core against all.

mod api;
mod helpers;
mod metrics;
mod parity;
mod props;
mod tables;
mod threads;
