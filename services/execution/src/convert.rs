//! Every protobuf <-> domain conversion of the service, and the
//! deterministic ids (orders, fills, events) derived from what caused them.
//!
//! Wire mapping of the broker's values (the strategy service reads
//! `ExecutionReportEvent`s with the inverse of these):
//! - `Order.order_id` = [`order_id`] of the client order id (a UUID v7 whose
//!   time bits are the ticket's decision time, the rest a SHA-256 of the id),
//!   `parent_order_id` likewise of the bracket entry's client order id.
//! - `Fill.fill_id` = [`fill_id`] of the venue's fill sequence; `commission`
//!   is net of the maker rebate (negative for a net rebate).
//! - `TrailingOffset.percent` is in percent (1.5 = 1.5 %), the domain's
//!   `TrailingOffset::Percent` a fraction (0.015).

use grodt_core::{
    Bar, Decimal, Instrument, Liquidity, OrderKind, OrderStatus, Price, Quantity, Side, Size,
    TimeInForce, TrailingOffset,
};
use grodt_paper::{BracketLegs, OrderState, PaperFill, Ticket, Update};
use grodt_proto::convert::{
    OrderParts, optional_decimal, order_spec, required_decimal, side_to_proto, size_from_proto,
};
pub use grodt_proto::convert::{bar_to_proto, status_to_proto};
use grodt_proto::v1;
use uuid::Uuid;

use crate::error::ExecError;

const NS: i64 = 1_000_000_000;

pub use grodt_bus::derived_id;

/// The server-assigned id of the order `client_order_id` (decided at `decision_ts`).
#[must_use]
pub fn order_id(client_order_id: &str, decision_ts: i64) -> Uuid {
    derived_id(decision_ts, &format!("order:{client_order_id}"))
}

/// The id of the venue's fill `seq` (at `ts`).
#[must_use]
pub fn fill_id(seq: u64, ts: i64) -> Uuid {
    derived_id(ts, &format!("fill:{seq}"))
}

/// The envelope id of the `FillEvent` of fill `seq`.
#[must_use]
pub fn fill_event_id(seq: u64, ts: i64) -> Uuid {
    derived_id(ts, &format!("fill-event:{seq}"))
}

/// The envelope id of the `ExecutionReportEvent` of the input journaled as `source`.
#[must_use]
pub fn report_event_id(source: &str, at_ns: i64) -> Uuid {
    derived_id(at_ns, &format!("execution-report:{source}"))
}

/// Nanoseconds since the epoch -> wire timestamp. An instant before the
/// epoch (the venue's time before its first bar) goes out as the epoch.
#[must_use]
pub fn ts_to_proto(ns: i64) -> prost_types::Timestamp {
    let ns = ns.max(0);
    prost_types::Timestamp {
        seconds: ns.div_euclid(NS),
        nanos: i32::try_from(ns.rem_euclid(NS)).unwrap_or(0),
    }
}

/// Wire timestamp -> nanoseconds since the epoch, naming `field` when out of range.
///
/// # Errors
/// Nanos outside `[0, 1e9)` or an instant beyond i64 nanoseconds.
pub fn ts_from_proto(field: &str, t: &prost_types::Timestamp) -> Result<i64, ExecError> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(ExecError::invalid(field, "nanos must be in [0, 999999999]"));
    }
    t.seconds
        .checked_mul(NS)
        .and_then(|s| s.checked_add(i64::from(t.nanos)))
        .ok_or_else(|| ExecError::invalid(field, "outside the supported range"))
}

/// Wire status -> domain status (`None` for UNSPECIFIED or an unknown value).
#[must_use]
pub fn status_from_proto(v: i32) -> Option<OrderStatus> {
    Some(match v1::OrderStatus::try_from(v).ok()? {
        v1::OrderStatus::Unspecified => return None,
        v1::OrderStatus::New => OrderStatus::New,
        v1::OrderStatus::Accepted => OrderStatus::Accepted,
        v1::OrderStatus::Triggered => OrderStatus::Triggered,
        v1::OrderStatus::PartiallyFilled => OrderStatus::PartiallyFilled,
        v1::OrderStatus::Filled => OrderStatus::Filled,
        v1::OrderStatus::Cancelled => OrderStatus::Cancelled,
        v1::OrderStatus::Rejected => OrderStatus::Rejected,
        v1::OrderStatus::Expired => OrderStatus::Expired,
    })
}

