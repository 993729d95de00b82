//! The portfolio desk against the single-strategy engine, on real and
//! synthetic bars: parity, netting, allocation, limits, rebalancing, and the
//! books adding up after every timestamp.

mod helpers;
mod netting;
mod parity;
mod props;
mod risk;
mod rules;
