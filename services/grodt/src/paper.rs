//! `grodt paper`: paper trading end to end on one machine. Starts the seven
//! services embedded (in-process bus, SQLite in a temporary directory),
//! imports a CSV file into market-data, deploys a strategy instance, replays
//! the bars through market-data -> execution -> strategy -> risk ->
//! execution, then prints the fills and the account, and checks them against
//! a backtest of the same strategy on the same bars (docs/paper.md): every
//! fill and the final equity must be equal, or the command fails.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use grodt_core::{Bar, Decimal, Instrument};
use grodt_kit::config::ConfigSource;
use grodt_proto::v1;
use grodt_proto::v1::execution_service_client::ExecutionServiceClient;
use grodt_proto::v1::market_data_service_client::MarketDataServiceClient;
use grodt_proto::v1::strategy_service_client::StrategyServiceClient;
use grodt_sim::config::BacktestConfig;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::data::{ImportArgs, import_spec};
use crate::up;

/// Options of `grodt paper`.
#[derive(Debug, Clone, clap::Args)]
pub struct PaperOptions {
    /// The CSV file to replay (`timestamp,open,high,low,close,volume`, or a
    /// layout `grodt backtest` detects).
    #[arg(long, required_unless_present = "portfolio")]
    pub data: Option<PathBuf>,
    /// Paper-trade a portfolio file instead (docs/portfolio.md): its
    /// strategies run in the strategy service, its desk in execution, its
    /// data replayed in lockstep; the result must equal `grodt backtest
    /// --portfolio` of the same bars. `--bars` keeps the last N timestamps.
    #[arg(long, conflicts_with_all = ["data", "strategy", "params", "symbol", "cash", "fractional", "timed"])]
    pub portfolio: Option<PathBuf>,
    /// Instrument symbol; guessed from `sym_tf_...csv` when absent.
    #[arg(long)]
    pub symbol: Option<String>,
    /// Bar length (1m ... 1M); guessed from the file name when absent.
    #[arg(long)]
    pub timeframe: Option<String>,
    /// A registered strategy (`grodt strategies` lists them).
    #[arg(long, default_value = "sma_cross")]
    pub strategy: String,
    /// A strategy parameter, `name=value`; repeatable.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Starting cash of the paper account and capital of the instance.
    #[arg(long, default_value = "100000")]
    pub cash: Decimal,
    /// Trade fractional quantities (crypto): size precision 8.
    #[arg(long)]
    pub fractional: bool,
    /// Replay only the last N bars of the file (0 = all of them).
    #[arg(long, default_value_t = 500)]
    pub bars: usize,
    /// With `--timed`: wall-clock milliseconds between replayed bars. The
    /// pipeline must take less than this per bar, or orders miss their bar
    /// (docs/paper.md).
    #[arg(long, default_value_t = 40)]
    pub bar_ms: u64,
    /// Keep the embedded database here instead of a temporary directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Replay through market-data's timed replay (`--bar-ms` apart), as a
    /// live feed arrives, instead of publishing the bars from here in
    /// lockstep (each once the strategy saw the last and execution holds
    /// every order it decided: exact at any speed and load). A timed replay
    /// faster than the pipeline makes orders miss their bar (counted late).
    #[arg(long)]
    pub timed: bool,
}

/// Why `grodt paper` failed.
#[derive(Debug, thiserror::Error)]
pub enum PaperCliError {
    /// A bad option (named).
    #[error("{arg}: {reason}")]
    Usage {
        /// The option.
        arg: &'static str,
        /// Why.
        reason: String,
    },
    /// The embedded services could not start.
    #[error(transparent)]
    Up(#[from] up::UpError),
    /// A service refused a call.
    #[error("{call}: {status}")]
    Rpc {
        /// The call.
        call: &'static str,
        /// The service's answer.
        status: Box<tonic::Status>,
    },
    /// The pipeline did not finish in time.
    #[error("timed out waiting for {what}")]
    Timeout {
        /// What did not happen.
        what: String,
    },
    /// The paper run and the backtest differ.
    #[error("paper and backtest differ: {0}")]
    Divergence(String),
    /// A local step failed (reading the file, the reference backtest).
    #[error("{0}")]
    Local(String),
}

pub(crate) fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> PaperCliError {
    move |status| PaperCliError::Rpc {
        call,
        status: Box::new(status),
    }
}

/// One fill as both sides report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillRow {
    /// Bar open time (ns).
    pub ts: i64,
    /// `buy` or `sell`.
    pub side: &'static str,
    /// Quantity.
    pub qty: Decimal,
    /// Price.
    pub price: Decimal,
    /// Commission net of rebates.
    pub commission: Decimal,
}

