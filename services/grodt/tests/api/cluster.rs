//! A cluster of `grodt serve` processes over one Redis prefix and one
//! Postgres database, each on ports fixed for its whole life, that a test
//! can kill with SIGKILL and start again.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn redis_url() -> String {
    std::env::var("GRODT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A port kept for the process's whole life: a killed service must come
/// back on the address its clients know (outside the ephemeral range, see
/// `service_port`).
pub fn free_port() -> u16 {
    grodt_store::testing::service_port()
}

pub struct Proc {
    /// The service `grodt serve` runs.
    pub name: &'static str,
    /// Its name in log files (two replicas of one service differ here).
    pub label: String,
    pub grpc: u16,
    pub http: u16,
    pub child: Option<Child>,
    pub starts: usize,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub struct Cluster {
    pub config_dir: PathBuf,
    pub prefix: String,
    /// The Redis every process of the cluster uses (the shared one, or a
    /// test's private server it restarts).
    pub redis_url: String,
    pub db_url: String,
    pub procs: Vec<Proc>,
    /// More environment for every process (e.g. the OTLP endpoint).
    pub env: Vec<(String, String)>,
}

/// The last `n` bars of the SPY daily sample, with its instrument.
pub fn spy_tail(n: usize) -> (grodt_core::Instrument, Vec<grodt_core::Bar>) {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/samples/spy_1d_1998-2021.csv");
    let raw = grodt_backtest::load_csv(&path).expect("sample");
    let series = grodt_backtest::series_from_bars("SPY", &raw, false).expect("series");
    let (inst, mut bars) = (series.instrument, series.bars);
    bars.drain(..bars.len() - n);
    (inst, bars)
}

impl Cluster {
    /// One process of each of `names` (`grodt serve NAME`), each on ports of
    /// its own, none started.
    pub fn of(
        config_dir: &std::path::Path,
        prefix: &str,
        redis_url: String,
        db_url: String,
        names: &[&'static str],
    ) -> Self {
        Self {
            config_dir: config_dir.to_path_buf(),
            prefix: prefix.to_owned(),
            redis_url,
            db_url,
            env: Vec::new(),
            procs: names
                .iter()
                .map(|name| Proc {
                    name,
                    label: (*name).to_owned(),
                    grpc: free_port(),
                    http: free_port(),
                    child: None,
                    starts: 0,
                })
                .collect(),
        }
    }

    /// Starts every process, then waits until each serves.
    pub async fn start_all(&mut self) {
        for k in 0..self.procs.len() {
            self.start(k);
        }
        for k in 0..self.procs.len() {
            self.wait_serving(k).await;
        }
    }

    pub fn start(&mut self, k: usize) {
        let p = &mut self.procs[k];
        let log = std::fs::File::create(
            self.config_dir
                .join(format!("{}-{}.log", p.label, p.starts)),
        )
        .expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_grodt"))
            .args(["serve", p.name])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GRODT_CONFIG_DIR", &self.config_dir)
            .env("GRODT_GRPC__ADDR", format!("127.0.0.1:{}", p.grpc))
            .env("GRODT_HTTP__ADDR", format!("127.0.0.1:{}", p.http))
            .env("GRODT_TELEMETRY__LOG_FORMAT", "json")
            .env("GRODT_TELEMETRY__LOG_LEVEL", "warn")
            .env("GRODT_REDIS__URL", &self.redis_url)
            .env("GRODT_REDIS__KEY_PREFIX", &self.prefix)
            .env("GRODT_DATABASE__URL", &self.db_url)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("grodt serve starts");
        p.child = Some(child);
        p.starts += 1;
    }

    /// SIGKILL: no drain, no flush; whatever is in flight is cut off.
    pub fn kill(&mut self, k: usize) {
        if let Some(mut c) = self.procs[k].child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("reaped");
        }
    }

    pub async fn wait_serving(&self, k: usize) {
        let addr = format!("127.0.0.1:{}", self.procs[k].grpc);
        for _ in 0..300 {
            if grodt::health::check(&addr, "", Duration::from_millis(500))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(self.config_dir.join(format!(
            "{}-{}.log",
            self.procs[k].label,
            self.procs[k].starts - 1
        )))
        .unwrap_or_default();
        panic!("{} did not serve; log:\n{log}", self.procs[k].name);
    }
}

/// sma_cross 5/20's parameters, as the cluster tests deploy it.
pub fn sma_params() -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([
        ("fast".to_owned(), "5".to_owned()),
        ("slow".to_owned(), "20".to_owned()),
    ])
}

/// Deploys and starts sma_cross 5/20 on SPY daily with 100,000 as `instance`.
pub async fn deploy_sma(
    strategy: &mut grodt_proto::v1::strategy_service_client::StrategyServiceClient<
        tonic::transport::Channel,
    >,
    instance: &str,
) {
    use grodt_proto::v1;
    strategy
        .deploy(v1::DeployRequest {
            instance_id: instance.into(),
            strategy_name: "sma_cross".into(),
            params: sma_params().into_iter().collect(),
            symbols: vec!["SPY".into()],
            timeframe: v1::Timeframe::Day1 as i32,
            allowed_regimes: Vec::new(),
            capital: Some(v1::Decimal {
                value: "100000".into(),
            }),
            start: true,
        })
        .await
        .expect("deploys");
}

/// What a run left against a backtest of the same bars: the fills
/// `(time, quantity, price)` expected and those at execution, how many were
/// lost or extra, the fills stream's entries and distinct fill ids, and the
/// two final equities.
pub struct Audit {
    pub want: Vec<(i64, grodt_core::Decimal, grodt_core::Decimal)>,
    pub got: Vec<(i64, grodt_core::Decimal, grodt_core::Decimal)>,
    pub lost: usize,
    pub extra: usize,
    pub entries: usize,
    pub ids: usize,
    pub equity: grodt_core::Decimal,
    pub want_equity: grodt_core::Decimal,
}

impl Audit {
    /// Backtests sma_cross 5/20 on `bars`, reads execution's fills and
    /// account, and reads the whole fills stream (group `group`).
    pub async fn of(
        bus: &dyn grodt_bus::EventBus,
        execution: &mut grodt_proto::v1::execution_service_client::ExecutionServiceClient<
            tonic::transport::Channel,
        >,
        inst: &grodt_core::Instrument,
        bars: &[grodt_core::Bar],
        group: &str,
    ) -> Self {
        use grodt_bus::{ConsumerName, GroupName, StartFrom, StreamName};
        use grodt_core::Decimal;
        use grodt_proto::topic::{Topic, decode};
        use grodt_proto::v1;
        let mut s = grodt_strategies::registry::build("sma_cross", &sma_params(), inst).unwrap();
        let config = grodt_sim::config::BacktestConfig {
            starting_cash: Decimal::from(100_000),
            ..Default::default()
        };
        let reference = grodt_sim::run_backtest(
            &config,
            std::slice::from_ref(inst),
            &[bars.to_vec()],
            &mut *s,
        )
        .unwrap();
        let (fills, account) = grodt::paper::fills_and_account(execution)
            .await
            .expect("fills and account");
        let want: Vec<_> = reference
            .fills
            .iter()
            .map(|f| (f.ts, f.qty.to_decimal(), f.price.to_decimal()))
            .collect();
        let got: Vec<_> = fills.iter().map(|f| (f.ts, f.qty, f.price)).collect();
        let lost = want.iter().filter(|w| !got.contains(w)).count();
        let extra = got.len().saturating_sub(want.len() - lost);
        let stream = StreamName::parse(<v1::FillEvent as Topic>::STREAM).unwrap();
        let group = GroupName::parse(group).unwrap();
        let me = ConsumerName::parse("audit").unwrap();
        bus.ensure_group(&stream, &group, StartFrom::Beginning)
            .await
            .unwrap();
        let (mut entries, mut ids) = (0usize, std::collections::BTreeSet::new());
        loop {
            let batch = bus
                .consume(&stream, &group, &me, 500, Duration::ZERO)
                .await
                .unwrap();
            if batch.is_empty() {
                break;
            }
            for d in batch {
                entries += 1;
                let ev =
                    decode::<v1::FillEvent>(&d.envelope.event_type, d.envelope.payload.as_ref())
                        .expect("a fill event");
                ids.insert(ev.fill.map(|f| f.fill_id).unwrap_or_default());
            }
        }
        let equity = account
            .equity
            .as_ref()
            .and_then(|d| d.value.parse().ok())
            .unwrap_or_default();
        Self {
            want,
            got,
            lost,
            extra,
            entries,
            ids: ids.len(),
            equity,
            want_equity: reference.last.equity,
        }
    }

    /// One line of counts for the test's output.
    pub fn counts(&self) -> String {
        format!(
            "fills: {} expected, {} at execution, {} lost, {} extra; fills stream: {} entries, \
             {} distinct ids ({} republished under the same id); equity {} vs {}",
            self.want.len(),
            self.got.len(),
            self.lost,
            self.extra,
            self.entries,
            self.ids,
            self.entries - self.ids,
            self.equity,
            self.want_equity
        )
    }

    /// Nothing lost, duplicated or different; one id per fill on the stream;
    /// the account equal to the backtest's.
    pub fn assert_exact(&self, what: &str) {
        assert_eq!(
            (self.lost, self.extra),
            (0, 0),
            "no fill lost or duplicated ({what})"
        );
        assert_eq!(self.got, self.want, "fills equal the backtest's ({what})");
        assert_eq!(
            self.ids,
            self.want.len(),
            "one fill id per fill on the stream"
        );
        assert_eq!(
            self.equity, self.want_equity,
            "the account equals the backtest's"
        );
    }
}
