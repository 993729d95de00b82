//! The behaviour every backend must show. Each function takes a migrated,
//! empty store and panics on a violation.

use std::collections::HashSet;
use std::str::FromStr;

use chrono::Utc;
use grodt_core::error::{Classify, ErrorKind};
use grodt_store::{Backend, PageRequest, RunKind, RunStatus, Store, StoreError, Tx, TxFuture};
use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

pub async fn migrations_are_idempotent(store: &Store) {
    store.migrate().await.expect("second migrate");
    store.migrate().await.expect("third migrate");
    // The schema is intact and usable after re-running.
    assert!(
        store
            .processed_events()
            .mark_processed("c", "e")
            .await
            .expect("mark")
    );
}

pub async fn ping_and_backend(store: &Store) {
    store.ping().await.expect("ping");
    let expected = if store.postgres_pool().is_some() {
        Backend::Postgres
    } else {
        assert!(store.sqlite_pool().is_some());
        Backend::Sqlite
    };
    assert_eq!(store.backend(), expected);
    assert_eq!(store.begin().await.expect("begin").backend(), expected);
}

pub async fn dedupe_first_time_only(store: &Store) {
    let pe = store.processed_events();
    assert!(!pe.is_processed("ledger", "1-0").await.expect("is"));
    assert!(pe.mark_processed("ledger", "1-0").await.expect("mark"));
    assert!(
        !pe.mark_processed("ledger", "1-0")
            .await
            .expect("mark again")
    );
    assert!(pe.is_processed("ledger", "1-0").await.expect("is"));
    // Marks are per consumer and per event.
    assert!(
        pe.mark_processed("risk", "1-0")
            .await
            .expect("other consumer")
    );
    assert!(
        pe.mark_processed("ledger", "1-1")
            .await
            .expect("other event")
    );
}

pub async fn dedupe_purge_forgets_only_older_marks(store: &Store) {
    let pe = store.processed_events();
    assert!(pe.mark_processed("ledger", "e-1").await.expect("mark"));
    assert!(pe.mark_processed("risk", "e-2").await.expect("mark"));
    // Marks newer than the cutoff stay.
    let past = Utc::now() - chrono::Duration::hours(1);
    assert_eq!(pe.purge_before(past).await.expect("purge"), 0);
    assert!(pe.is_processed("ledger", "e-1").await.expect("is"));
    // Older ones go, across consumers.
    let cutoff = Utc::now() + chrono::Duration::milliseconds(1);
    assert_eq!(pe.purge_before(cutoff).await.expect("purge"), 2);
    assert!(!pe.is_processed("ledger", "e-1").await.expect("is"));
    assert!(!pe.is_processed("risk", "e-2").await.expect("is"));
    assert!(
        pe.mark_processed("ledger", "e-1")
            .await
            .expect("marked anew")
    );
    assert_eq!(pe.purge_before(past).await.expect("purge"), 0);
    let later = Utc::now() + chrono::Duration::hours(1);
    assert_eq!(pe.purge_before(later).await.expect("purge"), 1);
}

pub async fn dedupe_concurrent_marks_one_winner(store: &Store) {
    for event in ["a", "b", "c"] {
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let store = store.clone();
                let event = event.to_owned();
                tokio::spawn(async move {
                    store
                        .processed_events()
                        .mark_processed("race", &event)
                        .await
                })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            if t.await.expect("task").expect("mark") {
                wins += 1;
            }
        }
        assert_eq!(wins, 1, "event {event}");
    }
}

#[derive(Debug)]
enum EffectError {
    Store(StoreError),
    Refused,
}

impl From<StoreError> for EffectError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

fn put_effect(tx: &mut Tx, value: i64) -> TxFuture<'_, Result<i64, EffectError>> {
    Box::pin(async move {
        tx.put_setting("effects", "counter", &json!(value)).await?;
        Ok(value)
    })
}

