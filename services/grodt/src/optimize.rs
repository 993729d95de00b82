//! `grodt optimize`: starts a study on a running optimizer, follows it with
//! a progress bar (StreamProgress), and prints its best trials as a table.

use std::path::PathBuf;
use std::time::Duration;

use grodt_proto::v1;
use grodt_proto::v1::optimizer_service_client::OptimizerServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// The flags of `grodt optimize`.
#[derive(Debug, Clone, clap::Args)]
pub struct OptimizeOptions {
    /// gRPC address of the optimizer.
    #[arg(long, default_value = "127.0.0.1:50057")]
    pub addr: String,
    /// Dataset to backtest on (market-data's UUID or `source/SYMBOL/tf`); repeat for several instruments.
    #[arg(long = "dataset", required = true)]
    pub datasets: Vec<String>,
    /// A registered strategy (`grodt strategies ls`).
    #[arg(long)]
    pub strategy: String,
    /// A searched parameter: `NAME=MIN..MAX[:STEP]` (integers, or decimals
    /// when any bound has a point) or `NAME=A,B,C` (the values listed).
    #[arg(long = "param", value_name = "SPEC", required = true)]
    pub params: Vec<String>,
    /// A parameter fixed for every trial: `NAME=VALUE`.
    #[arg(long = "fixed", value_name = "NAME=VALUE")]
    pub fixed: Vec<String>,
    /// grid, random, genetic or bayes.
    #[arg(long, default_value = "grid")]
    pub method: String,
    /// sharpe, sortino, calmar, total_return or max_drawdown.
    #[arg(long, default_value = "sharpe")]
    pub objective: String,
    /// Minimise the objective instead of maximising it.
    #[arg(long)]
    pub minimize: bool,
    /// Trials with fewer closed trades fail.
    #[arg(long, default_value_t = 0)]
    pub min_trades: u32,
    /// Most trials (a grid must fit).
    #[arg(long, default_value_t = 1000)]
    pub max_trials: u32,
    /// Trials in flight (0: the service's default); with sweep jobs, jobs
    /// in flight.
    #[arg(long, default_value_t = 0)]
    pub batch: u32,
    /// Parameter sets per sweep job (0: the service's default, 256); only
    /// for strategies with a sweep kernel (sma_cross).
    #[arg(long, default_value_t = 0)]
    pub sweep_slice: u32,
    /// One backtest job per trial even when the strategy has a sweep kernel.
    #[arg(long)]
    pub per_trial_jobs: bool,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Starting cash of each backtest.
    #[arg(long, default_value = "100000")]
    pub cash: String,
    /// The study's id (idempotency key); default: assigned by the service.
    #[arg(long)]
    pub id: Option<String>,
    /// Rows of the final table.
    #[arg(long, default_value_t = 10)]
    pub top: u32,
    /// A file holding a bearer token (when the optimizer requires one).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// No progress bar (it is hidden anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// First bar of every backtest: 2024-01-01 or RFC 3339 (default: the
    /// data's first).
    #[arg(long)]
    pub from: Option<String>,
    /// End of every backtest, exclusive, same forms (default: the data's end).
    #[arg(long)]
    pub to: Option<String>,
    /// Walk-forward with this many folds over --from..--to: each fold
    /// searches its in-sample window and trades the best out of sample.
    #[arg(long, value_name = "FOLDS")]
    pub walk_forward: Option<u32>,
    /// In-sample share of each walk-forward window.
    #[arg(long, default_value_t = 0.7)]
    pub in_sample: f64,
    /// Anchored walk-forward: every in-sample window starts at --from.
    #[arg(long)]
    pub anchored: bool,
    /// Validation share of each walk-forward window, between training and
    /// test: the search's best candidates run there and the best of them is
    /// traded (0 = none).
    #[arg(long, default_value_t = 0.0)]
    pub validation: f64,
    /// Candidates run on each validation window (0 = 5).
    #[arg(long, default_value_t = 0)]
    pub candidates: u32,
    /// Explicit walk-forward windows instead of shares: training days
    /// (with --test-days; --walk-forward 0 = as many folds as fit).
    #[arg(long, value_name = "DAYS", requires = "test_days")]
    pub train_days: Option<f64>,
    /// Explicit validation days between training and test.
    #[arg(long, value_name = "DAYS", requires = "test_days")]
    pub validation_days: Option<f64>,
    /// Explicit test days (selects explicit windows).
    #[arg(long, value_name = "DAYS", requires = "train_days")]
    pub test_days: Option<f64>,
    /// Days from one test start to the next (default: --test-days).
    #[arg(long, value_name = "DAYS", requires = "test_days")]
    pub step_days: Option<f64>,
    /// Write an HTML report of the finished run here (convergence,
    /// heatmaps, best trials, walk-forward folds, Monte Carlo).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// Why `grodt optimize` failed.
#[derive(Debug, thiserror::Error)]
pub enum OptimizeCliError {
    /// A flag is malformed.
    #[error("{flag}: {reason}")]
    Arg {
        /// The flag.
        flag: &'static str,
        /// What it accepts.
        reason: String,
    },
    /// The token file could not be read.
    #[error("--token-file {path}: {source}")]
    Token {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The optimizer could not be reached.
    #[error("cannot reach the optimizer at {addr}: {reason}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The optimizer refused a call.
    #[error("{rpc}: {}", .status.message())]
    Rpc {
        /// The call.
        rpc: &'static str,
        /// Its status.
        status: tonic::Status,
    },
    /// The report could not be written.
    #[error("--report {path}: {source}")]
    Report {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The study ended without success.
    #[error("optimization {id} ended {state}: {reason}")]
    Ended {
        /// The study.
        id: String,
        /// How it ended.
        state: String,
        /// Why.
        reason: String,
    },
}

fn arg(flag: &'static str, reason: impl Into<String>) -> OptimizeCliError {
    OptimizeCliError::Arg {
        flag,
        reason: reason.into(),
    }
}

/// `NAME=MIN..MAX[:STEP]` or `NAME=A,B,C` as a wire range.
///
/// # Errors
/// A malformed spec, naming it.
pub fn parse_param(spec: &str) -> Result<v1::ParameterRange, OptimizeCliError> {
    let bad = |why: &str| arg("--param", format!("{spec:?}: {why}"));
    let (name, parts) = crate::param_spec::split(spec).map_err(bad)?;
    let range = match parts {
        crate::param_spec::Spec::Span { min, max, step } => {
            let ints = [Some(min), Some(max), step]
                .into_iter()
                .flatten()
                .all(|x| x.parse::<i64>().is_ok());
            if ints {
                let int = |x: &str| x.parse::<i64>().map_err(|_| bad("not an integer"));
                v1::parameter_range::Range::Integer(v1::IntegerRange {
                    min: int(min)?,
                    max: int(max)?,
                    step: step.map_or(Ok(1), int)?,
                })
            } else {
                let dec = |x: &str| {
                    grodt_proto::convert::parse_decimal(x)
                        .map(|_| v1::Decimal {
                            value: x.to_owned(),
                        })
                        .map_err(|_| bad("bounds and step must be numbers"))
                };
                v1::parameter_range::Range::Decimal(v1::DecimalRange {
                    min: Some(dec(min)?),
                    max: Some(dec(max)?),
                    step: Some(dec(step.ok_or_else(|| bad("a decimal range needs :STEP"))?)?),
                })
            }
        }
        crate::param_spec::Spec::Values(values) => {
            v1::parameter_range::Range::Choices(v1::ChoiceSet { values })
        }
    };
    Ok(v1::ParameterRange {
        name: name.to_owned(),
        range: Some(range),
    })
}

/// The start request the flags describe.
///
/// # Errors
/// A malformed flag.
pub fn request(o: &OptimizeOptions) -> Result<v1::StartOptimizationRequest, OptimizeCliError> {
    let method = match o.method.as_str() {
        "grid" => v1::SearchMethod::Grid,
        "random" => v1::SearchMethod::Random,
        "genetic" | "ga" => v1::SearchMethod::Genetic,
        "bayes" | "bayesian" => v1::SearchMethod::Bayesian,
        other => {
            return Err(arg(
                "--method",
                format!("{other:?}: one of grid, random, genetic, bayes"),
            ));
        }
    };
    let mut params = std::collections::HashMap::new();
    for f in &o.fixed {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| arg("--fixed", format!("{f:?}: want NAME=VALUE")))?;
        params.insert(k.to_owned(), v.to_owned());
    }
    let when = |flag: &'static str, text: &Option<String>| {
        text.as_deref()
            .map(|t| {
                crate::data::parse_instant(t).ok_or_else(|| {
                    arg(
                        flag,
                        format!("{t:?} is neither YYYY-MM-DD nor RFC 3339 (2024-01-01T12:00:00Z)"),
                    )
                })
            })
            .transpose()
    };
    let (from, to) = (when("--from", &o.from)?, when("--to", &o.to)?);
    let range = (from.is_some() || to.is_some()).then_some(v1::TimeRange {
        start: from,
        end: to,
    });
    Ok(v1::StartOptimizationRequest {
        optimization_id: o.id.clone().unwrap_or_default(),
        base: Some(v1::BacktestSpec {
            dataset_ids: o.datasets.clone(),
            strategy_name: o.strategy.clone(),
            range,
            params,
            initial_cash: Some(v1::Decimal {
                value: o.cash.clone(),
            }),
            ..v1::BacktestSpec::default()
        }),
        space: o
            .params
            .iter()
            .map(|p| parse_param(p))
            .collect::<Result<_, _>>()?,
        method: method as i32,
        objective: Some(v1::Objective {
            metric: o.objective.clone(),
            direction: if o.minimize {
                v1::ObjectiveDirection::Minimize
            } else {
                v1::ObjectiveDirection::Maximize
            } as i32,
            min_trades: o.min_trades,
        }),
        max_trials: o.max_trials,
        batch_size: o.batch,
        seed: o.seed,
        sweep_slice: o.sweep_slice,
        per_trial_jobs: o.per_trial_jobs,
        walk_forward: o.walk_forward.map(|folds| walk_forward_settings(o, folds)),
        ..v1::StartOptimizationRequest::default()
    })
}

/// The walk-forward settings of the flags: shares, or explicit lengths in
/// days (then both shares are 0).
fn walk_forward_settings(o: &OptimizeOptions, folds: u32) -> v1::WalkForwardSettings {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "days to whole seconds; negative or NaN become 0, which the service refuses by name"
    )]
    let secs = |days: Option<f64>| days.map_or(0, |d| (d * 86_400.0).round().max(0.0) as u64);
    let base = v1::WalkForwardSettings {
        folds,
        anchored: o.anchored,
        validation_candidates: o.candidates,
        ..v1::WalkForwardSettings::default()
    };
    if o.test_days.is_some() {
        v1::WalkForwardSettings {
            train_seconds: secs(o.train_days),
            validation_seconds: secs(o.validation_days),
            test_seconds: secs(o.test_days),
            step_seconds: secs(o.step_days),
            ..base
        }
    } else {
        v1::WalkForwardSettings {
            in_sample_fraction: o.in_sample,
            validation_fraction: o.validation,
            ..base
        }
    }
}

