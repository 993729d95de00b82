//! The service binary killed with SIGKILL (kill -9) twice while a real
//! broker plays execution over Redis and Postgres: every intent of the
//! unfaulted run is published, none is lost, none is decided twice (a
//! client order id under two event ids); republished copies of the same
//! event are counted. The same for a portfolio's members (the example file
//! through `[strategy.portfolio]`, the desk playing execution): the result
//! equals the backtest's.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use grodt_core::Bar;

use crate::helpers::{
    Apply, Env, Exec, costly, in_process, intent_cid, redis_url, sma_params, spy,
};
use crate::portfolio::Example;

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(db_url: &str, prefix: &str, dir: &std::path::Path, n: usize) -> Service {
    let log = std::fs::File::create(dir.join(format!("service-{n}.log"))).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_grodt-strategy"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GRODT_CONFIG_DIR", dir)
        .env("GRODT_GRPC__ADDR", "127.0.0.1:0")
        .env("GRODT_HTTP__ADDR", "127.0.0.1:0")
        .env("GRODT_TELEMETRY__LOG_FORMAT", "json")
        .env("GRODT_TELEMETRY__LOG_LEVEL", "info")
        .env("GRODT_REDIS__URL", redis_url())
        .env("GRODT_REDIS__KEY_PREFIX", prefix)
        .env("GRODT_DATABASE__URL", db_url)
        .env("GRODT_STRATEGY__CLAIM_IDLE_MS", "700")
        .stdout(Stdio::from(log))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the strategy binary starts");
    Service(child)
}

/// Publishes the report of bar `b` of `symbol`, kills the binary with
/// SIGKILL (no drain: whatever is in flight is cut off) `ms` later, starts it
/// again (log `n`) and carries the exchange on to quiet. Returns whether
/// the report was journaled before the kill, and the journal's entries then.
#[allow(clippy::too_many_arguments, reason = "one test step's whole context")]
async fn bar_across_a_kill<B: Apply>(
    env: &Env,
    exec: &mut Exec<B>,
    service: &mut Service,
    dir: &std::path::Path,
    n: usize,
    symbol: &str,
    b: Bar,
    ms: u64,
) -> (bool, u64) {
    let report = exec
        .broker
        .apply(&grodt_paper::Input::Bar {
            symbol: symbol.to_owned(),
            bar: b,
        })
        .unwrap();
    let id = exec.send(&report, None).await;
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    service.0.kill().expect("kill -9");
    service.0.wait().expect("reaped");
    let journaled = env
        .db
        .store()
        .journal()
        .get("strategy", &format!("report:{id}"))
        .await
        .unwrap()
        .is_some();
    let entries = env.journaled().await;
    *service = start(env.db.url(), &env.prefix, dir, n);
    let tickets = exec.answer(id).await;
    exec.follow(tickets).await;
    (journaled, entries)
}

/// After a moment for stragglers, the event ids each client order id was
/// published under.
async fn event_ids_by_cid<B: Apply>(exec: &mut Exec<B>) -> HashMap<String, HashSet<uuid::Uuid>> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    exec.intents.drain().await;
    let mut by_cid: HashMap<String, HashSet<uuid::Uuid>> = HashMap::new();
    for (id, e) in &exec.intents.seen {
        by_cid
            .entry(intent_cid(e).to_owned())
            .or_default()
            .insert(*id);
    }
    by_cid
}

const CONFIG: &str = r#"
[strategy.instruments.symbols.SPY]
price_precision = 4
size_precision = 0

[[strategy.instances]]
instance_id = "sma-1"
strategy_name = "sma_cross"
symbols = ["SPY"]
timeframe = "1d"
capital = "100000"
start = true

