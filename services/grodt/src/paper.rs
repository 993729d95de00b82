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
    #[arg(long)]
    pub data: PathBuf,
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
    /// Wall-clock milliseconds between replayed bars. The pipeline must
    /// take less than this per bar, or orders miss their bar (docs/paper.md).
    #[arg(long, default_value_t = 40)]
    pub bar_ms: u64,
    /// Keep the embedded database here instead of a temporary directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
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

fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> PaperCliError {
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
        (differ, equity - self.backtest_equity)
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
            "backtest of the same bars: {} fills, equity {}\ndivergence: {} of {} fills differ, equity gap {}\n",
            self.backtest_fills.len(),
            self.backtest_equity,
            differ.len(),
            self.fills.len().max(self.backtest_fills.len()),
            gap
        ));
        out
    }
}

fn time_text(ns: i64) -> String {
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
fn load(options: &PaperOptions, symbol: &str) -> Result<(Instrument, Vec<Bar>), PaperCliError> {
    let raw = grodt_backtest::load_csv(&options.data)
        .map_err(|e| PaperCliError::Local(format!("{}: {e}", options.data.display())))?;
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

async fn channel(addr: std::net::SocketAddr) -> Result<Channel, PaperCliError> {
    Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| PaperCliError::Local(e.to_string()))?
        .connect()
        .await
        .map_err(|e| PaperCliError::Local(format!("connecting {addr}: {e}")))
}

/// Runs the whole thing; see the module doc.
///
/// # Errors
/// A bad option, a service that refused, a timeout, or a divergence.
pub async fn run(options: &PaperOptions) -> Result<PaperOutcome, PaperCliError> {
    let params = parse_params(&options.params)?;
    let import = ImportArgs {
        file: options.data.clone(),
        mapping: None,
        skip_lines: 0,
        delimiter: None,
        no_header: false,
        time_format: None,
        timezone: None,
        source: "local".into(),
        symbol: options.symbol.clone(),
        timeframe: options.timeframe.clone(),
        asset_class: if options.fractional {
            "crypto".into()
        } else {
            "equity".into()
        },
        upload: false,
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
    let (Some(md), Some(st), Some(ex)) = (addr("market-data"), addr("strategy"), addr("execution"))
    else {
        return Err(PaperCliError::Local("a service is missing".into()));
    };
    let (stop_tx, stop_rx) = watch::channel(false);
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
    let outcome = drive(
        options,
        &params,
        &symbol,
        timeframe,
        (first.ts, last.ts),
        bars.len(),
        (md, st, ex),
    )
    .await;
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    infra.store.close().await;
    let (fills, account) = outcome?;
    Ok(PaperOutcome {
        fills,
        account,
        backtest_fills,
        backtest_equity: reference.last.equity,
        bars: bars.len(),
    })
}

fn tempdir_for(options: &PaperOptions) -> Result<PathBuf, PaperCliError> {
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

const fn side_name(s: grodt_core::Side) -> &'static str {
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

fn ns(t: Option<&prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
}

fn dec(d: Option<&v1::Decimal>) -> Decimal {
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

async fn drive(
    options: &PaperOptions,
    params: &BTreeMap<String, String>,
    symbol: &str,
    timeframe: i32,
    (from, to): (i64, i64),
    n: usize,
    (md, st, ex): Addrs,
) -> Result<(Vec<FillRow>, v1::GetAccountResponse), PaperCliError> {
    let mut market = MarketDataServiceClient::new(channel(md).await?);
    let mut strategy = StrategyServiceClient::new(channel(st).await?);
    let mut execution = ExecutionServiceClient::new(channel(ex).await?);
    let path =
        std::path::absolute(&options.data).map_err(|e| PaperCliError::Local(e.to_string()))?;
    let import = ImportArgs {
        file: options.data.clone(),
        mapping: None,
        skip_lines: 0,
        delimiter: None,
        no_header: false,
        time_format: None,
        timezone: None,
        source: "local".into(),
        symbol: Some(symbol.to_owned()),
        timeframe: options.timeframe.clone(),
        asset_class: if options.fractional {
            "crypto".into()
        } else {
            "equity".into()
        },
        upload: false,
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
    let mut fills = Vec::new();
    for o in list_orders(&mut execution).await? {
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

async fn list_orders(
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
