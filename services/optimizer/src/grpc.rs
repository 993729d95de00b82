//! gRPC handlers of `grodt.v1.OptimizerService`, and the run -> wire
//! conversion they share.
use std::pin::Pin;
use std::sync::Arc;

use grodt_optimize::TrialRecord;
use grodt_proto::v1;
use grodt_proto::v1::optimizer_service_server::OptimizerService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::convert::{state_to_proto, trial_state_to_proto};
use crate::engine::{Engine, Run, View};
use crate::error::OptimizerError;

/// Server-streaming responses are boxed so handlers can return any stream.
type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn status(e: &OptimizerError) -> Status {
    grodt_kit::to_status(e)
}

fn ts(ns: i64) -> prost_types::Timestamp {
    grodt_proto::convert::datetime_to_timestamp(chrono::DateTime::from_timestamp_nanos(ns))
}

/// A trial on the wire: objectives as the metric's value (un-negated when
/// the request minimises), NaN unless it succeeded.
pub fn trial_to_proto(run: &Run, t: &TrialRecord) -> v1::Trial {
    v1::Trial {
        trial_id: t.trial.id.to_string(),
        params: t.trial.params.clone().into_iter().collect(),
        state: trial_state_to_proto(t.state) as i32,
        objective_value: t.objective.map_or(f64::NAN, |v| v * run.sign),
        metrics: run.metrics.get(&t.trial.id).cloned(),
        backtest_id: run
            .backtest_ids
            .get(&t.trial.id)
            .cloned()
            .unwrap_or_default(),
        fold: 0,
        error: t.error.clone(),
        finished_seq: t.finished_seq.map_or(0, |s| s + 1),
    }
}

/// The run's progress on the wire (the fleet's figures are set by the
/// handler: [`with_fleet`]).
pub fn progress_to_proto(run: &Run) -> v1::Progress {
    let p = run.study.progress();
    let n = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
    let done = p.succeeded + p.failed;
    let left = p.planned.saturating_sub(done);
    #[allow(clippy::cast_precision_loss, reason = "an estimate")]
    let eta = if done == 0 || left == 0 || run.state().is_terminal() {
        f64::NAN
    } else {
        let elapsed = (chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) - run.created_at_ns)
            .max(0) as f64
            / 1e9;
        elapsed / done as f64 * left as f64
    };
    v1::Progress {
        trials_total: n(p.planned),
        trials_queued: n(p.queued),
        trials_succeeded: n(p.succeeded),
        trials_failed: n(p.failed),
        best_objective: p.best.map_or(f64::NAN, |b| b * run.sign),
        workers_busy: 0,
        jobs_waiting: 0,
        eta_seconds: eta,
        workers_live: 0,
    }
}

/// Sets the worker fleet's load on a progress report.
fn with_fleet(progress: Option<&mut v1::Progress>, ((busy, waiting), live): ((u64, u64), u32)) {
    if let Some(p) = progress {
        p.workers_busy = u32::try_from(busy).unwrap_or(u32::MAX);
        p.jobs_waiting = waiting;
        p.workers_live = live;
    }
}

/// The run on the wire, with its `top_n` best trials.
pub fn run_to_proto(run: &Run, top_n: usize) -> v1::Optimization {
    let (heatmaps, recommendation) = landscape_to_proto(run);
    v1::Optimization {
        optimization_id: run.id.clone(),
        request: Some(run.request.clone()),
        state: state_to_proto(run.state()) as i32,
        progress: Some(progress_to_proto(run)),
        top_trials: run
            .study
            .top(top_n)
            .into_iter()
            .map(|t| trial_to_proto(run, t))
            .collect(),
        walk_forward: None,
        sensitivity: run
            .study
            .sensitivity()
            .into_iter()
            .flat_map(|p| {
                let (variance, cliff) = (p.variance, p.cliff);
                p.points.into_iter().map(move |x| v1::SensitivityPoint {
                    parameter: x.parameter,
                    value: x.value,
                    objective_value: x.objective.map_or(f64::NAN, |v| v * run.sign),
                    offset: i32::try_from(x.offset).unwrap_or(i32::MAX),
                    parameter_variance: variance,
                    parameter_cliff: cliff,
                })
            })
            .collect(),
        monte_carlo: match (&run.monte_carlo, run.request.monte_carlo.as_ref()) {
            (crate::engine::Mc::Done(outcome), Some(settings)) => {
                Some(crate::convert::mc_to_proto(outcome, settings))
            }
            _ => None,
        },
        created_at: Some(ts(run.created_at_ns)),
        finished_at: run.finished_at_ns.map(ts),
        reason: run.study.reason().to_owned(),
        heatmaps,
        recommendation,
    }
}

