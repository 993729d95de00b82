//! gRPC handlers of `grodt.v1.ExecutionService`.
use std::pin::Pin;

use tokio_stream::Stream;

use grodt_kit::unimplemented;
use grodt_proto::v1::execution_service_server::ExecutionService;
use grodt_proto::v1::{
    CancelOrderRequest, CancelOrderResponse, GetAccountRequest, GetAccountResponse,
    GetOrderRequest, GetOrderResponse, ListOrdersRequest, ListOrdersResponse, ListPositionsRequest,
    ListPositionsResponse, StreamFillsRequest, StreamFillsResponse, SubmitOrderRequest,
    SubmitOrderResponse,
};
use tonic::{Request, Response, Status};

/// Why the RPCs below answer UNIMPLEMENTED in this build (never fake data).
const NOT_YET: &str = "the paper broker is not built yet";

/// Server-streaming responses are boxed so handlers can return any stream.
type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The handler behind `grodt.v1.ExecutionService`.
#[derive(Debug, Default)]
pub struct ExecutionApi;

#[tonic::async_trait]
impl ExecutionService for ExecutionApi {
    type StreamFillsStream = ResponseStream<StreamFillsResponse>;

    async fn submit_order(
        &self,
        _request: Request<SubmitOrderRequest>,
    ) -> Result<Response<SubmitOrderResponse>, Status> {
        Err(unimplemented("SubmitOrder", NOT_YET))
    }

    async fn cancel_order(
        &self,
        _request: Request<CancelOrderRequest>,
    ) -> Result<Response<CancelOrderResponse>, Status> {
        Err(unimplemented("CancelOrder", NOT_YET))
    }

    async fn get_order(
        &self,
        _request: Request<GetOrderRequest>,
    ) -> Result<Response<GetOrderResponse>, Status> {
        Err(unimplemented("GetOrder", NOT_YET))
    }

    async fn list_orders(
        &self,
        _request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        Err(unimplemented("ListOrders", NOT_YET))
    }

    async fn list_positions(
        &self,
        _request: Request<ListPositionsRequest>,
    ) -> Result<Response<ListPositionsResponse>, Status> {
        Err(unimplemented("ListPositions", NOT_YET))
    }

    async fn get_account(
        &self,
        _request: Request<GetAccountRequest>,
    ) -> Result<Response<GetAccountResponse>, Status> {
        Err(unimplemented("GetAccount", NOT_YET))
    }

    async fn stream_fills(
        &self,
        _request: Request<StreamFillsRequest>,
    ) -> Result<Response<Self::StreamFillsStream>, Status> {
        Err(unimplemented("StreamFills", NOT_YET))
    }
}
