//! gRPC handlers of `grodt.v1.BacktestService`.

use grodt_kit::unimplemented;
use grodt_proto::v1::backtest_service_server::BacktestService;
use grodt_proto::v1::{
    GetResultRequest, GetResultResponse, RunBacktestRequest, RunBacktestResponse,
    SubmitBacktestRequest, SubmitBacktestResponse,
};
use tonic::{Request, Response, Status};

/// Why the RPCs below answer UNIMPLEMENTED in this build (never fake data).
const NOT_YET: &str = "the worker is not wired to the simulation engine yet";

/// The handler behind `grodt.v1.BacktestService`.
#[derive(Debug, Default)]
pub struct BacktestApi;

#[tonic::async_trait]
impl BacktestService for BacktestApi {
    async fn run_backtest(
        &self,
        _request: Request<RunBacktestRequest>,
    ) -> Result<Response<RunBacktestResponse>, Status> {
        Err(unimplemented("RunBacktest", NOT_YET))
    }

    async fn submit_backtest(
        &self,
        _request: Request<SubmitBacktestRequest>,
    ) -> Result<Response<SubmitBacktestResponse>, Status> {
        Err(unimplemented("SubmitBacktest", NOT_YET))
    }

    async fn get_result(
        &self,
        _request: Request<GetResultRequest>,
    ) -> Result<Response<GetResultResponse>, Status> {
        Err(unimplemented("GetResult", NOT_YET))
    }
}
