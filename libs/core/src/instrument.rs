//! Instruments: what can be traded and the rules for its prices, sizes, margin and borrow.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::CoreError;
use crate::fixed::{POW10, Price, Quantity};

/// Broad class of an instrument; drives defaults such as periods per year.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AssetClass {
    /// Shares and ETFs.
    Equity,
    /// Futures contracts.
    Future,
    /// Spot FX pairs.
    Fx,
    /// Crypto spot.
    Crypto,
}

/// Margin rates as fractions of notional (1 = fully funded, 0.5 = 2x leverage).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarginParams {
    /// Required to open a position.
    pub initial: Decimal,
    /// Required to keep it.
    pub maintenance: Decimal,
}

/// Short-selling parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BorrowParams {
    /// Whether shorting is allowed at all.
    pub shortable: bool,
    /// Annual borrow fee rate on short market value; `None` uses the engine default.
    pub annual_rate: Option<Decimal>,
}

/// A tradable instrument. Prices are raw integers at `price_precision`,
/// sizes at `size_precision`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instrument {
    /// Symbol, unique within a backtest.
    pub id: String,
    /// Asset class.
    pub asset_class: AssetClass,
    /// Decimal places of prices.
    pub price_precision: u8,
    /// Smallest price increment (at `price_precision`).
    pub tick_size: Price,
    /// Decimal places of quantities.
    pub size_precision: u8,
    /// Smallest quantity increment (at `size_precision`).
    pub size_step: Quantity,
    /// Smallest order quantity.
    pub min_quantity: Quantity,
    /// Contract multiplier (1 for shares).
    pub multiplier: i64,
    /// Margin rates.
    pub margin: MarginParams,
    /// Short-selling parameters.
    pub borrow: BorrowParams,
}

impl Instrument {
    /// A cash equity: one-tick at the last decimal place, size step one unit at
    /// `size_precision`, fully funded, shortable at the engine's default borrow rate.
    pub fn equity(id: &str, price_precision: u8, size_precision: u8) -> Self {
        Self {
            id: id.to_string(),
            asset_class: AssetClass::Equity,
            price_precision,
            tick_size: Price::from_raw(1, price_precision).unwrap_or(Price::zero(0)),
            size_precision,
            size_step: Quantity::from_raw(1, size_precision).unwrap_or(Quantity::zero(0)),
            min_quantity: Quantity::from_raw(1, size_precision).unwrap_or(Quantity::zero(0)),
            multiplier: 1,
            margin: MarginParams {
                initial: Decimal::ONE,
                maintenance: Decimal::ONE,
            },
            borrow: BorrowParams {
                shortable: true,
                annual_rate: None,
            },
        }
    }

    /// Checks the instrument's own consistency; errors name the field at fault.
    pub fn validate(&self) -> Result<(), CoreError> {
        let bad = |field: &'static str, reason: &str| {
            Err(CoreError::InvalidInstrument {
                field,
                reason: format!("{}: {reason}", self.id),
            })
        };
        if self.id.is_empty() {
            return bad("id", "empty");
        }
        if usize::from(self.price_precision) > 9 || usize::from(self.size_precision) > 9 {
            return bad("precision", "above 9");
        }
        if self.tick_size.precision() != self.price_precision || self.tick_size.raw() <= 0 {
            return bad("tick_size", "must be positive at price_precision");
        }
        if self.size_step.precision() != self.size_precision || self.size_step.raw() <= 0 {
            return bad("size_step", "must be positive at size_precision");
        }
        if self.min_quantity.precision() != self.size_precision || self.min_quantity.raw() < 0 {
            return bad("min_quantity", "must be non-negative at size_precision");
        }
        if self.multiplier <= 0 {
            return bad("multiplier", "must be positive");
        }
        if self.margin.initial <= Decimal::ZERO || self.margin.maintenance <= Decimal::ZERO {
            return bad("margin", "rates must be positive");
        }
        if self.borrow.annual_rate.is_some_and(|r| r < Decimal::ZERO) {
            return bad("borrow.annual_rate", "must be non-negative");
        }
        Ok(())
    }

    /// Parses a price at this instrument's precision and checks it lies on the tick.
    pub fn price(&self, text: &str) -> Result<Price, CoreError> {
        let p = Price::parse(text, self.price_precision)?;
        self.check_price(p)?;
        Ok(p)
    }

    /// Parses a quantity at this instrument's precision and checks step and sign.
    pub fn quantity(&self, text: &str) -> Result<Quantity, CoreError> {
        let q = Quantity::parse_non_negative(text, self.size_precision)?;
        self.check_quantity(q)?;
        Ok(q)
    }

    /// A price is valid for this instrument when it has its precision and lies on the tick.
    pub fn check_price(&self, p: Price) -> Result<(), CoreError> {
        if p.precision() != self.price_precision || p.raw() % self.tick_size.raw() != 0 {
            return Err(CoreError::InvalidInstrument {
                field: "price",
                reason: format!("{}: {p} is not on tick {}", self.id, self.tick_size),
            });
        }
        Ok(())
    }

    /// A quantity is valid when it has the size precision, is a multiple of the step and at least the minimum.
    pub fn check_quantity(&self, q: Quantity) -> Result<(), CoreError> {
        if q.precision() != self.size_precision
            || q.raw() % self.size_step.raw() != 0
            || q.raw() < 0
        {
            return Err(CoreError::InvalidInstrument {
                field: "quantity",
                reason: format!(
                    "{}: {q} is not a multiple of step {}",
                    self.id, self.size_step
                ),
            });
        }
        if q < self.min_quantity {
            return Err(CoreError::InvalidInstrument {
                field: "quantity",
                reason: format!(
                    "{}: {q} is below the minimum {}",
                    self.id, self.min_quantity
                ),
            });
        }
        Ok(())
    }

    /// `10^price_precision` as an integer.
    pub fn price_scale(&self) -> i64 {
        POW10[usize::from(self.price_precision)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_fields_by_name() {
        let mut i = Instrument::equity("SPY", 2, 0);
        assert!(i.validate().is_ok());
        i.multiplier = 0;
        let e = i.validate().unwrap_err().to_string();
        assert!(e.contains("multiplier"), "{e}");
    }

    #[test]
    fn checks_tick_and_step() {
        let mut i = Instrument::equity("ES", 2, 0);
        i.tick_size = Price::parse("0.25", 2).unwrap();
        assert!(i.price("4000.25").is_ok());
        assert!(i.price("4000.10").is_err());
        i.min_quantity = Quantity::parse("2", 0).unwrap();
        assert!(i.quantity("1").is_err());
        assert!(i.quantity("3").is_ok());
    }
}
