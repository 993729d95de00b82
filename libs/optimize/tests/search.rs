//! Spaces and searches against the real strategy registry.

use std::collections::{BTreeMap, BTreeSet};

use grodt_optimize::{
    Dim, GridSearch, Others, Params, Plateau, Prior, RandomSearch, Range, Search, SearchError,
    Searcher, SetupError, Space, SpaceError, Trial,
};
use grodt_strategies::registry;
use proptest::prelude::*;

fn linear(min: f64, max: f64, step: Option<f64>) -> Range {
    Range::Linear {
        min,
        max,
        step,
        prior: Prior::Uniform,
    }
}

fn ranges(pairs: Vec<(&str, Range)>) -> BTreeMap<String, Range> {
    pairs.into_iter().map(|(k, r)| (k.to_owned(), r)).collect()
}

/// sma_cross over fast x slow x long_short.
fn sma_space(fast: (i64, i64, i64), slow: (i64, i64, i64)) -> Space {
    #[allow(clippy::cast_precision_loss, reason = "small test ints")]
    let r = |(a, b, s): (i64, i64, i64)| linear(a as f64, b as f64, Some(s as f64));
    Space::new(
        "sma_cross",
        &ranges(vec![
            ("fast", r(fast)),
            ("slow", r(slow)),
            (
                "long_short",
                Range::Values {
                    values: vec!["false".into(), "true".into()],
                },
            ),
        ]),
        Others::Default,
    )
    .unwrap()
}

/// Every valid point by brute force: the product of the dimensions' grids,
/// filtered by the registry.
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

/// Suggests in batches of `batch` until done, observing `f(params)`.
fn run(
    s: &mut dyn Search,
    batch: usize,
    f: &dyn Fn(&Params) -> Option<f64>,
    limit: usize,
) -> Vec<Trial> {
    let mut all = Vec::new();
    while !s.is_done() && all.len() < limit {
        let trials = s.suggest(batch);
        for t in &trials {
            s.observe(t.id, f(&t.params)).unwrap();
        }
        all.extend(trials);
    }
    all
}

fn sum_objective(p: &Params) -> Option<f64> {
    let v: f64 = p.values().filter_map(|v| v.parse::<f64>().ok()).sum();
    Some(v.sin())
}

#[test]
fn ranges_outside_the_schema_are_refused_naming_the_parameter() {
    let e = Space::new(
        "sma_cross",
        &ranges(vec![("fast", linear(0.0, 10.0, None))]),
        Others::Default,
    )
    .unwrap_err();
    assert!(
        matches!(&e, SpaceError::BadRange { param, .. } if param == "fast"),
        "{e}"
    );
    assert!(e.to_string().contains("outside the schema's bounds"), "{e}");

    let e = Space::new(
        "s1",
        &ranges(vec![("tp_atr", linear(1.0, 25.0, None))]),
        Others::Default,
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("parameter tp_atr: "), "{e}");

    let e = Space::new(
        "sma_cross",
        &ranges(vec![("fats", linear(1.0, 5.0, None))]),
        Others::Default,
    )
    .unwrap_err();
    assert!(matches!(e, SpaceError::UnknownParam { ref param, .. } if param == "fats"));

    let e = Space::new(
        "sma_cross",
        &ranges(vec![(
            "fast",
            Range::Log {
                min: 1.0,
                max: 10.0,
                points: 5,
            },
        )]),
        Others::Default,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("int parameter cannot take a log range"),
        "{e}"
    );

    let e = Space::new(
        "sma_cross",
        &ranges(vec![("fast", linear(1.5, 10.0, None))]),
        Others::Default,
    )
    .unwrap_err();
    assert!(e.to_string().contains("not an integer"), "{e}");

    let e = Space::new(
        "sma_cross",
        &ranges(vec![(
            "long_short",
            Range::Values {
                values: vec!["yes".into()],
            },
        )]),
        Others::Default,
    )
    .unwrap_err();
    assert!(e.to_string().contains("long_short"), "{e}");

    let e = Space::new(
        "sma_cross",
        &ranges(vec![("fraction", linear(0.5, 1.5, None))]),
        Others::Default,
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("parameter fraction: "), "{e}");

    // Grids whose points would collide once printed.
    let e = Space::new(
        "s1",
        &ranges(vec![(
            "tp_atr",
            Range::Log {
                min: 1.0,
                max: 1.000_01,
                points: 100,
            },
        )]),
        Others::Default,
    )
    .unwrap_err();
    assert!(e.to_string().contains("collide"), "{e}");
    let e = Space::new(
        "s1",
        &ranges(vec![("tp_atr", linear(1.0, 2.0, Some(1e-12)))]),
        Others::Default,
    )
    .unwrap_err();
    assert!(e.to_string().contains("step must be"), "{e}");

    // The same set twice, in another order.
    let e = Space::new(
        "sma_cross",
        &ranges(vec![(
            "regimes",
            Range::Values {
                values: vec!["ranging,trending_up".into(), "trending_up, ranging".into()],
            },
        )]),
        Others::Default,
    )
    .unwrap_err();
    assert!(e.to_string().contains("given twice"), "{e}");

    // Every fast above every slow: nothing valid.
    let e = Space::new(
        "sma_cross",
        &ranges(vec![
            ("fast", linear(50.0, 60.0, None)),
            ("slow", linear(10.0, 20.0, None)),
        ]),
        Others::Default,
    )
    .unwrap_err();
    assert!(e.to_string().contains("fast < slow"), "{e}");

    assert!(matches!(
        Space::new("rsi", &BTreeMap::new(), Others::Default),
        Err(SpaceError::UnknownStrategy(_))
    ));
}

