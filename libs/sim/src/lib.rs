//! Event-driven backtest engine: the Strategy trait, fill/slippage/commission/latency/borrow/financing models, exact ledger updates.
//!
//! Architecture invariant: no network, database or wall clock; time and randomness come in from outside.
