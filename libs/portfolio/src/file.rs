//! The portfolio file (TOML): strategies, data, costs, allocation and
//! limits, read the same way by `grodt backtest --portfolio` and, later, the
//! strategy service. Parsing is pure; whoever runs the file loads the data
//! and builds the strategies. docs/portfolio.md has a complete example.
//!
//! ```toml
//! cash = "300000"
//!
//! [data]                      # symbol = CSV file, relative to this file
//! SPY = "spy.csv"
//!
//! [costs]                     # the text forms of grodt backtest's flags
//! fees = "per_share=0.005,min=1"
//!
//! [allocation]
//! method = "inverse_volatility"
//! lookback = 60
//! schedule = "monthly"
//!
//! [risk]                      # optional: the risk service's limits
//! max_position_notional = "150000"
//!
//! [[strategy]]
//! id = "trend"
//! name = "sma_cross"
//! symbols = ["SPY"]
//! params = { fast = "50", slow = "200" }
//! ```

use std::collections::BTreeMap;

use grodt_core::Decimal;
use grodt_sim::BacktestConfig;
use grodt_sim::cost_text;
use serde::Deserialize;

use crate::PortfolioError;
use crate::allocation::{Allocator, Bounds, Method, Schedule};
use crate::backtest::{Plan, PortfolioLimits};

/// A whole portfolio file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortfolioFile {
    /// A name for reports.
    #[serde(default)]
    pub name: Option<String>,
    /// Starting cash of the account.
    pub cash: Decimal,
    /// Symbol -> CSV file (relative paths are relative to the file).
    pub data: BTreeMap<String, String>,
    /// Costs and fills, as `grodt backtest`'s flags spell them.
    #[serde(default)]
    pub costs: Costs,
    /// How capital is split and moved.
    #[serde(default)]
    pub allocation: AllocationSection,
    /// Whole-book limits.
    #[serde(default)]
    pub limits: PortfolioLimits,
    /// The risk service's limits, run by the desk on every order, fill and
    /// bar (`None` = the risk rules are off). Field names are the service's.
    #[serde(default)]
    pub risk: Option<grodt_risk_rules::Limits>,
    /// The strategies, in order.
    #[serde(rename = "strategy")]
    pub strategies: Vec<StrategyEntry>,
}

/// `[costs]`: the text forms of `grodt backtest --fees/--slippage/...`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Costs {
    /// `--fees` form, e.g. `per_share=0.005,min=1` or `bps=10`.
    #[serde(default)]
    pub fees: Option<String>,
    /// `--slippage` form, e.g. `bps=2`.
    #[serde(default)]
    pub slippage: Option<String>,
    /// Annual borrow rate on shorts.
    #[serde(default)]
    pub borrow_rate: Option<Decimal>,
    /// Annual financing rate on negative cash.
    #[serde(default)]
    pub financing_rate: Option<Decimal>,
    /// Fractional quantities.
    #[serde(default)]
    pub fractional: bool,
    /// Largest share of a bar's volume one order may take.
    #[serde(default)]
    pub max_participation: Option<Decimal>,
}

/// `[allocation]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationSection {
    /// `fixed` (the strategies' `weight`s, equal when none is given),
    /// `performance`, `inverse_volatility`, `equal_risk_contribution`,
    /// `kelly` or `drawdown`.
    #[serde(default = "fixed")]
    pub method: String,
    /// Returns the method and overlays look back on.
    #[serde(default = "lookback")]
    pub lookback: usize,
    /// Kelly: fraction of the Kelly bet.
    #[serde(default)]
    pub kelly_fraction: Option<Decimal>,
    /// Kelly: cap per strategy.
    #[serde(default)]
    pub kelly_cap: Option<Decimal>,
    /// Drawdown: the strategy drawdown that cuts it.
    #[serde(default)]
    pub drawdown_threshold: Option<Decimal>,
    /// Drawdown: the weight multiplier while cut (0 = off).
    #[serde(default)]
    pub drawdown_cut: Option<Decimal>,
    /// Drawdown: the drawdown below which it is restored.
    #[serde(default)]
    pub drawdown_recover: Option<Decimal>,
    /// Bounds for every strategy (each strategy's own `min_weight`/`max_weight` win).
    #[serde(default)]
    pub min_weight: Option<Decimal>,
    /// See `min_weight`.
    #[serde(default)]
    pub max_weight: Option<Decimal>,
    /// `never`, `daily`, `weekly`, `monthly`, or `{ drift = { threshold = "0.05" } }`.
    #[serde(default = "never")]
    pub schedule: Schedule,
    /// Net orders across strategies (default on).
    #[serde(default = "yes")]
    pub netting: bool,
    /// Volatility target per period of the weighted strategy returns.
    #[serde(default)]
    pub vol_target: Option<Decimal>,
    /// Leverage the volatility target may reach (default 1).
    #[serde(default)]
    pub vol_max_leverage: Option<Decimal>,
    /// Correlation above which allocations are cut.
    #[serde(default)]
    pub correlation_threshold: Option<Decimal>,
    /// How hard (1 = a strategy whose average excess correlation reaches
    /// 1 − threshold is cut to zero).
    #[serde(default)]
    pub correlation_strength: Option<Decimal>,
}

