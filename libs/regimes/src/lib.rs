//! Market regime classification: a pure, deterministic, streaming classifier that
//! turns bars into regimes (trending up, trending down, ranging, transition, high
//! volatility) from three scale-free inputs: the slope of a rolling VWAP in ATRs
//! per bar, the percentile rank of the ATR (relative to price) among its recent
//! values, and the ratio of short- to long-window realized volatility.
//!
//! - [`RegimeConfig`]: windows, thresholds, cadence and dwell, with documented
//!   defaults and [`RegimeConfig::validate`].
//! - [`Classifier`]: fed one [`grodt_core::Bar`] at a time; evaluates once per
//!   `eval_minutes` bucket of bar time (every bar for daily data) and returns a
//!   [`Decision`] carrying its inputs, the thresholds and the rule that fired. Its
//!   state serializes (serde) and restores exactly.
//! - [`classify`]: the same classifier over a whole series; [`regime_per_bar`]:
//!   the regime in force at every bar (per-regime backtest breakdowns).
//! - [`expost`]: the ex-post labelling rule (forward return, efficiency ratio,
//!   realized volatility) and the confusion matrix that grades the classifier.
//!
//! The rules, formulas, cadence, dwell, warm-up and persistence contract are in
//! docs/regimes.md. No I/O, no clock: the same bars give the same decisions.

mod classifier;
mod config;
mod dwell;
pub mod expost;
mod regime;

pub use classifier::{Classifier, Decision, Inputs, classify, regime_per_bar};
pub use config::{MAX_EVAL_MINUTES, MAX_WINDOW, RegimeConfig, RegimeError, Thresholds};
pub use dwell::Dwell;
pub use regime::{Regime, Rule};
