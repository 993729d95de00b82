//! Bayesian optimisation and the genetic algorithm against the real
//! strategy registry: validity, no repeats, determinism, resumption, stops,
//! and the short form of the synthetic evidence (the long form is
//! `examples/evidence.rs`).

use std::collections::{BTreeMap, BTreeSet};

use grodt_optimize::{
    Acquisition, BayesConfig, BayesSearch, Crossover, GeneticConfig, GeneticSearch, GridSearch,
    Known, Liar, Others, Params, Plateau, Prior, RandomSearch, Range, Search, Searcher, Selection,
    Space, Trial,
};
use grodt_strategies::registry;
use proptest::prelude::*;

fn linear(min: f64, max: f64) -> Range {
    Range::Linear {
        min,
        max,
        step: None,
        prior: Prior::Uniform,
    }
}

fn ranges(pairs: Vec<(&str, Range)>) -> BTreeMap<String, Range> {
    pairs.into_iter().map(|(k, r)| (k.to_owned(), r)).collect()
}

/// sma_cross over fast x slow (x long_short when `both`).
fn sma(fast: (i64, i64), slow: (i64, i64), both: bool) -> Space {
    #[allow(clippy::cast_precision_loss, reason = "small test ints")]
    let r = |(a, b): (i64, i64)| linear(a as f64, b as f64);
    let mut v = vec![("fast", r(fast)), ("slow", r(slow))];
    if both {
        v.push((
            "long_short",
            Range::Values {
                values: vec!["false".into(), "true".into()],
            },
        ));
    }
    Space::new("sma_cross", &ranges(v), Others::Default).unwrap()
}

/// A mixed space: ints with a constraint, a log-float, a float, a bool.
fn s1() -> Space {
    Space::new(
        "s1",
        &ranges(vec![
            ("ema_fast", linear(2.0, 30.0)),
            ("ema_slow", linear(10.0, 60.0)),
            (
                "tp_atr",
                Range::Log {
                    min: 0.5,
                    max: 10.0,
                    points: 8,
                },
            ),
            ("sl_atr", linear(0.5, 3.0)),
            (
                "allow_short",
                Range::Values {
                    values: vec!["false".into(), "true".into()],
                },
            ),
        ]),
        Others::Default,
    )
    .unwrap()
}

/// Every valid point by brute force.
fn brute_force(space: &Space) -> BTreeSet<Params> {
    let mut points = vec![Params::new()];
    for (name, dim) in space.names().iter().zip(space.dims()) {
        let mut next = Vec::new();
        for p in &points {
            for i in 0..dim.grid_len() {
                let mut q = p.clone();
                q.insert(name.clone(), dim.grid_value(i));
                next.push(q);
            }
        }
        points = next;
    }
    points
        .into_iter()
        .filter(|p| registry::validate(space.strategy(), p).is_ok())
        .collect()
}

fn num(p: &Params, k: &str) -> f64 {
    p[k].parse().unwrap()
}

/// A smooth objective of every numeric parameter.
fn wave(p: &Params) -> Option<f64> {
    let v: f64 = p.values().filter_map(|v| v.parse::<f64>().ok()).sum();
    Some(
        (v / 7.0).sin()
            + p.get("allow_short")
                .map_or(0.0, |s| f64::from(u8::from(s == "true"))),
    )
}

/// Suggests in batches of `batch` until done or `limit` trials, observing
/// `f(params)`.
fn run(
    s: &mut dyn Search,
    batch: usize,
    f: &dyn Fn(&Params) -> Option<f64>,
    limit: usize,
) -> Vec<Trial> {
    let mut all = Vec::new();
    while !s.is_done() && all.len() < limit {
        let trials = s.suggest(batch);
        if trials.is_empty() {
            break;
        }
        for t in &trials {
            s.observe(t.id, f(&t.params)).unwrap();
        }
        all.extend(trials);
    }
    all
}

/// Cheap settings for the test suite (debug builds).
fn quick_bayes() -> BayesConfig {
    BayesConfig {
        n_init: 6,
        max_trials: 20,
        candidates: 50,
        restarts: 0,
        ..BayesConfig::default()
    }
}

