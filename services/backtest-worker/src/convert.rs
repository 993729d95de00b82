//! Protobuf <-> domain. `TryFrom` destructures every field of the request
//! messages, so a new proto field breaks the build here instead of being
//! silently dropped; errors name the field (`spec.costs.slippage.fixed_bps.bps`).
//!
//! The cost and fill vocabulary maps one to one: every `CostModel` option has
//! exactly one engine setting ([`cost_model`] one way, [`cost_model_to_proto`]
//! the other, and a round-trip test over every variant), so no wire option is
//! refused for want of an engine model. Only values outside a field's range
//! are refused (negative rates, fractional basis points, a cap below the median).

use std::collections::BTreeMap;

use grodt_analytics::{AssetClass, MetricsConfig};
use grodt_core::Decimal;
use grodt_core::error::{Classify, ErrorKind};
use grodt_data::{DatasetId, TimeRange};
use grodt_proto::convert::{datetime_to_timestamp, timestamp_to_datetime};
use grodt_proto::v1;
use grodt_sim::{
    BacktestConfig, CommissionSpec, DayCount, FillTiming, LatencySpec, LimitFill, SlippageSpec,
};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};

use grodt_backtest::{Outcome, RegimeBreakdown, RegimeLabel, RunSpec};
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

/// Basis points as the engine takes them: 0..=10,000 with at most 4 decimals
/// (`BacktestConfig::validate` holds the same bounds).
fn basis_points(field: &str, d: Decimal) -> Result<Decimal, SpecError> {
    if d < Decimal::ZERO || d > Decimal::from(10_000) || d.normalize().scale() > 4 {
        return Err(err(
            field,
            "must be 0..=10000 basis points with at most 4 decimals",
        ));
    }
    Ok(d.normalize())
}

fn required_duration(field: &str, d: Option<&prost_types::Duration>) -> Result<i64, SpecError> {
    duration_nanos(field, d.ok_or_else(|| err(field, "is required"))?)
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
    /// When `spec.periods_per_year` was 0: the calendar to infer it from the
    /// bars with ([`Job::resolve_metrics`]); `None` when it was given.
    pub infer_periods: Option<AssetClass>,
    /// `spec.risk_free_rate`, annual, applied per period once periods are known.
    pub annual_risk_free: Option<f64>,
    /// `spec.price_noise`: (sigma, seed) of the noisy copy to run on.
    pub noise: Option<(f64, u64)>,
    /// `spec.warmup_bars`: bars before `range.start` loaded and fed without
    /// trading (`spec.config.trade_from` is `range.start` then).
    pub warmup_bars: u32,
}

impl Job {
    /// Sets the metrics' periods per year (and the per-period risk-free rate)
    /// from the traded series' bar timestamps when the request left it 0.
    pub fn resolve_metrics(&mut self, bar_timestamps: &[i64]) {
        if let Some(class) = self.infer_periods {
            self.spec.metrics = metrics_config(
                grodt_analytics::infer_periods_per_year(bar_timestamps, class),
                self.annual_risk_free,
            );
        }
    }
}

fn metrics_config(periods_per_year: f64, annual_risk_free: Option<f64>) -> MetricsConfig {
    let metrics = MetricsConfig {
        periods_per_year,
        ..MetricsConfig::equities_daily()
    };
    match annual_risk_free {
        Some(rf) => metrics.with_annual_risk_free(rf),
        None => metrics,
    }
}

/// The annualisation calendar of a wire asset class (UNSPECIFIED = equity).
pub fn asset_class(class: v1::AssetClass) -> AssetClass {
    match class {
        v1::AssetClass::CryptoSpot | v1::AssetClass::CryptoPerpetual => AssetClass::Crypto,
        v1::AssetClass::Fx => AssetClass::Fx,
        v1::AssetClass::Future => AssetClass::Futures,
        v1::AssetClass::Unspecified
        | v1::AssetClass::Equity
        | v1::AssetClass::Etf
        | v1::AssetClass::Option
        | v1::AssetClass::Index => AssetClass::Equity,
    }
}

fn slippage(m: v1::SlippageModel) -> Result<SlippageSpec, SpecError> {
    use v1::slippage_model::Model;
    let v1::SlippageModel { model } = m;
    Ok(match model {
        None => SlippageSpec::None,
        Some(Model::FixedBps(v1::FixedBpsSlippage { bps })) => {
            const F: &str = "spec.costs.slippage.fixed_bps.bps";
            SlippageSpec::FixedBps {
                bps: basis_points(F, required(F, bps.as_ref())?)?,
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
                spread_bps: basis_points(F, required(F, spread_bps.as_ref())?)?,
            }
        }
    })
}

