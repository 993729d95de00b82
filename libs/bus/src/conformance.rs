//! The conformance suite every [`EventBus`] backend must pass. Each test is an
//! async fn over a [`Harness`] that hands out connections to one fresh,
//! isolated namespace (for Redis: a key prefix of its own), all configured with
//! [`back_pressure`] and [`MAX_LEN`]. Backends call every fn in this module
//! from their own test binary; waits poll a condition with a deadline.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use grodt_core::error::{Classify, ErrorKind};
use tokio::time::Instant;

use crate::consumer::{Consumer, ConsumerConfig, Handler, HandlerError};
use crate::{
    BackPressure, BusError, ConsumerName, Delivery, EntryId, Envelope, EventBus, GroupName,
    StartFrom, StreamName,
};

/// Stream capacity the harness must configure (at least twice the backlog limit).
pub const MAX_LEN: u64 = 1_000;

/// Idle threshold after which tests expect entries to be claimable.
const MIN_IDLE: Duration = Duration::from_millis(50);

/// How long any condition may take before a test fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// The back-pressure every harness connection must use.
pub fn back_pressure() -> BackPressure {
    BackPressure {
        max_backlog: 64,
        max_wait: Duration::from_millis(300),
        poll_interval: Duration::from_millis(5),
    }
}

/// Hands out connections to one test's namespace.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A new connection (for Redis, new sockets) to the same namespace, with
    /// [`back_pressure`] and [`MAX_LEN`].
    async fn connect(&self) -> Arc<dyn EventBus>;
}

fn stream(name: &str) -> StreamName {
    StreamName::parse(name).expect("valid stream name")
}
fn group(name: &str) -> GroupName {
    GroupName::parse(name).expect("valid group name")
}
fn consumer(name: &str) -> ConsumerName {
    ConsumerName::parse(name).expect("valid consumer name")
}

fn event(n: u32) -> Envelope {
    Envelope::new(
        "grodt.v1.Test",
        Utc.timestamp_opt(1_790_000_000 + i64::from(n), n)
            .single()
            .expect("valid time"),
        Bytes::from(n.to_be_bytes().to_vec()),
    )
}

async fn publish_all(bus: &dyn EventBus, s: &StreamName, n: u32) -> Vec<(EntryId, Envelope)> {
    let mut out = Vec::new();
    for i in 0..n {
        let e = event(i);
        let id = bus.publish(s, &e).await.expect("publish");
        out.push((id, e));
    }
    out
}

/// Polls `probe` every few milliseconds until it yields a value; panics
/// naming `what` after [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Claims with [`MIN_IDLE`] until `n` entries have been claimed in total.
async fn claim_until(
    bus: &dyn EventBus,
    s: &StreamName,
    g: &GroupName,
    c: &ConsumerName,
    n: usize,
) -> Vec<Delivery> {
    let claimed = Arc::new(Mutex::new(Vec::new()));
    eventually("stale entries to become claimable", || {
        let claimed = Arc::clone(&claimed);
        async move {
            let got = bus
                .claim_stale(s, g, c, MIN_IDLE, 100)
                .await
                .expect("claim_stale");
            let mut all = claimed.lock().expect("lock");
            all.extend(got);
            (all.len() >= n).then_some(())
        }
    })
    .await;
    let mut all = claimed.lock().expect("lock").clone();
    all.sort_by_key(|d| d.entry_id);
    all
}

fn pending_of(infos: &[crate::GroupInfo], g: &str) -> (u64, u64) {
    let info = infos
        .iter()
        .find(|i| i.group == g)
        .unwrap_or_else(|| panic!("group {g} missing from {infos:?}"));
    (info.pending, info.lag)
}

/// Entries come out of a group in the order they were published, with the ids
/// publish returned, across several reads.
pub async fn ordering_within_stream(h: &dyn Harness) {
    let bus = h.connect().await;
    let (s, g, c) = (stream("grodt.orders.v1"), group("risk"), consumer("risk-0"));
    bus.ensure_group(&s, &g, StartFrom::Beginning)
        .await
        .expect("ensure_group");
    let published = publish_all(bus.as_ref(), &s, 20).await;
    assert!(
        published.windows(2).all(|w| w[0].0 < w[1].0),
        "ids must grow"
    );
    let mut seen = Vec::new();
    while seen.len() < published.len() {
        let batch = bus
            .consume(&s, &g, &c, 7, Duration::ZERO)
            .await
            .expect("consume");
        assert!(!batch.is_empty(), "entries missing after {}", seen.len());
        assert!(batch.len() <= 7, "read more than max");
        seen.extend(batch);
    }
    let got: Vec<_> = seen
        .iter()
        .map(|d| (d.entry_id, d.envelope.clone()))
        .collect();
    assert_eq!(got, published);
    assert!(seen.iter().all(|d| d.delivery_count == 1));
    let rest = bus
        .consume(&s, &g, &c, 7, Duration::ZERO)
        .await
        .expect("consume");
    assert!(rest.is_empty(), "nothing new remains");
}

