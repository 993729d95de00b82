//! The service's state as a pure fold of its journaled inputs: deployed
//! instances, one `grodt_paper::runner::Runner` per (instance, symbol), and
//! the latest regime per symbol. No clock, no I/O: time comes from the
//! inputs (bar times from execution's reports, the time a command was
//! journaled), so replaying the journal rebuilds the same state, indicator
//! windows, mirrored orders and ledgers included.

use std::collections::BTreeMap;

use grodt_core::{Decimal, Side};
use grodt_paper::instruments::Instruments;
use grodt_paper::runner::{Out, Runner};
use grodt_paper::{PaperError, Report, Ticket, Update};
use grodt_proto::v1;
use serde::{Deserialize, Serialize};

use crate::convert::regime_from_proto;
use crate::error::StrategySvcError;

/// Longest instance id.
pub const MAX_INSTANCE_ID: usize = 64;
/// Most symbols of one instance.
pub const MAX_SYMBOLS: usize = 100;
/// Rounds of "refused while not running -> the strategy reacts" per input.
const MAX_REFUSAL_ROUNDS: usize = 8;

/// What a deployment asks for (a `DeployRequest` without `start`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSpec {
    /// 1..64 chars of `[A-Za-z0-9_-]`.
    pub instance_id: String,
    /// A registry name.
    pub strategy_name: String,
    /// Parameters as given.
    pub params: BTreeMap<String, String>,
    /// 1..100 distinct symbols.
    pub symbols: Vec<String>,
    /// `v1::Timeframe` value.
    pub timeframe: i32,
    /// `v1::Regime` values in which entries are allowed; empty = all.
    pub allowed_regimes: Vec<i32>,
    /// Capital of the instance, split equally across its symbols.
    pub capital: Decimal,
}

