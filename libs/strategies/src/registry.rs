//! The strategy registry: every strategy's typed parameter schema and the one
//! way to build a strategy from a name and textual parameters.
//!
//! Who uses it: the backtest runner (CLI and workers) builds strategies with
//! [`build`] / [`Configured::build`] (one instrument) or [`build_on`] /
//! [`Configured::build_on`] (as many as [`StrategySpec::symbols`]: 2 for
//! `pair`); request edges check parameters with
//! [`validate`] / [`parse`] before queueing anything; the optimizer enumerates
//! search spaces from [`specs`] / [`spec`] (bounds, step, constraints); `grodt
//! strategies` prints them. No service parses strategy parameters by hand.
//!
//! Parameters are given as `name -> text` (the wire's `map<string,string>`);
//! absent ones take the schema's default. Each value is parsed by its type,
//! checked against its inclusive bounds, then the constraints between
//! parameters are checked; every error names the parameter and the rule.
//! The step is advice for search spaces, not a rule on given values.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use grodt_core::error::{Classify, ErrorKind};
use grodt_core::{Decimal, Instrument};
use grodt_strategy_api::Strategy;

use grodt_regimes::Regime;

use crate::gate::{GateConfig, Gated, OnDisallowed};
use crate::pair::{Hedge, Pair, PairParams};
use crate::{
    EmaCross, EmaCrossParams, S1, S1Params, S2, S2Params, S3, S3Params, SmaCross, SmaCrossParams,
    StrategyError,
};

/// The type of a parameter with its bounds (inclusive), default and step.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ParamType {
    /// A whole number.
    Int {
        /// Smallest value allowed.
        min: i64,
        /// Largest value allowed.
        max: i64,
        /// Value when the parameter is absent.
        default: i64,
        /// Spacing of a search grid.
        step: i64,
    },
    /// A float (for quantities used only in f64 arithmetic, like ATR multiples).
    Float {
        /// Smallest value allowed.
        min: f64,
        /// Largest value allowed.
        max: f64,
        /// Value when the parameter is absent.
        default: f64,
        /// Spacing of a search grid.
        step: f64,
    },
    /// An exact decimal (for anything that reaches money or sizing).
    Decimal {
        /// Smallest value allowed.
        min: Decimal,
        /// Largest value allowed.
        max: Decimal,
        /// Value when the parameter is absent.
        default: Decimal,
        /// Spacing of a search grid.
        step: Decimal,
    },
    /// `true` or `false`.
    Bool {
        /// Value when the parameter is absent.
        default: bool,
    },
    /// One of a fixed set of words.
    Choice {
        /// The words allowed.
        options: Vec<&'static str>,
        /// Value when the parameter is absent.
        default: &'static str,
    },
    /// A non-empty subset of a fixed set of words, given comma-separated
    /// (`trending_up,trending_down`); kept in the options' order, without repeats.
    Set {
        /// The words allowed.
        options: Vec<&'static str>,
        /// Value when the parameter is absent.
        default: Vec<&'static str>,
    },
}

impl ParamType {
    /// The type's name as the CLI and JSON print it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Int { .. } => "int",
            Self::Float { .. } => "float",
            Self::Decimal { .. } => "decimal",
            Self::Bool { .. } => "bool",
            Self::Choice { .. } => "choice",
            Self::Set { .. } => "set",
        }
    }

    /// The default value.
    pub fn default_value(&self) -> Value {
        match self {
            Self::Int { default, .. } => Value::Int(*default),
            Self::Float { default, .. } => Value::Float(*default),
            Self::Decimal { default, .. } => Value::Decimal(*default),
            Self::Bool { default } => Value::Bool(*default),
            Self::Choice { default, .. } => Value::Choice(default),
            Self::Set { default, .. } => Value::Set(default.clone()),
        }
    }
}

/// One parameter of a strategy.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ParamSpec {
    /// The name given in `name=value`.
    pub name: &'static str,
    /// Type, bounds, default and step.
    #[serde(flatten)]
    pub kind: ParamType,
    /// What it does, one line.
    pub description: &'static str,
}

/// A rule between two parameters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Constraint {
    /// `left < right` (both numeric).
    LessThan {
        /// The parameter that must be smaller.
        left: &'static str,
        /// The parameter that must be larger.
        right: &'static str,
    },
    /// Not both `left` and `right` true (both bools).
    NotBoth {
        /// One flag.
        left: &'static str,
        /// The flag it excludes.
        right: &'static str,
    },
    /// `left == 0` (off) or `left > right` (both numeric).
    ZeroOrGreaterThan {
        /// The parameter that is 0 or larger.
        left: &'static str,
        /// The parameter it must exceed when not 0.
        right: &'static str,
    },
}

impl Constraint {
    /// The two parameters the rule relates, `(left, right)`.
    pub const fn params(&self) -> (&'static str, &'static str) {
        match *self {
            Self::LessThan { left, right }
            | Self::NotBoth { left, right }
            | Self::ZeroOrGreaterThan { left, right } => (left, right),
        }
    }

    /// Whether `values` keep the rule; a value missing or of another type
    /// keeps it (types are checked per parameter).
    fn holds(&self, values: &BTreeMap<&'static str, Value>) -> bool {
        let num = |k: &str| values.get(k).and_then(Value::as_decimal);
        let flag = |k: &str| matches!(values.get(k), Some(Value::Bool(true)));
        match *self {
            Self::LessThan { left, right } => match (num(left), num(right)) {
                (Some(l), Some(r)) => l < r,
                _ => true,
            },
            Self::NotBoth { left, right } => !(flag(left) && flag(right)),
            Self::ZeroOrGreaterThan { left, right } => match (num(left), num(right)) {
                (Some(l), Some(r)) => l.is_zero() || l > r,
                _ => true,
            },
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LessThan { left, right } => write!(f, "{left} < {right}"),
            Self::NotBoth { left, right } => write!(f, "not both {left} and {right}"),
            Self::ZeroOrGreaterThan { left, right } => {
                write!(f, "{left} = 0 or {left} > {right}")
            }
        }
    }
}

