//! `grodt paper --portfolio FILE`: a portfolio paper-traded end to end on
//! one machine (docs/portfolio.md, "Paper trading a portfolio"). The seven
//! services start embedded; execution runs the file's desk
//! (`[execution] portfolio`: sub-ledgers, allocation, rebalancing, limits,
//! netting), the strategy service runs the file's strategies
//! (`[strategy.portfolio]`, one instance per strategy with the capital the
//! desk opens its sub-ledger with), risk checks every order between them;
//! the file's data is fed in lockstep (each bar once every member trading
//! its symbol saw the last and execution holds every order they decided).
//! The run then stops the members with `cancel_open_orders` and compares,
//! strategy by strategy, every fill execution booked to it with `grodt
//! backtest --portfolio` of the same bars, and the account's equity with the
//! backtest's: any difference fails the command.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use grodt_analytics::MetricsConfig;
use grodt_backtest::portfolio::load_portfolio_series;
use grodt_core::{Decimal, Fill};
use grodt_kit::config::ConfigSource;
use grodt_portfolio::file::PortfolioFile;
use grodt_proto::v1;
use grodt_proto::v1::execution_service_client::ExecutionServiceClient;
use grodt_proto::v1::strategy_service_client::StrategyServiceClient;

use crate::paper::{
    FeedBar, FillRow, PaperCliError, PaperOptions, Running, all_fills, channel, dec, lockstep_feed,
    ns, rpc, scrape_counter, side_name, stop_and_cancel, tempdir_for, time_text,
};
use crate::up;

/// One strategy's fills on paper and in the backtest.
#[derive(Debug, Clone)]
pub struct MemberParity {
    /// The strategy's id in the file.
    pub id: String,
    /// Fills execution booked to it (its share of net fills, and crosses),
    /// in time order.
    pub paper: Vec<FillRow>,
    /// Its fills in the backtest.
    pub backtest: Vec<FillRow>,
}

/// What a portfolio paper run did, beside its backtest.
#[derive(Debug, Clone)]
pub struct PortfolioPaperOutcome {
    /// The file's name.
    pub name: String,
    /// Timestamps replayed.
    pub timestamps: usize,
    /// Per strategy, in file order.
    pub members: Vec<MemberParity>,
    /// The paper account's equity at the end.
    pub equity: Decimal,
    /// The backtest account's.
    pub backtest_equity: Decimal,
    /// Commission netting saved in the backtest.
    pub commission_saved: Decimal,
    /// Orders that reached execution after a later bar of their symbol.
    pub late_orders: u64,
    /// Orders cancelled by the closing Stop.
    pub cancelled_at_end: u64,
}

impl PortfolioPaperOutcome {
    /// Every difference, named (empty when paper equals the backtest).
    pub fn divergence(&self) -> Vec<String> {
        let mut out = Vec::new();
        for m in &self.members {
            if m.paper.len() != m.backtest.len() {
                out.push(format!(
                    "{}: {} fills on paper, {} in the backtest",
                    m.id,
                    m.paper.len(),
                    m.backtest.len()
                ));
            }
            if let Some(k) =
                (0..m.paper.len().min(m.backtest.len())).find(|&k| m.paper[k] != m.backtest[k])
            {
                out.push(format!(
                    "{}: fill {k} differs: paper {:?}, backtest {:?}",
                    m.id, m.paper[k], m.backtest[k]
                ));
            }
        }
        if self.equity != self.backtest_equity {
            out.push(format!(
                "equity {} on paper, {} in the backtest",
                self.equity, self.backtest_equity
            ));
        }
        out
    }

    /// The report printed by the command.
    pub fn render(&self) -> String {
        let mut out = format!(
            "paper run of portfolio {:?}: {} timestamps replayed\n\n  {:<10} {:>12} {:>12}\n",
            self.name, self.timestamps, "strategy", "paper fills", "backtest"
        );
        for m in &self.members {
            out.push_str(&format!(
                "  {:<10} {:>12} {:>12}\n",
                m.id,
                m.paper.len(),
                m.backtest.len()
            ));
        }
        for m in &self.members {
            out.push_str(&format!("\n{} fills on paper:\n", m.id));
            for f in &m.paper {
                out.push_str(&format!(
                    "  {:<20} {:<4} {:>14} {:>14} {:>10}\n",
                    time_text(f.ts),
                    f.side,
                    f.qty,
                    f.price,
                    f.commission
                ));
            }
        }
        let differ = self.divergence();
        out.push_str(&format!(
            "\naccount equity {} (backtest {}), commission saved by netting in the backtest {}\n\
             {} late orders, {} orders cancelled by the closing Stop\n\
             divergence: {}\n",
            self.equity,
            self.backtest_equity,
            self.commission_saved,
            self.late_orders,
            self.cancelled_at_end,
            if differ.is_empty() {
                "none".to_owned()
            } else {
                differ.join("; ")
            }
        ));
        out
    }
}