pub async fn process_once_commits_effect_and_mark_together(store: &Store) {
    let first = store
        .process_once("applier", "ev-1", |tx| put_effect(tx, 1))
        .await
        .expect("first delivery");
    assert_eq!(first, Some(1));
    // A redelivery does not run the effect again.
    let second = store
        .process_once("applier", "ev-1", |tx| put_effect(tx, 2))
        .await
        .expect("redelivery");
    assert_eq!(second, None);
    assert_eq!(
        store
            .settings()
            .get("effects", "counter")
            .await
            .expect("get")
            .value,
        json!(1)
    );
    assert!(
        store
            .processed_events()
            .is_processed("applier", "ev-1")
            .await
            .expect("is")
    );

    // Concurrent deliveries of one event: the effect runs once.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .process_once("applier", "ev-2", move |tx| {
                        Box::pin(async move {
                            let n = tx
                                .list_runs(RunKind::Backtest, &PageRequest::first(0))
                                .await?
                                .items
                                .len();
                            tx.create_run(
                                RunKind::Backtest,
                                Uuid::new_v4(),
                                &json!({ "by": i }),
                                None,
                            )
                            .await?;
                            Ok::<_, StoreError>(n)
                        })
                    })
                    .await
            })
        })
        .collect();
    let mut applied = 0;
    for t in tasks {
        if t.await.expect("task").expect("process_once").is_some() {
            applied += 1;
        }
    }
    assert_eq!(applied, 1);
    let runs = store
        .runs()
        .list(RunKind::Backtest, &PageRequest::first(100))
        .await
        .expect("list");
    assert_eq!(runs.items.len(), 1);
}

