//! Protobuf <-> domain. `TryFrom` destructures every field of the request
//! messages, so a new proto field breaks the build here instead of being
//! silently dropped; errors name the field (`spec.costs.slippage.fixed_bps.bps`).
//! Cost options the engine cannot honour exactly are refused, never approximated.

use std::collections::BTreeMap;

use grodt_analytics::MetricsConfig;
use grodt_core::Decimal;
use grodt_core::error::{Classify, ErrorKind};
use grodt_data::{DatasetId, TimeRange};
use grodt_proto::convert::{datetime_to_timestamp, timestamp_to_datetime};
use grodt_proto::v1;
use grodt_sim::{BacktestConfig, CommissionSpec, DayCount, LatencySpec, LimitFill, SlippageSpec};
use rust_decimal::prelude::ToPrimitive;

use grodt_backtest::{Outcome, RunSpec};
use grodt_strategies::registry::{self, RegistryError};

/// A request field that is missing, malformed or not supported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    /// Dotted path of the field (`spec.initial_cash`).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl Classify for SpecError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}

fn err(field: &str, reason: impl Into<String>) -> SpecError {
    SpecError {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn dec(field: &str, value: Option<&v1::Decimal>) -> Result<Option<Decimal>, SpecError> {
    value
        .map(|v| Decimal::try_from(v).map_err(|e| err(field, e.to_string())))
        .transpose()
}

fn required(field: &str, value: Option<&v1::Decimal>) -> Result<Decimal, SpecError> {
    dec(field, value)?.ok_or_else(|| err(field, "is required"))
}

fn non_negative(field: &str, value: Option<&v1::Decimal>) -> Result<Option<Decimal>, SpecError> {
    match dec(field, value)? {
        Some(d) if d.is_sign_negative() && !d.is_zero() => Err(err(field, "must be >= 0")),
        other => Ok(other),
    }
}

fn whole_bps(field: &str, d: Decimal) -> Result<u32, SpecError> {
    if d.fract().is_zero() {
        d.to_u32()
            .ok_or_else(|| err(field, "must be a whole number of basis points >= 0"))
    } else {
        Err(err(field, "the engine takes whole basis points"))
    }
}

fn duration_nanos(field: &str, d: &prost_types::Duration) -> Result<i64, SpecError> {
    let prost_types::Duration { seconds, nanos } = *d;
    if seconds < 0 || nanos < 0 {
        return Err(err(field, "must be >= 0"));
    }
    seconds
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(i64::from(nanos)))
        .ok_or_else(|| err(field, "too long"))
}

/// What a backtest request asks for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The datasets, one per instrument; the first is traded.
    pub datasets: Vec<DatasetId>,
    /// The time range to load.
    pub range: TimeRange,
    /// Engine, strategy and metrics settings.
    pub spec: RunSpec,
    /// Fractional quantities.
    pub fractional: bool,
    /// Per-symbol annual borrow rates.
    pub symbol_borrow_rates: BTreeMap<String, Decimal>,
}

fn slippage(m: v1::SlippageModel) -> Result<SlippageSpec, SpecError> {
    use v1::slippage_model::Model;
    let v1::SlippageModel { model } = m;
    Ok(match model {
        None => SlippageSpec::None,
        Some(Model::FixedBps(v1::FixedBpsSlippage { bps })) => {
            const F: &str = "spec.costs.slippage.fixed_bps.bps";
            SlippageSpec::FixedBps {
                bps: whole_bps(F, required(F, bps.as_ref())?)?,
            }
        }
        Some(Model::VolumeShare(v1::VolumeShareSlippage { impact_coefficient })) => {
            const F: &str = "spec.costs.slippage.volume_share.impact_coefficient";
            let c = non_negative(F, impact_coefficient.as_ref())?
                .ok_or_else(|| err(F, "is required"))?;
            SlippageSpec::VolumeShare {
                price_impact: c.to_f64().ok_or_else(|| err(F, "out of range"))?,
            }
        }
        Some(Model::Spread(v1::SpreadSlippage { spread_bps })) => {
            const F: &str = "spec.costs.slippage.spread.spread_bps";
            SlippageSpec::HalfSpread {
                spread_bps: whole_bps(F, required(F, spread_bps.as_ref())?)?,
            }
        }
    })
}

