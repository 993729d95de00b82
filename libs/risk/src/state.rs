//! The risk state as a deterministic fold of inputs, and the pre-trade check.

use grodt_core::rounding::decimal_text;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::checked::{self, Overflow};
use crate::limits::{Limits, LimitsRecord};
use crate::stats;
use crate::{NANOS_PER_DAY, NANOS_PER_MINUTE};

/// A soft threshold: a LIMIT_WARNING is emitted when a portfolio value
/// crosses this fraction of its limit (80%).
pub const WARNING_FRACTION: Decimal = Decimal::from_parts(8, 0, 0, false, 1);

/// Decimal places an equity-fraction quantity estimate is rounded down to.
const ESTIMATE_DP: u32 = 8;

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    /// Adds to a long / reduces a short.
    Buy,
    /// Adds to a short / reduces a long.
    Sell,
}

impl Side {
    /// +1 for a buy, -1 for a sell.
    #[must_use]
    pub fn sign(self) -> Decimal {
        match self {
            Self::Buy => Decimal::ONE,
            Self::Sell => Decimal::NEGATIVE_ONE,
        }
    }
}

/// How much an order trades (`OrderSpec.size`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Size {
    /// An explicit quantity (> 0).
    Quantity(Decimal),
    /// This fraction of equity, estimated at the reference price.
    EquityFraction(Decimal),
    /// The whole current position of the symbol.
    ClosePosition,
}

/// What risk needs of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The idempotency key.
    pub client_order_id: String,
    /// The strategy instance; empty for manual orders.
    pub strategy_id: String,
    /// The instrument.
    pub symbol: String,
    /// Buy or sell.
    pub side: Side,
    /// How much.
    pub size: Size,
    /// The limit price of LIMIT / STOP_LIMIT orders.
    pub limit_price: Option<Decimal>,
}

/// The `limit` of the violation that rejects an intent whose check could
/// not be computed within the decimal range.
pub const ARITHMETIC_OVERFLOW: &str = "arithmetic_overflow";

/// One broken limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The limit, named as the `RiskLimits` field (`max_order_notional`,
    /// `symbol_limits[SPY].max_position_quantity`), or `halt`, or
    /// `reference_price` (a limit needs a price and none is known), or
    /// [`ARITHMETIC_OVERFLOW`] (a value of the check left the decimal range).
    pub limit: String,
    /// Human-readable.
    pub message: String,
    /// The configured limit, when numeric.
    pub limit_value: Option<Decimal>,
    /// The value the order would reach.
    pub observed: Option<Decimal>,
}

/// The result of a pre-trade check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Empty = approved.
    pub violations: Vec<Violation>,
    /// The price the check used (given, or the last bar close of the symbol).
    pub reference_price: Option<Decimal>,
    /// The order's quantity (estimated for equity fractions; the position for
    /// close-position orders); `None` when it could not be estimated.
    pub quantity: Option<Decimal>,
    /// The order does not increase the absolute position of its symbol (only
    /// halt, price deviation and order rate apply to it).
    pub reducing: bool,
}

impl Check {
    /// No violation.
    #[must_use]
    pub fn approved(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The circuit breakers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Breaker {
    /// Loss since the UTC day start reached `max_daily_loss`.
    DailyLoss,
    /// Drawdown from the peak reached `max_drawdown`.
    Drawdown,
    /// Intents of all strategies in a rolling minute exceeded the configured rate.
    OrderRate,
    /// Too many of the last intents were rejected.
    RejectRate,
    /// The book can no longer be represented: a fill, a bar or a new
    /// capital made a position, a cash flow, the equity or an exposure
    /// leave the decimal range (about ±7.9e28).
    Accounting,
}

impl Breaker {
    /// Every breaker.
    pub const ALL: [Self; 5] = [
        Self::DailyLoss,
        Self::Drawdown,
        Self::OrderRate,
        Self::RejectRate,
        Self::Accounting,
    ];

    /// The metric label and the name in messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::DailyLoss => "daily_loss",
            Self::Drawdown => "drawdown",
            Self::OrderRate => "order_rate",
            Self::RejectRate => "reject_rate",
            Self::Accounting => "accounting",
        }
    }
}

/// Why trading is halted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HaltCause {
    /// An operator's Halt (MANUALLY_HALTED).
    Manual,
    /// A tripped breaker (TRIPPED).
    Breaker(Breaker),
}

/// A halt in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    /// Manual or which breaker.
    pub cause: HaltCause,
    /// The operator's reason, or what tripped.
    pub reason: String,
    /// The operator, or `risk` for a breaker.
    pub by: String,
    /// When (ns since the epoch): the command's recorded time, or the input
    /// time that tripped the breaker.
    pub since_ns: i64,
}

/// Breakers configured by the service (not limits: they are settings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSettings {
    /// Order-rate breaker: trips when more than this many intents (of every
    /// strategy) fall in a rolling minute of intent time; 0 = off.
    pub order_rate_per_minute: u32,
    /// Reject-rate breaker: trips when at least `reject_threshold` of the last
    /// `reject_window` intents were rejected by a limit (halt rejections not
    /// counted); `reject_threshold` 0 = off.
    pub reject_window: u32,
    /// See `reject_window`.
    pub reject_threshold: u32,
}

/// Settings of the fold that come from the configuration (journaled as a
/// `Configure` input so that a replay uses the settings in force then).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Starting capital of the account (equity before any fill).
    pub initial_equity: Decimal,
    /// The breakers.
    pub breakers: BreakerSettings,
    /// Daily returns kept per symbol for the historical VaR.
    pub var_window_days: u32,
    /// An approved order counts towards the position limits until its fills
    /// arrive, at most this many minutes of the fold's clock; 0 = pending
    /// orders are not counted.
    pub pending_ttl_minutes: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            initial_equity: Decimal::from(100_000),
            breakers: BreakerSettings::default(),
            var_window_days: 250,
            pending_ttl_minutes: 1440,
        }
    }
}

