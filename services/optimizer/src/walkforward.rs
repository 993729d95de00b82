//! Walk-forward runs: a parent that owns one in-sample study per fold (an
//! ordinary run, `<id>-f<k>`, over the fold's in-sample window) and, once a
//! fold's study has ended, one out-of-sample backtest of its best
//! parameters over the window after it. With a validation window between
//! the two, the study's best candidates first run on it (trial ids
//! `wf-val-<fold>-<rank>`) and the one that does best there is traded. The windows and the aggregation are
//! `grodt_optimize::walkforward`'s; this module holds the parent's state,
//! its journaled inputs' effects and its wire form.
//!
//! No bar of a fold's out-of-sample window reaches its search: the fold's
//! study runs with `base.range` set to the in-sample window (half-open, and
//! ending where the out-of-sample window starts), so every trial's job loads
//! only in-sample bars; the choice is read off that study alone.

use std::collections::{BTreeMap, BTreeSet};

use grodt_analytics::metrics::{EquityPoint, MetricsConfig};
use grodt_kit::journal::StoredEvent;
use grodt_optimize::walkforward::{self, FoldResult, Summary, Window, WindowSpec};
use grodt_optimize::{Objective, Params};
use grodt_proto::v1;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use serde::{Deserialize, Serialize};

use crate::convert;
use crate::engine::Run;
use crate::error::OptimizerError;

/// The trial id an out-of-sample job carries: `wf-oos-<fold>`.
pub const OOS_PREFIX: &str = "wf-oos-";
/// The trial id a validation job carries: `wf-val-<fold>-<rank>`.
pub const VAL_PREFIX: &str = "wf-val-";
/// Candidates run on a validation window when the request leaves it 0.
pub const DEFAULT_CANDIDATES: u32 = 5;
/// Most candidates.
pub const MAX_CANDIDATES: u32 = 50;

/// What a walk-forward job is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WfJob {
    /// Fold `0`'s test run.
    OutOfSample(u32),
    /// Fold `0`'s candidate of in-sample rank `1` on the validation window.
    Validation(u32, u32),
}

impl WfJob {
    /// Parses a walk-forward trial id.
    pub fn parse(trial_id: &str) -> Option<Self> {
        if let Some(k) = trial_id.strip_prefix(OOS_PREFIX) {
            return k.parse().ok().map(Self::OutOfSample);
        }
        let (k, r) = trial_id.strip_prefix(VAL_PREFIX)?.split_once('-')?;
        Some(Self::Validation(k.parse().ok()?, r.parse().ok()?))
    }

    /// Its trial id.
    pub fn trial_id(self) -> String {
        match self {
            Self::OutOfSample(k) => format!("{OOS_PREFIX}{k}"),
            Self::Validation(k, r) => format!("{VAL_PREFIX}{k}-{r}"),
        }
    }
}

/// A checked walk-forward request.
#[derive(Debug, Clone)]
pub struct WfPlan {
    /// The folds' windows.
    pub windows: Vec<Window>,
    /// The request of each fold's in-sample study.
    pub searches: Vec<v1::StartOptimizationRequest>,
    /// How trials and out-of-sample runs are scored (maximised).
    pub objective: Objective,
    /// -1 when the request minimises.
    pub sign: f64,
    /// Candidates run on each validation window (when there is one).
    pub candidates: u32,
}

fn ns(t: Option<&prost_types::Timestamp>) -> Option<i64> {
    t.and_then(|t| {
        t.seconds
            .checked_mul(1_000_000_000)?
            .checked_add(i64::from(t.nanos))
    })
}

fn ts(ns: i64) -> prost_types::Timestamp {
    grodt_proto::convert::datetime_to_timestamp(chrono::DateTime::from_timestamp_nanos(ns))
}

/// The id of fold `k`'s in-sample study.
pub fn search_id(id: &str, fold: u32) -> String {
    format!("{id}-f{fold}")
}

