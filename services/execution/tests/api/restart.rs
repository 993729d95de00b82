//! The service binary killed with SIGKILL (kill -9) twice mid-stream, over
//! Redis and Postgres: every fill of an unfaulted in-process broker run is
//! published, none lost, none duplicated (the same event again after a crash
//! is expected: counted, and the distinct ids must match), and a new life
//! of the service holds the reference's account to the cent. Cancellations
//! ride among the orders, so the first kill cuts into them too. Once with one
//! venue, once running a portfolio's desk (`[execution] portfolio`: two
//! members, the ladder's buyer and seller, on sub-ledgers with netting).

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use grodt_execution::engine::{FILLS_STREAM, REPORTS_STREAM};
use grodt_proto::v1;

use grodt_core::Decimal;
use grodt_execution::ExecutionSettings;
use grodt_paper::desk::{PortfolioBroker, Seating};
use grodt_paper::{Input, PaperAccount};

use crate::helpers::{
    Env, Reader, d, journaled, ladder, publish_bars, publish_order, redis_url, settings, spy,
    spy_bars, venue,
};

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `[execution]` section of `helpers::settings()`, as an operator writes it.
const CONFIG: &str = r#"
[execution]
claim_idle_ms = 1000

[execution.venue]
starting_cash = "100000"
commission = { PerShare = { rate = "0.005", minimum = "1" } }
slippage = { FixedBps = { bps = "2" } }

[execution.instruments.symbols.SPY]
price_precision = 4
size_precision = 0
"#;

fn start(env: &Env, config_dir: &std::path::Path, n: usize) -> Service {
    let log = std::fs::File::create(config_dir.join(format!("service-{n}.log"))).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_grodt-execution"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GRODT_CONFIG_DIR", config_dir)
        .env("GRODT_GRPC__ADDR", "127.0.0.1:0")
        .env("GRODT_HTTP__ADDR", "127.0.0.1:0")
        .env("GRODT_TELEMETRY__LOG_FORMAT", "json")
        .env("GRODT_TELEMETRY__LOG_LEVEL", "info")
        .env("GRODT_REDIS__URL", redis_url())
        .env("GRODT_REDIS__KEY_PREFIX", &env.prefix)
        .env("GRODT_DATABASE__URL", env.db.url())
        .stdout(Stdio::from(log))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the execution binary starts");
    Service(child)
}

