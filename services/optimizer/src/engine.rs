//! The optimizer's state: every run (a `grodt_optimize::Study` plus what the
//! wire needs) behind one mutex, changed only by journaled inputs.
//!
//! An input (a start, a trial's result, a cancellation, or the note that a
//! run's jobs were published) is applied to a copy of the run it concerns,
//! appended to the store's journal (consumer `optimizer`) with the jobs it
//! produced in one transaction, and only then becomes the state; then the
//! jobs are published and the result acked. A restart replays the journal
//! (the searches are seeded, so the same trials come back with the same
//! ids) and publishes the jobs not known to be published. Job event ids are
//! derived from the run and trial, and the workers key a backtest by the
//! content hash of its spec, so a job published twice runs once and a
//! repeated trial is answered from the store.
//!
//! Sources (the journal's idempotency keys): `start:<id>`, `result:<event id>`,
//! `cancel:<id>:<uuid>`, `published:<id>:<uuid>`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use grodt_bus::consumer::{Handler, HandlerError};
use grodt_bus::{Delivery, EventBus};
use grodt_kit::journal::{self, StoredEvent, event_id};
use grodt_optimize::montecarlo::MonteCarlo;
use grodt_optimize::{Outcome, Recorded, Study, StudyState, TrialState};
use grodt_proto::topic::{self, Outgoing, Topic};
use grodt_proto::v1;
use grodt_store::Store;
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard, broadcast};
use tracing::Instrument;

use crate::convert::{self, Plan};
use crate::error::OptimizerError;
use crate::metrics::OptimizerMetrics;
use crate::walkforward::{self, Wf, WfInput, WfJob};

/// The consumer's name in the store's journal.
pub const JOURNAL: &str = "optimizer";
/// The consumer group on the results stream.
pub const GROUP: &str = "optimizer";
/// Where trials go.
pub const JOBS_STREAM: &str = <v1::BacktestJob as Topic>::STREAM;
/// The backtest workers' consumer group on the jobs stream (the worker
/// crate's `GROUP`; services share no crate, so it is named here too).
pub const WORKER_GROUP: &str = "backtest-worker";
/// A worker that read the jobs stream within this long is live.
pub const LIVE_IDLE: Duration = Duration::from_secs(30);
/// Where their results come back.
pub const RESULTS_STREAM: &str = <v1::BacktestResultEvent as Topic>::STREAM;

/// One journaled input (JSON; protobuf parts as hex).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Input {
    Start {
        id: String,
        /// `StartOptimizationRequest`, protobuf, hex.
        request: String,
        at_ns: i64,
        /// Workers live when it started (sizes a batch the request left 0).
        #[serde(default)]
        workers: u32,
    },
    Result {
        id: String,
        trial: u64,
        ok: bool,
        error: String,
        /// `Metrics`, protobuf, hex; absent for a failed backtest.
        metrics: Option<String>,
        at_ns: i64,
    },
    Cancel {
        id: String,
        reason: String,
        at_ns: i64,
    },
    /// The jobs of these trials are on the bus (no need to publish them again
    /// after a restart).
    Published { id: String, trials: Vec<u64> },
    /// The results of a sweep job: one per set still queued when it came.
    Slice {
        id: String,
        results: Vec<SetOutcome>,
        at_ns: i64,
    },
    /// An input of a walk-forward run (`crate::walkforward`).
    Wf(WfInput),
    /// One price-noise run of the best trial.
    NoiseRun {
        id: String,
        run: u32,
        ok: bool,
        /// `Metrics`, protobuf, hex; absent for a failed run.
        metrics: Option<String>,
        at_ns: i64,
    },
    /// The Monte Carlo analysis of the best trial, computed from its
    /// detailed result (seeded, so a replay needs only the outcome).
    MonteCarlo {
        id: String,
        outcome: Result<MonteCarlo, String>,
        at_ns: i64,
    },
}

/// One set's outcome in a sweep job's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SetOutcome {
    trial: u64,
    ok: bool,
    error: String,
    /// `Metrics`, protobuf, hex; absent for a failed set.
    metrics: Option<String>,
}

/// The key of the Monte Carlo job among a run's jobs (no trial has it).
const MC_TRIAL: u64 = u64::MAX;
/// The trial id the Monte Carlo job carries on the wire.
pub const MC_TRIAL_ID: &str = "monte-carlo";
/// The trial id prefix of price-noise runs (`noise-<i>`).
pub const NOISE_PREFIX: &str = "noise-";

/// The key of price-noise run `i` among a run's jobs (below the Monte
/// Carlo job's, far above any trial's).
fn noise_key(i: u32) -> u64 {
    MC_TRIAL - 1 - u64::from(i)
}

/// The request's price-noise settings: (runs, sigma), if it asks for them.
fn price_noise(run: &Run) -> Option<(u32, f64)> {
    let mc = run.request.monte_carlo.as_ref()?;
    (v1::MonteCarloMethod::try_from(mc.method) == Ok(v1::MonteCarloMethod::PriceNoise))
        .then(|| (mc.simulations, convert::noise_sigma(mc)))
}

/// Where a run's Monte Carlo analysis stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Mc {
    /// Not asked for, or the search has not ended yet.
    #[default]
    NotAsked,
    /// The best trial's detailed run is out.
    Pending,
    /// Done, or why it could not run.
    Done(Result<MonteCarlo, String>),
}

/// One optimization run.
#[derive(Debug, Clone)]
pub struct Run {
    /// Its id.
    pub id: String,
    /// The request as received (echoed by GetOptimization).
    pub request: v1::StartOptimizationRequest,
    /// The base spec, fixed parameters moved into the study's space.
    base: v1::BacktestSpec,
    /// The search and its trials.
    pub study: Study,
    /// -1 when the request minimises: objectives are reported as the metric.
    pub sign: f64,
    capacity: usize,
    /// Sets per sweep job; `None`: one job per trial.
    slice: Option<usize>,
    /// When it started, ns.
    pub created_at_ns: i64,
    /// When it ended (or was cancelled), ns.
    pub finished_at_ns: Option<i64>,
    /// The metrics of each trial that ran.
    pub metrics: BTreeMap<u64, v1::Metrics>,
    /// The backtest (content hash) of each trial.
    pub backtest_ids: BTreeMap<u64, String>,
    /// Jobs with a trial still queued, by key: the trial id of a one-trial
    /// job, the first trial's id of a sweep job.
    jobs: BTreeMap<u64, StoredEvent>,
    /// The trials of each sweep job, by key (a one-trial job is absent).
    members: BTreeMap<u64, Vec<u64>>,
    /// Keys of jobs not known to be on the bus.
    unsent: BTreeSet<u64>,
    /// The Monte Carlo analysis.
    pub monte_carlo: Mc,
    /// PRICE_NOISE: each noisy run's metrics as it came (`None`: failed).
    noise: BTreeMap<u32, Option<v1::Metrics>>,
}