/// A group made with `New` skips what was published before; `Beginning` sees
/// it; ensuring an existing group keeps its position.
pub async fn group_start_positions(h: &dyn Harness) {
    let bus = h.connect().await;
    let s = stream("grodt.bars.v1");
    let c = consumer("c");
    let before = publish_all(bus.as_ref(), &s, 3).await;
    bus.ensure_group(&s, &group("late"), StartFrom::New)
        .await
        .expect("ensure_group");
    bus.ensure_group(&s, &group("all"), StartFrom::Beginning)
        .await
        .expect("ensure_group");
    let after = publish_all(bus.as_ref(), &s, 2).await;
    let late = bus
        .consume(&s, &group("late"), &c, 10, Duration::ZERO)
        .await
        .expect("consume");
    let late: Vec<_> = late.into_iter().map(|d| d.entry_id).collect();
    assert_eq!(late, after.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    let first = bus
        .consume(&s, &group("all"), &c, 2, Duration::ZERO)
        .await
        .expect("consume");
    assert_eq!(first[0].entry_id, before[0].0);
    // Re-ensuring (even asking for the beginning) must not rewind the group.
    bus.ensure_group(&s, &group("all"), StartFrom::Beginning)
        .await
        .expect("ensure_group");
    let next = bus
        .consume(&s, &group("all"), &c, 10, Duration::ZERO)
        .await
        .expect("consume");
    assert_eq!(next.len(), 3);
    assert_eq!(next[0].entry_id, before[2].0);
}

/// Entries consumed but not acked come back through `claim_stale` once idle
/// past `min_idle`, with their delivery count incremented; not before.
pub async fn unacked_entries_are_redelivered(h: &dyn Harness) {
    let bus = h.connect().await;
    let (s, g) = (stream("grodt.fills.v1"), group("execution"));
    bus.ensure_group(&s, &g, StartFrom::Beginning)
        .await
        .expect("ensure_group");
    let published = publish_all(bus.as_ref(), &s, 3).await;
    let taken = bus
        .consume(&s, &g, &consumer("a"), 10, Duration::ZERO)
        .await
        .expect("consume");
    assert_eq!(taken.len(), 3);
    assert_eq!(bus.ack(&s, &g, &[taken[0].entry_id]).await.expect("ack"), 1);
    let early = bus
        .claim_stale(&s, &g, &consumer("b"), Duration::from_secs(60), 10)
        .await
        .expect("claim_stale");
    assert!(
        early.is_empty(),
        "entries claimed before min_idle: {early:?}"
    );
    let claimed = claim_until(bus.as_ref(), &s, &g, &consumer("b"), 2).await;
    assert_eq!(claimed.len(), 2, "only the two unacked entries");
    for (d, (id, e)) in claimed.iter().zip(&published[1..]) {
        assert_eq!((&d.entry_id, &d.envelope), (id, e));
        assert_eq!(d.delivery_count, 2);
    }
    // Claimed twice: the count keeps growing.
    let again = claim_until(bus.as_ref(), &s, &g, &consumer("c"), 2).await;
    assert!(again.iter().all(|d| d.delivery_count == 3), "{again:?}");
    let ids: Vec<_> = again.iter().map(|d| d.entry_id).collect();
    assert_eq!(bus.ack(&s, &g, &ids).await.expect("ack"), 2);
    assert_eq!(
        pending_of(&bus.groups(&s).await.expect("groups"), "execution"),
        (0, 0)
    );
}

/// A consumer that took entries and went away without acking (its connection
/// dropped) loses them to another consumer on another connection.
pub async fn dropped_consumer_entries_are_claimed(h: &dyn Harness) {
    let (s, g) = (stream("grodt.backtest-jobs.v1"), group("backtest-worker"));
    let publisher = h.connect().await;
    publisher
        .ensure_group(&s, &g, StartFrom::Beginning)
        .await
        .expect("ensure_group");
    let published = publish_all(publisher.as_ref(), &s, 5).await;
    let doomed = h.connect().await;
    let task = tokio::spawn({
        let s = s.clone();
        let g = g.clone();
        async move {
            let got = doomed
                .consume(&s, &g, &consumer("worker-a"), 10, Duration::ZERO)
                .await;
            drop(doomed);
            got.expect("consume").len()
        }
    });
    assert_eq!(task.await.expect("worker a"), 5);
    let survivor = h.connect().await;
    let nothing_new = survivor
        .consume(&s, &g, &consumer("worker-b"), 10, Duration::ZERO)
        .await
        .expect("consume");
    assert!(
        nothing_new.is_empty(),
        "entries of a go to b only by claiming"
    );
    let claimed = claim_until(survivor.as_ref(), &s, &g, &consumer("worker-b"), 5).await;
    let got: Vec<_> = claimed
        .iter()
        .map(|d| (d.entry_id, d.envelope.clone()))
        .collect();
    assert_eq!(got, published);
    assert!(claimed.iter().all(|d| d.delivery_count == 2));
    let ids: Vec<_> = claimed.iter().map(|d| d.entry_id).collect();
    assert_eq!(survivor.ack(&s, &g, &ids).await.expect("ack"), 5);
}

/// Every group sees every entry; acking in one leaves the other untouched.
pub async fn groups_are_independent(h: &dyn Harness) {
    let bus = h.connect().await;
    let s = stream("grodt.bars.v1");
    let groups = [group("regime"), group("strategy")];
    for g in &groups {
        bus.ensure_group(&s, g, StartFrom::Beginning)
            .await
            .expect("ensure_group");
    }
    let published = publish_all(bus.as_ref(), &s, 10).await;
    let all_ids: Vec<_> = published.iter().map(|(id, _)| *id).collect();
    let mut taken = HashMap::new();
    for g in &groups {
        let got = bus
            .consume(&s, g, &consumer("x"), 100, Duration::ZERO)
            .await
            .expect("consume");
        assert_eq!(
            got.iter().map(|d| d.entry_id).collect::<Vec<_>>(),
            all_ids,
            "group {g}"
        );
        taken.insert(g.to_string(), got);
    }
    assert_eq!(bus.ack(&s, &groups[0], &all_ids).await.expect("ack"), 10);
    let infos = bus.groups(&s).await.expect("groups");
    assert_eq!(infos.len(), 2);
    assert_eq!(pending_of(&infos, "regime"), (0, 0));
    assert_eq!(pending_of(&infos, "strategy"), (10, 0));
}

/// Acked entries leave the pending list and are never claimed; pending and
/// lag count what they should.
/// Consumers are listed per group with the time since they last read: a
/// reader that keeps reading stays fresh, one that stopped ages; an unknown
/// group or stream lists none.
pub async fn consumers_are_listed_with_their_idle_time(h: &dyn Harness) {
    let bus = h.connect().await;
    let s = stream("grodt.backtest-jobs.v1");
    let (g, other) = (group("backtest-worker"), group("auditor"));
    assert!(bus.consumers(&s, &g).await.expect("no stream").is_empty());
    bus.ensure_group(&s, &g, StartFrom::Beginning)
        .await
        .expect("ensure_group");
    bus.ensure_group(&s, &other, StartFrom::Beginning)
        .await
        .expect("ensure_group");
    assert!(bus.consumers(&s, &g).await.expect("no consumer").is_empty());
    publish_all(bus.as_ref(), &s, 2).await;
    for c in ["w-old", "w-live"] {
        bus.consume(&s, &g, &consumer(c), 1, Duration::ZERO)
            .await
            .expect("consume");
    }
    // Longer than the Redis bus's stamping interval (1 s).
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    // Only w-live reads again (an empty read counts too).
    bus.consume(&s, &g, &consumer("w-live"), 1, Duration::ZERO)
        .await
        .expect("consume");
    let listed = bus.consumers(&s, &g).await.expect("consumers");
    let idle = |name: &str| {
        listed
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name} in {listed:?}"))
            .idle
    };
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(idle("w-old") >= Duration::from_millis(1_200), "{listed:?}");
    assert!(idle("w-live") < Duration::from_millis(1_000), "{listed:?}");
    assert!(bus.consumers(&s, &other).await.expect("other").is_empty());
    assert!(
        bus.consumers(&s, &group("nobody"))
            .await
            .expect("unknown group")
            .is_empty()
    );
}

