//! gRPC handlers of `grodt.v1.RiskService`.

use grodt_kit::unimplemented;
use grodt_proto::v1::risk_service_server::RiskService;
use grodt_proto::v1::{
    CheckOrderRequest, CheckOrderResponse, GetLimitsRequest, GetLimitsResponse, GetSnapshotRequest,
    GetSnapshotResponse, HaltRequest, HaltResponse, ResumeRequest, ResumeResponse,
    SetLimitsRequest, SetLimitsResponse,
};
use tonic::{Request, Response, Status};

/// Why the RPCs below answer UNIMPLEMENTED in this build (never fake data).
const NOT_YET: &str = "risk limits are not built yet";

/// The handler behind `grodt.v1.RiskService`.
#[derive(Debug, Default)]
pub struct RiskApi;

#[tonic::async_trait]
impl RiskService for RiskApi {
    async fn check_order(
        &self,
        _request: Request<CheckOrderRequest>,
    ) -> Result<Response<CheckOrderResponse>, Status> {
        Err(unimplemented("CheckOrder", NOT_YET))
    }

    async fn get_limits(
        &self,
        _request: Request<GetLimitsRequest>,
    ) -> Result<Response<GetLimitsResponse>, Status> {
        Err(unimplemented("GetLimits", NOT_YET))
    }

    async fn set_limits(
        &self,
        _request: Request<SetLimitsRequest>,
    ) -> Result<Response<SetLimitsResponse>, Status> {
        Err(unimplemented("SetLimits", NOT_YET))
    }

    async fn halt(&self, _request: Request<HaltRequest>) -> Result<Response<HaltResponse>, Status> {
        Err(unimplemented("Halt", NOT_YET))
    }

    async fn resume(
        &self,
        _request: Request<ResumeRequest>,
    ) -> Result<Response<ResumeResponse>, Status> {
        Err(unimplemented("Resume", NOT_YET))
    }

    async fn get_snapshot(
        &self,
        _request: Request<GetSnapshotRequest>,
    ) -> Result<Response<GetSnapshotResponse>, Status> {
        Err(unimplemented("GetSnapshot", NOT_YET))
    }
}
