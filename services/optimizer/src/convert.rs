//! Every protobuf <-> domain conversion of the service: a start request into
//! a study plan (space, search, objective), a trial into its backtest job,
//! a worker's result into a study outcome, and a run back into the wire
//! `Optimization`.

use std::collections::BTreeMap;

use grodt_optimize::{
    BayesConfig, GeneticConfig, GridSearch, Metric, Objective, Others, Prior, RandomSearch, Range,
    Searcher, Space, StudyConfig, Trial, TrialMetrics,
};
use grodt_proto::v1;
use prost::Message;
use rust_decimal::prelude::ToPrimitive;
use sha2::{Digest, Sha256};

use crate::error::OptimizerError;

/// Most trials a study may run (the .proto's bound).
pub const MAX_TRIALS: u32 = 100_000;
/// Most searched parameters.
pub const MAX_RANGES: usize = 20;
/// Trials in flight when the request leaves `batch_size` 0 (at least; more
/// with a larger live worker fleet, see [`auto_batch`]).
pub const DEFAULT_BATCH: u32 = 64;

/// The batch of a request that leaves `batch_size` 0, sized to the
/// `workers` live when it started: grid, random and genetic keep two jobs
/// per worker in flight (one running, one queued behind it, so no worker
/// waits on the optimizer), never fewer than [`DEFAULT_BATCH`] (a queue an
/// autoscaler can see); a Bayesian batch is one suggestion per worker (more
/// would be suggested with less knowledge), at most [`DEFAULT_BATCH`]. No
/// live worker known: [`DEFAULT_BATCH`].
pub fn auto_batch(method: v1::SearchMethod, workers: u32) -> u32 {
    match (workers, method) {
        (0, _) => DEFAULT_BATCH,
        (w, v1::SearchMethod::Bayesian) => w.min(DEFAULT_BATCH),
        (w, _) => w.saturating_mul(2).clamp(DEFAULT_BATCH, 10_000),
    }
}
/// Parameter sets per sweep job when the request leaves `sweep_slice` 0.
pub const DEFAULT_SLICE: u32 = 256;
/// Most parameter sets per sweep job (the worker's bound).
pub const MAX_SLICE: u32 = 10_000;

/// The metric names an objective may use.
pub const METRICS: [&str; 5] = [
    "sharpe",
    "sortino",
    "calmar",
    "total_return",
    "max_drawdown",
];

/// A checked start request, ready to become a study.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The base spec, its fixed parameters moved into the space.
    pub base: v1::BacktestSpec,
    /// The search.
    pub searcher: Searcher,
    /// Objective, budget and planned count.
    pub config: StudyConfig,
    /// Trials kept in flight.
    pub capacity: usize,
    /// Sets per sweep job when the trials go out as sweep jobs (the
    /// strategy has a sweep kernel and the request did not ask for
    /// per-trial jobs); `None`: one job per trial.
    pub slice: Option<usize>,
    /// +1 to report objectives as scored, -1 when the request minimises
    /// (the study always maximises).
    pub sign: f64,
}

/// Checks an optimization id given by a client: 1..64 of `[A-Za-z0-9_-]`.
///
/// # Errors
/// INVALID_ARGUMENT naming `optimization_id`.
pub fn check_id(id: &str) -> Result<(), OptimizerError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(OptimizerError::invalid(
            "optimization_id",
            "must be 1..64 characters of [A-Za-z0-9_-]",
        ))
    }
}

fn decimal_f64(d: Option<&v1::Decimal>, field: String) -> Result<f64, OptimizerError> {
    let d = d.ok_or_else(|| OptimizerError::invalid(field.clone(), "required"))?;
    let value =
        grodt_core::Decimal::try_from(d).map_err(|e| OptimizerError::invalid(field.clone(), e))?;
    value
        .to_f64()
        .ok_or_else(|| OptimizerError::invalid(field, "out of range"))
}

