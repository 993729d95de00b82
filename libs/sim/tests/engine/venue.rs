//! The venue driven from outside, one bar at a time, by a driver that owns a
//! bounded bar window per instrument (as the strategy service does): it must
//! give exactly the fills, cash and equity of `run_backtest` on real data.
//! Also the venue's own API: ids the caller chooses, rejections reported with
//! their reason, cancels, accruals, snapshots, refusal of bad input.

use std::path::PathBuf;

use grodt_core::bar::parse_csv;
use grodt_core::{
    Bar, Decimal, Instrument, OrderId, OrderRequest, OrderStatus, OrderUpdate, Price, Quantity,
    Side, Size,
};
use grodt_sim::{
    BacktestConfig, BacktestResult, Command, CommissionSpec, Context, EquityPoint, MarketView,
    Outbox, SimError, SlippageSpec, Strategy, Venue, VenueEvent, Windows, run_backtest,
};
use grodt_strategies::{S1, S1Params, SmaCross, SmaCrossParams};

fn sample(name: &str, inst: &Instrument) -> Vec<Bar> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("sample data present");
    parse_csv(&text, inst).expect("sample parses")
}

fn spy() -> (Instrument, Vec<Bar>) {
    let inst = Instrument::equity("SPY", 4, 0);
    let bars = sample("spy_1d_1998-2021.csv", &inst);
    (inst, bars)
}

fn btc() -> (Instrument, Vec<Bar>) {
    let mut inst = Instrument::equity("BTCUSDT", 2, 8);
    inst.asset_class = grodt_core::AssetClass::Crypto;
    let bars = sample("btcusdt_1m_2025-05-20_2025-08-18.csv", &inst);
    (inst, bars)
}

/// What the outside driver saw: every fill, the equity after each bar, the
/// order updates the strategy was told, and the final venue.
struct Driven {
    result: BacktestResult,
    updates: Vec<OrderUpdate>,
}

/// Hands the strategy's requests to the venue.
fn apply_requests(venue: &mut Venue, outbox: &mut Outbox) {
    let mut cmds = Vec::new();
    outbox.take_into(&mut cmds);
    for c in cmds {
        match c {
            Command::Submit(id, r) => venue.submit(id, r).expect("submit"),
            Command::Bracket(e, t, s, b) => venue.submit_bracket(e, t, s, b).expect("bracket"),
            Command::Oco(a, ra, b, rb) => venue.submit_oco(a, ra, b, rb).expect("oco"),
            Command::Cancel(id) => venue.cancel(id).expect("cancel"),
        }
    }
}

/// The outside driver's state: the venue, its own bounded windows, the outbox.
struct Driver<'a> {
    venue: Venue,
    instruments: &'a [Instrument],
    windows: Windows,
    outbox: Outbox,
    updates: Vec<OrderUpdate>,
}

impl Driver<'_> {
    fn call(&mut self, f: impl FnOnce(&mut Context<'_>)) {
        let mut ctx = Context::new(
            self.venue.now(),
            self.instruments,
            &self.windows,
            &self.venue,
            &self.venue,
            &mut self.outbox,
        );
        f(&mut ctx);
    }

    /// Hands requests to the venue and tells the strategy what it did, until quiet.
    fn settle(&mut self, strategy: &mut dyn Strategy) {
        loop {
            apply_requests(&mut self.venue, &mut self.outbox);
            if !self.venue.has_events() {
                return;
            }
            let mut events = Vec::new();
            self.venue.take_events_into(&mut events);
            for ev in &events {
                match *ev {
                    VenueEvent::Fill(seq) => {
                        let fill = self.venue.fill(seq).expect("the fill").clone();
                        self.call(|c| strategy.on_fill(c, &fill));
                    }
                    VenueEvent::Order(u) => {
                        self.updates.push(u);
                        self.call(|c| strategy.on_order(c, &u));
                    }
                }
                apply_requests(&mut self.venue, &mut self.outbox);
            }
        }
    }
}