/// A parameter value after parsing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Value {
    /// An `int` parameter.
    Int(i64),
    /// A `float` parameter.
    Float(f64),
    /// A `decimal` parameter.
    Decimal(Decimal),
    /// A `bool` parameter.
    Bool(bool),
    /// A `choice` parameter.
    Choice(&'static str),
    /// A `set` parameter, in its options' order.
    Set(Vec<&'static str>),
}

impl Value {
    /// The value as an exact decimal, for numeric comparisons (None for
    /// bools, choices and non-finite floats).
    fn as_decimal(&self) -> Option<Decimal> {
        match self {
            Self::Int(i) => Some(Decimal::from(*i)),
            Self::Float(x) => Decimal::from_f64_retain(*x),
            Self::Decimal(d) => Some(*d),
            Self::Bool(_) | Self::Choice(_) | Self::Set(_) => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Decimal(d) => write!(f, "{d}"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Choice(c) => f.write_str(c),
            Self::Set(v) => f.write_str(&v.join(",")),
        }
    }
}

/// Builds a strategy for exactly `StrategySpec::symbols` instruments (checked
/// before the call).
type Builder = fn(&Resolved, &[Instrument]) -> Result<Box<dyn Strategy + Send>, StrategyError>;

/// A strategy's schema and constructor.
#[derive(Clone, serde::Serialize)]
pub struct StrategySpec {
    /// The name a backtest or deployment gives.
    pub name: &'static str,
    /// What it does, one line.
    pub description: &'static str,
    /// How many instruments it trades (1, or 2 for `pair`); instrument `k` of
    /// the list given to [`Configured::build_on`] is its index `k`.
    pub symbols: usize,
    /// Its parameters, in display order.
    pub params: Vec<ParamSpec>,
    /// Rules between parameters.
    pub constraints: Vec<Constraint>,
    #[serde(skip)]
    builder: Builder,
    /// Bars its indicators need before its decisions match a run over the
    /// whole history (see [`Configured::warmup_bars`]).
    #[serde(skip)]
    warmup: fn(&Resolved) -> usize,
}

impl fmt::Debug for StrategySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StrategySpec")
            .field("name", &self.name)
            .field("symbols", &self.symbols)
            .field("params", &self.params)
            .field("constraints", &self.constraints)
            .finish_non_exhaustive()
    }
}

impl PartialEq for StrategySpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl StrategySpec {
    /// The parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Comma-separated parameter names, in display order.
    pub fn param_names(&self) -> String {
        self.params
            .iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why parameters were refused. Every message names the strategy or
/// parameter at fault and what is valid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    /// No strategy of that name.
    #[error("unknown strategy {name:?}; valid strategies: {valid}")]
    UnknownStrategy {
        /// The name given.
        name: String,
        /// Comma-separated valid names.
        valid: String,
    },
    /// A parameter the strategy does not take.
    #[error("unknown parameter {param:?} for strategy {strategy}; valid parameters: {valid}")]
    UnknownParam {
        /// The strategy.
        strategy: &'static str,
        /// The parameter given.
        param: String,
        /// Comma-separated valid names.
        valid: String,
    },
    /// A value that does not parse as the parameter's type.
    #[error("parameter {param}: {value:?} is not {expected}")]
    BadValue {
        /// The parameter.
        param: &'static str,
        /// The text given.
        value: String,
        /// What it should be.
        expected: String,
    },
    /// A value outside the parameter's bounds.
    #[error("parameter {param}: {value} is out of bounds: must be {bound}")]
    OutOfBounds {
        /// The parameter.
        param: &'static str,
        /// The value given.
        value: String,
        /// The bound broken (`>= 1`, `<= 100000`).
        bound: String,
    },
    /// Values that break a rule between parameters.
    #[error("parameters {constraint}: {detail}")]
    Constraint {
        /// The parameter named first in the rule (the one reported).
        param: &'static str,
        /// The rule (`fast < slow`).
        constraint: String,
        /// The values that break it.
        detail: String,
    },
    /// The strategy itself refused the values.
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    /// Built on a number of instruments other than the strategy trades.
    #[error("{strategy} trades {expected} instrument{s}; {given} given", s = if *expected == 1 { "" } else { "s" })]
    Instruments {
        /// The strategy.
        strategy: &'static str,
        /// How many it trades.
        expected: usize,
        /// How many were given.
        given: usize,
    },
}

impl RegistryError {
    /// The parameter at fault, if one is.
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::UnknownStrategy { .. } | Self::Instruments { .. } => None,
            Self::UnknownParam { param, .. } => Some(param),
            Self::BadValue { param, .. }
            | Self::OutOfBounds { param, .. }
            | Self::Constraint { param, .. } => Some(param),
            Self::Strategy(StrategyError::InvalidParam { name, .. }) => Some(name),
        }
    }
}

impl Classify for RegistryError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}

/// Parameters checked against their strategy's schema, every one present
/// (absent ones at their default).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    values: BTreeMap<&'static str, Value>,
}

