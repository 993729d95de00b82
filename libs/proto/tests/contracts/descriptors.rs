use grodt_proto::{FILE_DESCRIPTOR_SET, SERVICE_NAMES};
use prost::Message as _;
use prost_types::{FileDescriptorSet, ServiceDescriptorProto};

/// (rpc, client streaming, server streaming).
type Rpc = (&'static str, bool, bool);

/// Every service with its RPCs, as DESIGN.md lists them.
const EXPECTED: [(&str, &[Rpc]); 7] = [
    (
        "MarketDataService",
        &[
            ("ImportCsv", false, false),
            ("UploadCsv", true, false),
            ("ListDatasets", false, false),
            ("DescribeDataset", false, false),
            ("GetBars", false, true),
            ("Aggregate", false, false),
            ("StartReplay", false, false),
            ("StopReplay", false, false),
            ("GetCacheStats", false, false),
            ("FetchBars", false, true),
        ],
    ),
    (
        "RegimeService",
        &[
            ("GetRegime", false, false),
            ("GetRegimeHistory", false, false),
            ("Classify", false, false),
        ],
    ),
    (
        "StrategyService",
        &[
            ("ListStrategies", false, false),
            ("Deploy", false, false),
            ("Start", false, false),
            ("Stop", false, false),
            ("Pause", false, false),
            ("GetState", false, false),
        ],
    ),
    (
        "RiskService",
        &[
            ("CheckOrder", false, false),
            ("GetLimits", false, false),
            ("SetLimits", false, false),
            ("Halt", false, false),
            ("Resume", false, false),
            ("GetSnapshot", false, false),
        ],
    ),
    (
        "ExecutionService",
        &[
            ("SubmitOrder", false, false),
            ("CancelOrder", false, false),
            ("GetOrder", false, false),
            ("ListOrders", false, false),
            ("ListPositions", false, false),
            ("GetAccount", false, false),
            ("StreamFills", false, true),
        ],
    ),
    (
        "BacktestService",
        &[
            ("RunBacktest", false, false),
            ("SubmitBacktest", false, false),
            ("GetResult", false, false),
        ],
    ),
    (
        "OptimizerService",
        &[
            ("StartOptimization", false, false),
            ("GetOptimization", false, false),
            ("StreamProgress", false, true),
            ("CancelOptimization", false, false),
            ("ListOptimizations", false, false),
        ],
    ),
];

pub(crate) fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("FILE_DESCRIPTOR_SET decodes")
}

fn services(fds: &FileDescriptorSet) -> Vec<(String, &ServiceDescriptorProto)> {
    fds.file
        .iter()
        .flat_map(|f| {
            f.service
                .iter()
                .map(move |s| (format!("{}.{}", f.package(), s.name()), s))
        })
        .collect()
}

#[test]
fn descriptor_set_holds_every_contract_file_and_its_imports() {
    let fds = descriptor_set();
    let names: Vec<&str> = fds.file.iter().map(|f| f.name()).collect();
    for file in [
        "grodt/v1/common.proto",
        "grodt/v1/events.proto",
        "grodt/v1/market_data.proto",
        "grodt/v1/regime.proto",
        "grodt/v1/strategy.proto",
        "grodt/v1/risk.proto",
        "grodt/v1/execution.proto",
        "grodt/v1/backtest.proto",
        "grodt/v1/optimizer.proto",
        // Reflection clients resolve imports from the same set.
        "google/protobuf/timestamp.proto",
        "google/protobuf/duration.proto",
    ] {
        assert!(names.contains(&file), "{file} missing from {names:?}");
    }
    for f in fds.file.iter().filter(|f| f.name().starts_with("grodt/")) {
        assert_eq!(f.package(), "grodt.v1", "{}", f.name());
        assert_eq!(f.syntax(), "proto3", "{}", f.name());
    }
}

#[test]
fn the_seven_services_and_only_they_are_declared() {
    let fds = descriptor_set();
    let mut declared: Vec<String> = services(&fds).into_iter().map(|(n, _)| n).collect();
    declared.sort();
    let mut expected: Vec<String> = EXPECTED
        .iter()
        .map(|(s, _)| format!("grodt.v1.{s}"))
        .collect();
    expected.sort();
    assert_eq!(declared, expected);

    let mut listed = SERVICE_NAMES.map(str::to_owned).to_vec();
    listed.sort();
    assert_eq!(listed, expected, "SERVICE_NAMES");
}

#[test]
fn each_service_has_exactly_the_designed_rpcs_with_their_streaming_modes() {
    let fds = descriptor_set();
    let all = services(&fds);
    for (service, rpcs) in EXPECTED {
        let full = format!("grodt.v1.{service}");
        let (_, desc) = all
            .iter()
            .find(|(n, _)| *n == full)
            .unwrap_or_else(|| panic!("{full} not declared"));
        let actual: Vec<(&str, bool, bool)> = desc
            .method
            .iter()
            .map(|m| (m.name(), m.client_streaming(), m.server_streaming()))
            .collect();
        assert_eq!(actual, rpcs.to_vec(), "{full}");
        for m in &desc.method {
            // One request and one response message per RPC, so each can grow alone.
            assert_eq!(
                m.input_type(),
                format!(".grodt.v1.{}Request", m.name()),
                "{full}"
            );
            assert_eq!(
                m.output_type(),
                format!(".grodt.v1.{}Response", m.name()),
                "{full}"
            );
        }
    }
}

#[test]
fn event_payload_type_names_resolve_in_the_descriptor_set() {
    use grodt_proto::v1;
    use prost::Name;

    let fds = descriptor_set();
    let declared: Vec<String> = fds
        .file
        .iter()
        .flat_map(|f| {
            f.message_type
                .iter()
                .map(move |m| format!("{}.{}", f.package(), m.name()))
        })
        .collect();
    let names = [
        v1::EventEnvelope::full_name(),
        v1::BarEvent::full_name(),
        v1::RegimeEvent::full_name(),
        v1::OrderIntentEvent::full_name(),
        v1::OrderEvent::full_name(),
        v1::FillEvent::full_name(),
        v1::RiskEvent::full_name(),
        v1::BacktestJob::full_name(),
        v1::BacktestResultEvent::full_name(),
    ];
    assert_eq!(names[1], "grodt.v1.BarEvent");
    for name in names {
        assert!(declared.contains(&name), "{name} not in the descriptor set");
    }
}
