//! Imports, listing, describing, bars, aggregation, errors and metrics.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use grodt_proto::v1;
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::helpers::{
    daily_spec, dec, get_bars, http_get, import, instrument, mapping, metric, rfc3339, rows,
    sample, spawn_app, spawn_app_on, spawn_app_with,
};

const SPY: &str = "spy_1d_1998-2021.csv";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spy_imports_by_path_lists_describes_and_streams_back_digit_for_digit() {
    let mut app = spawn_app().await;
    let path = sample(SPY);
    let resp = import(&mut app, &path, daily_spec("SPY")).await;
    let ds = resp.dataset.expect("stored");
    let report = resp.report.expect("report");
    assert_eq!(ds.row_count, 5849);
    assert_eq!(report.rows_imported, 5849);
    assert_eq!(report.error_count, 0);
    assert_eq!(ds.name, "quantconnect/SPY/1d");
    assert_eq!(ds.timeframe, v1::Timeframe::Day1 as i32);
    let prov = ds.provenance.clone().expect("provenance");
    assert_eq!(prov.original_file, path.display().to_string());
    let sha = hex::encode(Sha256::digest(std::fs::read(&path).expect("read")));
    assert_eq!(prov.original_sha256, sha);
    let range = ds.range.expect("range");
    assert_eq!(rfc3339(&range.start), "1998-01-02T00:00:00Z");
    assert_eq!(rfc3339(&range.end), "2021-04-01T00:00:00Z");

    let listed = app
        .client
        .list_datasets(v1::ListDatasetsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.datasets, vec![ds.clone()]);
    assert_eq!(listed.page.expect("page").next_page_token, "");

    let described = app
        .client
        .describe_dataset(v1::DescribeDatasetRequest {
            dataset_id: ds.dataset_id.clone(),
        })
        .await
        .expect("describe")
        .into_inner();
    assert_eq!(described.dataset, Some(ds.clone()));
    assert_eq!(described.report, Some(report));

    let batches = get_bars(
        &mut app,
        v1::GetBarsRequest {
            dataset_id: ds.dataset_id.clone(),
            batch_size: 1000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(batches.len(), 6);
    assert!(batches[..5].iter().all(|b| b.len() == 1000));
    let bars: Vec<v1::Bar> = batches.into_iter().flatten().collect();
    let file = rows(&path);
    assert_eq!(bars.len(), file.len());
    for (bar, row) in bars.iter().zip(&file) {
        let got = [
            rfc3339(&bar.timestamp),
            dec(&bar.open).to_owned(),
            dec(&bar.high).to_owned(),
            dec(&bar.low).to_owned(),
            dec(&bar.close).to_owned(),
            dec(&bar.volume).to_owned(),
        ];
        assert_eq!(got.as_slice(), row.as_slice());
        assert_eq!(bar.symbol, "SPY");
    }

    // A sub-range, served twice: the second time from the cache.
    let sub = v1::GetBarsRequest {
        dataset_id: ds.dataset_id.clone(),
        range: Some(v1::TimeRange {
            start: Some(prost_types::Timestamp {
                seconds: NaiveDate::from_ymd_opt(2020, 1, 1)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .expect("date")
                    .and_utc()
                    .timestamp(),
                nanos: 0,
            }),
            end: None,
        }),
        ..Default::default()
    };
    let a: Vec<v1::Bar> = get_bars(&mut app, sub.clone()).await.concat();
    let b: Vec<v1::Bar> = get_bars(&mut app, sub).await.concat();
    assert_eq!(a, b);
    assert_eq!(rfc3339(&a[0].timestamp), "2020-01-02T00:00:00Z");
    assert_eq!(
        a.len(),
        file.iter().filter(|r| r[0].as_str() >= "2020").count()
    );
    let stats = app
        .client
        .get_cache_stats(v1::GetCacheStatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    assert!(stats.hits >= 1, "{stats:?}");
    assert!(stats.misses >= 2, "{stats:?}");
    assert!(stats.hit_ratio > 0.0 && stats.hit_ratio < 1.0);

    let (code, body) = http_get(app.http, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(
        metric(&body, "grodt_market_data_rows_imported_total"),
        Some(5849.0),
        "{body}"
    );
    assert!(metric(&body, "grodt_market_data_cache_hits_total").is_some_and(|h| h >= 1.0));
    assert!(metric(&body, "grodt_market_data_cache_hit_ratio").is_some_and(|r| r > 0.0));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weekly_bars_aggregate_on_the_fly_and_as_a_derived_dataset() {
    let mut app = spawn_app().await;
    let path = sample(SPY);
    let ds = import(&mut app, &path, daily_spec("SPY"))
        .await
        .dataset
        .expect("stored");

    // Expected weeks from the file itself: Monday-aligned, exact strings.
    let mut weeks: BTreeMap<NaiveDate, Vec<Vec<String>>> = BTreeMap::new();
    for row in rows(&path) {
        let day = NaiveDate::parse_from_str(&row[0][..10], "%Y-%m-%d").expect("date");
        let monday = day - chrono::Days::new(u64::from(day.weekday().num_days_from_monday()));
        weeks.entry(monday).or_default().push(row);
    }
    let num = |s: &str| s.parse::<f64>().expect("number");
    let expected: Vec<[String; 6]> = weeks
        .iter()
        .map(|(monday, rs)| {
            let high = rs
                .iter()
                .map(|r| &r[2])
                .max_by(|a, b| num(a).total_cmp(&num(b)));
            let low = rs
                .iter()
                .map(|r| &r[3])
                .min_by(|a, b| num(a).total_cmp(&num(b)));
            let volume: u64 = rs.iter().map(|r| r[5].parse::<u64>().expect("int")).sum();
            [
                format!("{monday}T00:00:00Z"),
                rs[0][1].clone(),
                high.expect("high").clone(),
                low.expect("low").clone(),
                rs[rs.len() - 1][4].clone(),
                volume.to_string(),
            ]
        })
        .collect();

    let weekly: Vec<v1::Bar> = get_bars(
        &mut app,
        v1::GetBarsRequest {
            dataset_id: ds.dataset_id.clone(),
            timeframe: v1::Timeframe::Week1 as i32,
            ..Default::default()
        },
    )
    .await
    .concat();
    assert_eq!(weekly.len(), expected.len());
    for (bar, want) in weekly.iter().zip(&expected) {
        let num_eq = |a: &str, b: &str| assert_eq!(num(a), num(b), "{want:?}");
        assert_eq!(rfc3339(&bar.timestamp), want[0]);
        num_eq(dec(&bar.open), &want[1]);
        num_eq(dec(&bar.high), &want[2]);
        num_eq(dec(&bar.low), &want[3]);
        num_eq(dec(&bar.close), &want[4]);
        assert_eq!(dec(&bar.volume), want[5]);
        assert_eq!(bar.timeframe, v1::Timeframe::Week1 as i32);
    }

    // Finer than the dataset: refused, naming the field.
    let err = app
        .client
        .get_bars(v1::GetBarsRequest {
            dataset_id: ds.dataset_id.clone(),
            timeframe: v1::Timeframe::Hour1 as i32,
            ..Default::default()
        })
        .await
        .expect_err("finer");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("timeframe"), "{}", err.message());

    let agg = app
        .client
        .aggregate(v1::AggregateRequest {
            dataset_id: ds.dataset_id.clone(),
            target_timeframe: v1::Timeframe::Week1 as i32,
            ..Default::default()
        })
        .await
        .expect("aggregate")
        .into_inner();
    let derived = agg.dataset.expect("derived");
    assert_eq!(agg.source_bars, 5849);
    assert_eq!(agg.aggregated_bars, expected.len() as u64);
    assert_eq!(derived.row_count, expected.len() as u64);
    assert_eq!(
        derived
            .provenance
            .expect("provenance")
            .derived_from_dataset_id,
        ds.dataset_id
    );
    let stored: Vec<v1::Bar> = get_bars(
        &mut app,
        v1::GetBarsRequest {
            dataset_id: derived.dataset_id.clone(),
            ..Default::default()
        },
    )
    .await
    .concat();
    assert_eq!(stored, weekly);
    let listed = app
        .client
        .list_datasets(v1::ListDatasetsRequest {
            page: Some(v1::PageRequest {
                page_size: 1,
                page_token: String::new(),
            }),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    // Newest first, one per page.
    assert_eq!(listed.datasets.len(), 1);
    assert_eq!(listed.datasets[0].dataset_id, derived.dataset_id);
    let token = listed.page.expect("page").next_page_token;
    assert!(!token.is_empty());
    let second = app
        .client
        .list_datasets(v1::ListDatasetsRequest {
            page: Some(v1::PageRequest {
                page_size: 1,
                page_token: token,
            }),
            ..Default::default()
        })
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(second.datasets[0].dataset_id, ds.dataset_id);
    app.stop().await;
}

fn coinbase_spec(skip_lines: u32) -> v1::ImportSpec {
    v1::ImportSpec {
        instrument: Some(instrument("BTCUSD", v1::AssetClass::CryptoSpot)),
        timeframe: v1::Timeframe::Hour1 as i32,
        source: "coinbase".into(),
        dataset_name: String::new(),
        csv: Some(v1::CsvOptions {
            mapping: Some(mapping("date", "volume_btc")),
            has_header: true,
            skip_lines,
            timestamp_format: v1::TimestampFormat::Custom as i32,
            timestamp_pattern: "%Y-%m-%d %I-%p".into(),
            ..Default::default()
        }),
        idempotent: false,
    }
}

fn finding<'a>(r: &'a v1::ValidationReport, check: &str) -> &'a v1::ValidationFinding {
    r.findings
        .iter()
        .find(|f| f.check == check)
        .unwrap_or_else(|| panic!("no {check} in {:?}", r.findings))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_coinbase_file_reports_its_defects() {
    let mut app = spawn_app().await;
    let path = sample("coinbase_btcusd_1h_raw.csv");
    // The banner read as a header: no "date" column.
    let err = app
        .client
        .import_csv(v1::ImportCsvRequest {
            path: path.display().to_string(),
            spec: Some(coinbase_spec(0)),
        })
        .await
        .expect_err("banner as header");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("\"date\""), "{}", err.message());

    let resp = import(&mut app, &path, coinbase_spec(1)).await;
    let ds = resp.dataset.expect("warnings only: stored");
    let r = resp.report.expect("report");
    assert_eq!(ds.row_count, 20_111);
    assert_eq!(r.error_count, 0);
    assert_eq!(
        finding(&r, "temporal.unsorted").lines,
        vec![16901, 16903, 16905, 16907, 16909]
    );
    assert_eq!(
        finding(&r, "temporal.duplicate_row").lines,
        (16900..=16909).collect::<Vec<u64>>()
    );
    assert_eq!(finding(&r, "temporal.zero_volume").row_count, 28);
    assert!(
        r.findings
            .iter()
            .all(|f| f.severity == v1::Severity::Warning as i32)
    );
    assert_eq!(ds.warning_count, r.warning_count);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field_and_unknown_datasets_are_not_found() {
    let mut app = spawn_app().await;
    let path = sample(SPY);
    let mut spec = daily_spec("SPY");
    if let Some(m) = spec.csv.as_mut().and_then(|c| c.mapping.as_mut()) {
        m.open = None;
    }
    let err = app
        .client
        .import_csv(v1::ImportCsvRequest {
            path: path.display().to_string(),
            spec: Some(spec),
        })
        .await
        .expect_err("no open column");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("spec.csv.mapping.open"),
        "{}",
        err.message()
    );

    let mut spec = daily_spec("SPY");
    if let Some(m) = spec.csv.as_mut().and_then(|c| c.mapping.as_mut()) {
        m.close = crate::helpers::col("closing_price");
    }
    let err = app
        .client
        .import_csv(v1::ImportCsvRequest {
            path: path.display().to_string(),
            spec: Some(spec),
        })
        .await
        .expect_err("unknown column");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("closing_price"), "{}", err.message());

    let err = app
        .client
        .import_csv(v1::ImportCsvRequest {
            path: "relative.csv".into(),
            spec: Some(daily_spec("SPY")),
        })
        .await
        .expect_err("relative");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("path"), "{}", err.message());

    let missing = app.catalog.path().join("nope.csv");
    let err = app
        .client
        .import_csv(v1::ImportCsvRequest {
            path: missing.display().to_string(),
            spec: Some(daily_spec("SPY")),
        })
        .await
        .expect_err("missing file");
    assert_eq!(err.code(), Code::NotFound);

    let unknown = uuid::Uuid::now_v7().to_string();
    let err = app
        .client
        .describe_dataset(v1::DescribeDatasetRequest {
            dataset_id: unknown.clone(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains(&unknown));
    let err = app
        .client
        .get_bars(v1::GetBarsRequest {
            dataset_id: unknown,
            ..Default::default()
        })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    let err = app
        .client
        .describe_dataset(v1::DescribeDatasetRequest {
            dataset_id: "not-a-uuid".into(),
        })
        .await
        .expect_err("malformed");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("dataset_id"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_findings_answer_ok_with_the_report_and_store_nothing() {
    let mut app = spawn_app().await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("broken.csv");
    std::fs::write(
        &path,
        "timestamp,open,high,low,close,volume\n\
         2024-01-02T00:00:00Z,10,11,9,10.5,100\n\
         2024-01-03T00:00:00Z,10.5,10,9,10.8,100\n\
         2024-01-04T00:00:00Z,10.8,11,10,10.9,100\n",
    )
    .expect("write");
    let resp = import(&mut app, &path, daily_spec("BRK")).await;
    assert_eq!(resp.dataset, None);
    let r = resp.report.expect("report");
    assert!(r.error_count >= 1, "{r:?}");
    assert_eq!(r.rows_imported, 0);
    assert_eq!(finding(&r, "ohlc.high_below").lines, vec![3]);
    let listed = app
        .client
        .list_datasets(v1::ListDatasetsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(listed.datasets.is_empty());
    let files: Vec<_> = std::fs::read_dir(app.catalog.path())
        .expect("read catalog")
        .collect();
    assert!(files.is_empty(), "nothing written: {files:?}");
    let (_, body) = http_get(app.http, "/metrics").await;
    assert_eq!(
        metric(
            &body,
            "grodt_market_data_rows_rejected_total{reason=\"ohlc.high_below\"}"
        ),
        Some(1.0),
        "{body}"
    );
    app.stop().await;
}

async fn upload(
    app: &mut crate::helpers::App,
    bytes: &[u8],
    header: v1::UploadCsvHeader,
) -> Result<v1::UploadCsvResponse, tonic::Status> {
    let mut msgs = vec![v1::UploadCsvRequest {
        part: Some(v1::upload_csv_request::Part::Header(header)),
    }];
    for chunk in bytes.chunks(64 * 1024) {
        msgs.push(v1::UploadCsvRequest {
            part: Some(v1::upload_csv_request::Part::Chunk(chunk.to_vec())),
        });
    }
    app.client
        .upload_csv(tokio_stream::iter(msgs))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_import_like_paths_and_check_hash_and_size() {
    let mut app = spawn_app().await;
    let bytes = std::fs::read(sample(SPY)).expect("read");
    let sha = hex::encode(Sha256::digest(&bytes));
    let header = |sha256: &str, symbol: &str| v1::UploadCsvHeader {
        file_name: "spy.csv".into(),
        spec: Some(daily_spec(symbol)),
        sha256: sha256.into(),
    };
    let wrong = "0".repeat(64);
    let err = upload(&mut app, &bytes, header(&wrong, "SPY"))
        .await
        .expect_err("hash mismatch");
    assert_eq!(err.code(), Code::DataLoss);

    let resp = upload(&mut app, &bytes, header(&sha, "SPY"))
        .await
        .expect("upload");
    assert_eq!(resp.bytes_received, bytes.len() as u64);
    assert_eq!(resp.sha256, sha);
    let ds = resp.dataset.expect("stored");
    assert_eq!(ds.row_count, 5849);
    let prov = ds.provenance.expect("provenance");
    assert_eq!(prov.original_file, "spy.csv");
    assert_eq!(prov.original_sha256, sha);

    // The same dataset again: ALREADY_EXISTS unless idempotent.
    let err = upload(&mut app, &bytes, header("", "SPY"))
        .await
        .expect_err("exists");
    assert_eq!(err.code(), Code::AlreadyExists);
    let mut again = header("", "SPY");
    if let Some(s) = again.spec.as_mut() {
        s.idempotent = true;
    }
    let same = upload(&mut app, &bytes, again).await.expect("idempotent");
    assert_eq!(same.dataset.expect("existing").dataset_id, ds.dataset_id);
    app.stop().await;

    let bus =
        grodt_bus::InProcessBus::new(grodt_bus::BackPressure::default(), 200_000).expect("bus");
    let mut small = spawn_app_with(
        std::sync::Arc::new(bus),
        grodt_market_data::MarketDataConfig {
            upload_max_bytes: 1000,
            ..Default::default()
        },
    )
    .await;
    let err = upload(&mut small, &bytes, header("", "SPY"))
        .await
        .expect_err("too large");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("upload_max_bytes"),
        "{}",
        err.message()
    );
    small.stop().await;
}

/// The same contract on Postgres: the quality report (JSONB, floats inside)
/// and the nanosecond range read back equal to what the import answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backed_catalog_reads_back_what_it_stored() {
    let bus =
        grodt_bus::InProcessBus::new(grodt_bus::BackPressure::default(), 200_000).expect("bus");
    let db = grodt_store::testing::TestDb::postgres().await;
    let mut app = spawn_app_on(
        std::sync::Arc::new(bus),
        grodt_market_data::MarketDataConfig::default(),
        db,
    )
    .await;
    let resp = import(
        &mut app,
        &sample("coinbase_btcusd_1h_raw.csv"),
        coinbase_spec(1),
    )
    .await;
    let ds = resp.dataset.expect("stored");
    let described = app
        .client
        .describe_dataset(v1::DescribeDatasetRequest {
            dataset_id: ds.dataset_id.clone(),
        })
        .await
        .expect("describe")
        .into_inner();
    assert_eq!(described.dataset, Some(ds.clone()));
    assert_eq!(described.report, resp.report);
    let bars: Vec<v1::Bar> = get_bars(
        &mut app,
        v1::GetBarsRequest {
            dataset_id: ds.dataset_id.clone(),
            batch_size: 10_000,
            ..Default::default()
        },
    )
    .await
    .concat();
    assert_eq!(bars.len(), 20_111);
    assert_eq!(rfc3339(&bars[0].timestamp), "2017-07-01T11:00:00Z");
    assert!(
        bars.windows(2)
            .all(|w| rfc3339(&w[0].timestamp) < rfc3339(&w[1].timestamp))
    );
    app.stop().await;
}