fn range_of(i: usize, r: &v1::ParameterRange) -> Result<Range, OptimizerError> {
    use v1::parameter_range::Range as R;
    let field = |f: &str| format!("space[{i}].{f}");
    #[allow(
        clippy::cast_precision_loss,
        reason = "parameter bounds far below 2^53"
    )]
    match r.range.as_ref() {
        None => Err(OptimizerError::invalid(
            field("range"),
            "one of integer, decimal or choices is required",
        )),
        Some(R::Integer(x)) => {
            if x.step <= 0 {
                return Err(OptimizerError::invalid(
                    field("integer.step"),
                    "must be > 0",
                ));
            }
            if x.min > x.max {
                return Err(OptimizerError::invalid(
                    field("integer.max"),
                    format!("must be >= min {}", x.min),
                ));
            }
            Ok(Range::Linear {
                min: x.min as f64,
                max: x.max as f64,
                step: Some(x.step as f64),
                prior: Prior::Uniform,
            })
        }
        Some(R::Decimal(x)) => {
            let min = decimal_f64(x.min.as_ref(), field("decimal.min"))?;
            let max = decimal_f64(x.max.as_ref(), field("decimal.max"))?;
            let step = decimal_f64(x.step.as_ref(), field("decimal.step"))?;
            if step <= 0.0 {
                return Err(OptimizerError::invalid(
                    field("decimal.step"),
                    "must be > 0",
                ));
            }
            if min > max {
                return Err(OptimizerError::invalid(
                    field("decimal.max"),
                    format!("must be >= min {min}"),
                ));
            }
            Ok(Range::Linear {
                min,
                max,
                step: Some(step),
                prior: Prior::Uniform,
            })
        }
        Some(R::Choices(c)) => {
            if c.values.is_empty() || c.values.len() > 1000 {
                return Err(OptimizerError::invalid(
                    field("choices.values"),
                    "must hold 1..1000 values",
                ));
            }
            Ok(Range::Values {
                values: c.values.clone(),
            })
        }
    }
}

fn objective_of(o: Option<&v1::Objective>) -> Result<(Objective, f64), OptimizerError> {
    let o = o.ok_or_else(|| OptimizerError::invalid("objective", "required"))?;
    let metric = match o.metric.as_str() {
        "sharpe" => Metric::Sharpe,
        "sortino" => Metric::Sortino,
        "calmar" => Metric::Calmar,
        "total_return" => Metric::TotalReturn,
        "max_drawdown" => Metric::MaxDrawdown,
        other => {
            return Err(OptimizerError::invalid(
                "objective.metric",
                format!("unknown metric {other:?}; one of {}", METRICS.join(", ")),
            ));
        }
    };
    let sign = match v1::ObjectiveDirection::try_from(o.direction) {
        Ok(v1::ObjectiveDirection::Maximize) => 1.0,
        Ok(v1::ObjectiveDirection::Minimize) if metric == Metric::MaxDrawdown => {
            return Err(OptimizerError::invalid(
                "objective.direction",
                "max_drawdown is <= 0 (a 25% fall is -0.25): MAXIMIZE it to prefer shallower falls",
            ));
        }
        Ok(v1::ObjectiveDirection::Minimize) => -1.0,
        _ => {
            return Err(OptimizerError::invalid(
                "objective.direction",
                "MAXIMIZE or MINIMIZE is required",
            ));
        }
    };
    let objective = Objective::weighted(vec![(metric, sign)])
        .map_err(|e| OptimizerError::invalid("objective", e))?
        .min_trades(o.min_trades as usize);
    Ok((objective, sign))
}

/// A search's setup refusal, under the request field it came from.
fn setup(prefix: &str, e: grodt_optimize::SetupError) -> OptimizerError {
    match e {
        grodt_optimize::SetupError::BadSetting { field, reason } => {
            OptimizerError::invalid(format!("{prefix}.{field}"), reason)
        }
        other => OptimizerError::invalid(prefix, other),
    }
}

/// Checks a start request and turns it into a study plan.
///
/// # Errors
/// INVALID_ARGUMENT naming the first field at fault; UNIMPLEMENTED for the
/// parts not built yet (walk-forward).
pub fn plan(req: &v1::StartOptimizationRequest) -> Result<Plan, OptimizerError> {
    plan_for(req, 0)
}

