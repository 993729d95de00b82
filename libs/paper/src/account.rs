//! The paper account a service holds: one venue for independent strategy
//! instances ([`Broker`]), or a portfolio desk whose members share it
//! ([`PortfolioBroker`]). Both take the same inputs and report the same way,
//! so the execution service holds either behind this one type.

use grodt_core::Instrument;
use grodt_sim::venue::Snapshot;

use crate::broker::Broker;
use crate::desk::PortfolioBroker;
use crate::{Input, OrderState, PaperError, PaperFill, Report, Ticket};

/// A paper broker, single or portfolio.
#[derive(Debug)]
pub enum PaperAccount {
    /// One venue; every instance trades it on its own capital.
    Single(Box<Broker>),
    /// The portfolio desk: sub-ledgers, allocation, limits, netting.
    Portfolio(Box<PortfolioBroker>),
}

impl From<Broker> for PaperAccount {
    fn from(b: Broker) -> Self {
        Self::Single(Box::new(b))
    }
}

impl From<PortfolioBroker> for PaperAccount {
    fn from(b: PortfolioBroker) -> Self {
        Self::Portfolio(Box::new(b))
    }
}

impl PaperAccount {
    /// Applies one input (see [`Broker::apply`], [`PortfolioBroker::apply`]).
    ///
    /// # Errors
    /// What the broker refuses; a refused input changes nothing.
    pub fn apply(&mut self, input: &Input) -> Result<Report, PaperError> {
        match self {
            Self::Single(b) => b.apply(input),
            Self::Portfolio(b) => b.apply(input),
        }
    }

    /// Every order, oldest first.
    pub fn orders(&self) -> &[OrderState] {
        match self {
            Self::Single(b) => b.orders(),
            Self::Portfolio(b) => b.orders(),
        }
    }

    /// The order of a client order id.
    pub fn order(&self, client_order_id: &str) -> Option<&OrderState> {
        match self {
            Self::Single(b) => b.order(client_order_id),
            Self::Portfolio(b) => b.order(client_order_id),
        }
    }

    /// Every fill, oldest first (a portfolio's: what each member was booked).
    pub fn fills(&self) -> &[PaperFill] {
        match self {
            Self::Single(b) => b.fills(),
            Self::Portfolio(b) => b.fills(),
        }
    }

    /// Cash, equity, positions, open orders and costs of the account.
    ///
    /// # Errors
    /// A ledger overflow.
    pub fn snapshot(&self) -> Result<Snapshot, PaperError> {
        match self {
            Self::Single(b) => b.snapshot(),
            Self::Portfolio(b) => b.snapshot(),
        }
    }

    /// The instruments traded.
    pub fn instruments(&self) -> &[Instrument] {
        match self {
            Self::Single(b) => b.instruments(),
            Self::Portfolio(b) => b.instruments(),
        }
    }

    /// Open time (ns) of the latest bar of `symbol` taken.
    pub fn last_bar_ts(&self, symbol: &str) -> Option<i64> {
        match self {
            Self::Single(b) => b.last_bar_ts(symbol),
            Self::Portfolio(b) => b.last_bar_ts(symbol),
        }
    }

    /// Whether `ticket` comes after a later bar of its symbol.
    pub fn is_late(&self, ticket: &Ticket) -> bool {
        match self {
            Self::Single(b) => b.is_late(ticket),
            Self::Portfolio(b) => b.is_late(ticket),
        }
    }

    /// The account's time (ns): its latest bar.
    pub fn now(&self) -> i64 {
        match self {
            Self::Single(b) => b.now(),
            Self::Portfolio(b) => b.now(),
        }
    }
}