/// What a paper run produced, and its backtest.
#[derive(Debug, Clone)]
pub struct PaperOutcome {
    /// The paper fills, in order.
    pub fills: Vec<FillRow>,
    /// The paper account.
    pub account: v1::GetAccountResponse,
    /// The backtest's fills.
    pub backtest_fills: Vec<FillRow>,
    /// The backtest's final equity.
    pub backtest_equity: Decimal,
    /// Bars replayed.
    pub bars: usize,
    /// Orders that reached the venue after a later bar of their symbol
    /// (execution's `grodt_execution_late_orders_total`).
    pub late_orders: u64,
    /// Orders left working after the last bar, cancelled by the Stop that
    /// ends the run.
    pub cancelled_at_end: u64,
    /// Orders the backtest left working after the last bar.
    pub backtest_open_orders: u64,
}

impl PaperOutcome {
    /// The fills that differ (index, paper, backtest), and the equity gap.
    pub fn divergence(&self) -> (Vec<usize>, Decimal) {
        let n = self.fills.len().max(self.backtest_fills.len());
        let differ = (0..n)
            .filter(|&k| self.fills.get(k) != self.backtest_fills.get(k))
            .collect();
        let equity = self
            .account
            .equity
            .as_ref()
            .and_then(|d| d.value.parse::<Decimal>().ok())
            .unwrap_or_default();
        // A gap beyond the decimal range shows as ±MAX: still a divergence.
        (differ, equity.saturating_sub(self.backtest_equity))
    }

    /// The report printed by the command.
    pub fn render(&self) -> String {
        let mut out = format!(
            "paper run: {} bars replayed, {} fills\n\n  {:<20} {:<4} {:>14} {:>14} {:>10}\n",
            self.bars,
            self.fills.len(),
            "time (UTC)",
            "side",
            "quantity",
            "price",
            "commission"
        );
        for f in &self.fills {
            out.push_str(&format!(
                "  {:<20} {:<4} {:>14} {:>14} {:>10}\n",
                time_text(f.ts),
                f.side,
                f.qty,
                f.price,
                f.commission
            ));
        }
        let a = &self.account;
        let d = |x: &Option<v1::Decimal>| x.as_ref().map_or("-".into(), |d| d.value.clone());
        out.push_str(&format!(
            "\naccount {} ({}): cash {}  equity {}  realized {}  unrealized {}  commissions {}\n",
            a.account_id,
            a.currency,
            d(&a.cash),
            d(&a.equity),
            d(&a.realized_pnl),
            d(&a.unrealized_pnl),
            d(&a.commissions)
        ));
        let (differ, gap) = self.divergence();
        out.push_str(&format!(
            "backtest of the same bars: {} fills, equity {}\ndivergence: {} of {} fills differ, equity gap {}, {} late orders\n",
            self.backtest_fills.len(),
            self.backtest_equity,
            differ.len(),
            self.fills.len().max(self.backtest_fills.len()),
            gap,
            self.late_orders
        ));
        out.push_str(&format!(
            "stopped with cancel_open_orders: {} orders left working after the last bar cancelled \
             (the backtest left {} working)\n",
            self.cancelled_at_end, self.backtest_open_orders
        ));
        out
    }
}

pub(crate) fn time_text(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

fn parse_params(raw: &[String]) -> Result<BTreeMap<String, String>, PaperCliError> {
    raw.iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| PaperCliError::Usage {
                    arg: "--param",
                    reason: format!("{p:?} is not NAME=VALUE"),
                })
        })
        .collect()
}

/// The bars and instrument the run trades, loaded as `grodt backtest` loads them.
/// The `--data` file (required without `--portfolio`).
fn data_file(options: &PaperOptions) -> Result<&PathBuf, PaperCliError> {
    options.data.as_ref().ok_or(PaperCliError::Usage {
        arg: "--data",
        reason: "required (or --portfolio)".into(),
    })
}

fn load(options: &PaperOptions, symbol: &str) -> Result<(Instrument, Vec<Bar>), PaperCliError> {
    let data = data_file(options)?;
    let raw = grodt_backtest::load_csv(data)
        .map_err(|e| PaperCliError::Local(format!("{}: {e}", data.display())))?;
    let series = grodt_backtest::series_from_bars(symbol, &raw, options.fractional)
        .map_err(|e| PaperCliError::Local(e.to_string()))?;
    let mut bars = series.bars;
    if options.bars > 0 && bars.len() > options.bars {
        bars.drain(..bars.len() - options.bars);
    }
    Ok((series.instrument, bars))
}

/// `[execution]` and `[strategy]` for the run: the instrument's grids (the
/// backtest's) and the account's cash.
fn write_config(dir: &Path, inst: &Instrument, cash: Decimal) -> Result<(), PaperCliError> {
    std::fs::create_dir_all(dir).map_err(|e| PaperCliError::Local(e.to_string()))?;
    let grids = format!(
        "price_precision = {}\nsize_precision = {}\n",
        inst.price_precision, inst.size_precision
    );
    let text = format!(
        "[execution.venue]\nstarting_cash = \"{cash}\"\n\n\
         [execution.instruments.symbols.{sym}]\n{grids}\n\
         [strategy.instruments.symbols.{sym}]\n{grids}",
        sym = inst.id
    );
    std::fs::write(dir.join("base.toml"), text).map_err(|e| PaperCliError::Local(e.to_string()))
}