/// [`plan`] with the number of live workers when the run started (journaled
/// with it, so a replay plans the same), which sizes a batch left 0.
///
/// # Errors
/// As [`plan`].
pub fn plan_for(req: &v1::StartOptimizationRequest, workers: u32) -> Result<Plan, OptimizerError> {
    let mut base = req
        .base
        .clone()
        .ok_or_else(|| OptimizerError::invalid("base", "required"))?;
    if base.strategy_name.is_empty() {
        return Err(OptimizerError::invalid("base.strategy_name", "required"));
    }
    if base.dataset_ids.is_empty() {
        return Err(OptimizerError::invalid(
            "base.dataset_ids",
            "at least one dataset is required",
        ));
    }
    if base.initial_cash.is_none() {
        return Err(OptimizerError::invalid("base.initial_cash", "required"));
    }
    if req.space.is_empty() || req.space.len() > MAX_RANGES {
        return Err(OptimizerError::invalid(
            "space",
            format!("must hold 1..{MAX_RANGES} ranges"),
        ));
    }
    let mut ranges = BTreeMap::new();
    for (i, r) in req.space.iter().enumerate() {
        if r.name.is_empty() {
            return Err(OptimizerError::invalid(
                format!("space[{i}].name"),
                "required",
            ));
        }
        if base.params.contains_key(&r.name) {
            return Err(OptimizerError::invalid(
                format!("space[{i}].name"),
                format!(
                    "{} is also fixed in base.params; search it or fix it, not both",
                    r.name
                ),
            ));
        }
        if ranges.insert(r.name.clone(), range_of(i, r)?).is_some() {
            return Err(OptimizerError::invalid(
                format!("space[{i}].name"),
                format!("{} is searched twice", r.name),
            ));
        }
    }
    // Parameters fixed in the base are part of the space (so constraints
    // such as fast < slow see their value) and sent with every trial.
    for (name, value) in std::mem::take(&mut base.params) {
        ranges.insert(name, Range::Fixed { value });
    }
    let space = Space::new(&base.strategy_name, &ranges, Others::Default)
        .map_err(|e| OptimizerError::invalid("space", e))?;
    if req.max_trials == 0 || req.max_trials > MAX_TRIALS {
        return Err(OptimizerError::invalid(
            "max_trials",
            format!("must be in 1..={MAX_TRIALS}"),
        ));
    }
    let max_trials = u64::from(req.max_trials);
    let (objective, sign) = objective_of(req.objective.as_ref())?;
    let method = v1::SearchMethod::try_from(req.method).unwrap_or(v1::SearchMethod::Unspecified);
    if req.genetic.is_some() && method != v1::SearchMethod::Genetic {
        return Err(OptimizerError::invalid(
            "genetic",
            "only with method GENETIC",
        ));
    }
    if req.walk_forward.is_some() {
        // A walk-forward request is planned by `walkforward::plan`, one
        // study per fold (each without walk_forward).
        return Err(OptimizerError::invalid(
            "walk_forward",
            "a walk-forward request is planned per fold",
        ));
    }
    if let Some(mc) = &req.monte_carlo {
        let method = v1::MonteCarloMethod::try_from(mc.method)
            .map_err(|_| OptimizerError::invalid("monte_carlo.method", "unknown value"))?;
        if method == v1::MonteCarloMethod::PriceNoise {
            let max = grodt_optimize::montecarlo::MAX_NOISE_RUNS;
            if !(2..=max).contains(&mc.simulations) {
                return Err(OptimizerError::invalid(
                    "monte_carlo.simulations",
                    format!("must be in 2..={max} noisy runs for PRICE_NOISE"),
                ));
            }
            if mc.noise_sigma != 0.0 && !(mc.noise_sigma > 0.0 && mc.noise_sigma <= 0.5) {
                return Err(OptimizerError::invalid(
                    "monte_carlo.noise_sigma",
                    "must be in (0, 0.5] (0 = 0.002)",
                ));
            }
        } else {
            if !(100..=100_000).contains(&mc.simulations) {
                return Err(OptimizerError::invalid(
                    "monte_carlo.simulations",
                    "must be in 100..=100000",
                ));
            }
            if mc.noise_sigma != 0.0 {
                return Err(OptimizerError::invalid(
                    "monte_carlo.noise_sigma",
                    "only with method PRICE_NOISE",
                ));
            }
        }
    }
    let valid = space.valid_grid_len();
    let searcher = match method {
        v1::SearchMethod::Grid => {
            let points = valid.ok_or_else(|| {
                OptimizerError::invalid("space", "the grid is not finite or too large to count")
            })?;
            if points > max_trials {
                return Err(OptimizerError::invalid(
                    "max_trials",
                    format!(
                        "the grid has {points} valid points, more than max_trials {max_trials}"
                    ),
                ));
            }
            Searcher::Grid(
                GridSearch::new(space, None).map_err(|e| OptimizerError::invalid("space", e))?,
            )
        }
        v1::SearchMethod::Random => Searcher::Random(
            RandomSearch::new(space, req.seed, None)
                .map_err(|e| OptimizerError::invalid("space", e))?,
        ),
        v1::SearchMethod::Genetic => {
            let g = req.genetic.unwrap_or_default();
            if g.population_size != 0 && g.population_size < 4 {
                return Err(OptimizerError::invalid(
                    "genetic.population_size",
                    "must be >= 4 (0 = 32)",
                ));
            }
            for (field, rate) in [
                ("genetic.mutation_rate", g.mutation_rate),
                ("genetic.crossover_rate", g.crossover_rate),
            ] {
                if !(0.0..=1.0).contains(&rate) {
                    return Err(OptimizerError::invalid(field, "must be in [0, 1]"));
                }
            }
            let or = |x: f64, d: f64| if x == 0.0 { d } else { x };
            let config = GeneticConfig {
                population: if g.population_size == 0 {
                    32
                } else {
                    g.population_size as usize
                },
                mutation_rate: or(g.mutation_rate, 0.1),
                crossover_rate: or(g.crossover_rate, 0.8),
                elites: g.elite as usize,
                // The trial budget ends it; no generation limit of its own.
                max_generations: None,
                max_trials: Some(max_trials),
                ..GeneticConfig::default()
            };
            Searcher::genetic(space, req.seed, config).map_err(|e| setup("genetic", e))?
        }
        v1::SearchMethod::Bayesian => {
            let config = BayesConfig {
                max_trials,
                ..BayesConfig::default()
            };
            Searcher::bayes(space, req.seed, config, Vec::new()).map_err(|e| setup("space", e))?
        }
        v1::SearchMethod::Unspecified => {
            return Err(OptimizerError::invalid(
                "method",
                "GRID, RANDOM, GENETIC or BAYESIAN is required",
            ));
        }
    };
    let planned = valid.map_or(max_trials, |v| v.min(max_trials));
    let batch = if req.batch_size == 0 {
        auto_batch(method, workers)
    } else {
        req.batch_size
    };
    if req.sweep_slice > MAX_SLICE {
        return Err(OptimizerError::invalid(
            "sweep_slice",
            format!("must be in 0..={MAX_SLICE} (0 = {DEFAULT_SLICE})"),
        ));
    }
    // Sweep-capable strategies go out as sweep jobs: a slice of sets in one
    // pass over the data instead of one job per set. The worker falls back
    // to the event engine set by set where its kernel does not model the
    // spec, so the choice here needs only the strategy.
    let slice = (!req.per_trial_jobs
        && grodt_sweep::STRATEGIES.contains(&base.strategy_name.as_str()))
    .then_some(if req.sweep_slice == 0 {
        DEFAULT_SLICE
    } else {
        req.sweep_slice
    } as usize);
    // Grid, random and GA keep `batch` jobs of a slice each in flight; the
    // Bayesian batch is the number of suggestions it makes at once, which
    // slicing must not change.
    let capacity = match (slice, method) {
        (Some(n), m) if m != v1::SearchMethod::Bayesian => batch as usize * n,
        _ => batch as usize,
    };
    Ok(Plan {
        base,
        searcher,
        config: StudyConfig {
            objective,
            max_trials,
            planned,
            // Two lattice steps either side of the best, per parameter.
            sensitivity: req.sensitivity.then_some(2),
        },
        capacity,
        slice,
        sign,
    })
}

