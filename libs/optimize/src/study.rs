//! A study: one optimization run as a pure state machine, the thing the
//! optimizer service keeps per run. It holds the search, every trial it
//! suggested with its result, and the run's state; the service feeds it
//! results (and cancellations) and dispatches the trials it hands back.
//!
//! Everything here is a deterministic function of the inputs in the order
//! given: the service journals its inputs and rebuilds a study after a
//! restart by applying them again, which gives back the same trials with the
//! same ids (the searches are seeded), so no trial is lost or suggested
//! twice.
//!
//! Lifecycle: [`Study::fill`] tops the trials in flight up to a capacity
//! (the live worker count, decided by the caller), [`Study::record`] takes a
//! trial's outcome (a second outcome of the same trial is reported as a
//! duplicate and changes nothing), and the study ends SUCCEEDED once the
//! search has nothing more to suggest (or the trial budget is spent) and no
//! trial is in flight, FAILED if no trial at all succeeded. [`Study::cancel`]
//! stops suggesting at once; trials already out still record their results.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::objective::{Objective, TrialMetrics};
use crate::search::{Search, SearchError, Searcher, Trial};

/// What a study is asked to do besides searching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyConfig {
    /// How trials are scored (higher is better).
    pub objective: Objective,
    /// Most trials the study suggests.
    pub max_trials: u64,
    /// Trials the study expects to run: `max_trials`, or fewer when the
    /// space has fewer valid points (for progress and ETA).
    pub planned: u64,
    /// After the search: run the neighbours of the best trial, this many
    /// lattice steps either side on each parameter, one parameter at a time
    /// (None: no sensitivity analysis). Not counted in `max_trials`.
    #[serde(default)]
    pub sensitivity: Option<u32>,
}

/// First id of the sensitivity trials (the search's ids stay far below).
pub const SENSITIVITY_IDS: u64 = 1 << 48;

/// Why a trial ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Suggested by the search.
    #[default]
    Search,
    /// A neighbour of the best, for the sensitivity analysis.
    Sensitivity,
}

/// One point of the sensitivity analysis: a parameter at a value, the
/// others at the best trial's.
#[derive(Debug, Clone, PartialEq)]
pub struct SensitivityPoint {
    /// The parameter varied.
    pub parameter: String,
    /// Its value.
    pub value: String,
    /// Steps from the best trial's value (0: the best itself).
    pub offset: i64,
    /// The objective there (None: failed or not scored).
    pub objective: Option<f64>,
}

/// The sensitivity of one parameter around the best trial.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSensitivity {
    /// The parameter.
    pub parameter: String,
    /// Its points, by offset.
    pub points: Vec<SensitivityPoint>,
    /// Population variance of the objective over the scored points: low is
    /// a stable neighbourhood.
    pub variance: f64,
    /// True when a neighbour loses more than half of the best objective's
    /// magnitude, or fails: the optimum sits next to a cliff.
    pub cliff: bool,
}

/// Where a study stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StudyState {
    /// Suggesting trials or waiting for their results.
    Running,
    /// The search finished and at least one trial succeeded.
    Succeeded,
    /// The search finished and no trial succeeded.
    Failed,
    /// Cancelled: nothing more is suggested.
    Cancelled,
}

impl StudyState {
    /// True once nothing more will be suggested.
    pub fn is_terminal(self) -> bool {
        self != Self::Running
    }
}

/// Where a trial stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    /// Dispatched, awaiting its result.
    Queued,
    /// Ran and scored.
    Succeeded,
    /// Failed to run, or could not be scored (too few trades, an undefined
    /// metric).
    Failed,
}

/// A trial's result as the workers report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// The backtest ran; the study scores these metrics.
    Ran(TrialMetrics),
    /// The backtest failed, with the worker's reason.
    Failed(String),
}

