//! Shared fixtures: real samples, scripted strategies, a stepping driver.

use std::path::PathBuf;

use grodt_core::bar::parse_csv;
use grodt_core::{Bar, Decimal, Instrument, OrderRequest, Quantity, Side, Size};
use grodt_portfolio::allocation::{Allocator, Method, Schedule};
use grodt_portfolio::{Desk, Member, Plan, PortfolioLimits, PortfolioResult};
use grodt_sim::BacktestConfig;
use grodt_strategy_api::{Context, Strategy};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn sample(file: &str, symbol: &str, size_precision: u8) -> (Instrument, Vec<Bar>) {
    let inst = Instrument::equity(symbol, 4, size_precision);
    let text = std::fs::read_to_string(root().join("data/samples").join(file))
        .expect("sample data present");
    let bars = parse_csv(&text, &inst).expect("sample parses");
    (inst, bars)
}

/// Flat synthetic bars: open, high, low, close from one path of closes.
pub fn bars(closes: &[i64]) -> Vec<Bar> {
    let day = 86_400_000_000_000i64;
    closes
        .iter()
        .enumerate()
        .map(|(k, &c)| {
            let o = if k == 0 { c } else { closes[k - 1] };
            Bar {
                ts: 1_600_000_000_000_000_000 + day * k as i64,
                open: o,
                high: o.max(c),
                low: o.min(c),
                close: c,
                volume: 1_000_000,
            }
        })
        .collect()
}

/// One scripted order: on the strategy's `bar`-th bar of `instrument`.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub bar: usize,
    pub instrument: usize,
    pub side: Side,
    pub size: Size,
}

/// Sends the scripted market orders, nothing else.
pub struct Script {
    pub steps: Vec<Step>,
    seen: Vec<usize>,
    /// Fixed-size orders as DAY limits at the decision close (resting at the
    /// venue), the others at market.
    resting: bool,
}

impl Script {
    pub fn new(steps: Vec<Step>) -> Self {
        Self {
            steps,
            seen: Vec::new(),
            resting: false,
        }
    }

    /// The same, fixed sizes as DAY limits at the decision close.
    pub fn resting(steps: Vec<Step>) -> Self {
        Self {
            resting: true,
            ..Self::new(steps)
        }
    }
}

impl Strategy for Script {
    fn on_bar(&mut self, ctx: &mut Context<'_>, instrument: usize, bar: &Bar) {
        if self.seen.len() <= instrument {
            self.seen.resize(instrument + 1, 0);
        }
        let k = self.seen[instrument];
        self.seen[instrument] += 1;
        for s in &self.steps {
            if s.bar == k && s.instrument == instrument {
                let mut req = OrderRequest::market(instrument, s.side, s.size);
                if self.resting && matches!(s.size, Size::Fixed(_)) {
                    req.kind = grodt_core::OrderKind::Limit {
                        price: grodt_core::Price::from_raw(bar.close, 4).expect("a price"),
                    };
                    req.tif = grodt_core::TimeInForce::Day;
                }
                ctx.submit(req);
            }
        }
    }
}

pub fn fixed(units: i64) -> Size {
    Size::Fixed(Quantity::from_raw(units, 0).unwrap())
}

pub fn member(
    id: &str,
    strategy: impl Strategy + Send + 'static,
    instruments: Vec<usize>,
) -> Member {
    Member {
        id: id.into(),
        strategy: Box::new(strategy),
        instruments,
        max_leverage: Decimal::ONE,
    }
}

pub fn plan(n: usize, weights: Vec<Decimal>, netting: bool) -> Plan {
    Plan {
        allocator: Allocator::new(Method::Fixed { weights }, Vec::new(), n).unwrap(),
        schedule: Schedule::Never,
        limits: PortfolioLimits::default(),
        risk: None,
        netting,
        vol_target: None,
        correlation_cut: None,
        lookback: 0,
    }
}

/// Runs bar by bar, checking after every timestamp that the books add up.
pub fn run_checked(
    config: &BacktestConfig,
    instruments: &[Instrument],
    series: &[Vec<Bar>],
    members: Vec<Member>,
    plan: Plan,
) -> PortfolioResult {
    let mut desk = Desk::new(config, instruments.to_vec(), members, plan).unwrap();
    let mut cursor = vec![0usize; series.len()];
    loop {
        let ts = series
            .iter()
            .zip(&cursor)
            .filter_map(|(s, &k)| s.get(k).map(|b| b.ts))
            .min();
        let Some(ts) = ts else { break };
        for (i, s) in series.iter().enumerate() {
            if let Some(b) = s.get(cursor[i])
                && b.ts == ts
            {
                desk.on_bar(i, b).unwrap();
                cursor[i] += 1;
                desk.check_books().unwrap();
            }
        }
        desk.end_of_timestamp(ts).unwrap();
        desk.check_books().unwrap();
    }
    desk.finish().unwrap()
}

pub fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}