impl Run {
    /// The run's state: the study's, except that a succeeded study whose
    /// Monte Carlo analysis is still out is running.
    pub fn state(&self) -> grodt_optimize::StudyState {
        match (self.study.state(), &self.monte_carlo) {
            (grodt_optimize::StudyState::Succeeded, Mc::Pending) => {
                grodt_optimize::StudyState::Running
            }
            (s, _) => s,
        }
    }

    /// The base spec its trials run (fixed parameters moved into the space).
    pub fn base(&self) -> &v1::BacktestSpec {
        &self.base
    }

    /// Trials dispatched and not yet answered, for ETA and progress.
    pub fn in_flight(&self) -> usize {
        self.jobs.keys().map(|k| self.job_size(*k)).sum()
    }

    /// How many trials the job with `key` carries.
    fn job_size(&self, key: u64) -> usize {
        self.members.get(&key).map_or(1, Vec::len)
    }
}

/// What changed, for StreamProgress.
#[derive(Debug, Clone)]
pub struct Update {
    /// The run.
    pub id: String,
    /// The trial whose result caused it.
    pub trial: Option<u64>,
}

/// A run as the API shows it: a study, or a walk-forward run with its
/// folds' studies.
#[derive(Debug, Clone)]
pub enum View {
    /// One study.
    Study(Box<Run>),
    /// A walk-forward run and its folds' studies (by id).
    WalkForward(Box<Wf>, BTreeMap<String, Run>),
}

impl View {
    /// Its id.
    pub fn id(&self) -> &str {
        match self {
            Self::Study(r) => &r.id,
            Self::WalkForward(w, _) => &w.id,
        }
    }

    /// When it started, ns.
    pub fn created_at_ns(&self) -> i64 {
        match self {
            Self::Study(r) => r.created_at_ns,
            Self::WalkForward(w, _) => w.created_at_ns,
        }
    }

    /// Its state.
    pub fn state(&self) -> StudyState {
        match self {
            Self::Study(r) => r.state(),
            Self::WalkForward(w, _) => w.state(),
        }
    }

    /// Nothing more will happen to it: terminal, nothing in flight (a
    /// cancelled walk-forward run also waits for its studies to drain).
    pub fn ended(&self) -> bool {
        match self {
            Self::Study(r) => r.state().is_terminal() && r.in_flight() == 0,
            Self::WalkForward(w, searches) => {
                w.state().is_terminal()
                    && w.in_flight() == 0
                    && searches
                        .values()
                        .all(|r| r.state().is_terminal() && r.in_flight() == 0)
            }
        }
    }
}

/// What a replay of the journal rebuilds: the studies and the walk-forward runs.
type Replayed = (BTreeMap<String, Run>, BTreeMap<String, Wf>);

struct Core {
    runs: BTreeMap<String, Run>,
    /// Walk-forward runs (their folds' studies are in `runs`).
    wfs: BTreeMap<String, Wf>,
    /// The state may differ from the journal (a commit failed or another
    /// writer appended): replay before the next input.
    stale: bool,
    /// Jobs journaled but not published (the bus failed after a commit).
    unpublished: Vec<StoredEvent>,
}

