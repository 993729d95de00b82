//! Synthetic evidence for the model-based searches (docs/optimization.md),
//! the long form of the tests in `tests/algos.rs`:
//!
//! `cargo run -p grodt-optimize --example evidence -- bayes 20` runs
//! Bayesian optimisation from seeds 1..=20 on a smooth objective over the
//! SMA grid (fast 5..=50, slow 10..=200, fast < slow) and prints, per seed,
//! the evaluations it needed to come within 1 % of the grid's best;
//! `-- ga 50` compares the genetic algorithm with random search at equal
//! evaluations on a non-smooth objective over the same grid.

use std::collections::BTreeMap;

use grodt_optimize::{
    Acquisition, BayesConfig, GeneticConfig, Others, Params, Prior, RandomSearch, Range, Search,
    Searcher, Space,
};

fn sma_space() -> Space {
    let r = |a: f64, b: f64| Range::Linear {
        min: a,
        max: b,
        step: None,
        prior: Prior::Uniform,
    };
    let ranges: BTreeMap<String, Range> = [
        ("fast".to_owned(), r(5.0, 50.0)),
        ("slow".to_owned(), r(10.0, 200.0)),
    ]
    .into();
    Space::new("sma_cross", &ranges, Others::Default).expect("space")
}

fn fs(p: &Params) -> (f64, f64) {
    (
        p["fast"].parse().expect("fast"),
        p["slow"].parse().expect("slow"),
    )
}

/// Smooth: a main peak at (12, 80) in log space and a lower one at (40, 160).
fn smooth(p: &Params) -> f64 {
    let (f, s) = fs(p);
    let main = (-((f / 12.0).ln().powi(2) / (2.0 * 0.35f64.powi(2))
        + (s / 80.0).ln().powi(2) / (2.0 * 0.4f64.powi(2))))
    .exp();
    let side = (-((f - 40.0).powi(2) / 60.0 + (s - 160.0).powi(2) / 900.0)).exp();
    1.5 * main + 0.9 * side
}

/// Non-smooth: a cone towards (23, 137) with a bonus on a scattered
/// lattice of points (every fifth of `7 fast + 13 slow`).
fn rugged(p: &Params) -> f64 {
    let (f, s) = fs(p);
    #[allow(clippy::cast_possible_truncation, reason = "small ints")]
    let bonus = if (7 * f as i64 + 13 * s as i64) % 5 == 0 {
        3.0
    } else {
        0.0
    };
    -((f - 23.0).abs() + (s - 137.0).abs() / 4.0) + bonus
}

fn grid_best(space: &Space, f: &dyn Fn(&Params) -> f64) -> (f64, u64) {
    let mut g = grodt_optimize::GridSearch::new(space.clone(), None).expect("grid");
    let mut best = f64::NEG_INFINITY;
    let mut n = 0;
    loop {
        let t = g.suggest(1000);
        if t.is_empty() {
            break;
        }
        for x in t {
            best = best.max(f(&x.params));
            n += 1;
        }
    }
    (best, n)
}

/// Evaluations until the best reaches `target` (None if never), and the
/// best reached, in batches of `batch`.
fn run(
    s: &mut dyn Search,
    f: &dyn Fn(&Params) -> f64,
    batch: usize,
    target: f64,
) -> (Option<usize>, f64, usize) {
    let mut n = 0;
    let mut hit = None;
    let mut best = f64::NEG_INFINITY;
    // Stops at the target: the count to reach it is the figure wanted.
    while !s.is_done() && hit.is_none() {
        let t = s.suggest(batch);
        if t.is_empty() {
            break;
        }
        for x in t {
            let v = f(&x.params);
            n += 1;
            best = best.max(v);
            if hit.is_none() && best >= target {
                hit = Some(n);
            }
            s.observe(x.id, Some(v)).expect("observe");
        }
    }
    (hit, best, n)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("bayes", String::as_str);
    let seeds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let space = sma_space();
    match what {
        "bayes" => {
            let (best, size) = grid_best(&space, &smooth);
            let target = best - 0.01 * best.abs();
            println!("grid: {size} valid points, best {best:.6}; target {target:.6}");
            let mut needed = Vec::new();
            for seed in 1..=seeds {
                let config = BayesConfig {
                    acquisition: Acquisition::Ei { xi: 0.01 },
                    n_init: 10,
                    max_trials: 200,
                    ..BayesConfig::default()
                };
                let mut s = Searcher::bayes(space.clone(), seed, config, Vec::new()).expect("bo");
                let (hit, got, n) = run(&mut s, &smooth, 4, target);
                println!(
                    "seed {seed}: within 1% after {hit:?} evaluations (best {got:.6}, {n} run)"
                );
                needed.push(hit.unwrap_or(usize::MAX));
            }
            needed.sort_unstable();
            println!(
                "evaluations to within 1%: min {} median {} max {} (half the grid: {})",
                needed[0],
                needed[needed.len() / 2],
                needed[needed.len() - 1],
                size / 2
            );
        }
        "ga" => {
            let (best, size) = grid_best(&space, &rugged);
            println!("grid: {size} valid points, best {best:.3}");
            let config = GeneticConfig {
                population: 20,
                max_generations: Some(10),
                ..GeneticConfig::default()
            };
            let (mut ga_sum, mut rnd_sum, mut wins) = (0.0, 0.0, 0);
            for seed in 1..=seeds {
                let mut g = Searcher::genetic(space.clone(), seed, config.clone()).expect("ga");
                let (_, ga, n) = run(&mut g, &rugged, 20, f64::INFINITY);
                let mut r = RandomSearch::new(space.clone(), seed, None).expect("random");
                let mut rb = f64::NEG_INFINITY;
                for t in r.suggest(n) {
                    rb = rb.max(rugged(&t.params));
                }
                ga_sum += ga;
                rnd_sum += rb;
                wins += u32::from(ga > rb);
                println!("seed {seed}: {n} evaluations, GA best {ga:.3}, random best {rb:.3}");
            }
            #[allow(clippy::cast_precision_loss, reason = "seed count")]
            let k = seeds as f64;
            println!(
                "mean best over {seeds} seeds: GA {:.3}, random {:.3}; GA ahead on {wins} seeds",
                ga_sum / k,
                rnd_sum / k
            );
        }
        other => eprintln!("unknown {other:?}: bayes N or ga N"),
    }
}