/// A driver that is not `run_backtest`: bars arrive one at a time, the context
/// is built from its own bounded windows, and the venue is only reached through
/// its public API.
fn drive(
    config: &BacktestConfig,
    inst: &Instrument,
    bars: &[Bar],
    strategy: &mut dyn Strategy,
) -> Driven {
    let instruments = [inst.clone()];
    let window = strategy.history_bars();
    let mut d = Driver {
        venue: Venue::new(config.clone(), instruments.to_vec()).expect("venue"),
        instruments: &instruments,
        windows: Windows::new(1, window),
        outbox: Outbox::new(0),
        updates: Vec::new(),
    };
    let mut equity = Vec::new();
    d.venue.accrue_to(bars[0].ts).expect("accrue");
    d.call(|c| strategy.on_start(c));
    d.settle(strategy);
    for bar in bars {
        d.venue.on_bar(0, bar).expect("bar accepted");
        assert!(d.windows.push(0, *bar));
        assert!(
            d.windows.history(0).len() <= window,
            "the window is bounded"
        );
        d.settle(strategy);
        d.call(|c| strategy.on_bar(c, 0, bar));
        d.settle(strategy);
        if d.venue.has_close_fills() {
            d.venue.fill_at_close().expect("close fills");
            d.settle(strategy);
        }
        equity.push(EquityPoint {
            ts: bar.ts,
            equity: d.venue.equity().expect("equity"),
        });
    }
    d.call(|c| strategy.on_stop(c));
    let snapshot = d.venue.snapshot().expect("snapshot");
    let result = d.venue.finish(equity).expect("finish");
    assert_eq!(snapshot.cash, result.last.cash);
    assert_eq!(snapshot.equity, result.last.equity);
    Driven {
        result,
        updates: d.updates,
    }
}

fn assert_same(driven: &BacktestResult, reference: &BacktestResult, what: &str) {
    assert!(!reference.fills.is_empty(), "{what}: the run trades");
    assert_eq!(
        driven.fills.len(),
        reference.fills.len(),
        "{what}: fill count"
    );
    for (a, b) in driven.fills.iter().zip(&reference.fills) {
        assert_eq!(a, b, "{what}: fill {}", b.seq);
    }
    assert_eq!(
        driven.equity.len(),
        reference.equity.len(),
        "{what}: equity points"
    );
    for (a, b) in driven.equity.iter().zip(&reference.equity) {
        assert_eq!(a, b, "{what}: equity at {}", b.ts);
    }
    assert_eq!(driven.last, reference.last, "{what}: final cash and equity");
    assert_eq!(driven.costs, reference.costs, "{what}: costs");
    assert_eq!(driven.trades, reference.trades, "{what}: trades");
    assert_eq!(driven.orders, reference.orders, "{what}: orders");
}

fn costly() -> BacktestConfig {
    BacktestConfig {
        commission: CommissionSpec::Percentage {
            rate: Decimal::new(1, 3),
        },
        slippage: SlippageSpec::FixedBps {
            bps: Decimal::from(2),
        },
        ..BacktestConfig::default()
    }
}

/// Runs `run_backtest` and the outside driver on the same bars with fresh
/// copies of a strategy and holds them equal; returns both.
fn parity(
    config: &BacktestConfig,
    inst: &Instrument,
    bars: &[Bar],
    make: impl Fn() -> Box<dyn Strategy>,
    what: &str,
) -> (Driven, BacktestResult) {
    let reference = run_backtest(
        config,
        std::slice::from_ref(inst),
        &[bars.to_vec()],
        &mut make(),
    )
    .unwrap();
    let driven = drive(config, inst, bars, &mut make());
    assert_same(&driven.result, &reference, what);
    (driven, reference)
}

fn s1_long_short(inst: &Instrument) -> Box<dyn Strategy> {
    let params = S1Params {
        allow_short: true,
        ..S1Params::default()
    };
    Box::new(S1::new(params, inst.price_precision, inst.size_precision).unwrap())
}

#[test]
fn spy_driven_bar_by_bar_equals_run_backtest() {
    let (inst, bars) = spy();
    let sma =
        || -> Box<dyn Strategy> { Box::new(SmaCross::new(SmaCrossParams::default()).unwrap()) };
    let (driven, _) = parity(
        &BacktestConfig::default(),
        &inst,
        &bars,
        sma,
        "SPY SMA(10/30)",
    );
    // The golden figure of the backtrader parity, reached through the venue.
    assert_eq!(
        driven.result.last.equity.round_dp(2),
        Decimal::new(18_209_118, 2)
    );
    let s1 = || s1_long_short(&inst);
    parity(&costly(), &inst, &bars, s1, "SPY S1 long-short with costs");
}

#[test]
fn btc_driven_bar_by_bar_equals_run_backtest() {
    let (inst, bars) = btc();
    assert!(bars.len() > 100_000, "three months of minutes");
    let config = BacktestConfig {
        max_participation: Some(Decimal::new(5, 1)),
        ..costly()
    };
    let params = SmaCrossParams {
        fast: 20,
        slow: 60,
        long_short: true,
        ..SmaCrossParams::default()
    };
    let sma = || -> Box<dyn Strategy> { Box::new(SmaCross::new(params).unwrap()) };
    let (driven, reference) = parity(&config, &inst, &bars, sma, "BTC SMA(20/60) long-short");
    // Every order the strategy made was accepted and then filled, and it was told so.
    let told = |status: OrderStatus| driven.updates.iter().filter(|u| u.status == status).count();
    let orders_filled = reference
        .orders
        .iter()
        .filter(|o| o.status() == OrderStatus::Filled)
        .count();
    assert_eq!(told(OrderStatus::Filled), orders_filled);
    assert_eq!(told(OrderStatus::Accepted), reference.orders.len());
    let s1 = || s1_long_short(&inst);
    parity(&config, &inst, &bars, s1, "BTC S1 long-short");
}

