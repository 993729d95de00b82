//! Real-data evidence for the searches (docs/optimization.md, "Evidence on
//! real data"): the objective is the Sharpe ratio of `sma_cross` (long-only,
//! no fees, next-open fills) on a real sample, computed exactly for every
//! set of the grid fast 5..=50 x slow 10..=200 (fast < slow, 7,925 sets) by
//! the sweep kernel (the event engine's trades and metrics), so each search
//! is measured against the true grid best with no approximation.
//!
//! `cargo run --release -p grodt-sweep --example optimize_evidence -- [--csv PATH] [--periods N] [--seeds N] [--min-trades N] [--price-dp N]`
//!
//! - Bayesian optimisation (EI, xi 0.01, 10 initial points, batches of 4):
//!   evaluations until the best found is within 1 % of the grid's best, per
//!   seed.
//! - Genetic algorithm (population 20, 10 generations) against random search
//!   at the same number of evaluations: the best each found, per seed.

use std::collections::HashMap;

use grodt_analytics::MetricsConfig;
use grodt_core::Instrument;
use grodt_core::bar::parse_csv;
use grodt_optimize::{
    Acquisition, BayesConfig, GeneticConfig, GridSearch, Others, Params, Prior, RandomSearch,
    Range, Search, Searcher, Space,
};
use grodt_sweep::{Series, SmaParams, SweepConfig, Threads, sweep_sma};

fn space() -> Result<Space, Box<dyn std::error::Error>> {
    let r = |a: f64, b: f64| Range::Linear {
        min: a,
        max: b,
        step: None,
        prior: Prior::Uniform,
    };
    let ranges = [
        ("fast".to_owned(), r(5.0, 50.0)),
        ("slow".to_owned(), r(10.0, 200.0)),
    ]
    .into();
    Ok(Space::new("sma_cross", &ranges, Others::Default)?)
}

fn key(p: &Params) -> (u32, u32) {
    (
        p["fast"].parse().unwrap_or(0),
        p["slow"].parse().unwrap_or(0),
    )
}

/// Evaluations until the best reaches `target` (None if never within
/// `budget`), the best reached and the evaluations run.
fn run(
    s: &mut dyn Search,
    f: &dyn Fn(&Params) -> Option<f64>,
    batch: usize,
    target: f64,
    budget: usize,
) -> (Option<usize>, f64, usize) {
    let (mut n, mut hit, mut best) = (0, None, f64::NEG_INFINITY);
    while !s.is_done() && hit.is_none() && n < budget {
        let t = s.suggest(batch);
        if t.is_empty() {
            break;
        }
        for x in t {
            let v = f(&x.params);
            n += 1;
            if let Some(v) = v {
                best = best.max(v);
            }
            if hit.is_none() && best >= target {
                hit = Some(n);
            }
            if s.observe(x.id, v).is_err() {
                return (hit, best, n);
            }
        }
    }
    (hit, best, n)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut csv = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/samples/btcusdt_1m_2025-05-20_2025-08-18.csv"
    )
    .to_string();
    let (mut periods, mut seeds, mut min_trades, mut price_dp) = (525_600.0, 10u64, 10u32, 2u8);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--csv" => csv = val()?,
            "--periods" => periods = val()?.parse()?,
            "--seeds" => seeds = val()?.parse()?,
            "--min-trades" => min_trades = val()?.parse()?,
            "--price-dp" => price_dp = val()?.parse()?,
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    let inst = Instrument::equity("X", price_dp, 8);
    let bars = parse_csv(&std::fs::read_to_string(&csv)?, &inst)?;
    let sets = SmaParams::grid(5..=50, 10..=200, false);
    let config = SweepConfig {
        metrics: MetricsConfig {
            periods_per_year: periods,
            risk_free: 0.0,
            required_return: 0.0,
        },
        ..SweepConfig::default()
    };
    let series = Series::new(&inst, &bars)?;
    let started = std::time::Instant::now();
    let outcomes = sweep_sma(&series, &sets, &config, Threads::All)?;
    // The objective: Sharpe, unscored below `min_trades` closed trades.
    let table: HashMap<(u32, u32), Option<f64>> = outcomes
        .iter()
        .map(|o| {
            let v = o
                .metrics
                .sharpe
                .filter(|s| s.is_finite() && o.closed_trades >= min_trades);
            ((o.params.fast, o.params.slow), v)
        })
        .collect();
    let f = |p: &Params| table.get(&key(p)).copied().flatten();
    let space = space()?;
    let mut grid = GridSearch::new(space.clone(), None)?;
    let (mut size, mut best) = (0usize, f64::NEG_INFINITY);
    let mut best_at = (0, 0);
    loop {
        let t = grid.suggest(1000);
        if t.is_empty() {
            break;
        }
        for x in t {
            size += 1;
            if let Some(v) = f(&x.params).filter(|v| *v > best) {
                best = v;
                best_at = key(&x.params);
            }
        }
    }
    let scored = table.values().filter(|v| v.is_some()).count();
    println!(
        "{csv}: {} bars; grid {size} sets ({scored} scored, >= {min_trades} closed trades) swept in {:.2} s; \
         best Sharpe {best:.4} at fast {} slow {}",
        bars.len(),
        started.elapsed().as_secs_f64(),
        best_at.0,
        best_at.1
    );
    let target = best - 0.01 * best.abs();
    let mut needed = Vec::new();
    for seed in 1..=seeds {
        let bo = BayesConfig {
            acquisition: Acquisition::Ei { xi: 0.01 },
            n_init: 10,
            max_trials: size as u64 / 2,
            ..BayesConfig::default()
        };
        let mut s = Searcher::bayes(space.clone(), seed, bo, Vec::new())?;
        let (hit, got, n) = run(&mut s, &f, 4, target, size / 2);
        println!("bayes seed {seed}: within 1% after {hit:?} evaluations (best {got:.4}, {n} run)");
        needed.push(hit.map_or(format!(">{n}"), |h| h.to_string()));
    }
    println!(
        "bayes: evaluations to within 1% of {best:.4} (target {target:.4}), seeds 1..={seeds}: {} (half the grid: {})",
        needed.join(", "),
        size / 2
    );
    let ga_config = GeneticConfig {
        population: 20,
        max_generations: Some(10),
        ..GeneticConfig::default()
    };
    let (mut ga_sum, mut rnd_sum, mut wins, mut evals) = (0.0, 0.0, 0, 0);
    for seed in 1..=seeds {
        let mut g = Searcher::genetic(space.clone(), seed, ga_config.clone())?;
        let (_, ga, n) = run(&mut g, &f, 20, f64::INFINITY, usize::MAX);
        let mut r = RandomSearch::new(space.clone(), seed, None)?;
        let rb = r
            .suggest(n)
            .iter()
            .filter_map(|t| f(&t.params))
            .fold(f64::NEG_INFINITY, f64::max);
        ga_sum += ga;
        rnd_sum += rb;
        wins += u32::from(ga > rb);
        evals = n;
        println!("ga seed {seed}: {n} evaluations, GA best {ga:.4}, random best {rb:.4}");
    }
    #[allow(clippy::cast_precision_loss, reason = "seed count")]
    let k = seeds as f64;
    println!(
        "ga vs random at {evals} evaluations, seeds 1..={seeds}: mean best GA {:.4}, random {:.4}; GA ahead on {wins} seeds (grid best {best:.4})",
        ga_sum / k,
        rnd_sum / k
    );
    Ok(())
}
