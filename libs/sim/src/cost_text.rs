//! The text forms of the cost models, one parser for `grodt backtest --fees
//! / --slippage`, `grodt sweep` and a portfolio file's `[costs]`:
//!
//! - commission: `pct=F` or `bps=N` (`,min=Y`), `per_share=X` (`,min=Y`)
//!   (`,max_fraction=F`), `tiered=FROM:RATE/...`,
//!   `tiered_per_share=FROM:RATE/...` (`,min=Y`), `maker=F,taker=F`;
//! - slippage: `bps=N`, `volume_share=F` (impact coefficient),
//!   `spread_bps=N` (full spread, half paid per fill).

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::config::{CommissionSpec, SlippageSpec};

/// Text that is not one of the forms; the reason names the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct CostTextError {
    /// What is wrong, naming the key and value.
    pub reason: String,
}

fn bad(reason: impl Into<String>) -> CostTextError {
    CostTextError {
        reason: reason.into(),
    }
}

/// `name=value,name=value`, keys sorted.
///
/// # Errors
/// A part that is not `name=value`.
pub fn key_values(text: &str) -> Result<BTreeMap<String, String>, CostTextError> {
    let mut out = BTreeMap::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("{part:?} is not name=value")))?;
        out.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

/// A non-negative decimal number, the value of `key`.
///
/// # Errors
/// Not a decimal number, or negative.
pub fn decimal(key: &str, text: &str) -> Result<Decimal, CostTextError> {
    let d = Decimal::from_str(text)
        .map_err(|_| bad(format!("{key}={text:?} is not a decimal number")))?;
    if d.is_sign_negative() {
        return Err(bad(format!("{key}={text} must not be negative")));
    }
    Ok(d)
}

/// Basis points: a decimal 0..=10000 with at most 4 decimals (as the engine takes).
fn basis_points(key: &str, text: &str) -> Result<Decimal, CostTextError> {
    let d = decimal(key, text)?.normalize();
    if d > Decimal::from(10_000) || d.scale() > 4 {
        return Err(bad(format!(
            "{key}={text} must be 0..=10000 basis points with at most 4 decimals"
        )));
    }
    Ok(d)
}

/// `FROM:RATE/FROM:RATE...`, thresholds strictly increasing.
fn tiers(key: &str, text: &str) -> Result<Vec<(Decimal, Decimal)>, CostTextError> {
    let tiers = text
        .split('/')
        .map(|t| {
            let (from, rate) = t
                .split_once(':')
                .ok_or_else(|| bad(format!("{key}: tier {t:?} is not FROM:RATE")))?;
            Ok((decimal(key, from.trim())?, decimal(key, rate.trim())?))
        })
        .collect::<Result<Vec<_>, CostTextError>>()?;
    if tiers.windows(2).any(|w| w[1].0 <= w[0].0) {
        return Err(bad(format!("{key}: tier thresholds must increase")));
    }
    Ok(tiers)
}

const FEES_FORMS: &str = "expected pct=F or bps=N [,min=Y], per_share=X[,min=Y][,max_fraction=F], \
     tiered=FROM:RATE/..., tiered_per_share=FROM:RATE/...[,min=Y] or maker=F,taker=F";