/// The engine: the state behind one mutex, the store, the bus.
pub struct Engine {
    core: Mutex<Core>,
    store: Store,
    bus: Arc<dyn EventBus>,
    updates: broadcast::Sender<Update>,
    metrics: OptimizerMetrics,
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> OptimizerError {
    OptimizerError::Corrupt(format!("{what}: {e}"))
}

fn decode_hex<M: Message + Default>(what: &str, text: &str) -> Result<M, OptimizerError> {
    let bytes = hex::decode(text).map_err(|e| corrupt(what, e))?;
    M::decode(bytes.as_slice()).map_err(|e| corrupt(what, e))
}

/// A job as a journaled event, its event id derived from `key` (the same
/// input journals the same id, so a replay publishes no new job).
pub(crate) fn stored_job(job: &v1::BacktestJob, key: &str, at_ns: i64) -> StoredEvent {
    let out = Outgoing::new(job);
    StoredEvent::new(
        out.stream(),
        out.event_type(),
        event_id(at_ns, key),
        at_ns,
        &out.payload(),
    )
}

/// The jobs of `trials`, as journaled events: one per trial, or sweep jobs
/// of up to `run.slice` trials each.
fn jobs_of(run: &mut Run, trials: &[grodt_optimize::Trial], at_ns: i64) -> Vec<StoredEvent> {
    let submitted_at = Some(grodt_proto::convert::datetime_to_timestamp(
        chrono::DateTime::from_timestamp_nanos(at_ns),
    ));
    let stored = |job: &v1::BacktestJob, key: &str| stored_job(job, key, at_ns);
    let mut events = Vec::new();
    let Some(slice) = run.slice else {
        for t in trials {
            let spec = convert::trial_spec(&run.base, t);
            let backtest_id = convert::backtest_id(&spec);
            let job = v1::BacktestJob {
                backtest_id: backtest_id.clone(),
                spec: Some(spec),
                // Metrics, costs and trade statistics only: what a trial needs.
                detail: None,
                optimization_id: run.id.clone(),
                trial_id: t.id.to_string(),
                submitted_at,
                sweep: None,
            };
            let ev = stored(&job, &format!("optimizer:job:{}:{}", run.id, t.id));
            run.backtest_ids.insert(t.id, backtest_id);
            run.jobs.insert(t.id, ev.clone());
            run.unsent.insert(t.id);
            events.push(ev);
        }
        return events;
    };
    for chunk in trials.chunks(slice.max(1)) {
        let Some(first) = chunk.first() else { continue };
        let sets: Vec<grodt_optimize::Params> = chunk.iter().map(|t| t.params.clone()).collect();
        let backtest_id = convert::slice_id(&run.base, &sets);
        let job = v1::BacktestJob {
            backtest_id: backtest_id.clone(),
            spec: Some(run.base.clone()),
            detail: None,
            optimization_id: run.id.clone(),
            trial_id: String::new(),
            submitted_at,
            sweep: Some(v1::SweepSlice {
                sets: chunk
                    .iter()
                    .map(|t| v1::SweepSet {
                        trial_id: t.id.to_string(),
                        params: t.params.clone().into_iter().collect(),
                    })
                    .collect(),
            }),
        };
        let ev = stored(
            &job,
            &format!("optimizer:sweep:{}:{}+{}", run.id, first.id, chunk.len()),
        );
        for t in chunk {
            run.backtest_ids.insert(t.id, backtest_id.clone());
        }
        run.jobs.insert(first.id, ev.clone());
        run.members
            .insert(first.id, chunk.iter().map(|t| t.id).collect());
        run.unsent.insert(first.id);
        events.push(ev);
    }
    events
}

/// Drops the bookkeeping of trials no longer queued.
fn settle(run: &mut Run, at_ns: i64) {
    let mut queued: BTreeSet<u64> = run.study.queued().map(|t| t.trial.id).collect();
    if run.monte_carlo == Mc::Pending {
        match price_noise(run) {
            Some((runs, _)) => {
                queued.extend(
                    (0..runs)
                        .filter(|i| !run.noise.contains_key(i))
                        .map(noise_key),
                );
            }
            None => {
                queued.insert(MC_TRIAL);
            }
        }
    }
    let members = std::mem::take(&mut run.members);
    run.jobs.retain(|k, _| {
        members
            .get(k)
            .map_or(queued.contains(k), |m| m.iter().any(|t| queued.contains(t)))
    });
    run.members = members;
    let jobs = &run.jobs;
    run.members.retain(|k, _| jobs.contains_key(k));
    run.unsent.retain(|k| jobs.contains_key(k));
    if run.state().is_terminal() && run.finished_at_ns.is_none() {
        run.finished_at_ns = Some(at_ns);
    }
}

/// Once the search succeeded with nothing in flight, if Monte Carlo was
/// asked for: the job of the best trial's detailed run (trades and equity
/// curve; its backtest id differs from the trial's, `-mc`, since the
/// trial's stored result keeps no trades), or for PRICE_NOISE one job per
/// noisy run (the best trial's spec with `price_noise`, seeds `seed + 1 +
/// i`; metrics only).
fn dispatch_mc(run: &mut Run, at_ns: i64) -> Vec<StoredEvent> {
    if run.request.monte_carlo.is_none()
        || run.monte_carlo != Mc::NotAsked
        || run.study.state() != StudyState::Succeeded
        || run.study.in_flight() > 0
    {
        return Vec::new();
    }
    let Some(best) = run.study.best().map(|b| b.trial.clone()) else {
        return Vec::new();
    };
    let spec = convert::trial_spec(&run.base, &best);
    let submitted_at = Some(grodt_proto::convert::datetime_to_timestamp(
        chrono::DateTime::from_timestamp_nanos(at_ns),
    ));
    let stored = |job: &v1::BacktestJob, key: &str| stored_job(job, key, at_ns);
    let mut events = Vec::new();
    if let Some((runs, sigma)) = price_noise(run) {
        for i in 0..runs {
            let mut noisy = spec.clone();
            noisy.price_noise = Some(v1::PriceNoise {
                sigma,
                seed: run.request.seed.wrapping_add(1 + u64::from(i)),
            });
            let job = v1::BacktestJob {
                backtest_id: convert::backtest_id(&noisy),
                spec: Some(noisy),
                detail: None,
                optimization_id: run.id.clone(),
                trial_id: format!("{NOISE_PREFIX}{i}"),
                submitted_at,
                sweep: None,
            };
            let ev = stored(&job, &format!("optimizer:job:{}:noise:{i}", run.id));
            run.jobs.insert(noise_key(i), ev.clone());
            run.unsent.insert(noise_key(i));
            events.push(ev);
        }
    } else {
        let job = v1::BacktestJob {
            backtest_id: format!("{}-mc", convert::backtest_id(&spec)),
            spec: Some(spec),
            detail: Some(v1::ResultDetail {
                trades: true,
                fills: false,
                equity_curve: true,
            }),
            optimization_id: run.id.clone(),
            trial_id: MC_TRIAL_ID.to_owned(),
            submitted_at,
            sweep: None,
        };
        let ev = stored(&job, &format!("optimizer:job:{}:mc", run.id));
        run.jobs.insert(MC_TRIAL, ev.clone());
        run.unsent.insert(MC_TRIAL);
        events.push(ev);
    }
    run.monte_carlo = Mc::Pending;
    run.finished_at_ns = None;
    events
}

/// A new run from a checked plan, its first trials dispatched.
fn start_run(
    id: &str,
    request: v1::StartOptimizationRequest,
    plan: Plan,
    at_ns: i64,
) -> (Run, Vec<StoredEvent>) {
    let Plan {
        base,
        searcher,
        config,
        capacity,
        slice,
        sign,
    } = plan;
    let mut run = Run {
        id: id.to_owned(),
        request,
        base,
        study: Study::new(searcher, config),
        sign,
        capacity,
        slice,
        created_at_ns: at_ns,
        finished_at_ns: None,
        metrics: BTreeMap::new(),
        backtest_ids: BTreeMap::new(),
        jobs: BTreeMap::new(),
        members: BTreeMap::new(),
        unsent: BTreeSet::new(),
        monte_carlo: Mc::NotAsked,
        noise: BTreeMap::new(),
    };
    let trials = run.study.fill(capacity);
    let events = jobs_of(&mut run, &trials, at_ns);
    settle(&mut run, at_ns);
    (run, events)
}

/// Records one trial's outcome; false when it was recorded before.
fn record(run: &mut Run, one: &SetOutcome) -> Result<bool, OptimizerError> {
    let metrics: Option<v1::Metrics> = one
        .metrics
        .as_deref()
        .map(|m| decode_hex("trial metrics", m))
        .transpose()?;
    let outcome = match (&metrics, one.ok) {
        (Some(m), true) => Outcome::Ran(convert::trial_metrics(m)),
        _ => Outcome::Failed(if one.error.is_empty() {
            "the backtest failed".into()
        } else {
            one.error.clone()
        }),
    };
    let recorded = run
        .study
        .record(one.trial, outcome)
        .map_err(|e| corrupt("result", e))?;
    if recorded == Recorded::Duplicate {
        return Ok(false);
    }
    if let Some(m) = metrics {
        run.metrics.insert(one.trial, m);
    }
    Ok(true)
}

/// After results: the next trials' jobs (and the Monte Carlo job once the
/// search is over), bookkeeping settled.
fn refill(run: &mut Run, at_ns: i64) -> Vec<StoredEvent> {
    let trials = run.study.fill(run.capacity);
    let mut events = jobs_of(run, &trials, at_ns);
    settle(run, at_ns);
    events.extend(dispatch_mc(run, at_ns));
    events
}

/// Applies `input` to (a copy of) the run it concerns: the new run and the
/// jobs to publish. Deterministic: replay gives the same runs.
fn apply(
    runs: &BTreeMap<String, Run>,
    input: &Input,
) -> Result<(Run, Vec<StoredEvent>, bool), OptimizerError> {
    let existing = |id: &str| {
        runs.get(id)
            .cloned()
            .ok_or_else(|| OptimizerError::NotFound(id.to_owned()))
    };
    match input {
        Input::Start {
            id,
            request,
            at_ns,
            workers,
        } => {
            let request: v1::StartOptimizationRequest = decode_hex("start request", request)?;
            let plan = convert::plan_for(&request, *workers)?;
            let (run, events) = start_run(id, request, plan, *at_ns);
            Ok((run, events, true))
        }
        Input::Result {
            id,
            trial,
            ok,
            error,
            metrics,
            at_ns,
        } => {
            let mut run = existing(id)?;
            let one = SetOutcome {
                trial: *trial,
                ok: *ok,
                error: error.clone(),
                metrics: metrics.clone(),
            };
            if !record(&mut run, &one)? {
                return Ok((run, Vec::new(), false));
            }
            let events = refill(&mut run, *at_ns);
            Ok((run, events, true))
        }
        Input::Slice { id, results, at_ns } => {
            let mut run = existing(id)?;
            let mut any = false;
            for one in results {
                any |= record(&mut run, one)?;
            }
            if !any {
                return Ok((run, Vec::new(), false));
            }
            let events = refill(&mut run, *at_ns);
            Ok((run, events, true))
        }
        Input::Cancel { id, reason, at_ns } => {
            let mut run = existing(id)?;
            run.study
                .cancel(reason)
                .map_err(|_| OptimizerError::Finished {
                    id: id.clone(),
                    state: convert::state_to_proto(run.study.state()).as_str_name(),
                })?;
            settle(&mut run, *at_ns);
            run.finished_at_ns = Some(*at_ns);
            Ok((run, Vec::new(), true))
        }
        Input::MonteCarlo { id, outcome, at_ns } => {
            let mut run = existing(id)?;
            if run.monte_carlo != Mc::Pending {
                return Ok((run, Vec::new(), false));
            }
            run.monte_carlo = Mc::Done(outcome.clone());
            settle(&mut run, *at_ns);
            Ok((run, Vec::new(), true))
        }
        Input::NoiseRun {
            id,
            run: i,
            ok,
            metrics,
            at_ns,
        } => {
            let mut run = existing(id)?;
            let Some((runs, _)) = price_noise(&run) else {
                return Ok((run, Vec::new(), false));
            };
            if run.monte_carlo != Mc::Pending || *i >= runs || run.noise.contains_key(i) {
                return Ok((run, Vec::new(), false));
            }
            let m: Option<v1::Metrics> = match (ok, metrics) {
                (true, Some(m)) => Some(decode_hex("noise run metrics", m)?),
                _ => None,
            };
            run.noise.insert(*i, m);
            if run.noise.len() as u32 == runs {
                let outcome = match run.study.best() {
                    Some(best) => match run.metrics.get(&best.trial.id) {
                        Some(bm) => {
                            let noisy: Vec<Option<v1::Metrics>> =
                                run.noise.values().cloned().collect();
                            convert::noise_monte_carlo(
                                bm,
                                best.objective,
                                &noisy,
                                &run.study.config().objective,
                            )
                        }
                        None => Err("the best trial has no metrics".to_owned()),
                    },
                    None => Err("no best trial".to_owned()),
                };
                run.monte_carlo = Mc::Done(outcome);
            }
            settle(&mut run, *at_ns);
            Ok((run, Vec::new(), true))
        }
        Input::Wf(w) => Err(corrupt(
            "journaled input",
            format!("walk-forward input of {} applied as a study's", w.id()),
        )),
        Input::Published { id, trials } => {
            let mut run = existing(id)?;
            for t in trials {
                run.unsent.remove(t);
            }
            Ok((run, Vec::new(), true))
        }
    }
}

impl Engine {
    /// An engine with no runs; call [`Engine::recover`] before serving.
    pub fn new(store: Store, bus: Arc<dyn EventBus>, metrics: OptimizerMetrics) -> Self {
        let (updates, _) = broadcast::channel(1024);
        Self {
            core: Mutex::new(Core {
                runs: BTreeMap::new(),
                wfs: BTreeMap::new(),
                stale: false,
                unpublished: Vec::new(),
            }),
            store,
            bus,
            updates,
            metrics,
        }
    }