fn tiers(
    field: &str,
    tiers: Vec<(Option<v1::Decimal>, Option<v1::Decimal>)>,
    names: (&str, &str),
) -> Result<Vec<(Decimal, Decimal)>, SpecError> {
    if tiers.is_empty() || tiers.len() > 32 {
        return Err(err(field, "1 to 32 tiers are required"));
    }
    let out = tiers
        .into_iter()
        .enumerate()
        .map(|(i, (from, rate))| {
            let f = format!("{field}[{i}].{}", names.0);
            let r = format!("{field}[{i}].{}", names.1);
            Ok((
                non_negative(&f, from.as_ref())?.ok_or_else(|| err(&f, "is required"))?,
                non_negative(&r, rate.as_ref())?.ok_or_else(|| err(&r, "is required"))?,
            ))
        })
        .collect::<Result<Vec<_>, SpecError>>()?;
    if out.windows(2).any(|w| w[1].0 <= w[0].0) {
        return Err(err(field, "thresholds must strictly increase"));
    }
    Ok(out)
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
            const F: &str = "spec.costs.commission.per_share.per_share";
            let rate = non_negative(F, per_share.as_ref())?.ok_or_else(|| err(F, "is required"))?;
            let minimum =
                non_negative("spec.costs.commission.per_share.minimum", minimum.as_ref())?
                    .unwrap_or_default();
            match non_negative(
                "spec.costs.commission.per_share.maximum_fraction",
                maximum_fraction.as_ref(),
            )? {
                None => CommissionSpec::PerShare { rate, minimum },
                Some(maximum_fraction) => CommissionSpec::PerShareCapped {
                    rate,
                    minimum,
                    maximum_fraction,
                },
            }
        }
        Some(Model::Percentage(v1::PercentageCommission { rate, minimum })) => {
            const F: &str = "spec.costs.commission.percentage.rate";
            let rate = non_negative(F, rate.as_ref())?.ok_or_else(|| err(F, "is required"))?;
            match non_negative("spec.costs.commission.percentage.minimum", minimum.as_ref())? {
                None => CommissionSpec::Percentage { rate },
                Some(minimum) => CommissionSpec::PercentageWithMinimum { rate, minimum },
            }
        }
        Some(Model::Tiered(v1::TieredCommission { tiers: t })) => {
            const F: &str = "spec.costs.commission.tiered.tiers";
            let t = tiers(
                F,
                t.into_iter()
                    .map(
                        |v1::CommissionTier {
                             monthly_volume_from,
                             rate,
                         }| (monthly_volume_from, rate),
                    )
                    .collect(),
                ("monthly_volume_from", "rate"),
            )?;
            if !t[0].0.is_zero() {
                return Err(err(F, "the first tier must start at 0"));
            }
            CommissionSpec::TieredNotional { tiers: t }
        }
        Some(Model::TieredPerShare(v1::TieredPerShareCommission { tiers: t, minimum })) => {
            CommissionSpec::TieredMonthly {
                tiers: tiers(
                    "spec.costs.commission.tiered_per_share.tiers",
                    t.into_iter()
                        .map(
                            |v1::PerShareTier {
                                 monthly_quantity_from,
                                 per_share,
                             }| (monthly_quantity_from, per_share),
                        )
                        .collect(),
                    ("monthly_quantity_from", "per_share"),
                )?,
                minimum: non_negative(
                    "spec.costs.commission.tiered_per_share.minimum",
                    minimum.as_ref(),
                )?
                .unwrap_or_default(),
            }
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
        Some(Model::Uniform(v1::UniformLatency { min, max })) => {
            let min = required_duration("spec.costs.latency.uniform.min", min.as_ref())?;
            let max = required_duration("spec.costs.latency.uniform.max", max.as_ref())?;
            if max < min {
                return Err(err("spec.costs.latency.uniform.max", "must be >= min"));
            }
            Ok(LatencySpec::Uniform { min, max })
        }
        Some(Model::Random(v1::RandomLatency { median, sigma, max })) => {
            const M: &str = "spec.costs.latency.random.median";
            const S: &str = "spec.costs.latency.random.sigma";
            const X: &str = "spec.costs.latency.random.max";
            let median = required_duration(M, median.as_ref())?;
            if median <= 0 {
                return Err(err(M, "must be > 0"));
            }
            if !(sigma.is_finite() && sigma >= 0.0) {
                return Err(err(S, "must be finite and >= 0"));
            }
            let sigma = Decimal::from_f64(sigma).ok_or_else(|| err(S, "out of range"))?;
            let max = max.map(|d| duration_nanos(X, &d)).transpose()?;
            if max.is_some_and(|x| x < median) {
                return Err(err(X, "must be >= the median"));
            }
            Ok(LatencySpec::LogNormal { median, sigma, max })
        }
    }
}

fn day_count(field: &str, value: i32, unspecified: DayCount) -> Result<DayCount, SpecError> {
    match v1::DayCount::try_from(value) {
        Ok(v1::DayCount::Unspecified) => Ok(unspecified),
        Ok(v1::DayCount::Act365) => Ok(DayCount::Act365),
        Ok(v1::DayCount::Act360) => Ok(DayCount::Act360),
        Err(_) => Err(err(field, format!("unknown value {value}"))),
    }
}