impl InstanceSpec {
    /// The registry parameters: the given ones, plus the regime gating that
    /// `allowed_regimes` asks for (`regimes` = their names, `on_disallowed`
    /// = `hold` unless given: entries blocked, exits never gated).
    ///
    /// # Errors
    /// INVALID_ARGUMENT naming `allowed_regimes` when it conflicts with the
    /// `regimes` or `on_disallowed` parameter.
    pub fn effective_params(&self) -> Result<BTreeMap<String, String>, StrategySvcError> {
        let mut params = self.params.clone();
        if self.allowed_regimes.is_empty() {
            return Ok(params);
        }
        let mut names = Vec::new();
        for (k, r) in self.allowed_regimes.iter().enumerate() {
            let regime = regime_from_proto(*r).ok_or_else(|| {
                StrategySvcError::invalid(format!("allowed_regimes[{k}]"), "not a regime")
            })?;
            if !names.contains(&regime.name()) {
                names.push(regime.name());
            }
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        let joined = names.join(",");
        if let Some(given) = params.get("regimes") {
            let mut g: Vec<&str> = given.split(',').map(str::trim).collect();
            g.sort_unstable();
            g.dedup();
            if g != sorted {
                return Err(StrategySvcError::invalid(
                    "allowed_regimes",
                    format!("conflicts with params.regimes={given:?}; give one of them"),
                ));
            }
        }
        params.insert("regimes".into(), joined);
        match params.get("on_disallowed").map(String::as_str) {
            None => {
                params.insert("on_disallowed".into(), "hold".into());
            }
            Some("off") => {
                return Err(StrategySvcError::invalid(
                    "allowed_regimes",
                    "conflicts with params.on_disallowed=off (ungated)",
                ));
            }
            Some(_) => {}
        }
        Ok(params)
    }

    /// Checks everything a deployment needs (the instruments resolve every
    /// symbol, the registry builds the strategy for each).
    ///
    /// # Errors
    /// INVALID_ARGUMENT naming the field or parameter at fault.
    pub fn validate(&self, instruments: &Instruments) -> Result<(), StrategySvcError> {
        if !grodt_paper::ids::is_valid(&self.instance_id) {
            return Err(StrategySvcError::invalid(
                "instance_id",
                "required; 1..64 chars of [A-Za-z0-9_-]",
            ));
        }
        if self.strategy_name.is_empty() {
            return Err(StrategySvcError::invalid("strategy_name", "required"));
        }
        if grodt_strategies::registry::spec(&self.strategy_name).is_none() {
            return Err(StrategySvcError::invalid(
                "strategy_name",
                format!(
                    "unknown strategy {:?}; valid strategies: {}",
                    self.strategy_name,
                    grodt_strategies::registry::names()
                ),
            ));
        }
        if self.symbols.is_empty() || self.symbols.len() > MAX_SYMBOLS {
            return Err(StrategySvcError::invalid(
                "symbols",
                format!("required; 1..{MAX_SYMBOLS} symbols"),
            ));
        }
        for (k, s) in self.symbols.iter().enumerate() {
            if self.symbols[..k].contains(s) {
                return Err(StrategySvcError::invalid(
                    format!("symbols[{k}]"),
                    format!("{s:?} is listed twice"),
                ));
            }
            instruments
                .resolve(s)
                .map_err(|e| StrategySvcError::invalid(format!("symbols[{k}]"), e))?;
        }
        match v1::Timeframe::try_from(self.timeframe) {
            Ok(v1::Timeframe::Unspecified) | Err(_) => {
                return Err(StrategySvcError::invalid(
                    "timeframe",
                    "required (not UNSPECIFIED)",
                ));
            }
            Ok(_) => {}
        }
        if self.capital <= Decimal::ZERO {
            return Err(StrategySvcError::invalid("capital", "must be > 0"));
        }
        let params = self.effective_params()?;
        let configured = grodt_strategies::registry::parse(&self.strategy_name, &params)
            .map_err(|e| registry_error(&e))?;
        let arity = configured.spec().symbols;
        if arity > 1 {
            // A strategy on several instruments (a pair) trades exactly its
            // symbols together, in their order.
            if self.symbols.len() != arity {
                return Err(StrategySvcError::invalid(
                    "symbols",
                    format!(
                        "{} trades {arity} symbols together; {} given",
                        self.strategy_name,
                        self.symbols.len()
                    ),
                ));
            }
            let insts = self
                .symbols
                .iter()
                .map(|s| instruments.resolve(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StrategySvcError::invalid("symbols", e))?;
            configured
                .build_on(&insts)
                .map_err(|e| registry_error(&e))?;
            return Ok(());
        }
        for s in &self.symbols {
            let inst = instruments
                .resolve(s)
                .map_err(|e| StrategySvcError::invalid("symbols", e))?;
            configured.build(&inst).map_err(|e| registry_error(&e))?;
        }
        Ok(())
    }
}

fn registry_error(e: &grodt_strategies::registry::RegistryError) -> StrategySvcError {
    match e.param() {
        Some(p) => StrategySvcError::invalid(format!("params.{p}"), e),
        None => StrategySvcError::invalid("strategy_name", e),
    }
}

/// An instance's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Deployed, not started: sees nothing.
    Deployed,
    /// Sees its bars, emits intents.
    Running,
    /// Books its reports, sees no bars, emits nothing.
    Paused,
    /// As paused, for good.
    Stopped,
    /// Stopped by an error.
    Failed,
}

impl Status {
    /// Every status, for metric series.
    pub const ALL: [Self; 5] = [
        Self::Deployed,
        Self::Running,
        Self::Paused,
        Self::Stopped,
        Self::Failed,
    ];

    /// Lower-case name (metric label).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Deployed => "deployed",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }

    /// Wire value.
    #[must_use]
    pub const fn to_proto(self) -> v1::InstanceState {
        match self {
            Self::Deployed => v1::InstanceState::Deployed,
            Self::Running => v1::InstanceState::Running,
            Self::Paused => v1::InstanceState::Paused,
            Self::Stopped => v1::InstanceState::Stopped,
            Self::Failed => v1::InstanceState::Failed,
        }
    }
}

/// Average-cost PnL of one (instance, symbol), from its fills.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pnl {
    /// Signed position.
    pub qty: Decimal,
    /// Average entry price of the open quantity (0 when flat).
    pub avg: Decimal,
    /// Closed gains minus commissions (net of rebates).
    pub realized: Decimal,
}

