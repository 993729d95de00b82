//! Every protobuf <-> domain conversion of the service.
//!
//! Execution's reports are read with the inverse of the wire mapping
//! execution writes them with (services/execution, `convert.rs`):
//! - an order's `spec` is its ticket; a bracket exit (`parent_order_id`
//!   set) is named `<entry>-tp` / `<entry>-sl` (`grodt_paper::ids`), so its
//!   entry's client order id is its own without the suffix;
//! - `Fill.commission` is net of the maker rebate (negative for a net
//!   rebate): it becomes `commission` when >= 0, else `rebate`, which
//!   books the same cash on the instance's ledger;
//! - the venue's fill sequence is not on the wire (`fill_id` is a hash of
//!   it): fills read from a report carry `seq` 0. No strategy reads it;
//! - `Order.quantity` is the resolved total (at the first fill for an
//!   `equity_fraction` or `close_position` size).
//!
//! [`report_to_proto`] writes the same mapping (the tests play the
//! execution side with it).

use grodt_core::{
    Bar, Decimal, Instrument, Liquidity, OrderKind, OrderStatus, Price, Quantity, Side, Size,
    TimeInForce, TrailingOffset,
};
use grodt_paper::instruments::Instruments;
use grodt_paper::{BracketLegs, CapitalUpdate, OrderState, PaperFill, Report, Ticket, Update};
use grodt_portfolio::CapitalKind;
use grodt_proto::convert::{
    OrderParts, bar_to_proto, order_spec, side_to_proto, size_from_proto, status_to_proto,
};
use grodt_proto::v1;
use grodt_regimes::Regime;

use crate::error::StrategySvcError;

const NS: i64 = 1_000_000_000;

/// Nanoseconds since the epoch -> wire timestamp.
#[must_use]
pub fn ts_to_proto(ns: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ns.div_euclid(NS),
        nanos: i32::try_from(ns.rem_euclid(NS)).unwrap_or(0),
    }
}

/// Wire timestamp -> nanoseconds since the epoch, naming `field`.
///
/// # Errors
/// Absent, nanos outside `[0, 1e9)` or beyond i64 nanoseconds.
pub fn ts_from_proto(
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Result<i64, StrategySvcError> {
    let t = t.ok_or_else(|| StrategySvcError::invalid(field, "required"))?;
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(StrategySvcError::invalid(
            field,
            "nanos must be in [0, 999999999]",
        ));
    }
    t.seconds
        .checked_mul(NS)
        .and_then(|s| s.checked_add(i64::from(t.nanos)))
        .ok_or_else(|| StrategySvcError::invalid(field, "outside the supported range"))
}

fn side_from_proto(field: &str, v: i32) -> Result<Side, StrategySvcError> {
    match v1::Side::try_from(v) {
        Ok(v1::Side::Buy) => Ok(Side::Buy),
        Ok(v1::Side::Sell) => Ok(Side::Sell),
        _ => Err(StrategySvcError::invalid(field, "required (BUY or SELL)")),
    }
}

