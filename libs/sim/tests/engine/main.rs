//! Integration tests of the backtest engine (one binary): order types, cost
//! models, accruals, and properties over random runs.

mod costs;
mod helpers;
mod lookahead;
mod orders;
mod props;
mod venue;
mod warmup;
