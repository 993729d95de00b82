//! Streaming technical indicators (SMA, EMA, ATR, VWAP, ...) over f64, O(1) per update.
//!
//! Architecture invariant: pure computation, no I/O; depends on nothing heavier than std.