/// Runs `n` trials, serializes to JSON with a batch pending, restores, runs
/// the rest; compares with an uninterrupted run.
fn resumes_like_uninterrupted(make: &dyn Fn() -> Searcher, batch: usize, total: usize) {
    let mut whole = make();
    let uninterrupted = run(&mut whole, batch, &wave, total);

    let mut first = make();
    let mut half = run(&mut first, batch, &wave, total / 2);
    let out = first.suggest(batch);
    let saved = serde_json::to_string(&first).unwrap();
    let mut restored: Searcher = serde_json::from_str(&saved).unwrap();
    assert_eq!(restored, first);
    for t in &out {
        restored.observe(t.id, wave(&t.params)).unwrap();
    }
    let done = half.len() + out.len();
    half.extend(out);
    half.extend(run(&mut restored, batch, &wave, total - done));
    assert_eq!(half, uninterrupted);
    assert_eq!(restored, whole);
    assert_eq!(restored.best(), whole.best());
}

#[test]
fn bayes_and_genetic_continue_the_same_sequence_after_a_restore() {
    let space = s1();
    let s = space.clone();
    resumes_like_uninterrupted(
        &move || Searcher::bayes(s.clone(), 11, quick_bayes(), Vec::new()).unwrap(),
        3,
        14,
    );
    let config = GeneticConfig {
        population: 8,
        max_generations: Some(6),
        ..GeneticConfig::default()
    };
    resumes_like_uninterrupted(
        &move || Searcher::genetic(space.clone(), 5, config.clone()).unwrap(),
        8,
        40,
    );
}

#[test]
fn bayes_is_deterministic_per_seed_and_keeps_every_constraint() {
    let space = s1();
    let go = |seed| {
        run(
            &mut BayesSearch::new(space.clone(), seed, quick_bayes(), Vec::new()).unwrap(),
            4,
            &wave,
            16,
        )
    };
    let a = go(3);
    assert_eq!(a.len(), 16);
    assert_eq!(a, go(3));
    assert_ne!(a, go(4));
    let distinct: BTreeSet<&Params> = a.iter().map(|t| &t.params).collect();
    assert_eq!(distinct.len(), a.len());
    for t in &a {
        registry::validate("s1", &t.params).unwrap();
        assert!(num(&t.params, "ema_fast") < num(&t.params, "ema_slow"));
        assert!((0.5..=10.0).contains(&num(&t.params, "tp_atr")));
        assert!((0.5..=3.0).contains(&num(&t.params, "sl_atr")));
    }
}

#[test]
fn bayes_batches_are_distinct_whatever_the_acquisition() {
    for acquisition in [
        Acquisition::Ei { xi: 0.01 },
        Acquisition::Pi { xi: 0.01 },
        Acquisition::Ucb { kappa: 2.0 },
    ] {
        for liar in [Liar::Min, Liar::Mean, Liar::Max] {
            let config = BayesConfig {
                acquisition,
                liar,
                ..quick_bayes()
            };
            let mut s =
                BayesSearch::new(sma((5, 50), (10, 200), false), 2, config, Vec::new()).unwrap();
            let first = run(&mut s, 6, &wave, 6);
            assert_eq!(first.len(), 6);
            // A model batch of 8 with the first 6 results in.
            let batch = s.suggest(8);
            assert_eq!(batch.len(), 8, "{acquisition:?} {liar:?}");
            let set: BTreeSet<&Params> = batch.iter().chain(&first).map(|t| &t.params).collect();
            assert_eq!(set.len(), 14, "{acquisition:?} {liar:?}");
            assert!(s.hyper().is_some());
        }
    }
}

#[test]
fn bayes_stops_on_a_plateau_and_on_a_small_expected_improvement() {
    let space = sma((5, 50), (10, 200), false);
    let flat = |_: &Params| Some(1.0);
    let config = BayesConfig {
        plateau: Some(Plateau {
            patience: 8,
            epsilon: 1e-9,
        }),
        max_trials: 200,
        ..quick_bayes()
    };
    let mut s = BayesSearch::new(space.clone(), 1, config, Vec::new()).unwrap();
    let n = run(&mut s, 1, &flat, 1000).len();
    assert_eq!(n, 9, "first result, then 8 without a gain");
    assert!(s.is_done() && !s.converged());

    // A flat objective: after the design, no point is expected to improve.
    let config = BayesConfig {
        min_ei: Some(1e-3),
        max_trials: 200,
        ..quick_bayes()
    };
    let mut s = BayesSearch::new(space.clone(), 1, config, Vec::new()).unwrap();
    let n = run(&mut s, 2, &flat, 1000).len();
    assert!(s.converged(), "ran {n}");
    assert!(n < 20, "{n}");

    // stop() ends it at once.
    let mut s = BayesSearch::new(space, 1, quick_bayes(), Vec::new()).unwrap();
    let out = s.suggest(2);
    s.stop();
    assert!(s.is_done() && s.suggest(2).is_empty());
    s.observe(out[0].id, Some(1.0)).unwrap();
}