/// The backtest flags `grodt backtest --portfolio FILE` runs with by default.
#[derive(Debug, clap::Parser)]
struct Defaults {
    #[command(flatten)]
    options: crate::backtest::BacktestOptions,
}

fn usage(reason: impl std::fmt::Display) -> PaperCliError {
    PaperCliError::Usage {
        arg: "--portfolio",
        reason: reason.to_string(),
    }
}

fn local(e: impl std::fmt::Display) -> PaperCliError {
    PaperCliError::Local(e.to_string())
}

fn row(ts: i64, side: grodt_core::Side, qty: Decimal, price: Decimal, fee: Decimal) -> FillRow {
    FillRow {
        ts,
        side: side_name(side),
        qty,
        price,
        commission: fee,
    }
}

/// Fills in a comparable order: a member can have several fills on one bar
/// (a cross and its share of the net order) that the two sides list in
/// different orders.
fn sorted(mut rows: Vec<FillRow>) -> Vec<FillRow> {
    rows.sort_by(|a, b| {
        (a.ts, a.side, a.qty, a.price, a.commission).cmp(&(
            b.ts,
            b.side,
            b.qty,
            b.price,
            b.commission,
        ))
    });
    rows
}

/// Runs the portfolio file on paper and beside its backtest.
///
/// # Errors
/// An unreadable or invalid file (named), a service that refused, a timeout.
pub async fn run(
    options: &PaperOptions,
    path: &Path,
) -> Result<PortfolioPaperOutcome, PaperCliError> {
    let path = std::path::absolute(path).map_err(local)?;
    let text =
        std::fs::read_to_string(&path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    let file = PortfolioFile::parse(&text).map_err(usage)?;
    let shown = path.display().to_string();
    let defaults = <Defaults as clap::Parser>::try_parse_from(["grodt", "--portfolio", &shown])
        .map_err(usage)?;
    let config = crate::portfolio::config_of(&file, &defaults.options).map_err(usage)?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let mut series = load_portfolio_series(&file, base).map_err(local)?;
    let mut stamps = grodt_backtest::portfolio::timestamps(&series);
    if options.bars > 0 && stamps.len() > options.bars {
        let from = stamps[stamps.len() - options.bars];
        stamps.drain(..stamps.len() - options.bars);
        for s in &mut series {
            s.bars.retain(|b| b.ts >= from);
        }
    }
    // The reference first: a file the engine refuses fails before anything starts.
    let reference = grodt_backtest::portfolio::run_portfolio(
        &file,
        &config,
        &series,
        &MetricsConfig::default(),
    )
    .map_err(|e| local(format!("reference backtest: {e}")))?
    .result;
    let label = options.timeframe.clone().unwrap_or_else(|| "1d".into());
    let timeframe = grodt_strategy::convert::timeframe_from_label(&label).ok_or_else(|| {
        PaperCliError::Usage {
            arg: "--timeframe",
            reason: format!("unknown {label:?}"),
        }
    })? as i32;

    // The services' configuration: the desk and the members from the file,
    // the venue's models and cash as the backtest's, the file's grids.
    let temp = tempdir_for(options)?;
    let config_dir = temp.join("config");
    std::fs::create_dir_all(&config_dir).map_err(local)?;
    let quoted = toml::Value::String(shown.clone()).to_string();
    let mut execution = toml::Table::new();
    execution.insert("portfolio".into(), toml::Value::String(shown.clone()));
    execution.insert(
        "venue".into(),
        toml::Value::try_from(&config).map_err(local)?,
    );
    let mut root = toml::Table::new();
    root.insert("execution".into(), toml::Value::Table(execution));
    let mut text = format!("{}\n", toml::to_string(&root).map_err(local)?);
    for side in ["execution", "strategy"] {
        for s in &series {
            text.push_str(&format!(
                "[{side}.instruments.symbols.{}]\nprice_precision = {}\nsize_precision = {}\n\n",
                s.instrument.id, s.instrument.price_precision, s.instrument.size_precision
            ));
        }
    }
    text.push_str(&format!(
        "[strategy.portfolio]\nfile = {quoted}\ntimeframe = \"{label}\"\nstart = true\ncost_dp = {}\n",
        config.cost_dp
    ));
    std::fs::write(config_dir.join("base.toml"), text).map_err(local)?;
    let source = ConfigSource {
        dir: config_dir,
        vars: std::collections::HashMap::new(),
    };
    let configs = up::load_configs(&source, true, IpAddr::V4(Ipv4Addr::LOCALHOST))?;
    let infra = up::embedded_infra(&temp).await?;
    let servers = up::bind_all(configs, &infra, &source, &temp).await?;
    let find = |name: &str| servers.iter().find(|(n, _)| *n == name).map(|(_, s)| s);
    let (Some(st), Some(ex)) = (find("strategy"), find("execution")) else {
        return Err(local("a service is missing"));
    };
    let (st, ex, ex_http) = (st.grpc_addr(), ex.grpc_addr(), ex.http_addr());
    let running = Running::start(servers);
    let outcome = drive(&file, &series, timeframe, &*infra.bus, (st, ex)).await;
    let late_orders = scrape_counter(ex_http, "grodt_execution_late_orders_total").await;
    running.stop().await;
    infra.store.close().await;
    let (mut paper, equity, cancelled_at_end) = outcome?;
    let members = reference
        .members
        .iter()
        .map(|m| {
            let backtest = m
                .fills
                .iter()
                .map(|f: &Fill| {
                    row(
                        f.ts,
                        f.side,
                        f.qty.to_decimal(),
                        f.price.to_decimal(),
                        // Both are non-negative amounts: their difference is in range.
                        f.commission - f.rebate,
                    )
                })
                .collect();
            MemberParity {
                id: m.id.clone(),
                paper: sorted(paper.remove(&m.id).unwrap_or_default()),
                backtest: sorted(backtest),
            }
        })
        .collect();
    Ok(PortfolioPaperOutcome {
        name: file.name.clone().unwrap_or_else(|| shown.clone()),
        timestamps: stamps.len(),
        members,
        equity,
        backtest_equity: reference
            .account
            .equity
            .last()
            .map_or(config.starting_cash, |p| p.equity),
        commission_saved: reference.netting.commission_saved,
        late_orders: late_orders
            .ok_or_else(|| local("execution's late-order counter could not be read"))?,
        cancelled_at_end,
    })
}

type PaperFills = std::collections::HashMap<String, Vec<FillRow>>;

/// Feeds the bars in lockstep, stops the members, and reads every fill
/// (by strategy) and the account's equity.
async fn drive(
    file: &PortfolioFile,
    series: &[grodt_backtest::Series],
    timeframe: i32,
    bus: &dyn grodt_bus::EventBus,
    (st, ex): (std::net::SocketAddr, std::net::SocketAddr),
) -> Result<(PaperFills, Decimal, u64), PaperCliError> {
    let mut strategy = StrategyServiceClient::new(channel(st).await?);
    let mut execution = ExecutionServiceClient::new(channel(ex).await?);
    let mut feed = Vec::new();
    let mut cursor = vec![0usize; series.len()];
    while let Some(t) = series
        .iter()
        .zip(&cursor)
        .filter_map(|(s, &k)| s.bars.get(k).map(|b| b.ts))
        .min()
    {
        for (i, s) in series.iter().enumerate() {
            if let Some(b) = s.bars.get(cursor[i]).filter(|b| b.ts == t) {
                cursor[i] += 1;
                feed.push(FeedBar {
                    symbol: s.instrument.id.clone(),
                    bar: *b,
                    precisions: (s.instrument.price_precision, s.instrument.size_precision),
                });
            }
        }
    }
    let instances: Vec<(String, Vec<String>)> = file
        .strategies
        .iter()
        .map(|e| (e.id.clone(), e.symbols.clone()))
        .collect();
    lockstep_feed(
        bus,
        &feed,
        timeframe,
        &instances,
        &mut strategy,
        &mut execution,
    )
    .await?;
    // Ends the run as an operator would: every member stopped with its
    // open orders cancelled (those decided on the last bar: no bar follows).
    let ids: Vec<String> = instances.iter().map(|(id, _)| id.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let cancelled = stop_and_cancel(&mut strategy, &mut execution, &ids, deadline).await?;
    let mut fills = PaperFills::new();
    for f in all_fills(&mut execution).await? {
        let side = if f.side == v1::Side::Buy as i32 {
            grodt_core::Side::Buy
        } else {
            grodt_core::Side::Sell
        };
        fills.entry(f.strategy_id.clone()).or_default().push(row(
            ns(f.filled_at.as_ref()),
            side,
            dec(f.quantity.as_ref()),
            dec(f.price.as_ref()),
            dec(f.commission.as_ref()),
        ));
    }
    let account = execution
        .get_account(v1::GetAccountRequest {})
        .await
        .map_err(rpc("GetAccount"))?
        .into_inner();
    Ok((fills, dec(account.equity.as_ref()), cancelled))
}

/// The command: runs, prints, and fails on any difference.
///
/// # Errors
/// As [`run`], and [`PaperCliError::Divergence`] naming the differences.
pub async fn command(options: &PaperOptions, path: &Path) -> Result<String, PaperCliError> {
    let outcome = run(options, path).await?;
    let text = outcome.render();
    let differ = outcome.divergence();
    if differ.is_empty() {
        Ok(text)
    } else {
        print!("{text}");
        Err(PaperCliError::Divergence(differ.join("; ")))
    }
}