fn fixed() -> String {
    "fixed".into()
}
const fn lookback() -> usize {
    60
}
const fn never() -> Schedule {
    Schedule::Never
}
const fn yes() -> bool {
    true
}

impl Default for AllocationSection {
    fn default() -> Self {
        Self {
            method: fixed(),
            lookback: lookback(),
            kelly_fraction: None,
            kelly_cap: None,
            drawdown_threshold: None,
            drawdown_cut: None,
            drawdown_recover: None,
            min_weight: None,
            max_weight: None,
            schedule: never(),
            netting: true,
            vol_target: None,
            vol_max_leverage: None,
            correlation_threshold: None,
            correlation_strength: None,
        }
    }
}

/// One `[[strategy]]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyEntry {
    /// Unique id (results, client order ids).
    pub id: String,
    /// Registered strategy name (`grodt strategies`).
    pub name: String,
    /// Symbols it trades, in the strategy's order (keys of `[data]`).
    pub symbols: Vec<String>,
    /// Parameters as text (`grodt strategies` lists them).
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    /// Weight for the fixed method.
    #[serde(default)]
    pub weight: Option<Decimal>,
    /// Its own bounds.
    #[serde(default)]
    pub min_weight: Option<Decimal>,
    /// See `min_weight`.
    #[serde(default)]
    pub max_weight: Option<Decimal>,
    /// Gross exposure per unit of its equity (default 1).
    #[serde(default)]
    pub max_leverage: Option<Decimal>,
}

impl StrategyEntry {
    /// Parameters as `name -> text`, whatever TOML type they were written in.
    pub fn param_text(&self) -> BTreeMap<String, String> {
        self.params
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    // Set-valued parameters (regimes) are comma-separated text.
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|x| x.as_str().map_or_else(|| format!("{x:?}"), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(","),
                    other => format!("{other:?}"),
                };
                (k.clone(), text)
            })
            .collect()
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> PortfolioError {
    PortfolioError::Invalid {
        field,
        reason: reason.into(),
    }
}

impl PortfolioFile {
    /// Parses and checks a portfolio file.
    ///
    /// # Errors
    /// [`PortfolioError::File`] for TOML that does not parse or has unknown
    /// keys (line and column named), [`PortfolioError::Invalid`] naming the
    /// strategy and field for the rest.
    pub fn parse(text: &str) -> Result<Self, PortfolioError> {
        let file: Self = toml::from_str(text)?;
        file.check()?;
        Ok(file)
    }

    /// The engine config the file's account trades under: its cash and its
    /// `[costs]` (fees, slippage, borrow and financing rates, participation
    /// cap) on the engine's defaults. The run flags (seed, limit fills, day
    /// counts, margin check, money decimals) stay the defaults: `grodt
    /// backtest --portfolio` sets them from its options.
    ///
    /// # Errors
    /// [`PortfolioError::Invalid`] naming `[costs] fees` or `[costs] slippage`
    /// and the part at fault, or `[costs]` for a config the engine refuses.
    pub fn engine_config(&self) -> Result<BacktestConfig, PortfolioError> {
        let c = &self.costs;
        let config = BacktestConfig {
            starting_cash: self.cash,
            commission: c
                .fees
                .as_deref()
                .map(cost_text::commission)
                .transpose()
                .map_err(|e| invalid("[costs] fees", e.reason))?
                .unwrap_or_default(),
            slippage: c
                .slippage
                .as_deref()
                .map(cost_text::slippage)
                .transpose()
                .map_err(|e| invalid("[costs] slippage", e.reason))?
                .unwrap_or_default(),
            max_participation: c.max_participation,
            borrow_rate: c.borrow_rate.unwrap_or(Decimal::ZERO),
            financing_rate: c.financing_rate.unwrap_or(Decimal::ZERO),
            ..BacktestConfig::default()
        };
        config
            .validate()
            .map_err(|e| invalid("[costs]", e.to_string()))?;
        Ok(config)
    }

