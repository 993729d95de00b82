//! API tests of the regime service: the service on port 0 against its own
//! database and bus (Postgres + Redis, or SQLite + the in-process bus), fed
//! the SPY daily sample, held to `grodt_regimes::classify` over the same
//! bars; and the service binary killed with SIGKILL mid-stream.

mod helpers;
mod restart;

use std::time::Instant;

use grodt_proto::v1;
use grodt_regime::RegimeSettings;
use tonic::Code;

use helpers::{
    Env, RegimeReader, expected, expected_changes, publish_bars, published_changes, spy_bars,
    to_proto, ts_of, wait_for_bars,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_over_the_spy_sample_equals_the_library() {
    let env = Env::embedded().await;
    let mut svc = env.spawn(RegimeSettings::default()).await;
    let bars = spy_bars();
    let want = expected(&bars);
    let request = v1::ClassifyRequest {
        bars: bars.iter().map(|b| to_proto("SPY", b)).collect(),
        params: None,
        ..Default::default()
    };
    let got = svc
        .client
        .classify(request)
        .await
        .expect("Classify succeeds")
        .into_inner();
    assert_eq!(got.warmup_bars, 262, "first decision at bar index 262");
    assert_eq!(got.states.len(), want.len());
    let mut since = 0;
    for (s, d) in got.states.iter().zip(&want) {
        if d.changed {
            since = d.ts;
        }
        assert_eq!(ts_of(s), d.ts);
        assert_eq!(
            s.regime,
            grodt_regime::convert::regime_to_proto(d.regime) as i32
        );
        assert_eq!(
            s.candidate,
            grodt_regime::convert::regime_to_proto(d.candidate) as i32
        );
        assert_eq!((s.seq, s.held), (d.seq, d.held));
        assert_eq!(
            s.since
                .as_ref()
                .map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos)),
            Some(since)
        );
        assert_eq!(s.features["slope"].to_bits(), d.inputs.slope.to_bits());
        assert_eq!(
            s.features["vol_ratio"].to_bits(),
            d.inputs.vol_ratio.to_bits()
        );
        assert_eq!(
            s.features["atr_percentile"].to_bits(),
            d.inputs.atr_percentile.to_bits()
        );
        assert_eq!(s.thresholds["slope_trend"], d.thresholds.slope_trend);
        assert_eq!(s.symbol, "SPY");
        assert_eq!(s.timeframe, v1::Timeframe::Day1 as i32);
        assert!(!s.rule.is_empty());
    }
    // Parameters replace the library's defaults field by field.
    let tuned = svc
        .client
        .classify(v1::ClassifyRequest {
            bars: bars.iter().map(|b| to_proto("SPY", b)).collect(),
            params: Some(v1::RegimeParams {
                slope_trend: 0.15,
                slope_flat: 0.05,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("Classify succeeds")
        .into_inner();
    let config = grodt_regimes::RegimeConfig {
        slope_trend: 0.15,
        slope_flat: 0.05,
        ..Default::default()
    };
    let want_tuned = grodt_regimes::classify(config, helpers::SPY_PRECISION, &bars).unwrap();
    assert_eq!(tuned.states.len(), want_tuned.len());
    assert!(
        tuned
            .states
            .iter()
            .zip(&want_tuned)
            .all(|(s, d)| s.regime == grodt_regime::convert::regime_to_proto(d.regime) as i32)
    );
    svc.stop().await;
}

async fn expect_invalid<T: std::fmt::Debug>(r: Result<T, tonic::Status>, field: &str) {
    let e = r.expect_err("refused");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().starts_with(&format!("{field}:")),
        "{field}: {}",
        e.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_invalid_argument_naming_the_field() {
    let env = Env::embedded().await;
    let mut svc = env.spawn(RegimeSettings::default()).await;
    let bars: Vec<_> = spy_bars()
        .iter()
        .take(3)
        .map(|b| to_proto("SPY", b))
        .collect();
    let c = &mut svc.client;
    expect_invalid(c.classify(v1::ClassifyRequest::default()).await, "bars").await;
    let mut swapped = bars.clone();
    swapped.swap(1, 2);
    expect_invalid(
        c.classify(v1::ClassifyRequest {
            bars: swapped,
            params: None,
            ..Default::default()
        })
        .await,
        "bars[2].timestamp",
    )
    .await;
    let mut other = bars.clone();
    other[1].symbol = "QQQ".into();
    expect_invalid(
        c.classify(v1::ClassifyRequest {
            bars: other,
            params: None,
            ..Default::default()
        })
        .await,
        "bars[1].symbol",
    )
    .await;
    let mut bad_price = bars.clone();
    bad_price[2].close = Some(v1::Decimal {
        value: "abc".into(),
    });
    expect_invalid(
        c.classify(v1::ClassifyRequest {
            bars: bad_price,
            params: None,
            ..Default::default()
        })
        .await,
        "bars[2].close",
    )
    .await;
    for (params, field) in [
        (
            v1::RegimeParams {
                vol_short: 200,
                ..Default::default()
            },
            "params.vol_long",
        ),
        (
            v1::RegimeParams {
                slope_flat: 0.5,
                ..Default::default()
            },
            "params.slope_flat",
        ),
        (
            v1::RegimeParams {
                atr_percentile_high: 0.3,
                ..Default::default()
            },
            "params.atr_percentile_high",
        ),
        (
            v1::RegimeParams {
                eval_minutes: 600_000,
                ..Default::default()
            },
            "params.eval_minutes",
        ),
    ] {
        expect_invalid(
            c.classify(v1::ClassifyRequest {
                bars: bars.clone(),
                params: Some(params),
                ..Default::default()
            })
            .await,
            field,
        )
        .await;
    }
    expect_invalid(
        c.get_regime(v1::GetRegimeRequest::default()).await,
        "symbol",
    )
    .await;
    expect_invalid(
        c.get_regime(v1::GetRegimeRequest {
            symbol: "SPY".into(),
            timeframe: 99,
        })
        .await,
        "timeframe",
    )
    .await;
    expect_invalid(
        c.get_regime_history(v1::GetRegimeHistoryRequest::default())
            .await,
        "symbol",
    )
    .await;
    let t = |s: i64| {
        Some(prost_types::Timestamp {
            seconds: s,
            nanos: 0,
        })
    };
    expect_invalid(
        c.get_regime_history(v1::GetRegimeHistoryRequest {
            symbol: "SPY".into(),
            range: Some(v1::TimeRange {
                start: t(100),
                end: t(100),
            }),
            ..Default::default()
        })
        .await,
        "range.end",
    )
    .await;
    expect_invalid(
        c.get_regime_history(v1::GetRegimeHistoryRequest {
            symbol: "SPY".into(),
            range: Some(v1::TimeRange {
                start: Some(prost_types::Timestamp {
                    seconds: 1,
                    nanos: -1,
                }),
                end: None,
            }),
            ..Default::default()
        })
        .await,
        "range.start",
    )
    .await;
    // Unknown symbols are NOT_FOUND, naming the symbol.
    let e = c
        .get_regime(v1::GetRegimeRequest {
            symbol: "NOPE".into(),
            timeframe: 0,
        })
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("NOPE"), "{}", e.message());
    let e = c
        .get_regime_history(v1::GetRegimeHistoryRequest {
            symbol: "NOPE".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("NOPE"), "{}", e.message());
    svc.stop().await;
}

/// Feeds SPY through the bus and checks the published changes, the stored
/// history (paged), GetRegime and the metrics; returns bars per second.
async fn feed_spy_through_the_bus(env: Env) -> f64 {
    let reader = RegimeReader::new(env.bus.clone()).await;
    let svc = env.spawn(RegimeSettings::default()).await;
    let bars = spy_bars();
    let want = expected(&bars);
    let clock = Instant::now();
    publish_bars(&*env.bus, "SPY", &bars).await;
    wait_for_bars(env.db.store(), "SPY", bars.len() as u64, 300).await;
    #[allow(clippy::cast_precision_loss, reason = "a rate")]
    let rate = bars.len() as f64 / clock.elapsed().as_secs_f64();
    let reads = reader.drain().await;
    let changes = published_changes(&reads);
    assert_eq!(
        changes,
        expected_changes(&want),
        "published changes = classify's"
    );
    assert_eq!(changes.len(), 573, "SPY has 573 changes (docs/regimes.md)");
    // Heartbeats: never a change, each repeats the regime in force.
    let beats: Vec<_> = reads.iter().filter(|r| r.event.heartbeat).collect();
    assert!(
        !beats.is_empty(),
        "hourly bar-time heartbeats on daily bars"
    );
    for b in &beats {
        let s = b.event.state.as_ref().unwrap();
        assert_eq!(b.event.previous, s.regime);
        let d = want.iter().find(|d| d.ts == ts_of(s)).expect("a decision");
        assert!(!d.changed);
    }
    // Every decision is either a change or a heartbeat here (daily bars, 60 min).
    assert_eq!(reads.len(), want.len());
    let mut client = svc.client.clone();
    // GetRegime: the last decision.
    let last = want.last().unwrap();
    let state = client
        .get_regime(v1::GetRegimeRequest {
            symbol: "SPY".into(),
            timeframe: 0,
        })
        .await
        .expect("GetRegime")
        .into_inner()
        .state
        .unwrap();
    assert_eq!(ts_of(&state), last.ts);
    assert_eq!(
        state.regime,
        grodt_regime::convert::regime_to_proto(last.regime) as i32
    );
    assert_eq!(state.seq, last.seq);
    let since = want.iter().rev().find(|d| d.changed).unwrap().ts;
    assert_eq!(state.since.unwrap().seconds * 1_000_000_000, since);
    // GetRegimeHistory: pages of 50 walk every change once, oldest first.
    let mut walked = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let r = client
            .get_regime_history(v1::GetRegimeHistoryRequest {
                symbol: "SPY".into(),
                timeframe: v1::Timeframe::Day1 as i32,
                range: None,
                page: Some(v1::PageRequest {
                    page_size: 50,
                    page_token: token.clone(),
                }),
            })
            .await
            .expect("history")
            .into_inner();
        assert!(r.changes.len() <= 50);
        walked.extend(r.changes.iter().map(|s| (ts_of(s), s.regime)));
        pages += 1;
        token = r.page.unwrap().next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 12);
    let want_pairs: Vec<_> = expected_changes(&want).iter().map(|c| (c.0, c.1)).collect();
    assert_eq!(walked, want_pairs);
    // A time range (2008): only the changes whose bar falls in it.
    let y2008 = 1_199_145_600i64;
    let y2009 = 1_230_768_000i64;
    let in_2008 = client
        .get_regime_history(v1::GetRegimeHistoryRequest {
            symbol: "SPY".into(),
            timeframe: 0,
            range: Some(v1::TimeRange {
                start: Some(prost_types::Timestamp {
                    seconds: y2008,
                    nanos: 0,
                }),
                end: Some(prost_types::Timestamp {
                    seconds: y2009,
                    nanos: 0,
                }),
            }),
            page: Some(v1::PageRequest {
                page_size: 1000,
                page_token: String::new(),
            }),
        })
        .await
        .expect("history 2008")
        .into_inner();
    let want_2008: Vec<_> = want_pairs
        .iter()
        .filter(|c| (y2008 * 1_000_000_000..y2009 * 1_000_000_000).contains(&c.0))
        .copied()
        .collect();
    assert!(!want_2008.is_empty());
    assert_eq!(
        in_2008
            .changes
            .iter()
            .map(|s| (ts_of(s), s.regime))
            .collect::<Vec<_>>(),
        want_2008
    );
    let e = client
        .get_regime_history(v1::GetRegimeHistoryRequest {
            symbol: "SPY".into(),
            page: Some(v1::PageRequest {
                page_size: 5,
                page_token: "bogus".into(),
            }),
            ..Default::default()
        })
        .await
        .expect_err("bad token");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("page.page_token:"),
        "{}",
        e.message()
    );
    // Metrics.
    let text = svc.metrics().await;
    let current = format!(
        "grodt_regime_current{{regime=\"{}\",symbol=\"SPY\",timeframe=\"1d\"}} 1",
        last.regime.name()
    );
    assert!(text.contains(&current), "{current} in\n{text}");
    let decided = format!(
        "grodt_regime_bars_total{{outcome=\"decided\"}} {}",
        want.len()
    );
    assert!(text.contains(&decided), "{decided}");
    let changes_total: u64 = text
        .lines()
        .filter(|l| l.starts_with("grodt_regime_changes_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(changes_total, 573);
    assert!(text.contains("grodt_regime_evaluation_duration_seconds_count 5587"));
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    println!(
        "mean evaluation {:.1} us, mean bar handling (evaluate, commit, publish) {:.2} ms",
        value("grodt_regime_evaluation_duration_seconds_sum") / 5587.0 * 1e6,
        value("grodt_regime_bar_handling_duration_seconds_sum")
            / value("grodt_regime_bar_handling_duration_seconds_count")
            * 1e3
    );
    assert!(text.contains("grodt_regime_decisions_total{regime=\"trending_up\"}"));
    assert!(
        text.contains(
            "grodt_regime_bus_consumer_lag_entries{group=\"regime\",stream=\"grodt.bars.v1\"}"
        ),
        "lag gauge"
    );
    // A redelivered bar changes nothing: publishing the sample again is ignored.
    publish_bars(&*env.bus, "SPY", &bars[bars.len() - 5..]).await;
    // Wait until the service has handled all five (counted as ignored), then
    // nothing may have been published for them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !svc
        .metrics()
        .await
        .contains("grodt_regime_bars_total{outcome=\"ignored\"} 5")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the redelivered bars were not handled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(reader.drain().await.is_empty(), "old bars publish nothing");
    svc.stop().await;
    rate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_fed_service_publishes_classify_s_changes_embedded() {
    let rate = feed_spy_through_the_bus(Env::embedded().await).await;
    println!("embedded (in-process bus, SQLite): {rate:.0} bars/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_fed_service_publishes_classify_s_changes_redis() {
    let rate = feed_spy_through_the_bus(Env::redis().await).await;
    println!("distributed (Redis, Postgres): {rate:.0} bars/s");
}

/// Classify by dataset id reads market-data's catalog (imported here as
/// market-data imports: the catalog over the store's dataset metadata) and
/// gives the regime series of Classify over the same bars in the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_by_dataset_id_equals_classify_over_its_bars() {
    use grodt_data::catalog::{ImportRequest, Partitioning};
    use grodt_data::{Catalog, DatasetId, MetadataStore};

    let env = Env::embedded().await;
    let dir = tempfile::tempdir().unwrap();
    let catalog_dir = dir.path().join("catalog");
    let mut svc = env
        .spawn(RegimeSettings {
            catalog_dir: catalog_dir.clone(),
            ..RegimeSettings::default()
        })
        .await;
    let store = env.db.store().clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let meta: std::sync::Arc<dyn MetadataStore> =
            std::sync::Arc::new(grodt_dataset_meta::StoreMetadata::new(store, handle));
        let catalog = Catalog::open(&catalog_dir, meta).expect("catalog opens");
        catalog
            .import_csv(&ImportRequest {
                path: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../data/samples/spy_1d_1998-2021.csv"),
                id: DatasetId::new("local", "SPY", "1d").unwrap(),
                source_description: "sample".into(),
                csv: grodt_data::import::CsvOptions::default(),
                validation: grodt_data::validate::ValidationOptions {
                    calendar: grodt_data::calendar::Calendar::UsEquityDaily,
                    ..grodt_data::validate::ValidationOptions::new(1_795_305_600_000_000_000)
                },
                partitioning: Partitioning::Year,
                replace: false,
                imported_at: 1_795_305_600_000_000_000,
            })
            .expect("SPY imports");
    })
    .await
    .unwrap();
    let bars = spy_bars();
    let by_bars = svc
        .client
        .classify(v1::ClassifyRequest {
            bars: bars.iter().map(|b| to_proto("SPY", b)).collect(),
            ..Default::default()
        })
        .await
        .expect("Classify over bars")
        .into_inner();
    let key = |r: &v1::ClassifyResponse| {
        r.states
            .iter()
            .map(|s| (ts_of(s), s.regime, s.candidate, s.seq, s.held))
            .collect::<Vec<_>>()
    };
    assert!(by_bars.states.len() > 1000);
    let uuid = env
        .db
        .store()
        .datasets()
        .list(&Default::default(), &grodt_store::PageRequest::default())
        .await
        .unwrap()
        .items[0]
        .id
        .to_string();
    for id in ["local/SPY/1d".to_owned(), uuid] {
        let by_id = svc
            .client
            .classify(v1::ClassifyRequest {
                dataset_id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("Classify by {id}: {e}"))
            .into_inner();
        assert_eq!(by_id.warmup_bars, by_bars.warmup_bars, "{id}");
        assert_eq!(key(&by_id), key(&by_bars), "{id}");
        assert!(by_id.states.iter().all(|s| s.symbol == "SPY"));
    }
    // A range classifies exactly those bars.
    let head = &bars[..1500];
    let ranged = svc
        .client
        .classify(v1::ClassifyRequest {
            dataset_id: "local/SPY/1d".into(),
            range: Some(v1::TimeRange {
                start: None,
                end: Some(prost_types::Timestamp {
                    seconds: bars[1500].ts / 1_000_000_000,
                    nanos: 0,
                }),
            }),
            ..Default::default()
        })
        .await
        .expect("ranged")
        .into_inner();
    let head_bars = svc
        .client
        .classify(v1::ClassifyRequest {
            bars: head.iter().map(|b| to_proto("SPY", b)).collect(),
            ..Default::default()
        })
        .await
        .expect("head")
        .into_inner();
    assert_eq!(key(&ranged), key(&head_bars));
    // Refusals name the field.
    let unknown = svc
        .client
        .classify(v1::ClassifyRequest {
            dataset_id: "local/QQQ/1d".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown dataset");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert!(unknown.message().contains("local/QQQ/1d"), "{unknown:?}");
    let unknown_uuid = svc
        .client
        .classify(v1::ClassifyRequest {
            dataset_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        })
        .await
        .expect_err("unknown uuid");
    assert_eq!(unknown_uuid.code(), Code::NotFound);
    expect_invalid(
        svc.client
            .classify(v1::ClassifyRequest {
                dataset_id: "local/SPY/1d".into(),
                bars: vec![to_proto("SPY", &bars[0])],
                ..Default::default()
            })
            .await,
        "bars",
    )
    .await;
    expect_invalid(
        svc.client
            .classify(v1::ClassifyRequest {
                dataset_id: "not-an-id".into(),
                ..Default::default()
            })
            .await,
        "dataset_id",
    )
    .await;
}