/// Checks a walk-forward request: the settings, `base.range`, what it may
/// not be combined with, and (through the first fold's study plan) the
/// space, search and objective.
///
/// # Errors
/// INVALID_ARGUMENT naming the field.
pub fn plan(req: &v1::StartOptimizationRequest) -> Result<WfPlan, OptimizerError> {
    let settings = req
        .walk_forward
        .ok_or_else(|| OptimizerError::invalid("walk_forward", "required"))?;
    if req.monte_carlo.is_some() {
        return Err(OptimizerError::invalid(
            "monte_carlo",
            "not with walk_forward (run it on a fold's study)",
        ));
    }
    if req.sensitivity {
        return Err(OptimizerError::invalid(
            "sensitivity",
            "not with walk_forward (run it on a fold's study)",
        ));
    }
    let base = req
        .base
        .as_ref()
        .ok_or_else(|| OptimizerError::invalid("base", "required"))?;
    let range = base.range.as_ref();
    let (Some(start), Some(end)) = (
        ns(range.and_then(|r| r.start.as_ref())),
        ns(range.and_then(|r| r.end.as_ref())),
    ) else {
        return Err(OptimizerError::invalid(
            "base.range",
            "walk-forward needs a start and an end to split",
        ));
    };
    let secs = |field: &'static str, v: u64| {
        i64::try_from(v)
            .ok()
            .and_then(|v| v.checked_mul(1_000_000_000))
            .ok_or_else(|| OptimizerError::invalid(field, "too long"))
    };
    let explicit = settings.train_seconds > 0
        || settings.validation_seconds > 0
        || settings.test_seconds > 0
        || settings.step_seconds > 0;
    let lengths = if explicit {
        Some(walkforward::Lengths {
            train: secs("walk_forward.train_seconds", settings.train_seconds)?,
            validation: secs(
                "walk_forward.validation_seconds",
                settings.validation_seconds,
            )?,
            test: secs("walk_forward.test_seconds", settings.test_seconds)?,
            step: secs("walk_forward.step_seconds", settings.step_seconds)?,
        })
    } else {
        None
    };
    if settings.validation_candidates > MAX_CANDIDATES {
        return Err(OptimizerError::invalid(
            "walk_forward.validation_candidates",
            format!("must be in 0..={MAX_CANDIDATES} (0 = {DEFAULT_CANDIDATES})"),
        ));
    }
    let windows = walkforward::windows(
        start,
        end,
        &WindowSpec {
            folds: settings.folds,
            in_sample_fraction: settings.in_sample_fraction,
            validation_fraction: settings.validation_fraction,
            anchored: settings.anchored,
            lengths,
        },
    )
    .map_err(|e| match e {
        walkforward::WalkForwardError::Invalid { field, reason } => {
            OptimizerError::invalid(field, reason)
        }
        other => OptimizerError::invalid("walk_forward", other),
    })?;
    let searches: Vec<v1::StartOptimizationRequest> = windows
        .iter()
        .map(|w| {
            let mut r = req.clone();
            r.optimization_id = search_id(&req.optimization_id, w.fold);
            r.walk_forward = None;
            if let Some(b) = r.base.as_mut() {
                b.range = Some(v1::TimeRange {
                    start: Some(ts(w.in_sample.0)),
                    end: Some(ts(w.in_sample.1)),
                });
            }
            r
        })
        .collect();
    // The space, search and objective as every fold's study will see them.
    let first = convert::plan(&searches[0])?;
    let (objective, sign) = (first.config.objective.clone(), first.sign);
    let candidates = match settings.validation_candidates {
        0 => DEFAULT_CANDIDATES,
        n => n,
    };
    Ok(WfPlan {
        windows,
        searches,
        objective,
        sign,
        candidates,
    })
}

/// One fold's parameters, chosen in sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chosen {
    /// The best trial's parameters.
    pub params: Params,
    /// Its objective, as the study scored it (maximised).
    pub score: f64,
    /// Its rank in the study (0 = the best).
    #[serde(default)]
    pub rank: u32,
    /// Its objective on the validation window (maximised), when it ran there.
    #[serde(default)]
    pub validation: Option<f64>,
}

/// One fold's out-of-sample run.
#[derive(Debug, Clone, PartialEq)]
pub struct OutOfSample {
    /// Its metrics.
    pub metrics: v1::Metrics,
    /// The objective of those metrics (maximised); `None` when undefined.
    pub score: Option<f64>,
    /// Its equity curve.
    pub curve: Vec<EquityPoint>,
}

/// A candidate's validation run: its objective (maximised; `None` when
/// undefined there), or why the run failed.
pub type Validation = Result<Option<f64>, String>;

/// Where one fold stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fold {
    /// With a validation window: the study's best trials, best first, once
    /// it ended, and each one's validation outcome as it comes (the score,
    /// `None` when undefined; `Err` when its run failed).
    pub candidates: Vec<(Chosen, Option<Validation>)>,
    /// Set once its study ended with a best trial (with a validation
    /// window: once every candidate ran there).
    pub chosen: Option<Chosen>,
    /// Set once the fold is done: its out-of-sample run, or why it has none.
    pub outcome: Option<Result<OutOfSample, String>>,
}