pub async fn ack_removes_from_pending(h: &dyn Harness) {
    let bus = h.connect().await;
    let (s, g, c) = (stream("grodt.regimes.v1"), group("strategy"), consumer("s"));
    bus.ensure_group(&s, &g, StartFrom::Beginning)
        .await
        .expect("ensure_group");
    publish_all(bus.as_ref(), &s, 6).await;
    assert_eq!(
        pending_of(&bus.groups(&s).await.expect("groups"), "strategy"),
        (0, 6)
    );
    let got = bus
        .consume(&s, &g, &c, 4, Duration::ZERO)
        .await
        .expect("consume");
    assert_eq!(
        pending_of(&bus.groups(&s).await.expect("groups"), "strategy"),
        (4, 2)
    );
    let acked = [got[0].entry_id, got[2].entry_id];
    assert_eq!(bus.ack(&s, &g, &acked).await.expect("ack"), 2);
    assert_eq!(
        bus.ack(&s, &g, &acked).await.expect("ack twice"),
        0,
        "second ack is a no-op"
    );
    assert_eq!(
        pending_of(&bus.groups(&s).await.expect("groups"), "strategy"),
        (2, 2)
    );
    let claimed = claim_until(bus.as_ref(), &s, &g, &consumer("t"), 2).await;
    let ids: BTreeSet<_> = claimed.iter().map(|d| d.entry_id).collect();
    assert_eq!(ids, BTreeSet::from([got[1].entry_id, got[3].entry_id]));
}

