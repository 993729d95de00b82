//! Outages of the infrastructure in the distributed mode, short form
//! (`scripts/fault --outage` runs the long one): regime, strategy, risk and
//! execution each run as its own process (`grodt serve`), the SPY bars are
//! fed in lockstep, and mid-replay
//! - Redis is restarted for real: a private `redis-server` (AOF fsynced on
//!   every write, no RDB) is stopped with SIGTERM (SIGKILL with
//!   `GRODT_OUTAGE_REDIS_STOP=kill`), kept down ~2 s, and started again on
//!   the same port and directory, so its streams and consumer groups come
//!   back from the AOF;
//! - Postgres "restarts": the machine's shared server cannot be restarted
//!   under a parallel test suite, so the services reach it through a TCP
//!   proxy (`proxy.rs`) that closes every open connection and refuses new
//!   ones for ~2 s, which is what a client sees of a restart.
//!
//! During each outage at least one service's `/readyz` must answer 503
//! naming the dependency (`bus`, `database`); after it, all four answer 200
//! again, and no process has exited (nothing restarts them here: they ride
//! the outage out). At the end every fill and the account equal a backtest
//! of the same bars (none lost, none duplicated), and the fills stream,
//! read back from the restarted Redis, holds each fill id once after
//! deduplication by id. The counts are printed; `GRODT_OUTAGE_BARS` and
//! `GRODT_OUTAGE_ROUNDS` (one Redis restart and one Postgres cut each)
//! lengthen the run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grodt_bus::{EventBus, RedisBus, RedisBusConfig};
use grodt_proto::v1;
use grodt_proto::v1::execution_service_client::ExecutionServiceClient;
use grodt_proto::v1::strategy_service_client::StrategyServiceClient;
use grodt_store::testing::TestDb;
use tonic::transport::Channel;

use crate::cluster::Cluster;
use crate::fault::{Rng, client, env_or, write_config};
use crate::helpers::http_get;
use crate::proxy::Proxy;
use crate::redis_server::{RedisServer, Stop};

const CONSUMERS: [&str; 4] = ["regime", "strategy", "risk", "execution"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dependency {
    Redis,
    Postgres,
}

impl Dependency {
    /// The name of its readiness check (libs/kit/src/infra.rs).
    const fn check(self) -> &'static str {
        match self {
            Dependency::Redis => "bus",
            Dependency::Postgres => "database",
        }
    }
}

/// One outage as measured.
#[derive(Debug)]
struct Outage {
    dependency: Dependency,
    /// Bars the strategy had seen when it began.
    at_bar: u64,
    /// The first `/readyz` answer naming the dependency, and whose.
    not_ready: String,
    /// How long the dependency was away.
    down: Duration,
    /// From its return until all four services answered 200.
    ready_after: Duration,
}

/// Where a Postgres URL's host and port start and end (after any user).
fn host_span(url: &str) -> (usize, usize) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let host = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    (host, end)
}

/// The address a Postgres URL names.
async fn upstream_of(url: &str) -> SocketAddr {
    let (start, end) = host_span(url);
    let host = &url[start..end];
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    tokio::net::lookup_host(&host)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("cannot resolve the test database's {host}"))
}

/// The URL with its host and port replaced by the proxy's.
fn via(url: &str, port: u16) -> String {
    let (start, end) = host_span(url);
    format!("{}127.0.0.1:{port}{}", &url[..start], &url[end..])
}

async fn readyz_all(ports: &[u16]) -> Vec<(u16, String)> {
    let mut probes = tokio::task::JoinSet::new();
    for (k, &port) in ports.iter().enumerate() {
        probes.spawn(async move {
            let (code, body) = http_get(SocketAddr::from(([127, 0, 0, 1], port)), "/readyz").await;
            (k, code, body)
        });
    }
    let mut answers = vec![(0, String::new()); ports.len()];
    while let Some(done) = probes.join_next().await {
        let (k, code, body) = done.expect("readiness probe");
        answers[k] = (code, body.trim().to_owned());
    }
    answers
}

