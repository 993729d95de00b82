//! gRPC handlers of `grodt.v1.BacktestService`: protobuf stops here.

use std::sync::Arc;

use grodt_kit::to_status;
use grodt_proto::v1::backtest_service_server::BacktestService;
use grodt_proto::v1::{
    GetResultRequest, GetResultResponse, RunBacktestRequest, RunBacktestResponse,
    SubmitBacktestRequest, SubmitBacktestResponse,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::convert::{Detail, Job, SpecError, trim};
use crate::worker::{Worker, WorkerError, check_backtest_id, run_id};

/// The handler behind `grodt.v1.BacktestService`.
#[derive(Clone)]
pub struct BacktestApi {
    worker: Worker,
    // Dropped with the server: stops the job consumer.
    _stop: Arc<dyn std::any::Any + Send + Sync>,
}

impl BacktestApi {
    /// Handlers over `worker`; `stop` is dropped when the server is.
    pub fn new(worker: Worker, stop: Arc<dyn std::any::Any + Send + Sync>) -> Self {
        Self {
            worker,
            _stop: stop,
        }
    }
}

fn status(e: &WorkerError) -> Status {
    to_status(e)
}

fn missing_spec() -> Status {
    to_status(&SpecError {
        field: "spec".into(),
        reason: "is required".into(),
    })
}

#[tonic::async_trait]
impl BacktestService for BacktestApi {
    #[tracing::instrument(name = "RunBacktest", skip_all)]
    async fn run_backtest(
        &self,
        request: Request<RunBacktestRequest>,
    ) -> Result<Response<RunBacktestResponse>, Status> {
        let RunBacktestRequest { spec, detail } = request.into_inner();
        let mut spec = spec.ok_or_else(missing_spec)?;
        self.worker
            .resolve_datasets(&mut spec)
            .await
            .map_err(|e| status(&e))?;
        let job = Job::try_from(spec.clone()).map_err(|e| to_status(&e))?;
        // Unknown datasets are NOT_FOUND before any run is recorded.
        self.worker
            .check_datasets(&job)
            .await
            .map_err(|e| status(&e))?;
        let id = Uuid::now_v7();
        let backtest_id = id.to_string();
        self.worker
            .create_run(id, &backtest_id, &spec, None)
            .await
            .map_err(|e| status(&e))?;
        let result = self
            .worker
            .execute(id, &backtest_id, spec, job)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(RunBacktestResponse {
            result: Some(trim(result, Detail::from(detail))),
        }))
    }

    #[tracing::instrument(name = "SubmitBacktest", skip_all)]
    async fn submit_backtest(
        &self,
        request: Request<SubmitBacktestRequest>,
    ) -> Result<Response<SubmitBacktestResponse>, Status> {
        let SubmitBacktestRequest { spec, backtest_id } = request.into_inner();
        let mut spec = spec.ok_or_else(missing_spec)?;
        self.worker
            .resolve_datasets(&mut spec)
            .await
            .map_err(|e| status(&e))?;
        Job::try_from(spec.clone()).map_err(|e| to_status(&e))?;
        let backtest_id = if backtest_id.is_empty() {
            Uuid::now_v7().to_string()
        } else {
            check_backtest_id(&backtest_id).map_err(|e| to_status(&e))?;
            backtest_id
        };
        let id = run_id(&backtest_id);
        let envelope = Worker::job_envelope(&backtest_id, spec.clone());
        match self
            .worker
            .create_run(id, &backtest_id, &spec, Some(envelope.event_id))
            .await
        {
            Ok(()) => {}
            // Idempotent by backtest id: the job was queued by an earlier call.
            Err(WorkerError::Store(grodt_store::StoreError::AlreadyExists { .. })) => {
                let job_event_id = self
                    .worker
                    .existing_job_event(id)
                    .await
                    .map_err(|e| status(&e))?
                    .unwrap_or_default();
                return Ok(Response::new(SubmitBacktestResponse {
                    backtest_id,
                    job_event_id,
                }));
            }
            Err(e) => return Err(status(&e)),
        }
        if let Err(e) = self.worker.publish_job(&envelope).await {
            // Never leave a queued run that no job will ever pick up.
            let _ = self
                .worker
                .store
                .runs()
                .transition(id, grodt_store::RunStatus::Failed)
                .await;
            return Err(status(&e));
        }
        tracing::info!(%backtest_id, job_event_id = %envelope.event_id, "backtest queued");
        Ok(Response::new(SubmitBacktestResponse {
            backtest_id,
            job_event_id: envelope.event_id.to_string(),
        }))
    }

    #[tracing::instrument(name = "GetResult", skip_all)]
    async fn get_result(
        &self,
        request: Request<GetResultRequest>,
    ) -> Result<Response<GetResultResponse>, Status> {
        let GetResultRequest {
            backtest_id,
            detail,
        } = request.into_inner();
        check_backtest_id(&backtest_id).map_err(|e| to_status(&e))?;
        let result = self
            .worker
            .get(&backtest_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(GetResultResponse {
            result: Some(trim(result, Detail::from(detail))),
        }))
    }
}