/// The lower-case name of a status, for logs and metric labels.
#[must_use]
pub const fn status_name(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::New => "new",
        OrderStatus::Accepted => "accepted",
        OrderStatus::Triggered => "triggered",
        OrderStatus::PartiallyFilled => "partially_filled",
        OrderStatus::Filled => "filled",
        OrderStatus::Cancelled => "cancelled",
        OrderStatus::Rejected => "rejected",
        OrderStatus::Expired => "expired",
    }
}

/// Every status, for metric series initialised at start.
pub const STATUSES: [OrderStatus; 8] = [
    OrderStatus::New,
    OrderStatus::Accepted,
    OrderStatus::Triggered,
    OrderStatus::PartiallyFilled,
    OrderStatus::Filled,
    OrderStatus::Cancelled,
    OrderStatus::Rejected,
    OrderStatus::Expired,
];

/// `buy` or `sell`.
#[must_use]
pub const fn side_name(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// A price field: exact at the instrument's precision (or at its own
/// written precision for an order of an unknown symbol, which is refused anyway).
fn price(field: &str, d: &v1::Decimal, inst: Option<&Instrument>) -> Result<Price, ExecError> {
    let p = match inst {
        Some(i) => Price::parse(&d.value, i.price_precision),
        None => Price::parse_auto(&d.value),
    }
    .map_err(|e| ExecError::invalid(field, e))?;
    if p.raw() <= 0 {
        return Err(ExecError::invalid(field, "must be > 0"));
    }
    Ok(p)
}

fn required_price(
    field: &str,
    d: Option<&v1::Decimal>,
    inst: Option<&Instrument>,
) -> Result<Price, ExecError> {
    price(
        field,
        d.ok_or_else(|| ExecError::invalid(field, "required"))?,
        inst,
    )
}

fn forbid(field: &str, d: Option<&v1::Decimal>, kind: &str) -> Result<(), ExecError> {
    if d.is_some() {
        return Err(ExecError::invalid(
            field,
            format!("not allowed on a {kind} order"),
        ));
    }
    Ok(())
}

/// A validated `OrderSpec` as the broker's ticket. `inst` is the symbol's
/// instrument (`None`: an unknown symbol, read at the written precisions so
/// the refusal can still be reported as an order).
///
/// # Errors
/// INVALID_ARGUMENT naming the field (`order.limit_price`, ...).
pub fn ticket_from_spec(
    spec: &v1::OrderSpec,
    inst: Option<&Instrument>,
    decision_ts: i64,
) -> Result<Ticket, ExecError> {
    if !grodt_paper::ids::is_valid(&spec.client_order_id) {
        return Err(ExecError::invalid(
            "order.client_order_id",
            "must be 1..64 chars of [A-Za-z0-9_-]",
        ));
    }
    if spec.strategy_id.len() > 64 {
        return Err(ExecError::invalid("order.strategy_id", "at most 64 chars"));
    }
    if spec.symbol.is_empty() || spec.symbol.len() > 32 {
        return Err(ExecError::invalid("order.symbol", "must be 1..32 chars"));
    }
    let side = match v1::Side::try_from(spec.side) {
        Ok(v1::Side::Buy) => Side::Buy,
        Ok(v1::Side::Sell) => Side::Sell,
        _ => return Err(ExecError::invalid("order.side", "required (BUY or SELL)")),
    };
    let size_precision = match (inst, &spec.size) {
        (Some(i), _) => i.size_precision,
        (None, Some(v1::order_spec::Size::Quantity(q))) => {
            grodt_core::fixed::written_precision(&q.value)
        }
        (None, _) => 0,
    };
    let size = size_from_proto(spec.size.as_ref(), size_precision)?;
    let (limit, stop) = (spec.limit_price.as_ref(), spec.stop_price.as_ref());
    let ty = v1::OrderType::try_from(spec.order_type).unwrap_or(v1::OrderType::Unspecified);
    let kind = match ty {
        v1::OrderType::Unspecified => {
            return Err(ExecError::invalid("order.order_type", "required"));
        }
        v1::OrderType::Market => {
            forbid("order.limit_price", limit, "MARKET")?;
            forbid("order.stop_price", stop, "MARKET")?;
            OrderKind::Market
        }
        v1::OrderType::Limit => {
            forbid("order.stop_price", stop, "LIMIT")?;
            OrderKind::Limit {
                price: required_price("order.limit_price", limit, inst)?,
            }
        }
        v1::OrderType::Stop => {
            forbid("order.limit_price", limit, "STOP")?;
            OrderKind::Stop {
                trigger: required_price("order.stop_price", stop, inst)?,
            }
        }
        v1::OrderType::StopLimit => OrderKind::StopLimit {
            trigger: required_price("order.stop_price", stop, inst)?,
            limit: required_price("order.limit_price", limit, inst)?,
        },
        v1::OrderType::TrailingStop => {
            forbid("order.limit_price", limit, "TRAILING_STOP")?;
            forbid("order.stop_price", stop, "TRAILING_STOP")?;
            let offset = spec
                .trailing_offset
                .as_ref()
                .and_then(|o| o.offset.as_ref())
                .ok_or_else(|| ExecError::invalid("order.trailing_offset", "required"))?;
            let offset = match offset {
                v1::trailing_offset::Offset::Amount(a) => {
                    TrailingOffset::Amount(price("order.trailing_offset.amount", a, inst)?)
                }
                v1::trailing_offset::Offset::Percent(p) => {
                    const F: &str = "order.trailing_offset.percent";
                    let v = required_decimal(F, Some(p))?;
                    if v <= Decimal::ZERO || v >= Decimal::ONE_HUNDRED {
                        return Err(ExecError::invalid(F, "must be > 0 and < 100"));
                    }
                    TrailingOffset::Percent(v / Decimal::ONE_HUNDRED)
                }
            };
            OrderKind::TrailingStop { offset }
        }
    };
    if ty != v1::OrderType::TrailingStop && spec.trailing_offset.is_some() {
        return Err(ExecError::invalid(
            "order.trailing_offset",
            "only on a TRAILING_STOP order",
        ));
    }
    let tif = match v1::TimeInForce::try_from(spec.time_in_force) {
        Ok(v1::TimeInForce::Gtc) => TimeInForce::Gtc,
        Ok(v1::TimeInForce::Day) => TimeInForce::Day,
        Ok(v1::TimeInForce::Ioc) => TimeInForce::Ioc,
        Ok(v1::TimeInForce::Fok) => TimeInForce::Fok,
        _ => return Err(ExecError::invalid("order.time_in_force", "required")),
    };
    if spec.reduce_only {
        return Err(ExecError::invalid(
            "order.reduce_only",
            "not supported by the paper broker (use close_position)",
        ));
    }
    if !spec.oco_group.is_empty() {
        return Err(ExecError::invalid(
            "order.oco_group",
            "one-cancels-other groups are not supported by the paper broker",
        ));
    }
    let bracket = match &spec.bracket {
        None => None,
        Some(b) => {
            let legs = BracketLegs {
                take_profit: required_price(
                    "order.bracket.take_profit_price",
                    b.take_profit_price.as_ref(),
                    inst,
                )?,
                stop_loss: required_price(
                    "order.bracket.stop_loss_price",
                    b.stop_loss_price.as_ref(),
                    inst,
                )?,
            };
            let (above, below) = (legs.take_profit, legs.stop_loss);
            let ordered = match side {
                Side::Buy => above.raw() > below.raw(),
                Side::Sell => above.raw() < below.raw(),
            };
            if !ordered {
                return Err(ExecError::invalid(
                    "order.bracket",
                    "take profit must be above the stop loss for a buy, below it for a sell",
                ));
            }
            Some(legs)
        }
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

/// Whether two tickets ask for the same order (the decision time aside:
/// it is the time the order reached the venue, not part of the request).
#[must_use]
pub fn same_order(a: &Ticket, b: &Ticket) -> bool {
    Ticket {
        decision_ts: 0,
        ..a.clone()
    } == Ticket {
        decision_ts: 0,
        ..b.clone()
    }
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

/// The broker's order state as the wire's `Order`.
#[must_use]
pub fn order_to_proto(o: &OrderState) -> v1::Order {
    v1::Order {
        order_id: order_id(&o.ticket.client_order_id, o.ticket.decision_ts).to_string(),
        spec: Some(ticket_to_spec(&o.ticket)),
        status: status_to_proto(o.status) as i32,
        filled_quantity: Some(o.filled.to_decimal().into()),
        quantity: o.quantity.map(|q| q.to_decimal().into()),
        average_fill_price: o.average_price.map(v1::Decimal::from),
        created_at: Some(ts_to_proto(o.created_ts)),
        updated_at: Some(ts_to_proto(o.ts)),
        status_reason: o.reason.clone().unwrap_or_default(),
        parent_order_id: o
            .parent
            .as_deref()
            .map(|p| order_id(p, o.ticket.decision_ts).to_string())
            .unwrap_or_default(),
    }
}

/// A venue fill as the wire's `Fill`; `decision_ts` is its order's (for the order id).
#[must_use]
pub fn fill_to_proto(f: &PaperFill, decision_ts: i64) -> v1::Fill {
    v1::Fill {
        fill_id: fill_id(f.seq, f.ts).to_string(),
        order_id: order_id(&f.client_order_id, decision_ts).to_string(),
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

/// A wire bar of `inst`: prices exact at its price precision (a bar off the
/// tick grid is refused), the volume at its size precision (extra decimals
/// truncated: the venue's participation cap counts whole size steps).
///
/// # Errors
/// INVALID_ARGUMENT naming `bar.<field>`.
pub fn bar_from_proto(b: &v1::Bar, inst: &Instrument) -> Result<Bar, ExecError> {
    let p = |name: &str, d: Option<&v1::Decimal>| -> Result<i64, ExecError> {
        let field = format!("bar.{name}");
        let d = d.ok_or_else(|| ExecError::invalid(&field, "required"))?;
        grodt_core::fixed::parse_raw(&d.value, inst.price_precision, "price")
            .map_err(|e| ExecError::invalid(&field, e))
    };
    let ts = b
        .timestamp
        .as_ref()
        .ok_or_else(|| ExecError::invalid("bar.timestamp", "required"))
        .and_then(|t| ts_from_proto("bar.timestamp", t))?;
    let volume = optional_decimal("bar.volume", b.volume.as_ref())?.unwrap_or_default();
    let mut v = volume.trunc_with_scale(u32::from(inst.size_precision));
    v.rescale(u32::from(inst.size_precision));
    let volume =
        i64::try_from(v.mantissa()).map_err(|_| ExecError::invalid("bar.volume", "too large"))?;
    let bar = Bar {
        ts,
        open: p("open", b.open.as_ref())?,
        high: p("high", b.high.as_ref())?,
        low: p("low", b.low.as_ref())?,
        close: p("close", b.close.as_ref())?,
        volume,
    };
    bar.check().map_err(|e| ExecError::invalid("bar", e))?;
    Ok(bar)
}

/// One report update on the wire.
#[must_use]
pub fn update_to_proto(u: &Update, decision_ts: impl Fn(&str) -> i64) -> v1::ExecutionUpdate {
    use v1::execution_update::Update as W;
    v1::ExecutionUpdate {
        update: Some(match u {
            Update::Fill(f) => W::Fill(fill_to_proto(f, decision_ts(&f.client_order_id))),
            Update::Order(o) => W::Order(order_to_proto(o)),
            Update::Capital(c) => W::Capital(capital_to_proto(c)),
        }),
    }
}

/// A portfolio member's capital move on the wire.
#[must_use]
pub fn capital_to_proto(c: &grodt_paper::CapitalUpdate) -> v1::CapitalMove {
    use grodt_portfolio::CapitalKind as K;
    v1::CapitalMove {
        strategy_id: c.strategy_id.clone(),
        kind: match c.kind {
            K::Transfer => v1::CapitalMoveKind::Transfer,
            K::Borrow => v1::CapitalMoveKind::Borrow,
            K::Financing => v1::CapitalMoveKind::Financing,
        } as i32,
        amount: Some(c.amount.into()),
        at: Some(ts_to_proto(c.ts)),
    }
}

/// `Quantity` -> wire decimal.
#[must_use]
pub fn qty(q: Quantity) -> v1::Decimal {
    q.to_decimal().into()
}

/// `Size` of a ticket as a plain decimal for the audit log (`equity_fraction:0.5`, `close_position`).
#[must_use]
pub fn size_label(s: Size) -> String {
    match s {
        Size::Fixed(q) => q.to_decimal().to_string(),
        Size::EquityFraction(f) => format!("equity_fraction:{f}"),
        Size::ClosePosition => "close_position".to_owned(),
    }
}

/// The price of a ticket for the audit log (limit, else trigger; empty for market).
#[must_use]
pub fn price_label(k: OrderKind) -> String {
    match k {
        OrderKind::Market => String::new(),
        OrderKind::Limit { price } => price.to_decimal().to_string(),
        OrderKind::Stop { trigger } => trigger.to_decimal().to_string(),
        OrderKind::StopLimit { limit, .. } => limit.to_decimal().to_string(),
        OrderKind::TrailingStop { offset } => match offset {
            TrailingOffset::Amount(a) => format!("trail:{}", a.to_decimal()),
            TrailingOffset::Percent(p) => format!("trail:{p}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> v1::OrderSpec {
        v1::OrderSpec {
            client_order_id: "c-1".into(),
            strategy_id: "s".into(),
            symbol: "SPY".into(),
            side: v1::Side::Buy as i32,
            order_type: v1::OrderType::Limit as i32,
            size: Some(v1::order_spec::Size::Quantity(v1::Decimal {
                value: "10".into(),
            })),
            limit_price: Some(v1::Decimal {
                value: "101.25".into(),
            }),
            time_in_force: v1::TimeInForce::Gtc as i32,
            ..Default::default()
        }
    }

    #[test]
    fn a_spec_round_trips_through_a_ticket() {
        let inst = Instrument::equity("SPY", 2, 0);
        let t = ticket_from_spec(&spec(), Some(&inst), 5).unwrap();
        assert_eq!(t.decision_ts, 5);
        let back = ticket_from_spec(&ticket_to_spec(&t), Some(&inst), 5).unwrap();
        assert_eq!(back, t);
        let mut trail = spec();
        trail.order_type = v1::OrderType::TrailingStop as i32;
        trail.limit_price = None;
        trail.trailing_offset = Some(v1::TrailingOffset {
            offset: Some(v1::trailing_offset::Offset::Percent(v1::Decimal {
                value: "1.5".into(),
            })),
        });
        let t = ticket_from_spec(&trail, Some(&inst), 0).unwrap();
        assert_eq!(
            t.kind,
            OrderKind::TrailingStop {
                offset: TrailingOffset::Percent(Decimal::new(15, 3))
            }
        );
        assert_eq!(ticket_to_spec(&t).trailing_offset, trail.trailing_offset);
    }

    #[test]
    fn bad_specs_name_the_field() {
        let inst = Instrument::equity("SPY", 2, 0);
        type Edit = Box<dyn Fn(&mut v1::OrderSpec)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|s| s.client_order_id = "a b".into()),
                "order.client_order_id",
            ),
            (Box::new(|s| s.side = 0), "order.side"),
            (Box::new(|s| s.order_type = 0), "order.order_type"),
            (Box::new(|s| s.limit_price = None), "order.limit_price"),
            (
                Box::new(|s| {
                    s.limit_price = Some(v1::Decimal {
                        value: "1.001".into(),
                    })
                }),
                "order.limit_price",
            ),
            (Box::new(|s| s.size = None), "order.size"),
            (
                Box::new(|s| {
                    s.size = Some(v1::order_spec::Size::Quantity(v1::Decimal {
                        value: "1.5".into(),
                    }));
                }),
                "order.quantity",
            ),
            (Box::new(|s| s.time_in_force = 0), "order.time_in_force"),
            (Box::new(|s| s.reduce_only = true), "order.reduce_only"),
            (Box::new(|s| s.oco_group = "g".into()), "order.oco_group"),
            (
                Box::new(|s| {
                    s.stop_price = Some(v1::Decimal { value: "1".into() });
                }),
                "order.stop_price",
            ),
        ];
        for (edit, field) in cases {
            let mut s = spec();
            edit(&mut s);
            let e = ticket_from_spec(&s, Some(&inst), 0).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("{field}:")),
                "{field}: {e}"
            );
        }
    }

    #[test]
    fn derived_ids_are_stable_v7_and_distinct() {
        let a = fill_id(3, 1_700_000_000_000_000_000);
        assert_eq!(a, fill_id(3, 1_700_000_000_000_000_000));
        assert_ne!(a, fill_id(4, 1_700_000_000_000_000_000));
        assert_eq!(a.get_version_num(), 7);
        assert_ne!(fill_event_id(3, 0), fill_id(3, 0));
        assert_eq!(order_id("x", 0).get_version_num(), 7);
    }
}