impl Resolved {
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// Every value, by name.
    pub fn values(&self) -> &BTreeMap<&'static str, Value> {
        &self.values
    }

    fn int(&self, name: &'static str) -> Result<usize, StrategyError> {
        match self.values.get(name) {
            Some(Value::Int(i)) => usize::try_from(*i).map_err(|_| invalid(name, "must be >= 0")),
            _ => Err(invalid(name, "missing int")),
        }
    }

    fn float(&self, name: &'static str) -> Result<f64, StrategyError> {
        match self.values.get(name) {
            Some(Value::Float(x)) => Ok(*x),
            _ => Err(invalid(name, "missing float")),
        }
    }

    fn decimal(&self, name: &'static str) -> Result<Decimal, StrategyError> {
        match self.values.get(name) {
            Some(Value::Decimal(d)) => Ok(*d),
            _ => Err(invalid(name, "missing decimal")),
        }
    }

    fn bool(&self, name: &'static str) -> Result<bool, StrategyError> {
        match self.values.get(name) {
            Some(Value::Bool(b)) => Ok(*b),
            _ => Err(invalid(name, "missing bool")),
        }
    }

    fn choice(&self, name: &'static str) -> Result<&'static str, StrategyError> {
        match self.values.get(name) {
            Some(Value::Choice(c)) => Ok(c),
            _ => Err(invalid(name, "missing choice")),
        }
    }

    fn set(&self, name: &'static str) -> Result<&[&'static str], StrategyError> {
        match self.values.get(name) {
            Some(Value::Set(v)) => Ok(v),
            _ => Err(invalid(name, "missing set")),
        }
    }

    /// The regime gating these parameters ask for (`on_disallowed` and
    /// `regimes`), or None when `on_disallowed=off`.
    /// A strategy without these parameters (`pair`) is never gated.
    ///
    /// # Errors
    /// A parameter missing or naming no regime.
    pub fn gate(&self) -> Result<Option<GateConfig>, StrategyError> {
        if !self.values.contains_key("on_disallowed") {
            return Ok(None);
        }
        let on_disallowed = match self.choice("on_disallowed")? {
            "hold" => OnDisallowed::Hold,
            "close" => OnDisallowed::Close,
            _ => return Ok(None),
        };
        let allowed = self
            .set("regimes")?
            .iter()
            .map(|n| {
                Regime::ALL
                    .into_iter()
                    .find(|r| r.name() == *n)
                    .ok_or_else(|| invalid("regimes", "unknown regime"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if allowed.is_empty() {
            return Err(invalid("regimes", "must name at least one regime"));
        }
        Ok(Some(GateConfig::new(allowed, on_disallowed)))
    }
}

fn invalid(name: &'static str, reason: &str) -> StrategyError {
    StrategyError::InvalidParam {
        name,
        reason: reason.into(),
    }
}

/// A strategy chosen by name with its parameters checked; build it once the
/// traded instrument is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Configured {
    spec: &'static StrategySpec,
    params: Resolved,
}

impl Configured {
    /// The strategy's name.
    pub fn name(&self) -> &'static str {
        self.spec.name
    }

    /// The strategy's schema.
    pub fn spec(&self) -> &'static StrategySpec {
        self.spec
    }

    /// The checked parameters.
    pub fn params(&self) -> &Resolved {
        &self.params
    }

    /// Bars to feed before a window so the strategy decides in it as a run
    /// over the whole history would (exactly for windowed indicators; to
    /// about e^-8 of the oldest weight for exponential ones): its longest
    /// window plus one, or four periods of an exponential average or of
    /// Wilder's smoothing. Walk-forward test windows are warmed this much.
    pub fn warmup_bars(&self) -> usize {
        (self.spec.warmup)(&self.params)
    }

    /// A fresh one-instrument strategy trading `traded` (its precisions size
    /// prices and quantities): [`Configured::build_on`] with one instrument.
    ///
    /// # Errors
    /// [`RegistryError::Instruments`] for a strategy trading more than one
    /// instrument; [`RegistryError::Strategy`] when the strategy refuses the values.
    pub fn build(&self, traded: &Instrument) -> Result<Box<dyn Strategy + Send>, RegistryError> {
        self.build_on(std::slice::from_ref(traded))
    }

    /// A fresh strategy trading `instruments` (index `k` in the strategy is
    /// `instruments[k]`; as many as [`StrategySpec::symbols`]). Regime gating
    /// (single-instrument strategies only) classifies instrument 0.
    ///
    /// # Errors
    /// [`RegistryError::Instruments`] when the count differs from the
    /// strategy's; [`RegistryError::Strategy`] when the strategy refuses the values.
    pub fn build_on(
        &self,
        instruments: &[Instrument],
    ) -> Result<Box<dyn Strategy + Send>, RegistryError> {
        let traded = match instruments.first() {
            Some(first) if instruments.len() == self.spec.symbols => first,
            _ => {
                return Err(RegistryError::Instruments {
                    strategy: self.spec.name,
                    expected: self.spec.symbols,
                    given: instruments.len(),
                });
            }
        };
        let inner = (self.spec.builder)(&self.params, instruments)?;
        let Some(gate) = self.params.gate()? else {
            return Ok(inner);
        };
        let gated = Gated::new(inner, gate, traded.price_precision).map_err(|e| {
            StrategyError::InvalidParam {
                name: "regimes",
                reason: e.to_string(),
            }
        })?;
        Ok(Box::new(gated))
    }
}

fn fraction_param(description: &'static str) -> ParamSpec {
    ParamSpec {
        name: "fraction",
        kind: ParamType::Decimal {
            min: Decimal::new(1, 2),
            max: Decimal::ONE,
            default: Decimal::ONE,
            step: Decimal::new(1, 2),
        },
        description,
    }
}

fn period(
    name: &'static str,
    min: i64,
    max: i64,
    default: i64,
    description: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamType::Int {
            min,
            max,
            default,
            step: 1,
        },
        description,
    }
}

fn build_sma(
    p: &Resolved,
    _traded: &[Instrument],
) -> Result<Box<dyn Strategy + Send>, StrategyError> {
    Ok(Box::new(SmaCross::new(SmaCrossParams {
        fast: p.int("fast")?,
        slow: p.int("slow")?,
        long_short: p.bool("long_short")?,
        fraction: p.decimal("fraction")?,
        instrument: 0,
        short_only: p.bool("short_only")?,
    })?))
}

fn build_ema(
    p: &Resolved,
    _traded: &[Instrument],
) -> Result<Box<dyn Strategy + Send>, StrategyError> {
    Ok(Box::new(EmaCross::new(ema_params(p)?)?))
}

/// The EMA crossover's typed parameters from checked registry values (see
/// [`s2_params`]).
///
/// # Errors
/// A value of the wrong type under a name of the schema.
pub fn ema_params(p: &Resolved) -> Result<EmaCrossParams, StrategyError> {
    Ok(EmaCrossParams {
        fast: p.int("fast")?,
        slow: p.int("slow")?,
        long_short: p.bool("long_short")?,
        fraction: p.decimal("fraction")?,
        instrument: 0,
    })
}

// Warm-up per strategy: the longest window plus the bar a crossing or a
// breakout compares against; an exponential average or Wilder smoothing
// keeps every value it saw, so four periods, after which the oldest
// weights are below (1 - 2/(n+1))^(4n) ~ e^-8.
fn warm_sma(p: &Resolved) -> usize {
    p.int("slow").unwrap_or(0) + 1
}

fn warm_ema(p: &Resolved) -> usize {
    4 * p.int("slow").unwrap_or(0) + 1
}

fn warm_s1(p: &Resolved) -> usize {
    let int = |n| p.int(n).unwrap_or(0);
    (int("vwap_period") + int("slope_lookback"))
        .max(4 * int("ema_slow"))
        .max(4 * int("atr_period"))
        + 1
}

fn warm_s2(p: &Resolved) -> usize {
    p.int("period")
        .unwrap_or(0)
        .max(4 * p.int("rsi_period").unwrap_or(0))
        + 1
}

fn warm_s3(p: &Resolved) -> usize {
    let int = |n| p.int(n).unwrap_or(0);
    int("entry_window")
        .max(int("exit_window"))
        .max(int("volume_window"))
        + 1
}

fn warm_pair(p: &Resolved) -> usize {
    p.int("lookback").unwrap_or(0) + 1
}

