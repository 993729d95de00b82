//! The two backends side by side: random sequences of publish / consume / ack
//! run against the in-process bus and Redis must give the same deliveries,
//! ack counts, pending counts and lags.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use grodt_bus::{
    ConsumerName, EntryId, Envelope, EventBus, GroupName, InProcessBus, StartFrom, StreamName,
    conformance,
};
use proptest::prelude::*;
use uuid::Uuid;

use crate::harness::{connect, redis_config};

#[derive(Debug, Clone)]
enum Op {
    Publish,
    Consume {
        group: usize,
        consumer: usize,
        max: usize,
    },
    /// Acks `n` deliveries of the group starting at `from` (mod the number
    /// delivered so far), acked or not.
    Ack {
        group: usize,
        from: usize,
        n: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Publish),
        3 => (0..2usize, 0..2usize, 1..5usize)
            .prop_map(|(group, consumer, max)| Op::Consume { group, consumer, max }),
        2 => (0..2usize, any::<usize>(), 1..4usize).prop_map(|(group, from, n)| Op::Ack { group, from, n }),
    ]
}

/// What one backend has handed out, per group: event id -> its entry id.
#[derive(Default)]
struct Seen {
    delivered: [Vec<(Uuid, EntryId)>; 2],
}

async fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let memory = InProcessBus::new(conformance::back_pressure(), conformance::MAX_LEN as usize)
        .expect("config");
    let redis = connect(redis_config("differential")).await;
    let result = compare(ops, &memory, &redis).await;
    redis.delete_all_keys().await.expect("delete test keys");
    result
}

async fn compare(ops: &[Op], a: &dyn EventBus, b: &dyn EventBus) -> Result<(), TestCaseError> {
    let s = StreamName::parse("grodt.orders.v1").unwrap();
    let groups = [
        GroupName::parse("g0").unwrap(),
        GroupName::parse("g1").unwrap(),
    ];
    let consumers = [
        ConsumerName::parse("c0").unwrap(),
        ConsumerName::parse("c1").unwrap(),
    ];
    for bus in [a, b] {
        bus.ensure_group(&s, &groups[0], StartFrom::Beginning)
            .await
            .unwrap();
        bus.ensure_group(&s, &groups[1], StartFrom::New)
            .await
            .unwrap();
    }
    let (mut seen_a, mut seen_b) = (Seen::default(), Seen::default());
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Publish => {
                let e = Envelope::new(
                    "grodt.v1.Order",
                    Utc.timestamp_opt(1_790_000_000 + i as i64, 0).unwrap(),
                    vec![u8::try_from(i % 256).unwrap(); i % 7],
                );
                a.publish(&s, &e).await.unwrap();
                b.publish(&s, &e).await.unwrap();
            }
            Op::Consume {
                group,
                consumer,
                max,
            } => {
                let (g, c) = (&groups[*group], &consumers[*consumer]);
                let got_a = a.consume(&s, g, c, *max, Duration::ZERO).await.unwrap();
                let got_b = b.consume(&s, g, c, *max, Duration::ZERO).await.unwrap();
                let envs_a: Vec<_> = got_a
                    .iter()
                    .map(|d| (&d.envelope, d.delivery_count))
                    .collect();
                let envs_b: Vec<_> = got_b
                    .iter()
                    .map(|d| (&d.envelope, d.delivery_count))
                    .collect();
                prop_assert_eq!(envs_a, envs_b, "op {} {:?}", i, op);
                seen_a.delivered[*group]
                    .extend(got_a.iter().map(|d| (d.envelope.event_id, d.entry_id)));
                seen_b.delivered[*group]
                    .extend(got_b.iter().map(|d| (d.envelope.event_id, d.entry_id)));
            }
            Op::Ack { group, from, n } => {
                let delivered = &seen_a.delivered[*group];
                if delivered.is_empty() {
                    continue;
                }
                let picked: Vec<Uuid> = (0..*n)
                    .map(|k| delivered[(from + k) % delivered.len()].0)
                    .collect();
                let ids = |seen: &Seen| -> Vec<EntryId> {
                    picked
                        .iter()
                        .map(|ev| {
                            seen.delivered[*group]
                                .iter()
                                .find(|(e, _)| e == ev)
                                .unwrap()
                                .1
                        })
                        .collect()
                };
                let acked_a = a.ack(&s, &groups[*group], &ids(&seen_a)).await.unwrap();
                let acked_b = b.ack(&s, &groups[*group], &ids(&seen_b)).await.unwrap();
                prop_assert_eq!(acked_a, acked_b, "op {} {:?}", i, op);
            }
        }
        let info = |infos: Vec<grodt_bus::GroupInfo>| {
            infos
                .into_iter()
                .map(|g| (g.group, g.pending, g.lag))
                .collect::<Vec<_>>()
        };
        let mut info_a = info(a.groups(&s).await.unwrap());
        let mut info_b = info(b.groups(&s).await.unwrap());
        info_a.sort();
        info_b.sort();
        prop_assert_eq!(info_a, info_b, "after op {} {:?}", i, op);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn backends_agree(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(&ops))?;
    }
}
