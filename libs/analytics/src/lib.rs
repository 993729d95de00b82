//! Performance analytics: returns, Sharpe, Sortino, Calmar, drawdowns, VaR/CVaR, trade statistics and per-label breakdowns.
//!
//! Architecture invariant: pure functions over series; no I/O.