fn day_bar(d: i64, o: i64, h: i64, l: i64, c: i64) -> Bar {
    Bar {
        ts: d * grodt_core::time::NANOS_PER_DAY,
        open: o,
        high: h,
        low: l,
        close: c,
        volume: 1_000,
    }
}

fn qty(n: i64) -> Size {
    Size::Fixed(Quantity::from_raw(n, 0).unwrap())
}

fn statuses(venue: &Venue, id: OrderId) -> Vec<OrderStatus> {
    venue
        .events()
        .iter()
        .filter_map(|e| match e {
            VenueEvent::Order(u) if u.id == id => Some(u.status),
            _ => None,
        })
        .collect()
}

#[test]
fn caller_ids_next_bar_rule_and_every_status_change() {
    let inst = Instrument::equity("X", 2, 0);
    let mut v: Venue = Venue::new(BacktestConfig::default(), vec![inst]).unwrap();
    v.on_bar(0, &day_bar(1, 10_000, 10_100, 9_900, 10_000))
        .unwrap();
    // Ids are the caller's, not indices.
    let buy = OrderId(9_001);
    v.submit(buy, OrderRequest::market(0, Side::Buy, qty(10)))
        .unwrap();
    assert_eq!(statuses(&v, buy), [OrderStatus::Accepted]);
    assert!(matches!(
        v.submit(buy, OrderRequest::market(0, Side::Buy, qty(1))),
        Err(SimError::DuplicateOrder { id: 9_001 })
    ));
    // Not filled on the bar it was decided on: the next bar of the instrument.
    assert!(v.fills().is_empty());
    v.clear_events();
    v.on_bar(0, &day_bar(2, 10_200, 10_300, 10_100, 10_250))
        .unwrap();
    assert_eq!(v.fills().len(), 1);
    assert_eq!(v.fills()[0].price.raw(), 10_200, "at the next open");
    assert!(matches!(v.events()[0], VenueEvent::Fill(_)));
    assert_eq!(statuses(&v, buy), [OrderStatus::Filled]);

    // A refused request is an order in state Rejected, reported with its reason.
    v.clear_events();
    let bad = OrderId(7);
    let off_tick = OrderRequest::limit(0, Side::Buy, qty(1), Price::from_raw(1, 3).unwrap());
    v.submit(bad, off_tick).unwrap();
    let VenueEvent::Order(u) = v.events()[0] else {
        panic!("an order update")
    };
    assert_eq!(u.status, OrderStatus::Rejected);
    assert!(
        v.reason(bad).is_some_and(|r| r.contains("tick")),
        "{:?}",
        v.reason(bad)
    );

    // Cancel: idempotent on a terminal order, NOT_FOUND-like for an unknown id.
    let limit = OrderId(8);
    let low = OrderRequest::limit(0, Side::Buy, qty(1), Price::from_raw(5_000, 2).unwrap());
    v.submit(limit, low).unwrap();
    v.clear_events();
    v.cancel(limit).unwrap();
    assert_eq!(statuses(&v, limit), [OrderStatus::Cancelled]);
    v.cancel(limit).unwrap();
    assert_eq!(
        statuses(&v, limit),
        [OrderStatus::Cancelled],
        "no second change"
    );
    assert!(matches!(
        v.cancel(OrderId(12345)),
        Err(SimError::UnknownOrder { .. })
    ));

    // Snapshot: cash, the position by symbol at its mark, equity, open orders.
    let snap = v.snapshot().unwrap();
    assert_eq!(snap.positions.len(), 1);
    assert_eq!(snap.positions[0].symbol, "X");
    assert_eq!(snap.positions[0].quantity, Decimal::from(10));
    assert_eq!(snap.positions[0].mark.unwrap().raw(), 10_250);
    assert_eq!(snap.cash, Decimal::from(100_000) - Decimal::from(1_020));
    assert_eq!(
        snap.equity,
        snap.cash + Decimal::new(10_250, 2) * Decimal::from(10)
    );
    assert!(snap.open_orders.is_empty());
}