/// One input of the fold. Market inputs (intent, fill, bar) carry their own
/// time and move the fold's clock; commands carry the time they were received
/// only as metadata (halt `since`, limits `updated_at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// An order intent, decided on the bar at `at_ns`.
    Intent {
        /// The order.
        order: Order,
        /// `decision_bar_time`.
        at_ns: i64,
    },
    /// A strategy's cancellation of its order: passed on unchecked, halted or
    /// not (it only takes risk away); the order's pending quantity no longer
    /// counts against the limits.
    Cancel {
        /// The order's client order id.
        client_order_id: String,
        /// When it was decided (the decision bar, else the time received).
        at_ns: i64,
    },
    /// A fill (deduplicated by its id upstream of the fold).
    Fill {
        /// The fill's id.
        fill_id: String,
        /// The order's client order id (settles its pending quantity).
        #[serde(default)]
        client_order_id: String,
        /// The strategy; empty for manual orders.
        strategy_id: String,
        /// The instrument.
        symbol: String,
        /// Buy or sell.
        side: Side,
        /// > 0.
        quantity: Decimal,
        /// > 0.
        price: Decimal,
        /// Cost (negative: rebate).
        commission: Decimal,
        /// `filled_at`.
        at_ns: i64,
    },
    /// A closed bar: its close is the symbol's last price.
    Bar {
        /// The instrument.
        symbol: String,
        /// The close.
        close: Decimal,
        /// The bar's timestamp.
        at_ns: i64,
    },
    /// Replace the limits (compare-and-set on `expected_version`).
    SetLimits {
        /// The new limits (validated before).
        limits: Limits,
        /// The version they replace.
        expected_version: u64,
        /// The operator.
        by: String,
        /// Why.
        reason: String,
        /// Received at.
        at_ns: i64,
    },
    /// Manual halt.
    Halt {
        /// Why.
        reason: String,
        /// The operator.
        by: String,
        /// Received at.
        at_ns: i64,
    },
    /// Lift the halt (manual or tripped).
    Resume {
        /// Why.
        reason: String,
        /// The operator.
        by: String,
        /// Received at.
        at_ns: i64,
    },
    /// Settings from the configuration; `limits` are the configured initial
    /// limits, applied only while no SetLimits has been applied (version 0).
    Configure {
        /// The settings.
        settings: Settings,
        /// `[risk.limits]`.
        limits: Option<Limits>,
    },
}

/// What an input produced, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    clippy::large_enum_variant,
    reason = "a few outputs per input, moved once: boxing the limits record would only add an allocation"
)]
pub enum Output {
    /// The intent goes to execution.
    Approved {
        /// The intent's client order id.
        client_order_id: String,
        /// The price it was checked against.
        reference_price: Option<Decimal>,
    },
    /// A cancellation goes to execution.
    CancelPassed {
        /// The order's client order id.
        client_order_id: String,
    },
    /// The intent is refused.
    Rejected {
        /// The intent's client order id.
        client_order_id: String,
        /// At least one.
        violations: Vec<Violation>,
        /// The price it was checked against.
        reference_price: Option<Decimal>,
    },
    /// SetLimits (or Configure at version 0) changed the limits.
    LimitsChanged {
        /// The new record.
        record: LimitsRecord,
        /// Why.
        reason: String,
    },
    /// A breaker tripped and halted trading.
    BreakerTripped {
        /// The halt it put in force.
        halt: Halt,
    },
    /// An operator halted trading.
    Halted {
        /// The halt.
        halt: Halt,
    },
    /// An operator lifted the halt.
    Resumed {
        /// The halt that was lifted.
        lifted: Halt,
        /// Why.
        reason: String,
        /// The operator.
        by: String,
        /// Received at.
        at_ns: i64,
    },
    /// A portfolio value crossed [`WARNING_FRACTION`] of its limit.
    LimitWarning {
        /// The limit's name.
        limit: String,
        /// The limit.
        limit_value: Decimal,
        /// The value now.
        observed: Decimal,
    },
}

/// A symbol's exposure in a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolExposure {
    /// The instrument.
    pub symbol: String,
    /// Signed position.
    pub quantity: Decimal,
    /// Signed notional at the mark.
    pub notional: Decimal,
    /// The mark (last bar close, else last fill price).
    pub last_price: Decimal,
    /// notional / equity.
    pub equity_fraction: f64,
}

/// The portfolio at a point of the fold.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The fold's clock (latest market input time).
    pub as_of_ns: Option<i64>,
    /// Initial equity + cash flows of fills + positions at their marks.
    pub equity: Decimal,
    /// Highest equity seen.
    pub peak_equity: Decimal,
    /// (equity - peak) / peak, <= 0.
    pub drawdown: Decimal,
    /// equity - equity at the UTC day start.
    pub daily_pnl: Decimal,
    /// Sum of absolute notionals.
    pub gross_exposure: Decimal,
    /// Sum of signed notionals.
    pub net_exposure: Decimal,
    /// One-day historical VaR 95% (positive loss, 2 dp); 0 without history.
    pub var_95: Decimal,
    /// One-day historical VaR 99%.
    pub var_99: Decimal,
    /// Days of history the VaR used.
    pub var_days: usize,
    /// Non-flat positions.
    pub exposures: Vec<SymbolExposure>,
    /// Rejections since the UTC day start.
    pub rejected_today: u64,
    /// Pearson correlation of daily PnL changes between strategy pairs.
    pub strategy_correlations: Vec<(String, String, f64)>,
}