fn build_pair(
    p: &Resolved,
    _traded: &[Instrument],
) -> Result<Box<dyn Strategy + Send>, StrategyError> {
    let hedge = match p.choice("hedge")? {
        "rolling_ols" => Hedge::RollingOls,
        _ => Hedge::Fixed,
    };
    Ok(Box::new(Pair::new(PairParams {
        lookback: p.int("lookback")?,
        hedge,
        hedge_ratio: p.float("hedge_ratio")?,
        entry_z: p.float("entry_z")?,
        exit_z: p.float("exit_z")?,
        stop_z: p.float("stop_z")?,
        fraction: p.decimal("fraction")?,
        a: 0,
        b: 1,
    })?))
}

fn build_s1(
    p: &Resolved,
    traded: &[Instrument],
) -> Result<Box<dyn Strategy + Send>, StrategyError> {
    let traded = traded
        .first()
        .ok_or_else(|| invalid("instrument", "one instrument needed"))?;
    Ok(Box::new(S1::new(
        S1Params {
            vwap_period: p.int("vwap_period")?,
            slope_lookback: p.int("slope_lookback")?,
            ema_fast: p.int("ema_fast")?,
            ema_slow: p.int("ema_slow")?,
            atr_period: p.int("atr_period")?,
            tp_atr: p.float("tp_atr")?,
            sl_atr: p.float("sl_atr")?,
            fraction: p.decimal("fraction")?,
            allow_short: p.bool("allow_short")?,
            instrument: 0,
        },
        traded.price_precision,
        traded.size_precision,
    )?))
}

/// S2's typed parameters from checked registry values (the builder's and the
/// sweep kernel's one reading of them).
///
/// # Errors
/// A value of the wrong type under a name of S2's schema.
pub fn s2_params(p: &Resolved) -> Result<S2Params, StrategyError> {
    Ok(S2Params {
        period: p.int("period")?,
        k: p.float("k")?,
        rsi_period: p.int("rsi_period")?,
        oversold: p.float("oversold")?,
        overbought: p.float("overbought")?,
        fraction: p.decimal("fraction")?,
        allow_short: p.bool("allow_short")?,
        instrument: 0,
    })
}

/// S3's typed parameters from checked registry values (see [`s2_params`]).
///
/// # Errors
/// A value of the wrong type under a name of S3's schema.
pub fn s3_params(p: &Resolved) -> Result<S3Params, StrategyError> {
    Ok(S3Params {
        entry_window: p.int("entry_window")?,
        exit_window: p.int("exit_window")?,
        volume_window: p.int("volume_window")?,
        volume_mult: p.float("volume_mult")?,
        fraction: p.decimal("fraction")?,
        allow_short: p.bool("allow_short")?,
        instrument: 0,
    })
}

fn build_s2(
    p: &Resolved,
    _traded: &[Instrument],
) -> Result<Box<dyn Strategy + Send>, StrategyError> {
    Ok(Box::new(S2::new(s2_params(p)?)?))
}

fn build_s3(
    p: &Resolved,
    _traded: &[Instrument],
) -> Result<Box<dyn Strategy + Send>, StrategyError> {
    Ok(Box::new(S3::new(s3_params(p)?)?))
}

fn float_param(
    name: &'static str,
    (min, max, default, step): (f64, f64, f64, f64),
    description: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamType::Float {
            min,
            max,
            default,
            step,
        },
        description,
    }
}

fn allow_short_param(default: bool) -> ParamSpec {
    ParamSpec {
        name: "allow_short",
        kind: ParamType::Bool { default },
        description: "also trade the short side",
    }
}

/// The two gating parameters every strategy takes: the regimes it may trade in
/// (its declaration, `default` per strategy) and what gating does outside them
/// (`off` by default: the strategy runs ungated).
fn gating_params(default: &[Regime]) -> [ParamSpec; 2] {
    [
        ParamSpec {
            name: "regimes",
            kind: ParamType::Set {
                options: Regime::ALL.iter().map(|r| r.name()).collect(),
                default: Regime::ALL
                    .iter()
                    .filter(|r| default.contains(r))
                    .map(|r| r.name())
                    .collect(),
            },
            description: "regimes in which the strategy may open positions (used when on_disallowed is not off)",
        },
        ParamSpec {
            name: "on_disallowed",
            kind: ParamType::Choice {
                options: vec!["off", "hold", "close"],
                default: "off",
            },
            description: "regime gating: off (ungated), hold (block entries, keep the position), close (block entries, close at the next bar)",
        },
    ]
}

/// The regimes of the trend strategies (`sma_cross`, `s1`, `s3`).
pub const TREND_REGIMES: [Regime; 2] = [Regime::TrendingUp, Regime::TrendingDown];
/// The regimes of the mean-reversion strategy (`s2`).
pub const RANGE_REGIMES: [Regime; 1] = [Regime::Ranging];

fn atr_multiple(name: &'static str, default: f64, description: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamType::Float {
            min: 0.1,
            max: 20.0,
            default,
            step: 0.1,
        },
        description,
    }
}

/// The longest window a period parameter may take: 100,000 bars, more than a
/// quarter of 1-minute bars, so intraday data can use day- and week-long
/// windows (a 1-day SMA on minutes is 1,440 bars). Search spaces are narrower
/// and belong to the study, not to the schema.
pub const MAX_PERIOD: i64 = 100_000;

