//! The side-by-side benchmark's GRODT run (`scripts/bench sweep`): the SMA
//! crossover grid fast 5..50, slow 10..200, fast < slow, long-only, no fees,
//! next-open fills, on a 1-minute CSV (default the BTC/USDT sample), end to end
//! (series preparation, indicators, simulation, metrics; the CSV parse is not
//! timed). Prints one JSON line of timings and writes every set's final equity
//! to a CSV for the comparison with vectorbt.
//!
//! Usage: `sweep_grid [--csv PATH] [--threads one|all] [--out PATH] [--runs N] [--decimal-book]
//! [--metrics-out PATH] [--required-return R]`
//! (`--decimal-book` books cash in `Decimal` at every fill, as before the
//! integer book, for a before/after comparison in one sitting;
//! `--metrics-out` writes every set's metrics, shortest round-trip f64 text;
//! a required return other than 0 marks held positions bar by bar, so
//! `--required-return 1e-300`, which moves no metric of its own, compares the
//! shared sums of held positions with the bar-by-bar marks).

use std::io::Write;
use std::time::Instant;

use grodt_analytics::MetricsConfig;
use grodt_core::Instrument;
use grodt_core::bar::parse_csv;
use grodt_sweep::{Series, SmaParams, SweepConfig, Threads, sweep_sma};

/// CPU seconds (user + system) of the whole process, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15, at 11 and 12 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut csv = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/samples/btcusdt_1m_2025-05-20_2025-08-18.csv"
    )
    .to_string();
    let mut threads = Threads::One;
    let mut out: Option<String> = None;
    let mut runs = 1usize;
    let mut integer_book = true;
    let mut metrics_out: Option<String> = None;
    let mut required_return = 0.0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--csv" => csv = val()?,
            "--threads" => {
                threads = match val()?.as_str() {
                    "one" => Threads::One,
                    "all" => Threads::All,
                    t => return Err(format!("--threads: one or all, got {t}").into()),
                }
            }
            "--out" => out = Some(val()?),
            "--runs" => runs = val()?.parse()?,
            "--decimal-book" => integer_book = false,
            "--metrics-out" => metrics_out = Some(val()?),
            "--required-return" => required_return = val()?.parse()?,
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    let inst = Instrument::equity("BTCUSDT", 2, 8);
    let bars = parse_csv(&std::fs::read_to_string(&csv)?, &inst)?;
    let sets = SmaParams::grid(5..=50, 10..=200, false);
    let config = SweepConfig {
        metrics: MetricsConfig {
            periods_per_year: 525_600.0,
            risk_free: 0.0,
            required_return,
        },
        integer_book,
        ..SweepConfig::default()
    };
    let mut best = f64::INFINITY;
    let mut best_cpu = f64::INFINITY;
    let mut outcomes = Vec::new();
    for _ in 0..runs.max(1) {
        let (t, cpu) = (Instant::now(), cpu_seconds());
        let series = Series::new(&inst, &bars)?;
        outcomes = sweep_sma(&series, &sets, &config, threads)?;
        best = best.min(t.elapsed().as_secs_f64());
        best_cpu = best_cpu.min(cpu_seconds() - cpu);
    }
    #[allow(clippy::cast_precision_loss, reason = "a throughput figure")]
    let set_bars = (bars.len() * sets.len()) as f64;
    let fills: u64 = outcomes.iter().map(|o| u64::from(o.fills)).sum();
    println!(
        "{{\"engine\":\"grodt\",\"integer_book\":{integer_book},\"threads\":{},\"bars\":{},\"sets\":{},\"seconds\":{best:.4},\
         \"cpu_seconds\":{best_cpu:.2},\"set_bars_per_s\":{:.4e},\"set_bars_per_cpu_s\":{:.4e},\"fills\":{fills}}}",
        match threads {
            Threads::One => 1,
            Threads::All => rayon::current_num_threads(),
        },
        bars.len(),
        sets.len(),
        set_bars / best,
        set_bars / best_cpu,
    );
    if let Some(path) = metrics_out {
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(
            w,
            "fast,slow,total_return,cagr,sharpe,sortino,max_drawdown,calmar,win_rate,profit_factor"
        )?;
        let o = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:?}"));
        for s in &outcomes {
            let m = &s.metrics;
            writeln!(
                w,
                "{},{},{:?},{:?},{},{},{:?},{},{},{}",
                s.params.fast,
                s.params.slow,
                m.total_return,
                m.cagr,
                o(m.sharpe),
                o(m.sortino),
                m.max_drawdown,
                o(m.calmar),
                o(m.win_rate),
                o(m.profit_factor)
            )?;
        }
    }
    if let Some(path) = out {
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(w, "fast,slow,final_value,trades,fills")?;
        for o in &outcomes {
            writeln!(
                w,
                "{},{},{},{},{}",
                o.params.fast,
                o.params.slow,
                o.final_equity.normalize(),
                o.trades,
                o.fills
            )?;
        }
    }
    Ok(())
}
