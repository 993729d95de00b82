//! Golden tests: SMA(10/30) on SPY daily against backtrader 1.9.78 (fills generated
//! by `make_reference.py` in this folder) and the figures of the data README.

mod gating;
mod lookahead;
mod s1;
mod s2s3;
mod sma_parity;
