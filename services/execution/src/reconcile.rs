//! Positions folded from fills, and the reconciliation of the venue's ledger
//! against its fill log. Pure functions over a broker: no I/O.
//!
//! The ledger (cash, positions) is the venue's; the fill log is the list of
//! fills the venue reported. Recomputing the ledger from the starting cash
//! and the fills (notional, commissions, rebates) and the accruals the
//! ledger itemises (borrow, financing: charged to the account, never part of
//! a fill) must give the ledger's cash and positions exactly. Any difference
//! is a break: a bug, or a state that is not the fold of its journal.

use std::collections::BTreeMap;

use grodt_core::{Decimal, Instrument, Position, Side};
use grodt_paper::PaperAccount;
use grodt_paper::PaperFill;
use serde::Serialize;

/// Netting positions folded from `fills` (those `keep` selects), by symbol,
/// with the same exact position arithmetic as the venue's ledger.
///
/// # Errors
/// A fill of a symbol not among `instruments`, or an overflow.
pub fn positions_from_fills<'a>(
    instruments: &[Instrument],
    fills: impl IntoIterator<Item = &'a PaperFill>,
) -> Result<BTreeMap<String, Position>, String> {
    let mut out: BTreeMap<String, Position> = BTreeMap::new();
    for f in fills {
        let pos = match out.get_mut(&f.symbol) {
            Some(p) => p,
            None => {
                let inst = instruments
                    .iter()
                    .find(|i| i.id == f.symbol)
                    .ok_or_else(|| format!("fill {}: unknown symbol {}", f.seq, f.symbol))?;
                out.entry(f.symbol.clone())
                    .or_insert_with(|| Position::flat(inst.size_precision, inst.multiplier))
            }
        };
        pos.apply(f.side, f.qty, f.price)
            .map_err(|e| format!("fill {}: {e}", f.seq))?;
    }
    Ok(out)
}

/// One difference between the ledger and the fills.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    /// What differs: `cash`, `commission`, `position:<SYMBOL>`.
    pub item: String,
    /// The ledger's value.
    pub ledger: String,
    /// The value recomputed from the fills.
    pub from_fills: String,
}

/// The reconciliation of the ledger against the fill log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    /// Fills in the log.
    pub fills: usize,
    /// Orders the broker holds.
    pub orders: usize,
    /// The ledger's cash.
    pub ledger_cash: Decimal,
    /// Cash recomputed: starting cash - Σ buys + Σ sells - commissions +
    /// rebates - borrow - financing.
    pub cash_from_fills: Decimal,
    /// Non-flat positions of the ledger.
    pub positions: usize,
    /// Every difference; empty when consistent.
    pub breaks: Vec<Break>,
}