fn with_token<T>(
    msg: T,
    token: Option<&MetadataValue<tonic::metadata::Ascii>>,
) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut().insert("authorization", t.clone());
    }
    r
}

fn fmt_value(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "-".into()
    }
}

/// The final table: rank, trial, parameters, objective and a few metrics.
pub fn table(o: &v1::Optimization) -> String {
    use std::fmt::Write as _;
    let p = o.progress.unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "optimization {}  {}  trials {} ({} succeeded, {} failed)  best {}",
        o.optimization_id,
        v1::OptimizationState::try_from(o.state).map_or("?", |s| s.as_str_name()),
        p.trials_total,
        p.trials_succeeded,
        p.trials_failed,
        fmt_value(p.best_objective)
    );
    let _ = writeln!(
        out,
        "{:>4}  {:>6}  {:<32}  {:>10}  {:>7}  {:>9}  {:>9}",
        "rank", "trial", "params", "objective", "trades", "return", "max dd"
    );
    for (i, t) in o.top_trials.iter().enumerate() {
        let mut params: Vec<_> = t.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        params.sort();
        let m = t.metrics.clone().unwrap_or_default();
        let _ = writeln!(
            out,
            "{:>4}  {:>6}  {:<32}  {:>10}  {:>7}  {:>9}  {:>9}",
            i + 1,
            t.trial_id,
            params.join(" "),
            fmt_value(t.objective_value),
            m.closed_trade_count,
            fmt_value(m.total_return),
            fmt_value(m.max_drawdown)
        );
    }
    if let Some(r) = &o.recommendation {
        let mut params: Vec<_> = r.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        params.sort();
        let _ = writeln!(
            out,
            "recommended (stable region{}): {}  objective {}  neighbourhood mean {}  variance {}  ({} neighbours, {} failed)",
            if r.is_best { ", also the best" } else { "" },
            params.join(" "),
            fmt_value(r.objective_value),
            fmt_value(r.neighbourhood_mean),
            fmt_value(r.neighbourhood_variance),
            r.neighbours,
            r.failed_neighbours
        );
    }
    out
}

