//! gRPC handlers of `grodt.v1.MarketDataService`.
use std::pin::Pin;

use tokio_stream::Stream;

use grodt_kit::unimplemented;
use grodt_proto::v1::market_data_service_server::MarketDataService;
use grodt_proto::v1::{
    AggregateRequest, AggregateResponse, DescribeDatasetRequest, DescribeDatasetResponse,
    GetBarsRequest, GetBarsResponse, GetCacheStatsRequest, GetCacheStatsResponse, ImportCsvRequest,
    ImportCsvResponse, ListDatasetsRequest, ListDatasetsResponse, StartReplayRequest,
    StartReplayResponse, StopReplayRequest, StopReplayResponse, UploadCsvRequest,
    UploadCsvResponse,
};
use tonic::{Request, Response, Status, Streaming};

/// Why the RPCs below answer UNIMPLEMENTED in this build (never fake data).
const NOT_YET: &str = "arrives with the market-data issue (Parquet catalog, imports, replay)";

/// Server-streaming responses are boxed so handlers can return any stream.
type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The handler behind `grodt.v1.MarketDataService`.
#[derive(Debug, Default)]
pub struct MarketDataApi;

#[tonic::async_trait]
impl MarketDataService for MarketDataApi {
    type GetBarsStream = ResponseStream<GetBarsResponse>;

    async fn import_csv(
        &self,
        _request: Request<ImportCsvRequest>,
    ) -> Result<Response<ImportCsvResponse>, Status> {
        Err(unimplemented("ImportCsv", NOT_YET))
    }

    async fn upload_csv(
        &self,
        _request: Request<Streaming<UploadCsvRequest>>,
    ) -> Result<Response<UploadCsvResponse>, Status> {
        Err(unimplemented("UploadCsv", NOT_YET))
    }

    async fn list_datasets(
        &self,
        _request: Request<ListDatasetsRequest>,
    ) -> Result<Response<ListDatasetsResponse>, Status> {
        Err(unimplemented("ListDatasets", NOT_YET))
    }

    async fn describe_dataset(
        &self,
        _request: Request<DescribeDatasetRequest>,
    ) -> Result<Response<DescribeDatasetResponse>, Status> {
        Err(unimplemented("DescribeDataset", NOT_YET))
    }

    async fn get_bars(
        &self,
        _request: Request<GetBarsRequest>,
    ) -> Result<Response<Self::GetBarsStream>, Status> {
        Err(unimplemented("GetBars", NOT_YET))
    }

    async fn aggregate(
        &self,
        _request: Request<AggregateRequest>,
    ) -> Result<Response<AggregateResponse>, Status> {
        Err(unimplemented("Aggregate", NOT_YET))
    }

    async fn start_replay(
        &self,
        _request: Request<StartReplayRequest>,
    ) -> Result<Response<StartReplayResponse>, Status> {
        Err(unimplemented("StartReplay", NOT_YET))
    }

    async fn stop_replay(
        &self,
        _request: Request<StopReplayRequest>,
    ) -> Result<Response<StopReplayResponse>, Status> {
        Err(unimplemented("StopReplay", NOT_YET))
    }

    async fn get_cache_stats(
        &self,
        _request: Request<GetCacheStatsRequest>,
    ) -> Result<Response<GetCacheStatsResponse>, Status> {
        Err(unimplemented("GetCacheStats", NOT_YET))
    }
}