#[test]
fn dimensions_follow_the_schema_types() {
    let space = Space::new(
        "s1",
        &ranges(vec![
            ("ema_fast", linear(5.0, 20.0, Some(5.0))),
            (
                "tp_atr",
                Range::Log {
                    min: 0.5,
                    max: 8.0,
                    points: 5,
                },
            ),
            ("sl_atr", linear(0.5, 1.0, None)),
            ("fraction", linear(0.5, 1.0, Some(0.25))),
            (
                "allow_short",
                Range::Fixed {
                    value: "true".into(),
                },
            ),
        ]),
        Others::Default,
    )
    .unwrap();
    let grid = |name: &str| -> Vec<String> {
        let i = space.names().iter().position(|n| n == name).unwrap();
        let d = &space.dims()[i];
        (0..d.grid_len()).map(|k| d.grid_value(k)).collect()
    };
    assert_eq!(grid("ema_fast"), ["5", "10", "15", "20"]);
    assert_eq!(grid("tp_atr"), ["0.5", "1", "2", "4", "8"]);
    assert_eq!(grid("sl_atr"), ["0.5", "0.6", "0.7", "0.8", "0.9", "1"]);
    assert_eq!(grid("fraction"), ["0.5", "0.75", "1"]);
    assert_eq!(grid("allow_short"), ["true"]);
    // ema_slow, constrained with ema_fast, is fixed at its default.
    assert_eq!(
        space.names(),
        [
            "ema_fast",
            "ema_slow",
            "tp_atr",
            "sl_atr",
            "fraction",
            "allow_short"
        ]
    );
    assert_eq!(grid("ema_slow"), ["50"]);
    assert!(matches!(space.dims()[2], Dim::LogFloat { .. }));
    assert_eq!(space.grid_len(), Some(4 * 5 * 6 * 3));
    // ema_slow at its default (50): ema_fast 5..20 all below it.
    assert_eq!(space.valid_grid_len(), Some(4 * 5 * 6 * 3));
    assert!(!space.is_discrete());
}

#[test]
fn a_float_grid_starts_at_its_min_and_prints_without_noise() {
    let space = Space::new(
        "s3",
        &ranges(vec![("volume_mult", linear(0.05, 0.45, Some(0.1)))]),
        Others::Default,
    )
    .unwrap();
    let d = &space.dims()[0];
    let values: Vec<String> = (0..d.grid_len()).map(|i| d.grid_value(i)).collect();
    assert_eq!(values, ["0.05", "0.15", "0.25", "0.35", "0.45"]);
}