fn day(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map_or_else(|| "-".into(), |d| d.format("%Y-%m-%d").to_string())
}

/// The walk-forward table: one row per fold, then the stitched
/// out-of-sample figures and the stability of each parameter.
pub fn walk_forward_table(o: &v1::Optimization, wf: &v1::WalkForwardResult) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "walk-forward {}  {}  {} folds",
        o.optimization_id,
        v1::OptimizationState::try_from(o.state).map_or("?", |s| s.as_str_name()),
        wf.folds.len()
    );
    let _ = writeln!(
        out,
        "{:>4}  {:<23}  {:<23}  {:<28}  {:>10}  {:>10}  {:>9}",
        "fold", "in sample", "out of sample", "params", "in obj", "out obj", "out ret"
    );
    for f in &wf.folds {
        let mut params: Vec<_> = f.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        params.sort();
        let span = |r: &Option<v1::TimeRange>| {
            r.as_ref().map_or_else(
                || "-".into(),
                |r| format!("{}..{}", day(r.start.as_ref()), day(r.end.as_ref())),
            )
        };
        let ret = f
            .out_of_sample_metrics
            .as_ref()
            .map_or(f64::NAN, |m| m.total_return);
        let validated = f.validation.as_ref().map_or_else(String::new, |_| {
            format!(
                "  (validation {}: {}, in-sample rank {})",
                span(&f.validation),
                fmt_value(f.validation_objective),
                f.chosen_rank + 1
            )
        });
        let _ = writeln!(
            out,
            "{:>4}  {:<23}  {:<23}  {:<28}  {:>10}  {:>10}  {:>9}{}{}",
            f.fold,
            span(&f.in_sample),
            span(&f.out_of_sample),
            params.join(" "),
            fmt_value(f.in_sample_objective),
            fmt_value(f.out_of_sample_objective),
            fmt_value(ret),
            validated,
            if f.error.is_empty() {
                String::new()
            } else {
                format!("  ({})", f.error)
            }
        );
    }
    if let Some(m) = &wf.out_of_sample_metrics {
        let _ = writeln!(
            out,
            "out of sample, stitched: return {}  CAGR {}  Sharpe {}  max dd {}  efficiency {}",
            fmt_value(m.total_return),
            fmt_value(m.cagr),
            fmt_value(m.sharpe),
            fmt_value(m.max_drawdown),
            fmt_value(wf.efficiency)
        );
    }
    for s in &wf.stability {
        let _ = writeln!(
            out,
            "stability of {}: {} in {:.0}% of folds, coefficient of variation {}",
            s.parameter,
            s.modal_value,
            s.modal_share * 100.0,
            fmt_value(s.coefficient_of_variation)
        );
    }
    out
}