#[test]
fn bayes_takes_failed_trials_and_known_points() {
    // Fails whenever fast > 30; the rest is smooth with its peak at 12.
    let f = |p: &Params| {
        let fast = num(p, "fast");
        (fast <= 30.0)
            .then(|| -((fast - 12.0) / 10.0).powi(2) - ((num(p, "slow") - 80.0) / 50.0).powi(2))
    };
    let known = vec![
        Known {
            params: [("fast".into(), "10".into()), ("slow".into(), "70".into())].into(),
            objective: f(&[("fast".into(), "10".into()), ("slow".into(), "70".into())].into()),
        },
        Known {
            params: [("fast".into(), "45".into()), ("slow".into(), "190".into())].into(),
            objective: None,
        },
        // Off the lattice of this space (a float where ints are): informs
        // the model, is never a trial.
        Known {
            params: [("fast".into(), "20".into()), ("slow".into(), "100".into())].into(),
            objective: Some(-0.5),
        },
    ];
    let config = BayesConfig {
        n_init: 0,
        max_trials: 20,
        ..quick_bayes()
    };
    let mut s = BayesSearch::new(sma((5, 50), (10, 200), false), 7, config, known.clone()).unwrap();
    let trials = run(&mut s, 3, &f, 100);
    assert_eq!(trials.len(), 20);
    assert!(s.is_done());
    for t in &trials {
        assert!(
            !known.iter().any(|k| k.params == t.params),
            "{:?}",
            t.params
        );
    }
    let failed = s
        .observed()
        .iter()
        .filter(|o| o.objective.is_none())
        .count();
    let (best, v) = s.best().unwrap();
    assert!(num(&best.params, "fast") <= 30.0);
    // Near the peak (value 0 at (12, 80)) within 20 trials.
    assert!(v > -0.1, "{v} at {:?}", best.params);
    assert!(failed < 10, "{failed} failed trials");
}

#[test]
fn genetic_suggests_a_generation_per_batch_and_evolves() {
    let space = sma((5, 50), (10, 200), true);
    let config = GeneticConfig {
        population: 12,
        elites: 2,
        max_generations: Some(8),
        ..GeneticConfig::default()
    };
    let mut g = GeneticSearch::new(space, 4, config).unwrap();
    let gen0 = g.suggest(100);
    assert_eq!(gen0.len(), 12, "generation 0 is the whole population");
    assert!(
        g.suggest(5).is_empty(),
        "waits for the generation's results"
    );
    assert!(!g.is_done());
    let f = |p: &Params| -> Option<f64> {
        Some(-(num(p, "fast") - 20.0).abs() - (num(p, "slow") - 100.0).abs() / 5.0)
    };
    for t in &gen0 {
        g.observe(t.id, f(&t.params)).unwrap();
    }
    assert_eq!(g.generations(), 1);
    let elites: Vec<Params> = g.population()[..2]
        .iter()
        .map(|m| m.params.clone())
        .collect();
    let gen1 = g.suggest(100);
    assert_eq!(gen1.len(), 10, "population minus the elites");
    for t in &gen1 {
        g.observe(t.id, f(&t.params)).unwrap();
    }
    // Elites survive unless beaten.
    for e in &elites {
        assert!(
            g.population().iter().any(|m| &m.params == e)
                || g.population()[..2]
                    .iter()
                    .all(|m| m.fitness >= Some(f(e).unwrap()))
        );
    }
    let all = run(&mut g, 7, &f, 10_000);
    assert!(g.is_done());
    assert_eq!(g.generations(), 8);
    assert_eq!(all.len(), 6 * 10);
    let h = g.history();
    assert_eq!(h.len(), 8);
    // Best never gets worse (elitism) and the population closes in.
    assert!(h.windows(2).all(|w| w[1].best >= w[0].best));
    let first = h[0].diversity.mean_distance;
    let last = g.diversity().unwrap().mean_distance;
    assert!(last < first, "{first} -> {last}");
    assert!(h.iter().all(|s| s.diversity.distinct_share > 0.0));
}

