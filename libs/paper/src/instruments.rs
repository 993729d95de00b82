//! The instruments paper trading knows, from configuration: the same
//! `Instrument::equity` a backtest of a catalog dataset trades (the
//! dataset's price precision; whole or fractional units), so a paper run and
//! a backtest of the same bars use the same tick and size grids.

use std::collections::BTreeMap;

use grodt_core::Instrument;
use serde::{Deserialize, Serialize};

use crate::PaperError;

/// The grids of one symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentSpec {
    /// Decimal places of prices, 0..=9 (a catalog dataset's price scale).
    pub price_precision: u8,
    /// Decimal places of quantities, 0..=9 (0 for whole shares; the
    /// backtest's fractional precision for crypto).
    pub size_precision: u8,
}

/// Symbol -> grids; `default` for symbols not listed (none = unknown
/// symbols are refused).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Instruments {
    /// Per symbol.
    pub symbols: BTreeMap<String, InstrumentSpec>,
    /// For any other symbol.
    pub default: Option<InstrumentSpec>,
}

impl Instruments {
    /// Checks the precisions; the error names the key.
    ///
    /// # Errors
    /// A precision above 9, or an empty symbol.
    pub fn validate(&self) -> Result<(), PaperError> {
        let max = grodt_core::fixed::MAX_PRECISION;
        let specs = self
            .symbols
            .iter()
            .map(|(s, v)| (s.as_str(), v))
            .chain(self.default.iter().map(|v| ("default", v)));
        for (symbol, spec) in specs {
            if symbol.is_empty() {
                return Err(PaperError::Invalid {
                    field: "instruments.symbols",
                    reason: "an empty symbol".into(),
                });
            }
            if spec.price_precision > max || spec.size_precision > max {
                return Err(PaperError::Invalid {
                    field: "instruments",
                    reason: format!("{symbol}: precisions must be at most {max}"),
                });
            }
        }
        Ok(())
    }

    /// The grids of `symbol`.
    pub fn spec(&self, symbol: &str) -> Option<InstrumentSpec> {
        self.symbols.get(symbol).copied().or(self.default)
    }

    /// The instrument of `symbol`.
    ///
    /// # Errors
    /// [`PaperError::UnknownSymbol`] when neither listed nor covered by a default.
    pub fn resolve(&self, symbol: &str) -> Result<Instrument, PaperError> {
        self.spec(symbol)
            .map(|s| Instrument::equity(symbol, s.price_precision, s.size_precision))
            .ok_or_else(|| PaperError::UnknownSymbol {
                symbol: symbol.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_then_default_then_unknown() {
        let mut i = Instruments::default();
        i.symbols.insert(
            "SPY".into(),
            InstrumentSpec {
                price_precision: 2,
                size_precision: 0,
            },
        );
        assert_eq!(i.resolve("SPY").unwrap().price_precision, 2);
        assert!(matches!(
            i.resolve("BTC"),
            Err(PaperError::UnknownSymbol { .. })
        ));
        i.default = Some(InstrumentSpec {
            price_precision: 8,
            size_precision: 8,
        });
        assert_eq!(i.resolve("BTC").unwrap().size_precision, 8);
        i.validate().unwrap();
        i.default = Some(InstrumentSpec {
            price_precision: 10,
            size_precision: 0,
        });
        assert!(i.validate().is_err());
    }
}