pub async fn process_once_rolls_back_effect_and_mark_together(store: &Store) {
    let failed = store
        .process_once("applier", "ev-9", |tx| {
            Box::pin(async move {
                tx.put_setting("effects", "half-done", &json!(true)).await?;
                Err::<(), _>(EffectError::Refused)
            })
        })
        .await;
    assert!(matches!(failed, Err(EffectError::Refused)), "{failed:?}");
    // Neither the effect nor the mark survived...
    let missing = store
        .settings()
        .get("effects", "half-done")
        .await
        .expect_err("rolled back");
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert!(
        !store
            .processed_events()
            .is_processed("applier", "ev-9")
            .await
            .expect("is")
    );
    // ...so the redelivery applies it.
    let retried = store
        .process_once("applier", "ev-9", |tx| put_effect(tx, 9))
        .await
        .expect("retry");
    assert_eq!(retried, Some(9));
    assert!(
        store
            .processed_events()
            .is_processed("applier", "ev-9")
            .await
            .expect("is")
    );

    // A store error inside the effect rolls back the same way.
    let id = Uuid::new_v4();
    store
        .runs()
        .create(RunKind::Backtest, id, &json!({}), None)
        .await
        .expect("create");
    let failed = store
        .process_once("applier", "ev-10", move |tx| {
            Box::pin(async move {
                tx.put_setting("effects", "before-error", &json!(1)).await?;
                tx.transition_run(id, RunStatus::Succeeded).await?;
                Ok::<_, EffectError>(())
            })
        })
        .await;
    match failed {
        Err(EffectError::Store(e)) => assert_eq!(e.kind(), ErrorKind::FailedPrecondition, "{e}"),
        other => panic!("expected the illegal transition, got {other:?}"),
    }
    assert!(
        !store
            .processed_events()
            .is_processed("applier", "ev-10")
            .await
            .expect("is")
    );
    let missing = store
        .settings()
        .get("effects", "before-error")
        .await
        .expect_err("rolled back");
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

pub async fn explicit_tx_dropped_rolls_back(store: &Store) {
    let id = Uuid::new_v4();
    {
        let mut tx = store.begin().await.expect("begin");
        assert!(tx.mark_processed("manual", "e1").await.expect("mark"));
        tx.create_run(RunKind::Optimization, id, &json!({}), None)
            .await
            .expect("create");
        // Visible inside the transaction.
        assert_eq!(tx.get_run(id).await.expect("get").status, RunStatus::Queued);
        // Dropped without commit.
    }
    assert_eq!(
        store.runs().get(id).await.expect_err("gone").kind(),
        ErrorKind::NotFound
    );
    assert!(
        !store
            .processed_events()
            .is_processed("manual", "e1")
            .await
            .expect("is")
    );

    let mut tx = store.begin().await.expect("begin");
    assert!(tx.mark_processed("manual", "e1").await.expect("mark"));
    tx.create_run(RunKind::Optimization, id, &json!({}), None)
        .await
        .expect("create");
    tx.transition_run(id, RunStatus::Running)
        .await
        .expect("start");
    tx.commit().await.expect("commit");
    assert_eq!(
        store.runs().get(id).await.expect("get").status,
        RunStatus::Running
    );
    assert!(
        store
            .processed_events()
            .is_processed("manual", "e1")
            .await
            .expect("is")
    );

    let rolled = store
        .transaction(|tx| {
            Box::pin(async move {
                tx.transition_run(id, RunStatus::Succeeded).await?;
                tx.transition_run(id, RunStatus::Running).await
            })
        })
        .await;
    let err = rolled.expect_err("second transition is illegal");
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    // The first, legal transition was rolled back with the failing one.
    assert_eq!(
        store.runs().get(id).await.expect("get").status,
        RunStatus::Running
    );
}

/// Request and result bytes (protobuf, opaque to the store) come back
/// byte for byte, including NUL and high bytes and the empty message; a new
/// result replaces the old bytes; runs created without bytes have none.
pub async fn runs_bytes_round_trip_exact(store: &Store) {
    let runs = store.runs();
    let id = Uuid::new_v4();
    let request_pb: Vec<u8> = (0..=255u8).chain([0, 0, 255]).collect();
    let created = runs
        .create(
            RunKind::Backtest,
            id,
            &json!({ "id": "x" }),
            Some(&request_pb),
        )
        .await
        .expect("create");
    assert_eq!(created.request_pb.as_deref(), Some(request_pb.as_slice()));
    assert_eq!(created.result_pb, None);
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let with = runs
        .set_result(id, &json!({ "status": "ok" }), Some(&big), None)
        .await
        .expect("result");
    assert_eq!(with.result_pb.as_deref(), Some(big.as_slice()));
    assert_eq!(runs.get(id).await.expect("get").result_pb, Some(big));
    let mut tx = store.begin().await.expect("begin");
    tx.set_run_result(id, &json!({ "status": "ok" }), Some(&[]), None)
        .await
        .expect("replace in tx");
    tx.commit().await.expect("commit");
    let back = runs.get(id).await.expect("get");
    assert_eq!(back.result_pb, Some(Vec::new()));
    assert_eq!(back.request_pb, Some(request_pb));
    let plain = Uuid::new_v4();
    let created = runs
        .create(RunKind::Optimization, plain, &json!({}), None)
        .await
        .expect("create");
    assert_eq!((created.request_pb, created.result_pb), (None, None));
}

pub async fn runs_lifecycle(store: &Store) {
    let runs = store.runs();
    let id = Uuid::new_v4();
    let request = json!({ "strategy": "sma_cross", "params": { "fast": 10, "slow": 30 } });
    let created = runs
        .create(RunKind::Backtest, id, &request, None)
        .await
        .expect("create");
    assert_eq!(created.id, id);
    assert_eq!(created.kind, RunKind::Backtest);
    assert_eq!(created.status, RunStatus::Queued);
    assert_eq!(created.request, request);
    assert_eq!(created.result, None);
    assert_eq!(created.net_pnl, None);
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(runs.get(id).await.expect("get"), created);

    let running = runs
        .transition(id, RunStatus::Running)
        .await
        .expect("start");
    assert_eq!(running.status, RunStatus::Running);
    assert!(running.updated_at >= created.updated_at);
    assert_eq!(running.created_at, created.created_at);

    let result = json!({ "trades": 12, "sharpe": 1.25 });
    let pnl = Decimal::from_str("1234.56").expect("decimal");
    let with_result = runs
        .set_result(id, &result, None, Some(pnl))
        .await
        .expect("result");
    assert_eq!(with_result.result, Some(result.clone()));
    assert_eq!(with_result.net_pnl, Some(pnl));
    assert_eq!(with_result.status, RunStatus::Running);

    let done = runs
        .transition(id, RunStatus::Succeeded)
        .await
        .expect("finish");
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(runs.get(id).await.expect("get"), done);

    for end in [RunStatus::Failed, RunStatus::Cancelled] {
        let id = Uuid::new_v4();
        runs.create(RunKind::Backtest, id, &json!({}), None)
            .await
            .expect("create");
        runs.transition(id, RunStatus::Running)
            .await
            .expect("start");
        assert_eq!(runs.transition(id, end).await.expect("end").status, end);
    }
    let id = Uuid::new_v4();
    runs.create(RunKind::Optimization, id, &json!({}), None)
        .await
        .expect("create");
    let cancelled = runs
        .transition(id, RunStatus::Cancelled)
        .await
        .expect("cancel queued");
    assert_eq!(cancelled.status, RunStatus::Cancelled);
}

pub async fn runs_illegal_transitions_refused(store: &Store) {
    let runs = store.runs();
    // A run in each status, then every transition the lifecycle forbids.
    for from in RunStatus::ALL {
        for to in RunStatus::ALL {
            if from.can_transition_to(to) {
                continue;
            }
            let id = Uuid::new_v4();
            runs.create(RunKind::Backtest, id, &json!({}), None)
                .await
                .expect("create");
            let path: &[RunStatus] = match from {
                RunStatus::Queued => &[],
                RunStatus::Running => &[RunStatus::Running],
                end => &[RunStatus::Running, end],
            };
            for step in path {
                runs.transition(id, *step).await.expect("setup");
            }
            let err = runs.transition(id, to).await.expect_err("illegal");
            assert_eq!(
                err.kind(),
                ErrorKind::FailedPrecondition,
                "{from} -> {to}: {err}"
            );
            match err {
                StoreError::IllegalTransition {
                    id: eid,
                    from: f,
                    to: t,
                } => {
                    assert_eq!((eid, f, t), (id, from, to));
                }
                other => panic!("{from} -> {to}: unexpected {other}"),
            }
            assert_eq!(runs.get(id).await.expect("get").status, from, "unchanged");
        }
    }
}

pub async fn runs_concurrent_start_one_winner(store: &Store) {
    let id = Uuid::new_v4();
    store
        .runs()
        .create(RunKind::Backtest, id, &json!({}), None)
        .await
        .expect("create");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.runs().transition(id, RunStatus::Running).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(run) => {
                assert_eq!(run.status, RunStatus::Running);
                won += 1;
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::FailedPrecondition, "{e}"),
        }
    }
    assert_eq!(won, 1);
}

