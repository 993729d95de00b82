//! API tests of the backtest worker: the service on port 0 against Postgres
//! (a database per test), Redis (a key prefix per test) and a catalog seeded
//! with the SPY sample; job consumers driven step by step for the
//! multi-replica and redelivery cases.

mod helpers;
mod jobs;
mod sweep;
mod tracing;

use grodt_proto::v1;
use tonic::Code;

use helpers::{Env, SPY, assert_golden, dec, eventually, sma_spec};

#[tokio::test]
async fn run_backtest_reproduces_the_golden_sma_figures_and_records_the_run() {
    let env = Env::new().await;
    let mut svc = env.spawn().await;
    let response = svc
        .client
        .run_backtest(v1::RunBacktestRequest {
            spec: Some(sma_spec()),
            detail: Some(v1::ResultDetail {
                trades: true,
                fills: true,
                equity_curve: true,
            }),
        })
        .await
        .expect("RunBacktest succeeds")
        .into_inner();
    let result = response.result.expect("result");
    assert_golden(&result);
    assert_eq!(result.fills.len(), 203);
    assert_eq!(result.trades.len(), 102);
    assert_eq!(result.equity_curve.len(), 5849);
    let first = &result.fills[0];
    assert_eq!(
        (
            first.side,
            first.quantity.as_ref().unwrap().value.as_str(),
            first.price.as_ref().unwrap().value.as_str()
        ),
        (v1::Side::Buy as i32, "896", "111.53")
    );

    // Recorded in the runs repository, and GetResult returns the same figures.
    let stored = svc
        .client
        .get_result(v1::GetResultRequest {
            backtest_id: result.backtest_id.clone(),
            detail: None,
        })
        .await
        .expect("GetResult finds the synchronous run")
        .into_inner()
        .result
        .unwrap();
    assert_golden(&stored);
    assert!(stored.fills.is_empty(), "no detail asked, none returned");
    let run = env
        .db
        .store()
        .runs()
        .get(result.backtest_id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(run.status, grodt_store::RunStatus::Succeeded);
    assert_eq!(run.result.unwrap()["final_equity"], "182091.18");

    // The worker's metrics count the job and its bars.
    let body = reqwest_free_get(svc.http, "/metrics").await;
    assert!(
        body.contains("grodt_backtest_worker_jobs_total{outcome=\"ok\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("grodt_backtest_worker_bars_processed_total 5849"),
        "{body}"
    );
    assert!(
        body.contains("grodt_backtest_worker_job_duration_seconds_count 1"),
        "{body}"
    );
    svc.stop().await;
}

/// The per-process series cache: a second backtest of the same dataset and
/// range reads no Parquet (the files are deleted in between and it still
/// runs), and the metrics count one miss and one hit.
#[tokio::test]
async fn a_second_backtest_on_the_same_dataset_reads_no_parquet() {
    let env = Env::new().await;
    let mut svc = env.spawn().await;
    let run = |slow: &str| {
        let mut spec = sma_spec();
        spec.params.insert("slow".into(), slow.into());
        v1::RunBacktestRequest {
            spec: Some(spec),
            detail: None,
        }
    };
    let first = svc
        .client
        .run_backtest(run("30"))
        .await
        .unwrap()
        .into_inner();
    assert_golden(first.result.as_ref().unwrap());
    let mut deleted = 0;
    let mut stack = vec![env.dir.path().join("catalog")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                std::fs::remove_file(&p).unwrap();
                deleted += 1;
            }
        }
    }
    assert!(deleted > 0, "the catalog holds Parquet files");
    let second = svc
        .client
        .run_backtest(run("40"))
        .await
        .unwrap()
        .into_inner();
    let second = second.result.unwrap();
    assert_eq!(
        second.status,
        v1::BacktestStatus::Succeeded as i32,
        "{}",
        second.error
    );
    assert_eq!(second.metrics.unwrap().bar_count, 5849);
    let body = reqwest_free_get(svc.http, "/metrics").await;
    for line in [
        "grodt_backtest_worker_series_cache_lookups_total{outcome=\"miss\"} 1",
        "grodt_backtest_worker_series_cache_lookups_total{outcome=\"hit\"} 1",
        "grodt_backtest_worker_series_cache_entries 1",
        "grodt_backtest_worker_series_cache_bars 5849",
    ] {
        assert!(body.contains(line), "{line} in\n{body}");
    }
    svc.stop().await;
}

