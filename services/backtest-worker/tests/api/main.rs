//! API tests of the backtest worker.
