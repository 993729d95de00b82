//! gRPC handlers of `grodt.v1.StrategyService`.

use grodt_kit::unimplemented;
use grodt_proto::v1::strategy_service_server::StrategyService;
use grodt_proto::v1::{
    DeployRequest, DeployResponse, GetStateRequest, GetStateResponse, ListStrategiesRequest,
    ListStrategiesResponse, PauseRequest, PauseResponse, StartRequest, StartResponse, StopRequest,
    StopResponse,
};
use tonic::{Request, Response, Status};

/// Why the RPCs below answer UNIMPLEMENTED in this build (never fake data).
const NOT_YET: &str = "strategy deployment is not built yet";

/// The handler behind `grodt.v1.StrategyService`.
#[derive(Debug, Default)]
pub struct StrategyApi;

#[tonic::async_trait]
impl StrategyService for StrategyApi {
    async fn list_strategies(
        &self,
        _request: Request<ListStrategiesRequest>,
    ) -> Result<Response<ListStrategiesResponse>, Status> {
        Err(unimplemented("ListStrategies", NOT_YET))
    }

    async fn deploy(
        &self,
        _request: Request<DeployRequest>,
    ) -> Result<Response<DeployResponse>, Status> {
        Err(unimplemented("Deploy", NOT_YET))
    }

    async fn start(
        &self,
        _request: Request<StartRequest>,
    ) -> Result<Response<StartResponse>, Status> {
        Err(unimplemented("Start", NOT_YET))
    }

    async fn stop(&self, _request: Request<StopRequest>) -> Result<Response<StopResponse>, Status> {
        Err(unimplemented("Stop", NOT_YET))
    }

    async fn pause(
        &self,
        _request: Request<PauseRequest>,
    ) -> Result<Response<PauseResponse>, Status> {
        Err(unimplemented("Pause", NOT_YET))
    }

    async fn get_state(
        &self,
        _request: Request<GetStateRequest>,
    ) -> Result<Response<GetStateResponse>, Status> {
        Err(unimplemented("GetState", NOT_YET))
    }
}