pub(crate) async fn channel(addr: std::net::SocketAddr) -> Result<Channel, PaperCliError> {
    Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| PaperCliError::Local(e.to_string()))?
        .connect()
        .await
        .map_err(|e| PaperCliError::Local(format!("connecting {addr}: {e}")))
}

/// The import's asset class: fractional runs trade crypto (around the clock),
/// the rest equities (the NYSE calendars).
fn asset_class_of(options: &PaperOptions) -> &'static str {
    if options.fractional {
        "crypto"
    } else {
        "equity"
    }
}

/// Runs the whole thing; see the module doc.
///
/// # Errors
/// A bad option, a service that refused, a timeout, or a divergence.
pub async fn run(options: &PaperOptions) -> Result<PaperOutcome, PaperCliError> {
    let params = parse_params(&options.params)?;
    let import = ImportArgs {
        symbol: options.symbol.clone(),
        timeframe: options.timeframe.clone(),
        asset_class: Some(asset_class_of(options).into()),
        ..ImportArgs::of(data_file(options)?.clone())
    };
    let spec = import_spec(&import).map_err(|e| PaperCliError::Usage {
        arg: "--data",
        reason: e.to_string(),
    })?;
    let symbol = spec
        .instrument
        .as_ref()
        .map(|i| i.symbol.clone())
        .unwrap_or_default();
    let timeframe = spec.timeframe;
    let (inst, bars) = load(options, &symbol)?;
    let (Some(first), Some(last)) = (bars.first(), bars.last()) else {
        return Err(PaperCliError::Local("no bars".into()));
    };
    // The reference first: a strategy or parameter error is reported before
    // anything starts.
    let config = BacktestConfig {
        starting_cash: options.cash,
        ..BacktestConfig::default()
    };
    let mut strategy = grodt_strategies::registry::build(&options.strategy, &params, &inst)
        .map_err(|e| PaperCliError::Usage {
            arg: "--strategy/--param",
            reason: e.to_string(),
        })?;
    let reference = grodt_sim::run_backtest(
        &config,
        std::slice::from_ref(&inst),
        std::slice::from_ref(&bars),
        &mut *strategy,
    )
    .map_err(|e| PaperCliError::Local(format!("reference backtest: {e}")))?;
    let backtest_fills = reference
        .fills
        .iter()
        .map(|f| FillRow {
            ts: f.ts,
            side: side_name(f.side),
            qty: f.qty.to_decimal(),
            price: f.price.to_decimal(),
            // Both are non-negative amounts: their difference is in range.
            commission: f.commission - f.rebate,
        })
        .collect();

    let temp = tempdir_for(options)?;
    let config_dir = temp.join("config");
    write_config(&config_dir, &inst, options.cash)?;
    let source = ConfigSource {
        dir: config_dir,
        vars: std::collections::HashMap::new(),
    };
    let configs = up::load_configs(&source, true, IpAddr::V4(Ipv4Addr::LOCALHOST))?;
    let infra = up::embedded_infra(&temp).await?;
    let servers = up::bind_all(configs, &infra, &source, &temp).await?;
    let addr = |name: &str| {
        servers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.grpc_addr())
    };
    let exec_http = servers
        .iter()
        .find(|(n, _)| *n == "execution")
        .map(|(_, s)| s.http_addr());
    let (Some(md), Some(st), Some(ex)) = (addr("market-data"), addr("strategy"), addr("execution"))
    else {
        return Err(PaperCliError::Local("a service is missing".into()));
    };
    let running = Running::start(servers);
    let feed = if !options.timed {
        Feed::Lockstep {
            bus: infra.bus.clone(),
            bars: &bars,
            price_precision: inst.price_precision,
            size_precision: inst.size_precision,
        }
    } else {
        Feed::Replay {
            range: (first.ts, last.ts),
        }
    };
    let outcome = drive(
        options,
        &params,
        &symbol,
        timeframe,
        feed,
        bars.len(),
        (md, st, ex),
    )
    .await;
    let late_orders = match exec_http {
        Some(a) => scrape_counter(a, "grodt_execution_late_orders_total").await,
        None => None,
    };
    running.stop().await;
    infra.store.close().await;
    let (fills, account, cancelled_at_end) = outcome?;
    Ok(PaperOutcome {
        fills,
        account,
        cancelled_at_end,
        backtest_fills,
        backtest_equity: reference.last.equity,
        backtest_open_orders: reference
            .orders
            .iter()
            .filter(|o| !o.status().is_terminal())
            .count() as u64,
        bars: bars.len(),
        late_orders: late_orders.ok_or_else(|| {
            PaperCliError::Local("execution's late-order counter could not be read".into())
        })?,
    })
}

