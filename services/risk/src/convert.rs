//! Every protobuf <-> domain conversion of the risk service.

use std::collections::{BTreeMap, BTreeSet};

use grodt_proto::convert::{datetime_to_timestamp, parse_decimal, timestamp_to_datetime};
use grodt_proto::v1;
use grodt_risk_rules::{
    Breaker, Halt, HaltCause, Limits, LimitsRecord, Order, Side, Size, Snapshot, SymbolLimits,
    Violation,
};
use rust_decimal::Decimal;

use crate::error::RiskSvcError;

/// ns since the epoch -> wire timestamp.
#[must_use]
pub fn ts_to_proto(ns: i64) -> prost_types::Timestamp {
    datetime_to_timestamp(chrono::DateTime::from_timestamp_nanos(ns))
}

/// A wire timestamp -> ns since the epoch, naming `field`.
///
/// # Errors
/// Absent, or out of range.
pub fn ts_from_proto(
    field: &str,
    ts: Option<&prost_types::Timestamp>,
) -> Result<i64, RiskSvcError> {
    let ts = ts.ok_or_else(|| RiskSvcError::invalid(field, "required"))?;
    timestamp_to_datetime(ts)
        .map_err(|e| RiskSvcError::invalid(field, e))?
        .timestamp_nanos_opt()
        .ok_or_else(|| RiskSvcError::invalid(field, "outside the supported range"))
}

fn dec(field: &str, d: &v1::Decimal) -> Result<Decimal, RiskSvcError> {
    parse_decimal(&d.value).map_err(|e| RiskSvcError::invalid(field, e))
}

fn opt_dec(field: &str, d: Option<&v1::Decimal>) -> Result<Option<Decimal>, RiskSvcError> {
    d.map(|d| dec(field, d)).transpose()
}

fn positive(field: &str, d: Option<&v1::Decimal>) -> Result<Option<Decimal>, RiskSvcError> {
    let v = opt_dec(field, d)?;
    if v.is_some_and(|x| x <= Decimal::ZERO) {
        return Err(RiskSvcError::invalid(field, "must be > 0"));
    }
    Ok(v)
}

fn out(d: Option<Decimal>) -> Option<v1::Decimal> {
    d.map(v1::Decimal::from)
}

/// Checks a text field's length (in chars), naming it.
///
/// # Errors
/// Empty or too long.
pub fn text(field: &str, v: &str, max: usize) -> Result<String, RiskSvcError> {
    let n = v.chars().count();
    if n == 0 || n > max {
        return Err(RiskSvcError::invalid(
            field,
            format!("required, 1..{max} chars (got {n})"),
        ));
    }
    Ok(v.to_owned())
}

/// `OrderSpec` -> the order risk checks; errors name `order.<field>`.
///
/// # Errors
/// A field outside what `OrderSpec` accepts.
pub fn order_from_proto(spec: &v1::OrderSpec) -> Result<Order, RiskSvcError> {
    let id = &spec.client_order_id;
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(RiskSvcError::invalid(
            "order.client_order_id",
            "required, 1..64 chars of [A-Za-z0-9_-]",
        ));
    }
    let sym = &spec.symbol;
    if sym.is_empty()
        || sym.len() > 32
        || !sym
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
    {
        return Err(RiskSvcError::invalid(
            "order.symbol",
            "required, 1..32 chars of [A-Za-z0-9._/-]",
        ));
    }
    let side = match v1::Side::try_from(spec.side) {
        Ok(v1::Side::Buy) => Side::Buy,
        Ok(v1::Side::Sell) => Side::Sell,
        _ => {
            return Err(RiskSvcError::invalid(
                "order.side",
                "required (BUY or SELL)",
            ));
        }
    };
    let ty = match v1::OrderType::try_from(spec.order_type) {
        Ok(v1::OrderType::Unspecified) | Err(_) => {
            return Err(RiskSvcError::invalid("order.order_type", "required"));
        }
        Ok(t) => t,
    };
    if matches!(
        v1::TimeInForce::try_from(spec.time_in_force),
        Ok(v1::TimeInForce::Unspecified) | Err(_)
    ) {
        return Err(RiskSvcError::invalid("order.time_in_force", "required"));
    }
    use v1::order_spec::Size as Wire;
    let size = match &spec.size {
        None => {
            return Err(RiskSvcError::invalid(
                "order.size",
                "one of quantity, equity_fraction, close_position is required",
            ));
        }
        Some(Wire::Quantity(q)) => {
            Size::Quantity(positive("order.quantity", Some(q))?.unwrap_or_default())
        }
        Some(Wire::EquityFraction(f)) => {
            Size::EquityFraction(positive("order.equity_fraction", Some(f))?.unwrap_or_default())
        }
        Some(Wire::ClosePosition(true)) => Size::ClosePosition,
        Some(Wire::ClosePosition(false)) => {
            return Err(RiskSvcError::invalid(
                "order.close_position",
                "must be true when set",
            ));
        }
    };
    let limit_price = positive("order.limit_price", spec.limit_price.as_ref())?;
    let needs_limit = matches!(ty, v1::OrderType::Limit | v1::OrderType::StopLimit);
    if needs_limit != limit_price.is_some() {
        return Err(RiskSvcError::invalid(
            "order.limit_price",
            "required for LIMIT and STOP_LIMIT, forbidden otherwise",
        ));
    }
    let needs_stop = matches!(ty, v1::OrderType::Stop | v1::OrderType::StopLimit);
    if needs_stop != positive("order.stop_price", spec.stop_price.as_ref())?.is_some() {
        return Err(RiskSvcError::invalid(
            "order.stop_price",
            "required for STOP and STOP_LIMIT, forbidden otherwise",
        ));
    }
    Ok(Order {
        client_order_id: id.clone(),
        strategy_id: spec.strategy_id.clone(),
        symbol: sym.clone(),
        side,
        size,
        limit_price,
    })
}