/// The backtest a trial runs: the base with the trial's parameters.
pub fn trial_spec(base: &v1::BacktestSpec, trial: &Trial) -> v1::BacktestSpec {
    let mut spec = base.clone();
    for (k, v) in &trial.params {
        spec.params.insert(k.clone(), v.clone());
    }
    spec
}

/// The content hash of a backtest spec (`t-` and 40 hex digits): equal specs
/// get equal ids whatever the order of their maps, so a trial that ran
/// before (in this study or another) is answered from the store.
pub fn backtest_id(spec: &v1::BacktestSpec) -> String {
    let mut s = spec.clone();
    // protobuf maps encode in no fixed order: hash them sorted.
    let params: BTreeMap<String, String> = std::mem::take(&mut s.params).into_iter().collect();
    let rates: BTreeMap<String, String> = s
        .costs
        .as_mut()
        .and_then(|c| c.borrow.as_mut())
        .map(|b| {
            std::mem::take(&mut b.symbol_rates)
                .into_iter()
                .map(|(k, v)| (k, v.value))
                .collect()
        })
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(s.encode_to_vec());
    for (k, v) in params.iter().chain(rates.iter()) {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_be_bytes());
        h.update(v.as_bytes());
    }
    let digest = h.finalize();
    format!("t-{}", &hex::encode(digest)[..40])
}