/// A walk-forward run.
#[derive(Debug, Clone)]
pub struct Wf {
    /// Its id.
    pub id: String,
    /// The request as received.
    pub request: v1::StartOptimizationRequest,
    /// The folds' windows.
    pub windows: Vec<Window>,
    /// The folds.
    pub folds: Vec<Fold>,
    /// Scores trials and out-of-sample runs alike.
    objective: Objective,
    /// -1 when the request minimises.
    pub sign: f64,
    /// When it started, ns.
    pub created_at_ns: i64,
    /// When it ended, ns.
    pub finished_at_ns: Option<i64>,
    /// Set when cancelled: why.
    pub cancelled: Option<String>,
    /// Candidates run on each validation window.
    candidates: u32,
    /// Out-of-sample jobs not answered yet, by fold.
    jobs: BTreeMap<u32, StoredEvent>,
    /// Folds whose job is not known to be on the bus.
    pub unsent: BTreeSet<u32>,
    /// Validation jobs not answered yet, by (fold, rank).
    val_jobs: BTreeMap<(u32, u32), StoredEvent>,
    /// Validation jobs not known to be on the bus.
    val_unsent: BTreeSet<(u32, u32)>,
}

/// The parent's journaled inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "wf", rename_all = "snake_case")]
pub enum WfInput {
    /// A walk-forward request accepted (its studies are started by inputs
    /// of their own).
    Start {
        id: String,
        /// `StartOptimizationRequest`, protobuf, hex.
        request: String,
        at_ns: i64,
    },
    /// Fold `fold`'s study has ended: choose its best and send the
    /// out-of-sample job (with a validation window: send its best
    /// candidates' validation jobs).
    Chosen { id: String, fold: u32, at_ns: i64 },
    /// Candidate `rank` of fold `fold` on the validation window; the last
    /// one in chooses and sends the out-of-sample job.
    Validated {
        id: String,
        fold: u32,
        rank: u32,
        ok: bool,
        error: String,
        /// `Metrics`, protobuf, hex.
        metrics: Option<String>,
        at_ns: i64,
    },
    /// Fold `fold`'s out-of-sample result.
    OutOfSample {
        id: String,
        fold: u32,
        ok: bool,
        error: String,
        /// `Metrics`, protobuf, hex.
        metrics: Option<String>,
        /// (ns, equity) of the out-of-sample equity curve.
        curve: Vec<(i64, f64)>,
        at_ns: i64,
    },
    /// These folds' jobs are on the bus (out-of-sample by fold, validation
    /// by fold and rank).
    Published {
        id: String,
        folds: Vec<u32>,
        #[serde(default)]
        validations: Vec<(u32, u32)>,
    },
    /// Cancelled (its studies are cancelled by inputs of their own).
    Cancel {
        id: String,
        reason: String,
        at_ns: i64,
    },
}