/// `RiskLimits` -> limits (output-only fields ignored); errors name
/// `limits.<field>`.
///
/// # Errors
/// An unparsable decimal or a limit outside its range.
pub fn limits_from_proto(l: &v1::RiskLimits) -> Result<Limits, RiskSvcError> {
    let f = |name: &str| format!("limits.{name}");
    let mut symbol_limits = BTreeMap::new();
    for (sym, s) in &l.symbol_limits {
        let g = |name: &str| format!("limits.symbol_limits[{sym}].{name}");
        symbol_limits.insert(
            sym.clone(),
            SymbolLimits {
                max_position_quantity: opt_dec(
                    &g("max_position_quantity"),
                    s.max_position_quantity.as_ref(),
                )?,
                max_position_notional: opt_dec(
                    &g("max_position_notional"),
                    s.max_position_notional.as_ref(),
                )?,
                max_order_quantity: opt_dec(
                    &g("max_order_quantity"),
                    s.max_order_quantity.as_ref(),
                )?,
            },
        );
    }
    let limits = Limits {
        max_order_notional: opt_dec(&f("max_order_notional"), l.max_order_notional.as_ref())?,
        max_order_quantity: opt_dec(&f("max_order_quantity"), l.max_order_quantity.as_ref())?,
        max_position_notional: opt_dec(
            &f("max_position_notional"),
            l.max_position_notional.as_ref(),
        )?,
        max_gross_exposure: opt_dec(&f("max_gross_exposure"), l.max_gross_exposure.as_ref())?,
        max_net_exposure: opt_dec(&f("max_net_exposure"), l.max_net_exposure.as_ref())?,
        max_gross_leverage: opt_dec(&f("max_gross_leverage"), l.max_gross_leverage.as_ref())?,
        max_net_leverage: opt_dec(&f("max_net_leverage"), l.max_net_leverage.as_ref())?,
        max_symbol_exposure: opt_dec(&f("max_symbol_exposure"), l.max_symbol_exposure.as_ref())?,
        max_daily_loss: opt_dec(&f("max_daily_loss"), l.max_daily_loss.as_ref())?,
        max_drawdown: opt_dec(&f("max_drawdown"), l.max_drawdown.as_ref())?,
        max_price_deviation: opt_dec(&f("max_price_deviation"), l.max_price_deviation.as_ref())?,
        max_orders_per_minute: (l.max_orders_per_minute > 0).then_some(l.max_orders_per_minute),
        symbol_limits,
        restricted_symbols: l
            .restricted_symbols
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
    };
    limits
        .validate()
        .map_err(|e| RiskSvcError::invalid(format!("limits.{}", e.field), e.reason))?;
    Ok(limits)
}

/// Limits with their version -> `RiskLimits`.
#[must_use]
pub fn limits_to_proto(r: &LimitsRecord) -> v1::RiskLimits {
    let l = &r.limits;
    v1::RiskLimits {
        max_order_notional: out(l.max_order_notional),
        max_order_quantity: out(l.max_order_quantity),
        max_position_notional: out(l.max_position_notional),
        max_gross_exposure: out(l.max_gross_exposure),
        max_net_exposure: out(l.max_net_exposure),
        max_gross_leverage: out(l.max_gross_leverage),
        max_net_leverage: out(l.max_net_leverage),
        max_symbol_exposure: out(l.max_symbol_exposure),
        max_daily_loss: out(l.max_daily_loss),
        max_drawdown: out(l.max_drawdown),
        max_price_deviation: out(l.max_price_deviation),
        max_orders_per_minute: l.max_orders_per_minute.unwrap_or(0),
        symbol_limits: l
            .symbol_limits
            .iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    v1::SymbolLimits {
                        max_position_quantity: out(s.max_position_quantity),
                        max_position_notional: out(s.max_position_notional),
                        max_order_quantity: out(s.max_order_quantity),
                    },
                )
            })
            .collect(),
        restricted_symbols: l.restricted_symbols.iter().cloned().collect(),
        version: r.version,
        updated_at: r.updated_at_ns.map(ts_to_proto),
        updated_by: r.updated_by.clone(),
    }
}