static SPECS: LazyLock<Vec<StrategySpec>> = LazyLock::new(|| {
    let sma = SmaCrossParams::default();
    let ema = EmaCrossParams::default();
    let s1 = S1Params::default();
    let s2 = S2Params::default();
    let s3 = S3Params::default();
    let pair = PairParams::default();
    let int = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    vec![
        StrategySpec {
            name: "sma_cross",
            symbols: 1,
            description: "SMA crossover: long on a fast-over-slow cross, out (or short) on the reverse",
            params: vec![
                period(
                    "fast",
                    1,
                    MAX_PERIOD - 1,
                    int(sma.fast),
                    "fast SMA period (bars)",
                ),
                period(
                    "slow",
                    2,
                    MAX_PERIOD,
                    int(sma.slow),
                    "slow SMA period (bars)",
                ),
                ParamSpec {
                    name: "long_short",
                    kind: ParamType::Bool {
                        default: sma.long_short,
                    },
                    description: "also go short on a downward cross",
                },
                fraction_param("fraction of equity per entry (1 = all-in)"),
                ParamSpec {
                    name: "short_only",
                    kind: ParamType::Bool {
                        default: sma.short_only,
                    },
                    description: "trade only the short side: short on a downward cross, cover on an upward one",
                },
            ]
            .into_iter()
            .chain(gating_params(&TREND_REGIMES))
            .collect(),
            constraints: vec![
                Constraint::LessThan {
                    left: "fast",
                    right: "slow",
                },
                Constraint::NotBoth {
                    left: "short_only",
                    right: "long_short",
                },
            ],
            builder: build_sma,
            warmup: warm_sma,
        },
        StrategySpec {
            name: "ema_cross",
            symbols: 1,
            description: "EMA crossover: long on a fast-over-slow cross of exponential averages, out (or short) on the reverse",
            params: vec![
                period(
                    "fast",
                    1,
                    MAX_PERIOD - 1,
                    int(ema.fast),
                    "fast EMA period (bars)",
                ),
                period(
                    "slow",
                    2,
                    MAX_PERIOD,
                    int(ema.slow),
                    "slow EMA period (bars)",
                ),
                ParamSpec {
                    name: "long_short",
                    kind: ParamType::Bool {
                        default: ema.long_short,
                    },
                    description: "also go short on a downward cross",
                },
                fraction_param("fraction of equity per entry (1 = all-in)"),
            ]
            .into_iter()
            .chain(gating_params(&TREND_REGIMES))
            .collect(),
            constraints: vec![Constraint::LessThan {
                left: "fast",
                right: "slow",
            }],
            builder: build_ema,
            warmup: warm_ema,
        },
        StrategySpec {
            name: "s1",
            symbols: 1,
            description: "trend on VWAP slope and EMA alignment, entered with an ATR bracket",
            params: vec![
                period(
                    "vwap_period",
                    1,
                    MAX_PERIOD,
                    int(s1.vwap_period),
                    "rolling VWAP window (bars)",
                ),
                period(
                    "slope_lookback",
                    1,
                    MAX_PERIOD,
                    int(s1.slope_lookback),
                    "bars over which the VWAP slope is measured",
                ),
                period(
                    "ema_fast",
                    1,
                    MAX_PERIOD - 1,
                    int(s1.ema_fast),
                    "fast EMA period (bars)",
                ),
                period(
                    "ema_slow",
                    2,
                    MAX_PERIOD,
                    int(s1.ema_slow),
                    "slow EMA period (bars)",
                ),
                period(
                    "atr_period",
                    1,
                    MAX_PERIOD,
                    int(s1.atr_period),
                    "ATR period (bars)",
                ),
                atr_multiple("tp_atr", s1.tp_atr, "take-profit distance in ATRs"),
                atr_multiple("sl_atr", s1.sl_atr, "stop-loss distance in ATRs"),
                fraction_param("fraction of equity per entry"),
                ParamSpec {
                    name: "allow_short",
                    kind: ParamType::Bool {
                        default: s1.allow_short,
                    },
                    description: "also trade the short side",
                },
            ]
            .into_iter()
            .chain(gating_params(&TREND_REGIMES))
            .collect(),
            constraints: vec![Constraint::LessThan {
                left: "ema_fast",
                right: "ema_slow",
            }],
            builder: build_s1,
            warmup: warm_s1,
        },
        StrategySpec {
            name: "s2",
            symbols: 1,
            description: "mean reversion: long below the lower Bollinger band when RSI is oversold, out at the middle band",
            params: vec![
                period(
                    "period",
                    2,
                    MAX_PERIOD,
                    int(s2.period),
                    "Bollinger period (bars)",
                ),
                float_param(
                    "k",
                    (0.1, 10.0, s2.k, 0.1),
                    "band width in (population) standard deviations",
                ),
                period(
                    "rsi_period",
                    1,
                    MAX_PERIOD,
                    int(s2.rsi_period),
                    "RSI period (bars, Wilder)",
                ),
                float_param(
                    "oversold",
                    (1.0, 99.0, s2.oversold, 1.0),
                    "RSI below which a long enters (and a short exits)",
                ),
                float_param(
                    "overbought",
                    (1.0, 99.0, s2.overbought, 1.0),
                    "RSI above which a short enters (and a long exits)",
                ),
                fraction_param("fraction of equity per entry"),
                allow_short_param(s2.allow_short),
            ]
            .into_iter()
            .chain(gating_params(&RANGE_REGIMES))
            .collect(),
            constraints: vec![Constraint::LessThan {
                left: "oversold",
                right: "overbought",
            }],
            builder: build_s2,
            warmup: warm_s2,
        },
        StrategySpec {
            name: "s3",
            symbols: 1,
            description: "breakout: long on a close above the prior Donchian high with confirming volume, out below the prior exit-window low",
            params: vec![
                period(
                    "entry_window",
                    1,
                    MAX_PERIOD,
                    int(s3.entry_window),
                    "bars of the entry channel (prior highest high / lowest low)",
                ),
                period(
                    "exit_window",
                    1,
                    MAX_PERIOD,
                    int(s3.exit_window),
                    "bars of the exit channel (prior lowest low / highest high)",
                ),
                period(
                    "volume_window",
                    1,
                    MAX_PERIOD,
                    int(s3.volume_window),
                    "bars of the volume average (before the current bar)",
                ),
                float_param(
                    "volume_mult",
                    (0.0, 20.0, s3.volume_mult, 0.1),
                    "the entry bar's volume must exceed this multiple of the average",
                ),
                fraction_param("fraction of equity per entry"),
                allow_short_param(s3.allow_short),
            ]
            .into_iter()
            .chain(gating_params(&TREND_REGIMES))
            .collect(),
            constraints: vec![],
            builder: build_s3,
            warmup: warm_s3,
        },
        StrategySpec {
            name: "pair",
            symbols: 2,
            description: "market-neutral pair (instruments a, b): trade the z-score of ln a - β ln b, each leg half the fraction",
            params: vec![
                period(
                    "lookback",
                    2,
                    MAX_PERIOD,
                    int(pair.lookback),
                    "timestamps in the z-score (and OLS) window",
                ),
                ParamSpec {
                    name: "hedge",
                    kind: ParamType::Choice {
                        options: vec!["fixed", "rolling_ols"],
                        default: "fixed",
                    },
                    description: "β: fixed (hedge_ratio) or rolling_ols (OLS slope of ln a on ln b over the lookback)",
                },
                float_param(
                    "hedge_ratio",
                    (0.01, 10.0, pair.hedge_ratio, 0.01),
                    "β when hedge = fixed",
                ),
                float_param(
                    "entry_z",
                    (0.1, 10.0, pair.entry_z, 0.1),
                    "|z| above which a flat pair enters (z > entry_z: short a, long b)",
                ),
                float_param(
                    "exit_z",
                    (0.0, 10.0, pair.exit_z, 0.1),
                    "|z| below which a position exits (population std over the lookback)",
                ),
                float_param(
                    "stop_z",
                    (0.0, 50.0, pair.stop_z, 0.1),
                    "|z| beyond which a position is stopped out; 0 = off",
                ),
                fraction_param("fraction of equity for both legs (each leg gets half)"),
            ],
            constraints: vec![
                Constraint::LessThan {
                    left: "exit_z",
                    right: "entry_z",
                },
                Constraint::ZeroOrGreaterThan {
                    left: "stop_z",
                    right: "entry_z",
                },
            ],
            builder: build_pair,
            warmup: warm_pair,
        },
    ]
});