/// The id of a sweep job (`s-` and 40 hex digits): the content hash of the
/// base spec and the slice's parameter sets in order, so a slice that ran
/// before is answered from the store.
pub fn slice_id(base: &v1::BacktestSpec, sets: &[BTreeMap<String, String>]) -> String {
    let mut h = Sha256::new();
    h.update(backtest_id(base).as_bytes());
    for set in sets {
        h.update((set.len() as u64).to_be_bytes());
        for (k, v) in set {
            h.update((k.len() as u64).to_be_bytes());
            h.update(k.as_bytes());
            h.update((v.len() as u64).to_be_bytes());
            h.update(v.as_bytes());
        }
    }
    format!("s-{}", &hex::encode(h.finalize())[..40])
}

/// A worker's metrics as the objective reads them (NaN = undefined).
pub fn trial_metrics(m: &v1::Metrics) -> TrialMetrics {
    let opt = |x: f64| x.is_finite().then_some(x);
    TrialMetrics {
        total_return: m.total_return,
        sharpe: opt(m.sharpe),
        sortino: opt(m.sortino),
        calmar: opt(m.calmar),
        max_drawdown: m.max_drawdown,
        trades: m.closed_trade_count as usize,
    }
}

/// The wire state of a study state.
pub fn state_to_proto(s: grodt_optimize::StudyState) -> v1::OptimizationState {
    match s {
        grodt_optimize::StudyState::Running => v1::OptimizationState::Running,
        grodt_optimize::StudyState::Succeeded => v1::OptimizationState::Succeeded,
        grodt_optimize::StudyState::Failed => v1::OptimizationState::Failed,
        grodt_optimize::StudyState::Cancelled => v1::OptimizationState::Cancelled,
    }
}

/// The wire trial state.
pub fn trial_state_to_proto(s: grodt_optimize::TrialState) -> v1::TrialState {
    match s {
        grodt_optimize::TrialState::Queued => v1::TrialState::Queued,
        grodt_optimize::TrialState::Succeeded => v1::TrialState::Succeeded,
        grodt_optimize::TrialState::Failed => v1::TrialState::Failed,
    }
}

/// The Monte Carlo method a request asks for (UNSPECIFIED = trades).
pub fn mc_method(m: &v1::MonteCarloSettings) -> grodt_optimize::montecarlo::Method {
    match v1::MonteCarloMethod::try_from(m.method) {
        Ok(v1::MonteCarloMethod::ReturnBootstrap) => {
            grodt_optimize::montecarlo::Method::ReturnBootstrap
        }
        Ok(v1::MonteCarloMethod::PriceNoise) => grodt_optimize::montecarlo::Method::PriceNoise,
        _ => grodt_optimize::montecarlo::Method::TradeShuffle,
    }
}

/// The default relative noise of PRICE_NOISE.
pub const DEFAULT_NOISE_SIGMA: f64 = 0.002;

/// The noise of a PRICE_NOISE request (0 = the default).
pub fn noise_sigma(m: &v1::MonteCarloSettings) -> f64 {
    if m.noise_sigma == 0.0 {
        DEFAULT_NOISE_SIGMA
    } else {
        m.noise_sigma
    }
}

/// A trial's metrics as a price-noise run's figures (`objective` as the
/// study scored it).
pub fn run_figures(
    m: &v1::Metrics,
    objective: Option<f64>,
) -> Option<grodt_optimize::montecarlo::RunFigures> {
    Some(grodt_optimize::montecarlo::RunFigures {
        final_equity: dec_f64(m.final_equity.as_ref())?,
        max_drawdown: m.max_drawdown,
        objective,
    })
}

/// The price-noise analysis of a study's best trial from its noisy runs'
/// metrics (`None` for a run that failed).
pub fn noise_monte_carlo(
    best: &v1::Metrics,
    best_objective: Option<f64>,
    runs: &[Option<v1::Metrics>],
    objective: &Objective,
) -> Result<grodt_optimize::montecarlo::MonteCarlo, String> {
    let initial = dec_f64(best.initial_equity.as_ref())
        .ok_or("the best trial's metrics have no initial equity")?;
    let observed =
        run_figures(best, best_objective).ok_or("the best trial's metrics have no final equity")?;
    let figures: Vec<grodt_optimize::montecarlo::RunFigures> = runs
        .iter()
        .flatten()
        .filter_map(|m| run_figures(m, objective.score(&trial_metrics(m))))
        .collect();
    if figures.is_empty() {
        return Err("every noisy run failed".into());
    }
    grodt_optimize::montecarlo::from_runs(initial, observed, &figures).map_err(|e| e.to_string())
}

