//! The generated server and client talk to each other over a real socket, and
//! the descriptor set is accepted by tonic-reflection (what `grpcurl list` uses).

use std::net::SocketAddr;

use grodt_proto::v1::regime_service_client::RegimeServiceClient;
use grodt_proto::v1::regime_service_server::{RegimeService, RegimeServiceServer};
use grodt_proto::v1::{
    self, ClassifyRequest, ClassifyResponse, GetRegimeHistoryRequest, GetRegimeHistoryResponse,
    GetRegimeRequest, GetRegimeResponse, Regime, RegimeState,
};
use grodt_proto::{FILE_DESCRIPTOR_SET, SERVICE_NAMES};
use tokio::sync::oneshot;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// Test double: classifies each bar by comparing close to open, exactly.
struct CloseVsOpen;

#[tonic::async_trait]
impl RegimeService for CloseVsOpen {
    async fn get_regime(
        &self,
        request: Request<GetRegimeRequest>,
    ) -> Result<Response<GetRegimeResponse>, Status> {
        Err(Status::not_found(format!(
            "symbol {} has no regime yet",
            request.into_inner().symbol
        )))
    }

    async fn get_regime_history(
        &self,
        _request: Request<GetRegimeHistoryRequest>,
    ) -> Result<Response<GetRegimeHistoryResponse>, Status> {
        Err(Status::unimplemented("not part of this test"))
    }

    async fn classify(
        &self,
        request: Request<ClassifyRequest>,
    ) -> Result<Response<ClassifyResponse>, Status> {
        let bars = request.into_inner().bars;
        let mut states = Vec::with_capacity(bars.len());
        for (i, bar) in bars.into_iter().enumerate() {
            let field = |name| format!("bars[{i}].{name}");
            let open = grodt_proto::convert::required_decimal("open", bar.open.as_ref())
                .map_err(|e| Status::invalid_argument(format!("{}: {e}", field("open"))))?;
            let close = grodt_proto::convert::required_decimal("close", bar.close.as_ref())
                .map_err(|e| Status::invalid_argument(format!("{}: {e}", field("close"))))?;
            let regime = match close.cmp(&open) {
                std::cmp::Ordering::Greater => Regime::TrendingUp,
                std::cmp::Ordering::Less => Regime::TrendingDown,
                std::cmp::Ordering::Equal => Regime::Ranging,
            };
            states.push(RegimeState {
                symbol: bar.symbol,
                timeframe: bar.timeframe,
                regime: regime.into(),
                as_of: bar.timestamp,
                ..RegimeState::default()
            });
        }
        Ok(Response::new(ClassifyResponse {
            states,
            warmup_bars: 0,
        }))
    }
}

/// Serves the regime double and reflection on 127.0.0.1:0 until the sender drops.
async fn serve() -> (SocketAddr, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("descriptor set accepted by tonic-reflection");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(RegimeServiceServer::new(CloseVsOpen))
            .add_service(reflection)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                drop(stopped.await);
            })
            .await
            .unwrap();
    });
    (addr, stop)
}

fn bar(open: &str, close: &str) -> v1::Bar {
    let d = |s: &str| Some(v1::Decimal { value: s.into() });
    v1::Bar {
        symbol: "SPY".into(),
        timeframe: v1::Timeframe::Day1.into(),
        timestamp: Some(prost_types::Timestamp {
            seconds: 895_104_000,
            nanos: 0,
        }),
        open: d(open),
        high: d("120.000000000000000001"),
        low: d("100"),
        close: d(close),
        volume: d("0"),
    }
}

#[tokio::test]
async fn generated_client_and_server_round_trip_exact_decimals() {
    let (addr, _stop) = serve().await;
    let mut client = RegimeServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    // Differences in the 18th decimal place survive the wire.
    let response = client
        .classify(ClassifyRequest {
            bars: vec![
                bar("111.530000000000000001", "111.530000000000000002"),
                bar("110.72", "110.720"),
                bar("0.5", "0.49999999999999999999"),
            ],
            params: None,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let regimes: Vec<Regime> = response.states.iter().map(|s| s.regime()).collect();
    assert_eq!(
        regimes,
        [Regime::TrendingUp, Regime::Ranging, Regime::TrendingDown]
    );
    assert_eq!(response.states[0].as_of.unwrap().seconds, 895_104_000);

    let bad = client
        .classify(ClassifyRequest {
            bars: vec![bar("1e5", "1")],
            params: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(
        bad.message().contains("bars[0].open") && bad.message().contains("\"1e5\""),
        "{}",
        bad.message()
    );

    let missing = client
        .get_regime(GetRegimeRequest {
            symbol: "AAPL".into(),
            timeframe: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn reflection_lists_all_seven_services_from_the_descriptor_set() {
    let (addr, _stop) = serve().await;
    let channel = tonic::transport::Endpoint::new(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut inbound = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = inbound.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a list of services, got {response:?}");
    };
    let listed: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in SERVICE_NAMES {
        assert!(listed.iter().any(|l| l == name), "{name} not in {listed:?}");
    }

    // `grpcurl describe` resolves a symbol to its file, with imports available.
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "grodt.v1.BacktestService".into(),
        )),
    };
    let mut inbound = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = inbound.next().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
        panic!("expected file descriptors, got {response:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}