/// Trace context, timestamps and arbitrary payload bytes come back exactly.
pub async fn envelope_round_trips_exactly(h: &dyn Harness) {
    let bus = h.connect().await;
    let (s, g, c) = (stream("grodt.risk-events.v1"), group("ops"), consumer("o"));
    bus.ensure_group(&s, &g, StartFrom::Beginning)
        .await
        .expect("ensure_group");
    let all_bytes: Vec<u8> = (0..=255u8).rev().collect();
    let sent = vec![
        event(1).with_trace(
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".to_owned()),
        ),
        Envelope {
            payload: Bytes::from(all_bytes),
            ..event(2).with_trace(
                Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00".to_owned()),
                None,
            )
        },
        Envelope {
            payload: Bytes::new(),
            occurred_at: Utc
                .timestamp_opt(1_800_000_000, 123_456_789)
                .single()
                .expect("time"),
            ..event(3)
        },
    ];
    for e in &sent {
        bus.publish(&s, e).await.expect("publish");
    }
    let got = bus
        .consume(&s, &g, &c, 10, Duration::ZERO)
        .await
        .expect("consume");
    let got: Vec<_> = got.into_iter().map(|d| d.envelope).collect();
    assert_eq!(got, sent);
}

/// `err` is the back-pressure refusal, after the whole `max_wait` since
/// `started`.
fn refused_after_waiting(err: &BusError, started: Instant) {
    assert_eq!(err.kind(), ErrorKind::ResourceExhausted, "{err}");
    assert!(
        started.elapsed() >= back_pressure().max_wait,
        "gave up early"
    );
}