pub async fn runs_create_duplicate_refused(store: &Store) {
    let id = Uuid::new_v4();
    store
        .runs()
        .create(RunKind::Backtest, id, &json!({ "v": 1 }), None)
        .await
        .expect("create");
    let err = store
        .runs()
        .create(RunKind::Optimization, id, &json!({ "v": 2 }), None)
        .await
        .expect_err("duplicate");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(err.to_string().contains(&id.to_string()), "{err}");
    // The original is untouched.
    assert_eq!(
        store.runs().get(id).await.expect("get").request,
        json!({ "v": 1 })
    );
}

pub async fn runs_not_found(store: &Store) {
    let id = Uuid::new_v4();
    let runs = store.runs();
    for err in [
        runs.get(id).await.expect_err("get"),
        runs.transition(id, RunStatus::Running)
            .await
            .expect_err("transition"),
        runs.set_result(id, &json!({}), None, None)
            .await
            .expect_err("set_result"),
        store
            .settings()
            .get("ns", "missing")
            .await
            .expect_err("setting"),
    ] {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    }
    let err = runs.get(id).await.expect_err("get");
    assert_eq!(err.to_string(), format!("run {id} not found"));
}

pub async fn runs_pagination_stable_and_complete(store: &Store) {
    let runs = store.runs();
    let mut created = Vec::new();
    for i in 0..23 {
        let id = Uuid::new_v4();
        runs.create(RunKind::Backtest, id, &json!({ "i": i }), None)
            .await
            .expect("create");
        created.push(id);
        // Interleave the other kind, which must not show up.
        if i % 3 == 0 {
            runs.create(RunKind::Optimization, Uuid::new_v4(), &json!({}), None)
                .await
                .expect("create");
        }
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = runs
            .list(
                RunKind::Backtest,
                &PageRequest {
                    page_size: 5,
                    page_token: token.clone(),
                },
            )
            .await
            .expect("list");
        assert!(page.items.len() <= 5);
        assert!(page.items.iter().all(|r| r.kind == RunKind::Backtest));
        seen.extend(page.items.iter().map(|r| r.id));
        pages += 1;
        if pages == 2 {
            // Runs added mid-walk come after the ones already there.
            let late = Uuid::new_v4();
            runs.create(RunKind::Backtest, late, &json!({ "late": true }), None)
                .await
                .expect("create");
            created.push(late);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        // The same token gives the same page.
        let again = runs
            .list(
                RunKind::Backtest,
                &PageRequest {
                    page_size: 5,
                    page_token: page.next_page_token.clone(),
                },
            )
            .await
            .expect("list again");
        let again_ids: Vec<_> = again.items.iter().map(|r| r.id).collect();
        let next = runs
            .list(
                RunKind::Backtest,
                &PageRequest {
                    page_size: 5,
                    page_token: page.next_page_token.clone(),
                },
            )
            .await
            .expect("list next");
        assert_eq!(
            again_ids,
            next.items.iter().map(|r| r.id).collect::<Vec<_>>()
        );
        token = page.next_page_token;
        assert!(pages < 20, "pagination does not terminate");
    }
    assert_eq!(seen, created, "every run once, in creation order");
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        seen.len(),
        "no duplicates"
    );
    assert_eq!(pages, 5); // 24 runs in pages of 5

    let all = runs
        .list(RunKind::Backtest, &PageRequest::first(0))
        .await
        .expect("default size");
    assert_eq!(all.items.len(), 24);
    assert!(all.next_page_token.is_empty());
    let optimizations = runs
        .list(RunKind::Optimization, &PageRequest::first(100))
        .await
        .expect("list");
    assert_eq!(optimizations.items.len(), 8);
}