/// The embedded services, each serving until [`Running::stop`].
pub(crate) struct Running {
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Running {
    /// Serves every bound server in a task of its own.
    pub(crate) fn start(servers: Vec<(&'static str, grodt_kit::Server)>) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for (_, server) in servers {
            let mut rx = stop_rx.clone();
            tasks.spawn(async move {
                let _ = server
                    .run_until_stopped(async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await;
            });
        }
        Self { stop, tasks }
    }

    /// Stops every service and waits until all have.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

pub(crate) fn tempdir_for(options: &PaperOptions) -> Result<PathBuf, PaperCliError> {
    let dir = options.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "grodt-paper-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ))
    });
    std::fs::create_dir_all(&dir).map_err(|e| PaperCliError::Local(e.to_string()))?;
    Ok(dir)
}

pub(crate) const fn side_name(s: grodt_core::Side) -> &'static str {
    match s {
        grodt_core::Side::Buy => "buy",
        grodt_core::Side::Sell => "sell",
    }
}

fn ts(ns: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        nanos: i32::try_from(ns.rem_euclid(1_000_000_000)).unwrap_or(0),
    }
}

pub(crate) fn ns(t: Option<&prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
}

pub(crate) fn dec(d: Option<&v1::Decimal>) -> Decimal {
    d.and_then(|d| d.value.parse().ok()).unwrap_or_default()
}

/// Timeframe length in seconds, for the replay speed.
fn timeframe_seconds(tf: i32) -> f64 {
    use v1::Timeframe as T;
    match T::try_from(tf).unwrap_or(T::Unspecified) {
        T::Minute1 => 60.0,
        T::Minute5 => 300.0,
        T::Minute15 => 900.0,
        T::Minute30 => 1_800.0,
        T::Hour1 => 3_600.0,
        T::Hour4 => 14_400.0,
        T::Week1 => 604_800.0,
        T::Month1 => 2_592_000.0,
        _ => 86_400.0,
    }
}

type Addrs = (
    std::net::SocketAddr,
    std::net::SocketAddr,
    std::net::SocketAddr,
);

/// Where the bars come from.
enum Feed<'a> {
    /// market-data imports the file and replays `range` at the option's pace.
    Replay {
        /// First and last bar time (ns).
        range: (i64, i64),
    },
    /// Published here, one at a time, each after the pipeline settled.
    Lockstep {
        bus: std::sync::Arc<dyn grodt_bus::EventBus>,
        bars: &'a [Bar],
        price_precision: u8,
        size_precision: u8,
    },
}

/// market-data imports the file and replays `from..=to` at the option's pace.
async fn replay(
    market: &mut MarketDataServiceClient<Channel>,
    options: &PaperOptions,
    symbol: &str,
    timeframe: i32,
    (from, to): (i64, i64),
) -> Result<(), PaperCliError> {
    let data = data_file(options)?;
    let path = std::path::absolute(data).map_err(|e| PaperCliError::Local(e.to_string()))?;
    let import = ImportArgs {
        symbol: Some(symbol.to_owned()),
        timeframe: options.timeframe.clone(),
        asset_class: Some(asset_class_of(options).into()),
        ..ImportArgs::of(data.clone())
    };
    let spec = import_spec(&import).map_err(|e| PaperCliError::Local(e.to_string()))?;
    let imported = market
        .import_csv(v1::ImportCsvRequest {
            path: path.display().to_string(),
            spec: Some(spec),
        })
        .await
        .map_err(rpc("ImportCsv"))?
        .into_inner();
    let dataset = imported
        .dataset
        .ok_or_else(|| PaperCliError::Local("the import stored no dataset".into()))?;
    let speed = timeframe_seconds(timeframe) * 1_000.0 / options.bar_ms.max(1) as f64;
    market
        .start_replay(v1::StartReplayRequest {
            dataset_id: dataset.dataset_id.clone(),
            range: Some(v1::TimeRange {
                start: Some(ts(from)),
                end: Some(ts(to + 1)),
            }),
            speed,
            replay_id: String::new(),
        })
        .await
        .map_err(rpc("StartReplay"))?;
    Ok(())
}