#[tokio::test]
async fn bad_specs_are_invalid_argument_naming_the_field() {
    let env = Env::new().await;
    let mut svc = env.spawn().await;
    let cases: Vec<(v1::BacktestSpec, &str)> = vec![
        (
            v1::BacktestSpec {
                initial_cash: None,
                ..sma_spec()
            },
            "spec.initial_cash: is required",
        ),
        (
            v1::BacktestSpec {
                initial_cash: dec("-5"),
                ..sma_spec()
            },
            "spec.initial_cash",
        ),
        (
            v1::BacktestSpec {
                strategy_name: "rsi".into(),
                ..sma_spec()
            },
            "spec.strategy_name: unknown strategy \"rsi\"; valid strategies: sma_cross, ema_cross, s1, s2, s3, pair",
        ),
        (
            v1::BacktestSpec {
                params: [("fats".to_owned(), "3".to_owned())].into_iter().collect(),
                ..sma_spec()
            },
            "spec.params[fats]",
        ),
        (
            v1::BacktestSpec {
                dataset_ids: vec!["no-slashes".into()],
                ..sma_spec()
            },
            "spec.dataset_ids[0]",
        ),
        (
            v1::BacktestSpec {
                costs: Some(v1::CostModel {
                    slippage: Some(v1::SlippageModel {
                        model: Some(v1::slippage_model::Model::FixedBps(v1::FixedBpsSlippage {
                            // Fractional bps are taken (2.5 runs); more than 4
                            // decimals is not.
                            bps: dec("2.55555"),
                        })),
                    }),
                    ..v1::CostModel::default()
                }),
                ..sma_spec()
            },
            "spec.costs.slippage.fixed_bps.bps",
        ),
    ];
    for (spec, field) in cases {
        let e = svc
            .client
            .run_backtest(v1::RunBacktestRequest {
                spec: Some(spec),
                detail: None,
            })
            .await
            .expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
    let e = svc
        .client
        .run_backtest(v1::RunBacktestRequest {
            spec: None,
            detail: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "spec: is required")
    );
    svc.stop().await;
}

#[tokio::test]
async fn unknown_datasets_and_backtests_are_not_found() {
    let env = Env::new().await;
    let mut svc = env.spawn().await;
    let e = svc
        .client
        .run_backtest(v1::RunBacktestRequest {
            spec: Some(v1::BacktestSpec {
                dataset_ids: vec![SPY.to_owned(), "lean/QQQ/1d".into()],
                ..sma_spec()
            }),
            detail: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{}", e.message());
    assert!(
        e.message().contains("spec.dataset_ids[1]") && e.message().contains("lean/QQQ/1d"),
        "{}",
        e.message()
    );

    let e = svc
        .client
        .get_result(v1::GetResultRequest {
            backtest_id: "never-submitted".into(),
            detail: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{}", e.message());
    svc.stop().await;
}

#[tokio::test]
async fn submitted_backtests_run_as_jobs_and_get_result_returns_them() {
    let env = Env::new().await;
    let mut svc = env.spawn().await;
    let submitted = svc
        .client
        .submit_backtest(v1::SubmitBacktestRequest {
            spec: Some(sma_spec()),
            backtest_id: "sma-10-30-spy".into(),
        })
        .await
        .expect("queued")
        .into_inner();
    assert_eq!(submitted.backtest_id, "sma-10-30-spy");
    let event_id: uuid::Uuid = submitted.job_event_id.parse().expect("UUID job event id");
    assert_eq!(event_id.get_version_num(), 7);

    // Idempotent by backtest id: the same job, not a second one.
    let again = svc
        .client
        .submit_backtest(v1::SubmitBacktestRequest {
            spec: Some(sma_spec()),
            backtest_id: "sma-10-30-spy".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.job_event_id, submitted.job_event_id);

    let client = svc.client.clone();
    let result = eventually(60, "the job to succeed", || {
        let mut client = client.clone();
        async move {
            let r = client
                .get_result(v1::GetResultRequest {
                    backtest_id: "sma-10-30-spy".into(),
                    detail: Some(v1::ResultDetail {
                        trades: true,
                        fills: true,
                        equity_curve: false,
                    }),
                })
                .await
                .expect("GetResult")
                .into_inner()
                .result
                .unwrap();
            let terminal = [
                v1::BacktestStatus::Succeeded as i32,
                v1::BacktestStatus::Failed as i32,
            ];
            terminal.contains(&r.status).then_some(r)
        }
    })
    .await;
    assert_golden(&result);
    assert_eq!(result.fills.len(), 203);
    assert_eq!(result.backtest_id, "sma-10-30-spy");
    svc.stop().await;
}

/// GET over a plain socket (no HTTP client dependency).
async fn reqwest_free_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// `spec.regime_breakdown`: the result carries the metrics per regime, which
/// add back up to the run (bars, exact net profit, closed trades), and
/// GetResult returns them as stored; without it there are none.
#[tokio::test]
async fn regime_breakdown_is_returned_and_stored() {
    let env = Env::new().await;
    let mut svc = env.spawn().await;
    let run = |spec: v1::BacktestSpec| {
        let mut client = svc.client.clone();
        async move {
            client
                .run_backtest(v1::RunBacktestRequest {
                    spec: Some(spec),
                    detail: None,
                })
                .await
                .expect("RunBacktest succeeds")
                .into_inner()
                .result
                .expect("result")
        }
    };
    let plain = run(sma_spec()).await;
    assert_golden(&plain);
    assert!(plain.regime_metrics.is_empty());

    let result = run(v1::BacktestSpec {
        regime_breakdown: true,
        ..sma_spec()
    })
    .await;
    assert_golden(&result);
    let names: Vec<&str> = result
        .regime_metrics
        .iter()
        .map(|r| r.regime.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "trending_up",
            "trending_down",
            "ranging",
            "transition",
            "high_volatility",
            "warm_up"
        ]
    );
    let whole = result.metrics.as_ref().unwrap();
    let bars: u64 = result.regime_metrics.iter().map(|r| r.bars).sum();
    assert_eq!(bars, 5_848, "5,849 bars: 5,848 periods");
    let share: f64 = result.regime_metrics.iter().map(|r| r.time_share).sum();
    assert!((share - 1.0).abs() < 1e-12);
    let closed: u32 = result
        .regime_metrics
        .iter()
        .map(|r| r.metrics.as_ref().unwrap().closed_trade_count)
        .sum();
    assert_eq!(closed, whole.closed_trade_count);
    let pnl: rust_decimal::Decimal = result
        .regime_metrics
        .iter()
        .map(|r| {
            r.metrics
                .as_ref()
                .unwrap()
                .net_profit
                .as_ref()
                .unwrap()
                .value
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum();
    // the first equity point is the starting cash: the parts add up exactly
    let net: rust_decimal::Decimal = whole.net_profit.as_ref().unwrap().value.parse().unwrap();
    assert_eq!(pnl, net);
    let growth: f64 = result
        .regime_metrics
        .iter()
        .map(|r| 1.0 + r.metrics.as_ref().unwrap().total_return)
        .product();
    assert!((growth - (1.0 + whole.total_return)).abs() < 1e-9);
    let warm = result.regime_metrics.last().unwrap();
    assert_eq!(warm.bars, 262);

    let stored = svc
        .client
        .get_result(v1::GetResultRequest {
            backtest_id: result.backtest_id.clone(),
            detail: None,
        })
        .await
        .expect("GetResult")
        .into_inner()
        .result
        .unwrap();
    // NaN (no trades in a regime) is not equal to itself: compare the text.
    assert_eq!(
        format!("{:?}", stored.regime_metrics),
        format!("{:?}", result.regime_metrics)
    );
    assert!(stored.spec.unwrap().regime_breakdown);
    svc.stop().await;
}

/// `spec.price_noise` runs on a seeded noisy copy: the same seed gives the
/// same result, another seed another, neither the golden one, and a clean
/// run afterwards is the golden run again (the cached series stayed clean);
/// a sigma out of range is INVALID_ARGUMENT naming it.
#[tokio::test]
async fn price_noise_runs_on_a_seeded_noisy_copy_and_leaves_the_data_clean() {
    let env = Env::new().await;
    let svc = env.spawn().await;
    let run = |noise: Option<(f64, u64)>| {
        let mut spec = sma_spec();
        spec.price_noise = noise.map(|(sigma, seed)| v1::PriceNoise { sigma, seed });
        let mut client = svc.client.clone();
        async move {
            client
                .run_backtest(v1::RunBacktestRequest {
                    spec: Some(spec),
                    detail: None,
                })
                .await
                .map(|r| r.into_inner().result.unwrap().metrics.unwrap())
        }
    };
    let a = run(Some((0.005, 1))).await.expect("noisy run");
    let again = run(Some((0.005, 1))).await.expect("noisy run");
    let b = run(Some((0.005, 2))).await.expect("noisy run");
    assert_eq!(a, again, "the same seed, the same run");
    assert_ne!(a.final_equity, b.final_equity, "another seed, another run");
    assert_ne!(a.final_equity.as_ref().unwrap().value, "182091.18");
    assert_eq!(a.bar_count, 5849, "every bar kept");
    let clean = run(None).await.expect("clean run");
    assert_eq!(clean.final_equity.as_ref().unwrap().value, "182091.18");
    let e = run(Some((0.7, 1))).await.expect_err("sigma 0.7");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("spec.price_noise.sigma"),
        "{}",
        e.message()
    );
    svc.stop().await;
}
