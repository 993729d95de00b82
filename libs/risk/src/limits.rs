//! The limits in force and their validation.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Per-symbol overrides; absent fields fall back to the global limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SymbolLimits {
    /// Max absolute position quantity (> 0).
    pub max_position_quantity: Option<Decimal>,
    /// Max absolute position notional in the account currency (> 0).
    pub max_position_notional: Option<Decimal>,
    /// Max quantity of a single order (> 0).
    pub max_order_quantity: Option<Decimal>,
}

/// Every limit is optional: `None` = not enforced. Field names are those of
/// `grodt.v1.RiskLimits`, and a violation names the field it breaks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Max notional of one order (quantity x reference price), > 0.
    pub max_order_notional: Option<Decimal>,
    /// Max quantity of one order, > 0.
    pub max_order_quantity: Option<Decimal>,
    /// Max absolute notional of one symbol's position after the order, > 0.
    pub max_position_notional: Option<Decimal>,
    /// Max sum of absolute position notionals, > 0.
    pub max_gross_exposure: Option<Decimal>,
    /// Max absolute sum of signed position notionals, > 0.
    pub max_net_exposure: Option<Decimal>,
    /// Max gross exposure over equity (leverage across every strategy), > 0.
    pub max_gross_leverage: Option<Decimal>,
    /// Max |net exposure| over equity, > 0.
    pub max_net_leverage: Option<Decimal>,
    /// Max absolute notional of one symbol's position (all strategies
    /// together) over equity, > 0.
    pub max_symbol_exposure: Option<Decimal>,
    /// Loss since the UTC day start that trips the daily-loss breaker, > 0.
    pub max_daily_loss: Option<Decimal>,
    /// Drawdown from the peak (a fraction in (0, 1)) that trips the drawdown breaker.
    pub max_drawdown: Option<Decimal>,
    /// Fat-finger check: a limit price further than this fraction (0, 1) from
    /// the reference price is rejected.
    pub max_price_deviation: Option<Decimal>,
    /// Orders per rolling minute (of intent time), per strategy, > 0.
    pub max_orders_per_minute: Option<u32>,
    /// Per-symbol overrides.
    pub symbol_limits: BTreeMap<String, SymbolLimits>,
    /// Symbols that may not be traded (no order that adds risk).
    pub restricted_symbols: BTreeSet<String>,
}

/// A limit that does not validate: the field (as named in `RiskLimits`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct LimitsError {
    /// e.g. `max_drawdown`, `symbol_limits[SPY].max_position_quantity`.
    pub field: String,
    /// What the field accepts.
    pub reason: String,
}

fn positive(field: &str, v: Option<Decimal>) -> Result<(), LimitsError> {
    match v {
        Some(x) if x <= Decimal::ZERO => Err(LimitsError {
            field: field.to_owned(),
            reason: format!("must be > 0 (got {x})"),
        }),
        _ => Ok(()),
    }
}

fn fraction(field: &str, v: Option<Decimal>) -> Result<(), LimitsError> {
    match v {
        Some(x) if x <= Decimal::ZERO || x >= Decimal::ONE => Err(LimitsError {
            field: field.to_owned(),
            reason: format!("must be in (0, 1) (got {x})"),
        }),
        _ => Ok(()),
    }
}

/// Longest symbol accepted as a key (as `Instrument.symbol`).
const MAX_SYMBOL: usize = 32;

fn symbol_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SYMBOL
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
}

impl Limits {
    /// Checks every field; the first error names its field.
    ///
    /// # Errors
    /// [`LimitsError`] naming the field at fault.
    pub fn validate(&self) -> Result<(), LimitsError> {
        positive("max_order_notional", self.max_order_notional)?;
        positive("max_order_quantity", self.max_order_quantity)?;
        positive("max_position_notional", self.max_position_notional)?;
        positive("max_gross_exposure", self.max_gross_exposure)?;
        positive("max_net_exposure", self.max_net_exposure)?;
        positive("max_gross_leverage", self.max_gross_leverage)?;
        positive("max_net_leverage", self.max_net_leverage)?;
        positive("max_symbol_exposure", self.max_symbol_exposure)?;
        positive("max_daily_loss", self.max_daily_loss)?;
        fraction("max_drawdown", self.max_drawdown)?;
        fraction("max_price_deviation", self.max_price_deviation)?;
        if self.max_orders_per_minute == Some(0) {
            return Err(LimitsError {
                field: "max_orders_per_minute".into(),
                reason: "must be > 0 (absent = not enforced)".into(),
            });
        }
        for (sym, l) in &self.symbol_limits {
            if !symbol_ok(sym) {
                return Err(LimitsError {
                    field: format!("symbol_limits[{sym}]"),
                    reason: "the key must be a symbol: 1..32 chars of [A-Za-z0-9._/-]".into(),
                });
            }
            positive(
                &format!("symbol_limits[{sym}].max_position_quantity"),
                l.max_position_quantity,
            )?;
            positive(
                &format!("symbol_limits[{sym}].max_position_notional"),
                l.max_position_notional,
            )?;
            positive(
                &format!("symbol_limits[{sym}].max_order_quantity"),
                l.max_order_quantity,
            )?;
        }
        for (i, sym) in self.restricted_symbols.iter().enumerate() {
            if !symbol_ok(sym) {
                return Err(LimitsError {
                    field: format!("restricted_symbols[{i}]"),
                    reason: format!("{sym:?} is not a symbol: 1..32 chars of [A-Za-z0-9._/-]"),
                });
            }
        }
        Ok(())
    }
}

/// The limits with their compare-and-set version and audit fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsRecord {
    /// The limits.
    pub limits: Limits,
    /// 0 = never set by SetLimits (defaults or configuration); +1 on every SetLimits.
    pub version: u64,
    /// When the last SetLimits was received (ns since the epoch), recorded in its command.
    pub updated_at_ns: Option<i64>,
    /// Who set them (`config` for the configured initial limits).
    pub updated_by: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn errors_name_the_field() {
        let mut l = Limits {
            max_drawdown: Some(dec!(1)),
            ..Limits::default()
        };
        assert_eq!(l.validate().unwrap_err().field, "max_drawdown");
        l.max_drawdown = Some(dec!(0.2));
        l.symbol_limits.insert(
            "SPY".into(),
            SymbolLimits {
                max_position_quantity: Some(dec!(-1)),
                ..SymbolLimits::default()
            },
        );
        assert_eq!(
            l.validate().unwrap_err().field,
            "symbol_limits[SPY].max_position_quantity"
        );
        l.symbol_limits.clear();
        l.max_orders_per_minute = Some(0);
        assert_eq!(l.validate().unwrap_err().field, "max_orders_per_minute");
        l.max_orders_per_minute = Some(5);
        l.restricted_symbols.insert(String::new());
        assert_eq!(l.validate().unwrap_err().field, "restricted_symbols[0]");
        l.restricted_symbols.clear();
        assert!(l.validate().is_ok());
    }
}