fn dec_f64(d: Option<&v1::Decimal>) -> Option<f64> {
    d.and_then(|d| grodt_core::Decimal::try_from(d).ok())
        .and_then(|d| d.to_f64())
}

/// Runs the Monte Carlo analysis on the detailed result of the best trial.
///
/// # Errors
/// The analysis' refusal (no trades, too few simulations...) as text, for
/// the run's record.
pub fn monte_carlo(
    settings: &v1::MonteCarloSettings,
    result: &v1::BacktestResult,
    seed: u64,
) -> Result<grodt_optimize::montecarlo::MonteCarlo, String> {
    if result.status != v1::BacktestStatus::Succeeded as i32 {
        return Err(format!("the detailed run failed: {}", result.error));
    }
    let initial = result
        .metrics
        .as_ref()
        .and_then(|m| dec_f64(m.initial_equity.as_ref()))
        .ok_or("the detailed run has no initial equity")?;
    let pnls: Vec<f64> = result
        .trades
        .iter()
        .filter(|t| !t.open)
        .filter_map(|t| {
            Some(dec_f64(t.gross_pnl.as_ref())? - dec_f64(t.costs.as_ref()).unwrap_or(0.0))
        })
        .collect();
    let equity: Vec<f64> = result
        .equity_curve
        .iter()
        .filter_map(|p| dec_f64(p.equity.as_ref()))
        .collect();
    let returns = grodt_optimize::montecarlo::returns(&equity);
    grodt_optimize::montecarlo::run(
        mc_method(settings),
        initial,
        &pnls,
        &returns,
        settings.simulations,
        seed,
    )
    .map_err(|e| e.to_string())
}