/// One trial of a study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// The search's trial (id and parameters).
    pub trial: Trial,
    /// Where it stands.
    pub state: TrialState,
    /// The metrics of a trial that ran (scored or not).
    pub metrics: Option<TrialMetrics>,
    /// Its objective when it succeeded.
    #[serde(with = "crate::exact::option")]
    pub objective: Option<f64>,
    /// Why it failed.
    pub error: String,
    /// Results recorded before this one (its position in completion order).
    pub finished_seq: Option<u64>,
    /// Why it ran.
    #[serde(default)]
    pub purpose: Purpose,
}

/// Counts for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Progress {
    /// Trials the study expects to run.
    pub planned: u64,
    /// Trials dispatched so far.
    pub dispatched: u64,
    /// In flight.
    pub queued: u64,
    /// Finished and scored.
    pub succeeded: u64,
    /// Finished without a score.
    pub failed: u64,
    /// Best objective so far.
    pub best: Option<f64>,
}

/// What [`Study::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The result was new and is recorded.
    New,
    /// The trial had its result already (a redelivery): nothing changed.
    Duplicate,
}

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StudyError {
    /// No trial of that id was dispatched.
    #[error("trial {0} was never dispatched by this study")]
    UnknownTrial(u64),
    /// The study has ended.
    #[error("the study is {0:?} already")]
    Finished(StudyState),
    /// The search refused the result (a bug: the study keeps them in step).
    #[error(transparent)]
    Search(#[from] SearchError),
}

/// One optimization run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Study {
    config: StudyConfig,
    searcher: Searcher,
    trials: BTreeMap<u64, TrialRecord>,
    state: StudyState,
    reason: String,
    /// Id of the best succeeded trial (highest objective, lowest id on ties).
    best: Option<u64>,
    finished: u64,
    /// The sensitivity trials were issued (or there was nothing to vary).
    #[serde(default)]
    sensitivity_started: bool,
    /// The trial the sensitivity analysis is centred on (the best when the
    /// search ended; a neighbour that does better does not move it).
    #[serde(default)]
    sensitivity_center: Option<u64>,
}

