//! Running backtests for the RPCs and the job consumer: load the datasets from
//! the catalog, run the shared code path in `spawn_blocking`, record the run
//! in the store, publish results.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use grodt_bus::consumer::{Handler, HandlerError};
use grodt_bus::{Delivery, Envelope, EventBus, StreamName};
use grodt_core::error::{Classify, ErrorKind};
use grodt_data::Catalog;
use grodt_kit::KitError;
use grodt_proto::topic::{self, Outgoing, Topic};
use grodt_proto::v1;
use grodt_store::{RunKind, RunStatus, Store, StoreError};
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};
use prost::Message;
use tracing::Instrument;
use uuid::Uuid;

use crate::convert::{Detail, Job, SpecError, result_to_proto, trim};
use grodt_backtest::{DataSpec, LoadError, Outcome, RunError, RunSpec, SeriesCache};

/// Stream the jobs arrive on (the stream of `BacktestJob`, from grodt-proto's topic table).
pub const JOBS_STREAM: &str = <v1::BacktestJob as Topic>::STREAM;
/// Stream results are published on (the stream of `BacktestResultEvent`).
pub const RESULTS_STREAM: &str = <v1::BacktestResultEvent as Topic>::STREAM;
/// Consumer group of every worker replica (and the processed-events consumer name).
pub const GROUP: &str = "backtest-worker";

/// Why a backtest failed; mapped to a gRPC code through `Classify`.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The request is invalid (names the field).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Data or engine refused the run.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A dataset could not be read.
    #[error("{field}: {source}")]
    Data {
        /// The request field naming the dataset.
        field: String,
        /// Why.
        source: grodt_data::DataError,
    },
    /// A dataset id names no dataset of the store.
    #[error("{field}: no dataset {id}")]
    UnknownDataset {
        /// The request field naming the dataset.
        field: String,
        /// The id asked for.
        id: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] grodt_bus::BusError),
    /// A stored or received message could not be decoded.
    #[error("{0}")]
    Corrupt(String),
}

impl Classify for WorkerError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Spec(e) => e.kind(),
            Self::Run(e) => e.kind(),
            Self::Data { source, .. } => source.kind(),
            Self::UnknownDataset { .. } => ErrorKind::NotFound,
            Self::Store(e) => e.kind(),
            Self::Bus(e) => e.kind(),
            Self::Corrupt(_) => ErrorKind::Internal,
        }
    }
}

/// The worker's own metrics (names from docs/metrics.md).
#[derive(Clone)]
pub struct WorkerMetrics {
    jobs: IntCounterVec,
    in_progress: IntGauge,
    bars: IntCounter,
    duration: Histogram,
    cache_lookups: IntCounterVec,
    cache_entries: IntGauge,
    cache_bars: IntGauge,
    /// Jobs of the stream not yet delivered to the workers' group: the queue
    /// KEDA scales on, as Prometheus sees it.
    pub lag: IntGaugeVec,
}

impl WorkerMetrics {
    /// Registers them on the service's registry.
    ///
    /// # Errors
    /// A name clash in the registry.
    pub fn register(metrics: &grodt_kit::Metrics) -> Result<Self, KitError> {
        let m = KitError::Metrics;
        let jobs = IntCounterVec::new(
            Opts::new(metrics.name("jobs_total"), "backtest jobs finished"),
            &["outcome"],
        )
        .map_err(m)?;
        let in_progress = IntGauge::new(
            metrics.name("jobs_in_progress"),
            "jobs this worker is running",
        )
        .map_err(m)?;
        let bars = IntCounter::new(
            metrics.name("bars_processed_total"),
            "bars simulated (throughput)",
        )
        .map_err(m)?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(metrics.name("job_duration_seconds"), "wall time per job").buckets(
                vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0],
            ),
        )
        .map_err(m)?;
        let cache_lookups = IntCounterVec::new(
            Opts::new(
                metrics.name("series_cache_lookups_total"),
                "dataset loads by outcome: hit (from memory) or miss (read from Parquet)",
            ),
            &["outcome"],
        )
        .map_err(m)?;
        let cache_entries = IntGauge::new(
            metrics.name("series_cache_entries"),
            "series held by the cache of loaded datasets",
        )
        .map_err(m)?;
        let cache_bars = IntGauge::new(
            metrics.name("series_cache_bars"),
            "bars held by the cache of loaded datasets",
        )
        .map_err(m)?;
        let lag = grodt_kit::lag::gauge(metrics)?;
        let r = metrics.registry();
        r.register(Box::new(jobs.clone())).map_err(m)?;
        r.register(Box::new(in_progress.clone())).map_err(m)?;
        r.register(Box::new(bars.clone())).map_err(m)?;
        r.register(Box::new(duration.clone())).map_err(m)?;
        r.register(Box::new(cache_lookups.clone())).map_err(m)?;
        r.register(Box::new(cache_entries.clone())).map_err(m)?;
        r.register(Box::new(cache_bars.clone())).map_err(m)?;
        for outcome in ["ok", "failed"] {
            jobs.with_label_values(&[outcome]);
        }
        for outcome in ["hit", "miss"] {
            cache_lookups.with_label_values(&[outcome]);
        }
        Ok(Self {
            jobs,
            in_progress,
            bars,
            duration,
            cache_lookups,
            cache_entries,
            cache_bars,
            lag,
        })
    }
}