fn params_text(p: &std::collections::HashMap<String, String>) -> String {
    let mut v: Vec<_> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
    v.sort();
    v.join(" ")
}

/// The HTML report's content from the finished run (all its trials
/// fetched: `top_n` 1000).
pub fn report(o: &v1::Optimization) -> grodt_analytics::optreport::OptimizationReport {
    use grodt_analytics::optreport::{
        FoldRow, HeatmapPart, MonteCarloPart, OptimizationReport, SpreadRow, TrialPoint, TrialRow,
        WalkForwardPart,
    };
    let p = o.progress.unwrap_or_default();
    let state = v1::OptimizationState::try_from(o.state).map_or("?", |s| s.as_str_name());
    let mut summary = vec![
        ("state".to_owned(), state.to_owned()),
        (
            "trials".to_owned(),
            format!(
                "{} ({} succeeded, {} failed)",
                p.trials_total, p.trials_succeeded, p.trials_failed
            ),
        ),
        ("best objective".to_owned(), fmt_value(p.best_objective)),
    ];
    if let Some(req) = &o.request {
        let objective = req.objective.clone().unwrap_or_default();
        summary.push((
            "objective".to_owned(),
            format!(
                "{} ({})",
                objective.metric,
                v1::ObjectiveDirection::try_from(objective.direction)
                    .map_or("?", |d| d.as_str_name())
            ),
        ));
        if let Some(base) = &req.base {
            summary.push(("strategy".to_owned(), base.strategy_name.clone()));
            summary.push(("datasets".to_owned(), base.dataset_ids.join(", ")));
        }
        summary.push((
            "method".to_owned(),
            v1::SearchMethod::try_from(req.method)
                .map_or("?", |m| m.as_str_name())
                .to_owned(),
        ));
    }
    if !o.reason.is_empty() {
        summary.push(("reason".to_owned(), o.reason.clone()));
    }
    let mut finished: Vec<&v1::Trial> =
        o.top_trials.iter().filter(|t| t.finished_seq > 0).collect();
    finished.sort_by_key(|t| t.finished_seq);
    let best_params = o.top_trials.first().map(|t| t.params.clone());
    let heatmaps = o
        .heatmaps
        .iter()
        .map(|h| {
            let best = best_params.as_ref().and_then(|b| {
                let i = h
                    .x_values
                    .iter()
                    .position(|v| b.get(&h.x_parameter) == Some(v))?;
                let j = h
                    .y_values
                    .iter()
                    .position(|v| b.get(&h.y_parameter) == Some(v))?;
                Some((i, j))
            });
            HeatmapPart {
                x: h.x_parameter.clone(),
                y: h.y_parameter.clone(),
                x_values: h.x_values.clone(),
                y_values: h.y_values.clone(),
                values: h.values.clone(),
                best,
            }
        })
        .collect();
    let walk_forward = o.walk_forward.as_ref().map(|wf| {
        let span = |r: &Option<v1::TimeRange>| {
            r.as_ref().map_or_else(
                || "-".into(),
                |r| format!("{}..{}", day(r.start.as_ref()), day(r.end.as_ref())),
            )
        };
        let mut figures = vec![("efficiency".to_owned(), fmt_value(wf.efficiency))];
        if let Some(m) = &wf.out_of_sample_metrics {
            figures.push(("stitched return".to_owned(), fmt_value(m.total_return)));
            figures.push(("stitched CAGR".to_owned(), fmt_value(m.cagr)));
            figures.push(("stitched Sharpe".to_owned(), fmt_value(m.sharpe)));
            figures.push((
                "stitched max drawdown".to_owned(),
                fmt_value(m.max_drawdown),
            ));
        }
        WalkForwardPart {
            folds: wf
                .folds
                .iter()
                .map(|f| FoldRow {
                    fold: f.fold,
                    in_sample: span(&f.in_sample),
                    out_of_sample: span(&f.out_of_sample),
                    params: params_text(&f.params),
                    in_sample_objective: f.in_sample_objective,
                    out_of_sample_objective: f.out_of_sample_objective,
                    out_of_sample_return: f
                        .out_of_sample_metrics
                        .as_ref()
                        .map_or(f64::NAN, |m| m.total_return),
                    error: f.error.clone(),
                })
                .collect(),
            stitched: wf
                .stitched_equity
                .iter()
                .filter_map(|pt| {
                    let t = pt.timestamp.as_ref()?;
                    Some(grodt_analytics::EquityPoint {
                        ts: t.seconds.checked_mul(1_000_000_000)? + i64::from(t.nanos),
                        equity: pt.equity.as_ref()?.value.parse().ok()?,
                    })
                })
                .collect(),
            figures,
            stability: wf
                .stability
                .iter()
                .map(|s| {
                    (
                        s.parameter.clone(),
                        s.modal_value.clone(),
                        s.modal_share,
                        s.coefficient_of_variation,
                    )
                })
                .collect(),
        }
    });
    let monte_carlo = o.monte_carlo.as_ref().map(|mc| {
        let money = |d: &Option<v1::Decimal>| {
            d.as_ref()
                .and_then(|d| d.value.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        let method = v1::MonteCarloMethod::try_from(mc.method).map_or("?", |m| m.as_str_name());
        let mut rows = vec![
            SpreadRow {
                name: "final equity".into(),
                p5: money(&mc.final_equity_p5),
                p50: money(&mc.final_equity_p50),
                p95: money(&mc.final_equity_p95),
                observed: money(&mc.observed_final_equity),
                observed_percentile: mc.observed_final_percentile,
            },
            SpreadRow {
                name: "max drawdown".into(),
                p5: mc.max_drawdown_p5,
                p50: mc.max_drawdown_p50,
                p95: mc.max_drawdown_p95,
                observed: mc.observed_max_drawdown,
                observed_percentile: mc.observed_drawdown_percentile,
            },
        ];
        if mc.objective_scored > 0 {
            rows.push(SpreadRow {
                name: format!(
                    "objective (degradation {})",
                    fmt_value(mc.objective_degradation)
                ),
                p5: mc.objective_p5,
                p50: mc.objective_p50,
                p95: mc.objective_p95,
                observed: mc.objective_observed,
                observed_percentile: mc.objective_observed_percentile,
            });
        }
        MonteCarloPart {
            method: format!("{method}, {} simulations", mc.simulations),
            rows,
            probability_of_loss: mc.probability_of_loss,
            error: mc.error.clone(),
        }
    });
    OptimizationReport {
        title: format!("Optimization {}", o.optimization_id),
        summary,
        trials: finished
            .iter()
            .map(|t| TrialPoint {
                objective: t.objective_value.is_finite().then_some(t.objective_value),
            })
            .collect(),
        top: o
            .top_trials
            .iter()
            .filter(|t| t.objective_value.is_finite())
            .take(20)
            .map(|t| {
                let m = t.metrics.clone().unwrap_or_default();
                TrialRow {
                    id: t.trial_id.clone(),
                    params: params_text(&t.params),
                    objective: t.objective_value,
                    trades: m.closed_trade_count,
                    total_return: m.total_return,
                    max_drawdown: m.max_drawdown,
                }
            })
            .collect(),
        heatmaps,
        recommendation: o.recommendation.as_ref().map(|r| {
            format!(
                "{}: objective {}, neighbourhood mean {} (variance {}, {} neighbours, {} failed){}",
                params_text(&r.params),
                fmt_value(r.objective_value),
                fmt_value(r.neighbourhood_mean),
                fmt_value(r.neighbourhood_variance),
                r.neighbours,
                r.failed_neighbours,
                if r.is_best {
                    "; also the best trial"
                } else {
                    ""
                }
            )
        }),
        walk_forward,
        monte_carlo,
    }
}

/// Runs `grodt optimize`: the table of the ended study.
///
/// # Errors
/// A malformed flag, an unreachable or refusing optimizer, or a study that
/// ended FAILED or CANCELLED.
pub async fn command(o: &OptimizeOptions) -> Result<String, OptimizeCliError> {
    let req = request(o)?;
    let token = match &o.token_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| OptimizeCliError::Token {
                path: path.display().to_string(),
                source,
            })?;
            Some(
                format!("Bearer {}", text.trim())
                    .parse::<MetadataValue<_>>()
                    .map_err(|_| arg("--token-file", "the token is not printable ASCII"))?,
            )
        }
    };
    let uri = if o.addr.contains("://") {
        o.addr.clone()
    } else {
        format!("http://{}", o.addr)
    };
    let connect = |reason: String| OptimizeCliError::Connect {
        addr: o.addr.clone(),
        reason,
    };
    let channel = Channel::from_shared(uri)
        .map_err(|e| connect(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| connect(e.to_string()))?;
    let mut client = OptimizerServiceClient::new(channel);
    let started = client
        .start_optimization(with_token(req, token.as_ref()))
        .await
        .map_err(|status| OptimizeCliError::Rpc {
            rpc: "StartOptimization",
            status,
        })?
        .into_inner()
        .optimization
        .unwrap_or_default();
    let id = started.optimization_id.clone();
    let total = started.progress.map_or(0, |p| p.trials_total);
    let bar = if o.no_progress {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(u64::from(total));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} trials [{bar:30}] {elapsed_precise} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    };
    let mut stream = client
        .stream_progress(v1::StreamProgressRequest {
            optimization_id: id.clone(),
        })
        .await
        .map_err(|status| OptimizeCliError::Rpc {
            rpc: "StreamProgress",
            status,
        })?
        .into_inner();
    while let Some(update) = stream
        .message()
        .await
        .map_err(|status| OptimizeCliError::Rpc {
            rpc: "StreamProgress",
            status,
        })?
    {
        if let Some(p) = update.progress {
            bar.set_length(u64::from(p.trials_total));
            bar.set_position(u64::from(p.trials_succeeded + p.trials_failed));
            bar.set_message(format!(
                "best {}  workers busy {}  waiting {}",
                fmt_value(p.best_objective),
                p.workers_busy,
                p.jobs_waiting
            ));
        }
    }
    bar.finish_and_clear();
    let done = client
        .get_optimization(v1::GetOptimizationRequest {
            optimization_id: id.clone(),
            // The report's convergence curve needs every finished trial.
            top_n: if o.report.is_some() { 1000 } else { o.top },
        })
        .await
        .map_err(|status| OptimizeCliError::Rpc {
            rpc: "GetOptimization",
            status,
        })?
        .into_inner()
        .optimization
        .unwrap_or_default();
    if let Some(path) = &o.report {
        let html = grodt_analytics::optreport::render_optimization_html(&report(&done));
        std::fs::write(path, html).map_err(|source| OptimizeCliError::Report {
            path: path.display().to_string(),
            source,
        })?;
    }
    let mut done = done;
    done.top_trials.truncate(o.top as usize);
    if done.state != v1::OptimizationState::Succeeded as i32 {
        return Err(OptimizeCliError::Ended {
            id,
            state: v1::OptimizationState::try_from(done.state)
                .map_or("?", |s| s.as_str_name())
                .to_owned(),
            reason: done.reason,
        });
    }
    Ok(match &done.walk_forward {
        Some(wf) => walk_forward_table(&done, wf),
        None => table(&done),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> OptimizeOptions {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            o: OptimizeOptions,
        }
        <Cli as clap::Parser>::try_parse_from(
            std::iter::once("optimize").chain(args.iter().copied()),
        )
        .expect("flags parse")
        .o
    }

    #[test]
    fn walk_forward_flags_become_shares_or_lengths() {
        let base = [
            "--strategy",
            "sma_cross",
            "--dataset",
            "a/B/1d",
            "--param",
            "fast=5..10",
            "--walk-forward",
        ];
        let shares = parsed(
            &[
                &base[..],
                &[
                    "3",
                    "--in-sample",
                    "0.6",
                    "--validation",
                    "0.1",
                    "--candidates",
                    "4",
                ],
            ]
            .concat(),
        );
        let w = walk_forward_settings(&shares, 3);
        assert_eq!(
            (w.folds, w.in_sample_fraction, w.validation_fraction),
            (3, 0.6, 0.1)
        );
        assert_eq!((w.validation_candidates, w.test_seconds), (4, 0));
        let lengths = parsed(
            &[
                &base[..],
                &[
                    "0",
                    "--train-days",
                    "200",
                    "--validation-days",
                    "20",
                    "--test-days",
                    "60",
                    "--step-days",
                    "90",
                ],
            ]
            .concat(),
        );
        let w = walk_forward_settings(&lengths, 0);
        assert_eq!((w.in_sample_fraction, w.validation_fraction), (0.0, 0.0));
        assert_eq!(
            (
                w.train_seconds,
                w.validation_seconds,
                w.test_seconds,
                w.step_seconds
            ),
            (200 * 86_400, 20 * 86_400, 60 * 86_400, 90 * 86_400)
        );
    }

    #[test]
    fn parameter_specs_become_ranges() {
        let r = parse_param("fast=5..50:5").unwrap();
        assert_eq!(
            r.range,
            Some(v1::parameter_range::Range::Integer(v1::IntegerRange {
                min: 5,
                max: 50,
                step: 5
            }))
        );
        let r = parse_param("fraction=0.1..0.9:0.2").unwrap();
        let Some(v1::parameter_range::Range::Decimal(d)) = r.range else {
            panic!("decimal range");
        };
        assert_eq!(d.step.unwrap().value, "0.2");
        let r = parse_param("mode=a,b").unwrap();
        assert_eq!(
            r.range,
            Some(v1::parameter_range::Range::Choices(v1::ChoiceSet {
                values: vec!["a".into(), "b".into()]
            }))
        );
        for bad in ["fast", "=1..2", "x=0.1..0.5", "x=a..b:1", "x=a,,b"] {
            let e = parse_param(bad).expect_err(bad).to_string();
            assert!(e.starts_with("--param"), "{e}");
        }
    }
}