impl Study {
    /// A running study over `searcher`; nothing dispatched yet.
    pub fn new(searcher: Searcher, config: StudyConfig) -> Self {
        Self {
            config,
            searcher,
            trials: BTreeMap::new(),
            state: StudyState::Running,
            reason: String::new(),
            best: None,
            finished: 0,
            sensitivity_started: false,
            sensitivity_center: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &StudyConfig {
        &self.config
    }

    /// Where the study stands.
    pub fn state(&self) -> StudyState {
        self.state
    }

    /// Why it was cancelled or failed.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The search and its state.
    pub fn searcher(&self) -> &Searcher {
        &self.searcher
    }

    /// Trials in flight.
    pub fn in_flight(&self) -> usize {
        self.trials
            .values()
            .filter(|t| t.state == TrialState::Queued)
            .count()
    }

    /// Suggests and marks as dispatched the trials that bring the number in
    /// flight up to `capacity` (at least one slot), within the trial budget;
    /// ends the study when there is nothing left to run. Returns them in id
    /// order; nothing once the study ended.
    pub fn fill(&mut self, capacity: usize) -> Vec<Trial> {
        if self.state.is_terminal() {
            return Vec::new();
        }
        let budget = self
            .config
            .max_trials
            .saturating_sub(self.trials.len() as u64);
        let want = capacity
            .max(1)
            .saturating_sub(self.in_flight())
            .min(usize::try_from(budget).unwrap_or(usize::MAX));
        let mut trials = if want == 0 || self.search_over() {
            Vec::new()
        } else {
            self.searcher.suggest(want)
        };
        for t in &trials {
            self.insert_queued(t.clone(), Purpose::Search);
        }
        if trials.is_empty() && self.in_flight() == 0 && self.search_over() {
            trials = self.start_sensitivity();
        }
        self.maybe_finish();
        trials
    }

    fn insert_queued(&mut self, trial: Trial, purpose: Purpose) {
        self.trials.insert(
            trial.id,
            TrialRecord {
                trial,
                state: TrialState::Queued,
                metrics: None,
                objective: None,
                error: String::new(),
                finished_seq: None,
                purpose,
            },
        );
    }

    /// The search part is over: budget spent or nothing more to suggest.
    fn search_over(&self) -> bool {
        let searched = self
            .trials
            .values()
            .filter(|t| t.purpose == Purpose::Search)
            .count() as u64;
        searched >= self.config.max_trials || self.searcher.is_done()
    }

    /// Issues the neighbours of the best trial not tried yet (once).
    fn start_sensitivity(&mut self) -> Vec<Trial> {
        let Some(radius) = self.config.sensitivity else {
            return Vec::new();
        };
        if self.sensitivity_started {
            return Vec::new();
        }
        self.sensitivity_started = true;
        self.sensitivity_center = self.best;
        let Some(best) = self.best().map(|b| b.trial.params.clone()) else {
            return Vec::new();
        };
        let tried: std::collections::BTreeSet<&crate::space::Params> =
            self.trials.values().map(|t| &t.trial.params).collect();
        let mut fresh = Vec::new();
        for (_, around) in neighbourhood(self.searcher.space(), &best, radius) {
            for (_, params) in around {
                if !tried.contains(&params) && !fresh.contains(&params) {
                    fresh.push(params);
                }
            }
        }
        let trials: Vec<Trial> = fresh
            .into_iter()
            .enumerate()
            .map(|(i, params)| Trial {
                id: SENSITIVITY_IDS + i as u64,
                params,
            })
            .collect();
        for t in &trials {
            self.insert_queued(t.clone(), Purpose::Sensitivity);
        }
        trials
    }

    /// The sensitivity analysis around the best trial (empty when none was
    /// asked for or no trial succeeded): per searched parameter, its values
    /// within the radius with the objective at each.
    pub fn sensitivity(&self) -> Vec<ParamSensitivity> {
        let center = self.sensitivity_center.and_then(|c| self.trials.get(&c));
        let (Some(radius), Some(best)) = (self.config.sensitivity, center) else {
            return Vec::new();
        };
        let by_params: BTreeMap<&crate::space::Params, &TrialRecord> =
            self.trials.values().map(|t| (&t.trial.params, t)).collect();
        let best_value = best.objective.unwrap_or(f64::NAN);
        let mut out = Vec::new();
        for (name, around) in neighbourhood(self.searcher.space(), &best.trial.params, radius) {
            let mut points = vec![SensitivityPoint {
                parameter: name.clone(),
                value: best.trial.params.get(&name).cloned().unwrap_or_default(),
                offset: 0,
                objective: best.objective,
            }];
            for (offset, params) in around {
                let r = by_params.get(&params);
                points.push(SensitivityPoint {
                    parameter: name.clone(),
                    value: params.get(&name).cloned().unwrap_or_default(),
                    offset,
                    objective: r.and_then(|r| r.objective),
                });
            }
            points.sort_by_key(|p| p.offset);
            let scored: Vec<f64> = points.iter().filter_map(|p| p.objective).collect();
            #[allow(clippy::cast_precision_loss, reason = "a handful of points")]
            let variance = if scored.is_empty() {
                f64::NAN
            } else {
                let n = scored.len() as f64;
                let mean = scored.iter().sum::<f64>() / n;
                scored.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n
            };
            let cliff = points.iter().any(|p| match p.objective {
                None => by_params.values().any(|r| {
                    r.trial.params.get(&name) == Some(&p.value) && r.state == TrialState::Failed
                }),
                Some(v) => (best_value - v) > 0.5 * best_value.abs(),
            });
            out.push(ParamSensitivity {
                parameter: name,
                points,
                variance,
                cliff,
            });
        }
        out
    }

    /// The landscape so far: a heatmap per pair of searched parameters
    /// around the best trial, and the recommended set in a stable region
    /// (`crate::landscape`).
    pub fn landscape(
        &self,
    ) -> (
        Vec<crate::landscape::Heatmap>,
        Option<crate::landscape::Recommendation>,
    ) {
        let trials: Vec<&TrialRecord> = self.trials.values().collect();
        let space = self.searcher.space();
        let maps = self.best().map_or_else(Vec::new, |b| {
            crate::landscape::heatmaps(space, &trials, &b.trial.params)
        });
        (maps, crate::landscape::recommend(space, &trials))
    }

    /// Records a trial's outcome: scores it, tells the search.
    ///
    /// # Errors
    /// [`StudyError::UnknownTrial`] for an id this study never dispatched.
    pub fn record(&mut self, trial_id: u64, outcome: Outcome) -> Result<Recorded, StudyError> {
        let objective = &self.config.objective;
        let record = self
            .trials
            .get_mut(&trial_id)
            .ok_or(StudyError::UnknownTrial(trial_id))?;
        if record.state != TrialState::Queued {
            return Ok(Recorded::Duplicate);
        }
        let score = match outcome {
            Outcome::Ran(metrics) => {
                let score = objective.score(&metrics);
                record.metrics = Some(metrics);
                if score.is_none() {
                    record.error =
                        "not scored: too few trades or the objective's metric is undefined".into();
                }
                score
            }
            Outcome::Failed(reason) => {
                record.error = reason;
                None
            }
        };
        record.objective = score;
        record.state = if score.is_some() {
            TrialState::Succeeded
        } else {
            TrialState::Failed
        };
        record.finished_seq = Some(self.finished);
        self.finished += 1;
        if record.purpose == Purpose::Search {
            self.searcher.observe(trial_id, score)?;
        }
        if let Some(v) = score {
            let better = self
                .best
                .and_then(|b| self.trials[&b].objective)
                .is_none_or(|b| v > b);
            if better {
                self.best = Some(trial_id);
            }
        }
        self.maybe_finish();
        Ok(Recorded::New)
    }

    /// Stops suggesting; trials in flight still record their results.
    ///
    /// # Errors
    /// [`StudyError::Finished`] when the study has ended already.
    pub fn cancel(&mut self, reason: &str) -> Result<(), StudyError> {
        if self.state.is_terminal() {
            return Err(StudyError::Finished(self.state));
        }
        self.state = StudyState::Cancelled;
        self.reason = if reason.is_empty() {
            "cancelled".into()
        } else {
            reason.into()
        };
        Ok(())
    }

    fn maybe_finish(&mut self) {
        if self.state.is_terminal() || self.in_flight() > 0 {
            return;
        }
        if !self.search_over() {
            return;
        }
        if self.config.sensitivity.is_some() && !self.sensitivity_started {
            return; // the next fill issues the sensitivity trials
        }
        if self.best.is_some() {
            self.state = StudyState::Succeeded;
        } else {
            self.state = StudyState::Failed;
            self.reason = if self.trials.is_empty() {
                "the search suggested no trial".into()
            } else {
                format!("none of {} trials succeeded", self.trials.len())
            };
        }
    }

    /// One trial.
    pub fn trial(&self, id: u64) -> Option<&TrialRecord> {
        self.trials.get(&id)
    }

    /// Every trial in id order.
    pub fn trials(&self) -> impl Iterator<Item = &TrialRecord> {
        self.trials.values()
    }

    /// Trials dispatched and awaiting their results, in id order.
    pub fn queued(&self) -> impl Iterator<Item = &TrialRecord> {
        self.trials
            .values()
            .filter(|t| t.state == TrialState::Queued)
    }

    /// The best succeeded trial.
    pub fn best(&self) -> Option<&TrialRecord> {
        self.best.map(|b| &self.trials[&b])
    }

    /// Up to `n` succeeded trials, best first (ties: lower id first).
    pub fn top(&self, n: usize) -> Vec<&TrialRecord> {
        let mut ok: Vec<&TrialRecord> = self
            .trials
            .values()
            .filter(|t| t.objective.is_some())
            .collect();
        ok.sort_by(|a, b| {
            b.objective
                .partial_cmp(&a.objective)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.trial.id.cmp(&b.trial.id))
        });
        ok.truncate(n);
        ok
    }

    /// Counts for progress reports.
    pub fn progress(&self) -> Progress {
        let mut p = Progress {
            planned: self.config.planned.max(self.trials.len() as u64),
            dispatched: self.trials.len() as u64,
            best: self.best().and_then(|t| t.objective),
            ..Progress::default()
        };
        for t in self.trials.values() {
            match t.state {
                TrialState::Queued => p.queued += 1,
                TrialState::Succeeded => p.succeeded += 1,
                TrialState::Failed => p.failed += 1,
            }
        }
        // A finished study ran what it ran.
        if self.state.is_terminal() && self.in_flight() == 0 {
            p.planned = p.dispatched;
        }
        p
    }
}

/// Per searched parameter of `space` (those with more than one value), the
/// points `1..=radius` lattice steps either side of `best`'s value, the
/// others at `best`'s, keeping only points inside the bounds and the
/// constraints: `(name, [(offset, params)])`. Continuous parameters
/// (float, log-float) have no lattice and are left out.
fn neighbourhood(
    space: &crate::space::Space,
    best: &crate::space::Params,
    radius: u32,
) -> Vec<(String, Vec<(i64, crate::space::Params)>)> {
    let mut out = Vec::new();
    for (name, dim) in space.names().iter().zip(space.dims()) {
        let n = dim.grid_len();
        if n < 2 {
            continue;
        }
        let Some(at) = best.get(name).and_then(|v| crate::encode::index(dim, v)) else {
            continue;
        };
        let mut around = Vec::new();
        for k in 1..=i64::from(radius) {
            for offset in [-k, k] {
                let Some(i) = at.checked_add_signed(offset).filter(|i| *i < n) else {
                    continue;
                };
                let mut params = best.clone();
                params.insert(name.clone(), dim.grid_value(i));
                if space.is_valid(&params) {
                    around.push((offset, params));
                }
            }
        }
        out.push((name.clone(), around));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::objective::Metric;
    use crate::search::{GridSearch, RandomSearch};
    use crate::space::{Others, Prior, Range, Space};

    fn space() -> Space {
        let mut ranges = BTreeMap::new();
        for (name, min, max, step) in [("fast", 2.0, 10.0, 2.0), ("slow", 4.0, 20.0, 4.0)] {
            ranges.insert(
                name.to_owned(),
                Range::Linear {
                    min,
                    max,
                    step: Some(step),
                    prior: Prior::Uniform,
                },
            );
        }
        Space::new("sma_cross", &ranges, Others::Default).unwrap()
    }

    /// A made-up but deterministic metric per parameter set.
    fn metrics_of(t: &Trial) -> TrialMetrics {
        let fast: f64 = t.params["fast"].parse().unwrap();
        let slow: f64 = t.params["slow"].parse().unwrap();
        TrialMetrics {
            total_return: (fast * 7.0 + slow * 3.0) % 11.0 / 10.0,
            sharpe: Some(1.0 - (fast - 6.0).abs() / 10.0 - (slow - 12.0).abs() / 20.0),
            trades: usize::try_from((fast as i64 + slow as i64) % 5).unwrap(),
            ..TrialMetrics::default()
        }
    }

    fn grid_study(max: u64) -> Study {
        let s = space();
        let planned = s.valid_grid_len().unwrap().min(max);
        Study::new(
            Searcher::Grid(GridSearch::new(s, None).unwrap()),
            StudyConfig {
                objective: Objective::single(Metric::Sharpe).min_trades(1),
                max_trials: max,
                planned,
                sensitivity: None,
            },
        )
    }

    /// Drives a study to the end, `capacity` in flight, answering trials in
    /// the order `pick` chooses among those in flight.
    fn run(study: &mut Study, capacity: usize, mut pick: impl FnMut(usize) -> usize) -> Vec<u64> {
        let mut out: Vec<Trial> = study.fill(capacity);
        let mut order = Vec::new();
        while !out.is_empty() {
            let t = out.remove(pick(out.len()) % out.len());
            order.push(t.id);
            assert_eq!(
                study.record(t.id, Outcome::Ran(metrics_of(&t))),
                Ok(Recorded::New)
            );
            out.extend(study.fill(capacity));
        }
        order
    }

    #[test]
    fn a_grid_study_runs_every_valid_point_once_and_finds_the_best() {
        let mut study = grid_study(1000);
        let planned = study.progress().planned;
        let order = run(&mut study, 3, |_| 0);
        assert_eq!(order.len() as u64, planned);
        assert_eq!(study.state(), StudyState::Succeeded);
        let best = study.best().unwrap();
        // Sharpe peaks at fast 6, slow 12 among the trials with at least one trade.
        let want = study
            .trials()
            .filter(|t| t.metrics.unwrap().trades >= 1)
            .map(|t| t.metrics.unwrap().sharpe.unwrap())
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(best.objective, Some(want));
        let p = study.progress();
        assert_eq!(p.succeeded + p.failed, planned);
        assert_eq!(p.queued, 0);
        assert!(p.failed > 0, "the trade filter failed some trials");
        let top = study.top(3);
        assert!(top.windows(2).all(|w| w[0].objective >= w[1].objective));
    }

    #[test]
    fn capacity_bounds_the_trials_in_flight_and_the_budget_bounds_the_total() {
        let mut study = grid_study(7);
        assert_eq!(study.fill(5).len(), 5);
        assert_eq!(study.fill(5).len(), 0, "five in flight already");
        let t = study.trial(0).unwrap().trial.clone();
        study.record(0, Outcome::Ran(metrics_of(&t))).unwrap();
        assert_eq!(study.fill(5).len(), 1);
        let t = study.trial(1).unwrap().trial.clone();
        study.record(1, Outcome::Ran(metrics_of(&t))).unwrap();
        assert_eq!(study.fill(5).len(), 1, "the seventh and last trial");
        for id in 2..7 {
            let t = study.trial(id).unwrap().trial.clone();
            study.record(id, Outcome::Ran(metrics_of(&t))).unwrap();
            assert!(study.fill(5).is_empty());
        }
        assert_eq!(study.progress().dispatched, 7);
        assert!(study.state().is_terminal());
    }

    #[test]
    fn a_second_result_of_a_trial_changes_nothing() {
        let mut study = grid_study(100);
        let trials = study.fill(2);
        let m = metrics_of(&trials[0]);
        assert_eq!(
            study.record(trials[0].id, Outcome::Ran(m)),
            Ok(Recorded::New)
        );
        let before = study.clone();
        assert_eq!(
            study.record(trials[0].id, Outcome::Failed("late duplicate".into())),
            Ok(Recorded::Duplicate)
        );
        assert_eq!(study, before);
        assert_eq!(
            study.record(999, Outcome::Failed("x".into())),
            Err(StudyError::UnknownTrial(999))
        );
    }

    #[test]
    fn cancel_stops_suggesting_and_in_flight_trials_still_record() {
        let mut study = grid_study(100);
        let trials = study.fill(3);
        study.cancel("operator asked").unwrap();
        assert_eq!(study.state(), StudyState::Cancelled);
        assert!(study.fill(3).is_empty());
        study
            .record(trials[1].id, Outcome::Ran(metrics_of(&trials[1])))
            .unwrap();
        assert_eq!(study.state(), StudyState::Cancelled);
        assert_eq!(study.reason(), "operator asked");
        assert_eq!(study.progress().succeeded + study.progress().failed, 1);
        assert_eq!(
            study.cancel("again"),
            Err(StudyError::Finished(StudyState::Cancelled))
        );
    }

    #[test]
    fn a_study_whose_every_trial_fails_ends_failed_with_the_count() {
        let mut study = grid_study(4);
        let mut out = study.fill(2);
        while let Some(t) = out.pop() {
            study
                .record(t.id, Outcome::Failed("no data".into()))
                .unwrap();
            out.extend(study.fill(2));
        }
        assert_eq!(study.state(), StudyState::Failed);
        assert_eq!(study.reason(), "none of 4 trials succeeded");
        assert_eq!(study.trial(0).unwrap().error, "no data");
    }

    #[test]
    fn sensitivity_runs_the_untried_neighbours_of_the_best_and_reports_each_parameter() {
        let s = space();
        let mut study = Study::new(
            Searcher::Random(RandomSearch::new(s, 3, None).unwrap()),
            StudyConfig {
                objective: Objective::single(Metric::Sharpe),
                max_trials: 4,
                planned: 4,
                sensitivity: Some(1),
            },
        );
        let mut out = study.fill(2);
        let mut sens = Vec::new();
        while let Some(t) = out.pop() {
            if t.id >= SENSITIVITY_IDS {
                sens.push(t.clone());
            }
            study.record(t.id, Outcome::Ran(metrics_of(&t))).unwrap();
            out.extend(study.fill(2));
        }
        assert_eq!(study.state(), StudyState::Succeeded);
        let best = study
            .trial(study.sensitivity_center.unwrap())
            .unwrap()
            .trial
            .params
            .clone();
        // Every sensitivity trial differs from the best in one parameter by one step.
        assert!(!sens.is_empty());
        for t in &sens {
            let differ: Vec<_> = t.params.iter().filter(|(k, v)| best[*k] != **v).collect();
            assert_eq!(differ.len(), 1, "{:?} vs {best:?}", t.params);
        }
        let report = study.sensitivity();
        let center = study.sensitivity_center.unwrap();
        assert!(center < SENSITIVITY_IDS, "centred on a search trial");
        assert_eq!(report.len(), 2, "fast and slow");
        for p in &report {
            let at_best = p.points.iter().find(|x| x.offset == 0).unwrap();
            assert_eq!(at_best.objective, study.trial(center).unwrap().objective);
            assert!(p.points.iter().all(|x| x.offset.abs() <= 1));
            assert!(
                p.points
                    .iter()
                    .filter(|x| x.offset != 0)
                    .all(|x| x.objective.is_some()),
                "{p:?}"
            );
            assert!(p.variance >= 0.0);
        }
        // The search part kept its budget; sensitivity trials came on top.
        let searched = study
            .trials()
            .filter(|t| t.purpose == Purpose::Search)
            .count();
        assert_eq!(searched, 4);
        assert_eq!(study.trials().count(), 4 + sens.len());
    }

    proptest! {
        /// Applying the same inputs again gives the same study (the service's
        /// restart), and a serde round trip mid-way changes nothing: the
        /// trials dispatched after it are those an uninterrupted study
        /// dispatches, whatever the completion order and capacity.
        #[test]
        fn replay_and_round_trip_give_the_same_study(
            seed in 0u64..1000, capacity in 1usize..6, picks in proptest::collection::vec(0usize..100, 40),
            cut in 0usize..40,
        ) {
            let fresh = || {
                let s = space();
                let planned = s.valid_grid_len().unwrap().min(20);
                Study::new(
                    Searcher::Random(RandomSearch::new(s, seed, None).unwrap()),
                    StudyConfig { objective: Objective::single(Metric::TotalReturn), max_trials: 20, planned, sensitivity: None },
                )
            };
            let mut a = fresh();
            let mut i = 0;
            let order_a = run(&mut a, capacity, |_| { i += 1; picks[i % picks.len()] });
            // The same inputs, with a serde round trip after `cut` results.
            let mut b = fresh();
            let mut out = b.fill(capacity);
            let mut order_b = Vec::new();
            let mut j = 0;
            while !out.is_empty() {
                if order_b.len() == cut {
                    let json = serde_json::to_string(&b).unwrap();
                    b = serde_json::from_str(&json).unwrap();
                }
                j += 1;
                let t = out.remove(picks[j % picks.len()] % out.len());
                order_b.push(t.id);
                b.record(t.id, Outcome::Ran(metrics_of(&t))).unwrap();
                out.extend(b.fill(capacity));
            }
            prop_assert_eq!(order_a, order_b);
            prop_assert_eq!(a, b);
        }
    }
}