/// Everything a backtest needs; shared by the RPC handlers and the job consumer.
#[derive(Clone)]
pub struct Worker {
    /// The Parquet catalog shared with market-data.
    pub catalog: Arc<Catalog>,
    /// Loaded series, shared by the jobs of this process.
    pub cache: Arc<SeriesCache>,
    /// Runs and processed events.
    pub store: Store,
    /// Jobs and results.
    pub bus: Arc<dyn EventBus>,
    /// This instance's name (reported in results).
    pub instance: String,
    /// Counters.
    pub metrics: WorkerMetrics,
}

fn stream(name: &str) -> Result<StreamName, WorkerError> {
    StreamName::parse(name).map_err(WorkerError::from)
}

/// The run id of a backtest id: the UUID itself, or one derived from the text.
pub fn run_id(backtest_id: &str) -> Uuid {
    Uuid::parse_str(backtest_id).unwrap_or_else(|_| {
        use id_digest::digest;
        uuid::Builder::from_sha1_bytes(digest(backtest_id.as_bytes())).into_uuid()
    })
}

/// A dependency-free 16-byte digest (FNV-1a, two lanes) for ids that are not
/// UUIDs; collisions only matter between ids a client chose itself.
mod id_digest {
    pub fn digest(bytes: &[u8]) -> [u8; 16] {
        let mut a: u64 = 0xcbf2_9ce4_8422_2325;
        let mut b: u64 = 0x8422_2325_cbf2_9ce4;
        for &x in bytes {
            a = (a ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3);
            b = (b ^ u64::from(x))
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(7);
        }
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&a.to_be_bytes());
        out[8..].copy_from_slice(&b.to_be_bytes());
        out
    }
}

/// Checks a client-chosen backtest id: 1..64 of `[A-Za-z0-9_-]`.
pub fn check_backtest_id(id: &str) -> Result<(), SpecError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(SpecError {
            field: "backtest_id".into(),
            reason: "must be 1..64 characters of [A-Za-z0-9_-]".into(),
        })
    }
}

/// Decodes hex text: only for runs stored before results and requests moved
/// to their `*_pb` byte columns (store migration 0003).
fn unhex(text: &str) -> Result<Vec<u8>, WorkerError> {
    let bad = || WorkerError::Corrupt(format!("stored message is not hex: {text:.32}"));
    if !text.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect()
}

/// The stored form of a result: the exact wire message, trimmed to what the
/// job keeps, as protobuf bytes (the run's `result_pb`), plus a few readable
/// fields for people querying the table (the run's `result` JSON).
fn stored_result(result: &v1::BacktestResult) -> (serde_json::Value, Vec<u8>) {
    let m = result.metrics.as_ref();
    let summary = serde_json::json!({
        "status": v1::BacktestStatus::try_from(result.status).map(|s| s.as_str_name()).unwrap_or("UNKNOWN"),
        "error": result.error,
        "final_equity": m.and_then(|m| m.final_equity.as_ref()).map(|d| d.value.clone()),
        "trades": m.map(|m| m.trade_count),
        "fills": m.map(|m| m.fill_count),
        "kept": {
            "trades": !result.trades.is_empty(),
            "fills": !result.fills.is_empty(),
            "equity_curve": !result.equity_curve.is_empty(),
        },
    });
    (summary, result.encode_to_vec())
}