/// The whole risk state. Build with [`RiskState::new`], feed with [`RiskState::apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct RiskState {
    settings: Settings,
    limits: LimitsRecord,
    halt: Option<Halt>,
    /// Latest market input time (ns).
    now_ns: Option<i64>,
    /// The UTC day (days since the epoch) of `now_ns`.
    day: Option<i64>,
    /// Net position per symbol.
    positions: BTreeMap<String, Decimal>,
    /// Sum of -signed qty x price - commission over fills.
    cash_flow: Decimal,
    /// Per strategy: position per symbol and cash flow.
    strategy_positions: BTreeMap<String, BTreeMap<String, Decimal>>,
    strategy_cash: BTreeMap<String, Decimal>,
    /// Last bar close per symbol (the reference price).
    last_close: BTreeMap<String, Decimal>,
    /// Time of the bar of `last_close`.
    last_bar_ns: BTreeMap<String, i64>,
    /// Last fill price per symbol (the mark until a bar is seen).
    last_fill: BTreeMap<String, Decimal>,
    /// Last close of each UTC day per symbol, newest last (VaR history).
    daily_closes: BTreeMap<String, VecDeque<(i64, Decimal)>>,
    /// Per strategy, its equity contribution at each day end, newest last.
    strategy_daily: BTreeMap<String, VecDeque<(i64, Decimal)>>,
    peak_equity: Decimal,
    day_start_equity: Decimal,
    /// Breaker bases: the drawdown breaker measures from `drawdown_base`
    /// (the peak since the last Resume), the daily-loss breaker from
    /// `loss_base` (the day start, or the equity at a Resume that day).
    drawdown_base: Decimal,
    loss_base: Decimal,
    /// Approved order times per strategy, within the last minute.
    order_times: BTreeMap<String, VecDeque<i64>>,
    /// Intent times of every strategy, within the last minute.
    intent_times: VecDeque<i64>,
    /// Last intents, true = rejected by a limit.
    recent_rejects: VecDeque<bool>,
    rejected_today: u64,
    approved_total: u64,
    rejected_total: u64,
    /// Limits currently past the warning fraction.
    warned: BTreeSet<String>,
    /// Approved orders not filled yet: client order id -> (symbol, signed
    /// quantity left, approval time).
    pending: BTreeMap<String, (String, Decimal, i64)>,
}

impl Default for RiskState {
    fn default() -> Self {
        Self::new(Settings::default())
    }
}

fn violation(limit: impl Into<String>, message: String, lim: Decimal, obs: Decimal) -> Violation {
    Violation {
        limit: limit.into(),
        message,
        limit_value: Some(lim),
        observed: Some(obs),
    }
}

impl RiskState {
    /// An empty account with `settings`, no limits, not halted.
    #[must_use]
    pub fn new(settings: Settings) -> Self {
        let eq = settings.initial_equity;
        Self {
            settings,
            limits: LimitsRecord::default(),
            halt: None,
            now_ns: None,
            day: None,
            positions: BTreeMap::new(),
            cash_flow: Decimal::ZERO,
            strategy_positions: BTreeMap::new(),
            strategy_cash: BTreeMap::new(),
            last_close: BTreeMap::new(),
            last_bar_ns: BTreeMap::new(),
            last_fill: BTreeMap::new(),
            daily_closes: BTreeMap::new(),
            strategy_daily: BTreeMap::new(),
            peak_equity: eq,
            day_start_equity: eq,
            drawdown_base: eq,
            loss_base: eq,
            order_times: BTreeMap::new(),
            intent_times: VecDeque::new(),
            recent_rejects: VecDeque::new(),
            rejected_today: 0,
            approved_total: 0,
            rejected_total: 0,
            warned: BTreeSet::new(),
            pending: BTreeMap::new(),
        }
    }

    /// The settings in force.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The limits in force with their version.
    #[must_use]
    pub fn limits(&self) -> &LimitsRecord {
        &self.limits
    }

    /// The halt in force, if any.
    #[must_use]
    pub fn halt(&self) -> Option<&Halt> {
        self.halt.as_ref()
    }

    /// The breaker that is tripped, if trading is halted by one.
    #[must_use]
    pub fn tripped(&self) -> Option<Breaker> {
        match self.halt.as_ref().map(|h| h.cause) {
            Some(HaltCause::Breaker(b)) => Some(b),
            _ => None,
        }
    }

    /// Net position of `symbol`.
    #[must_use]
    pub fn position(&self, symbol: &str) -> Decimal {
        self.positions.get(symbol).copied().unwrap_or_default()
    }

    /// Net position of `symbol` held by `strategy`.
    #[must_use]
    pub fn strategy_position(&self, strategy: &str, symbol: &str) -> Decimal {
        self.strategy_positions
            .get(strategy)
            .and_then(|p| p.get(symbol))
            .copied()
            .unwrap_or_default()
    }

    /// The last bar close of `symbol`.
    #[must_use]
    pub fn last_close(&self, symbol: &str) -> Option<Decimal> {
        self.last_close.get(symbol).copied()
    }

    /// (approved, rejected) intents over the state's life.
    #[must_use]
    pub fn decisions(&self) -> (u64, u64) {
        (self.approved_total, self.rejected_total)
    }

    /// The fold's clock (latest market input time).
    #[must_use]
    pub fn now_ns(&self) -> Option<i64> {
        self.now_ns
    }

    /// Filled position plus the pending (approved, unfilled) quantity.
    fn effective_position(&self, symbol: &str) -> Result<Decimal, Overflow> {
        let pending = checked::sum(
            self.pending
                .values()
                .filter(|(s, _, _)| s == symbol)
                .map(|(_, q, _)| *q),
            "pending quantity",
        )?;
        checked::add(
            self.position(symbol),
            pending,
            "position with pending orders",
        )
    }

    /// Approved orders not filled yet (within the pending TTL).
    #[must_use]
    pub fn pending_orders(&self) -> usize {
        self.pending.len()
    }

    fn mark(&self, symbol: &str) -> Option<Decimal> {
        self.last_close
            .get(symbol)
            .or_else(|| self.last_fill.get(symbol))
            .copied()
    }

    /// Signed notional of each non-flat position at its mark (an error for
    /// a position whose notional is out of range).
    fn notionals(&self) -> impl Iterator<Item = (&String, Decimal, Result<Decimal, Overflow>)> {
        self.positions
            .iter()
            .filter(|(_, q)| !q.is_zero())
            .map(|(s, q)| {
                let m = self.mark(s).unwrap_or_default();
                (s, *q, checked::mul(*q, m, "position notional"))
            })
    }

    /// Initial equity + cash flows + positions at their marks.
    ///
    /// # Errors
    /// A notional, or a partial sum, is out of the decimal range: the book
    /// cannot be represented (applying the input that made it so tripped the
    /// [`Breaker::Accounting`] breaker).
    pub fn equity(&self) -> Result<Decimal, Overflow> {
        let cash = checked::add(self.settings.initial_equity, self.cash_flow, "equity")?;
        self.notionals()
            .try_fold(cash, |acc, (_, _, n)| checked::add(acc, n?, "equity"))
    }