/// The landscape on the wire, objectives as the metric's values.
fn landscape_to_proto(run: &Run) -> (Vec<v1::Heatmap>, Option<v1::Recommendation>) {
    let (maps, rec) = run.study.landscape();
    let maps = maps
        .into_iter()
        .map(|m| v1::Heatmap {
            x_parameter: m.x,
            y_parameter: m.y,
            x_values: m.x_values,
            y_values: m.y_values,
            values: m
                .values
                .into_iter()
                .map(|v| v.map_or(f64::NAN, |v| v * run.sign))
                .collect(),
        })
        .collect();
    let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
    let rec = rec.map(|r| v1::Recommendation {
        params: r.params.into_iter().collect(),
        objective_value: r.objective * run.sign,
        neighbourhood_mean: r.neighbourhood_mean * run.sign,
        neighbourhood_variance: r.neighbourhood_variance,
        neighbours: n(r.neighbours),
        failed_neighbours: n(r.failed_neighbours),
        is_best: r.is_best,
    });
    (maps, rec)
}

/// A walk-forward run on the wire: its folds' choices and out-of-sample
/// results (`walk_forward`), progress over its studies and out-of-sample
/// runs; its trials are in the folds' studies.
fn wf_to_proto(
    wf: &crate::walkforward::Wf,
    searches: &std::collections::BTreeMap<String, Run>,
) -> v1::Optimization {
    v1::Optimization {
        optimization_id: wf.id.clone(),
        request: Some(wf.request.clone()),
        state: state_to_proto(wf.state()) as i32,
        progress: Some(crate::walkforward::progress(wf, searches)),
        top_trials: Vec::new(),
        walk_forward: Some(crate::walkforward::result_to_proto(wf)),
        sensitivity: Vec::new(),
        monte_carlo: None,
        created_at: Some(ts(wf.created_at_ns)),
        finished_at: wf.finished_at_ns.map(ts),
        reason: wf.cancelled.clone().unwrap_or_default(),
        heatmaps: Vec::new(),
        recommendation: None,
    }
}

/// Any run on the wire.
pub fn view_to_proto(view: &View, top_n: usize) -> v1::Optimization {
    match view {
        View::Study(run) => run_to_proto(run, top_n),
        View::WalkForward(wf, searches) => wf_to_proto(wf, searches),
    }
}

fn view_event(view: &View, trial: Option<u64>) -> v1::StreamProgressResponse {
    match view {
        View::Study(run) => progress_event(run, trial),
        View::WalkForward(wf, searches) => v1::StreamProgressResponse {
            optimization_id: wf.id.clone(),
            state: state_to_proto(wf.state()) as i32,
            progress: Some(crate::walkforward::progress(wf, searches)),
            trial: None,
            best: None,
            at: Some(grodt_proto::convert::datetime_to_timestamp(
                chrono::Utc::now(),
            )),
        },
    }
}

fn progress_event(run: &Run, trial: Option<u64>) -> v1::StreamProgressResponse {
    v1::StreamProgressResponse {
        optimization_id: run.id.clone(),
        state: state_to_proto(run.state()) as i32,
        progress: Some(progress_to_proto(run)),
        trial: trial
            .and_then(|t| run.study.trial(t))
            .map(|t| trial_to_proto(run, t)),
        best: run.study.best().map(|t| trial_to_proto(run, t)),
        at: Some(grodt_proto::convert::datetime_to_timestamp(
            chrono::Utc::now(),
        )),
    }
}

/// The handler behind `grodt.v1.OptimizerService`.
pub struct OptimizerApi {
    engine: Arc<Engine>,
    /// Dropping the last clone stops the consumers (the service stops).
    _stop: Arc<grodt_kit::runner::StopOnDrop>,
}

impl OptimizerApi {
    /// Handlers over `engine`.
    pub fn new(engine: Arc<Engine>, stop: Arc<grodt_kit::runner::StopOnDrop>) -> Self {
        Self {
            engine,
            _stop: stop,
        }
    }
}

fn required_id(id: &str) -> Result<(), Status> {
    if id.is_empty() {
        Err(Status::invalid_argument("optimization_id: required"))
    } else {
        Ok(())
    }
}

#[tonic::async_trait]
impl OptimizerService for OptimizerApi {
    type StreamProgressStream = ResponseStream<v1::StreamProgressResponse>;