/// The wire form of an analysis (or of its failure).
pub fn mc_to_proto(
    mc: &Result<grodt_optimize::montecarlo::MonteCarlo, String>,
    settings: &v1::MonteCarloSettings,
) -> v1::MonteCarloResult {
    // Cents, always two places (`100300.00`).
    let money = |x: f64| {
        grodt_core::Decimal::from_f64_retain(x).map(|d| {
            let mut d = d.round_dp(2);
            d.rescale(2);
            v1::Decimal::from(d)
        })
    };
    match mc {
        Err(e) => v1::MonteCarloResult {
            simulations: settings.simulations,
            method: settings.method,
            error: e.clone(),
            ..v1::MonteCarloResult::default()
        },
        Ok(m) => v1::MonteCarloResult {
            simulations: m.simulations,
            final_equity_p5: money(m.final_equity.p5),
            final_equity_p50: money(m.final_equity.p50),
            final_equity_p95: money(m.final_equity.p95),
            max_drawdown_p5: m.max_drawdown.p5,
            max_drawdown_p50: m.max_drawdown.p50,
            max_drawdown_p95: m.max_drawdown.p95,
            probability_of_loss: m.probability_of_loss,
            observed_final_equity: money(m.observed_final_equity),
            observed_max_drawdown: m.observed_max_drawdown,
            observed_final_percentile: m.observed_final_percentile,
            observed_drawdown_percentile: m.observed_drawdown_percentile,
            method: settings.method,
            error: String::new(),
            objective_observed: m.objective.map_or(f64::NAN, |o| o.observed),
            objective_p5: m.objective.map_or(f64::NAN, |o| o.spread.p5),
            objective_p50: m.objective.map_or(f64::NAN, |o| o.spread.p50),
            objective_p95: m.objective.map_or(f64::NAN, |o| o.spread.p95),
            objective_degradation: m.objective.map_or(f64::NAN, |o| o.degradation),
            objective_observed_percentile: m.objective.map_or(f64::NAN, |o| o.observed_percentile),
            objective_scored: m.objective.map_or(0, |o| o.scored),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> v1::StartOptimizationRequest {
        v1::StartOptimizationRequest {
            base: Some(v1::BacktestSpec {
                dataset_ids: vec!["csv/SPY/1d".into()],
                strategy_name: "sma_cross".into(),
                initial_cash: Some(v1::Decimal {
                    value: "100000".into(),
                }),
                ..v1::BacktestSpec::default()
            }),
            space: vec![
                v1::ParameterRange {
                    name: "fast".into(),
                    range: Some(v1::parameter_range::Range::Integer(v1::IntegerRange {
                        min: 5,
                        max: 20,
                        step: 5,
                    })),
                },
                v1::ParameterRange {
                    name: "slow".into(),
                    range: Some(v1::parameter_range::Range::Integer(v1::IntegerRange {
                        min: 10,
                        max: 40,
                        step: 10,
                    })),
                },
            ],
            method: v1::SearchMethod::Grid as i32,
            objective: Some(v1::Objective {
                metric: "sharpe".into(),
                direction: v1::ObjectiveDirection::Maximize as i32,
                min_trades: 1,
            }),
            max_trials: 100,
            ..v1::StartOptimizationRequest::default()
        }
    }

    fn field_of(e: OptimizerError) -> String {
        match e {
            OptimizerError::Invalid { field, .. } => field,
            OptimizerError::NotBuilt { field, .. } => field.to_owned(),
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn a_grid_request_plans_the_valid_points_of_its_grid() {
        let p = plan(&request()).unwrap();
        // fast 5..20 x slow 10..40 with fast < slow: 4*4 minus (20,10),(15,10),(20,20)... counted by the space.
        let mut want = 0;
        for f in [5, 10, 15, 20] {
            for s in [10, 20, 30, 40] {
                if f < s {
                    want += 1;
                }
            }
        }
        assert_eq!(p.config.planned, want);
        // Sized to the live workers when left 0.
        assert_eq!(auto_batch(v1::SearchMethod::Grid, 0), DEFAULT_BATCH);
        assert_eq!(auto_batch(v1::SearchMethod::Grid, 8), DEFAULT_BATCH);
        assert_eq!(auto_batch(v1::SearchMethod::Random, 100), 200);
        assert_eq!(auto_batch(v1::SearchMethod::Bayesian, 3), 3);
        assert_eq!(auto_batch(v1::SearchMethod::Bayesian, 500), DEFAULT_BATCH);
        // sma_cross has a sweep kernel: batch_size jobs of DEFAULT_SLICE sets.
        assert_eq!(p.slice, Some(DEFAULT_SLICE as usize));
        assert_eq!(p.capacity, (DEFAULT_BATCH * DEFAULT_SLICE) as usize);
        assert_eq!(p.sign, 1.0);
    }

    #[test]
    fn sweep_jobs_are_chosen_by_strategy_and_request() {
        let mut r = request();
        r.sweep_slice = 10;
        r.batch_size = 3;
        let p = plan(&r).unwrap();
        assert_eq!((p.slice, p.capacity), (Some(10), 30));
        // Per-trial jobs when asked for.
        r.per_trial_jobs = true;
        let p = plan(&r).unwrap();
        assert_eq!((p.slice, p.capacity), (None, 3));
        // The Bayesian batch is its number of suggestions, sliced or not.
        r.per_trial_jobs = false;
        r.method = v1::SearchMethod::Bayesian as i32;
        let p = plan(&r).unwrap();
        assert_eq!((p.slice, p.capacity), (Some(10), 3));
        // A strategy without a kernel: one job per trial.
        let mut r = request();
        let base = r.base.as_mut().unwrap();
        base.strategy_name = "s1".into();
        r.space.clear();
        r.space.push(v1::ParameterRange {
            name: "ema_fast".into(),
            range: Some(v1::parameter_range::Range::Integer(v1::IntegerRange {
                min: 5,
                max: 10,
                step: 5,
            })),
        });
        let p = plan(&r).unwrap();
        assert_eq!(p.slice, None);
        // Slices are bounded.
        let mut r = request();
        r.sweep_slice = MAX_SLICE + 1;
        assert_eq!(field_of(plan(&r).unwrap_err()), "sweep_slice");
    }

    #[test]
    fn slice_ids_hash_the_base_and_the_sets_in_order() {
        let base = request().base.unwrap();
        let set = |f: &str| BTreeMap::from([("fast".to_owned(), f.to_owned())]);
        let a = slice_id(&base, &[set("5"), set("10")]);
        assert!(a.starts_with("s-") && a.len() == 42, "{a}");
        assert_eq!(a, slice_id(&base, &[set("5"), set("10")]));
        assert_ne!(a, slice_id(&base, &[set("10"), set("5")]));
        assert_ne!(a, slice_id(&base, &[set("5")]));
        let mut other = base.clone();
        other.seed = 9;
        assert_ne!(a, slice_id(&other, &[set("5"), set("10")]));
    }

    #[test]
    fn bad_requests_name_the_field() {
        type Change = Box<dyn Fn(&mut v1::StartOptimizationRequest)>;
        let cases: Vec<(&str, Change)> = vec![
            ("base", Box::new(|r| r.base = None)),
            (
                "base.strategy_name",
                Box::new(|r| r.base.as_mut().unwrap().strategy_name.clear()),
            ),
            (
                "base.dataset_ids",
                Box::new(|r| r.base.as_mut().unwrap().dataset_ids.clear()),
            ),
            ("space", Box::new(|r| r.space.clear())),
            (
                "space[1].name",
                Box::new(|r| r.space[1].name = "fast".into()),
            ),
            (
                "space[0].integer.step",
                Box::new(|r| {
                    r.space[0].range =
                        Some(v1::parameter_range::Range::Integer(v1::IntegerRange {
                            min: 1,
                            max: 2,
                            step: 0,
                        }));
                }),
            ),
            (
                "space[0].name",
                Box::new(|r| {
                    r.base
                        .as_mut()
                        .unwrap()
                        .params
                        .insert("fast".into(), "3".into());
                }),
            ),
            ("space", Box::new(|r| r.space[0].name = "nope".into())),
            ("max_trials", Box::new(|r| r.max_trials = 0)),
            ("max_trials", Box::new(|r| r.max_trials = 5)),
            ("objective", Box::new(|r| r.objective = None)),
            (
                "objective.metric",
                Box::new(|r| r.objective.as_mut().unwrap().metric = "cagr2".into()),
            ),
            (
                "objective.direction",
                Box::new(|r| r.objective.as_mut().unwrap().direction = 0),
            ),
            (
                "objective.direction",
                Box::new(|r| {
                    let o = r.objective.as_mut().unwrap();
                    o.metric = "max_drawdown".into();
                    o.direction = v1::ObjectiveDirection::Minimize as i32;
                }),
            ),
            ("method", Box::new(|r| r.method = 0)),
            (
                "genetic",
                Box::new(|r| r.genetic = Some(v1::GeneticSettings::default())),
            ),
            (
                "walk_forward",
                Box::new(|r| r.walk_forward = Some(v1::WalkForwardSettings::default())),
            ),
            (
                "monte_carlo.simulations",
                Box::new(|r| r.monte_carlo = Some(v1::MonteCarloSettings::default())),
            ),
        ];
        for (field, change) in cases {
            let mut r = request();
            change(&mut r);
            let e = plan(&r).expect_err(field);
            assert_eq!(field_of(e), field);
        }
    }

    #[test]
    fn fixed_base_parameters_join_the_space_and_its_constraints() {
        let mut r = request();
        r.space.truncate(1);
        r.base
            .as_mut()
            .unwrap()
            .params
            .insert("slow".into(), "12".into());
        let mut p = plan(&r).unwrap();
        // fast 5, 10 are below slow 12; 15 and 20 break fast < slow.
        assert_eq!(p.config.planned, 2);
        assert!(p.base.params.is_empty(), "sent with every trial instead");
        let trials = grodt_optimize::Search::suggest(&mut p.searcher, 10);
        assert!(trials.iter().all(|t| t.params["slow"] == "12"));
    }

    #[test]
    fn equal_specs_hash_equal_whatever_their_map_order() {
        let mut a = request().base.unwrap();
        let mut b = a.clone();
        for (k, v) in [("fast", "5"), ("slow", "20"), ("fraction", "0.5")] {
            a.params.insert(k.into(), v.into());
        }
        for (k, v) in [("fraction", "0.5"), ("slow", "20"), ("fast", "5")] {
            b.params.insert(k.into(), v.into());
        }
        assert_eq!(backtest_id(&a), backtest_id(&b));
        b.params.insert("fast".into(), "6".into());
        assert_ne!(backtest_id(&a), backtest_id(&b));
        let id = backtest_id(&a);
        assert_eq!(id.len(), 42);
        assert!(id.starts_with("t-"));
    }

    #[test]
    fn undefined_metrics_read_as_none() {
        let m = v1::Metrics {
            sharpe: f64::NAN,
            sortino: 1.5,
            calmar: f64::INFINITY,
            total_return: 0.1,
            max_drawdown: -0.2,
            closed_trade_count: 7,
            ..v1::Metrics::default()
        };
        let t = trial_metrics(&m);
        assert_eq!(t.sharpe, None);
        assert_eq!(t.sortino, Some(1.5));
        assert_eq!(t.calmar, None);
        assert_eq!(t.trades, 7);
    }
}
