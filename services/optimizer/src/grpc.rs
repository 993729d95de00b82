//! gRPC handlers of `grodt.v1.OptimizerService`.
use std::pin::Pin;

use tokio_stream::Stream;

use grodt_kit::unimplemented;
use grodt_proto::v1::optimizer_service_server::OptimizerService;
use grodt_proto::v1::{
    CancelOptimizationRequest, CancelOptimizationResponse, GetOptimizationRequest,
    GetOptimizationResponse, StartOptimizationRequest, StartOptimizationResponse,
    StreamProgressRequest, StreamProgressResponse,
};
use tonic::{Request, Response, Status};

/// Why the RPCs below answer UNIMPLEMENTED in this build (never fake data).
const NOT_YET: &str = "optimization runs are not built yet";

/// Server-streaming responses are boxed so handlers can return any stream.
type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The handler behind `grodt.v1.OptimizerService`.
#[derive(Debug, Default)]
pub struct OptimizerApi;

#[tonic::async_trait]
impl OptimizerService for OptimizerApi {
    type StreamProgressStream = ResponseStream<StreamProgressResponse>;

    async fn start_optimization(
        &self,
        _request: Request<StartOptimizationRequest>,
    ) -> Result<Response<StartOptimizationResponse>, Status> {
        Err(unimplemented("StartOptimization", NOT_YET))
    }

    async fn get_optimization(
        &self,
        _request: Request<GetOptimizationRequest>,
    ) -> Result<Response<GetOptimizationResponse>, Status> {
        Err(unimplemented("GetOptimization", NOT_YET))
    }

    async fn stream_progress(
        &self,
        _request: Request<StreamProgressRequest>,
    ) -> Result<Response<Self::StreamProgressStream>, Status> {
        Err(unimplemented("StreamProgress", NOT_YET))
    }

    async fn cancel_optimization(
        &self,
        _request: Request<CancelOptimizationRequest>,
    ) -> Result<Response<CancelOptimizationResponse>, Status> {
        Err(unimplemented("CancelOptimization", NOT_YET))
    }
}