pub async fn runs_bad_page_token_rejected(store: &Store) {
    for token in ["garbage", "r1", "r1zzzzzzzzzzzzzzzz", "' OR 1=1 --"] {
        let err = store
            .runs()
            .list(
                RunKind::Backtest,
                &PageRequest {
                    page_size: 10,
                    page_token: token.into(),
                },
            )
            .await
            .expect_err("bad token");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{token}: {err}");
        assert!(matches!(err, StoreError::InvalidPageToken { .. }), "{err}");
    }
}

pub async fn decimal_round_trip_exact(store: &Store) {
    for text in [
        "12345678901234.123456789012",
        "-0.000000001",
        "0",
        "0.10",
        "-79228162514264337593543950335",
    ] {
        let value = Decimal::from_str(text).expect("decimal");
        let id = Uuid::new_v4();
        store
            .runs()
            .create(RunKind::Backtest, id, &json!({}), None)
            .await
            .expect("create");
        let written = store
            .runs()
            .set_result(id, &json!({}), None, Some(value))
            .await
            .expect("set");
        let read = store
            .runs()
            .get(id)
            .await
            .expect("get")
            .net_pnl
            .expect("net_pnl");
        assert_eq!(written.net_pnl, Some(value));
        assert_eq!(read, value, "{text}");
        // Same scale too, not just the same number.
        assert_eq!(read.to_string(), text, "{text}");
    }
}

pub async fn settings_upsert(store: &Store) {
    let settings = store.settings();
    let limits = json!({ "max_order_notional": "250000.00", "max_position": 10 });
    let first = settings.put("risk", "limits", &limits).await.expect("put");
    assert_eq!(first.namespace, "risk");
    assert_eq!(first.key, "limits");
    assert_eq!(first.value, limits);
    assert_eq!(settings.get("risk", "limits").await.expect("get"), first);

    // Idempotent: an equal value changes nothing, not even updated_at
    // (the clock has moved on by at least a round trip).
    let again = settings
        .put("risk", "limits", &limits)
        .await
        .expect("put again");
    assert_eq!(again, first);

    let changed = json!({ "max_order_notional": "100000.00", "max_position": 5 });
    let updated = settings
        .put("risk", "limits", &changed)
        .await
        .expect("replace");
    assert_eq!(updated.value, changed);
    assert!(updated.updated_at > first.updated_at);
    assert_eq!(
        settings.get("risk", "limits").await.expect("get").value,
        changed
    );

    settings
        .put("risk", "kill_switch", &json!(false))
        .await
        .expect("put");
    settings
        .put("other", "limits", &json!(1))
        .await
        .expect("put");
    let keys: Vec<_> = settings
        .list("risk")
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(keys, ["kill_switch", "limits"]);

    assert!(
        settings
            .delete("risk", "kill_switch")
            .await
            .expect("delete")
    );
    assert!(
        !settings
            .delete("risk", "kill_switch")
            .await
            .expect("delete again")
    );
    assert_eq!(settings.list("risk").await.expect("list").len(), 1);
    assert_eq!(
        settings
            .get("other", "limits")
            .await
            .expect("other ns")
            .value,
        json!(1)
    );
}

fn sample_dataset(
    source: &str,
    symbol: &str,
    timeframe: &str,
    rows: u64,
) -> grodt_store::NewDataset {
    grodt_store::NewDataset {
        source: source.into(),
        symbol: symbol.into(),
        timeframe: timeframe.into(),
        row_count: rows,
        // Nanosecond bounds beyond TIMESTAMPTZ precision must survive.
        first_ts_ns: 915_148_800_000_000_001,
        last_ts_ns: 1_617_148_800_123_456_789,
        checksum: format!("{rows:064x}"),
        schema_version: 1,
        provenance: json!({"source": source, "original": "/data/x.csv", "imported_at": 7}),
        quality: json!({"findings": [{"code": "Gap", "rows": [3, 4]}], "stats": {"return_mad": 0.0123}}),
        details: json!({"price_scale": 4, "partitions": []}),
    }
}