fn commission(m: v1::CommissionModel) -> Result<CommissionSpec, SpecError> {
    use v1::commission_model::Model;
    let v1::CommissionModel { model } = m;
    Ok(match model {
        None => CommissionSpec::None,
        Some(Model::PerShare(v1::PerShareCommission {
            per_share,
            minimum,
            maximum_fraction,
        })) => {
            const F: &str = "spec.costs.commission.per_share";
            if maximum_fraction.is_some() {
                return Err(err(
                    "spec.costs.commission.per_share.maximum_fraction",
                    "a per-order cap is not supported by the engine",
                ));
            }
            CommissionSpec::PerShare {
                rate: non_negative(F, per_share.as_ref())?.ok_or_else(|| {
                    err("spec.costs.commission.per_share.per_share", "is required")
                })?,
                minimum: non_negative("spec.costs.commission.per_share.minimum", minimum.as_ref())?
                    .unwrap_or_default(),
            }
        }
        Some(Model::Percentage(v1::PercentageCommission { rate, minimum })) => {
            const F: &str = "spec.costs.commission.percentage.rate";
            let minimum =
                non_negative("spec.costs.commission.percentage.minimum", minimum.as_ref())?;
            if minimum.is_some_and(|m| !m.is_zero()) {
                return Err(err(
                    "spec.costs.commission.percentage.minimum",
                    "a minimum on percentage commission is not supported by the engine",
                ));
            }
            CommissionSpec::Percentage {
                rate: non_negative(F, rate.as_ref())?.ok_or_else(|| err(F, "is required"))?,
            }
        }
        Some(Model::Tiered(v1::TieredCommission { tiers: _ })) => {
            return Err(err(
                "spec.costs.commission.tiered",
                "notional-fraction tiers are not supported: the engine tiers per-share rates",
            ));
        }
        Some(Model::MakerTaker(v1::MakerTakerCommission {
            maker_rate,
            taker_rate,
        })) => {
            let maker = required(
                "spec.costs.commission.maker_taker.maker_rate",
                maker_rate.as_ref(),
            )?;
            if maker <= Decimal::new(-1, 2) {
                return Err(err(
                    "spec.costs.commission.maker_taker.maker_rate",
                    "must be > -0.01",
                ));
            }
            const T: &str = "spec.costs.commission.maker_taker.taker_rate";
            CommissionSpec::MakerTaker {
                maker,
                taker: non_negative(T, taker_rate.as_ref())?
                    .ok_or_else(|| err(T, "is required"))?,
            }
        }
    })
}

fn latency(m: v1::LatencyModel) -> Result<LatencySpec, SpecError> {
    use v1::latency_model::Model;
    let v1::LatencyModel { model } = m;
    match model {
        None => Ok(LatencySpec::default()),
        Some(Model::Fixed(d)) => Ok(LatencySpec::Fixed {
            nanos: duration_nanos("spec.costs.latency.fixed", &d)?,
        }),
        Some(Model::Random(v1::RandomLatency {
            median: _,
            sigma: _,
            max: _,
        })) => Err(err(
            "spec.costs.latency.random",
            "log-normal latency is not supported: the engine draws uniform latency",
        )),
    }
}

impl TryFrom<v1::BacktestSpec> for Job {
    type Error = SpecError;