    fn check(&self) -> Result<(), PortfolioError> {
        if self.cash <= Decimal::ZERO {
            return Err(invalid(
                "cash",
                format!("must be positive, got {}", self.cash),
            ));
        }
        if self.strategies.is_empty() {
            return Err(invalid("strategy", "at least one [[strategy]] is needed"));
        }
        for (n, s) in self.strategies.iter().enumerate() {
            if s.id.is_empty()
                || !s
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    "strategy.id",
                    format!("strategy {n}: {:?} must be 1+ chars of [A-Za-z0-9_-]", s.id),
                ));
            }
            if self.strategies[..n].iter().any(|o| o.id == s.id) {
                return Err(invalid("strategy.id", format!("{} appears twice", s.id)));
            }
            if s.symbols.is_empty() {
                return Err(invalid("strategy.symbols", format!("{}: no symbol", s.id)));
            }
            if let Some(sym) = s.symbols.iter().find(|x| !self.data.contains_key(*x)) {
                return Err(invalid(
                    "strategy.symbols",
                    format!("{}: {sym} has no file in [data]", s.id),
                ));
            }
        }
        if let Some(risk) = &self.risk {
            risk.validate().map_err(PortfolioError::RiskLimits)?;
        }
        Ok(())
    }

    /// The capital each strategy opens with, in file order: the cash split
    /// by the plan's initial weights, each share rounded down to `cost_dp`
    /// places (the engine config's), as the desk opens its sub-ledgers.
    ///
    /// # Errors
    /// As [`PortfolioFile::plan`].
    pub fn opening_capital(&self, cost_dp: u32) -> Result<Vec<Decimal>, PortfolioError> {
        let mut plan = self.plan()?;
        crate::backtest::opening_shares(&mut plan, self.strategies.len(), self.cash, cost_dp)
    }

    /// The symbols in `[data]` order (their index is the portfolio's instrument index).
    pub fn symbols(&self) -> Vec<&str> {
        self.data.keys().map(String::as_str).collect()
    }

    /// The run plan: the allocator (with the fixed weights, bounds and method
    /// parameters of the file), schedule, limits and overlays.
    ///
    /// # Errors
    /// An unknown method, a missing method parameter, or weights and bounds
    /// the allocator refuses (named).
    pub fn plan(&self) -> Result<Plan, PortfolioError> {
        let a = &self.allocation;
        let n = self.strategies.len();
        let lb = a.lookback;
        let need = |v: Option<Decimal>, field: &'static str| {
            v.ok_or_else(|| invalid(field, format!("the {} method needs {field}", a.method)))
        };
        let method = match a.method.as_str() {
            "fixed" => {
                let given: Vec<Option<Decimal>> =
                    self.strategies.iter().map(|s| s.weight).collect();
                let weights = if given.iter().all(Option::is_none) {
                    vec![Decimal::ONE; n]
                } else if given.iter().all(Option::is_some) {
                    given.into_iter().flatten().collect()
                } else {
                    return Err(invalid(
                        "strategy.weight",
                        "give every strategy a weight, or none (equal weights)",
                    ));
                };
                Method::Fixed { weights }
            }
            "performance" => Method::Performance { lookback: lb },
            "inverse_volatility" | "risk_parity" => Method::InverseVolatility { lookback: lb },
            "equal_risk_contribution" => Method::EqualRiskContribution { lookback: lb },
            "kelly" => Method::Kelly {
                lookback: lb,
                fraction: need(a.kelly_fraction, "kelly_fraction")?,
                cap: need(a.kelly_cap, "kelly_cap")?,
            },
            "drawdown" => Method::Drawdown {
                threshold: need(a.drawdown_threshold, "drawdown_threshold")?,
                cut: need(a.drawdown_cut, "drawdown_cut")?,
                recover: need(a.drawdown_recover, "drawdown_recover")?,
                base: self
                    .strategies
                    .iter()
                    .map(|s| s.weight)
                    .collect::<Option<Vec<_>>>(),
            },
            other => {
                return Err(invalid(
                    "allocation.method",
                    format!(
                        "{other:?}; valid: fixed, performance, inverse_volatility (risk_parity), \
                         equal_risk_contribution, kelly, drawdown"
                    ),
                ));
            }
        };
        let bounds: Vec<Bounds> = self
            .strategies
            .iter()
            .map(|s| Bounds {
                min: s.min_weight.or(a.min_weight).unwrap_or(Decimal::ZERO),
                max: s.max_weight.or(a.max_weight).unwrap_or(Decimal::ONE),
            })
            .collect();
        let allocator = Allocator::new(method, bounds, n)?;
        Ok(Plan {
            allocator,
            schedule: a.schedule.clone(),
            limits: self.limits.clone(),
            risk: self.risk.clone(),
            netting: a.netting,
            vol_target: a
                .vol_target
                .map(|t| (t, a.vol_max_leverage.unwrap_or(Decimal::ONE))),
            correlation_cut: a
                .correlation_threshold
                .map(|t| (t, a.correlation_strength.unwrap_or(Decimal::ONE))),
            lookback: lb,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
name = "two"
cash = "100000"

[data]
SPY = "spy.csv"
AAPL = "aapl.csv"

[costs]
fees = "per_share=0.005,min=1"

[allocation]
method = "fixed"
schedule = "monthly"
min_weight = "0.1"

[limits]
max_drawdown = "0.3"

[[strategy]]
id = "trend"
name = "sma_cross"
symbols = ["SPY"]
params = { fast = 50, slow = "200" }
weight = "0.6"

[[strategy]]
id = "pair"
name = "pair"
symbols = ["AAPL", "SPY"]
weight = "0.4"
"#;

    #[test]
    fn a_file_becomes_a_plan() {
        let f = PortfolioFile::parse(EXAMPLE).unwrap();
        assert_eq!(f.symbols(), vec!["AAPL", "SPY"]);
        assert_eq!(f.strategies[0].param_text()["fast"], "50");
        let mut plan = f.plan().unwrap();
        assert_eq!(plan.schedule, Schedule::Monthly);
        assert_eq!(plan.limits.max_drawdown, Some(Decimal::new(3, 1)));
        let w = plan.allocator.target(&[Vec::new(), Vec::new()]).unwrap();
        assert_eq!(w, vec![Decimal::new(6, 1), Decimal::new(4, 1)]);
    }

    #[test]
    fn a_risk_section_is_the_risk_services_limits() {
        assert_eq!(
            PortfolioFile::parse(EXAMPLE).unwrap().plan().unwrap().risk,
            None
        );
        let text = EXAMPLE.replace(
            "[[strategy]]\nid = \"trend\"",
            "[risk]\nmax_position_notional = \"50000\"\nmax_drawdown = \"0.25\"\n\
             max_orders_per_minute = 3\nrestricted_symbols = [\"AAPL\"]\n\n\
             [risk.symbol_limits.SPY]\nmax_position_quantity = \"100\"\n\n\
             [[strategy]]\nid = \"trend\"",
        );
        let f = PortfolioFile::parse(&text).unwrap();
        let risk = f.plan().unwrap().risk.unwrap();
        assert_eq!(risk.max_position_notional, Some(Decimal::from(50_000)));
        assert_eq!(risk.max_drawdown, Some(Decimal::new(25, 2)));
        assert_eq!(risk.max_orders_per_minute, Some(3));
        assert!(risk.restricted_symbols.contains("AAPL"));
        assert_eq!(
            risk.symbol_limits["SPY"].max_position_quantity,
            Some(Decimal::from(100))
        );
        // A bad value names its field as risk.<field>.
        let e = PortfolioFile::parse(&text.replace("\"0.25\"", "\"1.5\"")).unwrap_err();
        assert!(
            e.to_string().starts_with("invalid risk.max_drawdown: "),
            "{e}"
        );
        let e = PortfolioFile::parse(&text.replace("\"100\"", "\"-1\"")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid risk.symbol_limits[SPY].max_position_quantity: "),
            "{e}"
        );
        // Unknown fields are refused, as in the risk service's configuration.
        let e =
            PortfolioFile::parse(&text.replace("max_orders_per_minute", "max_orders")).unwrap_err();
        assert!(e.to_string().contains("unknown field `max_orders`"), "{e}");
    }

    #[test]
    fn mistakes_are_named() {
        let e =
            PortfolioFile::parse(&EXAMPLE.replace("symbols = [\"SPY\"]", "symbols = [\"QQQ\"]"))
                .unwrap_err();
        assert!(
            e.to_string().contains("trend: QQQ has no file in [data]"),
            "{e}"
        );
        let e = PortfolioFile::parse(&EXAMPLE.replace("weight = \"0.4\"", ""))
            .unwrap()
            .plan()
            .unwrap_err();
        assert!(e.to_string().contains("every strategy a weight"), "{e}");
        let e = PortfolioFile::parse(&EXAMPLE.replace("method = \"fixed\"", "method = \"magic\""))
            .unwrap()
            .plan()
            .unwrap_err();
        assert!(e.to_string().contains("\"magic\"; valid"), "{e}");
        let e = PortfolioFile::parse(&EXAMPLE.replace("[limits]", "[limits]\nmax_leverage = 2"))
            .unwrap_err();
        assert!(
            e.to_string().contains("unknown field `max_leverage`"),
            "{e}"
        );
    }
}
