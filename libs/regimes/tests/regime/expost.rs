//! The ex-post labelling rule on synthetic series, and the confusion-matrix arithmetic.

use grodt_regimes::Regime;
use grodt_regimes::expost::{Confusion, ExPostRule, label};

/// Prices from a start and a repeating pattern of additive steps.
fn steps(start: f64, pattern: &[f64], n: usize) -> Vec<f64> {
    let mut p = start;
    let mut out = vec![p];
    for i in 1..n {
        p += pattern[i % pattern.len()];
        out.push(p);
    }
    out
}

fn labels_of(closes: &[f64]) -> Vec<Regime> {
    let rule = ExPostRule::default();
    let l = label(closes, &rule).unwrap();
    assert_eq!(l.len(), closes.len());
    // the last `horizon` bars have no full forward window
    assert!(l[closes.len() - rule.horizon..].iter().all(Option::is_none));
    l.into_iter().flatten().collect()
}

fn all(closes: &[f64], r: Regime) {
    let l = labels_of(closes);
    assert!(!l.is_empty());
    assert!(l.iter().all(|&x| x == r), "expected all {r}, got {l:?}");
}

#[test]
fn a_steady_uptrend_is_trending_up() {
    // geometric with a small wiggle: +1%, -0.2% per bar
    let mut c = vec![100.0];
    for i in 1..300 {
        let last: f64 = c[i - 1];
        c.push(last * if i % 2 == 0 { 0.998 } else { 1.01 });
    }
    all(&c, Regime::TrendingUp);
}

#[test]
fn a_steady_downtrend_is_trending_down() {
    let mut c = vec![100.0];
    for i in 1..300 {
        let last: f64 = c[i - 1];
        c.push(last * if i % 2 == 0 { 1.002 } else { 0.99 });
    }
    all(&c, Regime::TrendingDown);
}

#[test]
fn flat_and_oscillating_series_are_ranging() {
    all(&[250.0; 200], Regime::Ranging);
    // +1, -1: every even window ends where it started
    all(&steps(1000.0, &[1.0, -1.0], 200), Regime::Ranging);
}

#[test]
fn a_weak_drift_is_transition() {
    // +3, -1.5: net 1.5 for a path of 4.5 per pair, efficiency about 1/3
    all(&steps(1000.0, &[3.0, -1.5], 300), Regime::Transition);
}

#[test]
fn a_volatility_burst_is_high_volatility_and_uniform_volatility_is_not() {
    // calm +-1 around 1000, then 40 bars of +-30, then calm again
    let mut c = steps(1000.0, &[1.0, -1.0], 200);
    let mut p = *c.last().unwrap();
    for i in 0..40 {
        p += if i % 2 == 0 { 30.0 } else { -30.0 };
        c.push(p);
    }
    c.extend(steps(p, &[1.0, -1.0], 200).into_iter().skip(1));
    let l = label(&c, &ExPostRule::default()).unwrap();
    // a window lying wholly inside the burst
    assert_eq!(l[205], Some(Regime::HighVolatility));
    assert_eq!(l[50], Some(Regime::Ranging));
    assert_eq!(l[350], Some(Regime::Ranging));
    let hv = l
        .iter()
        .flatten()
        .filter(|&&r| r == Regime::HighVolatility)
        .count();
    // windows touching the burst: about 40 + 20, never the calm ones
    assert!((40..=60).contains(&hv), "{hv}");
    // uniform volatility: no window is 1.5 times the median, none is volatile
    let uniform = steps(1000.0, &[30.0, -30.0], 300);
    assert!(!labels_of(&uniform).contains(&Regime::HighVolatility));
}

#[test]
fn confusion_matrix_arithmetic() {
    use Regime::{
        HighVolatility as H, Ranging as R, Transition as X, TrendingDown as D, TrendingUp as U,
    };
    let mut m = Confusion::default();
    // (truth, predicted): 4 up called up, 1 up called transition,
    // 2 ranging called ranging, 2 ranging called up, 1 high vol called down.
    for (t, p, n) in [(U, U, 4), (U, X, 1), (R, R, 2), (R, U, 2), (H, D, 1)] {
        for _ in 0..n {
            m.add(t, p);
        }
    }
    assert_eq!(m.total(), 10);
    assert_eq!(m.agreed(), 6);
    assert_eq!(m.accuracy(), Some(0.6));
    assert_eq!(m.counts[0], [4, 0, 0, 1, 0]);
    assert_eq!(m.counts[2], [2, 0, 2, 0, 0]);
    assert_eq!(m.truth_count(U), 5);
    assert_eq!(m.predicted_count(U), 6);
    assert_eq!(m.recall(U), Some(0.8));
    assert!((m.precision(U).unwrap() - 4.0 / 6.0).abs() < 1e-12);
    assert_eq!(m.recall(D), None); // no bar labelled down ex post
    assert_eq!(m.precision(D), Some(0.0));
    assert_eq!(m.majority_baseline(), Some(0.5));
    // chance: up 0.5*0.6 + down 0*0.1 + ranging 0.4*0.2 + transition 0*0.1 + hv 0.1*0
    let chance = 0.5 * 0.6 + 0.4 * 0.2;
    assert!((m.chance_agreement().unwrap() - chance).abs() < 1e-12);
    assert!((m.kappa().unwrap() - (0.6 - chance) / (1.0 - chance)).abs() < 1e-12);
    assert_eq!(Confusion::default().accuracy(), None);
}

/// `grade` end to end on a constant series: the classifier says ranging
/// (docs/regimes.md) and so does the ex-post rule, so every graded decision
/// agrees; the last `horizon` decisions have no forward window.
#[test]
fn grade_counts_every_decision_with_a_forward_window() {
    use grodt_core::Bar;
    use grodt_regimes::RegimeConfig;
    use grodt_regimes::expost::grade;
    let bars: Vec<Bar> = (0..400)
        .map(|i| Bar {
            ts: i * 86_400_000_000_000,
            open: 10_000,
            high: 10_000,
            low: 10_000,
            close: 10_000,
            volume: 5,
        })
        .collect();
    let rule = ExPostRule::default();
    let g = grade(RegimeConfig::default(), 2, &bars, &rule).unwrap();
    // daily bars: every bar from index 262 is a decision
    assert_eq!((g.bars, g.decisions), (400, 400 - 262));
    assert_eq!(g.graded, g.decisions - rule.horizon);
    assert_eq!(g.in_force.total() as usize, g.graded);
    assert_eq!(g.in_force.accuracy(), Some(1.0));
    assert_eq!(g.in_force.truth_count(Regime::Ranging) as usize, g.graded);
    assert_eq!(g.candidate, g.in_force);
    assert_eq!(g.trailing.total() as usize, g.decisions);
    assert_eq!(g.trailing.accuracy(), Some(1.0));
}