#[test]
fn genetic_stops_on_plateau_budget_and_request() {
    let space = sma((5, 50), (10, 200), false);
    let flat = |_: &Params| Some(0.0);
    let config = GeneticConfig {
        population: 6,
        max_generations: None,
        plateau: Some(Plateau {
            patience: 3,
            epsilon: 0.0,
        }),
        ..GeneticConfig::default()
    };
    let mut g = GeneticSearch::new(space.clone(), 1, config).unwrap();
    run(&mut g, 6, &flat, 10_000);
    assert!(g.is_done());
    // Generation 0 sets the best; three more bring nothing.
    assert_eq!(g.generations(), 4);

    let config = GeneticConfig {
        population: 6,
        max_generations: None,
        max_trials: Some(15),
        ..GeneticConfig::default()
    };
    let mut g = GeneticSearch::new(space.clone(), 1, config).unwrap();
    assert_eq!(run(&mut g, 4, &flat, 10_000).len(), 15);
    assert!(g.is_done());

    let mut g = GeneticSearch::new(space, 1, GeneticConfig::default()).unwrap();
    g.suggest(3);
    g.stop();
    assert!(g.is_done() && g.suggest(3).is_empty());
}

#[test]
fn every_selection_and_crossover_runs_and_stays_valid() {
    for selection in [
        Selection::Tournament { size: 2 },
        Selection::Roulette,
        Selection::Rank,
    ] {
        for crossover in [Crossover::Uniform, Crossover::OnePoint] {
            let config = GeneticConfig {
                population: 10,
                selection,
                crossover,
                max_generations: Some(5),
                ..GeneticConfig::default()
            };
            let mut g = GeneticSearch::new(s1(), 9, config).unwrap();
            // Some trials fail: they rank last.
            let f = |p: &Params| (num(p, "sl_atr") < 2.5).then(|| wave(p).unwrap());
            let all = run(&mut g, 10, &f, 10_000);
            assert_eq!(g.generations(), 5, "{selection:?} {crossover:?}");
            let set: BTreeSet<&Params> = all.iter().map(|t| &t.params).collect();
            assert_eq!(set.len(), all.len());
            for t in &all {
                registry::validate("s1", &t.params).unwrap();
            }
            assert!(g.best().unwrap().1 > f64::NEG_INFINITY);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]


    #[test]
    fn bayes_exhausts_a_small_space_without_repeats_or_invalid_points(
        seed in any::<u64>(),
        f_lo in 1i64..10, f_len in 0i64..6,
        s_lo in 2i64..12, s_len in 0i64..6,
        batch in 1usize..6,
    ) {
        let (f_hi, s_hi) = (f_lo + f_len, s_lo + s_len);
        prop_assume!(f_lo < s_hi);
        let space = sma((f_lo, f_hi), (s_lo, s_hi), true);
        let want = brute_force(&space);
        let config = BayesConfig { max_trials: 1000, candidates: 50, restarts: 0, ..quick_bayes() };
        let mut s = BayesSearch::new(space, seed, config, Vec::new()).unwrap();
        let got = run(&mut s, batch, &wave, 100_000);
        let set: BTreeSet<Params> = got.iter().map(|t| t.params.clone()).collect();
        prop_assert_eq!(set.len(), got.len(), "a repeat");
        prop_assert_eq!(&set, &want, "exhausted exactly");
        prop_assert!(s.is_done());
    }

    #[test]
    fn genetic_never_repeats_and_keeps_constraints(
        seed in any::<u64>(),
        f_lo in 1i64..10, f_len in 0i64..8,
        s_lo in 2i64..12, s_len in 0i64..8,
        population in 2usize..12,
        batch in 1usize..15,
    ) {
        let (f_hi, s_hi) = (f_lo + f_len, s_lo + s_len);
        prop_assume!(f_lo < s_hi);
        let space = sma((f_lo, f_hi), (s_lo, s_hi), true);
        let want = brute_force(&space);
        let config = GeneticConfig {
            population,
            elites: population / 3,
            max_generations: None,
            ..GeneticConfig::default()
        };
        let mut g = GeneticSearch::new(space, seed, config).unwrap();
        let got = run(&mut g, batch, &wave, 100_000);
        let set: BTreeSet<Params> = got.iter().map(|t| t.params.clone()).collect();
        prop_assert_eq!(set.len(), got.len(), "a repeat");
        prop_assert!(set.is_subset(&want));
        // With no generation limit it runs until the space is used up.
        prop_assert_eq!(&set, &want);
        prop_assert!(g.is_done());
    }
}

// ---- Synthetic evidence (short form; long form in examples/evidence.rs).

/// Smooth: a main peak at (12, 80) in log space and a lower one at (40, 160).
fn smooth(p: &Params) -> f64 {
    let (f, s) = (num(p, "fast"), num(p, "slow"));
    let main = (-((f / 12.0).ln().powi(2) / (2.0 * 0.35f64.powi(2))
        + (s / 80.0).ln().powi(2) / (2.0 * 0.4f64.powi(2))))
    .exp();
    let side = (-((f - 40.0).powi(2) / 60.0 + (s - 160.0).powi(2) / 900.0)).exp();
    1.5 * main + 0.9 * side
}

/// Non-smooth: a cone towards (23, 137) with a bonus on a scattered
/// lattice of points (every fifth of `7 fast + 13 slow`).
fn rugged(p: &Params) -> f64 {
    let (f, s) = (num(p, "fast"), num(p, "slow"));
    #[allow(clippy::cast_possible_truncation, reason = "small ints")]
    let bonus = if (7 * f as i64 + 13 * s as i64) % 5 == 0 {
        3.0
    } else {
        0.0
    };
    -((f - 23.0).abs() + (s - 137.0).abs() / 4.0) + bonus
}

fn grid_best(space: &Space, f: &dyn Fn(&Params) -> f64) -> (f64, usize) {
    let mut g = GridSearch::new(space.clone(), None).unwrap();
    let all = run(&mut g, 1000, &|p| Some(f(p)), usize::MAX);
    let best = all
        .iter()
        .map(|t| f(&t.params))
        .fold(f64::NEG_INFINITY, f64::max);
    (best, all.len())
}

#[test]
fn genetic_beats_random_search_at_equal_evaluations_on_a_rugged_objective() {
    let space = sma((5, 50), (10, 200), false);
    let config = GeneticConfig {
        population: 20,
        max_generations: Some(10),
        ..GeneticConfig::default()
    };
    let (mut ga, mut rnd) = (0.0, 0.0);
    let seeds = 1..=12u64;
    for seed in seeds.clone() {
        let mut g = GeneticSearch::new(space.clone(), seed, config.clone()).unwrap();
        let trials = run(&mut g, 20, &|p| Some(rugged(p)), usize::MAX);
        assert_eq!(trials.len(), 20 + 9 * 18);
        ga += g.best().unwrap().1;
        let mut r = RandomSearch::new(space.clone(), seed, None).unwrap();
        rnd += r
            .suggest(trials.len())
            .iter()
            .map(|t| rugged(&t.params))
            .fold(f64::NEG_INFINITY, f64::max);
    }
    #[allow(clippy::cast_precision_loss, reason = "seed count")]
    let k = seeds.count() as f64;
    assert!(
        ga / k > rnd / k,
        "GA mean best {} vs random {}",
        ga / k,
        rnd / k
    );
}

#[test]
fn bayes_reaches_one_percent_of_the_grid_best_with_under_half_its_evaluations() {
    let space = sma((5, 50), (10, 200), false);
    let (best, size) = grid_best(&space, &smooth);
    assert_eq!(size, 7_925);
    let target = best - 0.01 * best.abs();
    for seed in 1..=2 {
        let config = BayesConfig {
            n_init: 10,
            max_trials: 120,
            ..BayesConfig::default()
        };
        let mut s = BayesSearch::new(space.clone(), seed, config, Vec::new()).unwrap();
        let mut n = 0;
        let mut hit = None;
        while hit.is_none() && !s.is_done() {
            for t in s.suggest(4) {
                n += 1;
                let v = smooth(&t.params);
                if v >= target && hit.is_none() {
                    hit = Some(n);
                }
                s.observe(t.id, Some(v)).unwrap();
            }
        }
        let hit = hit.unwrap_or_else(|| panic!("seed {seed}: not within 1% in {n}"));
        assert!(hit <= size / 2, "seed {seed}: {hit}");
    }
}
