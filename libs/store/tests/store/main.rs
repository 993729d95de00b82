//! The store's integration tests: one conformance suite, run against a
//! fresh Postgres database and a fresh SQLite file per test.

mod conformance;
mod helpers;
mod properties;
mod roles;

/// For each named suite function, a Postgres and a SQLite test.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = grodt_store::testing::TestDb::postgres().await;
                    crate::conformance::$name(db.store()).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = grodt_store::testing::TestDb::sqlite().await;
                    crate::conformance::$name(db.store()).await;
                }
            )*
        }
    };
}

both_backends!(
    migrations_are_idempotent,
    ping_and_backend,
    dedupe_first_time_only,
    dedupe_concurrent_marks_one_winner,
    dedupe_purge_forgets_only_older_marks,
    process_once_commits_effect_and_mark_together,
    process_once_rolls_back_effect_and_mark_together,
    explicit_tx_dropped_rolls_back,
    runs_lifecycle,
    runs_bytes_round_trip_exact,
    runs_illegal_transitions_refused,
    runs_concurrent_start_one_winner,
    runs_create_duplicate_refused,
    runs_not_found,
    runs_pagination_stable_and_complete,
    runs_bad_page_token_rejected,
    decimal_round_trip_exact,
    settings_upsert,
    datasets_put_get_replace_delete,
    datasets_put_in_tx_rolls_back,
    datasets_pagination_newest_first_and_filtered,
    regimes_state_and_changes_commit_with_the_mark,
    regimes_history_pages_by_symbol_and_time,
    journal_appends_once_in_order_and_rolls_back,
    journal_batches_append_in_one_commit_and_look_up_at_once,
);

#[tokio::test]
async fn sqlite_in_memory_store_works() {
    let store = grodt_store::Store::connect("sqlite::memory:")
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    conformance::dedupe_first_time_only(&store).await;
    conformance::runs_lifecycle(&store).await;
    conformance::process_once_rolls_back_effect_and_mark_together(&store).await;
    conformance::journal_batches_append_in_one_commit_and_look_up_at_once(&store).await;
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    use grodt_core::error::{Classify, ErrorKind};
    // Bind then drop a listener: nothing accepts on that port afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port();
    let options = grodt_store::StoreOptions {
        acquire_timeout: std::time::Duration::from_secs(2),
        ..Default::default()
    };
    let err = grodt_store::Store::connect_with(
        &format!("postgres://postgres@127.0.0.1:{port}/x"),
        &options,
    )
    .await
    .expect_err("nothing listens there");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[tokio::test]
async fn unsupported_url_is_invalid_argument() {
    use grodt_core::error::{Classify, ErrorKind};
    let err = grodt_store::Store::connect("mysql://root@127.0.0.1/x")
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

/// SQLite upgrades a read lock to a write lock only if no other writer got
/// in first; transactions that read before writing would then fail BUSY at
/// once. `Store::begin` takes the write lock up front, so they queue instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_read_then_write_transactions_queue_instead_of_failing() {
    let db = grodt_store::testing::TestDb::sqlite().await;
    let store = db.store();
    store
        .settings()
        .put("ns", "seed", &serde_json::json!(0))
        .await
        .expect("seed");
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .transaction(move |tx| {
                        Box::pin(async move {
                            let seed = tx.get_setting("ns", "seed").await?;
                            tokio::task::yield_now().await;
                            tx.put_setting("ns", &format!("k{i}"), &seed.value).await
                        })
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        let r: Result<_, grodt_store::StoreError> = t.await.expect("task");
        r.expect("transaction");
    }
    assert_eq!(store.settings().list("ns").await.expect("list").len(), 13);
}