/// Reconciles `broker`'s ledger against its fills (`starting_cash` is the
/// account's opening cash).
///
/// # Errors
/// The snapshot or the position fold failed (an overflow): a break of its own kind.
pub fn reconcile(broker: &PaperAccount, starting_cash: Decimal) -> Result<Reconciliation, String> {
    let snap = broker.snapshot().map_err(|e| e.to_string())?;
    let overflow = |what: &str| format!("{what} exceeds the decimal range");
    let fills = broker.fills();
    let mut cash = starting_cash;
    let mut commission = Decimal::ZERO;
    let mut rebates = Decimal::ZERO;
    for f in fills {
        let multiplier = broker
            .instruments()
            .iter()
            .find(|i| i.id == f.symbol)
            .map_or(1, |i| i.multiplier);
        let notional =
            grodt_core::fixed::notional(f.qty, f.price, multiplier).map_err(|e| e.to_string())?;
        let flow = match f.side {
            Side::Buy => -notional,
            Side::Sell => notional,
        };
        cash = cash
            .checked_add(flow)
            .and_then(|c| c.checked_sub(f.commission))
            .and_then(|c| c.checked_add(f.rebate))
            .ok_or_else(|| overflow("cash from fills"))?;
        commission = commission
            .checked_add(f.commission)
            .ok_or_else(|| overflow("commission"))?;
        rebates = rebates
            .checked_add(f.rebate)
            .ok_or_else(|| overflow("rebates"))?;
    }
    cash = snap
        .costs
        .borrow
        .checked_add(snap.costs.financing)
        .and_then(|c| cash.checked_sub(c))
        .ok_or_else(|| overflow("cash from fills"))?;
    let mut breaks = Vec::new();
    let mut check = |item: &str, ledger: Decimal, recomputed: Decimal| {
        if ledger != recomputed {
            breaks.push(Break {
                item: item.to_owned(),
                ledger: ledger.to_string(),
                from_fills: recomputed.to_string(),
            });
        }
    };
    check("cash", snap.cash, cash);
    check("commission", snap.costs.commission, commission);
    check("rebates", snap.costs.rebates, rebates);
    let folded = positions_from_fills(broker.instruments(), fills)?;
    let ledger: BTreeMap<&str, Decimal> = snap
        .positions
        .iter()
        .map(|p| (p.symbol.as_str(), p.quantity))
        .collect();
    let symbols: std::collections::BTreeSet<&str> = ledger
        .keys()
        .copied()
        .chain(folded.keys().map(String::as_str))
        .collect();
    for s in symbols {
        let l = ledger.get(s).copied().unwrap_or_default();
        let f = folded.get(s).map(Position::quantity).unwrap_or_default();
        check(&format!("position:{s}"), l, f);
    }
    Ok(Reconciliation {
        fills: fills.len(),
        orders: broker.orders().len(),
        ledger_cash: snap.cash,
        cash_from_fills: cash,
        positions: snap.positions.len(),
        breaks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use grodt_core::{Bar, OrderKind, Quantity, Size, TimeInForce};
    use grodt_paper::{Input, Ticket};
    use grodt_sim::config::{BacktestConfig, CommissionSpec};

    fn broker() -> PaperAccount {
        let config = BacktestConfig {
            commission: CommissionSpec::PerShare {
                rate: Decimal::new(5, 3),
                minimum: Decimal::ONE,
            },
            ..BacktestConfig::default()
        };
        grodt_paper::broker::Broker::new(config, vec![Instrument::equity("SPY", 2, 0)])
            .unwrap()
            .into()
    }

    fn bar(i: i64, close: i64) -> Input {
        Input::Bar {
            symbol: "SPY".into(),
            bar: Bar {
                ts: i * 86_400_000_000_000,
                open: close,
                high: close + 100,
                low: close - 100,
                close,
                volume: 1_000_000,
            },
        }
    }

    fn market(cid: &str, side: Side, qty: i64) -> Input {
        Input::Submit(Ticket {
            client_order_id: cid.into(),
            strategy_id: "s".into(),
            symbol: "SPY".into(),
            side,
            size: Size::Fixed(Quantity::from_raw(qty, 0).unwrap()),
            kind: OrderKind::Market,
            tif: TimeInForce::Day,
            bracket: None,
            decision_ts: 0,
        })
    }

    #[test]
    fn a_traded_broker_reconciles_without_breaks() {
        let mut b = broker();
        b.apply(&bar(1, 10_000)).unwrap();
        b.apply(&market("a", Side::Buy, 30)).unwrap();
        b.apply(&bar(2, 10_250)).unwrap();
        b.apply(&market("b", Side::Sell, 10)).unwrap();
        b.apply(&bar(3, 9_975)).unwrap();
        assert_eq!(b.fills().len(), 2);
        let r = reconcile(&b, Decimal::from(100_000)).unwrap();
        assert!(r.breaks.is_empty(), "{:?}", r.breaks);
        assert_eq!(r.ledger_cash, r.cash_from_fills);
        // A wrong starting cash is a cash break, named.
        let r = reconcile(&b, Decimal::from(99_000)).unwrap();
        assert_eq!(r.breaks.len(), 1);
        assert_eq!(r.breaks[0].item, "cash");
        let pos = positions_from_fills(b.instruments(), b.fills()).unwrap();
        assert_eq!(pos["SPY"].quantity(), Decimal::from(20));
    }
}