/// Publish waits while a group's backlog is at the limit, fails with
/// ResourceExhausted after `max_wait`, is not relieved by reading without
/// acking, and goes through as soon as acks make room.
pub async fn back_pressure_bounds_the_slowest_group(h: &dyn Harness) {
    let bus = h.connect().await;
    let limit = back_pressure().max_backlog;
    let s = stream("grodt.backtest-jobs.v1");
    let (slow, fast) = (group("slow"), group("fast"));
    for g in [&slow, &fast] {
        bus.ensure_group(&s, g, StartFrom::Beginning)
            .await
            .expect("ensure_group");
    }
    publish_all(bus.as_ref(), &s, u32::try_from(limit).expect("small")).await;
    let fast_got = bus
        .consume(&s, &fast, &consumer("f"), 1000, Duration::ZERO)
        .await
        .expect("consume");
    let ids: Vec<_> = fast_got.iter().map(|d| d.entry_id).collect();
    bus.ack(&s, &fast, &ids).await.expect("ack");

    let started = Instant::now();
    let err = bus
        .publish(&s, &event(1000))
        .await
        .expect_err("publish over the limit");
    refused_after_waiting(&err, started);
    match &err {
        BusError::BackPressure {
            group,
            backlog,
            limit: l,
            ..
        } => {
            assert_eq!((group.as_str(), *backlog, *l), ("slow", limit, limit));
        }
        other => panic!("expected BackPressure, got {other:?}"),
    }
    let read = bus
        .consume(&s, &slow, &consumer("s"), 10, Duration::ZERO)
        .await
        .expect("consume");
    assert_eq!(read.len(), 10);
    let err = bus
        .publish(&s, &event(1001))
        .await
        .expect_err("reading alone is no relief");
    assert_eq!(err.kind(), ErrorKind::ResourceExhausted);

    let waiting = tokio::spawn({
        let bus = Arc::clone(&bus);
        let s = s.clone();
        async move { bus.publish(&s, &event(1002)).await }
    });
    let ids: Vec<_> = read.iter().map(|d| d.entry_id).collect();
    bus.ack(&s, &slow, &ids).await.expect("ack");
    waiting
        .await
        .expect("publisher task")
        .expect("publish after acks made room");

    // Checking and appending are one step: racing publishers fill a group
    // exactly to the limit, never past it.
    let raced = stream("grodt.raced.v1");
    bus.ensure_group(&raced, &slow, StartFrom::Beginning)
        .await
        .expect("ensure_group");
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let bus = Arc::clone(&bus);
            let raced = raced.clone();
            tokio::spawn(async move {
                let mut admitted = 0u64;
                while bus.publish(&raced, &event(1)).await.is_ok() {
                    admitted += 1;
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for r in racers {
        admitted += r.await.expect("racer");
    }
    assert_eq!(admitted, limit, "racing publishers overshot the limit");
    let infos = bus.groups(&raced).await.expect("groups");
    assert_eq!(infos[0].backlog(), limit);

    // A stream nobody consumes has no back-pressure.
    let free = stream("grodt.unconsumed.v1");
    publish_all(
        bus.as_ref(),
        &free,
        u32::try_from(limit + 5).expect("small"),
    )
    .await;
}

/// A batch lands in order on its streams with the ids it returned; under
/// back-pressure it is admitted whole or not at all (a stream that gets `n`
/// events needs room for `n`), and a batch that could never fit is refused.
pub async fn publish_batch_is_ordered_and_all_or_nothing(h: &dyn Harness) {
    let bus = h.connect().await;
    let limit = back_pressure().max_backlog;
    let (a, b, g) = (
        stream("grodt.fills.v1"),
        stream("grodt.orders.v1"),
        group("g"),
    );
    for s in [&a, &b] {
        bus.ensure_group(s, &g, StartFrom::Beginning)
            .await
            .expect("ensure_group");
    }
    assert!(
        bus.publish_batch(&[])
            .await
            .expect("empty batch")
            .is_empty()
    );
    let batch = vec![
        (a.clone(), event(0)),
        (b.clone(), event(1)),
        (a.clone(), event(2)),
    ];
    let ids = bus.publish_batch(&batch).await.expect("publish_batch");
    assert_eq!(ids.len(), 3);
    assert!(ids[0] < ids[2], "ids grow within a stream");
    let got_a = bus
        .consume(&a, &g, &consumer("c"), 10, Duration::ZERO)
        .await
        .expect("consume");
    let got_a: Vec<_> = got_a
        .into_iter()
        .map(|d| (d.entry_id, d.envelope))
        .collect();
    assert_eq!(
        got_a,
        vec![(ids[0], batch[0].1.clone()), (ids[2], batch[2].1.clone())]
    );
    let got_b = bus
        .consume(&b, &g, &consumer("c"), 10, Duration::ZERO)
        .await
        .expect("consume");
    let got_b: Vec<_> = got_b
        .into_iter()
        .map(|d| (d.entry_id, d.envelope))
        .collect();
    assert_eq!(got_b, vec![(ids[1], batch[1].1.clone())]);

    // `b` has room for one more event (its backlog is limit - 1): a batch
    // with two for it waits, fails naming it, and appends nothing to `a`.
    publish_all(bus.as_ref(), &b, u32::try_from(limit - 2).expect("small")).await;
    let backlog_a = bus.groups(&a).await.expect("groups")[0].backlog();
    let started = Instant::now();
    let err = bus
        .publish_batch(&[
            (a.clone(), event(10)),
            (b.clone(), event(11)),
            (b.clone(), event(12)),
        ])
        .await
        .expect_err("two events where one fits");
    refused_after_waiting(&err, started);
    match &err {
        BusError::BackPressure {
            stream,
            group,
            backlog,
            ..
        } => assert_eq!(
            (stream.as_str(), group.as_str(), *backlog),
            (b.as_str(), "g", limit - 1)
        ),
        other => panic!("expected BackPressure, got {other:?}"),
    }
    assert_eq!(
        bus.groups(&a).await.expect("groups")[0].backlog(),
        backlog_a,
        "nothing of a refused batch is appended"
    );
    bus.publish_batch(&[(a.clone(), event(13)), (b.clone(), event(14))])
        .await
        .expect("one event for b fits");
    assert_eq!(bus.groups(&b).await.expect("groups")[0].backlog(), limit);

    let too_many: Vec<_> = (0..=limit)
        .map(|i| (a.clone(), event(u32::try_from(i).expect("small"))))
        .collect();
    let err = bus
        .publish_batch(&too_many)
        .await
        .expect_err("more events for one stream than the limit");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("items"), "{err}");
}

/// Consumers of one group running concurrently never both get the same new
/// entry, and together they get all of them, while publishing goes on.
pub async fn concurrent_consumers_share_without_duplicates(h: &dyn Harness) {
    const N: usize = 150;
    let (s, g) = (stream("grodt.backtest-jobs.v1"), group("backtest-worker"));
    let publisher = h.connect().await;
    publisher
        .ensure_group(&s, &g, StartFrom::Beginning)
        .await
        .expect("ensure_group");
    let seen: Arc<Mutex<Vec<(String, EntryId)>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..3 {
        let bus = h.connect().await;
        let (s, g, seen) = (s.clone(), g.clone(), Arc::clone(&seen));
        workers.push(tokio::spawn(async move {
            let me = consumer(&format!("worker-{w}"));
            loop {
                if seen.lock().expect("lock").len() >= N {
                    return;
                }
                let got = bus
                    .consume(&s, &g, &me, 4, Duration::from_millis(20))
                    .await
                    .expect("consume");
                let ids: Vec<_> = got.iter().map(|d| d.entry_id).collect();
                seen.lock()
                    .expect("lock")
                    .extend(ids.iter().map(|id| (me.to_string(), *id)));
                bus.ack(&s, &g, &ids).await.expect("ack");
            }
        }));
    }
    let published = publish_all(publisher.as_ref(), &s, u32::try_from(N).expect("small")).await;
    for w in workers {
        tokio::time::timeout(PATIENCE, w)
            .await
            .expect("workers finish")
            .expect("worker");
    }
    let seen = seen.lock().expect("lock").clone();
    let unique: BTreeSet<_> = seen.iter().map(|(_, id)| *id).collect();
    assert_eq!(seen.len(), unique.len(), "an entry went to two consumers");
    assert_eq!(unique, published.iter().map(|(id, _)| *id).collect());
}

/// A blocked read returns as soon as an entry arrives, and an idle one after
/// about its block time with nothing.
pub async fn blocking_consume_wakes_on_publish(h: &dyn Harness) {
    let bus = h.connect().await;
    let (s, g) = (stream("grodt.fills.v1"), group("strategy"));
    bus.ensure_group(&s, &g, StartFrom::New)
        .await
        .expect("ensure_group");
    let started = Instant::now();
    let idle = bus
        .consume(&s, &g, &consumer("c"), 5, Duration::from_millis(100))
        .await
        .expect("consume");
    assert!(idle.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(90),
        "returned before the block time"
    );
    let reader = tokio::spawn({
        let bus = h.connect().await;
        let (s, g) = (s.clone(), g.clone());
        async move {
            let started = Instant::now();
            let got = bus
                .consume(&s, &g, &consumer("c"), 5, Duration::from_secs(20))
                .await;
            (got.expect("consume"), started.elapsed())
        }
    });
    // Whether this lands before or while the reader blocks, the reader must
    // get it well before its 20 s timeout.
    let sent = bus.publish(&s, &event(7)).await.expect("publish");
    let (got, waited) = reader.await.expect("reader");
    assert!(!got.is_empty());
    assert_eq!(got[0].entry_id, sent);
    assert!(waited < Duration::from_secs(20), "woke only at its timeout");
}

/// Bad arguments are rejected with errors that name them; a missing group is
/// a failed precondition.
pub async fn rejects_bad_arguments(h: &dyn Harness) {
    let bus = h.connect().await;
    let (s, g, c) = (stream("grodt.orders.v1"), group("execution"), consumer("e"));
    let err = bus
        .consume(&s, &g, &c, 1, Duration::ZERO)
        .await
        .expect_err("no group yet");
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("execution"), "{err}");
    let err = bus
        .claim_stale(&s, &g, &c, MIN_IDLE, 1)
        .await
        .expect_err("no group yet");
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition, "{err}");
    bus.ensure_group(&s, &g, StartFrom::Beginning)
        .await
        .expect("ensure_group");
    let err = bus
        .consume(&s, &g, &c, 0, Duration::ZERO)
        .await
        .expect_err("max 0");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("max"), "{err}");
    let err = bus
        .consume(&s, &g, &c, 1, Duration::from_secs(3600))
        .await
        .expect_err("block 1h");
    assert!(err.to_string().contains("block"), "{err}");
    let err = bus
        .publish(&s, &event(1).with_trace(None, Some(String::new())))
        .await
        .expect_err("empty tracestate");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("tracestate"), "{err}");
    assert!(
        bus.groups(&stream("grodt.nothing.v1"))
            .await
            .expect("groups")
            .is_empty()
    );
}