/// `buy` or `sell`.
#[must_use]
pub const fn side_name(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

fn status_from_proto(v: i32) -> Result<OrderStatus, StrategySvcError> {
    Ok(match v1::OrderStatus::try_from(v) {
        Ok(v1::OrderStatus::New) => OrderStatus::New,
        Ok(v1::OrderStatus::Accepted) => OrderStatus::Accepted,
        Ok(v1::OrderStatus::Triggered) => OrderStatus::Triggered,
        Ok(v1::OrderStatus::PartiallyFilled) => OrderStatus::PartiallyFilled,
        Ok(v1::OrderStatus::Filled) => OrderStatus::Filled,
        Ok(v1::OrderStatus::Cancelled) => OrderStatus::Cancelled,
        Ok(v1::OrderStatus::Rejected) => OrderStatus::Rejected,
        Ok(v1::OrderStatus::Expired) => OrderStatus::Expired,
        _ => return Err(StrategySvcError::invalid("order.status", "required")),
    })
}

fn dec(field: &str, d: Option<&v1::Decimal>) -> Result<Decimal, StrategySvcError> {
    let d = d.ok_or_else(|| StrategySvcError::invalid(field, "required"))?;
    grodt_proto::convert::parse_decimal(&d.value).map_err(|e| StrategySvcError::invalid(field, e))
}

fn price(
    field: &str,
    d: Option<&v1::Decimal>,
    inst: &Instrument,
) -> Result<Price, StrategySvcError> {
    let d = d.ok_or_else(|| StrategySvcError::invalid(field, "required"))?;
    Price::parse(&d.value, inst.price_precision).map_err(|e| StrategySvcError::invalid(field, e))
}

fn qty(
    field: &str,
    d: Option<&v1::Decimal>,
    inst: &Instrument,
) -> Result<Quantity, StrategySvcError> {
    let d = d.ok_or_else(|| StrategySvcError::invalid(field, "required"))?;
    Quantity::parse(&d.value, inst.size_precision).map_err(|e| StrategySvcError::invalid(field, e))
}

/// A ticket as the wire's `OrderSpec` ([`grodt_proto::convert::order_spec`]).
#[must_use]
pub fn ticket_to_spec(t: &Ticket) -> v1::OrderSpec {
    order_spec(OrderParts {
        client_order_id: &t.client_order_id,
        strategy_id: &t.strategy_id,
        symbol: &t.symbol,
        side: t.side,
        size: t.size,
        kind: t.kind,
        tif: t.tif,
        bracket: t.bracket.map(|b| (b.take_profit, b.stop_loss)),
    })
}

/// An `OrderSpec` of `inst` as a ticket decided at `decision_ts`.
///
/// # Errors
/// INVALID_ARGUMENT naming the field.
pub fn spec_to_ticket(
    spec: &v1::OrderSpec,
    inst: &Instrument,
    decision_ts: i64,
) -> Result<Ticket, StrategySvcError> {
    let side = side_from_proto("order.side", spec.side)?;
    let size = size_from_proto(spec.size.as_ref(), inst.size_precision)?;
    let (limit, stop) = (spec.limit_price.as_ref(), spec.stop_price.as_ref());
    let kind = match v1::OrderType::try_from(spec.order_type) {
        Ok(v1::OrderType::Market) => OrderKind::Market,
        Ok(v1::OrderType::Limit) => OrderKind::Limit {
            price: price("order.limit_price", limit, inst)?,
        },
        Ok(v1::OrderType::Stop) => OrderKind::Stop {
            trigger: price("order.stop_price", stop, inst)?,
        },
        Ok(v1::OrderType::StopLimit) => OrderKind::StopLimit {
            trigger: price("order.stop_price", stop, inst)?,
            limit: price("order.limit_price", limit, inst)?,
        },
        Ok(v1::OrderType::TrailingStop) => {
            let offset = match spec
                .trailing_offset
                .as_ref()
                .and_then(|o| o.offset.as_ref())
            {
                Some(v1::trailing_offset::Offset::Amount(a)) => {
                    TrailingOffset::Amount(price("order.trailing_offset.amount", Some(a), inst)?)
                }
                Some(v1::trailing_offset::Offset::Percent(p)) => TrailingOffset::Percent(
                    dec("order.trailing_offset.percent", Some(p))? / Decimal::ONE_HUNDRED,
                ),
                None => {
                    return Err(StrategySvcError::invalid(
                        "order.trailing_offset",
                        "required",
                    ));
                }
            };
            OrderKind::TrailingStop { offset }
        }
        _ => return Err(StrategySvcError::invalid("order.order_type", "required")),
    };
    let tif = match v1::TimeInForce::try_from(spec.time_in_force) {
        Ok(v1::TimeInForce::Gtc) => TimeInForce::Gtc,
        Ok(v1::TimeInForce::Day) => TimeInForce::Day,
        Ok(v1::TimeInForce::Ioc) => TimeInForce::Ioc,
        Ok(v1::TimeInForce::Fok) => TimeInForce::Fok,
        _ => return Err(StrategySvcError::invalid("order.time_in_force", "required")),
    };
    let bracket = match &spec.bracket {
        None => None,
        Some(b) => Some(BracketLegs {
            take_profit: price(
                "order.bracket.take_profit_price",
                b.take_profit_price.as_ref(),
                inst,
            )?,
            stop_loss: price(
                "order.bracket.stop_loss_price",
                b.stop_loss_price.as_ref(),
                inst,
            )?,
        }),
    };
    Ok(Ticket {
        client_order_id: spec.client_order_id.clone(),
        strategy_id: spec.strategy_id.clone(),
        symbol: spec.symbol.clone(),
        side,
        size,
        kind,
        tif,
        bracket,
        decision_ts,
    })
}

/// A wire bar of `inst`, exact at its precisions (the volume truncated to
/// the size precision, as execution reads it).
///
/// # Errors
/// INVALID_ARGUMENT naming `bar.<field>`.
pub fn bar_from_proto(b: &v1::Bar, inst: &Instrument) -> Result<Bar, StrategySvcError> {
    let p = |name: &str, d: Option<&v1::Decimal>| -> Result<i64, StrategySvcError> {
        let field = format!("bar.{name}");
        let d = d.ok_or_else(|| StrategySvcError::invalid(&field, "required"))?;
        grodt_core::fixed::parse_raw(&d.value, inst.price_precision, "price")
            .map_err(|e| StrategySvcError::invalid(&field, e))
    };
    let ts = ts_from_proto("bar.timestamp", b.timestamp.as_ref())?;
    let volume = match b.volume.as_ref() {
        None => Decimal::ZERO,
        Some(v) => dec("bar.volume", Some(v))?,
    };
    let mut v = volume.trunc_with_scale(u32::from(inst.size_precision));
    v.rescale(u32::from(inst.size_precision));
    let volume = i64::try_from(v.mantissa())
        .map_err(|_| StrategySvcError::invalid("bar.volume", "too large"))?;
    let bar = Bar {
        ts,
        open: p("open", b.open.as_ref())?,
        high: p("high", b.high.as_ref())?,
        low: p("low", b.low.as_ref())?,
        close: p("close", b.close.as_ref())?,
        volume,
    };
    bar.check()
        .map_err(|e| StrategySvcError::invalid("bar", e))?;
    Ok(bar)
}

/// The entry's client order id of a bracket exit's (`<entry>-tp`/`-sl`).
fn entry_of(exit: &str) -> Option<String> {
    exit.strip_suffix("-tp")
        .or_else(|| exit.strip_suffix("-sl"))
        .map(str::to_owned)
}

/// An order state on the wire, as execution writes it (the order ids are
/// left empty: the strategy names orders by client order id).
#[must_use]
pub fn order_state_to_proto(o: &OrderState) -> v1::Order {
    v1::Order {
        order_id: String::new(),
        spec: Some(ticket_to_spec(&o.ticket)),
        status: status_to_proto(o.status) as i32,
        filled_quantity: Some(o.filled.to_decimal().into()),
        average_fill_price: o.average_price.map(v1::Decimal::from),
        created_at: Some(ts_to_proto(o.created_ts)),
        updated_at: Some(ts_to_proto(o.ts)),
        status_reason: o.reason.clone().unwrap_or_default(),
        parent_order_id: o.parent.clone().unwrap_or_default(),
        quantity: o.quantity.map(|q| q.to_decimal().into()),
    }
}

/// A wire order of `inst` as the broker's order state.
///
/// # Errors
/// INVALID_ARGUMENT naming the field.
pub fn order_state_from_proto(
    o: &v1::Order,
    inst: &Instrument,
) -> Result<OrderState, StrategySvcError> {
    let spec = o
        .spec
        .as_ref()
        .ok_or_else(|| StrategySvcError::invalid("order.spec", "required"))?;
    let created_ts = ts_from_proto("order.created_at", o.created_at.as_ref())?;
    let ts = ts_from_proto("order.updated_at", o.updated_at.as_ref())?;
    let ticket = spec_to_ticket(spec, inst, created_ts)?;
    let status = status_from_proto(o.status)?;
    let filled = qty("order.filled_quantity", o.filled_quantity.as_ref(), inst)?;
    // `Order.quantity` is the resolved total; without it (an older
    // producer), a fixed size is its own total and a FILLED order's is what
    // filled.
    let quantity = match (o.quantity.as_ref(), ticket.size) {
        (Some(q), _) => Some(qty("order.quantity", Some(q), inst)?),
        (None, Size::Fixed(q)) => Some(q),
        (None, _) if status == OrderStatus::Filled => Some(filled),
        (None, _) => None,
    };
    let parent = (!o.parent_order_id.is_empty())
        .then(|| entry_of(&spec.client_order_id))
        .flatten();
    Ok(OrderState {
        status,
        quantity,
        filled,
        average_price: o
            .average_fill_price
            .as_ref()
            .map(|d| dec("order.average_fill_price", Some(d)))
            .transpose()?,
        reason: (!o.status_reason.is_empty()).then(|| o.status_reason.clone()),
        parent,
        created_ts,
        ts,
        ticket,
    })
}

/// A fill on the wire, as execution writes it (`commission` net of the rebate).
#[must_use]
pub fn fill_to_proto(f: &PaperFill) -> v1::Fill {
    v1::Fill {
        fill_id: format!("fill-{}", f.seq),
        order_id: String::new(),
        client_order_id: f.client_order_id.clone(),
        strategy_id: f.strategy_id.clone(),
        symbol: f.symbol.clone(),
        side: side_to_proto(f.side) as i32,
        quantity: Some(f.qty.to_decimal().into()),
        price: Some(f.price.to_decimal().into()),
        commission: Some((f.commission - f.rebate).into()),
        slippage: Some(f.slippage.into()),
        liquidity: match f.liquidity {
            Liquidity::Maker => v1::LiquiditySide::Maker,
            Liquidity::Taker => v1::LiquiditySide::Taker,
        } as i32,
        filled_at: Some(ts_to_proto(f.ts)),
    }
}

/// A wire fill of `inst` (`seq` 0: not on the wire).
///
/// # Errors
/// INVALID_ARGUMENT naming the field.
pub fn fill_from_proto(f: &v1::Fill, inst: &Instrument) -> Result<PaperFill, StrategySvcError> {
    let net = dec("fill.commission", f.commission.as_ref())?;
    let (commission, rebate) = if net.is_sign_negative() && !net.is_zero() {
        (Decimal::ZERO, -net)
    } else {
        (net, Decimal::ZERO)
    };
    Ok(PaperFill {
        seq: 0,
        client_order_id: f.client_order_id.clone(),
        strategy_id: f.strategy_id.clone(),
        symbol: f.symbol.clone(),
        side: side_from_proto("fill.side", f.side)?,
        qty: qty("fill.quantity", f.quantity.as_ref(), inst)?,
        price: price("fill.price", f.price.as_ref(), inst)?,
        commission,
        rebate,
        slippage: match f.slippage.as_ref() {
            None => Decimal::ZERO,
            Some(s) => dec("fill.slippage", Some(s))?,
        },
        liquidity: if f.liquidity == v1::LiquiditySide::Maker as i32 {
            Liquidity::Maker
        } else {
            Liquidity::Taker
        },
        ts: ts_from_proto("fill.filled_at", f.filled_at.as_ref())?,
    })
}

/// A broker report on the wire, as execution publishes it; `timeframe` is
/// the bar's (a domain bar has none).
///
/// # Errors
/// A symbol the instruments do not resolve.
pub fn report_to_proto(
    r: &Report,
    instruments: &Instruments,
    timeframe: i32,
) -> Result<v1::ExecutionReportEvent, StrategySvcError> {
    let resolve = |s: &str| {
        instruments
            .resolve(s)
            .map_err(|e| StrategySvcError::invalid("symbol", e))
    };
    let bar = match &r.bar {
        None => None,
        Some((s, b)) => Some(bar_to_proto(s, b, &resolve(s)?, timeframe)),
    };
    use v1::execution_update::Update as W;
    let updates = r
        .updates
        .iter()
        .map(|u| v1::ExecutionUpdate {
            update: Some(match u {
                Update::Fill(f) => W::Fill(fill_to_proto(f)),
                Update::Order(o) => W::Order(order_state_to_proto(o)),
                Update::Capital(c) => W::Capital(v1::CapitalMove {
                    strategy_id: c.strategy_id.clone(),
                    kind: match c.kind {
                        CapitalKind::Transfer => v1::CapitalMoveKind::Transfer,
                        CapitalKind::Borrow => v1::CapitalMoveKind::Borrow,
                        CapitalKind::Financing => v1::CapitalMoveKind::Financing,
                    } as i32,
                    amount: Some(c.amount.into()),
                    at: Some(ts_to_proto(c.ts)),
                }),
            }),
        })
        .collect();
    Ok(v1::ExecutionReportEvent {
        bar,
        updates,
        sequence: 0,
        dataset_id: String::new(),
        replay_id: String::new(),
    })
}

/// An execution report as the broker's [`Report`] and the bar's timeframe
/// (UNSPECIFIED without a bar). A bar or an update of a symbol the
/// instruments do not resolve is left out: it concerns no instance (every
/// instance's symbols resolve).
///
/// # Errors
/// INVALID_ARGUMENT naming the field of a malformed bar or update.
pub fn report_from_proto(
    e: &v1::ExecutionReportEvent,
    instruments: &Instruments,
) -> Result<(Report, i32), StrategySvcError> {
    let mut report = Report::default();
    let mut timeframe = v1::Timeframe::Unspecified as i32;
    if let Some(b) = &e.bar
        && let Ok(inst) = instruments.resolve(&b.symbol)
    {
        report.bar = Some((b.symbol.clone(), bar_from_proto(b, &inst)?));
        timeframe = b.timeframe;
    }
    use v1::execution_update::Update as W;
    for u in &e.updates {
        match u.update.as_ref() {
            Some(W::Fill(f)) => {
                if let Ok(inst) = instruments.resolve(&f.symbol) {
                    report
                        .updates
                        .push(Update::Fill(fill_from_proto(f, &inst)?));
                }
            }
            Some(W::Order(o)) => {
                let symbol = o.spec.as_ref().map_or("", |s| s.symbol.as_str());
                if let Ok(inst) = instruments.resolve(symbol) {
                    report
                        .updates
                        .push(Update::Order(order_state_from_proto(o, &inst)?));
                }
            }
            Some(W::Capital(c)) => {
                let kind = match v1::CapitalMoveKind::try_from(c.kind) {
                    Ok(v1::CapitalMoveKind::Transfer) => CapitalKind::Transfer,
                    Ok(v1::CapitalMoveKind::Borrow) => CapitalKind::Borrow,
                    Ok(v1::CapitalMoveKind::Financing) => CapitalKind::Financing,
                    _ => {
                        return Err(StrategySvcError::invalid(
                            "updates.capital.kind",
                            format!("unknown capital move kind {}", c.kind),
                        ));
                    }
                };
                report.updates.push(Update::Capital(CapitalUpdate {
                    strategy_id: c.strategy_id.clone(),
                    kind,
                    amount: dec("updates.capital.amount", c.amount.as_ref())?,
                    ts: ts_from_proto("updates.capital.at", c.at.as_ref())?,
                }));
            }
            None => return Err(StrategySvcError::invalid("updates", "an empty update")),
        }
    }
    Ok((report, timeframe))
}

/// Domain regime -> wire regime.
#[must_use]
pub const fn regime_to_proto(r: Regime) -> v1::Regime {
    match r {
        Regime::TrendingUp => v1::Regime::TrendingUp,
        Regime::TrendingDown => v1::Regime::TrendingDown,
        Regime::Ranging => v1::Regime::Ranging,
        Regime::Transition => v1::Regime::Transition,
        Regime::HighVolatility => v1::Regime::HighVolatility,
    }
}

/// Wire regime -> domain regime (`None` for UNSPECIFIED or unknown).
#[must_use]
pub fn regime_from_proto(v: i32) -> Option<Regime> {
    Some(match v1::Regime::try_from(v).ok()? {
        v1::Regime::Unspecified => return None,
        v1::Regime::TrendingUp => Regime::TrendingUp,
        v1::Regime::TrendingDown => Regime::TrendingDown,
        v1::Regime::Ranging => Regime::Ranging,
        v1::Regime::Transition => Regime::Transition,
        v1::Regime::HighVolatility => Regime::HighVolatility,
    })
}

/// A timeframe's label (`1d`) -> wire value; `None` when unknown.
#[must_use]
pub fn timeframe_from_label(label: &str) -> Option<v1::Timeframe> {
    use v1::Timeframe as T;
    Some(match label {
        "1m" => T::Minute1,
        "5m" => T::Minute5,
        "15m" => T::Minute15,
        "30m" => T::Minute30,
        "1h" => T::Hour1,
        "4h" => T::Hour4,
        "1d" => T::Day1,
        "1w" => T::Week1,
        "1M" => T::Month1,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use grodt_paper::instruments::InstrumentSpec;

    #[test]
    fn a_report_round_trips_through_the_wire() {
        let mut instruments = Instruments::default();
        instruments.symbols.insert(
            "SPY".into(),
            InstrumentSpec {
                price_precision: 2,
                size_precision: 0,
            },
        );
        let inst = instruments.resolve("SPY").unwrap();
        let ticket = Ticket {
            client_order_id: "i-1".into(),
            strategy_id: "i".into(),
            symbol: "SPY".into(),
            side: Side::Buy,
            size: Size::Fixed(Quantity::parse("10", 0).unwrap()),
            kind: OrderKind::Limit {
                price: Price::parse("101.25", 2).unwrap(),
            },
            tif: TimeInForce::Gtc,
            bracket: None,
            decision_ts: 5,
        };
        let report = Report {
            bar: Some((
                "SPY".into(),
                Bar {
                    ts: 7,
                    open: 10_000,
                    high: 10_200,
                    low: 9_900,
                    close: 10_100,
                    volume: 1_000,
                },
            )),
            updates: vec![
                Update::Fill(PaperFill {
                    seq: 0,
                    client_order_id: "i-1".into(),
                    strategy_id: "i".into(),
                    symbol: "SPY".into(),
                    side: Side::Buy,
                    qty: Quantity::parse("10", 0).unwrap(),
                    price: Price::parse("101.25", 2).unwrap(),
                    commission: Decimal::new(1, 0),
                    rebate: Decimal::ZERO,
                    slippage: Decimal::ZERO,
                    liquidity: Liquidity::Maker,
                    ts: 7,
                }),
                Update::Order(OrderState {
                    ticket: ticket.clone(),
                    status: OrderStatus::Filled,
                    quantity: Some(Quantity::parse("10", 0).unwrap()),
                    filled: Quantity::parse("10", 0).unwrap(),
                    average_price: Some(Decimal::new(10_125, 2)),
                    reason: None,
                    parent: None,
                    created_ts: 5,
                    ts: 7,
                }),
                Update::Capital(CapitalUpdate {
                    strategy_id: "i".into(),
                    kind: CapitalKind::Transfer,
                    amount: Decimal::new(-125_050, 2),
                    ts: 7,
                }),
                Update::Capital(CapitalUpdate {
                    strategy_id: "i".into(),
                    kind: CapitalKind::Borrow,
                    amount: Decimal::new(312, 2),
                    ts: 7,
                }),
            ],
        };
        let wire = report_to_proto(&report, &instruments, v1::Timeframe::Day1 as i32).unwrap();
        let (back, tf) = report_from_proto(&wire, &instruments).unwrap();
        assert_eq!(tf, v1::Timeframe::Day1 as i32);
        assert_eq!(back, report);
        assert_eq!(inst.price_precision, 2);
        let spec = ticket_to_spec(&ticket);
        assert_eq!(spec_to_ticket(&spec, &inst, 5).unwrap(), ticket);
    }
}
