//! What only the Redis backend has: key prefixes, trimming, dead-lettering of
//! foreign entries, config checks and connection failures.

use std::time::Duration;

use grodt_bus::{
    BusError, ConsumerName, Envelope, EventBus, GroupName, RedisBusConfig, StartFrom, StreamName,
};
use grodt_core::error::{Classify, ErrorKind};

use crate::harness::{connect, redis_config, redis_url};

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis (GRODT_TEST_REDIS_URL) is unreachable")
}

fn envelope() -> Envelope {
    Envelope::new("grodt.v1.Test", chrono::Utc::now(), &b"x"[..])
}

#[tokio::test]
async fn keys_carry_the_prefix_and_streams_are_trimmed() {
    let config = redis_config("trim");
    let prefix = config.key_prefix.clone();
    let bus = connect(config).await;
    let s = StreamName::parse("grodt.bars.v1").unwrap();
    for _ in 0..1_500 {
        bus.publish(&s, &envelope()).await.unwrap();
    }
    let mut conn = raw().await;
    let len: u64 = redis::cmd("XLEN")
        .arg(format!("{prefix}grodt.bars.v1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    bus.delete_all_keys().await.unwrap();
    // MAXLEN ~ keeps at least max_len and trims whole nodes (100 entries).
    assert!((1_000..1_200).contains(&len), "stream length {len}");
    let left: u64 = redis::cmd("EXISTS")
        .arg(format!("{prefix}grodt.bars.v1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "cleanup removes the prefix's keys");
}

#[tokio::test]
async fn undecodable_entries_are_dead_lettered_and_acked() {
    let config = redis_config("dead-letter");
    let prefix = config.key_prefix.clone();
    let bus = connect(config).await;
    let (s, g, c) = (
        StreamName::parse("grodt.fills.v1").unwrap(),
        GroupName::parse("execution").unwrap(),
        ConsumerName::parse("e").unwrap(),
    );
    bus.ensure_group(&s, &g, StartFrom::Beginning)
        .await
        .unwrap();
    let mut conn = raw().await;
    let _: String = redis::cmd("XADD")
        .arg(format!("{prefix}grodt.fills.v1"))
        .arg("*")
        .arg("event_id")
        .arg("not-a-uuid")
        .arg("payload")
        .arg("?")
        .query_async(&mut conn)
        .await
        .unwrap();
    let good = envelope();
    bus.publish(&s, &good).await.unwrap();
    let got = bus.consume(&s, &g, &c, 10, Duration::ZERO).await.unwrap();
    let dead: Vec<redis::Value> = redis::cmd("XRANGE")
        .arg(format!("{prefix}grodt.fills.v1.dead-letter"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let groups = bus.groups(&s).await.unwrap();
    bus.delete_all_keys().await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].envelope, good);
    assert_eq!(dead.len(), 1, "the bad entry is kept for inspection");
    assert_eq!(groups[0].pending, 1, "only the good entry waits for an ack");
}

#[tokio::test]
async fn config_is_checked_before_connecting() {
    let mut config = RedisBusConfig::new(redis_url(), "p:");
    config.max_len = config.back_pressure.max_backlog;
    let err = grodt_bus::RedisBus::connect(config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("max_len"), "{err}");
    let err = grodt_bus::RedisBus::connect(RedisBusConfig::new(redis_url(), "a b"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("key_prefix"), "{err}");
    let err = grodt_bus::RedisBus::connect(RedisBusConfig::new("http://x", "p:"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("url"), "{err}");
}

#[tokio::test]
async fn unreachable_redis_is_unavailable() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = RedisBusConfig::new(format!("redis://127.0.0.1:{port}"), "p:");
    config.response_timeout = Duration::from_millis(200);
    let err = grodt_bus::RedisBus::connect(config).await.unwrap_err();
    assert!(matches!(err, BusError::Unavailable { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn unknown_lag_counts_as_the_stream_length() {
    let mut config = redis_config("nil-lag");
    let prefix = config.key_prefix.clone();
    config.back_pressure.max_backlog = 2;
    config.back_pressure.max_wait = Duration::from_millis(50);
    config.max_len = 4;
    let bus = connect(config).await;
    let (s, g) = (
        StreamName::parse("grodt.bars.v1").unwrap(),
        GroupName::parse("regime").unwrap(),
    );
    let mut conn = raw().await;
    let key = format!("{prefix}grodt.bars.v1");
    for id in ["1-0", "2-0", "3-0"] {
        let _: String = redis::cmd("XADD")
            .arg(&key)
            .arg(id)
            .arg("f")
            .arg("v")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    bus.ensure_group(&s, &g, StartFrom::Beginning)
        .await
        .unwrap();
    // Deleting from the middle leaves Redis unable to compute the lag.
    let _: u64 = redis::cmd("XDEL")
        .arg(&key)
        .arg("2-0")
        .query_async(&mut conn)
        .await
        .unwrap();
    let groups = bus.groups(&s).await;
    let published = bus.publish(&s, &envelope()).await;
    bus.delete_all_keys().await.unwrap();
    assert_eq!(groups.unwrap()[0].lag, 2, "the stream length stands in");
    match published {
        Err(BusError::BackPressure { backlog, .. }) => assert_eq!(backlog, 2),
        other => panic!("expected back-pressure, got {other:?}"),
    }
}

#[tokio::test]
async fn publish_reloads_its_script_after_a_flush() {
    let bus = connect(redis_config("script-flush")).await;
    let s = StreamName::parse("grodt.bars.v1").unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw().await)
        .await
        .unwrap();
    let published = bus.publish(&s, &envelope()).await;
    bus.delete_all_keys().await.unwrap();
    published.expect("publish after SCRIPT FLUSH");
}

/// The services' ACL rules (deploy/redis/acl-rules, under which the whole
/// Redis conformance suite runs) really narrow: what the bus does works, a
/// command outside the list and a key outside the prefix are refused.
#[tokio::test]
async fn the_services_acl_allows_the_bus_and_refuses_the_rest() {
    let config = redis_config("acl");
    let prefix = config.key_prefix.clone();
    let mut admin = crate::harness::admin().await;
    let (user, password) = crate::harness::narrowed_user(&mut admin, &prefix).await;
    let url = redis_url().replacen("redis://", &format!("redis://{user}:{password}@"), 1);
    let mut narrowed = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("the narrowed user logs in");
    let pong: String = redis::cmd("PING").query_async(&mut narrowed).await.unwrap();
    assert_eq!(pong, "PONG");
    let mut bus_config = config.clone();
    bus_config.url = url.clone();
    let bus = connect(bus_config).await;
    let s = StreamName::parse("grodt.bars.v1").unwrap();
    bus.publish(&s, &envelope()).await.expect("publish allowed");
    for (what, cmd) in [
        ("KEYS", redis::cmd("KEYS").arg("*").clone()),
        ("FLUSHALL", redis::cmd("FLUSHALL").clone()),
        (
            "CONFIG GET",
            redis::cmd("CONFIG").arg("GET").arg("*").clone(),
        ),
        ("DEL", redis::cmd("DEL").arg(format!("{prefix}x")).clone()),
        (
            "XADD outside the prefix",
            redis::cmd("XADD")
                .arg("other:grodt.bars.v1")
                .arg("*")
                .arg("f")
                .arg("v")
                .clone(),
        ),
    ] {
        let refused: Result<redis::Value, _> = cmd.query_async(&mut narrowed).await;
        let e = refused.expect_err(what);
        assert!(
            e.to_string().contains("NOPERM") || e.code() == Some("NOPERM"),
            "{what}: {e}"
        );
    }
    let cleaner = connect(config).await;
    cleaner.delete_all_keys().await.expect("delete test keys");
    let _: i64 = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .expect("ACL DELUSER");
}
