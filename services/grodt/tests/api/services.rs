//! Each of the seven services, on port 0 against embedded infrastructure:
//! health SERVING for its own service, reflection lists it, its RPCs answer
//! UNIMPLEMENTED with a reason (no fake data; market-data, implemented,
//! refuses a request without its dataset id), the call shows on /metrics,
//! /healthz and /readyz answer 200, and it drains on request.

use grodt_proto::v1;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{channel, embedded_infra, http_get, reflection_services, sample, spawn};

/// Calls one unary RPC of `service`; returns the method path and the status.
async fn call_one(service: &str, ch: Channel) -> (&'static str, tonic::Status) {
    use v1::backtest_service_client::BacktestServiceClient;
    use v1::execution_service_client::ExecutionServiceClient;
    use v1::market_data_service_client::MarketDataServiceClient;
    use v1::optimizer_service_client::OptimizerServiceClient;
    use v1::regime_service_client::RegimeServiceClient;
    use v1::risk_service_client::RiskServiceClient;
    use v1::strategy_service_client::StrategyServiceClient;
    let (method, result) = match service {
        // market-data is implemented: a request missing its required id
        // answers INVALID_ARGUMENT naming the field.
        "market-data" => (
            "/grodt.v1.MarketDataService/DescribeDataset",
            MarketDataServiceClient::new(ch)
                .describe_dataset(v1::DescribeDatasetRequest::default())
                .await
                .map(drop),
        ),
        "regime" => (
            "/grodt.v1.RegimeService/GetRegime",
            RegimeServiceClient::new(ch)
                .get_regime(v1::GetRegimeRequest::default())
                .await
                .map(drop),
        ),
        "strategy" => (
            "/grodt.v1.StrategyService/GetState",
            StrategyServiceClient::new(ch)
                .get_state(v1::GetStateRequest::default())
                .await
                .map(drop),
        ),
        "risk" => (
            "/grodt.v1.RiskService/CheckOrder",
            RiskServiceClient::new(ch)
                .check_order(v1::CheckOrderRequest::default())
                .await
                .map(drop),
        ),
        "execution" => (
            "/grodt.v1.ExecutionService/GetOrder",
            ExecutionServiceClient::new(ch)
                .get_order(v1::GetOrderRequest::default())
                .await
                .map(drop),
        ),
        "backtest-worker" => (
            "/grodt.v1.BacktestService/GetResult",
            BacktestServiceClient::new(ch)
                .get_result(v1::GetResultRequest::default())
                .await
                .map(drop),
        ),
        "optimizer" => (
            "/grodt.v1.OptimizerService/GetOptimization",
            OptimizerServiceClient::new(ch)
                .get_optimization(v1::GetOptimizationRequest::default())
                .await
                .map(drop),
        ),
        other => panic!("no test call for {other}"),
    };
    (method, result.expect_err("an empty request is refused"))
}

#[tokio::test]
async fn every_service_serves_health_reflection_metrics_and_readiness() {
    let members = grodt::up::members();
    assert_eq!(members.len(), 7);
    for member in &members {
        let (infra, _db) = embedded_infra().await;
        let svc = spawn(member, infra).await;
        let name = member.name;

        let status = grodt::health::check(
            &svc.grpc.to_string(),
            member.grpc_service,
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: health: {e:#}"));
        assert_eq!(status, ServingStatus::Serving, "{name}: health");

        let listed = reflection_services(svc.grpc).await;
        assert!(
            listed.iter().any(|s| s == member.grpc_service),
            "{name}: reflection lists {listed:?}, not {}",
            member.grpc_service
        );
        assert!(
            listed.iter().any(|s| s == "grpc.health.v1.Health"),
            "{name}: {listed:?}"
        );

        let (method, status) = call_one(name, channel(svc.grpc).await).await;
        // Every service is implemented: each refuses the empty request,
        // naming the field (an unknown one would answer UNIMPLEMENTED).
        let (code, code_label, says) = match name {
            "market-data" => (
                tonic::Code::InvalidArgument,
                "InvalidArgument",
                "dataset_id",
            ),
            "backtest-worker" => (
                tonic::Code::InvalidArgument,
                "InvalidArgument",
                "backtest_id",
            ),
            "regime" => (tonic::Code::InvalidArgument, "InvalidArgument", "symbol"),
            "risk" | "execution" => (tonic::Code::InvalidArgument, "InvalidArgument", "order"),
            "strategy" => (
                tonic::Code::InvalidArgument,
                "InvalidArgument",
                "instance_id",
            ),
            "optimizer" => (
                tonic::Code::InvalidArgument,
                "InvalidArgument",
                "optimization_id",
            ),
            _ => (
                tonic::Code::Unimplemented,
                "Unimplemented",
                "is not implemented",
            ),
        };
        assert_eq!(status.code(), code, "{name}: {status:?}");
        assert!(
            status.message().contains(says),
            "{name}: {:?}",
            status.message()
        );

        let (code, metrics) = http_get(svc.http, "/metrics").await;
        assert_eq!(code, 200, "{name}: /metrics");
        let prefix = format!("grodt_{}_", name.replace('-', "_"));
        let counted = sample(
            &metrics,
            &format!("{prefix}grpc_requests_total"),
            &[("method", method), ("code", code_label)],
        );
        assert_eq!(
            counted,
            Some(1.0),
            "{name}: request counter after one call:\n{metrics}"
        );
        assert!(
            metrics.contains(&format!("{prefix}grpc_request_duration_seconds_bucket")),
            "{name}"
        );
        assert!(
            metrics.contains("process_resident_memory_bytes"),
            "{name}: process metrics"
        );

        assert_eq!(
            http_get(svc.http, "/healthz").await.0,
            200,
            "{name}: /healthz"
        );
        let (ready, body) = http_get(svc.http, "/readyz").await;
        assert_eq!(ready, 200, "{name}: /readyz: {body}");
        assert_eq!(
            sample(&metrics, &format!("{prefix}ready"), &[]).or_else(|| {
                metrics.lines().find_map(|l| {
                    l.strip_prefix(&format!("{prefix}ready "))
                        .and_then(|v| v.parse().ok())
                })
            }),
            Some(1.0),
            "{name}: ready gauge"
        );

        svc.stop().await;
    }
}