async fn drive(
    options: &PaperOptions,
    params: &BTreeMap<String, String>,
    symbol: &str,
    timeframe: i32,
    feed: Feed<'_>,
    n: usize,
    (md, st, ex): Addrs,
) -> Result<(Vec<FillRow>, v1::GetAccountResponse, u64), PaperCliError> {
    let mut market = MarketDataServiceClient::new(channel(md).await?);
    let mut strategy = StrategyServiceClient::new(channel(st).await?);
    let mut execution = ExecutionServiceClient::new(channel(ex).await?);
    let instance_id = format!("paper-{}", options.strategy.replace('_', "-"));
    strategy
        .deploy(v1::DeployRequest {
            instance_id: instance_id.clone(),
            strategy_name: options.strategy.clone(),
            params: params.clone().into_iter().collect(),
            symbols: vec![symbol.to_owned()],
            timeframe,
            allowed_regimes: Vec::new(),
            capital: Some(v1::Decimal {
                value: options.cash.to_string(),
            }),
            start: true,
        })
        .await
        .map_err(rpc("Deploy"))?;
    match feed {
        Feed::Replay { range } => {
            replay(&mut market, options, symbol, timeframe, range).await?;
        }
        Feed::Lockstep {
            bus,
            bars,
            price_precision,
            size_precision,
        } => {
            lockstep(
                &*bus,
                bars,
                symbol,
                timeframe,
                (price_precision, size_precision),
                &instance_id,
                &mut strategy,
                &mut execution,
            )
            .await?;
        }
    }
    // Done when the instance saw every bar and execution holds every order
    // it asked for, and nothing moved for a while.
    let deadline = Instant::now() + Duration::from_millis(options.bar_ms * n as u64 * 3 + 60_000);
    let mut quiet_since: Option<(u64, u64, usize, Instant)> = None;
    let mut seen = String::new();
    loop {
        if Instant::now() > deadline {
            return Err(PaperCliError::Timeout {
                what: format!("{n} bars through the pipeline (last seen: {seen})"),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let state = strategy
            .get_state(v1::GetStateRequest {
                instance_id: instance_id.clone(),
            })
            .await
            .map_err(rpc("GetState"))?
            .into_inner()
            .instance
            .unwrap_or_default();
        if state.state == v1::InstanceState::Failed as i32 {
            return Err(PaperCliError::Local(format!(
                "instance failed: {}",
                state.error
            )));
        }
        let orders = list_orders(&mut execution).await?;
        let open = orders
            .iter()
            .filter(|o| {
                let s = v1::OrderStatus::try_from(o.status).unwrap_or(v1::OrderStatus::Unspecified);
                matches!(s, v1::OrderStatus::New | v1::OrderStatus::Unspecified)
            })
            .count();
        let now = (state.bars_processed, state.intents_emitted, orders.len());
        seen = format!(
            "instance {} bars {} intents {}, {} orders at execution, {open} not yet accepted",
            state.instance_id, now.0, now.1, now.2
        );
        let settled = state.bars_processed >= n as u64
            && orders.len() as u64 >= state.intents_emitted
            && open == 0;
        match quiet_since {
            Some((b, i, o, since)) if (b, i, o) == now => {
                if settled && since.elapsed() > Duration::from_millis(500) {
                    break;
                }
            }
            _ => quiet_since = Some((now.0, now.1, now.2, Instant::now())),
        }
    }
    let ids = [instance_id.clone()];
    let cancelled = stop_and_cancel(&mut strategy, &mut execution, &ids, deadline).await?;
    let (fills, account) = fills_and_account(&mut execution).await?;
    Ok((fills, account, cancelled))
}

/// Ends the run as an operator would: every instance stopped with
/// `cancel_open_orders`, so the orders decided on the last bar (left
/// working: no bar follows to fill them) are cancelled through risk and
/// execution. Returns how many; waits until execution holds no working order.
pub(crate) async fn stop_and_cancel(
    strategy: &mut StrategyServiceClient<Channel>,
    execution: &mut ExecutionServiceClient<Channel>,
    instance_ids: &[String],
    deadline: Instant,
) -> Result<u64, PaperCliError> {
    let mut cancels = 0;
    for instance_id in instance_ids {
        strategy
            .stop(v1::StopRequest {
                instance_id: instance_id.clone(),
                cancel_open_orders: true,
                flatten: false,
                reason: "the paper run is over".into(),
            })
            .await
            .map_err(rpc("Stop"))?;
        cancels += strategy
            .get_state(v1::GetStateRequest {
                instance_id: instance_id.clone(),
            })
            .await
            .map_err(rpc("GetState"))?
            .into_inner()
            .instance
            .unwrap_or_default()
            .cancels_emitted;
    }
    loop {
        let working = list_orders(execution)
            .await?
            .iter()
            .filter(|o| {
                use v1::OrderStatus as S;
                !matches!(
                    S::try_from(o.status),
                    Ok(S::Filled | S::Cancelled | S::Rejected | S::Expired)
                )
            })
            .count();
        if working == 0 {
            return Ok(cancels);
        }
        if Instant::now() > deadline {
            return Err(PaperCliError::Timeout {
                what: format!("{working} orders still working after Stop with cancel_open_orders"),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every fill execution holds, order by order (ListOrders, then GetOrder).
///
/// # Errors
/// A call execution refused.
pub(crate) async fn all_fills(
    execution: &mut ExecutionServiceClient<Channel>,
) -> Result<Vec<v1::Fill>, PaperCliError> {
    let mut fills = Vec::new();
    for o in list_orders(execution).await? {
        let got = execution
            .get_order(v1::GetOrderRequest {
                order: Some(v1::OrderRef {
                    id: Some(v1::order_ref::Id::OrderId(o.order_id.clone())),
                }),
            })
            .await
            .map_err(rpc("GetOrder"))?
            .into_inner();
        fills.extend(got.fills);
    }
    Ok(fills)
}

/// Every fill execution holds (oldest first) and the account.
///
/// # Errors
/// A call execution refused.
pub async fn fills_and_account(
    execution: &mut ExecutionServiceClient<Channel>,
) -> Result<(Vec<FillRow>, v1::GetAccountResponse), PaperCliError> {
    let mut fills = all_fills(execution).await?;
    fills.sort_by(|a, b| {
        ns(a.filled_at.as_ref())
            .cmp(&ns(b.filled_at.as_ref()))
            .then_with(|| a.fill_id.cmp(&b.fill_id))
    });
    let rows = fills
        .iter()
        .map(|f| FillRow {
            ts: ns(f.filled_at.as_ref()),
            side: if f.side == v1::Side::Buy as i32 {
                "buy"
            } else {
                "sell"
            },
            qty: dec(f.quantity.as_ref()),
            price: dec(f.price.as_ref()),
            commission: dec(f.commission.as_ref()),
        })
        .collect();
    let account = execution
        .get_account(v1::GetAccountRequest {})
        .await
        .map_err(rpc("GetAccount"))?
        .into_inner();
    Ok((rows, account))
}

pub(crate) async fn list_orders(
    execution: &mut ExecutionServiceClient<Channel>,
) -> Result<Vec<v1::Order>, PaperCliError> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = execution
            .list_orders(v1::ListOrdersRequest {
                page: Some(v1::PageRequest {
                    page_size: 500,
                    page_token: token.clone(),
                }),
                ..Default::default()
            })
            .await
            .map_err(rpc("ListOrders"))?
            .into_inner();
        out.extend(page.orders);
        token = page.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            return Ok(out);
        }
    }
}

/// The command: runs, prints, and fails on a divergence.
///
/// # Errors
/// As [`run`], and [`PaperCliError::Divergence`] when any fill or the final
/// equity differs from the backtest.
pub async fn command(options: &PaperOptions) -> Result<String, PaperCliError> {
    if let Some(file) = &options.portfolio {
        return crate::paper_portfolio::command(options, file).await;
    }
    let outcome = run(options).await?;
    let text = outcome.render();
    let (differ, gap) = outcome.divergence();
    if differ.is_empty() && gap.is_zero() {
        Ok(text)
    } else {
        print!("{text}");
        Err(PaperCliError::Divergence(format!(
            "{} fills differ (first at index {}), equity gap {gap}",
            differ.len(),
            differ.first().copied().unwrap_or_default()
        )))
    }
}

/// One unlabelled counter from a service's `/metrics` (plain HTTP/1.0).
pub(crate) async fn scrape_counter(addr: std::net::SocketAddr, name: &str) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await.ok()?;
    body.lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|v| {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a counter: a whole, non-negative number"
            )]
            let n = v as u64;
            n
        })
}

/// A call that failed because the service is (re)starting.
fn is_transient(s: &tonic::Status) -> bool {
    matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown)
}

