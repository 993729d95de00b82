//! gRPC handlers of `grodt.v1.RegimeService`.

use grodt_kit::unimplemented;
use grodt_proto::v1::regime_service_server::RegimeService;
use grodt_proto::v1::{
    ClassifyRequest, ClassifyResponse, GetRegimeHistoryRequest, GetRegimeHistoryResponse,
    GetRegimeRequest, GetRegimeResponse,
};
use tonic::{Request, Response, Status};

/// Why the RPCs below answer UNIMPLEMENTED in this build (never fake data).
const NOT_YET: &str = "regime classification is not built yet";

/// The handler behind `grodt.v1.RegimeService`.
#[derive(Debug, Default)]
pub struct RegimeApi;

#[tonic::async_trait]
impl RegimeService for RegimeApi {
    async fn get_regime(
        &self,
        _request: Request<GetRegimeRequest>,
    ) -> Result<Response<GetRegimeResponse>, Status> {
        Err(unimplemented("GetRegime", NOT_YET))
    }

    async fn get_regime_history(
        &self,
        _request: Request<GetRegimeHistoryRequest>,
    ) -> Result<Response<GetRegimeHistoryResponse>, Status> {
        Err(unimplemented("GetRegimeHistory", NOT_YET))
    }

    async fn classify(
        &self,
        _request: Request<ClassifyRequest>,
    ) -> Result<Response<ClassifyResponse>, Status> {
        Err(unimplemented("Classify", NOT_YET))
    }
}