/// The engine's cost and fill settings of a wire `CostModel` (absent = the
/// engine's defaults), with the worker-level parts: fractional quantities and
/// per-symbol borrow rates.
///
/// # Errors
/// A value outside its field's range, naming the field.
pub fn cost_model(
    costs: v1::CostModel,
    config: &mut BacktestConfig,
) -> Result<(bool, BTreeMap<String, Decimal>), SpecError> {
    let v1::CostModel {
        slippage: s,
        commission: c,
        latency: l,
        fill,
        borrow,
        financing,
        cost_decimal_places,
    } = costs;
    let mut fractional = false;
    let mut symbol_borrow_rates = BTreeMap::new();
    config.slippage = s.map(slippage).transpose()?.unwrap_or_default();
    config.commission = c.map(commission).transpose()?.unwrap_or_default();
    config.latency = l.map(latency).transpose()?.unwrap_or_default();
    if let Some(v1::FillModel {
        limit_fill_on_touch,
        max_volume_participation,
        allow_fractional,
        fill_at_decision_bar_close,
        disable_margin_check,
    }) = fill
    {
        config.limit_fill = if limit_fill_on_touch {
            LimitFill::Touch
        } else {
            LimitFill::TradeThrough
        };
        const F: &str = "spec.costs.fill.max_volume_participation";
        config.max_participation = dec(F, max_volume_participation.as_ref())?;
        if config
            .max_participation
            .is_some_and(|p| p <= Decimal::ZERO || p > Decimal::ONE)
        {
            return Err(err(F, "must be in (0, 1]"));
        }
        fractional = allow_fractional;
        config.fill_timing = if fill_at_decision_bar_close {
            FillTiming::SameBarClose
        } else {
            FillTiming::NextOpen
        };
        config.enforce_margin = !disable_margin_check;
    }
    if let Some(v1::BorrowModel {
        default_annual_rate,
        symbol_rates,
        day_count: dc,
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
        config.borrow_day_count = day_count("spec.costs.borrow.day_count", dc, DayCount::Act360)?;
    }
    if let Some(v1::FinancingModel {
        annual_rate,
        day_count: dc,
    }) = financing
    {
        config.financing_rate =
            non_negative("spec.costs.financing.annual_rate", annual_rate.as_ref())?
                .unwrap_or_default();
        config.financing_day_count =
            day_count("spec.costs.financing.day_count", dc, DayCount::Act365)?;
    }
    if let Some(dp) = cost_decimal_places {
        if dp > 18 {
            return Err(err("spec.costs.cost_decimal_places", "must be 0..18"));
        }
        config.cost_dp = dp;
    }
    Ok((fractional, symbol_borrow_rates))
}

fn duration(nanos: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: nanos.div_euclid(1_000_000_000),
        nanos: i32::try_from(nanos.rem_euclid(1_000_000_000)).unwrap_or(0),
    }
}

fn day_count_to_proto(d: DayCount) -> i32 {
    match d {
        DayCount::Act365 => v1::DayCount::Act365 as i32,
        DayCount::Act360 => v1::DayCount::Act360 as i32,
    }
}