    /// (gross, net) exposure of the filled positions at their marks.
    fn exposures(&self) -> Result<(Decimal, Decimal), Overflow> {
        self.notionals()
            .try_fold((Decimal::ZERO, Decimal::ZERO), |(g, n), (_, _, x)| {
                let x = x?;
                Ok((
                    checked::add(g, x.abs(), "gross exposure")?,
                    checked::add(n, x, "net exposure")?,
                ))
            })
    }

    fn strategy_equity(&self, strategy: &str) -> Result<Decimal, Overflow> {
        let cash = self
            .strategy_cash
            .get(strategy)
            .copied()
            .unwrap_or_default();
        let Some(held) = self.strategy_positions.get(strategy) else {
            return Ok(cash);
        };
        held.iter().try_fold(cash, |acc, (s, q)| {
            let n = checked::mul(*q, self.mark(s).unwrap_or_default(), "strategy notional")?;
            checked::add(acc, n, "strategy equity")
        })
    }

    /// The `halt` violation while trading is halted.
    fn halt_violation(&self) -> Option<Violation> {
        let h = self.halt.as_ref()?;
        let why = match h.cause {
            HaltCause::Manual => format!("trading is halted by {}: {}", h.by, h.reason),
            HaltCause::Breaker(b) => {
                format!(
                    "trading is halted: the {} breaker tripped ({})",
                    b.name(),
                    h.reason
                )
            }
        };
        Some(Violation {
            limit: "halt".into(),
            message: why,
            limit_value: None,
            observed: None,
        })
    }

    /// The pre-trade check of `order` at `at_ns`, with `reference` as the
    /// price (else the last bar close of the symbol). Changes nothing.
    /// The order of the checks is that of docs/risk.md.
    ///
    /// Fails closed: a value of the check that leaves the decimal range
    /// rejects the order with the single violation [`ARITHMETIC_OVERFLOW`]
    /// naming it (or `halt`, while halted); an order that adds risk is also
    /// rejected so while the book itself (equity, exposures) is out of range.
    #[must_use]
    pub fn check(&self, order: &Order, reference: Option<Decimal>, at_ns: i64) -> Check {
        let reference = reference.or_else(|| self.last_close(&order.symbol));
        self.try_check(order, reference, at_ns)
            .unwrap_or_else(|e| Check {
                violations: vec![self.halt_violation().unwrap_or_else(|| Violation {
                    limit: ARITHMETIC_OVERFLOW.into(),
                    message: e.to_string(),
                    limit_value: None,
                    observed: None,
                })],
                reference_price: reference,
                quantity: None,
                reducing: false,
            })
    }