[strategy.instances.params]
fast = "10"
slow = "30"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_and_duplicates_no_intent() {
    const BARS: usize = 400;
    let env = Env::redis().await;
    let (inst, bars) = spy();
    assert_eq!(
        (inst.price_precision, inst.size_precision),
        (4, 0),
        "the sample's grids"
    );
    let bars = &bars[..BARS];
    let config = costly();
    let (want_broker, want_cids) = in_process(&config, &inst, bars, &sma_params());
    // Kill while the service handles a bar on which the strategy decides
    // (the 3rd and the 9th decision): at once and 3 ms after the report is
    // published, so the kill lands inside the handling (before the commit,
    // or between the commit and the publish or the ack).
    let decisions: Vec<i64> = want_broker
        .orders()
        .iter()
        .map(|o| o.ticket.decision_ts)
        .collect();
    let kills: Vec<(usize, u64)> = [(decisions[2], 0), (decisions[8], 3)]
        .iter()
        .map(|(ts, ms)| (bars.iter().position(|b| b.ts == *ts).unwrap(), *ms))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.toml"), CONFIG).unwrap();
    let mut exec = Exec::new(&env, &config, &inst).await;
    exec.patience = Duration::from_secs(60);
    let mut service = start(env.db.url(), &env.prefix, dir.path(), 0);
    let mut killed_at = Vec::new();
    let started = Instant::now();
    for (k, b) in bars.iter().enumerate() {
        let Some(&(_, ms)) = kills.iter().find(|(at, _)| *at == k) else {
            exec.bar(b).await;
            continue;
        };
        let (journaled, entries) = bar_across_a_kill(
            &env,
            &mut exec,
            &mut service,
            dir.path(),
            killed_at.len() + 1,
            "SPY",
            *b,
            ms,
        )
        .await;
        killed_at.push((k, entries, journaled));
    }
    let secs = started.elapsed().as_secs_f64();
    // Each client order id: one event id; the set equals the unfaulted run's.
    let by_cid = event_ids_by_cid(&mut exec).await;
    let want: HashSet<&str> = want_cids.iter().map(String::as_str).collect();
    let got: HashSet<&str> = by_cid.keys().map(String::as_str).collect();
    let lost = want.difference(&got).count();
    let extra = got.difference(&want).count();
    let two_ids = by_cid.values().filter(|ids| ids.len() > 1).count();
    let copies = exec.intents.seen.len() - by_cid.len();
    let journaled = env.journaled().await;
    println!(
        "kill -9 at (bar, journal entries, the bar's report journaled before the kill) \
         {killed_at:?}; {journaled} journal entries; {BARS} bars, {} reports; intents: {} \
         expected, {} distinct by client order id, lost {lost}, unexpected {extra}, under two \
         event ids {two_ids}; {} stream entries ({copies} republished copies of the same \
         event); {secs:.1} s",
        exec.reports,
        want.len(),
        got.len(),
        exec.intents.seen.len(),
    );
    assert_eq!(killed_at.len(), 2, "two kills");
    assert_eq!((lost, extra, two_ids), (0, 0, 0));
    assert_eq!(
        exec.broker.fills(),
        want_broker.fills(),
        "fills as the unfaulted run"
    );
    assert_eq!(
        exec.broker.snapshot().unwrap().equity,
        want_broker.snapshot().unwrap().equity
    );
    // Journal: the deploy, each report once, nothing else.
    assert_eq!(journaled, 1 + exec.reports);
    drop(service);
}