#[test]
fn a_constraint_with_a_parameter_at_its_default_is_applied_and_counted() {
    // slow stays at its default 30: only fast 5..29 is valid.
    let space = Space::new(
        "sma_cross",
        &ranges(vec![("fast", linear(5.0, 50.0, None))]),
        Others::Default,
    )
    .unwrap();
    assert_eq!(space.valid_grid_len(), Some(25));
    let mut g = GridSearch::new(space.clone(), None).unwrap();
    let got = run(&mut g, 10, &sum_objective, 1000);
    assert_eq!(got.len(), 25);
    assert!(got.iter().all(|t| t.params["slow"] == "30"));
    let mut r = RandomSearch::new(space, 5, None).unwrap();
    let got = run(&mut r, 10, &sum_objective, 1000);
    assert_eq!(got.len(), 25);
    assert!(r.is_done());
}

#[test]
fn a_grid_skips_blocks_that_break_a_constraint() {
    // fast = 1000 with slow 2..=100000: the 999 slow values at or below
    // fast (x 100 fractions each) are skipped a block at a time.
    let space = Space::new(
        "sma_cross",
        &ranges(vec![
            ("fast", linear(1000.0, 1000.0, None)),
            ("slow", linear(2.0, 100_000.0, None)),
            ("fraction", linear(0.01, 1.0, None)),
        ]),
        Others::Default,
    )
    .unwrap();
    assert_eq!(space.grid_len(), Some(99_999 * 100));
    assert_eq!(space.valid_grid_len(), Some(99_000 * 100));
    let mut g = GridSearch::new(space, None).unwrap();
    let t = g.suggest(2);
    assert_eq!(t[0].params["slow"], "1001");
    assert_eq!(t[0].params["fraction"], "0.01");
    assert_eq!(t[1].params["fraction"], "0.02");
}

#[test]
fn the_whole_schema_is_a_space_counted_without_enumerating_it() {
    let space = Space::new("sma_cross", &BTreeMap::new(), Others::Schema).unwrap();
    // fast 1..99999 x slow 2..100000 with fast < slow, x 3 (long_short,
    // short_only) pairs (not both true) x 100 fractions x 3 gating choices
    // x 3 regime subsets... counted exactly.
    let pairs: u64 = (2..=100_000u64).map(|s| (s - 1).min(99_999)).sum();
    assert_eq!(space.valid_grid_len(), Some(pairs * 3 * 100 * 31 * 3));
    let mut grid = GridSearch::new(space, None).unwrap();
    let first = grid.suggest(3);
    assert_eq!(first[0].params["fast"], "1");
    assert_eq!(first[0].params["slow"], "2");
    for t in &first {
        registry::validate("sma_cross", &t.params).unwrap();
    }
}

