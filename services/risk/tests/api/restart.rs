//! The service binary killed with SIGKILL (kill -9) mid-stream, twice, over
//! Redis and Postgres: every intent decided exactly once, none lost.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use grodt_proto::v1;

use crate::helpers::{
    DAY, Env, Reader, T0, bar, fill, intent, order_coid, publish, redis_url, rejected_coid, spec,
};

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(env: &Env, dir: &std::path::Path, n: usize) -> Service {
    let log = std::fs::File::create(dir.join(format!("service-{n}.log"))).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_grodt-risk"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GRODT_CONFIG_DIR", dir)
        .env("GRODT_GRPC__ADDR", "127.0.0.1:0")
        .env("GRODT_HTTP__ADDR", "127.0.0.1:0")
        .env("GRODT_TELEMETRY__LOG_FORMAT", "json")
        .env("GRODT_TELEMETRY__LOG_LEVEL", "info")
        .env("GRODT_REDIS__URL", redis_url())
        .env("GRODT_REDIS__KEY_PREFIX", &env.prefix)
        .env("GRODT_DATABASE__URL", env.db.url())
        .env("GRODT_RISK__CLAIM_IDLE_MS", "700")
        .env("GRODT_RISK__LIMITS__MAX_ORDER_QUANTITY", "100")
        .stdout(Stdio::from(log))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the risk binary starts");
    Service(child)
}

async fn journaled(env: &Env) -> u64 {
    env.db
        .store()
        .journal()
        .count("risk")
        .await
        .expect("journal count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_decides_every_intent_exactly_once() {
    const INTENTS: usize = 600;
    let env = Env::redis().await;
    let mut orders = Reader::<v1::OrderEvent>::new(env.bus.clone()).await;
    let mut events = Reader::<v1::RiskEvent>::new(env.bus.clone()).await;
    // Intents, with a bar and a fill every 10th: every 7th intent is over
    // the configured max_order_quantity (100) and must be rejected.
    let mut want_rejected = HashSet::new();
    let (mut bars, mut fills) = (0u64, 0u64);
    for i in 0..INTENTS {
        let at = T0 + i64::try_from(i).unwrap() * DAY / 100;
        if i % 10 == 0 {
            let price = format!("{}", 100 + (i / 10) % 7);
            publish(&*env.bus, &bar("SPY", &price, at)).await;
            bars += 1;
            if i > 0 {
                publish(
                    &*env.bus,
                    &fill(&format!("f{i}"), "SPY", v1::Side::Buy, "1", &price, at + 1),
                )
                .await;
                fills += 1;
            }
        }
        let coid = format!("k-{i}");
        let qty = if i % 7 == 3 { "500" } else { "1" };
        if i % 7 == 3 {
            want_rejected.insert(coid.clone());
        }
        publish(
            &*env.bus,
            &intent(spec(&coid, "SPY", v1::Side::Buy, qty), at),
        )
        .await;
    }
    // + the Configure entry of the configured limits.
    let total = INTENTS as u64 + bars + fills + 1;
    let dir = tempfile::tempdir().unwrap();
    let mut killed_at = Vec::new();
    let started = Instant::now();
    for (n, target) in [total / 3, 2 * total / 3].into_iter().enumerate() {
        let mut service = start(&env, dir.path(), n);
        let deadline = Instant::now() + Duration::from_secs(30);
        while journaled(&env).await < target {
            assert!(
                Instant::now() < deadline,
                "no progress to {target} inputs (life {n})"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // SIGKILL: no drain, whatever is in flight is cut off.
        service.0.kill().expect("kill -9");
        service.0.wait().expect("reaped");
        killed_at.push(journaled(&env).await);
    }
    let service = start(&env, dir.path(), 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        orders.drain().await;
        events.drain().await;
        let decided: HashSet<&str> = orders
            .seen
            .iter()
            .map(|(_, o)| order_coid(o))
            .chain(events.seen.iter().filter_map(|(_, e)| rejected_coid(e)))
            .collect();
        if decided.len() >= INTENTS && journaled(&env).await >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {INTENTS} intents decided, {} of {total} inputs journaled",
            decided.len(),
            journaled(&env).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each client order id: one decision (one event id), on one stream.
    let mut approved: HashMap<&str, HashSet<uuid::Uuid>> = HashMap::new();
    for (id, o) in &orders.seen {
        approved.entry(order_coid(o)).or_default().insert(*id);
    }
    let mut rejected: HashMap<&str, HashSet<uuid::Uuid>> = HashMap::new();
    for (id, e) in &events.seen {
        if let Some(c) = rejected_coid(e) {
            rejected.entry(c).or_default().insert(*id);
        }
    }
    let both = approved
        .keys()
        .filter(|c| rejected.contains_key(*c))
        .count();
    let two_ids = approved
        .values()
        .chain(rejected.values())
        .filter(|ids| ids.len() > 1)
        .count();
    let distinct_events = approved
        .values()
        .chain(rejected.values())
        .map(HashSet::len)
        .sum::<usize>();
    let read = orders.seen.len()
        + events
            .seen
            .iter()
            .filter(|(_, e)| rejected_coid(e).is_some())
            .count();
    let lost = (0..INTENTS)
        .filter(|i| {
            let c = format!("k-{i}");
            !approved.contains_key(c.as_str()) && !rejected.contains_key(c.as_str())
        })
        .count();
    let wrong = rejected
        .keys()
        .filter(|c| !want_rejected.contains(**c))
        .count()
        + want_rejected
            .iter()
            .filter(|c| !rejected.contains_key(c.as_str()))
            .count();
    println!(
        "kill -9 at {killed_at:?} of {total} journaled inputs; {INTENTS} intents: {} approved, {} \
         rejected, lost {lost}, decided on both streams {both}, with two event ids {two_ids}; \
         decision events read {read}, distinct by event id {distinct_events} ({} republished \
         under the same id); {:.1} s",
        approved.len(),
        rejected.len(),
        read - distinct_events,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(killed_at.len(), 2);
    assert!(
        killed_at.iter().all(|&k| k < total),
        "each kill came mid-stream"
    );
    assert_eq!((lost, both, two_ids, wrong), (0, 0, 0, 0));
    assert_eq!(approved.len() + rejected.len(), INTENTS);
    assert_eq!(journaled(&env).await, total, "every input journaled once");
    // The state rebuilt from the journal in-process: each fill counted once.
    drop(service);
    let mut again = env.spawn(grodt_risk::RiskSettings::default()).await;
    let snap = again
        .client
        .get_snapshot(v1::GetSnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(snap.exposures.len(), 1);
    assert_eq!(
        snap.exposures[0].quantity.as_ref().unwrap().value,
        fills.to_string(),
        "every fill applied exactly once"
    );
    again.stop().await;
}