    fn try_from(spec: v1::BacktestSpec) -> Result<Self, SpecError> {
        let v1::BacktestSpec {
            dataset_ids,
            timeframe,
            range,
            strategy_name,
            params,
            initial_cash,
            currency: _, // informational: the engine keeps one cash balance.
            costs,
            seed,
            periods_per_year,
            risk_free_rate,
        } = spec;
        if dataset_ids.is_empty() || dataset_ids.len() > 20 {
            return Err(err("spec.dataset_ids", "1 to 20 dataset ids are required"));
        }
        let datasets = dataset_ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                parse_dataset_id(id).map_err(|r| err(&format!("spec.dataset_ids[{i}]"), r))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if timeframe != v1::Timeframe::Unspecified as i32 {
            return Err(err(
                "spec.timeframe",
                "aggregation on load is not supported yet; leave it UNSPECIFIED",
            ));
        }
        let range = match range {
            None => TimeRange::ALL,
            Some(v1::TimeRange { start, end }) => {
                let ns = |field: &str, t: Option<prost_types::Timestamp>, default: i64| {
                    t.map_or(Ok(default), |t| {
                        timestamp_to_datetime(&t)
                            .map_err(|e| err(field, e.to_string()))?
                            .timestamp_nanos_opt()
                            .ok_or_else(|| err(field, "outside the nanosecond range"))
                    })
                };
                let r = TimeRange {
                    start: ns("spec.range.start", start, i64::MIN)?,
                    end: ns("spec.range.end", end, i64::MAX)?,
                };
                if r.end <= r.start {
                    return Err(err("spec.range.end", "must be after spec.range.start"));
                }
                r
            }
        };
        let params: BTreeMap<String, String> = params.into_iter().collect();
        let strategy = registry::parse(&strategy_name, &params).map_err(|e| {
            let field = match (&e, e.param()) {
                (RegistryError::UnknownStrategy { .. }, _) => "spec.strategy_name".to_owned(),
                (_, Some(param)) => format!("spec.params[{param}]"),
                (_, None) => "spec.params".to_owned(),
            };
            err(&field, e.to_string())
        })?;
        let starting_cash = required("spec.initial_cash", initial_cash.as_ref())?;
        if starting_cash <= Decimal::ZERO {
            return Err(err("spec.initial_cash", "must be > 0"));
        }
        let mut config = BacktestConfig {
            starting_cash,
            seed,
            ..BacktestConfig::default()
        };
        let mut fractional = false;
        let mut symbol_borrow_rates = BTreeMap::new();
        if let Some(v1::CostModel {
            slippage: s,
            commission: c,
            latency: l,
            fill,
            borrow,
            financing,
        }) = costs
        {
            config.slippage = s.map(slippage).transpose()?.unwrap_or_default();
            config.commission = c.map(commission).transpose()?.unwrap_or_default();
            config.latency = l.map(latency).transpose()?.unwrap_or_default();
            if let Some(v1::FillModel {
                limit_fill_on_touch,
                max_volume_participation,
                allow_fractional,
            }) = fill
            {
                if limit_fill_on_touch {
                    config.limit_fill = LimitFill::Touch;
                }
                const F: &str = "spec.costs.fill.max_volume_participation";
                config.max_participation = dec(F, max_volume_participation.as_ref())?;
                if config
                    .max_participation
                    .is_some_and(|p| p <= Decimal::ZERO || p > Decimal::ONE)
                {
                    return Err(err(F, "must be in (0, 1]"));
                }
                fractional = allow_fractional;
            }
            if let Some(v1::BorrowModel {
                default_annual_rate,
                symbol_rates,
            }) = borrow
            {
                config.borrow_rate = non_negative(
                    "spec.costs.borrow.default_annual_rate",
                    default_annual_rate.as_ref(),
                )?
                .unwrap_or_default();
                for (symbol, rate) in symbol_rates {
                    let field = format!("spec.costs.borrow.symbol_rates[{symbol}]");
                    let rate = non_negative(&field, Some(&rate))?.unwrap_or_default();
                    symbol_borrow_rates.insert(symbol, rate);
                }
            }
            if let Some(v1::FinancingModel {
                annual_rate,
                day_count,
            }) = financing
            {
                config.financing_rate =
                    non_negative("spec.costs.financing.annual_rate", annual_rate.as_ref())?
                        .unwrap_or_default();
                config.financing_day_count = match v1::DayCount::try_from(day_count) {
                    Ok(v1::DayCount::Unspecified | v1::DayCount::Act365) => DayCount::Act365,
                    Ok(v1::DayCount::Act360) => DayCount::Act360,
                    Err(_) => {
                        return Err(err(
                            "spec.costs.financing.day_count",
                            format!("unknown value {day_count}"),
                        ));
                    }
                };
            }
        }
        config
            .validate()
            .map_err(|e| err("spec.costs", e.to_string()))?;
        let mut metrics = MetricsConfig {
            periods_per_year: if periods_per_year == 0 {
                252.0
            } else {
                f64::from(periods_per_year)
            },
            ..MetricsConfig::equities_daily()
        };
        if let Some(rf) = non_negative("spec.risk_free_rate", risk_free_rate.as_ref())? {
            metrics = metrics.with_annual_risk_free(
                rf.to_f64()
                    .ok_or_else(|| err("spec.risk_free_rate", "out of range"))?,
            );
        }
        Ok(Self {
            datasets,
            range,
            spec: RunSpec {
                config,
                strategy,
                metrics,
            },
            fractional,
            symbol_borrow_rates,
        })
    }
}

