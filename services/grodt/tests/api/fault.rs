//! Faults in the distributed mode, short form (scripts/fault runs the long
//! one): regime, strategy, risk and execution each run as its own process
//! (`grodt serve`) over Redis and Postgres; the SPY bars are fed in
//! lockstep while a killer sends SIGKILL to one of them, chosen at random at
//! a random moment, and restarts it. At the end every fill and the account
//! equal a backtest of the same bars (no fill lost, none duplicated, none
//! late), and the fills stream holds each fill id of the backtest once after
//! deduplication by id. The counts are printed; `GRODT_FAULT_KILLS` and
//! `GRODT_FAULT_BARS` lengthen the run.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grodt_bus::{EventBus, RedisBus, RedisBusConfig};
use grodt_proto::v1;
use grodt_proto::v1::execution_service_client::ExecutionServiceClient;
use grodt_proto::v1::strategy_service_client::StrategyServiceClient;
use grodt_store::testing::TestDb;

use crate::cluster::{Cluster, redis_url};
use tonic::transport::Channel;

const CONSUMERS: [&str; 4] = ["regime", "strategy", "risk", "execution"];

pub(crate) fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub(crate) fn write_config(dir: &Path, inst: &grodt_core::Instrument) {
    let grids = format!(
        "price_precision = {}\nsize_precision = {}\n",
        inst.price_precision, inst.size_precision
    );
    let text = format!(
        "[execution]\nclaim_idle_ms = 500\n[execution.venue]\nstarting_cash = \"100000\"\n\
         [execution.instruments.symbols.SPY]\n{grids}\n\
         [strategy]\nclaim_idle_ms = 500\n[strategy.instruments.symbols.SPY]\n{grids}\n\
         [risk]\nclaim_idle_ms = 500\n\n[regime]\nclaim_idle_ms = 500\n"
    );
    std::fs::write(dir.join("base.toml"), text).expect("config");
}

pub(crate) async fn client(port: u16) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .expect("connects")
}

/// The last lines of every service log in `dir`, for a failure message.
pub(crate) fn log_tails(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|f| f.path().extension().is_some_and(|x| x == "log"))
                .map(|f| {
                    let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(8).collect();
                    format!("--- {}\n{}", f.path().display(), tail.join("\n"))
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// A tiny seeded generator (xorshift): the kill schedule is reproducible
/// from the printed seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_each_consumer_mid_replay_loses_and_duplicates_nothing() {
    let kills = env_or("GRODT_FAULT_KILLS", 4);
    let n_bars = env_or("GRODT_FAULT_BARS", 250);
    let seed = std::env::var("GRODT_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            u64::try_from(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(1)).unwrap_or(1) | 1
        });
    let db = TestDb::postgres().await;
    let (inst, bars) = crate::cluster::spy_tail(n_bars);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &inst);
    let prefix = format!("test-fault-{}:", uuid::Uuid::now_v7().simple());
    let mut cluster = Cluster::of(
        dir.path(),
        &prefix,
        redis_url(),
        db.url().to_owned(),
        &CONSUMERS,
    );
    cluster.start_all().await;
    let (strategy_port, execution_port) = (cluster.procs[1].grpc, cluster.procs[3].grpc);
    let mut strategy = StrategyServiceClient::new(client(strategy_port).await);
    let mut execution = ExecutionServiceClient::new(client(execution_port).await);

    crate::cluster::deploy_sma(&mut strategy, "fault-1").await;

    let bus: Arc<dyn EventBus> = Arc::new(
        RedisBus::connect(RedisBusConfig::new(redis_url(), prefix.clone()))
            .await
            .unwrap_or_else(|e| panic!("Redis must be running at {}: {e}", redis_url())),
    );
    // The killer: every so often, SIGKILL one consumer (each in turn first,
    // then at random) and start it again on the same ports.
    let cluster = Arc::new(tokio::sync::Mutex::new(cluster));
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let killer = {
        let (cluster, log) = (cluster.clone(), log.clone());
        tokio::spawn(async move {
            let mut rng = Rng(seed);
            for i in 0..kills {
                tokio::time::sleep(Duration::from_millis(300 + rng.below(900))).await;
                let k = if i < CONSUMERS.len() {
                    i
                } else {
                    usize::try_from(rng.below(CONSUMERS.len() as u64)).unwrap_or(0)
                };
                let mut c = cluster.lock().await;
                c.kill(k);
                log.lock().unwrap().push(CONSUMERS[k].to_owned());
                c.start(k);
                c.wait_serving(k).await;
            }
        })
    };
    grodt::paper::lockstep(
        &*bus,
        &bars,
        "SPY",
        v1::Timeframe::Day1 as i32,
        (inst.price_precision, inst.size_precision),
        "fault-1",
        &mut strategy,
        &mut execution,
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "lockstep through the faults (seed {seed}): {e}\n{}",
            log_tails(dir.path())
        )
    });
    killer.await.expect("killer");
    let killed = log.lock().unwrap().clone();

    let audit = crate::cluster::Audit::of(&*bus, &mut execution, &inst, &bars, "fault-audit").await;
    println!(
        "fault run (seed {seed}): {n_bars} bars, killed {killed:?}; {}",
        audit.counts()
    );
    assert_eq!(killed.len(), kills, "every planned kill happened");
    audit.assert_exact(&format!("seed {seed}"));
}