/// How long the lockstep driver waits for one bar to settle, outages of the
/// bus or of a service included.
const BAR_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between tries of a bus call while Redis is away.
const BUS_RETRY: Duration = Duration::from_millis(50);

/// A bus error that passes when Redis is back (restarting, unreachable).
fn transient(e: &grodt_bus::BusError) -> bool {
    use grodt_core::error::{Classify, ErrorKind};
    e.kind() == ErrorKind::Unavailable
}

/// Runs a bus call again while it fails transiently, until `deadline`.
async fn through_outage<T, F, Fut>(deadline: Instant, mut call: F) -> Result<T, grodt_bus::BusError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, grodt_bus::BusError>>,
{
    loop {
        match call().await {
            Err(e) if transient(&e) && Instant::now() < deadline => {
                tokio::time::sleep(BUS_RETRY).await;
            }
            other => return other,
        }
    }
}

/// A domain bar as the wire's, its decimals at the instrument's precisions.
fn bar_to_proto(symbol: &str, timeframe: i32, b: &Bar, (pp, sp): (u8, u8)) -> v1::Bar {
    let price = |raw: i64| {
        Some(v1::Decimal {
            value: grodt_core::Price::from_raw(raw, pp)
                .map(|p| p.to_decimal().normalize().to_string())
                .unwrap_or_default(),
        })
    };
    v1::Bar {
        symbol: symbol.to_owned(),
        timeframe,
        timestamp: Some(ts(b.ts)),
        open: price(b.open),
        high: price(b.high),
        low: price(b.low),
        close: price(b.close),
        volume: Some(v1::Decimal {
            value: grodt_core::Quantity::from_raw(b.volume, sp)
                .map(|q| q.to_decimal().normalize().to_string())
                .unwrap_or_default(),
        }),
    }
}