/// `source/symbol/timeframe`, as `DatasetId` displays it.
pub fn parse_dataset_id(text: &str) -> Result<DatasetId, String> {
    let parts: Vec<&str> = text.split('/').collect();
    let [source, symbol, timeframe] = parts.as_slice() else {
        return Err(format!("{text:?} is not source/symbol/timeframe"));
    };
    DatasetId::new(source, symbol, timeframe).map_err(|e| e.to_string())
}

fn wire(d: Decimal) -> Option<v1::Decimal> {
    Some(v1::Decimal::from(d.normalize()))
}

fn ts(ns: i64) -> Option<prost_types::Timestamp> {
    Some(datetime_to_timestamp(
        chrono::DateTime::from_timestamp_nanos(ns),
    ))
}

fn side(s: grodt_core::Side) -> i32 {
    match s {
        grodt_core::Side::Buy => v1::Side::Buy as i32,
        grodt_core::Side::Sell => v1::Side::Sell as i32,
    }
}

/// What parts of a result to include.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Detail {
    /// Round trips.
    pub trades: bool,
    /// Fills.
    pub fills: bool,
    /// Equity points.
    pub equity_curve: bool,
}

impl From<Option<v1::ResultDetail>> for Detail {
    fn from(d: Option<v1::ResultDetail>) -> Self {
        let v1::ResultDetail {
            trades,
            fills,
            equity_curve,
        } = d.unwrap_or_default();
        Self {
            trades,
            fills,
            equity_curve,
        }
    }
}

