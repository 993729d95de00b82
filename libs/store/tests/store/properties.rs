//! Properties checked over generated inputs, against both backends: money
//! survives storage exactly, and paging visits every run once in order.

use std::str::FromStr;

use grodt_store::testing::TestDb;
use grodt_store::{Backend, PageRequest, RunKind, Store};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

/// Every rust_decimal value: a 96-bit mantissa and a scale of 0..=28.
fn any_decimal() -> impl Strategy<Value = Decimal> {
    let max = (1_i128 << 96) - 1;
    (-max..=max, 0_u32..=28).prop_map(|(m, scale)| Decimal::from_i128_with_scale(m, scale))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn check_decimals(rt: &tokio::runtime::Runtime, store: &Store) {
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    runner
        .run(&any_decimal(), |value| {
            rt.block_on(async {
                let id = Uuid::new_v4();
                let runs = store.runs();
                runs.create(RunKind::Backtest, id, &json!({}), None)
                    .await
                    .map_err(fail)?;
                runs.set_result(id, &json!({}), None, Some(value))
                    .await
                    .map_err(fail)?;
                let read = runs.get(id).await.map_err(fail)?.net_pnl;
                prop_assert_eq!(read, Some(value));
                // Same digits and scale, not only the same number.
                prop_assert_eq!(read.map(|d| d.to_string()), Some(value.to_string()));
                prop_assert_eq!(Decimal::from_str(&value.to_string()).ok(), Some(value));
                Ok(())
            })
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

fn check_paging(rt: &tokio::runtime::Runtime, backend: Backend) {
    let mut runner = TestRunner::new(Config {
        cases: 12,
        ..Config::default()
    });
    runner
        .run(&(0_usize..30, 1_u32..12), |(count, page_size)| {
            rt.block_on(async {
                // A fresh database per case: the listing must hold exactly `count` runs.
                let db = match backend {
                    Backend::Postgres => TestDb::postgres().await,
                    Backend::Sqlite => TestDb::sqlite().await,
                };
                let runs = db.store().runs();
                let mut created = Vec::with_capacity(count);
                for i in 0..count {
                    let id = Uuid::new_v4();
                    runs.create(RunKind::Optimization, id, &json!({ "i": i }), None)
                        .await
                        .map_err(fail)?;
                    created.push(id);
                }
                let mut seen = Vec::new();
                let mut token = String::new();
                let mut pages = 0;
                loop {
                    let page = runs
                        .list(
                            RunKind::Optimization,
                            &PageRequest {
                                page_size,
                                page_token: token,
                            },
                        )
                        .await
                        .map_err(fail)?;
                    prop_assert!(page.items.len() <= page_size as usize);
                    seen.extend(page.items.into_iter().map(|r| r.id));
                    pages += 1;
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    token = page.next_page_token;
                }
                prop_assert_eq!(&seen, &created);
                // No trailing empty page: the look-ahead row knows the end.
                prop_assert_eq!(pages, count.div_ceil(page_size as usize).max(1));
                Ok(())
            })
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

fn fail(e: grodt_store::StoreError) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

#[test]
fn decimals_round_trip_exactly_postgres() {
    let rt = runtime();
    let db = rt.block_on(TestDb::postgres());
    check_decimals(&rt, db.store());
}

#[test]
fn decimals_round_trip_exactly_sqlite() {
    let rt = runtime();
    let db = rt.block_on(TestDb::sqlite());
    check_decimals(&rt, db.store());
}

#[test]
fn paging_visits_every_run_once_postgres() {
    check_paging(&runtime(), Backend::Postgres);
}

#[test]
fn paging_visits_every_run_once_sqlite() {
    check_paging(&runtime(), Backend::Sqlite);
}