/// Publishes the bars one at a time on `grodt.bars.v1`, each under its own
/// `paper.bar` span (the root of that bar's trace); after each, waits
/// until the strategy has seen it and execution holds every order the
/// strategy decided so far, so no order can miss its bar whatever the speed.
/// Bus calls that fail because Redis is away (restarting) are tried again
/// until the bar's deadline ([`BAR_DEADLINE`]), as are calls to a service
/// that is restarting.
#[allow(
    clippy::too_many_arguments,
    reason = "the driver's parts, each used once"
)]
pub async fn lockstep(
    bus: &dyn grodt_bus::EventBus,
    bars: &[Bar],
    symbol: &str,
    timeframe: i32,
    precisions: (u8, u8),
    instance_id: &str,
    strategy: &mut StrategyServiceClient<Channel>,
    execution: &mut ExecutionServiceClient<Channel>,
) -> Result<(), PaperCliError> {
    let feed: Vec<FeedBar> = bars
        .iter()
        .map(|b| FeedBar {
            symbol: symbol.to_owned(),
            bar: *b,
            precisions,
        })
        .collect();
    let instances = [(instance_id.to_owned(), vec![symbol.to_owned()])];
    lockstep_feed(bus, &feed, timeframe, &instances, strategy, execution).await
}

/// One bar of a lockstep feed.
#[derive(Debug, Clone)]
pub struct FeedBar {
    /// Its symbol.
    pub symbol: String,
    /// The bar.
    pub bar: Bar,
    /// (price, size) precisions of its instrument.
    pub precisions: (u8, u8),
}