/// The wire result of a finished run (status SUCCEEDED), with every part.
pub fn result_to_proto(
    symbols: &[String],
    spec: &RunSpec,
    outcome: &Outcome,
) -> v1::BacktestResult {
    let r = &outcome.result;
    let m = &outcome.metrics;
    let c = &r.costs;
    let commission = c.commission - c.rebates;
    let total = commission + c.slippage + c.borrow + c.financing;
    let symbol = |i: usize| symbols.get(i).cloned().unwrap_or_default();
    let closed: Vec<&grodt_sim::Trade> = r.trades.iter().filter(|t| t.exit_ts.is_some()).collect();
    let f = |x: Option<f64>| x.unwrap_or(f64::NAN);
    let dec_of = |x: Option<f64>| {
        x.and_then(Decimal::from_f64_retain)
            .map(|d| d.round_dp(8))
            .and_then(wire)
    };
    let initial = spec.config.starting_cash;
    let metrics = v1::Metrics {
        initial_equity: wire(initial),
        final_equity: wire(r.last.equity),
        net_profit: wire(r.last.equity - initial),
        total_return: m.total_return,
        cagr: m.cagr,
        annual_volatility: f(m.annual_volatility),
        sharpe: f(m.sharpe),
        sortino: f(m.sortino),
        calmar: f(m.calmar),
        max_drawdown: m.drawdown.max_drawdown,
        max_drawdown_duration: Some(prost_types::Duration {
            seconds: m.drawdown.longest_duration_nanos / 1_000_000_000,
            nanos: i32::try_from(m.drawdown.longest_duration_nanos % 1_000_000_000).unwrap_or(0),
        }),
        var_95_historical: m.tail.historical_95.var,
        var_95_parametric: m.tail.normal_95.map_or(f64::NAN, |v| v.var),
        var_99_historical: m.tail.historical_99.var,
        var_99_parametric: m.tail.normal_99.map_or(f64::NAN, |v| v.var),
        cvar_95_historical: m.tail.historical_95.cvar,
        cvar_95_parametric: m.tail.normal_95.map_or(f64::NAN, |v| v.cvar),
        cvar_99_historical: m.tail.historical_99.cvar,
        cvar_99_parametric: m.tail.normal_99.map_or(f64::NAN, |v| v.cvar),
        win_rate: f(m.trades.win_rate),
        profit_factor: f(m.trades.profit_factor),
        average_win: dec_of(m.trades.avg_win),
        average_loss: dec_of(m.trades.avg_loss),
        expectancy: dec_of(m.trades.expectancy),
        time_in_market: f(m.exposure),
        turnover: m.turnover,
        trade_count: u32::try_from(r.trades.len()).unwrap_or(u32::MAX),
        closed_trade_count: u32::try_from(closed.len()).unwrap_or(u32::MAX),
        fill_count: u32::try_from(r.fills.len()).unwrap_or(u32::MAX),
        bar_count: r.bars,
        // Whole periods on the wire; the metrics used the exact value.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "validated positive and finite"
        )]
        periods_per_year: spec.metrics.periods_per_year.round() as u32,
    };
    v1::BacktestResult {
        status: v1::BacktestStatus::Succeeded as i32,
        metrics: Some(metrics),
        costs: Some(v1::CostBreakdown {
            commission: wire(commission),
            slippage: wire(c.slippage),
            borrow: wire(c.borrow),
            financing: wire(c.financing),
            total: wire(total),
        }),
        trades: r
            .trades
            .iter()
            .enumerate()
            .map(|(i, t)| v1::Trade {
                trade_id: i.to_string(),
                symbol: symbol(t.instrument),
                direction: side(t.direction),
                quantity: wire(t.peak_quantity),
                entry_time: ts(t.entry_ts),
                entry_price: wire(t.entry_price),
                exit_time: t.exit_ts.and_then(ts),
                exit_price: t.exit_price.and_then(wire),
                open: t.exit_ts.is_none(),
                gross_pnl: wire(t.gross_pnl),
                costs: wire(t.fees),
                net_pnl: wire(t.net_pnl),
                mae: wire(t.mae),
                mfe: wire(t.mfe),
                bars_held: u32::try_from(t.bars_held).unwrap_or(u32::MAX),
            })
            .collect(),
        fills: r
            .fills
            .iter()
            .map(|fl| v1::Fill {
                fill_id: fl.seq.to_string(),
                order_id: fl.order_id.0.to_string(),
                client_order_id: String::new(),
                strategy_id: String::new(),
                symbol: symbol(fl.instrument),
                side: side(fl.side),
                quantity: wire(fl.qty.to_decimal()),
                price: wire(fl.price.to_decimal()),
                commission: wire(fl.commission - fl.rebate),
                slippage: wire(fl.slippage),
                liquidity: match fl.liquidity {
                    grodt_core::Liquidity::Maker => v1::LiquiditySide::Maker as i32,
                    grodt_core::Liquidity::Taker => v1::LiquiditySide::Taker as i32,
                },
                filled_at: ts(fl.ts),
            })
            .collect(),
        equity_curve: {
            let mut peak = f64::MIN;
            r.equity
                .iter()
                .map(|p| {
                    let e = p.equity.to_f64().unwrap_or(f64::NAN);
                    peak = peak.max(e);
                    v1::EquityPoint {
                        timestamp: ts(p.ts),
                        equity: wire(p.equity),
                        cash: None,
                        position_value: None,
                        drawdown: if peak > 0.0 { (e - peak) / peak } else { 0.0 },
                    }
                })
                .collect()
        },
        engine_version: env!("CARGO_PKG_VERSION").to_owned(),
        ..v1::BacktestResult::default()
    }
}