#[test]
fn bad_bars_and_time_are_refused_and_change_nothing() {
    let inst = Instrument::equity("X", 2, 0);
    let mut v: Venue = Venue::new(BacktestConfig::default(), vec![inst]).unwrap();
    v.on_bar(0, &day_bar(2, 100, 110, 90, 100)).unwrap();
    let e = v.on_bar(0, &day_bar(2, 100, 110, 90, 100)).unwrap_err();
    assert!(e.to_string().contains("instrument X, bar 1"), "{e}");
    let e = v.on_bar(0, &day_bar(3, 100, 90, 95, 100)).unwrap_err();
    assert!(matches!(e, SimError::InvalidBar { .. }), "{e}");
    assert!(matches!(
        v.on_bar(1, &day_bar(3, 100, 110, 90, 100)),
        Err(SimError::UnknownInstrument { .. })
    ));
    assert!(matches!(
        v.on_bar_of("Y", &day_bar(3, 100, 110, 90, 100)),
        Err(SimError::UnknownInstrument { .. })
    ));
    assert!(matches!(v.accrue_to(0), Err(SimError::TimeWentBack { .. })));
    assert_eq!(v.bars_seen(0), 1, "refused bars were not counted");
    v.on_bar_of("X", &day_bar(3, 100, 110, 90, 100)).unwrap();
    assert_eq!(v.bars_seen(0), 2);
}

#[test]
fn accrue_to_charges_borrow_over_days_without_bars() {
    let mut inst = Instrument::equity("X", 2, 0);
    inst.borrow.shortable = true;
    let config = BacktestConfig {
        borrow_rate: Decimal::new(36, 2), // 36% a year, Act/360: 0.1% a day
        ..BacktestConfig::default()
    };
    let mut v: Venue = Venue::new(config, vec![inst]).unwrap();
    v.on_bar(0, &day_bar(1, 10_000, 10_000, 10_000, 10_000))
        .unwrap();
    v.submit(OrderId(0), OrderRequest::market(0, Side::Sell, qty(10)))
        .unwrap();
    v.on_bar(0, &day_bar(2, 10_000, 10_000, 10_000, 10_000))
        .unwrap();
    let before = v.cash();
    // Ten days pass with no bar: borrow on 1,000 of short value at 0.1% a day.
    v.accrue_to(12 * grodt_core::time::NANOS_PER_DAY).unwrap();
    assert_eq!(before - v.cash(), Decimal::from(10));
    assert_eq!(v.snapshot().unwrap().costs.borrow, Decimal::from(10));
}

/// A strategy whose orders are refused hears about it and does not wait forever.
#[derive(Default)]
struct Persistent {
    asked: Option<OrderId>,
    refusals: Vec<String>,
}

impl Strategy for Persistent {
    fn on_bar(&mut self, ctx: &mut Context<'_>, _i: usize, _bar: &Bar) {
        if self.asked.is_none() {
            // Far more than the cash can pay with margin enforced.
            self.asked = Some(ctx.submit(OrderRequest::market(0, Side::Buy, qty(1_000_000))));
        }
    }

    fn on_order(&mut self, ctx: &mut Context<'_>, update: &OrderUpdate) {
        if Some(update.id) == self.asked && update.status == OrderStatus::Rejected {
            let reason = ctx.order(update.id).and_then(|o| o.reject_reason.clone());
            self.refusals.push(reason.unwrap_or_default());
            self.asked = None;
        }
    }

    fn history_bars(&self) -> usize {
        2
    }
}

#[test]
fn strategies_are_told_of_rejections_in_a_backtest() {
    let inst = Instrument::equity("X", 2, 0);
    let bars: Vec<Bar> = (1..=5)
        .map(|d| day_bar(d, 10_000, 10_100, 9_900, 10_000))
        .collect();
    let mut s = Persistent::default();
    let config = BacktestConfig {
        enforce_margin: true,
        ..BacktestConfig::default()
    };
    let r = run_backtest(&config, &[inst], &[bars], &mut s).unwrap();
    assert!(r.fills.is_empty());
    // Asked on bars 1-4 (each refused at the next open), asked again on bar 5.
    assert_eq!(s.refusals.len(), 4, "{:?}", s.refusals);
    assert!(
        s.refusals.iter().all(|r| r.contains("margin")),
        "{:?}",
        s.refusals
    );
}

/// The context's history is the bounded window the strategy asked for.
struct WindowProbe {
    lens: Vec<usize>,
}

impl Strategy for WindowProbe {
    fn on_bar(&mut self, ctx: &mut Context<'_>, i: usize, bar: &Bar) {
        let h = ctx.history(i);
        assert_eq!(h.last(), Some(bar));
        self.lens.push(h.len());
    }
    fn history_bars(&self) -> usize {
        3
    }
}

#[test]
fn run_backtest_shows_a_bounded_window() {
    let inst = Instrument::equity("X", 2, 0);
    let bars: Vec<Bar> = (1..=6).map(|d| day_bar(d, 100, 110, 90, 100)).collect();
    let mut s = WindowProbe { lens: Vec::new() };
    run_backtest(&BacktestConfig::default(), &[inst], &[bars], &mut s).unwrap();
    assert_eq!(s.lens, [1, 2, 3, 3, 3, 3]);
}