#[test]
fn grid_is_ordered_with_the_last_parameter_fastest() {
    let mut g = GridSearch::new(sma_space((1, 3, 1), (2, 3, 1)), None).unwrap();
    let got: Vec<(String, String, String)> = g
        .suggest(100)
        .into_iter()
        .map(|t| {
            (
                t.params["fast"].clone(),
                t.params["slow"].clone(),
                t.params["long_short"].clone(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [
        ("1", "2", "false"),
        ("1", "2", "true"),
        ("1", "3", "false"),
        ("1", "3", "true"),
        ("2", "3", "false"),
        ("2", "3", "true"),
    ]
    .iter()
    .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
    .collect();
    assert_eq!(got, want);
    assert!(g.is_done());
    assert!(g.suggest(5).is_empty());
}

#[test]
fn grid_plateau_stops_after_patience_results_without_improvement() {
    let space = sma_space((1, 20, 1), (2, 40, 1));
    let plateau = Plateau {
        patience: 5,
        epsilon: 0.01,
    };
    let mut g = GridSearch::new(space, Some(plateau)).unwrap();
    // Improves by 0.005 per trial (below epsilon) after the first.
    let mut k = 0.0;
    let mut n = 0;
    while !g.is_done() {
        for t in g.suggest(1) {
            g.observe(t.id, Some(k)).unwrap();
            k += 0.005;
            n += 1;
        }
    }
    assert_eq!(n, 6, "first result, then 5 without a gain above epsilon");
    let (best, v) = g.best().unwrap();
    assert_eq!(best.id, 5);
    assert!((v - 0.025).abs() < 1e-12);

    for bad in [
        Plateau {
            patience: 0,
            epsilon: 0.0,
        },
        Plateau {
            patience: 3,
            epsilon: -1.0,
        },
        Plateau {
            patience: 3,
            epsilon: f64::NAN,
        },
    ] {
        assert_eq!(
            GridSearch::new(sma_space((1, 3, 1), (2, 5, 1)), Some(bad)).unwrap_err(),
            SetupError::BadPlateau
        );
        assert!(RandomSearch::new(sma_space((1, 3, 1), (2, 5, 1)), 1, Some(bad)).is_err());
    }

    // Failed trials count as results without improvement.
    let mut g = GridSearch::new(sma_space((1, 20, 1), (2, 40, 1)), Some(plateau)).unwrap();
    let trials = g.suggest(10);
    g.observe(trials[0].id, Some(1.0)).unwrap();
    for t in &trials[1..6] {
        g.observe(t.id, None).unwrap();
    }
    assert!(g.is_done());
}

#[test]
fn observing_an_unknown_or_repeated_trial_is_refused() {
    let mut g = GridSearch::new(sma_space((1, 3, 1), (2, 5, 1)), None).unwrap();
    let t = g.suggest(1).remove(0);
    assert_eq!(g.observe(7, Some(1.0)), Err(SearchError::NotPending(7)));
    g.observe(t.id, Some(f64::NAN)).unwrap();
    assert_eq!(
        g.observe(t.id, Some(1.0)),
        Err(SearchError::NotPending(t.id))
    );
    assert!(g.best().is_none(), "a NaN objective is a failed trial");
    assert_eq!(g.observed()[0].objective, None);
}

#[test]
fn random_exhausts_a_small_discrete_space_without_repeats() {
    let space = sma_space((1, 10, 1), (5, 12, 1));
    let want = brute_force(&space);
    assert_eq!(space.valid_grid_len(), Some(want.len() as u64));
    let mut r = RandomSearch::new(space, 7, None).unwrap();
    let got = run(&mut r, 4, &sum_objective, 10_000);
    let set: BTreeSet<Params> = got.iter().map(|t| t.params.clone()).collect();
    assert_eq!(set.len(), got.len(), "no repeats");
    assert_eq!(set, want);
    assert!(r.is_done());
}

#[test]
fn same_seed_same_sequence_whatever_the_batches() {
    let space = Space::new(
        "s2",
        &ranges(vec![
            ("period", linear(5.0, 50.0, None)),
            (
                "k",
                Range::Linear {
                    min: 1.0,
                    max: 3.0,
                    step: None,
                    prior: Prior::Normal { mean: 2.0, sd: 0.5 },
                },
            ),
            ("oversold", linear(10.0, 40.0, None)),
            ("overbought", linear(30.0, 90.0, None)),
        ]),
        Others::Default,
    )
    .unwrap();
    let a = run(
        &mut RandomSearch::new(space.clone(), 42, None).unwrap(),
        5,
        &sum_objective,
        60,
    );
    let b = run(
        &mut RandomSearch::new(space.clone(), 42, None).unwrap(),
        3,
        &sum_objective,
        60,
    );
    let c = run(
        &mut RandomSearch::new(space.clone(), 43, None).unwrap(),
        5,
        &sum_objective,
        60,
    );
    assert_eq!(a, b);
    assert_ne!(a, c);
    let g1 = run(
        &mut GridSearch::new(space.clone(), None).unwrap(),
        7,
        &sum_objective,
        100,
    );
    let g2 = run(
        &mut GridSearch::new(space, None).unwrap(),
        7,
        &sum_objective,
        100,
    );
    assert_eq!(g1, g2);
}

/// Runs `n` batches, serializes to JSON, restores, runs the rest; compares
/// with an uninterrupted run.
fn resumes_like_uninterrupted(make: &dyn Fn() -> Searcher) {
    let mut whole = make();
    let uninterrupted = run(&mut whole, 4, &sum_objective, 80);

    let mut first = make();
    let mut half = run(&mut first, 4, &sum_objective, 40);
    // A batch suggested but not yet observed at the "crash".
    let out = first.suggest(4);
    let saved = serde_json::to_string(&first).unwrap();
    let mut restored: Searcher = serde_json::from_str(&saved).unwrap();
    assert_eq!(restored, first);
    for t in &out {
        restored.observe(t.id, sum_objective(&t.params)).unwrap();
    }
    half.extend(out);
    half.extend(run(&mut restored, 4, &sum_objective, 36));
    assert_eq!(half, uninterrupted);
    assert_eq!(restored, whole);
    assert_eq!(restored.best(), whole.best());
}

#[test]
fn a_restored_search_continues_the_same_sequence() {
    let space = Space::new(
        "s1",
        &ranges(vec![
            ("ema_fast", linear(2.0, 30.0, None)),
            ("ema_slow", linear(10.0, 60.0, None)),
            (
                "tp_atr",
                Range::Log {
                    min: 0.5,
                    max: 10.0,
                    points: 4,
                },
            ),
        ]),
        Others::Default,
    )
    .unwrap();
    let s = space.clone();
    resumes_like_uninterrupted(&move || {
        Searcher::Random(RandomSearch::new(s.clone(), 9, None).unwrap())
    });
    let plateau = Some(Plateau {
        patience: 1000,
        epsilon: 0.0,
    });
    resumes_like_uninterrupted(&move || {
        Searcher::Grid(GridSearch::new(space.clone(), plateau).unwrap())
    });
}

#[test]
fn log_uniform_and_normal_priors_stay_in_bounds_and_have_their_shape() {
    let space = Space::new(
        "s1",
        &ranges(vec![
            (
                "tp_atr",
                Range::Log {
                    min: 0.1,
                    max: 10.0,
                    points: 3,
                },
            ),
            (
                "sl_atr",
                Range::Linear {
                    min: 0.5,
                    max: 5.0,
                    step: None,
                    prior: Prior::Normal { mean: 1.0, sd: 0.5 },
                },
            ),
        ]),
        Others::Default,
    )
    .unwrap();
    let mut r = RandomSearch::new(space, 1, None).unwrap();
    let trials = r.suggest(2000);
    assert_eq!(trials.len(), 2000);
    let tp: Vec<f64> = trials
        .iter()
        .map(|t| t.params["tp_atr"].parse().unwrap())
        .collect();
    let sl: Vec<f64> = trials
        .iter()
        .map(|t| t.params["sl_atr"].parse().unwrap())
        .collect();
    assert!(tp.iter().all(|x| (0.1..=10.0).contains(x)));
    assert!(sl.iter().all(|x| (0.5..=5.0).contains(x)));
    // Log-uniform: about a half below 1 (the geometric middle).
    let below = tp.iter().filter(|x| **x < 1.0).count();
    assert!((850..1150).contains(&below), "{below}");
    // Normal(1, 0.5) truncated to [0.5, 5]: most mass near 1.
    let near = sl.iter().filter(|x| **x < 1.5).count();
    assert!(near > 1400, "{near}");
    #[allow(clippy::cast_precision_loss, reason = "test mean")]
    let mean = sl.iter().sum::<f64>() / sl.len() as f64;
    assert!((1.1..1.4).contains(&mean), "{mean}");
}

#[test]
fn a_continuous_random_search_of_every_strategy_suggests_only_valid_trials() {
    for spec in registry::specs() {
        let space = Space::new(spec.name, &BTreeMap::new(), Others::Schema).unwrap();
        let mut r = RandomSearch::new(space, 3, None).unwrap();
        let trials = r.suggest(200);
        assert_eq!(trials.len(), 200, "{}", spec.name);
        for t in &trials {
            registry::validate(spec.name, &t.params)
                .unwrap_or_else(|e| panic!("{} {:?}: {e}", spec.name, t.params));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn grid_visits_every_valid_point_exactly_once(
        f_lo in 1i64..20, f_len in 0i64..15, f_step in 1i64..4,
        s_lo in 2i64..25, s_len in 0i64..15, s_step in 1i64..4,
        batch in 1usize..9,
    ) {
        let f_hi = f_lo + f_len;
        let s_hi = s_lo + s_len;
        prop_assume!(f_lo < s_lo + s_len / s_step * s_step);
        let space = sma_space((f_lo, f_hi, f_step), (s_lo, s_hi, s_step));
        let want = brute_force(&space);
        let mut g = GridSearch::new(space.clone(), None).unwrap();
        let got = run(&mut g, batch, &sum_objective, 100_000);
        let set: BTreeSet<Params> = got.iter().map(|t| t.params.clone()).collect();
        prop_assert_eq!(set.len(), got.len());
        prop_assert_eq!(&set, &want);
        prop_assert_eq!(space.valid_grid_len(), Some(want.len() as u64));
        let ids: Vec<u64> = got.iter().map(|t| t.id).collect();
        prop_assert_eq!(ids, (0..got.len() as u64).collect::<Vec<_>>());
        // Deterministic whatever the batch size.
        let again = run(
            &mut GridSearch::new(space, None).unwrap(),
            batch + 3,
            &sum_objective,
            100_000,
        );
        prop_assert_eq!(again, got);
    }

    #[test]
    fn random_never_repeats_and_keeps_bounds_and_constraints(
        seed in any::<u64>(),
        f_lo in 1i64..20, f_len in 0i64..12,
        s_lo in 2i64..25, s_len in 0i64..12,
        batch in 1usize..9,
    ) {
        let (f_hi, s_hi) = (f_lo + f_len, s_lo + s_len);
        prop_assume!(f_lo < s_hi);
        let space = sma_space((f_lo, f_hi, 1), (s_lo, s_hi, 1));
        let want = brute_force(&space);
        let mut r = RandomSearch::new(space, seed, None).unwrap();
        let got = run(&mut r, batch, &sum_objective, 100_000);
        let set: BTreeSet<Params> = got.iter().map(|t| t.params.clone()).collect();
        prop_assert_eq!(set.len(), got.len(), "a repeat");
        prop_assert_eq!(&set, &want, "exhausted exactly");
        for t in &got {
            let f: i64 = t.params["fast"].parse().unwrap();
            let s: i64 = t.params["slow"].parse().unwrap();
            prop_assert!((f_lo..=f_hi).contains(&f) && (s_lo..=s_hi).contains(&s));
            prop_assert!(f < s);
            prop_assert!(registry::validate("sma_cross", &t.params).is_ok());
        }
        prop_assert!(r.is_done());
    }

    #[test]
    fn random_is_deterministic_per_seed(seed in any::<u64>(), batch in 1usize..7) {
        let space = Space::new(
            "s2",
            &ranges(vec![
                ("oversold", linear(5.0, 50.0, None)),
                ("overbought", linear(20.0, 95.0, None)),
                ("k", linear(0.5, 4.0, None)),
            ]),
            Others::Default,
        )
        .unwrap();
        let a = run(&mut RandomSearch::new(space.clone(), seed, None).unwrap(), batch, &sum_objective, 30);
        let b = run(&mut RandomSearch::new(space, seed, None).unwrap(), 30, &sum_objective, 30);
        prop_assert_eq!(&a[..30], &b[..30]);
        for t in &a {
            let lo: f64 = t.params["oversold"].parse().unwrap();
            let hi: f64 = t.params["overbought"].parse().unwrap();
            prop_assert!(lo < hi);
            prop_assert!((0.5..=4.0).contains(&t.params["k"].parse::<f64>().unwrap()));
        }
    }
}