/// Keeps only the parts `detail` asks for.
pub fn trim(mut result: v1::BacktestResult, detail: Detail) -> v1::BacktestResult {
    if !detail.trades {
        result.trades.clear();
    }
    if !detail.fills {
        result.fills.clear();
    }
    if !detail.equity_curve {
        result.equity_curve.clear();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Option<v1::Decimal> {
        Some(v1::Decimal {
            value: text.to_owned(),
        })
    }

    fn spec() -> v1::BacktestSpec {
        v1::BacktestSpec {
            dataset_ids: vec!["lean/SPY/1d".into()],
            strategy_name: "sma_cross".into(),
            initial_cash: d("50000"),
            ..v1::BacktestSpec::default()
        }
    }

    #[test]
    fn every_cost_field_reaches_the_engine_config() {
        let job = Job::try_from(v1::BacktestSpec {
            seed: 7,
            periods_per_year: 365,
            range: Some(v1::TimeRange {
                start: Some(prost_types::Timestamp {
                    seconds: 10,
                    nanos: 0,
                }),
                end: None,
            }),
            costs: Some(v1::CostModel {
                slippage: Some(v1::SlippageModel {
                    model: Some(v1::slippage_model::Model::Spread(v1::SpreadSlippage {
                        spread_bps: d("4"),
                    })),
                }),
                commission: Some(v1::CommissionModel {
                    model: Some(v1::commission_model::Model::PerShare(
                        v1::PerShareCommission {
                            per_share: d("0.005"),
                            minimum: d("1"),
                            maximum_fraction: None,
                        },
                    )),
                }),
                latency: Some(v1::LatencyModel {
                    model: Some(v1::latency_model::Model::Fixed(prost_types::Duration {
                        seconds: 1,
                        nanos: 5,
                    })),
                }),
                fill: Some(v1::FillModel {
                    limit_fill_on_touch: true,
                    max_volume_participation: d("0.1"),
                    allow_fractional: true,
                }),
                borrow: Some(v1::BorrowModel {
                    default_annual_rate: d("0.02"),
                    symbol_rates: [(
                        "SPY".to_owned(),
                        v1::Decimal {
                            value: "0.05".into(),
                        },
                    )]
                    .into_iter()
                    .collect(),
                }),
                financing: Some(v1::FinancingModel {
                    annual_rate: d("0.04"),
                    day_count: v1::DayCount::Act360 as i32,
                }),
            }),
            ..spec()
        })
        .unwrap();
        let c = &job.spec.config;
        assert_eq!(c.starting_cash, Decimal::from(50_000));
        assert_eq!(c.seed, 7);
        assert_eq!(c.slippage, SlippageSpec::HalfSpread { spread_bps: 4 });
        assert_eq!(
            c.commission,
            CommissionSpec::PerShare {
                rate: Decimal::new(5, 3),
                minimum: Decimal::ONE
            }
        );
        assert_eq!(
            c.latency,
            LatencySpec::Fixed {
                nanos: 1_000_000_005
            }
        );
        assert_eq!(c.limit_fill, LimitFill::Touch);
        assert_eq!(c.max_participation, Some(Decimal::new(1, 1)));
        assert_eq!(c.borrow_rate, Decimal::new(2, 2));
        assert_eq!(c.financing_rate, Decimal::new(4, 2));
        assert_eq!(c.financing_day_count, DayCount::Act360);
        assert!(job.fractional);
        assert_eq!(job.symbol_borrow_rates["SPY"], Decimal::new(5, 2));
        assert_eq!(job.range.start, 10_000_000_000);
        assert_eq!(job.range.end, i64::MAX);
        assert!((job.spec.metrics.periods_per_year - 365.0).abs() < f64::EPSILON);
    }

    #[test]
    fn unsupported_options_are_refused_naming_the_field() {
        let with_costs = |costs: v1::CostModel| v1::BacktestSpec {
            costs: Some(costs),
            ..spec()
        };
        let cases = [
            (
                with_costs(v1::CostModel {
                    latency: Some(v1::LatencyModel {
                        model: Some(v1::latency_model::Model::Random(
                            v1::RandomLatency::default(),
                        )),
                    }),
                    ..v1::CostModel::default()
                }),
                "spec.costs.latency.random",
            ),
            (
                with_costs(v1::CostModel {
                    commission: Some(v1::CommissionModel {
                        model: Some(v1::commission_model::Model::Tiered(
                            v1::TieredCommission::default(),
                        )),
                    }),
                    ..v1::CostModel::default()
                }),
                "spec.costs.commission.tiered",
            ),
            (
                with_costs(v1::CostModel {
                    fill: Some(v1::FillModel {
                        max_volume_participation: d("1.5"),
                        ..v1::FillModel::default()
                    }),
                    ..v1::CostModel::default()
                }),
                "spec.costs.fill.max_volume_participation",
            ),
            (
                v1::BacktestSpec {
                    timeframe: v1::Timeframe::Hour1 as i32,
                    ..spec()
                },
                "spec.timeframe",
            ),
            (
                v1::BacktestSpec {
                    dataset_ids: vec![],
                    ..spec()
                },
                "spec.dataset_ids",
            ),
        ];
        for (spec, field) in cases {
            let e = Job::try_from(spec).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }
}