    fn try_check(
        &self,
        order: &Order,
        reference: Option<Decimal>,
        at_ns: i64,
    ) -> Result<Check, Overflow> {
        let pos = self.effective_position(&order.symbol)?;
        let quantity = match &order.size {
            Size::Quantity(q) => Some(*q),
            Size::ClosePosition => Some(pos.abs()),
            Size::EquityFraction(f) => match reference.filter(|p| !p.is_zero()) {
                Some(p) => {
                    let money = checked::mul(*f, self.equity()?, "equity fraction")?;
                    let q = checked::div(money, p, "equity-fraction quantity")?;
                    Some(q.round_dp_with_strategy(ESTIMATE_DP, RoundingStrategy::ToZero))
                }
                None => None,
            },
        };
        let new_pos = quantity
            .map(|q| checked::add(pos, order.side.sign() * q, "position after the order"))
            .transpose()?;
        let reducing = new_pos.is_some_and(|n| {
            n.abs() <= pos.abs()
                && (n.is_zero() || pos.is_zero() || n.is_sign_negative() == pos.is_sign_negative())
        });
        let mut out = Check {
            violations: Vec::new(),
            reference_price: reference,
            quantity,
            reducing,
        };
        if let Some(v) = self.halt_violation() {
            out.violations.push(v);
            return Ok(out);
        }
        let l = &self.limits.limits;
        let v = &mut out.violations;
        let sym = order.symbol.as_str();
        let sl = l.symbol_limits.get(sym);
        // Fat finger: every order, reducing or not.
        if let (Some(max), Some(limit), Some(r)) =
            (l.max_price_deviation, order.limit_price, reference)
            && !r.is_zero()
        {
            let dev = checked::div(
                checked::sub(limit, r, "limit price deviation")?,
                r,
                "limit price deviation",
            )?
            .abs();
            if dev > max {
                v.push(violation(
                    "max_price_deviation",
                    format!(
                        "limit price {limit} is {} away from the reference price {r} (max {max})",
                        decimal_text(dev, 4)
                    ),
                    max,
                    dev,
                ));
            }
        }
        // Order rate per strategy: every order.
        if let Some(max) = l.max_orders_per_minute {
            let n = self.orders_in_window(&order.strategy_id, at_ns);
            if n >= u64::from(max) {
                v.push(violation(
                    "max_orders_per_minute",
                    format!(
                        "strategy {:?} has {n} orders in the minute before this one (max {max})",
                        order.strategy_id
                    ),
                    Decimal::from(max),
                    Decimal::from(n + 1),
                ));
            }
        }
        if reducing {
            return Ok(out);
        }
        // An order that adds risk needs a book that can be represented,
        // whatever the limits: no approval while an overflow is in play.
        let equity = self.equity()?;
        self.exposures()?;
        if l.restricted_symbols.contains(sym) {
            v.push(Violation {
                limit: "restricted_symbols".into(),
                message: format!("{sym} is restricted: no order may add to its position"),
                limit_value: None,
                observed: None,
            });
        }
        let needs_price = l.max_order_notional.is_some()
            || l.max_position_notional.is_some()
            || l.max_gross_exposure.is_some()
            || l.max_net_exposure.is_some()
            || l.max_gross_leverage.is_some()
            || l.max_net_leverage.is_some()
            || l.max_symbol_exposure.is_some()
            || sl.is_some_and(|s| s.max_position_notional.is_some());
        let needs_qty = needs_price
            || l.max_order_quantity.is_some()
            || sl.is_some_and(|s| {
                s.max_order_quantity.is_some() || s.max_position_quantity.is_some()
            });
        let (Some(q), Some(new_pos)) = (quantity, new_pos) else {
            if needs_qty {
                v.push(Violation {
                    limit: "reference_price".into(),
                    message: format!(
                        "no price of {sym} seen on grodt.bars.v1: the equity fraction cannot be \
                         sized for the limits"
                    ),
                    limit_value: None,
                    observed: None,
                });
            }
            return Ok(out);
        };
        if let Some(max) = l.max_order_quantity
            && q > max
        {
            v.push(violation(
                "max_order_quantity",
                format!("order quantity {q} > {max}"),
                max,
                q,
            ));
        }
        if let Some(max) = sl.and_then(|s| s.max_order_quantity)
            && q > max
        {
            v.push(violation(
                format!("symbol_limits[{sym}].max_order_quantity"),
                format!("order quantity {q} > {max}"),
                max,
                q,
            ));
        }
        if let Some(max) = sl.and_then(|s| s.max_position_quantity)
            && new_pos.abs() > max
        {
            v.push(violation(
                format!("symbol_limits[{sym}].max_position_quantity"),
                format!("position after the order {new_pos} exceeds {max} in absolute value"),
                max,
                new_pos.abs(),
            ));
        }
        let Some(r) = reference else {
            if needs_price {
                v.push(Violation {
                    limit: "reference_price".into(),
                    message: format!(
                        "no price of {sym} seen on grodt.bars.v1: the notional limits cannot be checked"
                    ),
                    limit_value: None,
                    observed: None,
                });
            }
            return Ok(out);
        };
        let notional = checked::mul(q, r, "order notional")?;
        if let Some(max) = l.max_order_notional
            && notional > max
        {
            v.push(violation(
                "max_order_notional",
                format!("order notional {notional} ({q} x {r}) > {max}"),
                max,
                notional,
            ));
        }
        let signed_notional = checked::mul(new_pos, r, "position notional after the order")?;
        let pos_notional = signed_notional.abs();
        if let Some(max) = l.max_position_notional
            && pos_notional > max
        {
            v.push(violation(
                "max_position_notional",
                format!("{sym} position notional after the order {pos_notional} > {max}"),
                max,
                pos_notional,
            ));
        }
        if let Some(max) = sl.and_then(|s| s.max_position_notional)
            && pos_notional > max
        {
            v.push(violation(
                format!("symbol_limits[{sym}].max_position_notional"),
                format!("{sym} position notional after the order {pos_notional} > {max}"),
                max,
                pos_notional,
            ));
        }
        // Leverage: exposure over the fold's equity (the whole book, every
        // strategy together); no equity left refuses every order adding risk.
        let leveraged = l.max_gross_leverage.is_some()
            || l.max_net_leverage.is_some()
            || l.max_symbol_exposure.is_some();
        if let Some(max) = l.max_symbol_exposure {
            let share = pos_notional
                .checked_div(equity)
                .filter(|_| equity > Decimal::ZERO);
            if share.is_none_or(|x| x > max) {
                v.push(violation(
                    "max_symbol_exposure",
                    format!(
                        "{sym} position notional after the order {pos_notional} is {} of equity {equity} (max {max})",
                        share.map_or_else(|| "all".to_owned(), |x| decimal_text(x, 4))
                    ),
                    max,
                    share.unwrap_or(Decimal::MAX),
                ));
            }
        }
        if l.max_gross_exposure.is_some() || l.max_net_exposure.is_some() || leveraged {
            let (mut gross, mut net) = (Decimal::ZERO, Decimal::ZERO);
            let others: BTreeSet<&String> = self
                .positions
                .keys()
                .chain(self.pending.values().map(|(s, _, _)| s))
                .filter(|s| s.as_str() != sym)
                .collect();
            for s in others {
                let n = checked::mul(
                    self.effective_position(s)?,
                    self.mark(s).unwrap_or_default(),
                    "position notional",
                )?;
                gross = checked::add(gross, n.abs(), "gross exposure after the order")?;
                net = checked::add(net, n, "net exposure after the order")?;
            }
            gross = checked::add(gross, pos_notional, "gross exposure after the order")?;
            net = checked::add(net, signed_notional, "net exposure after the order")?;
            if let Some(max) = l.max_gross_exposure
                && gross > max
            {
                v.push(violation(
                    "max_gross_exposure",
                    format!("gross exposure after the order {gross} > {max}"),
                    max,
                    gross,
                ));
            }
            if let Some(max) = l.max_net_exposure
                && net.abs() > max
            {
                v.push(violation(
                    "max_net_exposure",
                    format!("net exposure after the order {net} exceeds {max} in absolute value"),
                    max,
                    net.abs(),
                ));
            }
            for (name, limit, exposure) in [
                ("max_gross_leverage", l.max_gross_leverage, gross),
                ("max_net_leverage", l.max_net_leverage, net.abs()),
            ] {
                let Some(max) = limit else { continue };
                let lev = exposure
                    .checked_div(equity)
                    .filter(|_| equity > Decimal::ZERO);
                if lev.is_none_or(|x| x > max) {
                    v.push(violation(
                        name,
                        format!(
                            "{} after the order {exposure} over equity {equity} is {} (max {max})",
                            if name == "max_gross_leverage" {
                                "gross exposure"
                            } else {
                                "net exposure"
                            },
                            lev.map_or_else(|| "unbounded".to_owned(), |x| decimal_text(x, 4))
                        ),
                        max,
                        lev.unwrap_or(Decimal::MAX),
                    ));
                }
            }
        }
        Ok(out)
    }

    fn orders_in_window(&self, strategy: &str, at_ns: i64) -> u64 {
        self.order_times.get(strategy).map_or(0, |t| {
            t.iter()
                .filter(|&&x| x > at_ns.saturating_sub(NANOS_PER_MINUTE) && x <= at_ns)
                .count() as u64
        })
    }

