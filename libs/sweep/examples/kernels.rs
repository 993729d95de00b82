//! Each kernel beside the event engine on the same grid and data (the figures
//! of docs/performance.md, "Every kernel against the event engine"): a grid
//! of `sma_cross`, `ema_cross`, `s2` and `s3` through `grodt_sweep::sweep` on one core,
//! and a sample of the same sets through `grodt_sim::run_backtest` with the
//! registry's strategy (one run per set, as a per-trial job does), checked
//! equal on final equity and fills. Prints one JSON line per strategy.
//!
//! Usage: `kernels [--csv PATH] [--symbol NAME] [--price-dp N] [--size-dp N] [--engine-every K]`
//! (default the SPY daily sample; every K-th set of the grid goes through the engine).

use std::collections::BTreeMap;
use std::time::Instant;

use grodt_analytics::MetricsConfig;
use grodt_core::Instrument;
use grodt_core::bar::parse_csv;
use grodt_sim::{BacktestConfig, run_backtest};
use grodt_strategies::registry;
use grodt_sweep::{Series, Threads, sweep};

fn grid(strategy: &str) -> Vec<BTreeMap<String, String>> {
    let set = |pairs: Vec<(&str, String)>| -> BTreeMap<String, String> {
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    };
    let mut out = Vec::new();
    match strategy {
        "sma_cross" | "ema_cross" => {
            for fast in (5..=50).step_by(5) {
                for slow in (20..=200).step_by(10) {
                    if fast < slow {
                        out.push(set(vec![
                            ("fast", fast.to_string()),
                            ("slow", slow.to_string()),
                        ]));
                    }
                }
            }
        }
        "s2" => {
            for period in (10..=50).step_by(10) {
                for k in ["1", "1.5", "2", "2.5"] {
                    for rsi in [2, 5, 10, 14] {
                        for (lo, hi) in [(30, 70), (40, 60)] {
                            out.push(set(vec![
                                ("period", period.to_string()),
                                ("k", k.into()),
                                ("rsi_period", rsi.to_string()),
                                ("oversold", lo.to_string()),
                                ("overbought", hi.to_string()),
                            ]));
                        }
                    }
                }
            }
        }
        _ => {
            for entry in (10..=60).step_by(10) {
                for exit in (5..=30).step_by(5) {
                    for mult in ["0", "1", "1.5"] {
                        out.push(set(vec![
                            ("entry_window", entry.to_string()),
                            ("exit_window", exit.to_string()),
                            ("volume_mult", mult.into()),
                        ]));
                    }
                }
            }
        }
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut csv = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/samples/spy_1d_1998-2021.csv"
    )
    .to_string();
    let (mut symbol, mut price_dp, mut size_dp, mut every) = ("SPY".to_string(), 4u8, 0u8, 10);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--csv" => csv = val()?,
            "--symbol" => symbol = val()?,
            "--price-dp" => price_dp = val()?.parse()?,
            "--size-dp" => size_dp = val()?.parse()?,
            "--engine-every" => every = val()?.parse::<usize>()?.max(1),
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    let inst = Instrument::equity(&symbol, price_dp, size_dp);
    let bars = parse_csv(&std::fs::read_to_string(&csv)?, &inst)?;
    let config = BacktestConfig::default();
    let metrics = MetricsConfig::default();
    for strategy in ["sma_cross", "ema_cross", "s2", "s3"] {
        let sets = grid(strategy);
        let t = Instant::now();
        let series = Series::new(&inst, &bars)?;
        let out = sweep(strategy, &series, &sets, &config, &metrics, Threads::One)?;
        let kernel_s = t.elapsed().as_secs_f64();
        let sample: Vec<usize> = (0..sets.len()).step_by(every).collect();
        let t = Instant::now();
        for &k in &sample {
            let mut s = registry::parse(strategy, &sets[k])?.build(&inst)?;
            let r = run_backtest(
                &config,
                std::slice::from_ref(&inst),
                std::slice::from_ref(&bars),
                &mut *s,
            )?;
            if r.last.equity != out[k].final_equity || r.fills.len() != out[k].fills as usize {
                return Err(format!("{strategy} set {k}: the kernel and the engine differ").into());
            }
        }
        #[allow(clippy::cast_precision_loss, reason = "throughput figures")]
        let (set_bars, engine_per_set, kernel_per_set) = (
            (bars.len() * sets.len()) as f64,
            t.elapsed().as_secs_f64() / sample.len() as f64,
            kernel_s / sets.len() as f64,
        );
        let fills: u64 = out.iter().map(|o| u64::from(o.fills)).sum();
        println!(
            "{{\"strategy\":\"{strategy}\",\"bars\":{},\"sets\":{},\"fills\":{fills},\"kernel_seconds\":{kernel_s:.4},\
             \"kernel_set_bars_per_s\":{:.3e},\"engine_sets_checked\":{},\"engine_seconds_per_set\":{engine_per_set:.5},\
             \"speedup\":{:.1}}}",
            bars.len(),
            sets.len(),
            set_bars / kernel_s,
            sample.len(),
            engine_per_set / kernel_per_set,
        );
    }
    Ok(())
}