    /// Subscribes to run updates (before reading a snapshot, so none is missed).
    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.updates.subscribe()
    }

    async fn replay(&self) -> Result<Replayed, OptimizerError> {
        let mut runs = BTreeMap::new();
        let mut wfs = BTreeMap::new();
        let mut after = 0;
        loop {
            let page = self.store.journal().scan(JOURNAL, after, 500).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for entry in &page {
                let input: Input = serde_json::from_slice(&entry.input)
                    .map_err(|e| corrupt("journaled input", e))?;
                let at = |e| corrupt(&format!("replaying journal entry {}", entry.seq), e);
                if let Input::Wf(w) = &input {
                    let (wf, _, _) = walkforward::apply(&wfs, &runs, w).map_err(at)?;
                    wfs.insert(wf.id.clone(), wf);
                } else {
                    let (run, _, _) = apply(&runs, &input).map_err(at)?;
                    runs.insert(run.id.clone(), run);
                }
            }
        }
        Ok((runs, wfs))
    }

    /// The state under the lock, rebuilt from the journal when stale, with
    /// any jobs whose publication failed published first.
    async fn lock(&self) -> Result<MutexGuard<'_, Core>, OptimizerError> {
        let mut core = self.core.lock().await;
        if core.stale {
            (core.runs, core.wfs) = self.replay().await?;
            core.stale = false;
            self.metrics.observe(core.runs.values());
        }
        while let Some(ev) = core.unpublished.first() {
            journal::publish_all(&self.bus, std::slice::from_ref(ev)).await?;
            core.unpublished.remove(0);
        }
        Ok(core)
    }

    /// Rebuilds the runs from the journal and publishes the jobs of queued
    /// trials not known to be on the bus (cut off by a crash between commit
    /// and publish).
    ///
    /// # Errors
    /// The store or the bus failed, or the journal does not replay.
    pub async fn recover(&self) -> Result<(), OptimizerError> {
        let mut core = self.core.lock().await;
        (core.runs, core.wfs) = self.replay().await?;
        core.stale = false;
        let pending: Vec<(String, Vec<StoredEvent>)> = core
            .runs
            .values()
            .filter(|r| !r.state().is_terminal() && !r.unsent.is_empty())
            .map(|r| {
                let evs = r
                    .unsent
                    .iter()
                    .filter_map(|t| r.jobs.get(t).cloned())
                    .collect();
                (r.id.clone(), evs)
            })
            .collect();
        for (id, events) in pending {
            tracing::info!(optimization_id = %id, jobs = events.len(), "publishing jobs a crash left unpublished");
            self.publish(&mut core, &id, events).await?;
        }
        // Walk-forward runs a crash cut off: studies not started, folds
        // not chosen, out-of-sample jobs not published.
        let open: Vec<String> = core
            .wfs
            .values()
            .filter(|w| !w.state().is_terminal())
            .map(|w| w.id.clone())
            .collect();
        for id in open {
            self.start_searches(&mut core, &id).await?;
            self.advance(&mut core, &id).await?;
            let unsent = core.wfs.get(&id).map(Wf::unsent_jobs).unwrap_or_default();
            self.publish_wf(&mut core, &id, unsent).await?;
        }
        self.metrics.observe(core.runs.values());
        Ok(())
    }

    /// Starts the folds' studies of walk-forward run `id` not started yet.
    async fn start_searches(&self, core: &mut Core, id: &str) -> Result<(), OptimizerError> {
        let Some(wf) = core.wfs.get(id) else {
            return Ok(());
        };
        if wf.cancelled.is_some() {
            return Ok(());
        }
        let searches = walkforward::plan(&wf.request)?.searches;
        let workers = self.live_workers().await;
        for request in searches {
            let sid = request.optimization_id.clone();
            if core.runs.contains_key(&sid) {
                continue;
            }
            let input = Input::Start {
                id: sid.clone(),
                request: hex::encode(request.encode_to_vec()),
                at_ns: now_ns(),
                workers,
            };
            if let Some((_, events)) = self.commit(core, &format!("start:{sid}"), &input).await? {
                self.publish(core, &sid, events).await?;
            }
        }
        Ok(())
    }

    /// Chooses the parameters of every fold of walk-forward run `id` whose
    /// study has ended, and sends their out-of-sample jobs.
    async fn advance(&self, core: &mut Core, id: &str) -> Result<(), OptimizerError> {
        let ready = match core.wfs.get(id) {
            Some(wf) => wf.ready(&core.runs),
            None => return Ok(()),
        };
        for fold in ready {
            let input = Input::Wf(WfInput::Chosen {
                id: id.to_owned(),
                fold,
                at_ns: now_ns(),
            });
            if let Some((_, events)) = self
                .commit_wf(core, &format!("wf-chosen:{id}:{fold}"), &input)
                .await?
            {
                tracing::info!(optimization_id = %id, fold, "walk-forward fold chosen in sample");
                self.publish_wf(core, id, events).await?;
            }
        }
        let _ = self.updates.send(Update {
            id: id.to_owned(),
            trial: None,
        });
        Ok(())
    }

    /// The walk-forward run a fold's study belongs to.
    fn parent_of(core: &Core, search: &str) -> Option<String> {
        core.wfs
            .values()
            .find(|w| (0..w.windows.len()).any(|k| w.search_id(k as u32) == search))
            .map(|w| w.id.clone())
    }

    /// Journals `input` with its outputs and makes the new run the state.
    async fn commit(
        &self,
        core: &mut Core,
        source: &str,
        input: &Input,
    ) -> Result<Option<(Run, Vec<StoredEvent>)>, OptimizerError> {
        let (run, events, changed) = apply(&core.runs, input)?;
        if !changed || !self.append(core, source, input, &events).await? {
            return Ok(None);
        }
        core.runs.insert(run.id.clone(), run.clone());
        self.metrics.observe(core.runs.values());
        Ok(Some((run, events)))
    }

    /// Journals a walk-forward input with its outputs and makes the new
    /// parent the state.
    async fn commit_wf(
        &self,
        core: &mut Core,
        source: &str,
        input: &Input,
    ) -> Result<Option<(Wf, Vec<StoredEvent>)>, OptimizerError> {
        let Input::Wf(w) = input else {
            return Err(corrupt("walk-forward input", "not one"));
        };
        let (wf, events, changed) = walkforward::apply(&core.wfs, &core.runs, w)?;
        if !changed || !self.append(core, source, input, &events).await? {
            return Ok(None);
        }
        core.wfs.insert(wf.id.clone(), wf.clone());
        Ok(Some((wf, events)))
    }

    /// Appends `input` and its outputs to the journal under `source`: true
    /// once committed, false when another writer journaled that source (its
    /// outcome stands; the state is rebuilt before the next input).
    async fn append(
        &self,
        core: &mut Core,
        source: &str,
        input: &Input,
        events: &[StoredEvent],
    ) -> Result<bool, OptimizerError> {
        let bytes = serde_json::to_vec(input).map_err(|e| corrupt("input", e))?;
        let outputs = journal::encode(events)?;
        let appended = async {
            let mut tx = self.store.begin().await?;
            let seq = tx.journal_append(JOURNAL, source, &bytes, &outputs).await?;
            tx.commit().await?;
            Ok::<_, OptimizerError>(seq)
        }
        .await;
        match appended {
            Ok(Some(_)) => Ok(true),
            Ok(None) => {
                // Another writer journaled this source: its outcome stands.
                core.stale = true;
                Ok(false)
            }
            Err(e) => {
                core.stale = true;
                Err(e)
            }
        }
    }

    /// Publishes a walk-forward run's out-of-sample jobs, then journals that
    /// they are out.
    async fn publish_wf(
        &self,
        core: &mut Core,
        id: &str,
        events: Vec<StoredEvent>,
    ) -> Result<(), OptimizerError> {
        if events.is_empty() {
            return Ok(());
        }
        for (i, ev) in events.iter().enumerate() {
            if let Err(e) = journal::publish_all(&self.bus, std::slice::from_ref(ev)).await {
                core.unpublished.extend_from_slice(&events[i..]);
                return Err(e.into());
            }
        }
        let jobs: Vec<WfJob> = core.wfs.get(id).map_or_else(Vec::new, |w| {
            events
                .iter()
                .filter_map(|ev| w.job_of_event(ev.event_id))
                .collect()
        });
        if jobs.is_empty() {
            return Ok(());
        }
        let (mut folds, mut validations) = (Vec::new(), Vec::new());
        for j in jobs {
            match j {
                WfJob::OutOfSample(k) => folds.push(k),
                WfJob::Validation(k, r) => validations.push((k, r)),
            }
        }
        let source = format!("wf-published:{id}:{}", uuid::Uuid::now_v7());
        let input = Input::Wf(WfInput::Published {
            id: id.to_owned(),
            folds,
            validations,
        });
        self.commit_wf(core, &source, &input).await?;
        Ok(())
    }

    /// Publishes a run's jobs, then journals that they are out.
    async fn publish(
        &self,
        core: &mut Core,
        id: &str,
        events: Vec<StoredEvent>,
    ) -> Result<(), OptimizerError> {
        if events.is_empty() {
            return Ok(());
        }
        for (i, ev) in events.iter().enumerate() {
            if let Err(e) = journal::publish_all(&self.bus, std::slice::from_ref(ev)).await {
                core.unpublished.extend_from_slice(&events[i..]);
                return Err(e.into());
            }
        }
        let dispatched: usize = core.runs.get(id).map_or(events.len(), |r| {
            events
                .iter()
                .map(|ev| {
                    r.jobs
                        .iter()
                        .find(|(_, j)| j.event_id == ev.event_id)
                        .map_or(1, |(k, _)| r.job_size(*k))
                })
                .sum()
        });
        self.metrics.dispatched(dispatched);
        let trials: Vec<u64> = core.runs.get(id).map_or_else(Vec::new, |r| {
            events
                .iter()
                .filter_map(|ev| {
                    r.jobs
                        .iter()
                        .find(|(_, j)| j.event_id == ev.event_id)
                        .map(|(t, _)| *t)
                })
                .collect()
        });
        if trials.is_empty() {
            return Ok(());
        }
        let source = format!("published:{id}:{}", uuid::Uuid::now_v7());
        let input = Input::Published {
            id: id.to_owned(),
            trials,
        };
        self.commit(core, &source, &input).await?;
        Ok(())
    }

    /// StartOptimization: a new run (or the existing one, for the same
    /// request under the same id). A walk-forward request starts its parent
    /// and then one study per fold.
    ///
    /// # Errors
    /// INVALID_ARGUMENT / UNIMPLEMENTED from the plan, ALREADY_EXISTS for an
    /// id taken by another request, or the store or bus failed.
    pub async fn start(
        &self,
        mut request: v1::StartOptimizationRequest,
    ) -> Result<View, OptimizerError> {
        if request.optimization_id.is_empty() {
            request.optimization_id = uuid::Uuid::now_v7().to_string();
        } else {
            convert::check_id(&request.optimization_id)?;
        }
        // Checked before anything is journaled: a bad request leaves no trace.
        let walk_forward = request.walk_forward.is_some();
        if walk_forward {
            walkforward::plan(&request)?;
        } else {
            convert::plan(&request)?;
        }
        let id = request.optimization_id.clone();
        let workers = self.live_workers().await;
        let mut core = self.lock().await?;
        if let Some(existing) = Self::view(&core, &id) {
            let same = match &existing {
                View::Study(r) => r.request == request,
                View::WalkForward(w, _) => w.request == request,
            };
            return if same {
                Ok(existing)
            } else {
                Err(OptimizerError::Conflict(id))
            };
        }
        let at_ns = now_ns();
        let hex_request = hex::encode(request.encode_to_vec());
        if walk_forward {
            let input = Input::Wf(WfInput::Start {
                id: id.clone(),
                request: hex_request,
                at_ns,
            });
            self.commit_wf(&mut core, &format!("start:{id}"), &input)
                .await?;
            self.start_searches(&mut core, &id).await?;
            tracing::info!(optimization_id = %id, "walk-forward optimization started");
        } else {
            let input = Input::Start {
                id: id.clone(),
                request: hex_request,
                at_ns,
                workers,
            };
            if let Some((_, events)) = self
                .commit(&mut core, &format!("start:{id}"), &input)
                .await?
            {
                tracing::info!(optimization_id = %id, jobs = events.len(), "optimization started");
                self.publish(&mut core, &id, events).await?;
            }
        }
        let _ = self.updates.send(Update {
            id: id.clone(),
            trial: None,
        });
        Self::view(&core, &id).ok_or(OptimizerError::NotFound(id))
    }

    /// A run as the API shows it.
    fn view(core: &Core, id: &str) -> Option<View> {
        if let Some(r) = core.runs.get(id) {
            return Some(View::Study(Box::new(r.clone())));
        }
        core.wfs.get(id).map(|w| {
            let searches = (0..w.windows.len())
                .filter_map(|k| {
                    let sid = w.search_id(k as u32);
                    core.runs.get(&sid).map(|r| (sid, r.clone()))
                })
                .collect();
            View::WalkForward(Box::new(w.clone()), searches)
        })
    }

    /// CancelOptimization. Cancelling a walk-forward run cancels its
    /// folds' studies still running.
    ///
    /// # Errors
    /// NOT_FOUND, FAILED_PRECONDITION for a finished run, or the store failed.
    pub async fn cancel(&self, id: &str, reason: &str) -> Result<View, OptimizerError> {
        let mut core = self.lock().await?;
        if core.wfs.contains_key(id) {
            let input = Input::Wf(WfInput::Cancel {
                id: id.to_owned(),
                reason: reason.to_owned(),
                at_ns: now_ns(),
            });
            let source = format!("cancel:{id}:{}", uuid::Uuid::now_v7());
            self.commit_wf(&mut core, &source, &input).await?;
            let searches: Vec<String> = core
                .wfs
                .get(id)
                .map(|w| {
                    (0..w.windows.len())
                        .map(|k| w.search_id(k as u32))
                        .collect()
                })
                .unwrap_or_default();
            for sid in searches {
                if core
                    .runs
                    .get(&sid)
                    .is_some_and(|r| !r.state().is_terminal())
                {
                    self.cancel_run(&mut core, &sid, reason).await?;
                }
            }
        } else {
            self.cancel_run(&mut core, id, reason).await?;
        }
        let _ = self.updates.send(Update {
            id: id.to_owned(),
            trial: None,
        });
        Self::view(&core, id).ok_or_else(|| OptimizerError::NotFound(id.to_owned()))
    }

    async fn cancel_run(
        &self,
        core: &mut Core,
        id: &str,
        reason: &str,
    ) -> Result<(), OptimizerError> {
        let input = Input::Cancel {
            id: id.to_owned(),
            reason: reason.to_owned(),
            at_ns: now_ns(),
        };
        let source = format!("cancel:{id}:{}", uuid::Uuid::now_v7());
        self.commit(core, &source, &input).await?;
        Ok(())
    }

    /// One run.
    ///
    /// # Errors
    /// NOT_FOUND, or the state had to be rebuilt and that failed.
    pub async fn get(&self, id: &str) -> Result<View, OptimizerError> {
        let core = self.lock().await?;
        Self::view(&core, id).ok_or_else(|| OptimizerError::NotFound(id.to_owned()))
    }

    /// Every run (walk-forward runs and their folds' studies included),
    /// newest first.
    ///
    /// # Errors
    /// The state had to be rebuilt and that failed.
    pub async fn list(&self) -> Result<Vec<View>, OptimizerError> {
        let core = self.lock().await?;
        let mut views: Vec<View> = core
            .runs
            .keys()
            .chain(core.wfs.keys())
            .filter_map(|id| Self::view(&core, id))
            .collect();
        views.sort_by(|a, b| {
            b.created_at_ns()
                .cmp(&a.created_at_ns())
                .then(a.id().cmp(b.id()))
        });
        Ok(views)
    }

    /// A trial's result from the results stream (`event_id` its envelope's).
    ///
    /// # Errors
    /// The store or the bus failed (the delivery is retried).
    pub async fn on_result(
        &self,
        event_id: uuid::Uuid,
        event: v1::BacktestResultEvent,
    ) -> Result<(), OptimizerError> {
        if event.optimization_id.is_empty() {
            return Ok(()); // a plain backtest's result
        }
        let mut core = self.lock().await?;
        let id = event.optimization_id;
        if core.wfs.contains_key(&id) {
            return self
                .on_wf_result(&mut core, event_id, id, event.trial_id, event.result)
                .await;
        }
        let Some(run) = core.runs.get(&id) else {
            tracing::warn!(optimization_id = %id, "result of an unknown optimization ignored");
            self.metrics.ignored();
            return Ok(());
        };
        if event.trial_id == MC_TRIAL_ID {
            let result = event.result.unwrap_or_default();
            return self.on_mc_result(&mut core, id, result).await;
        }
        if let Some(i) = event
            .trial_id
            .strip_prefix(NOISE_PREFIX)
            .and_then(|i| i.parse::<u32>().ok())
        {
            let result = event.result.unwrap_or_default();
            let input = Input::NoiseRun {
                id: id.clone(),
                run: i,
                ok: result.status == v1::BacktestStatus::Succeeded as i32,
                metrics: result.metrics.map(|m| hex::encode(m.encode_to_vec())),
                at_ns: now_ns(),
            };
            if self
                .commit(&mut core, &format!("result:{event_id}"), &input)
                .await?
                .is_none()
            {
                self.metrics.ignored();
            }
            let _ = self.updates.send(Update { id, trial: None });
            return Ok(());
        }
        if !event.trial_ids.is_empty() {
            let (trial_ids, result) = (event.trial_ids, event.result.unwrap_or_default());
            return self
                .on_slice(&mut core, event_id, id, trial_ids, result)
                .await;
        }
        let trial = event.trial_id.parse::<u64>().ok();
        let queued = trial
            .and_then(|t| run.study.trial(t))
            .is_some_and(|t| t.state == TrialState::Queued);
        let Some(trial) = trial.filter(|_| queued) else {
            // A redelivery or a result republished by a worker: done already.
            self.metrics.ignored();
            return Ok(());
        };
        let result = event.result.unwrap_or_default();
        let ok = result.status == v1::BacktestStatus::Succeeded as i32;
        let input = Input::Result {
            id: id.clone(),
            trial,
            ok,
            error: result.error,
            metrics: result.metrics.map(|m| hex::encode(m.encode_to_vec())),
            at_ns: now_ns(),
        };
        let Some((run, events)) = self
            .commit(&mut core, &format!("result:{event_id}"), &input)
            .await?
        else {
            return Ok(());
        };
        self.metrics
            .finished(run.study.trial(trial).map(|t| t.state));
        if run.state().is_terminal() && run.in_flight() == 0 {
            tracing::info!(optimization_id = %id, state = ?run.state(), "optimization ended");
        }
        self.publish(&mut core, &id, events).await?;
        let _ = self.updates.send(Update {
            id: id.clone(),
            trial: Some(trial),
        });
        if let Some(parent) = Self::parent_of(&core, &id) {
            self.advance(&mut core, &parent).await?;
        }
        Ok(())
    }

    /// A result for a walk-forward run: a fold's out-of-sample backtest, or
    /// a candidate's validation run (the last of a fold's sends its
    /// out-of-sample job).
    async fn on_wf_result(
        &self,
        core: &mut Core,
        event_id: uuid::Uuid,
        id: String,
        trial_id: String,
        result: Option<v1::BacktestResult>,
    ) -> Result<(), OptimizerError> {
        let job =
            WfJob::parse(&trial_id).filter(|&j| core.wfs.get(&id).is_some_and(|w| w.awaits(j)));
        let Some(job) = job else {
            self.metrics.ignored();
            return Ok(());
        };
        let input = Input::Wf(walkforward::result_input(
            &id,
            job,
            &result.unwrap_or_default(),
            now_ns(),
        ));
        if let Some((wf, events)) = self
            .commit_wf(core, &format!("result:{event_id}"), &input)
            .await?
        {
            tracing::info!(optimization_id = %id, ?job, state = ?wf.state(), "walk-forward run answered");
            self.publish_wf(core, &id, events).await?;
        }
        let _ = self.updates.send(Update { id, trial: None });
        Ok(())
    }

    /// A sweep job's result: every set whose trial is still queued recorded
    /// in one journal entry (a set the result lacks, or a slice that failed
    /// as a whole, fails its trial with the reason).
    async fn on_slice(
        &self,
        core: &mut Core,
        event_id: uuid::Uuid,
        id: String,
        trial_ids: Vec<String>,
        result: v1::BacktestResult,
    ) -> Result<(), OptimizerError> {
        let Some(run) = core.runs.get(&id) else {
            return Ok(());
        };
        let slice_failed = result.status != v1::BacktestStatus::Succeeded as i32;
        let mut results = Vec::new();
        for (i, trial_id) in trial_ids.iter().enumerate() {
            let Some(trial) = trial_id.parse::<u64>().ok().filter(|t| {
                run.study
                    .trial(*t)
                    .is_some_and(|t| t.state == TrialState::Queued)
            }) else {
                continue;
            };
            let one = match result.sweep_results.get(i) {
                Some(r) if !slice_failed => SetOutcome {
                    trial,
                    ok: r.status == v1::BacktestStatus::Succeeded as i32,
                    error: r.error.clone(),
                    metrics: r.metrics.as_ref().map(|m| hex::encode(m.encode_to_vec())),
                },
                _ => SetOutcome {
                    trial,
                    ok: false,
                    error: if slice_failed && !result.error.is_empty() {
                        result.error.clone()
                    } else {
                        format!("the sweep result holds no outcome for set {i}")
                    },
                    metrics: None,
                },
            };
            results.push(one);
        }
        if results.is_empty() {
            // A redelivery or a result republished by a worker: done already.
            self.metrics.ignored();
            return Ok(());
        }
        let trials: Vec<u64> = results.iter().map(|r| r.trial).collect();
        let input = Input::Slice {
            id: id.clone(),
            results,
            at_ns: now_ns(),
        };
        let Some((run, events)) = self
            .commit(core, &format!("result:{event_id}"), &input)
            .await?
        else {
            return Ok(());
        };
        for t in &trials {
            self.metrics.finished(run.study.trial(*t).map(|t| t.state));
        }
        if run.state().is_terminal() && run.in_flight() == 0 {
            tracing::info!(optimization_id = %id, state = ?run.state(), "optimization ended");
        }
        self.publish(core, &id, events).await?;
        for t in trials {
            let _ = self.updates.send(Update {
                id: id.clone(),
                trial: Some(t),
            });
        }
        if let Some(parent) = Self::parent_of(core, &id) {
            self.advance(core, &parent).await?;
        }
        Ok(())
    }

    /// The detailed result of the best trial: the Monte Carlo analysis.
    async fn on_mc_result(
        &self,
        core: &mut Core,
        id: String,
        result: v1::BacktestResult,
    ) -> Result<(), OptimizerError> {
        let Some(run) = core.runs.get(&id) else {
            return Ok(());
        };
        let (Mc::Pending, Some(settings)) = (&run.monte_carlo, run.request.monte_carlo.as_ref())
        else {
            self.metrics.ignored();
            return Ok(());
        };
        // Up to 100,000 simulations over a whole equity curve: CPU work,
        // off the executor.
        let (settings, seed) = (*settings, run.request.seed);
        let outcome =
            tokio::task::spawn_blocking(move || convert::monte_carlo(&settings, &result, seed))
                .await
                .map_err(|e| corrupt("Monte Carlo task", e))?;
        let input = Input::MonteCarlo {
            id: id.clone(),
            outcome,
            at_ns: now_ns(),
        };
        let source = format!("monte-carlo:{id}");
        self.commit(core, &source, &input).await?;
        tracing::info!(optimization_id = %id, "Monte Carlo analysis recorded");
        let _ = self.updates.send(Update { id, trial: None });
        Ok(())
    }

    /// Backtest workers live now: consumers of the jobs stream's worker
    /// group that read within [`LIVE_IDLE`] (a worker blocks a few seconds
    /// per read; one that died ages past it). 0 when the bus cannot tell.
    pub async fn live_workers(&self) -> u32 {
        let (Ok(stream), Ok(group)) = (
            grodt_bus::StreamName::parse(JOBS_STREAM),
            grodt_bus::GroupName::parse(WORKER_GROUP),
        ) else {
            return 0;
        };
        match self.bus.consumers(&stream, &group).await {
            Ok(list) => {
                let live = list.iter().filter(|c| c.idle < LIVE_IDLE).count();
                u32::try_from(live).unwrap_or(u32::MAX)
            }
            Err(e) => {
                tracing::debug!(error = %e, "worker consumers unreadable");
                0
            }
        }
    }

    /// The worker fleet's load: jobs delivered and not finished (workers
    /// busy) and jobs no worker has taken (waiting), from the workers'
    /// consumer group on the jobs stream; zeros when it cannot be read.
    pub async fn fleet(&self) -> (u64, u64) {
        let Ok(stream) = grodt_bus::StreamName::parse(JOBS_STREAM) else {
            return (0, 0);
        };
        match self.bus.groups(&stream).await {
            Ok(groups) => groups
                .iter()
                .find(|g| g.group == WORKER_GROUP)
                .map_or((0, 0), |g| (g.pending, g.lag)),
            Err(e) => {
                tracing::debug!(error = %e, "worker group unreadable");
                (0, 0)
            }
        }
    }

    /// Keeps the consumer-lag gauge current until `stop`.
    pub async fn watch_lag(&self, every: Duration, stop: tokio::sync::watch::Receiver<bool>) {
        grodt_kit::lag::watch(
            &*self.bus,
            &[RESULTS_STREAM],
            GROUP,
            &self.metrics.lag,
            every,
            stop,
        )
        .await;
    }
}

/// The results consumer's handler: one span per result, parented on the
/// envelope's trace context.
pub struct ResultHandler(pub Arc<Engine>);

#[async_trait]
impl Handler for ResultHandler {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let span = tracing::info_span!("optimizer.result", event_id = %delivery.envelope.event_id);
        grodt_kit::telemetry::follow_envelope(&span, &delivery.envelope);
        let event = match topic::decode::<v1::BacktestResultEvent>(
            &delivery.envelope.event_type,
            delivery.envelope.payload.as_ref(),
        ) {
            Ok(e) => e,
            Err(e) => {
                // Not a result this service can read: no retry will help.
                tracing::error!(error = %e, "undecodable result event dropped");
                return Ok(());
            }
        };
        self.0
            .on_result(delivery.envelope.event_id, event)
            .instrument(span)
            .await
            .map_err(|e| Box::new(e) as HandlerError)
    }
}
