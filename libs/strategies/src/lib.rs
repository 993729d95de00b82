//! Reference strategies (SMA crossover, S1 trend) written once against the `grodt-sim` Strategy trait, used by backtests and the live pipeline alike.
