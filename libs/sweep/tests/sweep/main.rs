//! grodt-sweep: parity with the event-driven engine (every fill, trade, refusal
//! and the final equity), metrics against grodt-analytics, one core against all.

mod api;
mod helpers;
mod metrics;
mod parity;
mod props;
mod threads;