/// A breaker's `HaltCause`.
#[must_use]
pub fn cause_to_proto(c: HaltCause) -> v1::HaltCause {
    match c {
        HaltCause::Manual => v1::HaltCause::Manual,
        HaltCause::Breaker(Breaker::DailyLoss) => v1::HaltCause::DailyLoss,
        HaltCause::Breaker(Breaker::Drawdown) => v1::HaltCause::Drawdown,
        HaltCause::Breaker(Breaker::OrderRate) => v1::HaltCause::OrderRate,
        HaltCause::Breaker(Breaker::RejectRate) => v1::HaltCause::RejectRate,
        HaltCause::Breaker(Breaker::Accounting) => v1::HaltCause::Accounting,
    }
}

/// The halt in force (or none) -> `HaltState`.
#[must_use]
pub fn halt_to_proto(h: Option<&Halt>) -> v1::HaltState {
    h.map_or_else(v1::HaltState::default, |h| v1::HaltState {
        halted: true,
        cause: cause_to_proto(h.cause) as i32,
        reason: h.reason.clone(),
        by: h.by.clone(),
        since: Some(ts_to_proto(h.since_ns)),
    })
}

/// A violation -> `RiskViolation`.
#[must_use]
pub fn violation_to_proto(v: &Violation) -> v1::RiskViolation {
    v1::RiskViolation {
        limit: v.limit.clone(),
        message: v.message.clone(),
        limit_value: out(v.limit_value),
        observed_value: out(v.observed),
    }
}

/// The snapshot -> `GetSnapshotResponse`.
#[must_use]
pub fn snapshot_to_proto(
    s: &Snapshot,
    halt: Option<&Halt>,
    limits: &LimitsRecord,
) -> v1::GetSnapshotResponse {
    v1::GetSnapshotResponse {
        as_of: s.as_of_ns.map(ts_to_proto),
        equity: Some(s.equity.into()),
        peak_equity: Some(s.peak_equity.into()),
        drawdown: Some(s.drawdown.round_dp(8).into()),
        daily_pnl: Some(s.daily_pnl.into()),
        gross_exposure: Some(s.gross_exposure.into()),
        net_exposure: Some(s.net_exposure.into()),
        var_95: Some(s.var_95.into()),
        var_99: Some(s.var_99.into()),
        exposures: s
            .exposures
            .iter()
            .map(|e| v1::SymbolExposure {
                symbol: e.symbol.clone(),
                quantity: Some(e.quantity.into()),
                notional: Some(e.notional.into()),
                last_price: Some(e.last_price.into()),
                equity_fraction: e.equity_fraction,
            })
            .collect(),
        halt: Some(halt_to_proto(halt)),
        limits: Some(limits_to_proto(limits)),
        rejected_today: s.rejected_today,
        strategy_correlations: s
            .strategy_correlations
            .iter()
            .map(|(a, b, c)| v1::StrategyCorrelation {
                strategy_a: a.clone(),
                strategy_b: b.clone(),
                correlation: *c,
            })
            .collect(),
    }
}

/// A fill event -> the fold's input; errors name `fill.<field>`.
///
/// # Errors
/// A field missing or out of range.
pub fn fill_from_proto(f: &v1::Fill) -> Result<grodt_risk_rules::Input, RiskSvcError> {
    let side = match v1::Side::try_from(f.side) {
        Ok(v1::Side::Buy) => Side::Buy,
        Ok(v1::Side::Sell) => Side::Sell,
        _ => return Err(RiskSvcError::invalid("fill.side", "required")),
    };
    if f.symbol.is_empty() {
        return Err(RiskSvcError::invalid("fill.symbol", "required"));
    }
    let req = |field: &str, d: Option<&v1::Decimal>| {
        positive(field, d)?.ok_or_else(|| RiskSvcError::invalid(field, "required"))
    };
    Ok(grodt_risk_rules::Input::Fill {
        fill_id: f.fill_id.clone(),
        client_order_id: f.client_order_id.clone(),
        strategy_id: f.strategy_id.clone(),
        symbol: f.symbol.clone(),
        side,
        quantity: req("fill.quantity", f.quantity.as_ref())?,
        price: req("fill.price", f.price.as_ref())?,
        commission: opt_dec("fill.commission", f.commission.as_ref())?.unwrap_or_default(),
        at_ns: ts_from_proto("fill.filled_at", f.filled_at.as_ref())?,
    })
}

/// A bar -> the fold's input (its close and time); errors name `bar.<field>`.
///
/// # Errors
/// A field missing or out of range.
pub fn bar_from_proto(b: &v1::Bar) -> Result<grodt_risk_rules::Input, RiskSvcError> {
    if b.symbol.is_empty() {
        return Err(RiskSvcError::invalid("bar.symbol", "required"));
    }
    Ok(grodt_risk_rules::Input::Bar {
        symbol: b.symbol.clone(),
        close: positive("bar.close", b.close.as_ref())?
            .ok_or_else(|| RiskSvcError::invalid("bar.close", "required"))?,
        at_ns: ts_from_proto("bar.timestamp", b.timestamp.as_ref())?,
    })
}