impl WfInput {
    /// The run it concerns.
    pub fn id(&self) -> &str {
        match self {
            Self::Start { id, .. }
            | Self::Chosen { id, .. }
            | Self::Validated { id, .. }
            | Self::OutOfSample { id, .. }
            | Self::Published { id, .. }
            | Self::Cancel { id, .. } => id,
        }
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> OptimizerError {
    OptimizerError::Corrupt(format!("{what}: {e}"))
}

fn decode_hex<M: prost::Message + Default>(what: &str, text: &str) -> Result<M, OptimizerError> {
    let bytes = hex::decode(text).map_err(|e| corrupt(what, e))?;
    M::decode(bytes.as_slice()).map_err(|e| corrupt(what, e))
}

impl Wf {
    /// Running until every fold is done (or cancelled and drained).
    pub fn state(&self) -> grodt_optimize::StudyState {
        if self.cancelled.is_some() {
            grodt_optimize::StudyState::Cancelled
        } else if self.folds.iter().all(|f| f.outcome.is_some()) {
            if self.folds.iter().any(|f| matches!(f.outcome, Some(Ok(_)))) {
                grodt_optimize::StudyState::Succeeded
            } else {
                grodt_optimize::StudyState::Failed
            }
        } else {
            grodt_optimize::StudyState::Running
        }
    }

    /// Out-of-sample and validation jobs in flight.
    pub fn in_flight(&self) -> usize {
        self.jobs.len() + self.val_jobs.len()
    }

    /// Whether a result for `job` is awaited.
    pub fn awaits(&self, job: WfJob) -> bool {
        match job {
            WfJob::OutOfSample(k) => self
                .folds
                .get(k as usize)
                .is_some_and(|f| f.chosen.is_some() && f.outcome.is_none()),
            WfJob::Validation(k, r) => self.folds.get(k as usize).is_some_and(|f| {
                f.chosen.is_none()
                    && f.outcome.is_none()
                    && f.candidates.get(r as usize).is_some_and(|c| c.1.is_none())
            }),
        }
    }

    /// Fold `k`'s study id.
    pub fn search_id(&self, fold: u32) -> String {
        search_id(&self.id, fold)
    }

    /// The folds whose study has ended but which have no choice yet.
    pub fn ready(&self, runs: &BTreeMap<String, Run>) -> Vec<u32> {
        if self.cancelled.is_some() {
            return Vec::new();
        }
        self.windows
            .iter()
            .filter(|w| {
                let f = &self.folds[w.fold as usize];
                f.chosen.is_none()
                    && f.outcome.is_none()
                    && f.candidates.is_empty()
                    && runs
                        .get(&self.search_id(w.fold))
                        .is_some_and(|r| r.state().is_terminal() && r.in_flight() == 0)
            })
            .map(|w| w.fold)
            .collect()
    }

    /// The job of `which` (the out-of-sample run of a fold, or a
    /// candidate's validation run) with `params`, and its journaled event.
    fn job(&self, which: WfJob, search: &Run, params: &Params, at_ns: i64) -> StoredEvent {
        let (fold, oos) = match which {
            WfJob::OutOfSample(k) => (k, true),
            WfJob::Validation(k, _) => (k, false),
        };
        let w = self.windows[fold as usize];
        let mut spec = search.base().clone();
        for (k, v) in params {
            spec.params.insert(k.clone(), v.clone());
        }
        let (a, b) = if oos {
            w.out_of_sample
        } else {
            w.validation.unwrap_or(w.out_of_sample)
        };
        spec.range = Some(v1::TimeRange {
            start: Some(ts(a)),
            end: Some(ts(b)),
        });
        // Warm indicators at the window's first bar, from the bars before it.
        let all: Params = spec.params.clone().into_iter().collect();
        spec.warmup_bars = walkforward::warmup_bars(&spec.strategy_name, &all);
        let id = convert::backtest_id(&spec);
        let job = v1::BacktestJob {
            // Its own id: the trials' results keep no equity curve.
            backtest_id: if oos { format!("{id}-oos") } else { id },
            spec: Some(spec),
            detail: Some(v1::ResultDetail {
                trades: false,
                fills: false,
                equity_curve: oos,
            }),
            optimization_id: self.id.clone(),
            trial_id: which.trial_id(),
            submitted_at: Some(ts(at_ns)),
            sweep: None,
        };
        let source = match which {
            WfJob::OutOfSample(k) => format!("optimizer:wf-oos:{}:{k}", self.id),
            WfJob::Validation(k, r) => format!("optimizer:wf-val:{}:{k}:{r}", self.id),
        };
        crate::engine::stored_job(&job, &source, at_ns)
    }

    /// Chooses fold `k`'s candidate once every one ran on the validation
    /// window: the best validation objective (ties and undefined ones: the
    /// better in-sample rank; none defined: the in-sample best), and sends
    /// its out-of-sample job.
    fn choose_validated(&mut self, search: &Run, fold: u32, at_ns: i64) -> Vec<StoredEvent> {
        let f = &self.folds[fold as usize];
        if f.candidates.iter().any(|c| c.1.is_none()) {
            return Vec::new();
        }
        let scores: Vec<Option<f64>> = f
            .candidates
            .iter()
            .map(|(_, o)| match o {
                Some(Ok(v)) => *v,
                _ => None,
            })
            .collect();
        let pick = walkforward::pick_validated(&scores);
        let r = pick.map_or(0, |(r, _)| r);
        let mut chosen = f.candidates[r].0.clone();
        chosen.validation = pick.map(|(_, v)| v);
        self.send_oos(search, fold, chosen, at_ns)
    }

    /// Records fold `k`'s choice and sends its out-of-sample job.
    fn send_oos(
        &mut self,
        search: &Run,
        fold: u32,
        chosen: Chosen,
        at_ns: i64,
    ) -> Vec<StoredEvent> {
        let ev = self.job(WfJob::OutOfSample(fold), search, &chosen.params, at_ns);
        self.folds[fold as usize].chosen = Some(chosen);
        self.jobs.insert(fold, ev.clone());
        self.unsent.insert(fold);
        vec![ev]
    }

    fn settle(&mut self, at_ns: i64) {
        let done: Vec<u32> = self
            .folds
            .iter()
            .enumerate()
            .filter(|(_, f)| f.outcome.is_some())
            .map(|(k, _)| k as u32)
            .collect();
        for k in done {
            self.jobs.remove(&k);
            self.unsent.remove(&k);
        }
        // A fold past validation (chosen or done) awaits none of its runs.
        let past: BTreeSet<u32> = self
            .folds
            .iter()
            .enumerate()
            .filter(|(_, f)| f.chosen.is_some() || f.outcome.is_some())
            .map(|(k, _)| k as u32)
            .collect();
        self.val_jobs.retain(|(k, _), _| !past.contains(k));
        self.val_unsent.retain(|(k, _)| !past.contains(k));
        if self.cancelled.is_some() {
            self.jobs.clear();
            self.unsent.clear();
            self.val_jobs.clear();
            self.val_unsent.clear();
        }
        if self.state().is_terminal() && self.finished_at_ns.is_none() {
            self.finished_at_ns = Some(at_ns);
        }
    }

    /// The unanswered jobs not known to be on the bus.
    pub fn unsent_jobs(&self) -> Vec<StoredEvent> {
        self.val_unsent
            .iter()
            .filter_map(|k| self.val_jobs.get(k).cloned())
            .chain(self.unsent.iter().filter_map(|k| self.jobs.get(k).cloned()))
            .collect()
    }

    /// What a job event is for.
    pub fn job_of_event(&self, event_id: uuid::Uuid) -> Option<WfJob> {
        self.jobs
            .iter()
            .find(|(_, j)| j.event_id == event_id)
            .map(|(k, _)| WfJob::OutOfSample(*k))
            .or_else(|| {
                self.val_jobs
                    .iter()
                    .find(|(_, j)| j.event_id == event_id)
                    .map(|(&(k, r), _)| WfJob::Validation(k, r))
            })
    }

    /// The folds' results so far, for the summary (folds without an
    /// out-of-sample run are left out).
    fn fold_results(&self) -> Vec<FoldResult> {
        self.folds
            .iter()
            .filter_map(|f| match (&f.chosen, &f.outcome) {
                (Some(c), Some(Ok(o))) => Some(FoldResult {
                    params: c.params.clone(),
                    in_sample_objective: c.score * self.sign,
                    out_of_sample_objective: o.score.map(|s| s * self.sign),
                    curve: o.curve.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// The summary once every fold is done (`None` before, or when no fold
    /// traded out of sample).
    pub fn summary(&self) -> Option<Result<Summary, String>> {
        if self.folds.iter().any(|f| f.outcome.is_none()) {
            return None;
        }
        let results = self.fold_results();
        if results.is_empty() {
            return None;
        }
        let ppy = self
            .folds
            .iter()
            .find_map(|f| match &f.outcome {
                Some(Ok(o)) if o.metrics.periods_per_year > 0 => {
                    Some(f64::from(o.metrics.periods_per_year))
                }
                _ => None,
            })
            .unwrap_or(252.0);
        let annual_rf = self
            .request
            .base
            .as_ref()
            .and_then(|b| b.risk_free_rate.as_ref())
            .and_then(|d| d.value.parse::<f64>().ok())
            .unwrap_or(0.0);
        let config = MetricsConfig {
            periods_per_year: ppy,
            ..MetricsConfig::equities_daily()
        }
        .with_annual_risk_free(annual_rf);
        Some(walkforward::summarize(&results, &config).map_err(|e| e.to_string()))
    }
}

/// Applies a parent's input to (a copy of) it: the new parent and the jobs
/// to publish. `runs` are the studies (for the folds' choices).
///
/// # Errors
/// NOT_FOUND for an unknown parent, or the journal holds something that does
/// not decode.
pub fn apply(
    wfs: &BTreeMap<String, Wf>,
    runs: &BTreeMap<String, Run>,
    input: &WfInput,
) -> Result<(Wf, Vec<StoredEvent>, bool), OptimizerError> {
    let existing = |id: &str| {
        wfs.get(id)
            .cloned()
            .ok_or_else(|| OptimizerError::NotFound(id.to_owned()))
    };
    match input {
        WfInput::Start { id, request, at_ns } => {
            let request: v1::StartOptimizationRequest = decode_hex("start request", request)?;
            let p = plan(&request)?;
            let folds = vec![Fold::default(); p.windows.len()];
            Ok((
                Wf {
                    id: id.clone(),
                    request,
                    windows: p.windows,
                    folds,
                    objective: p.objective,
                    sign: p.sign,
                    created_at_ns: *at_ns,
                    finished_at_ns: None,
                    cancelled: None,
                    candidates: p.candidates,
                    jobs: BTreeMap::new(),
                    unsent: BTreeSet::new(),
                    val_jobs: BTreeMap::new(),
                    val_unsent: BTreeSet::new(),
                },
                Vec::new(),
                true,
            ))
        }
        WfInput::Chosen { id, fold, at_ns } => {
            let mut wf = existing(id)?;
            let k = *fold as usize;
            let f = wf
                .folds
                .get(k)
                .ok_or_else(|| corrupt("fold", format!("{id} has no fold {k}")))?;
            if f.chosen.is_some()
                || f.outcome.is_some()
                || !f.candidates.is_empty()
                || wf.cancelled.is_some()
            {
                return Ok((wf, Vec::new(), false));
            }
            let search_id = wf.search_id(*fold);
            let search = runs
                .get(&search_id)
                .ok_or_else(|| OptimizerError::NotFound(search_id.clone()))?;
            let Some(best) = search.study.best() else {
                wf.folds[k].outcome = Some(Err(format!(
                    "no trial of the in-sample search {search_id} succeeded"
                )));
                wf.settle(*at_ns);
                return Ok((wf, Vec::new(), true));
            };
            if wf.windows[k].validation.is_none() {
                let chosen = Chosen {
                    params: best.trial.params.clone(),
                    score: best.objective.unwrap_or(f64::NAN),
                    rank: 0,
                    validation: None,
                };
                let events = wf.send_oos(search, *fold, chosen, *at_ns);
                return Ok((wf, events, true));
            }
            // The best candidates run on the validation window first.
            let top: Vec<Chosen> = search
                .study
                .top(wf.candidates as usize)
                .into_iter()
                .enumerate()
                .map(|(r, t)| Chosen {
                    params: t.trial.params.clone(),
                    score: t.objective.unwrap_or(f64::NAN),
                    rank: r as u32,
                    validation: None,
                })
                .collect();
            let mut events = Vec::new();
            for c in &top {
                let which = WfJob::Validation(*fold, c.rank);
                let ev = wf.job(which, search, &c.params, *at_ns);
                wf.val_jobs.insert((*fold, c.rank), ev.clone());
                wf.val_unsent.insert((*fold, c.rank));
                events.push(ev);
            }
            wf.folds[k].candidates = top.into_iter().map(|c| (c, None)).collect();
            Ok((wf, events, true))
        }
        WfInput::Validated {
            id,
            fold,
            rank,
            ok,
            error,
            metrics,
            at_ns,
        } => {
            let mut wf = existing(id)?;
            if !wf.awaits(WfJob::Validation(*fold, *rank)) {
                return Ok((wf, Vec::new(), false));
            }
            let metrics: Option<v1::Metrics> = metrics
                .as_deref()
                .map(|m| decode_hex("validation metrics", m))
                .transpose()?;
            let outcome = match (metrics, ok) {
                (Some(m), true) => Ok(wf.objective.score(&convert::trial_metrics(&m))),
                _ => Err(if error.is_empty() {
                    "the validation backtest failed".to_owned()
                } else {
                    error.clone()
                }),
            };
            wf.folds[*fold as usize].candidates[*rank as usize].1 = Some(outcome);
            wf.val_jobs.remove(&(*fold, *rank));
            wf.val_unsent.remove(&(*fold, *rank));
            let search_id = wf.search_id(*fold);
            let search = runs
                .get(&search_id)
                .ok_or_else(|| OptimizerError::NotFound(search_id.clone()))?;
            let events = wf.choose_validated(search, *fold, *at_ns);
            Ok((wf, events, true))
        }
        WfInput::OutOfSample {
            id,
            fold,
            ok,
            error,
            metrics,
            curve,
            at_ns,
        } => {
            let mut wf = existing(id)?;
            let k = *fold as usize;
            let Some(f) = wf.folds.get(k) else {
                return Err(corrupt("fold", format!("{id} has no fold {k}")));
            };
            if f.chosen.is_none() || f.outcome.is_some() {
                return Ok((wf, Vec::new(), false));
            }
            let metrics: Option<v1::Metrics> = metrics
                .as_deref()
                .map(|m| decode_hex("out-of-sample metrics", m))
                .transpose()?;
            let outcome = match (metrics, ok) {
                (Some(m), true) => Ok(OutOfSample {
                    score: wf.objective.score(&convert::trial_metrics(&m)),
                    metrics: m,
                    curve: curve
                        .iter()
                        .map(|&(ts, equity)| EquityPoint { ts, equity })
                        .collect(),
                }),
                _ => Err(if error.is_empty() {
                    "the out-of-sample backtest failed".to_owned()
                } else {
                    error.clone()
                }),
            };
            wf.folds[k].outcome = Some(outcome);
            wf.settle(*at_ns);
            Ok((wf, Vec::new(), true))
        }
        WfInput::Published {
            id,
            folds,
            validations,
        } => {
            let mut wf = existing(id)?;
            for k in folds {
                wf.unsent.remove(k);
            }
            for k in validations {
                wf.val_unsent.remove(k);
            }
            Ok((wf, Vec::new(), true))
        }
        WfInput::Cancel { id, reason, at_ns } => {
            let mut wf = existing(id)?;
            if wf.state().is_terminal() {
                return Err(OptimizerError::Finished {
                    id: id.clone(),
                    state: convert::state_to_proto(wf.state()).as_str_name(),
                });
            }
            wf.cancelled = Some(reason.clone());
            wf.settle(*at_ns);
            Ok((wf, Vec::new(), true))
        }
    }
}

/// A walk-forward job's result event as a journaled input.
pub fn result_input(id: &str, job: WfJob, result: &v1::BacktestResult, at_ns: i64) -> WfInput {
    let ok = result.status == v1::BacktestStatus::Succeeded as i32;
    let metrics = result
        .metrics
        .as_ref()
        .map(|m| hex::encode(prost::Message::encode_to_vec(m)));
    let fold = match job {
        WfJob::Validation(fold, rank) => {
            return WfInput::Validated {
                id: id.to_owned(),
                fold,
                rank,
                ok,
                error: result.error.clone(),
                metrics,
                at_ns,
            };
        }
        WfJob::OutOfSample(fold) => fold,
    };
    let curve = result
        .equity_curve
        .iter()
        .filter_map(|p| {
            Some((
                ns(p.timestamp.as_ref())?,
                p.equity
                    .as_ref()
                    .and_then(|d| d.value.parse::<rust_decimal::Decimal>().ok())?
                    .to_f64()?,
            ))
        })
        .collect();
    WfInput::OutOfSample {
        id: id.to_owned(),
        fold,
        ok,
        error: result.error.clone(),
        metrics,
        curve,
        at_ns,
    }
}

fn money(x: f64) -> Option<v1::Decimal> {
    rust_decimal::Decimal::from_f64(x).map(|d| {
        let mut cents = d.round_dp(2);
        cents.rescale(2);
        v1::Decimal {
            value: cents.to_string(),
        }
    })
}

/// The walk-forward result on the wire.
pub fn result_to_proto(wf: &Wf) -> v1::WalkForwardResult {
    let nan = |x: Option<f64>| x.unwrap_or(f64::NAN);
    let folds = wf
        .windows
        .iter()
        .zip(&wf.folds)
        .map(|(w, f)| {
            let is = f.chosen.as_ref().map(|c| c.score * wf.sign);
            let (oos, metrics, error) = match &f.outcome {
                Some(Ok(o)) => (
                    o.score.map(|s| s * wf.sign),
                    Some(o.metrics.clone()),
                    String::new(),
                ),
                Some(Err(e)) => (None, None, e.clone()),
                None => (None, None, String::new()),
            };
            v1::WalkForwardFold {
                fold: w.fold,
                in_sample: Some(v1::TimeRange {
                    start: Some(ts(w.in_sample.0)),
                    end: Some(ts(w.in_sample.1)),
                }),
                out_of_sample: Some(v1::TimeRange {
                    start: Some(ts(w.out_of_sample.0)),
                    end: Some(ts(w.out_of_sample.1)),
                }),
                params: f
                    .chosen
                    .as_ref()
                    .map(|c| c.params.clone().into_iter().collect())
                    .unwrap_or_default(),
                in_sample_objective: nan(is),
                out_of_sample_objective: nan(oos),
                out_of_sample_metrics: metrics,
                search_optimization_id: wf.search_id(w.fold),
                decay: nan(is.zip(oos).map(|(a, b)| a - b)),
                error,
                validation: w.validation.map(|(a, b)| v1::TimeRange {
                    start: Some(ts(a)),
                    end: Some(ts(b)),
                }),
                validation_objective: nan(f
                    .chosen
                    .as_ref()
                    .and_then(|c| c.validation)
                    .map(|v| v * wf.sign)),
                chosen_rank: f.chosen.as_ref().map_or(0, |c| c.rank),
            }
        })
        .collect();
    let mut out = v1::WalkForwardResult {
        folds,
        efficiency: f64::NAN,
        ..v1::WalkForwardResult::default()
    };
    if let Some(Ok(s)) = wf.summary() {
        out.efficiency = nan(s.efficiency);
        out.stitched_equity = s
            .stitched
            .iter()
            .map(|p| v1::EquityPoint {
                timestamp: Some(ts(p.ts)),
                equity: money(p.equity),
                ..v1::EquityPoint::default()
            })
            .collect();
        let m = &s.metrics;
        out.out_of_sample_metrics = Some(v1::Metrics {
            initial_equity: s.stitched.first().and_then(|p| money(p.equity)),
            final_equity: s.stitched.last().and_then(|p| money(p.equity)),
            total_return: m.total_return,
            cagr: m.cagr,
            annual_volatility: nan(m.annual_volatility),
            sharpe: nan(m.sharpe),
            sortino: nan(m.sortino),
            calmar: nan(m.calmar),
            max_drawdown: m.drawdown.max_drawdown,
            bar_count: m.periods as u64,
            ..v1::Metrics::default()
        });
        out.stability = s
            .stability
            .into_iter()
            .map(|(parameter, st)| v1::ParameterStability {
                parameter,
                modal_value: st.modal_value,
                modal_share: st.modal_share,
                coefficient_of_variation: nan(st.coefficient_of_variation),
            })
            .collect();
    }
    out
}

/// The parent's progress: the folds' in-sample trials summed plus one trial
/// per out-of-sample run; `best_objective` is the mean out-of-sample
/// objective of the folds scored so far.
pub fn progress(wf: &Wf, runs: &BTreeMap<String, Run>) -> v1::Progress {
    let n = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
    let mut p = v1::Progress {
        best_objective: f64::NAN,
        eta_seconds: f64::NAN,
        ..v1::Progress::default()
    };
    for k in 0..wf.windows.len() {
        let f = &wf.folds[k];
        if let Some(r) = runs.get(&search_id(&wf.id, k as u32)) {
            let q = r.study.progress();
            p.trials_total += n(q.planned);
            p.trials_queued += n(q.queued);
            p.trials_succeeded += n(q.succeeded);
            p.trials_failed += n(q.failed);
        }
        if wf.windows[k].validation.is_some() {
            // Each candidate's validation run, planned as the configured count
            // until the study says how many there are.
            let n_cand = if f.candidates.is_empty() {
                wf.candidates
            } else {
                n(f.candidates.len() as u64)
            };
            p.trials_total += n_cand;
            for (_, o) in &f.candidates {
                match o {
                    Some(Ok(_)) => p.trials_succeeded += 1,
                    Some(Err(_)) => p.trials_failed += 1,
                    None => p.trials_queued += 1,
                }
            }
        }
        p.trials_total += 1;
        match &f.outcome {
            Some(Ok(_)) => p.trials_succeeded += 1,
            Some(Err(_)) => p.trials_failed += 1,
            None if f.chosen.is_some() => p.trials_queued += 1,
            None => {}
        }
    }
    // The mean out-of-sample objective of the folds scored so far.
    let scored: Vec<f64> = wf
        .folds
        .iter()
        .filter_map(|f| match &f.outcome {
            Some(Ok(o)) => o.score.map(|s| s * wf.sign),
            _ => None,
        })
        .collect();
    if !scored.is_empty() {
        #[allow(clippy::cast_precision_loss, reason = "fold counts")]
        let mean = scored.iter().sum::<f64>() / scored.len() as f64;
        p.best_objective = mean;
    }
    p
}