/// `Some(x)` or the name of the quantity that left the decimal range.
fn ck(x: Option<Decimal>, what: &'static str) -> Result<Decimal, &'static str> {
    x.ok_or(what)
}

impl Pnl {
    /// Books one fill, all or nothing.
    ///
    /// # Errors
    /// The name of the quantity (average price, realized PnL, position)
    /// that left the decimal range: the book is left as it was.
    fn on_fill(
        &mut self,
        side: Side,
        q: Decimal,
        p: Decimal,
        fee: Decimal,
    ) -> Result<(), &'static str> {
        let mut next = *self;
        next.book(side, q, p, fee)?;
        *self = next;
        Ok(())
    }

    fn book(
        &mut self,
        side: Side,
        q: Decimal,
        p: Decimal,
        fee: Decimal,
    ) -> Result<(), &'static str> {
        let signed = if side == Side::Buy { q } else { -q };
        self.realized = ck(self.realized.checked_sub(fee), "realized PnL")?;
        if self.qty.is_zero() || self.qty.is_sign_negative() == signed.is_sign_negative() {
            let new = ck(self.qty.checked_add(signed), "position")?;
            let cost = ck(
                self.avg
                    .checked_mul(self.qty.abs())
                    .zip(p.checked_mul(q))
                    .and_then(|(a, b)| a.checked_add(b)),
                "cost of the position",
            )?;
            self.avg = ck(cost.checked_div(new.abs()), "average entry price")?;
            self.qty = new;
            return Ok(());
        }
        let closing = q.min(self.qty.abs());
        let dir = if self.qty.is_sign_negative() {
            -Decimal::ONE
        } else {
            Decimal::ONE
        };
        // dir is ±1: the last product is a negation at most.
        let gain = ck(
            p.checked_sub(self.avg).and_then(|d| d.checked_mul(closing)),
            "realized PnL",
        )? * dir;
        self.realized = ck(self.realized.checked_add(gain), "realized PnL")?;
        self.qty = ck(self.qty.checked_add(signed), "position")?;
        if self.qty.is_zero() {
            self.avg = Decimal::ZERO;
        } else if q > closing {
            // Flipped through flat: the rest opened at this price.
            self.avg = p;
        }
        Ok(())
    }

    /// Gains of the open quantity at `mark`; `None` without a mark or when
    /// out of the decimal range.
    #[must_use]
    pub fn unrealized(&self, mark: Option<Decimal>) -> Option<Decimal> {
        mark.map_or(Some(Decimal::ZERO), |m| {
            m.checked_sub(self.avg)?.checked_mul(self.qty)
        })
    }
}

/// One runner of an instance: the strategy on one of its symbols, or on
/// all of them together for a strategy trading several (a pair).
#[derive(Debug)]
pub struct Book {
    /// The strategy on its symbols.
    pub runner: Runner,
    /// Its PnL per symbol, in the runner's symbol order.
    pub pnl: Vec<Pnl>,
}

/// A deployed instance.
#[derive(Debug)]
pub struct Instance {
    /// As deployed.
    pub spec: InstanceSpec,
    /// Lifecycle state.
    pub status: Status,
    /// Why it failed.
    pub error: Option<String>,
    /// One per symbol in the spec's order, or one for all of them for a
    /// strategy trading several together (empty when it failed to build).
    pub books: Vec<Book>,
    /// When it was deployed (ns, the command's journal time).
    pub deployed_at: i64,
    /// When a command last changed it (ns).
    pub updated_at: i64,
    /// Commands applied to it (the next command's source number).
    pub commands: u64,
    /// The reason given with the last pause or stop.
    pub reason: String,
    /// Cancellations of its orders sent on their way.
    pub cancels_emitted: u64,
}

