//! Backfill from the mock Binance into a catalog: chunked commits, a second run that
//! resumes where the catalog ends, and a defective bar that rejects its chunk while
//! the committed dataset stays as it was.

use std::sync::Arc;

use grodt_data::Catalog;
use grodt_data::binance::{BinanceClient, BinanceOptions};
use grodt_data::catalog::{Partitioning, TimeRange};
use grodt_data::error::DataError;
use grodt_data::import::{CsvOptions, MissingPolicy, parse_csv};
use grodt_data::meta::{DatasetId, InMemoryMetadata};
use grodt_data::validate::{ValidationOptions, validate};
use grodt_data::venues::backfill::{BackfillRequest, backfill};
use grodt_data::venues::testing::{MockExchange, TestPki, serve_https};

use crate::{VirtualTimer, btc_minutes, retry, transport};

const MINUTE: i64 = 60_000;
const FIRST: i64 = 1_747_699_200_000; // 2025-05-20T00:00Z
const NOW_NS: i64 = 1_795_000_000_000_000_000; // 2026-11

fn request(to_minutes: i64) -> BackfillRequest {
    BackfillRequest {
        id: DatasetId::new("binance", "BTCUSDT", "1m").unwrap(),
        from_ms: FIRST,
        to_ms: FIRST + to_minutes * MINUTE,
        pages_per_commit: 1,
        validation: ValidationOptions::new(NOW_NS),
        partitioning: Partitioning::Month,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfills_in_chunks_resumes_and_rejects_bad_bars() {
    let pki = TestPki::new();
    let (mut rows, _) = btc_minutes(4000);
    // Minute 3100 has its high below its low: the chunk holding it must be refused.
    rows[3100].fields[1] = "1.00000000".into();
    let (_, csv) = btc_minutes(3000);
    let m = MockExchange::new("BTCUSDT", MINUTE, rows, vec![]);
    let base = serve_https(&pki, m.router()).await;
    let client = BinanceClient::new(
        &base,
        BinanceOptions {
            retry: retry(3),
            ..BinanceOptions::default()
        },
        1,
        transport(Some(&pki.ca_file), 2000),
        Arc::new(VirtualTimer::default()),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog =
        Arc::new(Catalog::open(dir.path().join("c"), Arc::new(InMemoryMetadata::new())).unwrap());

    let mut seen = Vec::new();
    let out = backfill(catalog.clone(), &client, &request(1500), None, &mut |p| {
        seen.push((p.fetched, p.rows))
    })
    .await
    .unwrap();
    assert_eq!(
        seen,
        vec![(1000, 1000), (1500, 1500)],
        "one commit per page"
    );
    assert_eq!(out.record.as_ref().unwrap().rows, 1500);
    assert_eq!(out.fetched_ranges, vec![(FIRST, FIRST + 1500 * MINUTE)]);

    // Second run over a longer range: only the tail is asked for.
    let calls_before = m.calls() as usize;
    let out = backfill(catalog.clone(), &client, &request(3000), None, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        out.fetched_ranges,
        vec![(FIRST + 1500 * MINUTE, FIRST + 3000 * MINUTE)]
    );
    assert_eq!(out.progress.fetched, 1500);
    let log = m.log.lock().unwrap()[calls_before..].to_vec();
    assert!(
        log[0].contains(&format!("startTime={}", FIRST + 1500 * MINUTE)),
        "resumes after the last stored bar: {log:?}"
    );
    let id = request(0).id;
    let stored = catalog.load(&id, TimeRange::ALL).unwrap();
    let raw = parse_csv(csv.as_bytes(), "head.csv", &CsvOptions::default()).unwrap();
    let expected = validate(raw, MissingPolicy::Fail, &ValidationOptions::new(NOW_NS)).bars;
    assert!(
        stored == expected,
        "the catalog holds the sample's first 3000 minutes"
    );

    // Third run reaches the defective minute: rejected, nothing of it stored.
    let e = backfill(catalog.clone(), &client, &request(4000), None, &mut |_| {})
        .await
        .unwrap_err();
    match &e {
        DataError::Rejected { report, .. } => {
            let f = report.errors().next().unwrap();
            assert_eq!(
                f.rows,
                vec![3101],
                "the bar's position in the dataset: {f:?}"
            );
        }
        other => panic!("{other}"),
    }
    assert_eq!(catalog.describe(&id).unwrap().rows, 3000);

    // A range already stored fetches nothing.
    let calls = m.calls();
    let out = backfill(catalog.clone(), &client, &request(2000), None, &mut |_| {})
        .await
        .unwrap();
    assert!(out.fetched_ranges.is_empty());
    assert_eq!(m.calls(), calls);
}