/// Fails the first delivery of every event and records successes, keyed by
/// event id the way a real handler deduplicates.
struct FlakyHandler {
    attempts: Mutex<HashMap<uuid::Uuid, u64>>,
    done: Mutex<Vec<(uuid::Uuid, u64)>>,
}

#[async_trait]
impl Handler for FlakyHandler {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let id = delivery.envelope.event_id;
        let attempt = {
            let mut attempts = self.attempts.lock().expect("lock");
            let a = attempts.entry(id).or_insert(0);
            *a += 1;
            *a
        };
        if attempt == 1 {
            return Err(format!("first attempt at {id} fails").into());
        }
        self.done
            .lock()
            .expect("lock")
            .push((id, delivery.delivery_count));
        Ok(())
    }
}

/// The consumer loop acks only what the handler finished: failed entries stay
/// pending, are claimed again after `min_idle` and acked once they succeed;
/// shutdown ends the loop.
pub async fn consumer_loop_acks_only_after_success(h: &dyn Harness) {
    let bus = h.connect().await;
    let (s, g) = (stream("grodt.orders.v1"), group("execution"));
    let handler = Arc::new(FlakyHandler {
        attempts: Mutex::default(),
        done: Mutex::default(),
    });
    let mut config = ConsumerConfig::new(s.clone(), g.clone(), consumer("exec-0"));
    config.block = Duration::from_millis(20);
    config.min_idle = MIN_IDLE;
    config.claim_every = Duration::from_millis(20);
    config.batch = 4;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Consumer::new(Arc::clone(&bus), handler.clone(), config);
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    // The loop creates its group from the beginning, so publishing before
    // it exists loses nothing.
    let published = publish_all(bus.as_ref(), &s, 10).await;
    eventually("every event to be handled", || {
        let done = handler.done.lock().expect("lock").len();
        async move { (done >= 10).then_some(()) }
    })
    .await;
    eventually("the pending list to drain", || {
        let bus = Arc::clone(&bus);
        let s = s.clone();
        async move {
            (pending_of(&bus.groups(&s).await.expect("groups"), "execution") == (0, 0))
                .then_some(())
        }
    })
    .await;
    let _ = stop.send(());
    tokio::time::timeout(PATIENCE, running)
        .await
        .expect("loop stops on shutdown")
        .expect("consumer task")
        .expect("consumer loop");
    let done = handler.done.lock().expect("lock").clone();
    let ids: BTreeSet<_> = done.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, published.iter().map(|(_, e)| e.event_id).collect());
    assert_eq!(done.len(), 10, "acked entries are not delivered again");
    assert!(
        done.iter().all(|(_, count)| *count >= 2),
        "successes came from redelivery"
    );
}