/// The wire `CostModel` of an engine configuration: the inverse of
/// [`cost_model`] (every engine option has its wire form; `cost_model` of the
/// result gives `config`'s cost and fill settings back exactly).
#[allow(
    clippy::too_many_lines,
    reason = "one arm per engine option, kept side by side with cost_model"
)]
pub fn cost_model_to_proto(
    config: &BacktestConfig,
    fractional: bool,
    symbol_borrow_rates: &BTreeMap<String, Decimal>,
) -> v1::CostModel {
    use v1::commission_model::Model as C;
    use v1::latency_model::Model as L;
    use v1::slippage_model::Model as S;
    let d = |x: Decimal| Some(v1::Decimal::from(x));
    let slippage = match config.slippage {
        SlippageSpec::None => None,
        SlippageSpec::FixedBps { bps } => Some(S::FixedBps(v1::FixedBpsSlippage { bps: d(bps) })),
        SlippageSpec::VolumeShare { price_impact } => {
            Some(S::VolumeShare(v1::VolumeShareSlippage {
                impact_coefficient: Decimal::from_f64(price_impact).and_then(d),
            }))
        }
        SlippageSpec::HalfSpread { spread_bps } => Some(S::Spread(v1::SpreadSlippage {
            spread_bps: d(spread_bps),
        })),
    };
    let commission = match &config.commission {
        CommissionSpec::None => None,
        CommissionSpec::PerShare { rate, minimum } => Some(C::PerShare(v1::PerShareCommission {
            per_share: d(*rate),
            minimum: d(*minimum),
            maximum_fraction: None,
        })),
        CommissionSpec::PerShareCapped {
            rate,
            minimum,
            maximum_fraction,
        } => Some(C::PerShare(v1::PerShareCommission {
            per_share: d(*rate),
            minimum: d(*minimum),
            maximum_fraction: d(*maximum_fraction),
        })),
        CommissionSpec::Percentage { rate } => Some(C::Percentage(v1::PercentageCommission {
            rate: d(*rate),
            minimum: None,
        })),
        CommissionSpec::PercentageWithMinimum { rate, minimum } => {
            Some(C::Percentage(v1::PercentageCommission {
                rate: d(*rate),
                minimum: d(*minimum),
            }))
        }
        CommissionSpec::TieredNotional { tiers } => Some(C::Tiered(v1::TieredCommission {
            tiers: tiers
                .iter()
                .map(|(from, rate)| v1::CommissionTier {
                    monthly_volume_from: d(*from),
                    rate: d(*rate),
                })
                .collect(),
        })),
        CommissionSpec::TieredMonthly { tiers, minimum } => {
            Some(C::TieredPerShare(v1::TieredPerShareCommission {
                tiers: tiers
                    .iter()
                    .map(|(from, rate)| v1::PerShareTier {
                        monthly_quantity_from: d(*from),
                        per_share: d(*rate),
                    })
                    .collect(),
                minimum: d(*minimum),
            }))
        }
        CommissionSpec::MakerTaker { maker, taker } => {
            Some(C::MakerTaker(v1::MakerTakerCommission {
                maker_rate: d(*maker),
                taker_rate: d(*taker),
            }))
        }
    };
    let latency = match config.latency {
        LatencySpec::Fixed { nanos } => Some(L::Fixed(duration(nanos))),
        LatencySpec::Uniform { min, max } => Some(L::Uniform(v1::UniformLatency {
            min: Some(duration(min)),
            max: Some(duration(max)),
        })),
        LatencySpec::LogNormal { median, sigma, max } => Some(L::Random(v1::RandomLatency {
            median: Some(duration(median)),
            sigma: sigma.to_f64().unwrap_or(f64::NAN),
            max: max.map(duration),
        })),
    };
    v1::CostModel {
        slippage: slippage.map(|m| v1::SlippageModel { model: Some(m) }),
        commission: commission.map(|m| v1::CommissionModel { model: Some(m) }),
        latency: latency.map(|m| v1::LatencyModel { model: Some(m) }),
        fill: Some(v1::FillModel {
            limit_fill_on_touch: config.limit_fill == LimitFill::Touch,
            max_volume_participation: config.max_participation.and_then(d),
            allow_fractional: fractional,
            fill_at_decision_bar_close: config.fill_timing == FillTiming::SameBarClose,
            disable_margin_check: !config.enforce_margin,
        }),
        borrow: Some(v1::BorrowModel {
            default_annual_rate: d(config.borrow_rate),
            symbol_rates: symbol_borrow_rates
                .iter()
                .map(|(k, v)| (k.clone(), v1::Decimal::from(*v)))
                .collect(),
            day_count: day_count_to_proto(config.borrow_day_count),
        }),
        financing: Some(v1::FinancingModel {
            annual_rate: d(config.financing_rate),
            day_count: day_count_to_proto(config.financing_day_count),
        }),
        cost_decimal_places: Some(config.cost_dp),
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
            asset_class: class,
            regime_breakdown,
            price_noise,
            warmup_bars,
        } = spec;
        let noise = match price_noise {
            None => None,
            Some(n) if n.sigma > 0.0 && n.sigma <= 0.5 => Some((n.sigma, n.seed)),
            Some(n) => {
                return Err(err(
                    "spec.price_noise.sigma",
                    format!("{} must be in (0, 0.5]", n.sigma),
                ));
            }
        };
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
        if warmup_bars > 100_000 {
            return Err(err("spec.warmup_bars", "must be at most 100000"));
        }
        if warmup_bars > 0 && range.start == i64::MIN {
            return Err(err(
                "spec.warmup_bars",
                "needs spec.range.start: the warm-up is the bars before it",
            ));
        }
        let mut config = BacktestConfig {
            starting_cash,
            seed,
            trade_from: (warmup_bars > 0).then_some(range.start),
            ..BacktestConfig::default()
        };
        let (fractional, symbol_borrow_rates) = match costs {
            Some(costs) => cost_model(costs, &mut config)?,
            None => (false, BTreeMap::new()),
        };
        config
            .validate()
            .map_err(|e| err("spec.costs", e.to_string()))?;
        let annual_risk_free = non_negative("spec.risk_free_rate", risk_free_rate.as_ref())?
            .map(|rf| {
                rf.to_f64()
                    .ok_or_else(|| err("spec.risk_free_rate", "out of range"))
            })
            .transpose()?;
        let class = asset_class(
            v1::AssetClass::try_from(class)
                .map_err(|_| err("spec.asset_class", format!("unknown value {class}")))?,
        );
        // 0 = inferred from the bars once they are loaded (resolve_metrics);
        // until then the class's daily figure.
        let (periods, infer_periods) = if periods_per_year == 0 {
            (class.trading_days(), Some(class))
        } else {
            (f64::from(periods_per_year), None)
        };
        let metrics = metrics_config(periods, annual_risk_free);
        Ok(Self {
            datasets,
            range,
            spec: RunSpec {
                config,
                strategy,
                metrics,
                // Opt-in: labelling costs several times the engine's loop.
                regimes: regime_breakdown.then(grodt_regimes::RegimeConfig::default),
            },
            fractional,
            symbol_borrow_rates,
            infer_periods,
            annual_risk_free,
            noise,
            warmup_bars,
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

/// The statistics of `m` on the wire; the run-level counts and equities are
/// left unset (the caller sets them). `bar_count` and the trade counts are
/// `m`'s periods and closed trades.
fn metrics_to_proto(m: &grodt_analytics::Metrics, periods_per_year: f64) -> v1::Metrics {
    let f = |x: Option<f64>| x.unwrap_or(f64::NAN);
    let dec_of = |x: Option<f64>| {
        x.and_then(Decimal::from_f64_retain)
            .map(|d| d.round_dp(8))
            .and_then(wire)
    };
    v1::Metrics {
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
        trade_count: u32::try_from(m.trades.count).unwrap_or(u32::MAX),
        closed_trade_count: u32::try_from(m.trades.count).unwrap_or(u32::MAX),
        bar_count: m.periods as u64,
        // Whole periods on the wire; the metrics used the exact value.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "validated positive and finite"
        )]
        periods_per_year: periods_per_year.round() as u32,
        ..v1::Metrics::default()
    }
}

/// A sweep kernel's result of one parameter set on the wire: the ranking
/// metrics it computes (`grodt_sweep::SweepMetrics`), the exact equities and
/// the counts; the statistics it does not compute stay zero (documented on
/// `SweepSetResult.metrics`).
pub fn sweep_metrics_to_proto(
    o: &grodt_sweep::Outcome,
    initial: Decimal,
    bars: u64,
    periods_per_year: f64,
) -> v1::Metrics {
    let f = |x: Option<f64>| x.unwrap_or(f64::NAN);
    let m = &o.metrics;
    v1::Metrics {
        initial_equity: wire(initial),
        final_equity: wire(o.final_equity),
        net_profit: wire(o.final_equity - initial),
        total_return: m.total_return,
        cagr: m.cagr,
        sharpe: f(m.sharpe),
        sortino: f(m.sortino),
        calmar: f(m.calmar),
        max_drawdown: m.max_drawdown,
        win_rate: f(m.win_rate),
        profit_factor: f(m.profit_factor),
        trade_count: o.trades,
        closed_trade_count: o.closed_trades,
        fill_count: o.fills,
        bar_count: bars,
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "validated positive and finite"
        )]
        periods_per_year: periods_per_year.round() as u32,
        ..v1::Metrics::default()
    }
}