impl Instance {
    /// Bars shown, over its symbols.
    #[must_use]
    pub fn bars_processed(&self) -> u64 {
        self.books.iter().map(|b| b.runner.bars_processed()).sum()
    }

    /// Orders asked for, over its symbols.
    #[must_use]
    pub fn intents_emitted(&self) -> u64 {
        self.books.iter().map(|b| b.runner.intents_emitted()).sum()
    }

    /// Latest bar shown (ns).
    #[must_use]
    pub fn last_bar_ts(&self) -> Option<i64> {
        self.books
            .iter()
            .filter_map(|b| b.runner.last_bar_ts())
            .max()
    }

    fn fail(&mut self, e: &dyn std::fmt::Display) {
        self.status = Status::Failed;
        self.error = Some(e.to_string());
    }
}

/// One journaled input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A new instance (validated before it was journaled).
    Deploy {
        /// What it is.
        spec: InstanceSpec,
        /// Running at once.
        start: bool,
        /// When (ns).
        at_ns: i64,
    },
    /// Start or resume.
    Start {
        /// The instance.
        instance_id: String,
        /// When (ns).
        at_ns: i64,
    },
    /// Pause.
    Pause {
        /// The instance.
        instance_id: String,
        /// Why.
        reason: String,
        /// When (ns).
        at_ns: i64,
    },
    /// Stop for good.
    Stop {
        /// The instance.
        instance_id: String,
        /// Cancel its open orders.
        cancel_open_orders: bool,
        /// Close its positions.
        flatten: bool,
        /// Why.
        reason: String,
        /// When (ns).
        at_ns: i64,
    },
    /// One execution report.
    Report {
        /// What the venue did.
        report: Report,
        /// The bar's timeframe (`v1::Timeframe`).
        timeframe: i32,
    },
    /// Risk refused an intent.
    Refused {
        /// The instance (the intent's strategy id).
        instance_id: String,
        /// The order.
        client_order_id: String,
        /// Risk's reason.
        reason: String,
    },
    /// A regime of a symbol (from `grodt.regimes.v1`).
    Regime {
        /// The symbol.
        symbol: String,
        /// `v1::Timeframe`.
        timeframe: i32,
        /// `v1::Regime`.
        regime: i32,
    },
}

/// What an input asks of the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// An order intent.
    Intent(Ticket),
    /// A cancellation of an instance's order.
    Cancel {
        /// The instance.
        instance_id: String,
        /// The order.
        client_order_id: String,
        /// Its symbol.
        symbol: String,
        /// The bar it was decided on (ns); `None` for an operator's Stop.
        decision_ts: Option<i64>,
        /// When it was decided (ns): that bar, or the Stop command's time.
        at_ns: i64,
    },
}

/// Every instance and the latest regimes.
#[derive(Debug)]
pub struct State {
    instruments: Instruments,
    /// By instance id.
    pub instances: BTreeMap<String, Instance>,
    /// Latest regime by (symbol, timeframe), `v1::Regime` values.
    pub regimes: BTreeMap<(String, i32), i32>,
}

impl State {
    /// An empty state over `instruments`.
    #[must_use]
    pub fn new(instruments: Instruments) -> Self {
        Self {
            instruments,
            instances: BTreeMap::new(),
            regimes: BTreeMap::new(),
        }
    }

    /// The instruments.
    #[must_use]
    pub const fn instruments(&self) -> &Instruments {
        &self.instruments
    }

    /// Whether the regime stream says `inst` is outside its allowed regimes
    /// on any of its symbols (false while unknown or ungated).
    #[must_use]
    pub fn gated(&self, inst: &Instance) -> bool {
        let allowed = &inst.spec.allowed_regimes;
        !allowed.is_empty()
            && inst.spec.symbols.iter().any(|s| {
                self.regimes
                    .get(&(s.clone(), inst.spec.timeframe))
                    .is_some_and(|r| !allowed.contains(r))
            })
    }