/// Fails every delivery of events of type `grodt.v1.Poison`.
struct PoisonHandler {
    poison_attempts: Mutex<u64>,
    done: Mutex<Vec<uuid::Uuid>>,
}

#[async_trait]
impl Handler for PoisonHandler {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        if delivery.envelope.event_type == "grodt.v1.Poison" {
            *self.poison_attempts.lock().expect("lock") += 1;
            return Err("cannot handle this event".into());
        }
        self.done
            .lock()
            .expect("lock")
            .push(delivery.envelope.event_id);
        Ok(())
    }
}

/// With `max_deliveries`, an event the handler always fails is tried that
/// many times, then moved unchanged to the dead-letter stream and acked,
/// while the events around it are handled normally.
pub async fn consumer_loop_dead_letters_poison_events(h: &dyn Harness) {
    let bus = h.connect().await;
    let (s, g) = (stream("grodt.order-intents.v1"), group("risk"));
    let handler = Arc::new(PoisonHandler {
        poison_attempts: Mutex::default(),
        done: Mutex::default(),
    });
    let mut config = ConsumerConfig::new(s.clone(), g.clone(), consumer("risk-0"));
    config.block = Duration::from_millis(20);
    config.min_idle = MIN_IDLE;
    config.claim_every = Duration::from_millis(20);
    config.max_deliveries = Some(2);
    let dead = s.dead_letter();
    let inspector = group("inspector");
    bus.ensure_group(&dead, &inspector, StartFrom::Beginning)
        .await
        .expect("ensure_group");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(
        Consumer::new(Arc::clone(&bus), handler.clone(), config).run(async {
            let _ = stopped.await;
        }),
    );
    let good = [event(1), event(2)];
    let poison = Envelope {
        event_type: "grodt.v1.Poison".to_owned(),
        ..event(3)
    };
    bus.publish(&s, &good[0]).await.expect("publish");
    bus.publish(&s, &poison).await.expect("publish");
    bus.publish(&s, &good[1]).await.expect("publish");
    let moved = eventually("the poison event to reach the dead-letter stream", || {
        let bus = Arc::clone(&bus);
        let (dead, inspector) = (dead.clone(), inspector.clone());
        async move {
            let got = bus
                .consume(&dead, &inspector, &consumer("i"), 10, Duration::ZERO)
                .await
                .expect("consume dead letters");
            (!got.is_empty()).then_some(got)
        }
    })
    .await;
    eventually("the pending list to drain", || {
        let bus = Arc::clone(&bus);
        let s = s.clone();
        async move {
            (pending_of(&bus.groups(&s).await.expect("groups"), "risk") == (0, 0)).then_some(())
        }
    })
    .await;
    let _ = stop.send(());
    tokio::time::timeout(PATIENCE, running)
        .await
        .expect("loop stops on shutdown")
        .expect("consumer task")
        .expect("consumer loop");
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].envelope, poison, "dead-lettered unchanged");
    assert_eq!(*handler.poison_attempts.lock().expect("lock"), 2);
    let mut done = handler.done.lock().expect("lock").clone();
    done.sort();
    let mut expected: Vec<_> = good.iter().map(|e| e.event_id).collect();
    expected.sort();
    assert_eq!(done, expected);
}