/// Every registered strategy, in display order.
pub fn specs() -> &'static [StrategySpec] {
    &SPECS
}

/// The strategy called `name`.
pub fn spec(name: &str) -> Option<&'static StrategySpec> {
    specs().iter().find(|s| s.name == name)
}

/// Comma-separated names of every strategy.
pub fn names() -> String {
    specs()
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_value(p: &ParamSpec, text: &str) -> Result<Value, RegistryError> {
    let t = text.trim();
    let bad = |expected: String| RegistryError::BadValue {
        param: p.name,
        value: text.to_owned(),
        expected,
    };
    let out = |bound: String, value: String| RegistryError::OutOfBounds {
        param: p.name,
        value,
        bound,
    };
    match &p.kind {
        ParamType::Int { min, max, .. } => {
            let expected = if *min >= 0 {
                "a non-negative integer"
            } else {
                "an integer"
            };
            let v: i64 = t.parse().map_err(|_| bad(expected.into()))?;
            if v < *min {
                return Err(out(format!(">= {min}"), v.to_string()));
            }
            if v > *max {
                return Err(out(format!("<= {max}"), v.to_string()));
            }
            Ok(Value::Int(v))
        }
        ParamType::Float { min, max, .. } => {
            let v: f64 = t
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| bad("a finite number".into()))?;
            if v < *min {
                return Err(out(format!(">= {min}"), v.to_string()));
            }
            if v > *max {
                return Err(out(format!("<= {max}"), v.to_string()));
            }
            Ok(Value::Float(v))
        }
        ParamType::Decimal { min, max, .. } => {
            let v = Decimal::from_str(t).map_err(|_| bad("a decimal number".into()))?;
            if v < *min {
                return Err(out(format!(">= {min}"), v.to_string()));
            }
            if v > *max {
                return Err(out(format!("<= {max}"), v.to_string()));
            }
            Ok(Value::Decimal(v))
        }
        ParamType::Bool { .. } => match t {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(bad("true or false".into())),
        },
        ParamType::Choice { options, .. } => options
            .iter()
            .find(|o| **o == t)
            .map(|o| Value::Choice(o))
            .ok_or_else(|| bad(format!("one of {}", options.join(", ")))),
        ParamType::Set { options, .. } => {
            let expected = || format!("a comma-separated non-empty list of {}", options.join(", "));
            let mut chosen = vec![false; options.len()];
            for word in t.split(',').map(str::trim) {
                let i = options
                    .iter()
                    .position(|o| *o == word)
                    .ok_or_else(|| bad(expected()))?;
                chosen[i] = true;
            }
            let set: Vec<&'static str> = options
                .iter()
                .zip(chosen)
                .filter_map(|(o, c)| c.then_some(*o))
                .collect();
            Ok(Value::Set(set))
        }
    }
}

/// Looks the strategy up and checks `params` against its schema (types,
/// bounds, constraints), filling absent ones with their defaults. Builds nothing.
///
/// # Errors
/// [`RegistryError`] naming the strategy or parameter at fault.
pub fn parse(name: &str, params: &BTreeMap<String, String>) -> Result<Configured, RegistryError> {
    let spec = spec(name).ok_or_else(|| RegistryError::UnknownStrategy {
        name: name.to_owned(),
        valid: names(),
    })?;
    let mut values: BTreeMap<&'static str, Value> = spec
        .params
        .iter()
        .map(|p| (p.name, p.kind.default_value()))
        .collect();
    for (k, v) in params {
        let p = spec.param(k).ok_or_else(|| RegistryError::UnknownParam {
            strategy: spec.name,
            param: k.clone(),
            valid: spec.param_names(),
        })?;
        values.insert(p.name, parse_value(p, v)?);
    }
    for c in &spec.constraints {
        if c.holds(&values) {
            continue;
        }
        let (left, right) = c.params();
        let show = |k: &str| values.get(k).map(ToString::to_string).unwrap_or_default();
        let (l, r) = (show(left), show(right));
        let detail = match c {
            Constraint::LessThan { .. } => format!("{left} {l} must be below {right} {r}"),
            Constraint::NotBoth { .. } => format!("{left} and {right} cannot both be true"),
            Constraint::ZeroOrGreaterThan { .. } => {
                format!("{left} {l} must be 0 (off) or above {right} {r}")
            }
        };
        return Err(RegistryError::Constraint {
            param: left,
            constraint: c.to_string(),
            detail,
        });
    }
    Ok(Configured {
        spec,
        params: Resolved { values },
    })
}

/// Checks `params` for strategy `name` without building it.
///
/// # Errors
/// As [`parse`].
pub fn validate(name: &str, params: &BTreeMap<String, String>) -> Result<(), RegistryError> {
    parse(name, params).map(drop)
}

/// Builds strategy `name` with `params` (absent ones at their default) for
/// the traded instrument `traded`.
///
/// # Errors
/// As [`parse`], plus [`RegistryError::Strategy`] if the strategy refuses.
pub fn build(
    name: &str,
    params: &BTreeMap<String, String>,
    traded: &Instrument,
) -> Result<Box<dyn Strategy + Send>, RegistryError> {
    parse(name, params)?.build(traded)
}