    /// Applies one input; never fails (an instance whose strategy fails
    /// goes FAILED with the error).
    pub fn apply(&mut self, rec: &Record) -> Vec<Output> {
        let mut out = Vec::new();
        match rec {
            Record::Deploy { spec, start, at_ns } => {
                if self.instances.contains_key(&spec.instance_id) {
                    return out;
                }
                let mut inst = Instance {
                    spec: spec.clone(),
                    status: if *start {
                        Status::Running
                    } else {
                        Status::Deployed
                    },
                    error: None,
                    books: Vec::new(),
                    deployed_at: *at_ns,
                    updated_at: *at_ns,
                    commands: 1,
                    reason: String::new(),
                    cancels_emitted: 0,
                };
                match build_books(spec, &self.instruments) {
                    Ok(books) => inst.books = books,
                    Err(e) => inst.fail(&e),
                }
                self.instances.insert(spec.instance_id.clone(), inst);
            }
            Record::Start { instance_id, at_ns } => {
                if let Some(i) = self.instances.get_mut(instance_id) {
                    i.commands += 1;
                    i.updated_at = *at_ns;
                    if matches!(i.status, Status::Deployed | Status::Paused) {
                        i.status = Status::Running;
                        i.reason.clear();
                    }
                }
            }
            Record::Pause {
                instance_id,
                reason,
                at_ns,
            } => {
                if let Some(i) = self.instances.get_mut(instance_id) {
                    i.commands += 1;
                    i.updated_at = *at_ns;
                    if i.status == Status::Running {
                        i.status = Status::Paused;
                        i.reason.clone_from(reason);
                    }
                }
            }
            Record::Stop {
                instance_id,
                cancel_open_orders,
                flatten,
                reason,
                at_ns,
            } => {
                if let Some(i) = self.instances.get_mut(instance_id) {
                    i.commands += 1;
                    i.updated_at = *at_ns;
                    if matches!(i.status, Status::Stopped | Status::Failed) {
                        return out;
                    }
                    for b in &mut i.books {
                        if *cancel_open_orders {
                            for cid in b.runner.open_client_order_ids() {
                                let symbol = b.runner.symbol_of(&cid).unwrap_or(b.runner.symbol());
                                out.push(Output::Cancel {
                                    instance_id: instance_id.clone(),
                                    symbol: symbol.to_owned(),
                                    client_order_id: cid,
                                    decision_ts: None,
                                    at_ns: *at_ns,
                                });
                            }
                        }
                        if *flatten {
                            for o in b.runner.flatten() {
                                if let Out::Submit(t) = o {
                                    out.push(Output::Intent(t));
                                }
                            }
                        }
                    }
                    i.status = Status::Stopped;
                    i.reason.clone_from(reason);
                }
            }
            Record::Report { report, timeframe } => {
                let bare = Report {
                    bar: None,
                    updates: report.updates.clone(),
                };
                for i in self.instances.values_mut() {
                    if matches!(i.status, Status::Deployed | Status::Failed) {
                        continue;
                    }
                    let shows = i.status == Status::Running && i.spec.timeframe == *timeframe;
                    let r = if shows || report.bar.is_none() {
                        report
                    } else {
                        &bare
                    };
                    if let Err(e) = feed(i, r, &mut out) {
                        i.fail(&e);
                    }
                }
            }
            Record::Refused {
                instance_id,
                client_order_id,
                reason,
            } => {
                if let Some(i) = self.instances.get_mut(instance_id)
                    && i.status != Status::Failed
                {
                    let status = i.status;
                    let mut result = Ok(());
                    for b in &mut i.books {
                        result = b
                            .runner
                            .on_refused(client_order_id, reason)
                            .and_then(|outs| {
                                route(status, instance_id, &mut b.runner, outs, &mut out)
                            });
                        if result.is_err() {
                            break;
                        }
                    }
                    if let Err(e) = result {
                        i.fail(&e);
                    }
                }
            }
            Record::Regime {
                symbol,
                timeframe,
                regime,
            } => {
                self.regimes.insert((symbol.clone(), *timeframe), *regime);
            }
        }
        for o in &out {
            if let Output::Cancel { instance_id, .. } = o
                && let Some(i) = self.instances.get_mut(instance_id)
            {
                i.cancels_emitted += 1;
            }
        }
        out
    }
}