/// Polls `/readyz` until a service answers 503 naming `dependency`.
async fn until_not_ready(ports: &[u16], dependency: Dependency) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answers = readyz_all(ports).await;
        if let Some((k, (_, body))) = answers
            .iter()
            .enumerate()
            .find(|(_, (code, body))| *code == 503 && body.contains(dependency.check()))
        {
            return format!("{}: 503 {body}", CONSUMERS[k]);
        }
        assert!(
            Instant::now() < deadline,
            "no /readyz answered 503 naming {:?} within 20 s of the outage: {answers:?}",
            dependency.check()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `/readyz` until all services answer 200.
async fn until_ready(ports: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answers = readyz_all(ports).await;
        if answers.iter().all(|(code, _)| *code == 200) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "services not ready 60 s after the outage: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lines of the services' logs that say an outage interrupted work: a
/// handler that failed (its entry retried later), a consumer waiting for
/// the bus, anything at ERROR.
fn log_counts(dir: &std::path::Path) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for f in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if f.path().extension().is_none_or(|x| x != "log") {
            continue;
        }
        for line in std::fs::read_to_string(f.path())
            .unwrap_or_default()
            .lines()
        {
            counts.0 += usize::from(line.contains("handler failed"));
            counts.1 += usize::from(line.contains("bus unavailable; retrying"));
            counts.2 += usize::from(line.contains(r#""level":"ERROR""#));
        }
    }
    counts
}

/// Waits until the strategy has seen `bar` bars.
async fn until_bar(strategy: &mut StrategyServiceClient<Channel>, instance: &str, bar: u64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let seen = strategy
            .get_state(v1::GetStateRequest {
                instance_id: instance.to_owned(),
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().instance)
            .map_or(0, |i| i.bars_processed);
        if seen >= bar {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replay never reached bar {bar}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_and_postgres_outage_mid_replay_lose_and_duplicate_nothing() {
    let n_bars = env_or("GRODT_OUTAGE_BARS", 150);
    let rounds = env_or("GRODT_OUTAGE_ROUNDS", 1).max(1);
    // How long a dependency stays away: about what a restart takes.
    let down_for = Duration::from_millis(env_or("GRODT_OUTAGE_DOWN_MS", 2_000) as u64);
    let seed = std::env::var("GRODT_OUTAGE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            u64::try_from(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(1)).unwrap_or(1) | 1
        });
    // SIGTERM by default (a restart); GRODT_OUTAGE_REDIS_STOP=kill makes it
    // a crash, which the AOF fsynced on every write also survives.
    let redis_stop = match std::env::var("GRODT_OUTAGE_REDIS_STOP").as_deref() {
        Ok("kill") => Stop::Kill,
        Ok("term") | Err(_) => Stop::Term,
        Ok(other) => panic!("GRODT_OUTAGE_REDIS_STOP={other}: expected term or kill"),
    };
    let mut redis = RedisServer::start().await;
    let db = TestDb::postgres().await;
    let proxy = Proxy::start(upstream_of(db.url()).await).await;
    let db_url = via(db.url(), proxy.port());

    let (inst, bars) = crate::cluster::spy_tail(n_bars);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &inst);
    let prefix = format!("test-outage-{}:", uuid::Uuid::now_v7().simple());
    let mut cluster = Cluster::of(dir.path(), &prefix, redis.url(), db_url, &CONSUMERS);
    cluster.start_all().await;
    let http_ports: Vec<u16> = cluster.procs.iter().map(|p| p.http).collect();
    until_ready(&http_ports).await;
    let (strategy_port, execution_port) = (cluster.procs[1].grpc, cluster.procs[3].grpc);
    let mut strategy = StrategyServiceClient::new(client(strategy_port).await);
    let mut execution = ExecutionServiceClient::new(client(execution_port).await);

    crate::cluster::deploy_sma(&mut strategy, "outage-1").await;

    let bus: Arc<dyn EventBus> = Arc::new(
        RedisBus::connect(RedisBusConfig::new(redis.url(), prefix.clone()))
            .await
            .unwrap_or_else(|e| panic!("the private Redis at {}: {e}", redis.url())),
    );

    // Redis and Postgres in turn, spread evenly over the replay.
    let plan: Vec<(Dependency, u64)> = (0..2 * rounds)
        .map(|i| {
            let dependency = if i % 2 == 0 {
                Dependency::Redis
            } else {
                Dependency::Postgres
            };
            (dependency, (n_bars * (i + 1) / (2 * rounds + 1)) as u64)
        })
        .collect();
    let outages = {
        let (plan, ports) = (plan.clone(), http_ports.clone());
        let mut proxy = proxy;
        tokio::spawn(async move {
            let mut watcher = StrategyServiceClient::new(client(strategy_port).await);
            let mut rng = Rng(seed);
            let mut done = Vec::new();
            for (dependency, at_bar) in plan {
                until_bar(&mut watcher, "outage-1", at_bar).await;
                // A random moment within the next bar's trip through the
                // pipeline (a bar takes some 10-30 ms), so the outage cuts
                // into work in flight, not only an idle pipeline.
                tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
                let began = Instant::now();
                match dependency {
                    Dependency::Redis => tokio::task::block_in_place(|| redis.stop(redis_stop)),
                    Dependency::Postgres => proxy.cut().await,
                }
                let not_ready = until_not_ready(&ports, dependency).await;
                // The rest of a restart's time away; the readiness probes
                // above already waited part of it.
                tokio::time::sleep(down_for.saturating_sub(began.elapsed())).await;
                match dependency {
                    Dependency::Redis => redis.start_again().await,
                    Dependency::Postgres => proxy.restore().await,
                }
                let down = began.elapsed();
                let back = Instant::now();
                until_ready(&ports).await;
                done.push(Outage {
                    dependency,
                    at_bar,
                    not_ready,
                    down,
                    ready_after: back.elapsed(),
                });
            }
            (done, redis, proxy)
        })
    };

    let replay = grodt::paper::lockstep(
        &*bus,
        &bars,
        "SPY",
        v1::Timeframe::Day1 as i32,
        (inst.price_precision, inst.size_precision),
        "outage-1",
        &mut strategy,
        &mut execution,
    )
    .await;
    if let Err(e) = replay {
        // An outage that went wrong (readiness never dropped, Redis did not
        // come back) is the cause to report, not the stalled replay.
        if outages.is_finished()
            && let Err(failed) = outages.await
            && failed.is_panic()
        {
            std::panic::resume_unwind(failed.into_panic());
        }
        panic!(
            "lockstep through the outages (seed {seed}): {e}\n{}",
            crate::fault::log_tails(dir.path())
        );
    }
    let (outages, _redis, proxy) = outages.await.expect("the outages ran");
    // Nothing restarts a service here: each must still be the process
    // started at the beginning.
    for p in &mut cluster.procs {
        let exited = p.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
        assert!(
            exited.is_none() && p.starts == 1,
            "{} exited during the outages ({exited:?})\n{}",
            p.name,
            crate::fault::log_tails(dir.path())
        );
    }

    // Against a backtest of the same bars; the fills stream read whole from
    // the restarted Redis.
    let audit =
        crate::cluster::Audit::of(&*bus, &mut execution, &inst, &bars, "outage-audit").await;
    let (failed, waited, errors) = log_counts(dir.path());
    for o in &outages {
        println!(
            "outage of {:?}{} at bar {}: down {} ms, {}; all four ready {} ms after its return",
            o.dependency,
            if o.dependency == Dependency::Redis {
                format!(" ({redis_stop:?})")
            } else {
                String::new()
            },
            o.at_bar,
            o.down.as_millis(),
            o.not_ready,
            o.ready_after.as_millis()
        );
    }
    println!(
        "outage run (seed {seed}): {n_bars} bars, {} outages ({} Redis restarts, {} Postgres cuts; {} database \
         connections severed of {} opened; service logs: {failed} handler failures retried, \
         {waited} waits for the bus, {errors} errors); {}",
        outages.len(),
        outages
            .iter()
            .filter(|o| o.dependency == Dependency::Redis)
            .count(),
        outages
            .iter()
            .filter(|o| o.dependency == Dependency::Postgres)
            .count(),
        proxy.severed.load(std::sync::atomic::Ordering::Relaxed),
        proxy.opened.load(std::sync::atomic::Ordering::Relaxed),
        audit.counts()
    );
    assert_eq!(outages.len(), plan.len(), "every planned outage happened");
    audit.assert_exact(&format!("seed {seed}"));
}