pub async fn datasets_put_get_replace_delete(store: &Store) {
    let repo = store.datasets();
    let id = Uuid::now_v7();
    let first = repo
        .put(id, &sample_dataset("qc", "SPY", "1d", 5849))
        .await
        .expect("put");
    assert_eq!(first.id, id);
    assert_eq!(first.data, sample_dataset("qc", "SPY", "1d", 5849));
    assert_eq!(repo.get(id).await.expect("get"), first);
    assert_eq!(
        repo.find("qc", "SPY", "1d").await.expect("find"),
        Some(first.clone())
    );
    assert_eq!(repo.find("qc", "SPY", "1w").await.expect("find"), None);
    // Replacing the same key keeps the id and creation time.
    let replaced = repo
        .put(Uuid::now_v7(), &sample_dataset("qc", "SPY", "1d", 10))
        .await
        .expect("replace");
    assert_eq!(replaced.id, id);
    assert_eq!(replaced.created_at, first.created_at);
    assert_eq!(replaced.data.row_count, 10);
    assert!(repo.delete(id).await.expect("delete"));
    assert!(!repo.delete(id).await.expect("delete again"));
    let err = repo.get(id).await.expect_err("gone");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

pub async fn datasets_put_in_tx_rolls_back(store: &Store) {
    let id = Uuid::now_v7();
    let outcome: Result<(), StoreError> = store
        .transaction(move |tx| {
            Box::pin(async move {
                tx.put_dataset(id, &sample_dataset("b", "BTC", "1m", 3))
                    .await?;
                Err(StoreError::InvalidArgument {
                    field: "forced",
                    reason: "roll back".into(),
                })
            })
        })
        .await;
    assert!(outcome.is_err());
    assert_eq!(
        store.datasets().find("b", "BTC", "1m").await.expect("find"),
        None
    );
    store
        .transaction(move |tx| {
            Box::pin(async move {
                tx.put_dataset(id, &sample_dataset("b", "BTC", "1m", 3))
                    .await
            })
        })
        .await
        .expect("commit");
    assert_eq!(
        store.datasets().get(id).await.expect("get").data.row_count,
        3
    );
}

pub async fn datasets_pagination_newest_first_and_filtered(store: &Store) {
    let repo = store.datasets();
    let mut ids = Vec::new();
    for i in 0..7u64 {
        let symbol = if i % 2 == 0 { "EVEN" } else { "ODD" };
        let d = repo
            .put(
                Uuid::now_v7(),
                &sample_dataset("s", symbol, &format!("{i}m"), i),
            )
            .await
            .expect("put");
        ids.push(d.id);
    }
    let mut seen = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let p = repo
            .list(&grodt_store::DatasetFilter::default(), &page)
            .await
            .expect("list");
        assert!(p.items.len() <= 3);
        seen.extend(p.items.iter().map(|d| d.id));
        if p.next_page_token.is_empty() {
            break;
        }
        page.page_token = p.next_page_token;
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each once");
    let odd = repo
        .list(
            &grodt_store::DatasetFilter {
                symbol: Some("ODD".into()),
                ..Default::default()
            },
            &PageRequest::first(100),
        )
        .await
        .expect("filtered");
    assert_eq!(odd.items.len(), 3);
    assert!(odd.items.iter().all(|d| d.data.symbol == "ODD"));
    let none = repo
        .list(
            &grodt_store::DatasetFilter {
                source: Some("other".into()),
                ..Default::default()
            },
            &PageRequest::first(100),
        )
        .await
        .expect("filtered");
    assert!(none.items.is_empty());
    let err = repo
        .list(
            &grodt_store::DatasetFilter::default(),
            &PageRequest {
                page_size: 2,
                page_token: "bogus".into(),
            },
        )
        .await
        .expect_err("bad token");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

fn sample_change(symbol: &str, ts_ns: i64, regime: &str) -> grodt_store::NewRegimeChange {
    grodt_store::NewRegimeChange {
        symbol: symbol.into(),
        timeframe: "1d".into(),
        ts_ns,
        regime: regime.into(),
        previous: (ts_ns > 1).then(|| "ranging".to_owned()),
        event_id: Uuid::now_v7(),
        source_event_id: format!("bar-{symbol}-{ts_ns}"),
        decision: json!({"seq": ts_ns, "inputs": {"slope": 0.125}}),
    }
}

pub async fn regimes_state_and_changes_commit_with_the_mark(store: &Store) {
    assert_eq!(
        store.regimes().get_state("SPY", "1d").await.expect("get"),
        None
    );
    // A failing effect leaves neither the state, the change nor the mark.
    let change = sample_change("SPY", 1, "trending_up");
    let c = change.clone();
    let failed: Result<Option<()>, StoreError> = store
        .process_once("regime", "e1", move |tx| {
            Box::pin(async move {
                tx.put_regime_state("SPY", "1d", Some("trending_up"), &json!({"v": 1}))
                    .await?;
                tx.add_regime_change(&c).await?;
                Err(StoreError::InvalidArgument {
                    field: "forced",
                    reason: "roll back".into(),
                })
            })
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(
        store.regimes().get_state("SPY", "1d").await.expect("get"),
        None
    );
    assert!(
        !store
            .processed_events()
            .is_processed("regime", "e1")
            .await
            .expect("is_processed")
    );
    // Committed: all three; a second delivery of the event does nothing.
    for _ in 0..2 {
        let c = change.clone();
        store
            .process_once("regime", "e1", move |tx| {
                Box::pin(async move {
                    tx.put_regime_state("SPY", "1d", Some("trending_up"), &json!({"v": 1}))
                        .await?;
                    tx.add_regime_change(&c).await
                })
            })
            .await
            .expect("commit");
    }
    let state = store
        .regimes()
        .get_state("SPY", "1d")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(state.regime.as_deref(), Some("trending_up"));
    assert_eq!(state.state, json!({"v": 1}));
    let page = store
        .regimes()
        .history(
            &grodt_store::RegimeChangeFilter {
                symbol: "SPY".into(),
                timeframe: "1d".into(),
                ..Default::default()
            },
            &PageRequest::first(10),
        )
        .await
        .expect("history");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].data, change);
    assert_eq!(
        store
            .regimes()
            .change_of_source("bar-SPY-1")
            .await
            .expect("of source")
            .map(|c| c.data),
        Some(change.clone())
    );
    assert_eq!(
        store
            .regimes()
            .change_of_source("other")
            .await
            .expect("of source"),
        None
    );
    // Replacing the state; a warming-up state has no regime.
    store
        .transaction(|tx| {
            Box::pin(async move {
                tx.put_regime_state("SPY", "1d", None, &json!({"v": 2}))
                    .await?;
                tx.put_regime_state("BTC", "1m", None, &json!({"v": 3}))
                    .await
            })
        })
        .await
        .expect("replace");
    let spy = store
        .regimes()
        .get_state("SPY", "1d")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!((spy.regime, spy.state), (None, json!({"v": 2})));
    let all = store.regimes().list_states(None).await.expect("list");
    let keys: Vec<_> = all
        .iter()
        .map(|s| (s.symbol.as_str(), s.timeframe.as_str()))
        .collect();
    assert_eq!(keys, [("BTC", "1m"), ("SPY", "1d")]);
    assert_eq!(
        store
            .regimes()
            .list_states(Some("BTC"))
            .await
            .expect("list")
            .len(),
        1
    );
    // A second change at the same bar time is refused.
    let dup = sample_change("SPY", 1, "ranging");
    let err = store
        .transaction(move |tx| Box::pin(async move { tx.add_regime_change(&dup).await }))
        .await
        .expect_err("duplicate bar time");
    assert_ne!(err.kind(), ErrorKind::NotFound, "{err}");
}

pub async fn regimes_history_pages_by_symbol_and_time(store: &Store) {
    for ts in 1..=9i64 {
        for symbol in ["AAA", "BBB"] {
            let c = sample_change(
                symbol,
                ts * 100,
                if ts % 2 == 0 {
                    "ranging"
                } else {
                    "trending_up"
                },
            );
            store
                .transaction(move |tx| Box::pin(async move { tx.add_regime_change(&c).await }))
                .await
                .expect("add");
        }
    }
    let filter = |from_ns, to_ns| grodt_store::RegimeChangeFilter {
        symbol: "AAA".into(),
        timeframe: "1d".into(),
        from_ns,
        to_ns,
    };
    let walk = |f: grodt_store::RegimeChangeFilter, size: u32| async move {
        let mut seen = Vec::new();
        let mut page = PageRequest::first(size);
        loop {
            let p = store.regimes().history(&f, &page).await.expect("history");
            assert!(p.items.len() <= size as usize);
            seen.extend(p.items.iter().map(|c| c.data.ts_ns));
            if p.next_page_token.is_empty() {
                break;
            }
            page.page_token = p.next_page_token;
        }
        seen
    };
    let all: Vec<i64> = (1..=9).map(|t| t * 100).collect();
    assert_eq!(
        walk(filter(None, None), 2).await,
        all,
        "oldest first, each once"
    );
    assert_eq!(walk(filter(None, None), 100).await, all);
    // from inclusive, to exclusive
    assert_eq!(
        walk(filter(Some(300), Some(700)), 2).await,
        [300, 400, 500, 600]
    );
    assert!(walk(filter(Some(1000), None), 2).await.is_empty());
    let other_tf = grodt_store::RegimeChangeFilter {
        timeframe: "1m".into(),
        ..filter(None, None)
    };
    assert!(walk(other_tf, 5).await.is_empty());
    let err = store
        .regimes()
        .history(
            &filter(None, None),
            &PageRequest {
                page_size: 2,
                page_token: "bogus".into(),
            },
        )
        .await
        .expect_err("bad token");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

pub async fn journal_appends_once_in_order_and_rolls_back(store: &Store) {
    let mut tx = store.begin().await.unwrap();
    let a = tx
        .journal_append("exec", "ev-1", b"in-1", b"out-1")
        .await
        .unwrap();
    let b = tx
        .journal_append("exec", "ev-2", b"in-2", b"")
        .await
        .unwrap();
    // Another consumer may journal the same source.
    let other = tx.journal_append("risk", "ev-1", b"x", b"y").await.unwrap();
    tx.commit().await.unwrap();
    let (a, b) = (a.expect("first append"), b.expect("second append"));
    assert!(b > a, "seq increases in append order: {a} then {b}");
    assert!(other.is_some());

    // A second append of a journaled source writes nothing.
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.journal_append("exec", "ev-1", b"changed", b"changed")
            .await
            .unwrap(),
        None
    );
    tx.commit().await.unwrap();
    let e = store
        .journal()
        .get("exec", "ev-1")
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(
        (e.seq, e.input.as_slice(), e.outputs.as_slice()),
        (a, &b"in-1"[..], &b"out-1"[..])
    );

    // A rolled-back append leaves nothing.
    let mut tx = store.begin().await.unwrap();
    tx.journal_append("exec", "ev-3", b"in-3", b"")
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(store.journal().get("exec", "ev-3").await.unwrap().is_none());

    let all = store.journal().scan("exec", 0, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.source.as_str()).collect::<Vec<_>>(),
        ["ev-1", "ev-2"]
    );
    let after = store.journal().scan("exec", a, 10).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].input, b"in-2");
    assert_eq!(store.journal().scan("exec", 0, 1).await.unwrap().len(), 1);
    assert_eq!(store.journal().count("exec").await.unwrap(), 2);
    assert_eq!(store.journal().count("nobody").await.unwrap(), 0);
}