/// [`lockstep`] over bars of several symbols (in time order) and several
/// instances, each `(id, symbols it trades)`: after each bar, every
/// instance trading its symbol has seen it, and execution holds every order
/// and cancellation of every instance.
///
/// # Errors
/// As [`lockstep`].
pub async fn lockstep_feed(
    bus: &dyn grodt_bus::EventBus,
    feed: &[FeedBar],
    timeframe: i32,
    instances: &[(String, Vec<String>)],
    strategy: &mut StrategyServiceClient<Channel>,
    execution: &mut ExecutionServiceClient<Channel>,
) -> Result<(), PaperCliError> {
    use grodt_bus::{ConsumerName, GroupName, StartFrom, StreamName};
    use grodt_proto::topic::{Outgoing, Topic, decode};
    use tracing::Instrument as _;
    let bus_err = |e: grodt_bus::BusError| PaperCliError::Local(format!("bus: {e}"));
    let bars_stream = StreamName::parse(<v1::BarEvent as Topic>::STREAM).map_err(bus_err)?;
    let intents = StreamName::parse(<v1::OrderIntentEvent as Topic>::STREAM).map_err(bus_err)?;
    let group = GroupName::parse("paper-lockstep").map_err(bus_err)?;
    let me = ConsumerName::parse("paper-lockstep").map_err(bus_err)?;
    let deadline = Instant::now() + BAR_DEADLINE;
    through_outage(deadline, || {
        bus.ensure_group(&intents, &group, StartFrom::Beginning)
    })
    .await
    .map_err(bus_err)?;
    let mut decided: Vec<String> = Vec::new();
    let mut cancelled: Vec<String> = Vec::new();
    let (mut held, mut final_cancels) = (0usize, 0usize);
    // After a failed read, entries Redis delivered may never have reached
    // us (the reply was lost): they are pending to this reader, so it
    // claims its own pending entries before reading new ones.
    let mut reread = false;
    // Bars each instance must have seen so far.
    let mut expected = vec![0u64; instances.len()];
    for (k, fb) in feed.iter().enumerate() {
        let (symbol, b) = (fb.symbol.as_str(), &fb.bar);
        for ((_, symbols), e) in instances.iter().zip(&mut expected) {
            if symbols.iter().any(|s| s == symbol) {
                *e += 1;
            }
        }
        let event = v1::BarEvent {
            bar: Some(bar_to_proto(symbol, timeframe, b, fb.precisions)),
            dataset_id: String::new(),
            replay_id: "paper-lockstep".into(),
        };
        let out = Outgoing::new(&event);
        // One trace per bar, rooted here: every service's work on the bar,
        // down to the fills of the orders it decides, joins it.
        let span = tracing::info_span!("paper.bar", symbol, bar_ts = b.ts, bar = k);
        let (traceparent, tracestate) = span
            .in_scope(grodt_kit::telemetry::current_traceparent)
            .map_or((None, None), |(p, s)| {
                (Some(p), (!s.is_empty()).then_some(s))
            });
        let env = grodt_bus::Envelope::new(
            out.event_type(),
            chrono::DateTime::from_timestamp_nanos(b.ts),
            out.payload(),
        )
        .with_trace(traceparent, tracestate);
        let deadline = Instant::now() + BAR_DEADLINE;
        // The same envelope on every try: should a failed try have been
        // appended after all, consumers drop the copy by its event id.
        through_outage(deadline, || bus.publish(&bars_stream, &env))
            .instrument(span)
            .await
            .map_err(bus_err)?;
        let settled = |what: String| PaperCliError::Timeout {
            what: format!("bar {k} to settle: {what}"),
        };
        // The strategy saw bar k (execution applied it first: its report is
        // the strategy's clock).
        // Every instance trading the symbol saw bar k (execution applied it
        // first: its report is the strategy's clock); the intents and
        // cancellations of all of them so far.
        let mut emitted = (0u64, 0u64);
        for ((instance_id, _), &want) in instances.iter().zip(&expected) {
            let seen = loop {
                let state = match strategy
                    .get_state(v1::GetStateRequest {
                        instance_id: instance_id.clone(),
                    })
                    .await
                {
                    Ok(r) => r.into_inner().instance.unwrap_or_default(),
                    // A restarting service: ask again until the deadline.
                    Err(s) if is_transient(&s) && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    Err(s) => return Err(rpc("GetState")(s)),
                };
                if state.state == v1::InstanceState::Failed as i32 {
                    return Err(PaperCliError::Local(format!(
                        "instance {instance_id} failed: {}",
                        state.error
                    )));
                }
                if state.bars_processed >= want {
                    break (state.intents_emitted, state.cancels_emitted);
                }
                if Instant::now() > deadline {
                    return Err(settled(format!(
                        "{instance_id}: {} bars seen",
                        state.bars_processed
                    )));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            emitted = (emitted.0 + seen.0, emitted.1 + seen.1);
        }
        // Every intent decided so far is an order at execution, and every
        // cancellation has reached it (its order is final there).
        let (emitted, cancels) = emitted;
        while (decided.len() as u64) < emitted || (cancelled.len() as u64) < cancels {
            let read = if reread {
                bus.claim_stale(&intents, &group, &me, Duration::ZERO, 64)
                    .await
            } else {
                bus.consume(&intents, &group, &me, 64, Duration::from_millis(5))
                    .await
            };
            let batch = match read {
                Ok(batch) => {
                    reread = reread && !batch.is_empty();
                    batch
                }
                Err(e) if transient(&e) && Instant::now() < deadline => {
                    reread = true;
                    tokio::time::sleep(BUS_RETRY).await;
                    continue;
                }
                Err(e) => return Err(bus_err(e)),
            };
            for d in batch {
                if let Ok(i) = decode::<v1::OrderIntentEvent>(
                    &d.envelope.event_type,
                    d.envelope.payload.as_ref(),
                ) {
                    if let Some(o) = i.order
                        && !decided.contains(&o.client_order_id)
                    {
                        decided.push(o.client_order_id);
                    }
                    if let Some(c) = i.cancel
                        && !cancelled.contains(&c.client_order_id)
                    {
                        cancelled.push(c.client_order_id);
                    }
                }
                let entry = [d.entry_id];
                through_outage(deadline, || bus.ack(&intents, &group, &entry))
                    .await
                    .map_err(bus_err)?;
            }
            if Instant::now() > deadline {
                return Err(settled(format!(
                    "{} of {emitted} intents and {} of {cancels} cancellations read",
                    decided.len(),
                    cancelled.len()
                )));
            }
        }
        while held < decided.len() {
            let got = execution
                .get_order(v1::GetOrderRequest {
                    order: Some(v1::OrderRef {
                        id: Some(v1::order_ref::Id::ClientOrderId(decided[held].clone())),
                    }),
                })
                .await;
            match got {
                Ok(_) => held += 1,
                Err(s) if s.code() == tonic::Code::NotFound || is_transient(&s) => {
                    if Instant::now() > deadline {
                        return Err(settled(format!("order {} not at execution", decided[held])));
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(s) => return Err(rpc("GetOrder")(s)),
            }
        }
        while final_cancels < cancelled.len() {
            let got = execution
                .get_order(v1::GetOrderRequest {
                    order: Some(v1::OrderRef {
                        id: Some(v1::order_ref::Id::ClientOrderId(
                            cancelled[final_cancels].clone(),
                        )),
                    }),
                })
                .await;
            let done = match got {
                Ok(r) => r.into_inner().order.is_some_and(|o| {
                    use v1::OrderStatus as S;
                    matches!(
                        S::try_from(o.status),
                        Ok(S::Filled | S::Cancelled | S::Rejected | S::Expired)
                    )
                }),
                Err(s) if s.code() == tonic::Code::NotFound || is_transient(&s) => false,
                Err(s) => return Err(rpc("GetOrder")(s)),
            };
            if done {
                final_cancels += 1;
            } else if Instant::now() > deadline {
                return Err(settled(format!(
                    "cancellation of {} not final at execution",
                    cancelled[final_cancels]
                )));
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_and_name_a_bad_one() {
        let p = parse_params(&["fast=5".into(), " slow = 20 ".into()]).unwrap();
        assert_eq!(p["fast"], "5");
        assert_eq!(p["slow"], "20");
        let e = parse_params(&["nope".into()]).unwrap_err();
        assert!(e.to_string().contains("--param"), "{e}");
    }
}