/// A commission model from its text form (module docs).
///
/// # Errors
/// The part at fault, or the forms expected.
pub fn commission(text: &str) -> Result<CommissionSpec, CostTextError> {
    let kv = key_values(text)?;
    let keys: Vec<&str> = kv.keys().map(String::as_str).collect();
    let get = |k: &str| decimal(k, &kv[k]);
    let min = || kv.get("min").map(|m| decimal("min", m)).transpose();
    let rate_of = |key: &str| -> Result<Decimal, CostTextError> {
        Ok(if key == "bps" {
            get("bps")? / Decimal::from(10_000)
        } else {
            get("pct")?
        })
    };
    // Keys come sorted (BTreeMap).
    match keys.as_slice() {
        [k @ ("bps" | "pct")] => Ok(CommissionSpec::Percentage { rate: rate_of(k)? }),
        ["bps", "min"] | ["min", "pct"] => Ok(CommissionSpec::PercentageWithMinimum {
            rate: rate_of(if kv.contains_key("bps") { "bps" } else { "pct" })?,
            minimum: get("min")?,
        }),
        ["per_share"] | ["min", "per_share"] => Ok(CommissionSpec::PerShare {
            rate: get("per_share")?,
            minimum: min()?.unwrap_or(Decimal::ZERO),
        }),
        ["max_fraction", "per_share"] | ["max_fraction", "min", "per_share"] => {
            Ok(CommissionSpec::PerShareCapped {
                rate: get("per_share")?,
                minimum: min()?.unwrap_or(Decimal::ZERO),
                maximum_fraction: get("max_fraction")?,
            })
        }
        ["tiered"] => {
            let tiers = tiers("tiered", &kv["tiered"])?;
            if !tiers[0].0.is_zero() {
                return Err(bad("tiered: the first tier must start at 0"));
            }
            Ok(CommissionSpec::TieredNotional { tiers })
        }
        ["tiered_per_share"] | ["min", "tiered_per_share"] => Ok(CommissionSpec::TieredMonthly {
            tiers: tiers("tiered_per_share", &kv["tiered_per_share"])?,
            minimum: min()?.unwrap_or(Decimal::ZERO),
        }),
        ["maker", "taker"] => {
            // A maker rebate is a negative rate.
            let maker = Decimal::from_str(&kv["maker"])
                .map_err(|_| bad(format!("maker={:?} is not a decimal number", kv["maker"])))?;
            Ok(CommissionSpec::MakerTaker {
                maker,
                taker: get("taker")?,
            })
        }
        _ => Err(bad(format!("{text:?}: {FEES_FORMS}"))),
    }
}

/// A slippage model from its text form (module docs).
///
/// # Errors
/// The part at fault, or the forms expected.
pub fn slippage(text: &str) -> Result<SlippageSpec, CostTextError> {
    let kv = key_values(text)?;
    let keys: Vec<&str> = kv.keys().map(String::as_str).collect();
    match keys.as_slice() {
        ["bps"] => Ok(SlippageSpec::FixedBps {
            bps: basis_points("bps", &kv["bps"])?,
        }),
        ["spread_bps"] => Ok(SlippageSpec::HalfSpread {
            spread_bps: basis_points("spread_bps", &kv["spread_bps"])?,
        }),
        ["volume_share"] => {
            let c = decimal("volume_share", &kv["volume_share"])?;
            Ok(SlippageSpec::VolumeShare {
                price_impact: c
                    .to_f64()
                    .ok_or_else(|| bad("volume_share is out of range"))?,
            })
        }
        _ => Err(bad(format!(
            "{text:?}: expected bps=N, volume_share=F or spread_bps=N"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_portfolio_s_costs_read() {
        assert_eq!(
            commission("bps=5,min=1"),
            Ok(CommissionSpec::PercentageWithMinimum {
                rate: Decimal::new(5, 4),
                minimum: Decimal::ONE,
            })
        );
        assert_eq!(
            slippage("bps=1"),
            Ok(SlippageSpec::FixedBps { bps: Decimal::ONE })
        );
    }

    #[test]
    fn errors_name_the_part() {
        assert_eq!(
            commission("bps=-1").unwrap_err().reason,
            "bps=-1 must not be negative"
        );
        assert_eq!(
            slippage("bps").unwrap_err().reason,
            "\"bps\" is not name=value"
        );
        assert!(
            commission("tiered=5:0.01")
                .unwrap_err()
                .reason
                .contains("first tier")
        );
        assert!(
            slippage("bps=1.00001")
                .unwrap_err()
                .reason
                .contains("at most 4 decimals")
        );
    }
}