/// Builds strategy `name` with `params` (absent ones at their default) for
/// `instruments` (as many as the strategy trades; see [`Configured::build_on`]).
///
/// # Errors
/// As [`parse`], plus [`RegistryError::Instruments`] for a wrong count and
/// [`RegistryError::Strategy`] if the strategy refuses.
pub fn build_on(
    name: &str,
    params: &BTreeMap<String, String>,
    instruments: &[Instrument],
) -> Result<Box<dyn Strategy + Send>, RegistryError> {
    parse(name, params)?.build_on(instruments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn spy() -> Instrument {
        Instrument::equity("SPY", 4, 0)
    }

    /// `n` instruments for a strategy trading `n`.
    fn legs(n: usize, price_precision: u8) -> Vec<Instrument> {
        (0..n)
            .map(|k| Instrument::equity(&format!("X{k}"), price_precision, 0))
            .collect()
    }

    #[test]
    fn defaults_build_every_strategy_and_match_the_structs() {
        for s in specs() {
            build_on(s.name, &BTreeMap::new(), &legs(s.symbols, 4)).unwrap();
            if s.symbols == 1 {
                build(s.name, &BTreeMap::new(), &spy()).unwrap();
            }
        }
        let c = parse("sma_cross", &BTreeMap::new()).unwrap();
        let d = SmaCrossParams::default();
        assert_eq!(c.params().get("fast"), Some(&Value::Int(10)));
        assert_eq!(c.params().get("slow"), Some(&Value::Int(30)));
        assert_eq!(
            c.params().get("fraction"),
            Some(&Value::Decimal(d.fraction))
        );
        let c = parse("s1", &params(&[("tp_atr", "3.5")])).unwrap();
        assert_eq!(c.name(), "s1");
        assert_eq!(c.params().get("tp_atr"), Some(&Value::Float(3.5)));
        assert_eq!(c.params().get("sl_atr"), Some(&Value::Float(1.0)));
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let e = parse("rsi", &BTreeMap::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown strategy \"rsi\"; valid strategies: sma_cross, ema_cross, s1, s2, s3, pair"
        );
        let e = parse("sma_cross", &params(&[("fats", "3")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown parameter \"fats\" for strategy sma_cross; valid parameters: fast, slow, long_short, fraction, short_only, regimes, on_disallowed"
        );
        let e = parse("sma_cross", &params(&[("fast", "x")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameter fast: \"x\" is not a non-negative integer"
        );
        assert_eq!(e.param(), Some("fast"));
    }

    #[test]
    fn bounds_and_constraints_are_named() {
        let e = parse("sma_cross", &params(&[("fast", "0")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameter fast: 0 is out of bounds: must be >= 1"
        );
        let e = parse("s1", &params(&[("tp_atr", "25")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameter tp_atr: 25 is out of bounds: must be <= 20"
        );
        let e = parse("sma_cross", &params(&[("fraction", "1.5")])).unwrap_err();
        assert_eq!(e.param(), Some("fraction"));
        assert!(e.to_string().contains("<= 1"), "{e}");
        let e = parse("sma_cross", &params(&[("fast", "40")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameters fast < slow: fast 40 must be below slow 30"
        );
        assert_eq!(e.param(), Some("fast"));
        let e = validate("s1", &params(&[("ema_fast", "60")])).unwrap_err();
        assert_eq!(e.param(), Some("ema_fast"));
        assert!(e.to_string().contains("ema_fast < ema_slow"), "{e}");
        let e = parse("s1", &params(&[("allow_short", "yes")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameter allow_short: \"yes\" is not true or false"
        );
    }

    #[test]
    fn every_default_lies_within_its_bounds_and_satisfies_the_constraints() {
        for s in specs() {
            for p in &s.params {
                let text = p.kind.default_value().to_string();
                parse_value(p, &text).unwrap_or_else(|e| panic!("{}: {e}", s.name));
            }
            validate(s.name, &BTreeMap::new()).unwrap();
        }
    }

    #[test]
    fn choice_values_parse_by_type() {
        let p = ParamSpec {
            name: "mode",
            kind: ParamType::Choice {
                options: vec!["fast", "slow"],
                default: "fast",
            },
            description: "test",
        };
        assert_eq!(parse_value(&p, " slow ").unwrap(), Value::Choice("slow"));
        let e = parse_value(&p, "medium").unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameter mode: \"medium\" is not one of fast, slow"
        );
        assert_eq!(p.kind.name(), "choice");
        assert_eq!(p.kind.default_value().to_string(), "fast");
    }

    #[test]
    fn warm_up_covers_each_strategys_longest_memory() {
        let warm = |name: &str, p: &[(&str, &str)]| parse(name, &params(p)).unwrap().warmup_bars();
        assert_eq!(warm("sma_cross", &[]), 31);
        assert_eq!(warm("sma_cross", &[("fast", "5"), ("slow", "200")]), 201);
        assert_eq!(warm("ema_cross", &[]), 4 * 26 + 1);
        assert_eq!(warm("s2", &[]), 4 * 14 + 1);
        assert_eq!(warm("s2", &[("period", "80")]), 81);
        assert_eq!(warm("s3", &[("entry_window", "55")]), 56);
        assert_eq!(
            warm("pair", &[]),
            parse("pair", &BTreeMap::new())
                .unwrap()
                .params()
                .get("lookback")
                .map_or(0, |v| v.to_string().parse::<usize>().unwrap())
                + 1
        );
        // Gating does not change it.
        assert_eq!(warm("sma_cross", &[("on_disallowed", "hold")]), 31);
        for s in specs() {
            let c = parse(s.name, &BTreeMap::new()).unwrap();
            assert!(c.warmup_bars() > 1, "{}", s.name);
        }
    }

    #[test]
    fn build_on_checks_the_number_of_instruments() {
        let pair = parse("pair", &BTreeMap::new()).unwrap();
        assert_eq!(pair.spec().symbols, 2);
        let e = pair.build(&spy()).err().unwrap();
        assert_eq!(e.to_string(), "pair trades 2 instruments; 1 given");
        assert_eq!(
            e,
            RegistryError::Instruments {
                strategy: "pair",
                expected: 2,
                given: 1
            }
        );
        assert_eq!(e.param(), None);
        let e = pair.build_on(&legs(3, 2)).err().unwrap();
        assert_eq!(e.to_string(), "pair trades 2 instruments; 3 given");
        pair.build_on(&legs(2, 2)).unwrap();
        let sma = parse("sma_cross", &BTreeMap::new()).unwrap();
        let e = sma.build_on(&legs(2, 2)).err().unwrap();
        assert_eq!(e.to_string(), "sma_cross trades 1 instrument; 2 given");
        let e = sma.build_on(&[]).err().unwrap();
        assert_eq!(e.to_string(), "sma_cross trades 1 instrument; 0 given");
        sma.build_on(&legs(1, 2)).unwrap();
        for s in specs() {
            assert_eq!(
                s.symbols,
                if s.name == "pair" { 2 } else { 1 },
                "{}",
                s.name
            );
        }
    }

    #[test]
    fn the_pair_schema_has_its_parameters_and_rules() {
        let s = spec("pair").unwrap();
        assert_eq!(
            s.param_names(),
            "lookback, hedge, hedge_ratio, entry_z, exit_z, stop_z, fraction"
        );
        let c = parse("pair", &BTreeMap::new()).unwrap();
        let v = c.params();
        assert_eq!(v.get("lookback"), Some(&Value::Int(60)));
        assert_eq!(v.get("hedge"), Some(&Value::Choice("fixed")));
        assert_eq!(v.get("hedge_ratio"), Some(&Value::Float(1.0)));
        assert_eq!(v.get("entry_z"), Some(&Value::Float(2.0)));
        assert_eq!(v.get("exit_z"), Some(&Value::Float(0.5)));
        assert_eq!(v.get("stop_z"), Some(&Value::Float(0.0)));
        assert_eq!(v.get("fraction"), Some(&Value::Decimal(Decimal::ONE)));
        let rules: Vec<String> = s.constraints.iter().map(ToString::to_string).collect();
        assert_eq!(
            rules,
            ["exit_z < entry_z", "stop_z = 0 or stop_z > entry_z"]
        );
        let e = parse("pair", &params(&[("exit_z", "2")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameters exit_z < entry_z: exit_z 2 must be below entry_z 2"
        );
        let e = parse("pair", &params(&[("stop_z", "1.5")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameters stop_z = 0 or stop_z > entry_z: stop_z 1.5 must be 0 (off) or above entry_z 2"
        );
        assert_eq!(e.param(), Some("stop_z"));
        validate(
            "pair",
            &params(&[("stop_z", "3"), ("hedge", "rolling_ols")]),
        )
        .unwrap();
        // No regime gating for a two-instrument strategy: the parameter is unknown.
        let e = parse("pair", &params(&[("regimes", "ranging")])).unwrap_err();
        assert!(matches!(e, RegistryError::UnknownParam { .. }), "{e}");
        assert_eq!(c.params().gate(), Ok(None));
    }

    #[test]
    fn short_only_excludes_long_short() {
        let c = parse("sma_cross", &params(&[("short_only", "true")])).unwrap();
        assert_eq!(c.params().get("short_only"), Some(&Value::Bool(true)));
        assert_eq!(
            parse("sma_cross", &BTreeMap::new())
                .unwrap()
                .params()
                .get("short_only"),
            Some(&Value::Bool(false))
        );
        let e = parse(
            "sma_cross",
            &params(&[("short_only", "true"), ("long_short", "true")]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "parameters not both short_only and long_short: short_only and long_short cannot both be true"
        );
        assert_eq!(e.param(), Some("short_only"));
    }

    /// A value of `p` within its bounds, as text, from a unit draw `u` in [0, 1].
    fn within(p: &ParamSpec, u: f64, flip: bool) -> String {
        match &p.kind {
            ParamType::Int { min, max, .. } => {
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_precision_loss,
                    reason = "test sampling"
                )]
                let v = *min + ((*max - *min) as f64 * u).floor() as i64;
                v.min(*max).to_string()
            }
            ParamType::Float { min, max, .. } => {
                (min + (max - min) * u).clamp(*min, *max).to_string()
            }
            ParamType::Decimal { min, max, .. } => {
                let u = Decimal::from_f64_retain(u).unwrap_or_default().round_dp(6);
                (*min + (*max - *min) * u).clamp(*min, *max).to_string()
            }
            ParamType::Bool { .. } => flip.to_string(),
            ParamType::Choice { options, .. } => {
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss,
                    reason = "test sampling"
                )]
                let i = ((options.len() as f64) * u) as usize;
                options[i.min(options.len() - 1)].to_owned()
            }
            ParamType::Set { options, .. } => {
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss,
                    reason = "test sampling"
                )]
                let mask = 1 + ((((1u32 << options.len()) - 2) as f64) * u) as u32;
                options
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, o)| *o)
                    .collect::<Vec<_>>()
                    .join(",")
            }
        }
    }

    /// A value of `p` just outside its bounds (None for types without bounds).
    fn outside(p: &ParamSpec, above: bool, by: u32) -> Option<String> {
        let by = i64::from(by) + 1;
        match &p.kind {
            ParamType::Int { min, max, .. } => {
                Some(if above { max + by } else { min - by }.to_string())
            }
            #[allow(clippy::cast_precision_loss, reason = "test sampling")]
            ParamType::Float { min, max, .. } => Some(
                if above {
                    max + by as f64
                } else {
                    min - by as f64 * 0.01
                }
                .to_string(),
            ),
            ParamType::Decimal { min, max, .. } => Some(
                if above {
                    *max + Decimal::from(by)
                } else {
                    *min - Decimal::new(by, 3)
                }
                .to_string(),
            ),
            ParamType::Bool { .. } | ParamType::Choice { .. } | ParamType::Set { .. } => None,
        }
    }

    fn satisfies(spec: &StrategySpec, values: &BTreeMap<String, String>) -> bool {
        let n = |k: &str| values[k].parse::<f64>().unwrap_or(f64::NAN);
        spec.constraints.iter().all(|c| match c {
            Constraint::LessThan { left, right } => n(left) < n(right),
            Constraint::NotBoth { left, right } => {
                !(values[*left] == "true" && values[*right] == "true")
            }
            Constraint::ZeroOrGreaterThan { left, right } => n(left) == 0.0 || n(left) > n(right),
        })
    }

    proptest! {
        #[test]
        fn params_sampled_within_the_schema_build(
            which in 0..64usize,
            draws in proptest::collection::vec((0.0..=1.0f64, any::<bool>()), 32),
            price_precision in 0u8..=8,
        ) {
            let spec = &specs()[which % specs().len()];
            let values: BTreeMap<String, String> = spec
                .params
                .iter()
                .zip(&draws)
                .map(|(p, (u, b))| (p.name.to_owned(), within(p, *u, *b)))
                .collect();
            prop_assume!(satisfies(spec, &values));
            let built = build_on(spec.name, &values, &legs(spec.symbols, price_precision));
            prop_assert!(built.is_ok(), "{} {values:?}: {:?}", spec.name, built.err());
        }

        #[test]
        fn out_of_bounds_values_are_refused_naming_the_param(
            which in 0..64usize,
            index in 0..64usize,
            above in any::<bool>(),
            by in 0u32..1000,
        ) {
            let spec = &specs()[which % specs().len()];
            let p = &spec.params[index % spec.params.len()];
            if let Some(text) = outside(p, above, by) {
                let e = validate(spec.name, &params(&[(p.name, &text)])).unwrap_err();
                prop_assert!(matches!(e, RegistryError::OutOfBounds { .. }), "{e}");
                prop_assert_eq!(e.param(), Some(p.name));
                prop_assert!(e.to_string().starts_with(&format!("parameter {}: ", p.name)), "{}", e);
            }
        }
    }
}
