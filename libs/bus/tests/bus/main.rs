//! Runs the shared conformance suite against both backends: the in-process
//! bus, and Redis at GRODT_TEST_REDIS_URL (default redis://127.0.0.1:6379),
//! each Redis test under a key prefix of its own that it deletes afterwards.

mod harness;

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod in_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = crate::harness::InProcessHarness::new();
                    grodt_bus::conformance::$name(&h).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::harness::RedisHarness::run(stringify!($name), |h| async move {
                        grodt_bus::conformance::$name(h.as_ref()).await;
                    })
                    .await;
                }
            )*
        }
    };
}

conformance!(
    ordering_within_stream,
    group_start_positions,
    unacked_entries_are_redelivered,
    dropped_consumer_entries_are_claimed,
    groups_are_independent,
    consumers_are_listed_with_their_idle_time,
    ack_removes_from_pending,
    envelope_round_trips_exactly,
    back_pressure_bounds_the_slowest_group,
    publish_batch_is_ordered_and_all_or_nothing,
    concurrent_consumers_share_without_duplicates,
    blocking_consume_wakes_on_publish,
    rejects_bad_arguments,
    consumer_loop_acks_only_after_success,
    consumer_loop_dead_letters_poison_events,
    renew_keeps_entries_from_being_claimed,
    consumer_loop_renews_long_handlers,
);

mod differential;
mod redis_only;