    async fn start_optimization(
        &self,
        request: Request<v1::StartOptimizationRequest>,
    ) -> Result<Response<v1::StartOptimizationResponse>, Status> {
        let run = self
            .engine
            .start(request.into_inner())
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(v1::StartOptimizationResponse {
            optimization: Some(view_to_proto(&run, 10)),
        }))
    }

    async fn get_optimization(
        &self,
        request: Request<v1::GetOptimizationRequest>,
    ) -> Result<Response<v1::GetOptimizationResponse>, Status> {
        let r = request.into_inner();
        required_id(&r.optimization_id)?;
        if r.top_n > 1000 {
            return Err(Status::invalid_argument("top_n: at most 1000"));
        }
        let top_n = if r.top_n == 0 { 10 } else { r.top_n as usize };
        let run = self
            .engine
            .get(&r.optimization_id)
            .await
            .map_err(|e| status(&e))?;
        let mut o = view_to_proto(&run, top_n);
        with_fleet(
            o.progress.as_mut(),
            (self.engine.fleet().await, self.engine.live_workers().await),
        );
        Ok(Response::new(v1::GetOptimizationResponse {
            optimization: Some(o),
        }))
    }

    async fn stream_progress(
        &self,
        request: Request<v1::StreamProgressRequest>,
    ) -> Result<Response<Self::StreamProgressStream>, Status> {
        let id = request.into_inner().optimization_id;
        required_id(&id)?;
        // Subscribe first: no update between the snapshot and the stream is lost.
        let mut updates = self.engine.subscribe();
        let run = self.engine.get(&id).await.map_err(|e| status(&e))?;
        let engine = self.engine.clone();
        let stream = async_stream(move |tx| async move {
            let done = run.ended();
            let mut first = view_event(&run, None);
            with_fleet(
                first.progress.as_mut(),
                (engine.fleet().await, engine.live_workers().await),
            );
            if tx.send(Ok(first)).await.is_err() || done {
                return;
            }
            loop {
                let trial = match updates.recv().await {
                    Ok(u) if u.id == id => u.trial,
                    Ok(_) => continue,
                    // Fell behind: send the current state, without a trial.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let run = match engine.get(&id).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(status(&e))).await;
                        return;
                    }
                };
                let mut event = view_event(&run, trial);
                with_fleet(
                    event.progress.as_mut(),
                    (engine.fleet().await, engine.live_workers().await),
                );
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
                if run.ended() {
                    // Updates are sent under the engine's lock, so those of
                    // every trial this final state holds are queued already:
                    // send them too, then end.
                    while let Ok(u) = updates.try_recv() {
                        if u.id == id && u.trial.is_some() {
                            let _ = tx.send(Ok(view_event(&run, u.trial))).await;
                        }
                    }
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn cancel_optimization(
        &self,
        request: Request<v1::CancelOptimizationRequest>,
    ) -> Result<Response<v1::CancelOptimizationResponse>, Status> {
        let r = request.into_inner();
        required_id(&r.optimization_id)?;
        if r.reason.chars().count() > 512 {
            return Err(Status::invalid_argument("reason: at most 512 characters"));
        }
        let run = self
            .engine
            .cancel(&r.optimization_id, &r.reason)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(v1::CancelOptimizationResponse {
            optimization: Some(view_to_proto(&run, 10)),
        }))
    }

    async fn list_optimizations(
        &self,
        request: Request<v1::ListOptimizationsRequest>,
    ) -> Result<Response<v1::ListOptimizationsResponse>, Status> {
        let r = request.into_inner();
        if r.page_size > 1000 {
            return Err(Status::invalid_argument("page_size: at most 1000"));
        }
        let size = if r.page_size == 0 {
            50
        } else {
            r.page_size as usize
        };
        let offset = if r.page_token.is_empty() {
            0
        } else {
            r.page_token.parse::<usize>().map_err(|_| {
                Status::invalid_argument("page_token: not a token this service issued")
            })?
        };
        let state = v1::OptimizationState::try_from(r.state)
            .map_err(|_| Status::invalid_argument("state: unknown value"))?;
        let runs = self.engine.list().await.map_err(|e| status(&e))?;
        let matching: Vec<&View> = runs
            .iter()
            .filter(|run| {
                state == v1::OptimizationState::Unspecified || state_to_proto(run.state()) == state
            })
            .collect();
        let page: Vec<v1::Optimization> = matching
            .iter()
            .skip(offset)
            .take(size)
            .map(|run| {
                // A list is a summary: the heatmaps stay with GetOptimization.
                let mut o = view_to_proto(run, 1);
                o.heatmaps.clear();
                o
            })
            .collect();
        let next = offset + page.len();
        Ok(Response::new(v1::ListOptimizationsResponse {
            optimizations: page,
            next_page_token: if next < matching.len() {
                next.to_string()
            } else {
                String::new()
            },
        }))
    }
}

/// A stream fed by a task through a small channel.
fn async_stream<T, F, Fut>(body: F) -> ResponseStream<T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