/// Every part of a result: what `RunBacktest` and `SubmitBacktest` store, so
/// `GetResult` can return any part later.
pub const FULL_DETAIL: v1::ResultDetail = v1::ResultDetail {
    trades: true,
    fills: true,
    equity_curve: true,
};

impl Worker {
    /// market-data names datasets by UUID, the catalog by
    /// `source/symbol/timeframe`: rewrites UUID ids of `spec` into catalog ids
    /// through the shared store, so both forms are accepted everywhere.
    pub async fn resolve_datasets(&self, spec: &mut v1::BacktestSpec) -> Result<(), WorkerError> {
        for (i, id) in spec.dataset_ids.iter_mut().enumerate() {
            let Ok(uuid) = Uuid::parse_str(id) else {
                continue;
            };
            match self.store.datasets().get(uuid).await {
                Ok(row) => {
                    *id = format!(
                        "{}/{}/{}",
                        row.data.source, row.data.symbol, row.data.timeframe
                    );
                }
                Err(StoreError::NotFound { .. }) => {
                    return Err(WorkerError::UnknownDataset {
                        field: format!("spec.dataset_ids[{i}]"),
                        id: id.clone(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// NOT_FOUND for a dataset the catalog does not hold. The catalog's
    /// metadata store blocks, so this runs on a blocking thread.
    pub async fn check_datasets(&self, job: &Job) -> Result<(), WorkerError> {
        let catalog = self.catalog.clone();
        let ids = job.datasets.clone();
        tokio::task::spawn_blocking(move || {
            for (i, id) in ids.iter().enumerate() {
                catalog.describe(id).map_err(|source| WorkerError::Data {
                    field: format!("spec.dataset_ids[{i}]"),
                    source,
                })?;
            }
            Ok(())
        })
        .await
        .map_err(|e| WorkerError::Corrupt(format!("dataset check failed: {e}")))?
    }

    /// Loads the job's datasets (through the series cache) and runs it on a
    /// blocking thread. Returns the run spec as run: its periods per year
    /// inferred from the traded series' bars when the request left them 0.
    async fn compute(&self, job: Job) -> Result<(Vec<String>, Outcome, RunSpec), WorkerError> {
        let span = tracing::info_span!("backtest.run", strategy = job.spec.strategy.name());
        let worker = self.clone();
        let handle = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let (symbols, series, spec) = worker.load_blocking(job)?;
            let outcome = grodt_backtest::run(&spec, &series, &mut |_| {})?;
            Ok::<_, WorkerError>((symbols, outcome, spec))
        });
        handle
            .await
            .map_err(|e| WorkerError::Corrupt(format!("backtest task failed: {e}")))?
    }

    /// Loads `job`'s datasets through the series cache (blocking: call it
    /// on a blocking thread): the symbols, the series, and the run spec with
    /// its periods per year inferred from the traded series when the
    /// request left them 0.
    fn load_blocking(
        &self,
        mut job: Job,
    ) -> Result<(Vec<String>, Vec<grodt_backtest::Series>, RunSpec), WorkerError> {
        let data = DataSpec {
            datasets: std::mem::take(&mut job.datasets),
            range: job.range,
            fractional: job.fractional,
            symbol_borrow_rates: std::mem::take(&mut job.symbol_borrow_rates),
            warmup_bars: job.warmup_bars,
        };
        let loaded = grodt_backtest::load_series(&self.catalog, &self.cache, &data);
        let stats = self.cache.stats();
        self.metrics
            .cache_entries
            .set(i64::try_from(stats.entries).unwrap_or(i64::MAX));
        self.metrics
            .cache_bars
            .set(i64::try_from(stats.bars).unwrap_or(i64::MAX));
        let loaded = loaded.map_err(|e| match e {
            LoadError::Dataset { index, source } => WorkerError::Data {
                field: format!("spec.dataset_ids[{index}]"),
                source,
            },
            LoadError::Run(e) => WorkerError::Run(e),
        })?;
        self.metrics
            .cache_lookups
            .with_label_values(&["hit"])
            .inc_by(loaded.hits);
        self.metrics
            .cache_lookups
            .with_label_values(&["miss"])
            .inc_by(loaded.misses);
        let mut loaded = loaded;
        if let Some((sigma, seed)) = job.noise {
            // A copy: the cached series stay clean.
            for (i, s) in loaded.series.iter_mut().enumerate() {
                s.bars = grodt_backtest::noise::with_price_noise(
                    &s.bars,
                    sigma,
                    seed.wrapping_add(i as u64),
                )
                .map_err(|e| SpecError {
                    field: "spec.price_noise.sigma".into(),
                    reason: e.to_string(),
                })?;
            }
        }
        let symbols = loaded
            .series
            .iter()
            .map(|s| s.instrument.id.clone())
            .collect();
        if let Some(traded) = loaded.series.first() {
            let ts: Vec<i64> = traded.bars.iter().map(|b| b.ts).collect();
            job.resolve_metrics(&ts);
        }
        Ok((symbols, loaded.series, job.spec))
    }

    /// Evaluates every set of a sweep job (blocking): in one pass through
    /// grodt-sweep's kernel when it models the spec (one traded series, a
    /// strategy with a kernel, the settings it supports), otherwise set by
    /// set on the event engine. A set the registry refuses fails alone.
    fn sweep_blocking(
        &self,
        job: Job,
        sets: &[BTreeMap<String, String>],
    ) -> Result<(Vec<v1::SweepSetResult>, u64), WorkerError> {
        let (symbols, series, spec) = self.load_blocking(job)?;
        let name = spec.strategy.name();
        let bars = series.first().map_or(0, |s| s.bars.len() as u64);
        let mut out: Vec<Option<v1::SweepSetResult>> = sets
            .iter()
            .map(|set| {
                grodt_strategies::registry::parse(name, set)
                    .err()
                    .map(|e| failed_set(set, &e.to_string()))
            })
            .collect();
        let valid: Vec<usize> = (0..sets.len()).filter(|&i| out[i].is_none()).collect();
        let kernel = match series.as_slice() {
            [traded] if grodt_sweep::supports(name, &spec.config) => {
                let kernel_series = grodt_sweep::Series::new(&traded.instrument, &traded.bars)
                    .map_err(|e| WorkerError::Corrupt(format!("sweep series: {e}")))?;
                let chosen: Vec<BTreeMap<String, String>> =
                    valid.iter().map(|&i| sets[i].clone()).collect();
                match grodt_sweep::sweep(
                    name,
                    &kernel_series,
                    &chosen,
                    &spec.config,
                    &spec.metrics,
                    grodt_sweep::Threads::All,
                ) {
                    Ok(outcomes) => Some(outcomes),
                    // A parameter the kernel does not model (regime gating,
                    // short-only): the engine runs them all.
                    Err(grodt_sweep::SweepError::Unsupported { field, reason }) => {
                        tracing::debug!(field, reason, "sweep kernel declined; event engine");
                        None
                    }
                    Err(e) => return Err(WorkerError::Corrupt(format!("sweep kernel: {e}"))),
                }
            }
            _ => None,
        };
        match kernel {
            Some(outcomes) => {
                let initial = spec.config.starting_cash;
                for (&i, o) in valid.iter().zip(&outcomes) {
                    out[i] = Some(v1::SweepSetResult {
                        params: sets[i].clone().into_iter().collect(),
                        status: v1::BacktestStatus::Succeeded as i32,
                        error: String::new(),
                        metrics: Some(crate::convert::sweep_metrics_to_proto(
                            o,
                            initial,
                            bars,
                            spec.metrics.periods_per_year,
                        )),
                        path: "sweep".into(),
                    });
                }
            }
            None => {
                for &i in &valid {
                    let mut one = spec.clone();
                    one.strategy = grodt_strategies::registry::parse(name, &sets[i])
                        .map_err(|e| WorkerError::Corrupt(format!("set {i}: {e}")))?;
                    out[i] = Some(match grodt_backtest::run(&one, &series, &mut |_| {}) {
                        Ok(outcome) => v1::SweepSetResult {
                            params: sets[i].clone().into_iter().collect(),
                            status: v1::BacktestStatus::Succeeded as i32,
                            error: String::new(),
                            metrics: result_to_proto(&symbols, &one, &outcome).metrics,
                            path: "engine".into(),
                        },
                        Err(e) => failed_set(&sets[i], &e.to_string()),
                    });
                }
            }
        }
        let results = out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| failed_set(&BTreeMap::new(), "not evaluated")))
            .collect();
        Ok((results, bars * sets.len() as u64))
    }

    /// Runs a sweep job's sets and builds its wire result: SUCCEEDED with
    /// one `sweep_results` entry per set, or FAILED when the slice as a
    /// whole cannot run (its data, its spec); records metrics.
    async fn sweep_result(
        &self,
        backtest_id: &str,
        spec: v1::BacktestSpec,
        slice: v1::SweepSlice,
        queued_at: chrono::DateTime<chrono::Utc>,
    ) -> v1::BacktestResult {
        let started = chrono::Utc::now();
        let clock = Instant::now();
        self.metrics.in_progress.inc();
        let outcome = self.compute_sweep(spec.clone(), slice).await;
        self.metrics.in_progress.dec();
        self.metrics.duration.observe(clock.elapsed().as_secs_f64());
        let result = match outcome {
            Ok((sweep_results, set_bars)) => {
                self.metrics.jobs.with_label_values(&["ok"]).inc();
                self.metrics.bars.inc_by(set_bars);
                v1::BacktestResult {
                    status: v1::BacktestStatus::Succeeded as i32,
                    sweep_results,
                    engine_version: format!("grodt-sweep {}", env!("CARGO_PKG_VERSION")),
                    ..v1::BacktestResult::default()
                }
            }
            Err(e) => {
                self.metrics.jobs.with_label_values(&["failed"]).inc();
                tracing::warn!(backtest_id, error = %e, "sweep job failed");
                v1::BacktestResult {
                    status: v1::BacktestStatus::Failed as i32,
                    error: e.to_string(),
                    ..v1::BacktestResult::default()
                }
            }
        };
        self.stamp(result, backtest_id, spec, queued_at, started)
    }

    /// Checks a sweep slice, converts the spec (with the first set's
    /// parameters, so the strategy part validates) and evaluates the sets.
    async fn compute_sweep(
        &self,
        spec: v1::BacktestSpec,
        slice: v1::SweepSlice,
    ) -> Result<(Vec<v1::SweepSetResult>, u64), WorkerError> {
        if slice.sets.is_empty() || slice.sets.len() > MAX_SWEEP_SETS {
            return Err(SpecError {
                field: "sweep.sets".into(),
                reason: format!("must hold 1..={MAX_SWEEP_SETS} sets"),
            }
            .into());
        }
        let base: BTreeMap<String, String> = spec.params.clone().into_iter().collect();
        let sets: Vec<BTreeMap<String, String>> = slice
            .sets
            .into_iter()
            .map(|s| {
                let mut full = base.clone();
                full.extend(s.params);
                full
            })
            .collect();
        let mut first = spec;
        first.params = sets[0].clone().into_iter().collect();
        let job = Job::try_from(first)?;
        let span = tracing::info_span!(
            "backtest.sweep",
            strategy = job.spec.strategy.name(),
            sets = sets.len()
        );
        let worker = self.clone();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            worker.sweep_blocking(job, &sets)
        })
        .await
        .map_err(|e| WorkerError::Corrupt(format!("sweep task failed: {e}")))?
    }

    /// Runs `job` as run `id` (already created, queued), records it and returns the result.
    pub async fn execute(
        &self,
        id: Uuid,
        backtest_id: &str,
        spec: v1::BacktestSpec,
        job: Job,
    ) -> Result<v1::BacktestResult, WorkerError> {
        let run = self.store.runs().get(id).await?;
        if run.status == RunStatus::Queued {
            self.store.runs().transition(id, RunStatus::Running).await?;
        }
        let result = self
            .compute_result(backtest_id, spec, job, run.created_at)
            .await;
        let status = if result.status == v1::BacktestStatus::Succeeded as i32 {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        // RunBacktest keeps every part, as it always has; GetResult trims.
        let (json, pb) = stored_result(&result);
        let net = net_pnl(&result);
        self.store
            .transaction(|tx| {
                Box::pin(async move {
                    tx.set_run_result(id, &json, Some(&pb), net).await?;
                    tx.transition_run(id, status).await?;
                    Ok::<_, StoreError>(())
                })
            })
            .await?;
        Ok(result)
    }

    /// Runs a job and builds its wire result, SUCCEEDED or FAILED; records metrics.
    async fn compute_result(
        &self,
        backtest_id: &str,
        spec: v1::BacktestSpec,
        job: Job,
        queued_at: chrono::DateTime<chrono::Utc>,
    ) -> v1::BacktestResult {
        let started = chrono::Utc::now();
        let clock = Instant::now();
        self.metrics.in_progress.inc();
        let outcome = self.compute(job).await;
        self.metrics.in_progress.dec();
        self.metrics.duration.observe(clock.elapsed().as_secs_f64());
        let result = match outcome {
            Ok((symbols, outcome, run_spec)) => {
                self.metrics.jobs.with_label_values(&["ok"]).inc();
                self.metrics.bars.inc_by(outcome.result.bars);
                result_to_proto(&symbols, &run_spec, &outcome)
            }
            Err(e) => {
                self.metrics.jobs.with_label_values(&["failed"]).inc();
                tracing::warn!(backtest_id, error = %e, "backtest failed");
                v1::BacktestResult {
                    status: v1::BacktestStatus::Failed as i32,
                    error: e.to_string(),
                    ..v1::BacktestResult::default()
                }
            }
        };
        self.stamp(result, backtest_id, spec, queued_at, started)
    }

    /// Sets the parts every result carries: its id and spec, this worker,
    /// and when it was queued, started and finished.
    fn stamp(
        &self,
        mut result: v1::BacktestResult,
        backtest_id: &str,
        spec: v1::BacktestSpec,
        queued_at: chrono::DateTime<chrono::Utc>,
        started: chrono::DateTime<chrono::Utc>,
    ) -> v1::BacktestResult {
        result.backtest_id = backtest_id.to_owned();
        result.spec = Some(spec);
        result.worker.clone_from(&self.instance);
        result.queued_at = Some(grodt_proto::convert::datetime_to_timestamp(queued_at));
        result.started_at = Some(grodt_proto::convert::datetime_to_timestamp(started));
        result.finished_at = Some(grodt_proto::convert::datetime_to_timestamp(
            chrono::Utc::now(),
        ));
        result
    }

    /// Creates the run record (queued) with the request.
    pub async fn create_run(
        &self,
        id: Uuid,
        backtest_id: &str,
        spec: &v1::BacktestSpec,
        job_event_id: Option<Uuid>,
    ) -> Result<(), WorkerError> {
        let request = serde_json::json!({
            "backtest_id": backtest_id,
            "strategy": spec.strategy_name,
            "dataset_ids": spec.dataset_ids,
            "job_event_id": job_event_id.map(|e| e.to_string()),
        });
        self.store
            .runs()
            .create(RunKind::Backtest, id, &request, Some(&spec.encode_to_vec()))
            .await?;
        Ok(())
    }

    /// The job event id recorded with an existing run (idempotent submit).
    pub async fn existing_job_event(&self, id: Uuid) -> Result<Option<String>, WorkerError> {
        let run = self.store.runs().get(id).await?;
        Ok(run.request["job_event_id"].as_str().map(str::to_owned))
    }

    /// The stored status and result of a run.
    pub async fn get(&self, backtest_id: &str) -> Result<v1::BacktestResult, WorkerError> {
        let run = self.store.runs().get(run_id(backtest_id)).await?;
        if run.kind != RunKind::Backtest {
            return Err(StoreError::NotFound {
                entity: "backtest",
                key: backtest_id.to_owned(),
            }
            .into());
        }
        // Bytes columns first; hex inside the JSON for runs stored before them.
        let legacy = |json: Option<&serde_json::Value>, key: &str| {
            json.and_then(|j| j[key].as_str()).map(unhex).transpose()
        };
        let result_pb = match run.result_pb {
            Some(pb) => Some(pb),
            None => legacy(run.result.as_ref(), "result_pb")?,
        };
        if let Some(pb) = result_pb {
            return v1::BacktestResult::decode(pb.as_slice())
                .map_err(|e| WorkerError::Corrupt(format!("stored result: {e}")));
        }
        let spec_pb = match run.request_pb {
            Some(pb) => Some(pb),
            None => legacy(Some(&run.request), "spec_pb")?,
        };
        let spec = spec_pb
            .map(|b| v1::BacktestSpec::decode(b.as_slice()))
            .transpose()
            .map_err(|e| WorkerError::Corrupt(format!("stored spec: {e}")))?;
        let status = match run.status {
            RunStatus::Queued => v1::BacktestStatus::Queued,
            RunStatus::Running => v1::BacktestStatus::Running,
            RunStatus::Succeeded => v1::BacktestStatus::Succeeded,
            _ => v1::BacktestStatus::Failed,
        };
        Ok(v1::BacktestResult {
            backtest_id: backtest_id.to_owned(),
            spec,
            status: status as i32,
            queued_at: Some(grodt_proto::convert::datetime_to_timestamp(run.created_at)),
            ..v1::BacktestResult::default()
        })
    }

    /// The job of `SubmitBacktest` for `backtest_id`: keeps every part of
    /// the result ([`FULL_DETAIL`]), carrying the current trace context.
    pub fn job_envelope(backtest_id: &str, spec: v1::BacktestSpec) -> Envelope {
        Self::job_envelope_with(v1::BacktestJob {
            backtest_id: backtest_id.to_owned(),
            spec: Some(spec),
            detail: Some(FULL_DETAIL),
            ..v1::BacktestJob::default()
        })
    }

    /// The envelope of `job` (stamped `submitted_at` now), carrying the
    /// current trace context.
    pub fn job_envelope_with(mut job: v1::BacktestJob) -> Envelope {
        let now = chrono::Utc::now();
        job.submitted_at = Some(grodt_proto::convert::datetime_to_timestamp(now));
        let (traceparent, tracestate) = grodt_kit::telemetry::current_traceparent()
            .map_or((None, None), |(p, s)| {
                (Some(p), (!s.is_empty()).then_some(s))
            });
        let out = Outgoing::new(&job);
        Envelope::new(out.event_type(), now, out.payload()).with_trace(traceparent, tracestate)
    }

    /// Publishes `envelope` on the jobs stream.
    pub async fn publish_job(&self, envelope: &Envelope) -> Result<(), WorkerError> {
        self.bus.publish(&stream(JOBS_STREAM)?, envelope).await?;
        Ok(())
    }

    /// Handles one job delivery: runs it unless this event was already
    /// processed, commits the result together with the processed mark, then
    /// publishes the result event.
    ///
    /// Results are published at least once: a delivery of a job whose result
    /// is already durable (a crash or a bus error came between the commit and
    /// the publish, so the job was not acked) publishes the stored result
    /// again. Consumers of `grodt.backtest-results.v1` dedupe by `backtest_id`.
    async fn handle_job(&self, delivery: &Delivery) -> Result<(), WorkerError> {
        let event_id = delivery.envelope.event_id.to_string();
        let job = topic::decode::<v1::BacktestJob>(
            &delivery.envelope.event_type,
            delivery.envelope.payload.as_ref(),
        )
        .map_err(|e| WorkerError::Corrupt(format!("job {event_id}: {e}")))?;
        let v1::BacktestJob {
            backtest_id,
            spec,
            detail,
            optimization_id,
            trial_id,
            submitted_at: _,
            sweep,
        } = job;
        let reply = ReplyTo {
            optimization_id,
            trial_id,
            trial_ids: sweep
                .as_ref()
                .map(|s| s.sets.iter().map(|x| x.trial_id.clone()).collect())
                .unwrap_or_default(),
        };
        if self
            .store
            .processed_events()
            .is_processed(GROUP, &event_id)
            .await?
        {
            return self.republish_stored(&backtest_id, reply).await;
        }
        let id = run_id(&backtest_id);
        let spec = spec.unwrap_or_default();
        let run = match self.store.runs().get(id).await {
            Ok(run) => run,
            // A job published by another producer (the optimizer): record it now.
            Err(StoreError::NotFound { .. }) => {
                self.create_run(id, &backtest_id, &spec, Some(delivery.envelope.event_id))
                    .await?;
                self.store.runs().get(id).await?
            }
            Err(e) => return Err(e.into()),
        };
        if run.status.is_terminal() {
            return self.republish_stored(&backtest_id, reply).await;
        }
        if run.status == RunStatus::Queued {
            self.store.runs().transition(id, RunStatus::Running).await?;
        }
        let mut spec = spec;
        let failed = |e: WorkerError, spec: v1::BacktestSpec| v1::BacktestResult {
            backtest_id: backtest_id.clone(),
            spec: Some(spec),
            status: v1::BacktestStatus::Failed as i32,
            error: e.to_string(),
            worker: self.instance.clone(),
            ..v1::BacktestResult::default()
        };
        let result = match (self.resolve_datasets(&mut spec).await, sweep) {
            (Err(e), _) => failed(e, spec),
            (Ok(()), Some(slice)) => {
                self.sweep_result(&backtest_id, spec, slice, run.created_at)
                    .await
            }
            (Ok(()), None) => match Job::try_from(spec.clone()) {
                Ok(job) => {
                    self.compute_result(&backtest_id, spec, job, run.created_at)
                        .await
                }
                Err(e) => failed(e.into(), spec),
            },
        };
        let status = if result.status == v1::BacktestStatus::Succeeded as i32 {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        // The job's detail decides what is kept (absent: metrics, costs and
        // the trade statistics only, as an optimization trial needs); the
        // stored and the published result are the same trimmed message.
        let result = trim(result, Detail::from(detail));
        let (json, pb) = stored_result(&result);
        let net = net_pnl(&result);
        let committed = self
            .store
            .process_once(GROUP, &event_id, |tx| {
                Box::pin(async move {
                    tx.set_run_result(id, &json, Some(&pb), net).await?;
                    tx.transition_run(id, status).await?;
                    Ok::<_, StoreError>(())
                })
            })
            .await?;
        if committed.is_some() {
            self.publish_result(result, reply).await?;
        }
        Ok(())
    }

    /// Publishes the stored result of a finished run again (nothing for a
    /// run without one, such as a cancelled run).
    async fn republish_stored(&self, backtest_id: &str, reply: ReplyTo) -> Result<(), WorkerError> {
        let result = self.get(backtest_id).await?;
        let finished = [
            v1::BacktestStatus::Succeeded as i32,
            v1::BacktestStatus::Failed as i32,
        ];
        if !finished.contains(&result.status) || result.worker.is_empty() {
            return Ok(());
        }
        self.publish_result(result, reply).await
    }

    /// Publishes `result` on the results stream, in the current trace.
    async fn publish_result(
        &self,
        result: v1::BacktestResult,
        reply: ReplyTo,
    ) -> Result<(), WorkerError> {
        let event = v1::BacktestResultEvent {
            result: Some(result),
            optimization_id: reply.optimization_id,
            trial_id: reply.trial_id,
            trial_ids: reply.trial_ids,
        };
        let (traceparent, tracestate) = grodt_kit::telemetry::current_traceparent()
            .map_or((None, None), |(p, s)| {
                (Some(p), (!s.is_empty()).then_some(s))
            });
        let out = Outgoing::new(&event);
        let to = stream(out.stream())?;
        let envelope = Envelope::new(out.event_type(), chrono::Utc::now(), out.payload())
            .with_trace(traceparent, tracestate);
        self.bus.publish(&to, &envelope).await?;
        Ok(())
    }
}

/// Where a job's result goes: the ids copied from the job onto its result
/// event.
struct ReplyTo {
    optimization_id: String,
    trial_id: String,
    /// A sweep job's trial ids, one per set.
    trial_ids: Vec<String>,
}

/// Parameter sets one sweep job may carry.
pub const MAX_SWEEP_SETS: usize = 10_000;

/// A set that could not run, with why.
fn failed_set(set: &BTreeMap<String, String>, error: &str) -> v1::SweepSetResult {
    v1::SweepSetResult {
        params: set.clone().into_iter().collect(),
        status: v1::BacktestStatus::Failed as i32,
        error: error.to_owned(),
        metrics: None,
        path: String::new(),
    }
}

fn net_pnl(result: &v1::BacktestResult) -> Option<grodt_core::Decimal> {
    result
        .metrics
        .as_ref()
        .and_then(|m| m.net_profit.as_ref())
        .and_then(|d| grodt_core::Decimal::try_from(d).ok())
}

/// The consumer-group handler: one span per job, parented on the envelope's trace context.
pub struct JobHandler(pub Worker);

#[async_trait]
impl Handler for JobHandler {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let span = tracing::info_span!(
            "backtest.job",
            event_id = %delivery.envelope.event_id,
            delivery = delivery.delivery_count
        );
        grodt_kit::telemetry::follow_envelope(&span, &delivery.envelope);
        self.0
            .handle_job(delivery)
            .instrument(span)
            .await
            .map_err(|e| Box::new(e) as HandlerError)
    }
}