    /// Applies one input; returns what it produced.
    pub fn apply(&mut self, input: &Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Intent { order, at_ns } => self.on_intent(order, *at_ns, &mut out),
            Input::Cancel {
                client_order_id,
                at_ns,
            } => {
                self.advance(*at_ns, &mut out);
                self.pending.remove(client_order_id);
                out.push(Output::CancelPassed {
                    client_order_id: client_order_id.clone(),
                });
            }
            Input::Fill {
                fill_id,
                client_order_id,
                strategy_id,
                symbol,
                side,
                quantity,
                price,
                commission,
                at_ns,
            } => {
                self.advance(*at_ns, &mut out);
                let signed = side.sign() * *quantity;
                match self.book_fill(
                    client_order_id,
                    strategy_id,
                    symbol,
                    signed,
                    *price,
                    *commission,
                ) {
                    Ok(()) => self.after_market(*at_ns, &mut out),
                    Err(e) => {
                        let at = self.now_ns.unwrap_or(*at_ns);
                        self.trip(
                            Breaker::Accounting,
                            format!(
                                "fill {fill_id} ({} {quantity} {symbol} at {price}) not booked: {e}",
                                match side {
                                    Side::Buy => "buy",
                                    Side::Sell => "sell",
                                }
                            ),
                            at,
                            &mut out,
                        );
                    }
                }
            }
            Input::Bar {
                symbol,
                close,
                at_ns,
            } => {
                self.advance(*at_ns, &mut out);
                // A bar older than the symbol's last one changes no mark.
                let day = at_ns.div_euclid(NANOS_PER_DAY);
                let closes = self.daily_closes.entry(symbol.clone()).or_default();
                match closes.back_mut() {
                    Some((d, c)) if *d == day => *c = *close,
                    Some((d, _)) if *d > day => {}
                    _ => closes.push_back((day, *close)),
                }
                let keep = self.settings.var_window_days as usize + 1;
                while closes.len() > keep {
                    closes.pop_front();
                }
                if self.last_bar_ns.get(symbol).is_none_or(|t| *at_ns >= *t) {
                    self.last_bar_ns.insert(symbol.clone(), *at_ns);
                    self.last_close.insert(symbol.clone(), *close);
                }
                self.after_market(*at_ns, &mut out);
            }
            Input::SetLimits {
                limits,
                expected_version,
                by,
                reason,
                at_ns,
            } => {
                if *expected_version == self.limits.version {
                    self.limits = LimitsRecord {
                        limits: limits.clone(),
                        version: self.limits.version + 1,
                        updated_at_ns: Some(*at_ns),
                        updated_by: by.clone(),
                    };
                    out.push(Output::LimitsChanged {
                        record: self.limits.clone(),
                        reason: reason.clone(),
                    });
                    self.evaluate(*at_ns, false, &mut out);
                }
            }
            Input::Halt { reason, by, at_ns } => {
                if self.halt.is_none() {
                    let halt = Halt {
                        cause: HaltCause::Manual,
                        reason: reason.clone(),
                        by: by.clone(),
                        since_ns: *at_ns,
                    };
                    self.halt = Some(halt.clone());
                    out.push(Output::Halted { halt });
                }
            }
            Input::Resume { reason, by, at_ns } => {
                if let Some(lifted) = self.halt.take() {
                    // A book out of range keeps its bases; the next market
                    // input that finds it so trips the accounting breaker again.
                    if let Ok(eq) = self.equity() {
                        self.drawdown_base = eq;
                        self.loss_base = eq;
                    }
                    self.intent_times.clear();
                    self.recent_rejects.clear();
                    out.push(Output::Resumed {
                        lifted,
                        reason: reason.clone(),
                        by: by.clone(),
                        at_ns: *at_ns,
                    });
                }
            }
            Input::Configure { settings, limits } => {
                let old = self.settings.initial_equity;
                self.settings = settings.clone();
                // New capital moves every equity reference with it.
                let moved = checked::sub(settings.initial_equity, old, "initial equity change")
                    .and_then(|delta| {
                        let w = "equity reference moved by new capital";
                        Ok([
                            checked::add(self.peak_equity, delta, w)?,
                            checked::add(self.day_start_equity, delta, w)?,
                            checked::add(self.drawdown_base, delta, w)?,
                            checked::add(self.loss_base, delta, w)?,
                        ])
                    });
                match moved {
                    Ok([peak, day, dd, loss]) => {
                        self.peak_equity = peak;
                        self.day_start_equity = day;
                        self.drawdown_base = dd;
                        self.loss_base = loss;
                    }
                    Err(e) => {
                        let at = self.now_ns.unwrap_or_default();
                        self.trip(
                            Breaker::Accounting,
                            format!(
                                "initial equity {} not applied to the book: {e}",
                                settings.initial_equity
                            ),
                            at,
                            &mut out,
                        );
                    }
                }
                if self.limits.version == 0
                    && let Some(l) = limits
                    && *l != self.limits.limits
                {
                    self.limits.limits = l.clone();
                    self.limits.updated_by = "config".into();
                    out.push(Output::LimitsChanged {
                        record: self.limits.clone(),
                        reason: "initial limits from the configuration ([risk.limits])".into(),
                    });
                }
                let at = self.now_ns.unwrap_or_default();
                self.evaluate(at, false, &mut out);
            }
        }
        out
    }

    /// Books a fill's position and cash flow, all or nothing.
    fn book_fill(
        &mut self,
        client_order_id: &str,
        strategy_id: &str,
        symbol: &str,
        signed: Decimal,
        price: Decimal,
        commission: Decimal,
    ) -> Result<(), Overflow> {
        let rest = self
            .pending
            .get(client_order_id)
            .map(|(_, left, _)| checked::sub(*left, signed, "pending quantity"))
            .transpose()?;
        let flow = checked::sub(
            checked::mul(-signed, price, "fill cash flow")?,
            commission,
            "fill cash flow",
        )?;
        let position = checked::add(self.position(symbol), signed, "position")?;
        let cash_flow = checked::add(self.cash_flow, flow, "cash flow")?;
        let strategy_position = checked::add(
            self.strategy_position(strategy_id, symbol),
            signed,
            "strategy position",
        )?;
        let strategy_cash = checked::add(
            self.strategy_cash
                .get(strategy_id)
                .copied()
                .unwrap_or_default(),
            flow,
            "strategy cash flow",
        )?;
        if let (Some(rest), Some((_, left, _))) = (rest, self.pending.get_mut(client_order_id)) {
            if rest.is_zero() || rest.is_sign_negative() != left.is_sign_negative() {
                self.pending.remove(client_order_id);
            } else {
                *left = rest;
            }
        }
        self.positions.insert(symbol.to_owned(), position);
        self.cash_flow = cash_flow;
        self.strategy_positions
            .entry(strategy_id.to_owned())
            .or_default()
            .insert(symbol.to_owned(), strategy_position);
        self.strategy_cash
            .insert(strategy_id.to_owned(), strategy_cash);
        self.last_fill.insert(symbol.to_owned(), price);
        Ok(())
    }

    /// Moves the clock to `at_ns` (never back) and rolls the UTC day.
    fn advance(&mut self, at_ns: i64, out: &mut Vec<Output>) {
        if self.now_ns.is_some_and(|n| at_ns <= n) {
            return;
        }
        self.now_ns = Some(at_ns);
        let ttl = i64::from(self.settings.pending_ttl_minutes).saturating_mul(NANOS_PER_MINUTE);
        self.pending
            .retain(|_, (_, _, t)| *t > at_ns.saturating_sub(ttl));
        let day = at_ns.div_euclid(NANOS_PER_DAY);
        if self.day.is_some_and(|d| d >= day) {
            return;
        }
        // A new UTC day: the equity at the previous marks is its start.
        let rolled = self.roll_day(day);
        self.rejected_today = 0;
        if let Err(e) = rolled {
            self.trip(
                Breaker::Accounting,
                format!("the book cannot be represented at the UTC day start: {e}"),
                at_ns,
                out,
            );
        }
    }

    /// The day-start equity and the strategies' day-end equities; a value
    /// out of range leaves the previous day start in place.
    fn roll_day(&mut self, day: i64) -> Result<(), Overflow> {
        let prev = self.day.replace(day);
        let eq = self.equity()?;
        if let Some(prev) = prev {
            let mut ends = Vec::with_capacity(self.strategy_cash.len());
            for s in self.strategy_cash.keys() {
                ends.push((s.clone(), self.strategy_equity(s)?));
            }
            let keep = self.settings.var_window_days as usize + 1;
            for (s, e) in ends {
                let series = self.strategy_daily.entry(s).or_default();
                series.push_back((prev, e));
                while series.len() > keep {
                    series.pop_front();
                }
            }
        }
        self.day_start_equity = eq;
        self.loss_base = eq;
        Ok(())
    }

    fn trip(&mut self, breaker: Breaker, reason: String, at_ns: i64, out: &mut Vec<Output>) {
        if self.halt.is_some() {
            return;
        }
        let halt = Halt {
            cause: HaltCause::Breaker(breaker),
            reason,
            by: "risk".into(),
            since_ns: at_ns,
        };
        self.halt = Some(halt.clone());
        out.push(Output::BreakerTripped { halt });
    }

    /// After a fill or a bar: peaks, the drawdown and daily-loss breakers, warnings.
    fn after_market(&mut self, at_ns: i64, out: &mut Vec<Output>) {
        let at = self.now_ns.unwrap_or(at_ns);
        self.evaluate(at, true, out);
    }

    /// The book's values after an input: with `breakers`, the peaks and the
    /// drawdown and daily-loss breakers; then the warnings. A value out of
    /// range trips the accounting breaker instead.
    fn evaluate(&mut self, at: i64, breakers: bool, out: &mut Vec<Output>) {
        if let Err(e) = self.try_evaluate(at, breakers, out) {
            self.trip(
                Breaker::Accounting,
                format!("the book cannot be represented: {e}"),
                at,
                out,
            );
        }
    }

    fn try_evaluate(
        &mut self,
        at: i64,
        breakers: bool,
        out: &mut Vec<Output>,
    ) -> Result<(), Overflow> {
        let eq = self.equity()?;
        let (gross, net) = self.exposures()?;
        if breakers {
            self.peak_equity = self.peak_equity.max(eq);
            self.drawdown_base = self.drawdown_base.max(eq);
        }
        let dd = if self.drawdown_base > Decimal::ZERO {
            checked::div(
                checked::sub(self.drawdown_base, eq, "drawdown")?,
                self.drawdown_base,
                "drawdown",
            )?
        } else {
            Decimal::ZERO
        };
        let loss = checked::sub(self.loss_base, eq, "daily loss")?;
        if breakers {
            if let Some(max) = self.limits.limits.max_drawdown
                && self.drawdown_base > Decimal::ZERO
                && dd >= max
            {
                self.trip(
                    Breaker::Drawdown,
                    format!(
                        "drawdown {} from the peak {} reached max_drawdown {max} (equity {eq})",
                        decimal_text(dd, 4),
                        self.drawdown_base
                    ),
                    at,
                    out,
                );
            }
            if let Some(max) = self.limits.limits.max_daily_loss
                && loss >= max
            {
                self.trip(
                    Breaker::DailyLoss,
                    format!(
                        "loss {loss} since {} reached max_daily_loss {max} (equity {eq})",
                        if self.loss_base == self.day_start_equity {
                            "the UTC day start"
                        } else {
                            "the last resume"
                        }
                    ),
                    at,
                    out,
                );
            }
        }
        self.warnings([gross, net.abs(), dd, loss], out);
        Ok(())
    }

    /// LIMIT_WARNING for each portfolio value (gross, |net|, drawdown, daily
    /// loss) that crossed the warning fraction upward.
    fn warnings(&mut self, values: [Decimal; 4], out: &mut Vec<Output>) {
        let l = &self.limits.limits;
        let limits = [
            ("max_gross_exposure", l.max_gross_exposure),
            ("max_net_exposure", l.max_net_exposure),
            ("max_drawdown", l.max_drawdown),
            ("max_daily_loss", l.max_daily_loss),
        ];
        for ((name, limit), value) in limits.into_iter().zip(values) {
            // A limit x 0.8 is smaller in magnitude than the limit: in range.
            let over = limit.is_some_and(|m| value >= m * WARNING_FRACTION);
            if over && !self.warned.contains(name) {
                self.warned.insert(name.to_owned());
                if let Some(m) = limit {
                    out.push(Output::LimitWarning {
                        limit: name.to_owned(),
                        limit_value: m,
                        observed: value,
                    });
                }
            } else if !over {
                self.warned.remove(name);
            }
        }
    }

    fn on_intent(&mut self, order: &Order, at_ns: i64, out: &mut Vec<Output>) {
        self.advance(at_ns, out);
        let now = self.now_ns.unwrap_or(at_ns);
        // The portfolio order-rate breaker sees the intent before its check,
        // so the intent that trips it is already refused by the halt.
        let rate = self.settings.breakers.order_rate_per_minute;
        if rate > 0 {
            self.intent_times.push_back(at_ns);
            self.intent_times
                .retain(|&t| t > now.saturating_sub(NANOS_PER_MINUTE));
            let n = self
                .intent_times
                .iter()
                .filter(|&&t| t > at_ns.saturating_sub(NANOS_PER_MINUTE) && t <= at_ns)
                .count();
            if n > rate as usize {
                self.trip(
                    Breaker::OrderRate,
                    format!("{n} intents in a minute exceed the order-rate breaker ({rate})"),
                    now,
                    out,
                );
            }
        }
        let check = self.check(order, None, at_ns);
        let halted_only = check.violations.iter().all(|v| v.limit == "halt");
        if check.approved() {
            self.approved_total += 1;
            if let Some(q) = check.quantity.filter(|q| !q.is_zero())
                && self.settings.pending_ttl_minutes > 0
            {
                self.pending.insert(
                    order.client_order_id.clone(),
                    (order.symbol.clone(), order.side.sign() * q, at_ns),
                );
            }
            let times = self
                .order_times
                .entry(order.strategy_id.clone())
                .or_default();
            times.push_back(at_ns);
            times.retain(|&t| t > now.saturating_sub(NANOS_PER_MINUTE));
            out.insert(
                0,
                Output::Approved {
                    client_order_id: order.client_order_id.clone(),
                    reference_price: check.reference_price,
                },
            );
        } else {
            self.rejected_total += 1;
            self.rejected_today += 1;
            out.insert(
                0,
                Output::Rejected {
                    client_order_id: order.client_order_id.clone(),
                    violations: check.violations.clone(),
                    reference_price: check.reference_price,
                },
            );
        }
        let b = &self.settings.breakers;
        if b.reject_threshold > 0 && (check.approved() || !halted_only) {
            let window = b.reject_window.max(1) as usize;
            self.recent_rejects.push_back(!check.approved());
            while self.recent_rejects.len() > window {
                self.recent_rejects.pop_front();
            }
            let rejects = self.recent_rejects.iter().filter(|r| **r).count();
            if b.reject_threshold > 0 && rejects >= b.reject_threshold as usize {
                let (threshold, window) = (b.reject_threshold, b.reject_window);
                self.trip(
                    Breaker::RejectRate,
                    format!(
                        "{rejects} of the last {} intents rejected (breaker: {threshold} of {window})",
                        self.recent_rejects.len()
                    ),
                    now,
                    out,
                );
            }
        }
    }

    /// The portfolio now: equity, drawdown, exposures, VaR, correlations.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let mut s = self.snapshot_light();
        let holdings: Vec<(Decimal, &VecDeque<(i64, Decimal)>)> = s
            .exposures
            .iter()
            .filter_map(|e| self.daily_closes.get(&e.symbol).map(|c| (e.notional, c)))
            .collect();
        let var = stats::historical_var(&holdings, self.settings.var_window_days as usize);
        let series: Vec<(&String, &VecDeque<(i64, Decimal)>)> =
            self.strategy_daily.iter().collect();
        s.var_95 = var.var_95;
        s.var_99 = var.var_99;
        s.var_days = var.days;
        s.strategy_correlations = stats::pnl_correlations(&series);
        s
    }

    /// [`RiskState::snapshot`] without the statistics (VaR 0, no
    /// correlations): cheap enough for every input.
    ///
    /// Read-only display values, so they saturate: a book out of the decimal
    /// range (the accounting breaker has tripped) shows ±`Decimal::MAX`
    /// where a value does not fit. No check or breaker reads these values.
    #[must_use]
    pub fn snapshot_light(&self) -> Snapshot {
        let mut equity = self.settings.initial_equity.saturating_add(self.cash_flow);
        let (mut gross, mut net) = (Decimal::ZERO, Decimal::ZERO);
        let mut exposures = Vec::new();
        for (s, q, n) in self.notionals() {
            let n = n.unwrap_or_else(|_| q.saturating_mul(self.mark(s).unwrap_or_default()));
            equity = equity.saturating_add(n);
            gross = gross.saturating_add(n.abs());
            net = net.saturating_add(n);
            exposures.push((s, q, n));
        }
        let drawdown = if self.peak_equity > Decimal::ZERO {
            checked::saturating_div(equity.saturating_sub(self.peak_equity), self.peak_equity)
                .min(Decimal::ZERO)
        } else {
            Decimal::ZERO
        };
        let exposures: Vec<SymbolExposure> = exposures
            .into_iter()
            .map(|(s, q, n)| SymbolExposure {
                symbol: s.clone(),
                quantity: q,
                notional: n,
                last_price: self.mark(s).unwrap_or_default(),
                equity_fraction: stats::ratio(n, equity),
            })
            .collect();
        Snapshot {
            as_of_ns: self.now_ns,
            equity,
            peak_equity: self.peak_equity,
            drawdown,
            daily_pnl: equity.saturating_sub(self.day_start_equity),
            gross_exposure: gross,
            net_exposure: net,
            var_95: Decimal::ZERO,
            var_99: Decimal::ZERO,
            var_days: 0,
            exposures,
            rejected_today: self.rejected_today,
            strategy_correlations: Vec::new(),
        }
    }
}