/// `renew` keeps entries a live consumer is working on from being claimed,
/// without counting a delivery; once renewals stop they are claimable again
/// after the idle time. Acked ids are not renewed.
pub async fn renew_keeps_entries_from_being_claimed(h: &dyn Harness) {
    let bus = h.connect().await;
    let (s, g) = (stream("grodt.backtest-jobs.v1"), group("backtest-worker"));
    bus.ensure_group(&s, &g, StartFrom::Beginning)
        .await
        .expect("ensure_group");
    publish_all(bus.as_ref(), &s, 3).await;
    let got = bus
        .consume(&s, &g, &consumer("worker-a"), 10, Duration::ZERO)
        .await
        .expect("consume");
    let ids: Vec<_> = got.iter().map(|d| d.entry_id).collect();
    assert_eq!(ids.len(), 3);
    // Renew for six idle periods; a thief looking for stale entries meanwhile finds none.
    let until = Instant::now() + MIN_IDLE * 6;
    while Instant::now() < until {
        let renewed = bus
            .renew(&s, &g, &consumer("worker-a"), &ids)
            .await
            .expect("renew");
        assert_eq!(renewed, 3);
        let stolen = bus
            .claim_stale(&s, &g, &consumer("thief"), MIN_IDLE * 4, 10)
            .await
            .expect("claim_stale");
        assert!(
            stolen.is_empty(),
            "renewed entries were claimed: {stolen:?}"
        );
        tokio::time::sleep(MIN_IDLE / 5).await;
    }
    assert_eq!(bus.ack(&s, &g, &ids[..1]).await.expect("ack"), 1);
    assert_eq!(
        bus.renew(&s, &g, &consumer("worker-a"), &ids)
            .await
            .expect("renew"),
        2,
        "an acked entry is not renewed"
    );
    // Renewals stop (the worker died): the rest is claimed, as the second delivery.
    let claimed = claim_until(bus.as_ref(), &s, &g, &consumer("thief"), 2).await;
    assert_eq!(
        claimed.iter().map(|d| d.entry_id).collect::<Vec<_>>(),
        ids[1..]
    );
    assert!(claimed.iter().all(|d| d.delivery_count == 2));
}

/// Records deliveries and takes its time over each.
struct SlowHandler {
    busy: Duration,
    done: Mutex<Vec<(uuid::Uuid, u64)>>,
}

#[async_trait]
impl Handler for SlowHandler {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        tokio::time::sleep(self.busy).await;
        self.done
            .lock()
            .expect("lock")
            .push((delivery.envelope.event_id, delivery.delivery_count));
        Ok(())
    }
}

/// With `renew_every`, a consumer loop keeps the whole batch it is working on
/// even when each handler takes several times `min_idle`: nothing is claimed
/// by another consumer and every event is handled once, on its first delivery.
pub async fn consumer_loop_renews_long_handlers(h: &dyn Harness) {
    let bus = h.connect().await;
    let (s, g) = (stream("grodt.backtest-jobs.v1"), group("backtest-worker"));
    let min_idle = Duration::from_millis(400);
    let handler = Arc::new(SlowHandler {
        busy: min_idle * 3,
        done: Mutex::default(),
    });
    let mut config = ConsumerConfig::new(s.clone(), g.clone(), consumer("worker-0"));
    config.block = Duration::from_millis(20);
    config.min_idle = min_idle;
    config.claim_every = Duration::from_millis(50);
    config.renew_every = Some(min_idle / 8);
    config.batch = 2;
    bus.ensure_group(&s, &g, StartFrom::Beginning)
        .await
        .expect("ensure_group");
    let published = publish_all(bus.as_ref(), &s, 2).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(
        Consumer::new(Arc::clone(&bus), handler.clone(), config).run(async {
            let _ = stopped.await;
        }),
    );
    let deadline = Instant::now() + PATIENCE;
    while handler.done.lock().expect("lock").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the handler"
        );
        let stolen = bus
            .claim_stale(&s, &g, &consumer("thief"), min_idle, 10)
            .await
            .expect("claim_stale");
        assert!(
            stolen.is_empty(),
            "a live consumer's entry was claimed: {stolen:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = stop.send(());
    tokio::time::timeout(PATIENCE, running)
        .await
        .expect("loop stops on shutdown")
        .expect("consumer task")
        .expect("consumer loop");
    let done = handler.done.lock().expect("lock").clone();
    let want: Vec<_> = published.iter().map(|(_, e)| (e.event_id, 1)).collect();
    assert_eq!(done, want, "each event handled once, on its first delivery");
}