async fn wait_for(env: &Env, dir: &std::path::Path, n: usize, target: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while journaled(env.db.store()).await < target {
        if Instant::now() > deadline {
            let log =
                std::fs::read_to_string(dir.join(format!("service-{n}.log"))).unwrap_or_default();
            let tail: Vec<_> = log.lines().rev().take(30).collect();
            panic!(
                "no progress to {target} inputs; log tail:\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What goes on the orders stream, in order.
enum Sent {
    Order(Box<v1::OrderSpec>),
    /// A strategy's cancellation of a resting order, as risk passes it on.
    Cancel(String),
}

/// The ladder's orders with every seventh resting one cancelled right after
/// it was sent.
fn with_cancels(specs: Vec<v1::OrderSpec>) -> Vec<Sent> {
    let mut out = Vec::new();
    for (k, spec) in specs.into_iter().enumerate() {
        let cancel =
            (k % 7 == 3 && spec.limit_price.is_some()).then(|| spec.client_order_id.clone());
        out.push(Sent::Order(Box::new(spec)));
        out.extend(cancel.map(Sent::Cancel));
    }
    out
}

/// The reference: `account` fed what was sent (all before any bar, as the
/// test publishes it), then the bars.
fn replay(mut account: PaperAccount, sent: &[Sent], bars: &[grodt_core::Bar]) -> PaperAccount {
    let inst = spy();
    for s in sent {
        let input = match s {
            Sent::Order(spec) => {
                let ts = account
                    .last_bar_ts("SPY")
                    .unwrap_or_else(|| account.now())
                    .max(0);
                Input::Submit(
                    grodt_execution::convert::ticket_from_spec(spec, Some(&inst), ts)
                        .expect("valid spec"),
                )
            }
            Sent::Cancel(cid) => Input::Cancel {
                client_order_id: cid.clone(),
            },
        };
        account.apply(&input).expect("applies");
    }
    for b in bars {
        account
            .apply(&Input::Bar {
                symbol: "SPY".into(),
                bar: *b,
            })
            .expect("bar");
    }
    account
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_and_duplicates_no_fill() {
    let bars = spy_bars()[..400].to_vec();
    let sent = with_cancels(ladder("k", 200, bars[0].close));
    let venue_only = grodt_paper::broker::Broker::new(venue(), vec![spy()]).unwrap();
    let want = replay(venue_only.into(), &sent, &bars);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.toml"), CONFIG).unwrap();
    kill_twice(dir, &sent, &bars, &want, settings()).await;
}

/// Two members on SPY, the ladder's buyer (`s-buy`) and seller (`s-sell`),
/// half the cash each, netted.
pub const PORTFOLIO: &str = r#"
name = "the ladder's two sides"
cash = "100000"

[data]
SPY = "unused: execution reads only the symbols"

# The venue's costs (helpers::venue): the service refuses a file whose costs differ.
[costs]
fees = "per_share=0.005,min=1"
slippage = "bps=2"

[allocation]
method = "fixed"
netting = true

[[strategy]]
id = "s-buy"
name = "sma_cross"
symbols = ["SPY"]

[[strategy]]
id = "s-sell"
name = "sma_cross"
symbols = ["SPY"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_portfolio_desk_mid_stream_loses_and_duplicates_no_fill() {
    let bars = spy_bars()[..400].to_vec();
    let mut specs = ladder("p", 200, bars[0].close);
    // Market orders of both members on the same bar, so the desk nets.
    for (k, s) in specs.iter_mut().enumerate() {
        if k % 10 == 8 {
            *s = crate::helpers::order(&s.client_order_id, false, 3, None);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portfolio.toml");
    std::fs::write(&file, PORTFOLIO).unwrap();
    let config = CONFIG.replace(
        "[execution]\n",
        &format!(
            "[execution]\nportfolio = {:?}\n",
            file.display().to_string()
        ),
    );
    assert!(config.contains("portfolio = "));
    std::fs::write(dir.path().join("base.toml"), config).unwrap();
    // The reference: the desk fed the same inputs in process.
    let parsed = grodt_portfolio::file::PortfolioFile::parse(PORTFOLIO).unwrap();
    let seat = |id: &str| Seating {
        id: id.into(),
        instruments: vec![0],
        max_leverage: Decimal::ONE,
    };
    let desk = PortfolioBroker::new(
        &venue(),
        vec![spy()],
        vec![seat("s-buy"), seat("s-sell")],
        parsed.plan().unwrap(),
    )
    .unwrap();
    let sent = with_cancels(specs);
    let want = replay(desk.into(), &sent, &bars);
    let mut s = settings();
    s.portfolio = Some(file.clone());
    // The desk netted: crosses between the members are booked without
    // commission (every venue fill pays at least the 1.00 minimum).
    assert!(
        want.fills().iter().any(|f| f.commission.is_zero()),
        "some quantity crossed between the members"
    );
    kill_twice(dir, &sent, &bars, &want, s).await;
}

/// Orders then bars through the binary, killed among the orders and among
/// the bars; then everything `want` (the same inputs in process) made must
/// have been published once, and a new life holds its book.
async fn kill_twice(
    dir: tempfile::TempDir,
    sent: &[Sent],
    bars: &[grodt_core::Bar],
    want: &PaperAccount,
    in_process: ExecutionSettings,
) {
    let env = Env::redis().await;
    let reports = Reader::new(env.bus.clone(), REPORTS_STREAM).await;
    let fills = Reader::new(env.bus.clone(), FILLS_STREAM).await;
    let total = (sent.len() + bars.len()) as u64;
    let orders_stream = crate::helpers::stream(grodt_execution::engine::ORDERS_STREAM);
    let mut killed_at = Vec::new();

    // Life 0: killed among the orders and cancellations.
    for s in sent {
        match s {
            Sent::Order(spec) => {
                publish_order(&*env.bus, spec).await;
            }
            Sent::Cancel(cid) => {
                let e = crate::helpers::cancel_envelope(cid, 0);
                env.bus.publish(&orders_stream, &e).await.expect("publish");
            }
        }
    }
    let mut service = start(&env, dir.path(), 0);
    wait_for(&env, dir.path(), 0, 40).await;
    service.0.kill().expect("kill -9");
    service.0.wait().expect("reaped");
    killed_at.push(journaled(env.db.store()).await);

    // Life 1: finishes the orders, killed among the bars.
    let mut service = start(&env, dir.path(), 1);
    wait_for(&env, dir.path(), 1, sent.len() as u64).await;
    publish_bars(&*env.bus, "SPY", bars).await;
    wait_for(&env, dir.path(), 1, sent.len() as u64 + 150).await;
    service.0.kill().expect("kill -9");
    service.0.wait().expect("reaped");
    killed_at.push(journaled(env.db.store()).await);

    // Life 2: finishes.
    let service = start(&env, dir.path(), 2);
    wait_for(&env, dir.path(), 2, total).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(service);

    let want_ids: HashSet<String> = want
        .fills()
        .iter()
        .map(|f| grodt_execution::convert::fill_id(f.seq, f.ts).to_string())
        .collect();
    let got = fills.drain::<v1::FillEvent>().await;
    let got_ids: Vec<String> = got
        .iter()
        .map(|r| r.event.fill.as_ref().unwrap().fill_id.clone())
        .collect();
    let distinct: HashSet<String> = got_ids.iter().cloned().collect();
    let event_ids: HashSet<_> = got.iter().map(|r| r.event_id).collect();
    let lost = want_ids.difference(&distinct).count();
    let extra = distinct.difference(&want_ids).count();
    let republished = got_ids.len() - distinct.len();
    let got_reports = reports.drain::<v1::ExecutionReportEvent>().await;
    let report_ids: HashSet<_> = got_reports.iter().map(|r| r.event_id).collect();
    println!(
        "kill -9 at {killed_at:?} of {total} inputs; fills: {} expected, {} distinct published \
         (lost {lost}, unexpected {extra}), {republished} republished under the same id; \
         reports: {} distinct of {} read",
        want_ids.len(),
        distinct.len(),
        report_ids.len(),
        got_reports.len()
    );
    assert_eq!(killed_at.len(), 2);
    assert!(
        killed_at[0] < sent.len() as u64,
        "first kill among the orders"
    );
    assert!(killed_at[1] < total, "second kill among the bars");
    assert!(
        want_ids.len() > 50,
        "a real number of fills: {}",
        want_ids.len()
    );
    assert_eq!((lost, extra), (0, 0));
    assert_eq!(event_ids.len(), distinct.len(), "one event id per fill");
    assert_eq!(
        journaled(env.db.store()).await,
        total,
        "each input journaled once"
    );
    assert_eq!(report_ids.len() as u64, total, "one report per input");

    // The audit log: one JSON line per order event, a fill never logged
    // twice (lines are written after the commit; a republish writes none).
    let mut audit_fills = Vec::new();
    let mut audit_lines = 0;
    let mut cancels_audited = 0;
    let mut reconciled = Vec::new();
    for n in 0..3 {
        let log = std::fs::read_to_string(dir.path().join(format!("service-{n}.log"))).unwrap();
        for line in log.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            match v["target"].as_str() {
                Some("audit") => {
                    audit_lines += 1;
                    let f = &v["fields"];
                    if f["event"] == "capital" {
                        // A portfolio member's cash moved by the desk.
                        for key in ["strategy_id", "kind", "amount"] {
                            assert!(!f[key].is_null(), "{key} in {line}");
                        }
                        continue;
                    }
                    assert!(f["client_order_id"].is_string(), "{line}");
                    if f["event"] == "fill" {
                        audit_fills.push(f["fill_seq"].as_u64().expect("fill_seq"));
                    } else if f["event"] == "cancel_requested" {
                        cancels_audited += 1;
                    } else {
                        for key in ["strategy_id", "symbol", "side", "qty", "price", "status"] {
                            assert!(!f[key].is_null(), "{key} in {line}");
                        }
                    }
                }
                Some("reconciliation") => reconciled.push(v["fields"]["breaks"].as_u64()),
                _ => {}
            }
        }
    }
    let audit_set: HashSet<u64> = audit_fills.iter().copied().collect();
    println!(
        "audit: {audit_lines} lines, {} fill lines, {} distinct; reconciliations at start: {reconciled:?}",
        audit_fills.len(),
        audit_set.len()
    );
    assert_eq!(audit_fills.len(), audit_set.len(), "no fill audited twice");
    assert!(
        audit_set.len() + 20 >= want_ids.len(),
        "at most the fills of a cut-off input unlogged per kill"
    );
    assert_eq!(
        reconciled,
        vec![Some(0); 3],
        "each life reconciled at start, no break"
    );

    // A new life in process: the reference's book, exactly.
    let mut svc = env.spawn(in_process).await;
    let snap = want.snapshot().unwrap();
    let account = svc.account().await;
    assert_eq!(d(account.cash.as_ref()), snap.cash);
    assert_eq!(d(account.equity.as_ref()), snap.equity);
    let orders = svc.all_orders(1000).await;
    assert_eq!(orders.len(), want.orders().len());
    // Every cancellation took effect once, as in the reference.
    let got_cancelled = orders
        .iter()
        .filter(|o| o.status == v1::OrderStatus::Cancelled as i32)
        .count();
    let want_cancelled = want
        .orders()
        .iter()
        .filter(|o| o.status == grodt_core::OrderStatus::Cancelled)
        .count();
    let asked = sent.iter().filter(|s| matches!(s, Sent::Cancel(_))).count();
    println!(
        "cancellations: {asked} sent, {got_cancelled} orders cancelled (reference {want_cancelled})"
    );
    assert!(asked > 10, "cancellations in flight: {asked}");
    assert!(
        cancels_audited >= asked.saturating_sub(2),
        "each cancellation audited once it was journaled (a kill may cut one off): {cancels_audited} of {asked}"
    );
    assert_eq!(got_cancelled, want_cancelled);
    let m = svc.metrics().await;
    assert!(m.contains("grodt_execution_reconciliation_breaks 0"), "{m}");
    svc.stop().await;
}