/// The per-regime metrics on the wire; `net_profit` is the exact sum of the
/// equity changes over each regime's periods.
fn regime_metrics(
    b: &RegimeBreakdown,
    r: &grodt_sim::BacktestResult,
    periods_per_year: f64,
) -> Vec<v1::RegimeMetrics> {
    let mut pnl: BTreeMap<RegimeLabel, Decimal> = BTreeMap::new();
    for (label, w) in b.labels.iter().zip(r.equity.windows(2)) {
        *pnl.entry(*label).or_default() += w[1].equity - w[0].equity;
    }
    b.by_regime
        .iter()
        .map(|(label, m)| v1::RegimeMetrics {
            regime: label.name().to_owned(),
            bars: m.periods as u64,
            time_share: b.time_share(*label),
            metrics: Some(v1::Metrics {
                net_profit: wire(pnl.get(label).copied().unwrap_or_default()),
                ..metrics_to_proto(m, periods_per_year)
            }),
        })
        .collect()
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
    let initial = spec.config.starting_cash;
    let metrics = v1::Metrics {
        initial_equity: wire(initial),
        final_equity: wire(r.last.equity),
        net_profit: wire(r.last.equity - initial),
        trade_count: u32::try_from(r.trades.len()).unwrap_or(u32::MAX),
        closed_trade_count: u32::try_from(closed.len()).unwrap_or(u32::MAX),
        fill_count: u32::try_from(r.fills.len()).unwrap_or(u32::MAX),
        bar_count: r.bars,
        ..metrics_to_proto(m, spec.metrics.periods_per_year)
    };
    v1::BacktestResult {
        status: v1::BacktestStatus::Succeeded as i32,
        metrics: Some(metrics),
        regime_metrics: outcome
            .regimes
            .as_ref()
            .map(|b| regime_metrics(b, r, spec.metrics.periods_per_year))
            .unwrap_or_default(),
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

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn spec() -> v1::BacktestSpec {
        v1::BacktestSpec {
            dataset_ids: vec!["lean/SPY/1d".into()],
            strategy_name: "sma_cross".into(),
            initial_cash: d("50000"),
            ..v1::BacktestSpec::default()
        }
    }

    fn with_costs(costs: v1::CostModel) -> v1::BacktestSpec {
        v1::BacktestSpec {
            costs: Some(costs),
            ..spec()
        }
    }

    fn commission(model: v1::commission_model::Model) -> v1::BacktestSpec {
        with_costs(v1::CostModel {
            commission: Some(v1::CommissionModel { model: Some(model) }),
            ..v1::CostModel::default()
        })
    }

    fn latency(model: v1::latency_model::Model) -> v1::BacktestSpec {
        with_costs(v1::CostModel {
            latency: Some(v1::LatencyModel { model: Some(model) }),
            ..v1::CostModel::default()
        })
    }

    fn secs(seconds: i64, nanos: i32) -> prost_types::Duration {
        prost_types::Duration { seconds, nanos }
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
                            maximum_fraction: d("0.01"),
                        },
                    )),
                }),
                latency: Some(v1::LatencyModel {
                    model: Some(v1::latency_model::Model::Random(v1::RandomLatency {
                        median: Some(secs(0, 50_000_000)),
                        sigma: 0.5,
                        max: Some(secs(2, 0)),
                    })),
                }),
                fill: Some(v1::FillModel {
                    limit_fill_on_touch: true,
                    max_volume_participation: d("0.1"),
                    allow_fractional: true,
                    fill_at_decision_bar_close: true,
                    disable_margin_check: true,
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
                    day_count: v1::DayCount::Act365 as i32,
                }),
                financing: Some(v1::FinancingModel {
                    annual_rate: d("0.04"),
                    day_count: v1::DayCount::Act360 as i32,
                }),
                cost_decimal_places: Some(4),
            }),
            ..spec()
        })
        .unwrap();
        let c = &job.spec.config;
        assert_eq!(c.starting_cash, Decimal::from(50_000));
        assert_eq!(c.seed, 7);
        assert_eq!(
            c.slippage,
            SlippageSpec::HalfSpread {
                spread_bps: Decimal::from(4)
            }
        );
        assert_eq!(
            c.commission,
            CommissionSpec::PerShareCapped {
                rate: dec("0.005"),
                minimum: Decimal::ONE,
                maximum_fraction: dec("0.01"),
            }
        );
        assert_eq!(
            c.latency,
            LatencySpec::LogNormal {
                median: 50_000_000,
                sigma: dec("0.5"),
                max: Some(2_000_000_000),
            }
        );
        assert_eq!(c.limit_fill, LimitFill::Touch);
        assert_eq!(c.max_participation, Some(Decimal::new(1, 1)));
        assert_eq!(c.fill_timing, FillTiming::SameBarClose);
        assert!(!c.enforce_margin);
        assert_eq!(c.borrow_rate, Decimal::new(2, 2));
        assert_eq!(c.borrow_day_count, DayCount::Act365);
        assert_eq!(c.financing_rate, Decimal::new(4, 2));
        assert_eq!(c.financing_day_count, DayCount::Act360);
        assert_eq!(c.cost_dp, 4);
        assert!(job.fractional);
        assert_eq!(job.symbol_borrow_rates["SPY"], Decimal::new(5, 2));
        assert_eq!(job.range.start, 10_000_000_000);
        assert_eq!(job.range.end, i64::MAX);
        assert!((job.spec.metrics.periods_per_year - 365.0).abs() < f64::EPSILON);
        assert_eq!(job.infer_periods, None);
    }

    /// Every option of the wire's cost vocabulary is accepted and becomes its
    /// own engine setting (none is refused any more).
    #[test]
    fn fractional_basis_points_reach_the_engine_exactly() {
        use v1::slippage_model::Model;
        let fixed = v1::SlippageModel {
            model: Some(Model::FixedBps(v1::FixedBpsSlippage { bps: d("2.5") })),
        };
        assert_eq!(
            slippage(fixed).unwrap(),
            SlippageSpec::FixedBps {
                bps: Decimal::new(25, 1)
            }
        );
        let spread = v1::SlippageModel {
            model: Some(Model::Spread(v1::SpreadSlippage {
                spread_bps: d("0.7500"),
            })),
        };
        assert_eq!(
            slippage(spread).unwrap(),
            SlippageSpec::HalfSpread {
                spread_bps: Decimal::new(75, 2)
            }
        );
        let too_fine = v1::SlippageModel {
            model: Some(Model::FixedBps(v1::FixedBpsSlippage { bps: d("0.00001") })),
        };
        let e = slippage(too_fine).unwrap_err().to_string();
        assert!(e.contains("spec.costs.slippage.fixed_bps.bps"), "{e}");
    }

    #[test]
    fn no_wire_cost_option_is_refused() {
        use v1::commission_model::Model as C;
        use v1::latency_model::Model as L;
        let tier = |from: &str, rate: &str| v1::CommissionTier {
            monthly_volume_from: d(from),
            rate: d(rate),
        };
        let cases: Vec<(v1::BacktestSpec, CommissionSpec)> = vec![
            (
                commission(C::PerShare(v1::PerShareCommission {
                    per_share: d("0.005"),
                    minimum: d("1"),
                    maximum_fraction: None,
                })),
                CommissionSpec::PerShare {
                    rate: dec("0.005"),
                    minimum: Decimal::ONE,
                },
            ),
            (
                commission(C::Percentage(v1::PercentageCommission {
                    rate: d("0.001"),
                    minimum: d("2.5"),
                })),
                CommissionSpec::PercentageWithMinimum {
                    rate: dec("0.001"),
                    minimum: dec("2.5"),
                },
            ),
            (
                commission(C::Percentage(v1::PercentageCommission {
                    rate: d("0.001"),
                    minimum: None,
                })),
                CommissionSpec::Percentage { rate: dec("0.001") },
            ),
            (
                commission(C::Tiered(v1::TieredCommission {
                    tiers: vec![tier("0", "0.001"), tier("1000000", "0.0005")],
                })),
                CommissionSpec::TieredNotional {
                    tiers: vec![
                        (Decimal::ZERO, dec("0.001")),
                        (dec("1000000"), dec("0.0005")),
                    ],
                },
            ),
            (
                commission(C::TieredPerShare(v1::TieredPerShareCommission {
                    tiers: vec![v1::PerShareTier {
                        monthly_quantity_from: d("0"),
                        per_share: d("0.0035"),
                    }],
                    minimum: d("0.35"),
                })),
                CommissionSpec::TieredMonthly {
                    tiers: vec![(Decimal::ZERO, dec("0.0035"))],
                    minimum: dec("0.35"),
                },
            ),
            (
                commission(C::MakerTaker(v1::MakerTakerCommission {
                    maker_rate: d("-0.0002"),
                    taker_rate: d("0.0004"),
                })),
                CommissionSpec::MakerTaker {
                    maker: dec("-0.0002"),
                    taker: dec("0.0004"),
                },
            ),
        ];
        for (spec, expected) in cases {
            let job = Job::try_from(spec).unwrap();
            assert_eq!(job.spec.config.commission, expected);
        }
        let latencies = [
            (
                latency(L::Random(v1::RandomLatency {
                    median: Some(secs(0, 1_000)),
                    sigma: 0.0,
                    max: None,
                })),
                LatencySpec::LogNormal {
                    median: 1_000,
                    sigma: Decimal::ZERO,
                    max: None,
                },
            ),
            (
                latency(L::Uniform(v1::UniformLatency {
                    min: Some(secs(0, 5)),
                    max: Some(secs(1, 0)),
                })),
                LatencySpec::Uniform {
                    min: 5,
                    max: 1_000_000_000,
                },
            ),
            (
                latency(L::Fixed(secs(0, 7))),
                LatencySpec::Fixed { nanos: 7 },
            ),
        ];
        for (spec, expected) in latencies {
            assert_eq!(Job::try_from(spec).unwrap().spec.config.latency, expected);
        }
    }

    /// The engine -> wire -> engine round trip is exact for every engine
    /// option, so every engine setting is reachable from the wire.
    #[test]
    fn every_engine_option_round_trips_through_the_wire() {
        let commissions = [
            CommissionSpec::None,
            CommissionSpec::PerShare {
                rate: dec("0.005"),
                minimum: dec("1"),
            },
            CommissionSpec::PerShareCapped {
                rate: dec("0.005"),
                minimum: dec("1"),
                maximum_fraction: dec("0.01"),
            },
            CommissionSpec::Percentage { rate: dec("0.001") },
            CommissionSpec::PercentageWithMinimum {
                rate: dec("0.001"),
                minimum: dec("0"),
            },
            CommissionSpec::TieredNotional {
                tiers: vec![(dec("0"), dec("0.001")), (dec("50000"), dec("0.0008"))],
            },
            CommissionSpec::TieredMonthly {
                tiers: vec![(dec("0"), dec("0.0035")), (dec("300000"), dec("0.002"))],
                minimum: dec("0.35"),
            },
            CommissionSpec::MakerTaker {
                maker: dec("-0.0001"),
                taker: dec("0.0003"),
            },
        ];
        let slippages = [
            SlippageSpec::None,
            SlippageSpec::FixedBps {
                bps: Decimal::from(3),
            },
            SlippageSpec::VolumeShare { price_impact: 0.1 },
            SlippageSpec::HalfSpread {
                spread_bps: Decimal::from(8),
            },
        ];
        let latencies = [
            LatencySpec::Fixed { nanos: 0 },
            LatencySpec::Fixed {
                nanos: 1_500_000_001,
            },
            LatencySpec::Uniform { min: 3, max: 9 },
            LatencySpec::LogNormal {
                median: 40_000_000,
                sigma: dec("0.3"),
                max: Some(900_000_000),
            },
            LatencySpec::LogNormal {
                median: 40_000_000,
                sigma: dec("1.25"),
                max: None,
            },
        ];
        let mut configs = Vec::new();
        for commission in &commissions {
            configs.push(BacktestConfig {
                commission: commission.clone(),
                ..BacktestConfig::default()
            });
        }
        for slippage in &slippages {
            configs.push(BacktestConfig {
                slippage: slippage.clone(),
                ..BacktestConfig::default()
            });
        }
        for latency in latencies {
            configs.push(BacktestConfig {
                latency,
                ..BacktestConfig::default()
            });
        }
        configs.push(BacktestConfig {
            fill_timing: FillTiming::SameBarClose,
            limit_fill: LimitFill::Touch,
            max_participation: Some(dec("0.25")),
            borrow_rate: dec("0.03"),
            borrow_day_count: DayCount::Act365,
            financing_rate: dec("0.05"),
            financing_day_count: DayCount::Act360,
            enforce_margin: false,
            cost_dp: 2,
            ..BacktestConfig::default()
        });
        configs.push(BacktestConfig::default());
        let rates: BTreeMap<String, Decimal> = [("SPY".to_owned(), dec("0.07"))].into();
        for config in configs {
            let wire = cost_model_to_proto(&config, true, &rates);
            let mut back = BacktestConfig::default();
            let (fractional, back_rates) = cost_model(wire, &mut back).unwrap();
            assert_eq!(back, config);
            assert!(fractional);
            assert_eq!(back_rates, rates);
            back.validate().unwrap();
        }
    }

    #[test]
    fn values_out_of_range_are_refused_naming_the_field() {
        use v1::commission_model::Model as C;
        use v1::latency_model::Model as L;
        let tier = |from: &str, rate: &str| v1::CommissionTier {
            monthly_volume_from: d(from),
            rate: d(rate),
        };
        let cases = [
            (
                latency(L::Random(v1::RandomLatency::default())),
                "spec.costs.latency.random.median",
            ),
            (
                latency(L::Random(v1::RandomLatency {
                    median: Some(secs(1, 0)),
                    sigma: f64::NAN,
                    max: None,
                })),
                "spec.costs.latency.random.sigma",
            ),
            (
                latency(L::Random(v1::RandomLatency {
                    median: Some(secs(1, 0)),
                    sigma: 0.5,
                    max: Some(secs(0, 5)),
                })),
                "spec.costs.latency.random.max",
            ),
            (
                latency(L::Uniform(v1::UniformLatency {
                    min: Some(secs(2, 0)),
                    max: Some(secs(1, 0)),
                })),
                "spec.costs.latency.uniform.max",
            ),
            (
                commission(C::Tiered(v1::TieredCommission::default())),
                "spec.costs.commission.tiered.tiers",
            ),
            (
                commission(C::Tiered(v1::TieredCommission {
                    tiers: vec![tier("10", "0.001")],
                })),
                "spec.costs.commission.tiered.tiers",
            ),
            (
                commission(C::Tiered(v1::TieredCommission {
                    tiers: vec![tier("0", "0.001"), tier("0", "0.0005")],
                })),
                "spec.costs.commission.tiered.tiers",
            ),
            (
                commission(C::Tiered(v1::TieredCommission {
                    tiers: vec![tier("0", "-0.001")],
                })),
                "spec.costs.commission.tiered.tiers[0].rate",
            ),
            (
                commission(C::PerShare(v1::PerShareCommission {
                    per_share: d("0.005"),
                    minimum: None,
                    maximum_fraction: d("-0.01"),
                })),
                "spec.costs.commission.per_share.maximum_fraction",
            ),
            (
                commission(C::Percentage(v1::PercentageCommission {
                    rate: d("0.001"),
                    minimum: d("-1"),
                })),
                "spec.costs.commission.percentage.minimum",
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
                with_costs(v1::CostModel {
                    cost_decimal_places: Some(19),
                    ..v1::CostModel::default()
                }),
                "spec.costs.cost_decimal_places",
            ),
            (
                with_costs(v1::CostModel {
                    borrow: Some(v1::BorrowModel {
                        day_count: 9,
                        ..v1::BorrowModel::default()
                    }),
                    ..v1::CostModel::default()
                }),
                "spec.costs.borrow.day_count",
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

    #[test]
    fn periods_per_year_zero_is_inferred_from_the_bars_and_the_asset_class() {
        const MIN: i64 = 60_000_000_000;
        let mut job = Job::try_from(v1::BacktestSpec {
            asset_class: v1::AssetClass::CryptoSpot as i32,
            risk_free_rate: d("0.05"),
            ..spec()
        })
        .unwrap();
        assert_eq!(job.infer_periods, Some(AssetClass::Crypto));
        let ts: Vec<i64> = (0..1_000).map(|i| i * MIN).collect();
        job.resolve_metrics(&ts);
        assert!((job.spec.metrics.periods_per_year - 525_600.0).abs() < 1e-9);
        // The risk-free rate is per period of the inferred spacing.
        let per_minute = 1.05_f64.powf(1.0 / 525_600.0) - 1.0;
        assert!((job.spec.metrics.risk_free - per_minute).abs() < 1e-15);
        // Unspecified class: equities; daily bars give 252.
        let mut equity = Job::try_from(spec()).unwrap();
        let days: Vec<i64> = (0..50).map(|i| i * 1_440 * MIN).collect();
        equity.resolve_metrics(&days);
        assert!((equity.spec.metrics.periods_per_year - 252.0).abs() < 1e-12);
        // Given: kept whatever the bars.
        let mut given = Job::try_from(v1::BacktestSpec {
            periods_per_year: 12,
            ..spec()
        })
        .unwrap();
        given.resolve_metrics(&ts);
        assert!((given.spec.metrics.periods_per_year - 12.0).abs() < f64::EPSILON);
    }
}