/// A batch appended in one transaction, in order; a source journaled before
/// is skipped (`None`); the batch look-up finds exactly the journaled ones.
pub async fn journal_batches_append_in_one_commit_and_look_up_at_once(store: &Store) {
    let seqs = store
        .journal_append_many(
            "exec",
            &[("b-1", b"in-1", b"out-1"), ("b-2", b"in-2", b"out-2")],
        )
        .await
        .unwrap();
    let [Some(a), Some(b)] = seqs[..] else {
        panic!("both appended: {seqs:?}")
    };
    assert!(a < b, "in the order given");
    let again = store
        .journal_append_many(
            "exec",
            &[
                ("b-2", b"changed", b""),
                ("b-3", b"in-3", b""),
                ("b-4", b"in-4", b""),
            ],
        )
        .await
        .unwrap();
    assert_eq!(again[0], None, "journaled before: nothing written");
    assert!(again[1].unwrap() > b && again[2].unwrap() > again[1].unwrap());
    // One alone takes the single-statement path.
    let one = store
        .journal_append_many("exec", &[("b-5", b"in-5", b"")])
        .await
        .unwrap();
    assert!(one[0].unwrap() > again[2].unwrap());
    let sources: Vec<String> = ["b-4", "nope", "b-2", "b-1"].map(String::from).to_vec();
    let found = store.journal().get_many("exec", &sources).await.unwrap();
    let names: Vec<&str> = found.iter().map(|e| e.source.as_str()).collect();
    assert_eq!(
        names,
        ["b-1", "b-2", "b-4"],
        "the journaled ones, in seq order"
    );
    assert_eq!(found[1].input, b"in-2", "the first append stands");
    assert!(
        store
            .journal()
            .get_many("risk", &sources)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .journal()
            .get_many("exec", &[])
            .await
            .unwrap()
            .is_empty()
    );
}
