//! Property tests of the regime rules: a constant series is Ranging, a scaled copy
//! gives the same regimes, decisions are deterministic and survive a restore, and
//! confirmation and dwell hold.

use grodt_core::Bar;
use grodt_regimes::{Classifier, Decision, Regime, RegimeConfig, Rule, classify};
use proptest::prelude::*;

const MINUTE: i64 = 60_000_000_000;

/// Small windows so short series get past warm-up.
fn small(confirm: u32, min_dwell: u32) -> RegimeConfig {
    RegimeConfig {
        vwap_window: 5,
        slope_lag: 3,
        atr_period: 5,
        atr_rank_window: 20,
        vol_short: 3,
        vol_long: 12,
        confirm,
        min_dwell,
        ..RegimeConfig::default()
    }
}

/// Bar spacing: 1 minute, 5 minutes, 1 hour or 1 day.
fn spacing() -> impl Strategy<Value = i64> {
    prop::sample::select(vec![MINUTE, 5 * MINUTE, 60 * MINUTE, 1440 * MINUTE])
}

/// A random walk with segments of different drift and volatility.
fn walk() -> impl Strategy<Value = Vec<Bar>> {
    (
        spacing(),
        1_000i64..1_000_000,
        prop::collection::vec((-30i64..=30, 1i64..=60, 20usize..80), 6..12),
        prop::collection::vec((-100i64..=100, 0i64..100, 0i64..100, 0i64..5_000), 400),
    )
        .prop_map(|(step, start, segments, noise)| {
            let mut bars = Vec::new();
            let mut prev = start;
            let mut k = 0usize;
            for (drift, vol, n) in segments {
                for _ in 0..n {
                    let (e, up, down, v) = noise[k % noise.len()];
                    let scale = vol * start / 10_000;
                    let close = (prev + drift * start / 10_000 + e * scale / 100).max(1);
                    let high = prev.max(close) + up * scale / 100;
                    let low = (prev.min(close) - down * scale / 100).max(1);
                    bars.push(Bar {
                        ts: i64::try_from(k).unwrap() * step,
                        open: prev,
                        high,
                        low,
                        close,
                        volume: v,
                    });
                    prev = close;
                    k += 1;
                }
            }
            bars
        })
}

fn regimes(d: &[Decision]) -> Vec<(i64, Regime, Rule)> {
    d.iter().map(|x| (x.ts, x.regime, x.rule)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_constant_series_is_ranging(
        step in spacing(),
        low in 1i64..1_000_000,
        range in 0i64..1_000,
        o in 0.0f64..=1.0,
        c in 0.0f64..=1.0,
        volume in 0i64..1_000_000,
        n in 150usize..300,
        confirm in 1u32..4,
        dwell in 1u32..6,
    ) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss, reason = "test data")]
        let at = |f: f64| low + (f * range as f64) as i64;
        let bars: Vec<Bar> = (0..n)
            .map(|i| Bar {
                ts: i64::try_from(i).unwrap() * step,
                open: at(o),
                high: low + range,
                low,
                close: at(c),
                volume,
            })
            .collect();
        let d = classify(small(confirm, dwell), 2, &bars).unwrap();
        prop_assert!(!d.is_empty());
        for x in &d {
            prop_assert_eq!(x.regime, Regime::Ranging);
            prop_assert_eq!(x.rule, Rule::Flat);
            prop_assert_eq!(x.inputs.slope, 0.0);
            prop_assert_eq!(x.inputs.atr_percentile, 0.5);
            prop_assert_eq!(x.inputs.vol_ratio, 1.0);
        }
    }

    #[test]
    fn a_scaled_copy_gives_the_same_regimes(
        bars in walk(),
        factor in prop::sample::select(vec![3i64, 10, 100]),
        confirm in 1u32..4,
        dwell in 1u32..6,
    ) {
        let scaled: Vec<Bar> = bars
            .iter()
            .map(|b| Bar {
                open: b.open * factor,
                high: b.high * factor,
                low: b.low * factor,
                close: b.close * factor,
                ..*b
            })
            .collect();
        let a = classify(small(confirm, dwell), 2, &bars).unwrap();
        // x10 and x100 are the same prices at one or two more decimals; x3 another price level.
        let precision = match factor { 10 => 3, 100 => 4, _ => 2 };
        let b = classify(small(confirm, dwell), precision, &scaled).unwrap();
        prop_assert!(!a.is_empty());
        prop_assert_eq!(regimes(&a), regimes(&b));
        for (x, y) in a.iter().zip(&b) {
            prop_assert_eq!(x.inputs.atr_percentile, y.inputs.atr_percentile);
            prop_assert_eq!(x.inputs.vol_ratio, y.inputs.vol_ratio);
            prop_assert!((x.inputs.slope - y.inputs.slope).abs() <= 1e-9 * x.inputs.slope.abs().max(1.0));
        }
    }

    #[test]
    fn decisions_are_deterministic_and_survive_a_restore(
        bars in walk(),
        cut in 0.0f64..=1.0,
        confirm in 1u32..4,
        dwell in 1u32..6,
    ) {
        let config = small(confirm, dwell);
        let once = classify(config.clone(), 2, &bars).unwrap();
        prop_assert_eq!(&once, &classify(config.clone(), 2, &bars).unwrap());
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss, reason = "an index")]
        let mid = (cut * bars.len() as f64) as usize;
        let mut c = Classifier::new(config, 2).unwrap();
        let mut split: Vec<Decision> = bars[..mid].iter().filter_map(|b| c.on_bar(b)).collect();
        let json = serde_json::to_string(&c).unwrap();
        let mut restored: Classifier = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&restored, &c);
        // a restarted consumer may be handed the last bars again: no repeat
        for b in &bars[mid.saturating_sub(3)..mid] {
            prop_assert!(restored.on_bar(b).is_none());
        }
        split.extend(bars[mid..].iter().filter_map(|b| restored.on_bar(b)));
        prop_assert_eq!(once, split);
    }

    #[test]
    fn confirmation_and_minimum_dwell_hold(
        bars in walk(),
        confirm in 1u32..5,
        dwell in 1u32..8,
    ) {
        let d = classify(small(confirm, dwell), 2, &bars).unwrap();
        let (confirm, dwell) = (confirm as usize, dwell as usize);
        let mut start = 0usize;
        for j in 0..d.len() {
            prop_assert_eq!(d[j].seq, j as u64 + 1);
            let changed = j == 0 || d[j].regime != d[j - 1].regime;
            prop_assert_eq!(d[j].changed, changed);
            if changed && j > 0 {
                // the regime it ends lasted at least min_dwell evaluations
                prop_assert!(j - start >= dwell, "run {}..{} shorter than {}", start, j, dwell);
                // and the new one came out of the rules confirm times in a row
                prop_assert!(j + 1 >= confirm);
                prop_assert!(d[j + 1 - confirm..=j].iter().all(|x| x.candidate == d[j].regime));
                start = j;
            }
            prop_assert_eq!(d[j].held as usize, j - start + 1);
        }
    }
}