fn build_books(spec: &InstanceSpec, instruments: &Instruments) -> Result<Vec<Book>, String> {
    let params = spec.effective_params().map_err(|e| e.to_string())?;
    let configured = grodt_strategies::registry::parse(&spec.strategy_name, &params)
        .map_err(|e| e.to_string())?;
    if configured.spec().symbols > 1 {
        let insts = spec
            .symbols
            .iter()
            .map(|s| instruments.resolve(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let strategy = configured.build_on(&insts).map_err(|e| e.to_string())?;
        let n = insts.len();
        return Ok(vec![Book {
            runner: Runner::on_instruments(&spec.instance_id, strategy, insts, spec.capital),
            pnl: vec![Pnl::default(); n],
        }]);
    }
    let n = Decimal::from(spec.symbols.len());
    // Divided by 1..=100 symbols: never larger than the capital itself.
    let capital = spec.capital / n;
    spec.symbols
        .iter()
        .map(|s| {
            let inst = instruments.resolve(s).map_err(|e| e.to_string())?;
            let strategy = configured.build(&inst).map_err(|e| e.to_string())?;
            Ok(Book {
                runner: Runner::new(&spec.instance_id, strategy, inst, capital),
                pnl: vec![Pnl::default()],
            })
        })
        .collect()
}

/// One report to every book of an instance.
fn feed(i: &mut Instance, r: &Report, out: &mut Vec<Output>) -> Result<(), PaperError> {
    let status = i.status;
    let id = i.spec.instance_id.clone();
    for b in &mut i.books {
        for u in &r.updates {
            if let Update::Fill(f) = u
                && f.strategy_id == id
                && let Some(k) = b.runner.symbols().iter().position(|s| *s == f.symbol)
            {
                let fee = f.commission.checked_sub(f.rebate);
                fee.ok_or("commission net of the rebate")
                    .and_then(|fee| {
                        b.pnl[k].on_fill(f.side, f.qty.to_decimal(), f.price.to_decimal(), fee)
                    })
                    .map_err(|what| PaperError::Overflow {
                        what,
                        symbol: f.symbol.clone(),
                    })?;
            }
        }
        let outs = b.runner.on_report(r)?;
        route(status, &id, &mut b.runner, outs, out)?;
    }
    Ok(())
}

/// A runner's requests: out as they are while running; otherwise refused
/// back to the strategy at once (an order) or dropped (a cancellation).
fn route(
    status: Status,
    instance_id: &str,
    runner: &mut Runner,
    outs: Vec<Out>,
    out: &mut Vec<Output>,
) -> Result<(), PaperError> {
    let mut queue = outs;
    for _ in 0..MAX_REFUSAL_ROUNDS {
        if queue.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for o in queue {
            match (status, o) {
                (Status::Running, Out::Submit(t)) => out.push(Output::Intent(t)),
                (Status::Running, Out::Cancel(c)) => out.push(Output::Cancel {
                    instance_id: instance_id.to_owned(),
                    symbol: runner.symbol_of(&c).unwrap_or(runner.symbol()).to_owned(),
                    client_order_id: c,
                    decision_ts: runner.last_bar_ts(),
                    at_ns: runner.last_bar_ts().unwrap_or_default(),
                }),
                (_, Out::Submit(t)) => {
                    let why = format!(
                        "instance {}: no orders while {}",
                        instance_id,
                        status.name()
                    );
                    next.extend(runner.on_refused(&t.client_order_id, &why)?);
                }
                (_, Out::Cancel(_)) => {}
            }
        }
        queue = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use grodt_core::Bar;
    use grodt_paper::instruments::InstrumentSpec;

    fn two_symbols() -> State {
        let mut i = Instruments::default();
        for s in ["SPY", "QQQ"] {
            i.symbols.insert(
                s.into(),
                InstrumentSpec {
                    price_precision: 2,
                    size_precision: 0,
                },
            );
        }
        State::new(i)
    }

    fn spec(symbols: &[&str]) -> InstanceSpec {
        InstanceSpec {
            instance_id: "m-1".into(),
            strategy_name: "sma_cross".into(),
            params: [
                ("fast".to_owned(), "2".to_owned()),
                ("slow".to_owned(), "3".to_owned()),
            ]
            .into_iter()
            .collect(),
            symbols: symbols.iter().map(|s| (*s).to_owned()).collect(),
            timeframe: v1::Timeframe::Day1 as i32,
            allowed_regimes: Vec::new(),
            capital: Decimal::from(100_000),
        }
    }

    fn bar(symbol: &str, k: i64, close: i64, timeframe: i32) -> Record {
        Record::Report {
            report: Report {
                bar: Some((
                    symbol.into(),
                    Bar {
                        ts: k * 86_400_000_000_000,
                        open: close,
                        high: close,
                        low: close,
                        close,
                        volume: 100,
                    },
                )),
                updates: Vec::new(),
            },
            timeframe,
        }
    }

    #[test]
    fn a_pair_trades_its_symbols_together_in_one_runner() {
        let mut state = two_symbols();
        let mut s = spec(&["SPY"]);
        s.strategy_name = "pair".into();
        s.params.clear();
        let e = s.validate(state.instruments()).unwrap_err();
        assert!(
            e.to_string().contains("symbols") && e.to_string().contains("2 symbols together"),
            "{e}"
        );
        s.symbols = vec!["SPY".into(), "QQQ".into()];
        s.validate(state.instruments()).unwrap();
        state.apply(&Record::Deploy {
            spec: s,
            start: true,
            at_ns: 1,
        });
        let i = &state.instances["m-1"];
        assert_eq!(i.books.len(), 1, "one runner on both symbols");
        assert_eq!(i.books[0].runner.symbols(), ["SPY", "QQQ"]);
        assert_eq!(i.books[0].pnl.len(), 2);
        assert_eq!(
            i.books[0].runner.cash(),
            Decimal::from(100_000),
            "all the capital"
        );
        let day = v1::Timeframe::Day1 as i32;
        state.apply(&bar("SPY", 0, 10_000, day));
        state.apply(&bar("QQQ", 0, 20_000, day));
        assert_eq!(
            state.instances["m-1"].bars_processed(),
            2,
            "both bars shown"
        );
    }

    #[test]
    fn capital_is_split_and_each_symbol_sees_only_its_bars() {
        let mut state = two_symbols();
        let s = spec(&["SPY", "QQQ"]);
        s.validate(state.instruments()).unwrap();
        state.apply(&Record::Deploy {
            spec: s,
            start: true,
            at_ns: 1,
        });
        let day = v1::Timeframe::Day1 as i32;
        let mut intents = Vec::new();
        for (k, close) in [10_000, 9_000, 8_000, 9_000, 12_000]
            .into_iter()
            .enumerate()
        {
            intents.extend(state.apply(&bar("SPY", k as i64, close, day)));
        }
        // A bar of another timeframe is not shown.
        state.apply(&bar("QQQ", 1, 10_000, v1::Timeframe::Hour1 as i32));
        let i = &state.instances["m-1"];
        assert_eq!(i.books.len(), 2);
        for b in &i.books {
            assert_eq!(b.runner.cash(), Decimal::from(50_000));
        }
        assert_eq!(i.books[0].runner.bars_processed(), 5);
        assert_eq!(i.books[1].runner.bars_processed(), 0);
        assert_eq!(intents.len(), 1, "{intents:?}");
        let Output::Intent(t) = &intents[0] else {
            panic!("an intent")
        };
        assert_eq!(
            (t.symbol.as_str(), t.client_order_id.as_str()),
            ("SPY", "m-1-0")
        );
    }

    #[test]
    fn a_paused_instance_sees_no_bars_and_emits_nothing() {
        let mut state = two_symbols();
        state.apply(&Record::Deploy {
            spec: spec(&["SPY"]),
            start: true,
            at_ns: 1,
        });
        state.apply(&Record::Pause {
            instance_id: "m-1".into(),
            reason: "x".into(),
            at_ns: 2,
        });
        let day = v1::Timeframe::Day1 as i32;
        let mut out = Vec::new();
        for (k, close) in [10_000, 9_000, 8_000, 9_000, 12_000]
            .into_iter()
            .enumerate()
        {
            out.extend(state.apply(&bar("SPY", k as i64, close, day)));
        }
        assert!(out.is_empty());
        assert_eq!(state.instances["m-1"].bars_processed(), 0);
        assert_eq!(state.instances["m-1"].commands, 2);
    }

    #[test]
    fn a_fill_out_of_the_decimal_range_fails_the_instance_instead_of_panicking() {
        use grodt_core::{Liquidity, Price, Quantity};
        let mut state = two_symbols();
        state.apply(&Record::Deploy {
            spec: spec(&["SPY"]),
            start: true,
            at_ns: 1,
        });
        let fill = |seq: u64| grodt_paper::PaperFill {
            seq,
            client_order_id: "m-1-0".into(),
            strategy_id: "m-1".into(),
            symbol: "SPY".into(),
            side: Side::Buy,
            // 9.2e18 x 9.2e16: far past rust_decimal's ~7.9e28.
            qty: Quantity::from_raw(i64::MAX, 0).unwrap(),
            price: Price::from_raw(i64::MAX, 2).unwrap(),
            commission: Decimal::ZERO,
            rebate: Decimal::ZERO,
            slippage: Decimal::ZERO,
            liquidity: Liquidity::Taker,
            ts: 86_400_000_000_000,
        };
        let out = state.apply(&Record::Report {
            report: Report {
                bar: None,
                updates: vec![Update::Fill(fill(0))],
            },
            timeframe: v1::Timeframe::Day1 as i32,
        });
        assert!(out.is_empty());
        let i = &state.instances["m-1"];
        assert_eq!(i.status, Status::Failed);
        assert_eq!(
            i.error.as_deref(),
            Some("cost of the position of SPY exceeds the decimal range")
        );
        assert_eq!(
            i.books[0].pnl,
            vec![Pnl::default()],
            "the book is left as it was"
        );
        // A failed instance sees nothing more; the state goes on.
        let day = v1::Timeframe::Day1 as i32;
        assert!(state.apply(&bar("SPY", 2, 10_000, day)).is_empty());
        assert_eq!(state.instances["m-1"].bars_processed(), 0);
        // Average price and realized PnL are checked too.
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let mut p = Pnl::default();
        p.on_fill(Side::Buy, d("1"), Decimal::MAX, Decimal::ZERO)
            .unwrap();
        assert_eq!(
            p.on_fill(Side::Sell, d("1"), -Decimal::MAX, Decimal::ZERO),
            Err("realized PnL")
        );
        assert_eq!(p.unrealized(Some(-Decimal::MAX)), None);
    }

    #[test]
    fn average_cost_pnl() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let mut p = Pnl::default();
        p.on_fill(Side::Buy, d("10"), d("100"), d("1")).unwrap();
        p.on_fill(Side::Buy, d("10"), d("110"), d("1")).unwrap();
        assert_eq!(p.avg, d("105"));
        p.on_fill(Side::Sell, d("5"), d("120"), d("1")).unwrap();
        assert_eq!(p.realized, d("72"));
        assert_eq!(p.unrealized(Some(d("100"))), Some(d("-75")));
        p.on_fill(Side::Sell, d("20"), d("100"), Decimal::ZERO)
            .unwrap();
        assert_eq!(p.qty, d("-5"));
        assert_eq!(p.avg, d("100"));
        assert_eq!(p.realized, d("72") - d("75"));
    }
}
