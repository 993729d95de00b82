//! Domain types and rules of GRODT: instruments, fixed-point prices and quantities,
//! Decimal money, bars, orders and their state machine, fills, positions and the
//! portfolio ledger.
//!
//! Architecture invariant: no I/O and no async. This crate never depends on tokio,
//! tonic, prost, sqlx, redis or polars (checked by a test with `cargo tree`).

pub mod error;