/// Kills the binary twice while it trades the example portfolio's members
/// (a long and a short SPY trend, an AAPL/SPY pair) over Redis and
/// Postgres, at bars on which a trend member decides (at once and 3 ms
/// after the report is published), restarting it each time: the desk's
/// result equals the backtest's (every member's fills, orders and curves,
/// the account, rebalances, netting), so no order was lost or placed twice;
/// no client order id went out under two event ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_trading_a_portfolio_loses_and_duplicates_no_order() {
    const TIMESTAMPS: usize = 700;
    let env = Env::redis().await;
    let ex = Example::first(TIMESTAMPS);
    let want = ex.backtest();
    // Decision bars: the bar of the traded instrument before each fill of
    // the two single-symbol members, in time order.
    let bars = &ex.bars;
    let mut decisions: Vec<(usize, i64)> = want
        .members
        .iter()
        .filter(|m| m.instruments.len() == 1)
        .flat_map(|m| {
            let i = m.instruments[0];
            m.fills.iter().filter_map(move |f| {
                bars[i]
                    .iter()
                    .rev()
                    .find(|b| b.ts < f.ts)
                    .map(|b| (i, b.ts))
            })
        })
        .collect();
    decisions.sort_by_key(|&(i, ts)| (ts, i));
    decisions.dedup();
    assert!(decisions.len() > 9, "{} decisions", decisions.len());
    let feed = ex.feed();
    let at = |(i, ts): (usize, i64)| {
        feed.iter()
            .position(|&(j, b)| j == i && b.ts == ts)
            .expect("a fed bar")
    };
    let kills = [(at(decisions[2]), 0u64), (at(decisions[9]), 3)];

    let mut toml = String::new();
    for inst in &ex.insts {
        toml.push_str(&format!(
            "[strategy.instruments.symbols.{}]\nprice_precision = {}\nsize_precision = {}\n\n",
            inst.id, inst.price_precision, inst.size_precision
        ));
    }
    let pc = ex.portfolio_config();
    toml.push_str(&format!(
        "[strategy.portfolio]\nfile = {:?}\ntimeframe = \"1d\"\nstart = true\ncost_dp = {}\n",
        pc.file.display().to_string(),
        pc.cost_dp
    ));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.toml"), toml).unwrap();
    let mut exec = Exec::over(&env, ex.desk(), ex.insts.clone()).await;
    exec.patience = Duration::from_secs(60);
    let mut service = start(env.db.url(), &env.prefix, dir.path(), 0);
    let mut killed_at = Vec::new();
    let started = Instant::now();
    for (k, &(i, b)) in feed.iter().enumerate() {
        let symbol = ex.insts[i].id.clone();
        let Some(&(_, ms)) = kills.iter().find(|(at, _)| *at == k) else {
            exec.bar_of(&symbol, &b).await;
            continue;
        };
        let (journaled, entries) = bar_across_a_kill(
            &env,
            &mut exec,
            &mut service,
            dir.path(),
            killed_at.len() + 1,
            &symbol,
            b,
            ms,
        )
        .await;
        killed_at.push((k, entries, journaled));
    }
    let secs = started.elapsed().as_secs_f64();
    let by_cid = event_ids_by_cid(&mut exec).await;
    let two_ids = by_cid.values().filter(|ids| ids.len() > 1).count();
    let copies = exec.intents.seen.len() - by_cid.len();
    let submitted = exec.submitted.len();
    let got = exec.broker.finish().expect("finish");
    println!(
        "portfolio, kill -9 at (feed entry, journal entries, its report journaled before the \
         kill) \
         {killed_at:?}; {TIMESTAMPS} days, {} bars, {} reports; {} client order ids, \
         {submitted} submitted, under two event ids {two_ids}; {copies} republished \
         copies; fills {:?}; {secs:.1} s",
        feed.len(),
        exec.reports,
        by_cid.len(),
        got.members
            .iter()
            .map(|m| m.fills.len())
            .collect::<Vec<_>>(),
    );
    assert_eq!(killed_at.len(), 2, "two kills");
    assert_eq!(two_ids, 0);
    for (g, w) in got.members.iter().zip(&want.members) {
        assert_eq!(g.fills, w.fills, "{}: fills", w.id);
        assert!(!w.fills.is_empty(), "{} trades in the window", w.id);
    }
    assert_eq!(got, want);
    // Journal: each member's deployment, each report once, nothing else.
    assert_eq!(
        env.journaled().await,
        ex.file.strategies.len() as u64 + exec.reports
    );
    drop(service);
}
