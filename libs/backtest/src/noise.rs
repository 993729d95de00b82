//! Price noise for Monte Carlo robustness runs: a seeded copy of a series
//! whose every price is moved by a small relative amount, so a strategy can
//! be re-run on many plausible variants of the same history.
//!
//! Each of a bar's open, high, low and close is multiplied by
//! `1 + sigma * z` with `z` standard normal (Box-Muller over a ChaCha8
//! stream seeded by `seed`), rounded to the instrument's tick (the raw
//! integer) and kept at least one tick; then the high is raised to the
//! largest and the low lowered to the smallest of the four, so every bar is
//! a valid bar. Timestamps, volumes and the order of bars are untouched. The
//! same bars, sigma and seed give the same copy.

use grodt_core::Bar;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Why noise could not be added.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoiseError {
    /// `sigma` outside `(0, 0.5]`.
    #[error("sigma {0} must be in (0, 0.5]")]
    Sigma(f64),
}

/// A standard normal draw (Box-Muller; `u1` kept away from 0).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A noisy copy of `bars` (see the module doc).
///
/// # Errors
/// [`NoiseError::Sigma`] for a sigma outside `(0, 0.5]`.
pub fn with_price_noise(bars: &[Bar], sigma: f64, seed: u64) -> Result<Vec<Bar>, NoiseError> {
    if !(sigma > 0.0 && sigma <= 0.5) {
        return Err(NoiseError::Sigma(sigma));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut move_price = |raw: i64| -> i64 {
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            reason = "raw prices are far below 2^53; the result is rounded to a tick"
        )]
        let moved = (raw as f64 * (1.0 + sigma * normal(&mut rng))).round() as i64;
        moved.max(1)
    };
    Ok(bars
        .iter()
        .map(|b| {
            let (open, high, low, close) = (
                move_price(b.open),
                move_price(b.high),
                move_price(b.low),
                move_price(b.close),
            );
            Bar {
                ts: b.ts,
                open,
                high: open.max(high).max(low).max(close),
                low: open.min(high).min(low).min(close),
                close,
                volume: b.volume,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bar(ts: i64, o: i64, h: i64, l: i64, c: i64) -> Bar {
        Bar {
            ts,
            open: o,
            high: h,
            low: l,
            close: c,
            volume: 100 + ts,
        }
    }

    proptest! {
        /// Valid bars stay valid bars at the same times and volumes; the
        /// same seed gives the same copy; prices move by about sigma.
        #[test]
        fn noisy_bars_are_bars(
            raw in proptest::collection::vec((1_000i64..10_000_000, 0i64..1000, 0i64..1000, 0i64..1000), 1..200),
            sigma in 0.0001f64..0.05,
            seed: u64,
        ) {
            let bars: Vec<Bar> = raw
                .iter()
                .enumerate()
                .map(|(i, &(base, up, down, c))| {
                    let low = base;
                    let high = base + up + down + c;
                    bar(i as i64, low + up.min(high - low), high, low, low + c.min(high - low))
                })
                .collect();
            let a = with_price_noise(&bars, sigma, seed).unwrap();
            prop_assert_eq!(&a, &with_price_noise(&bars, sigma, seed).unwrap());
            for (x, y) in bars.iter().zip(&a) {
                prop_assert_eq!((x.ts, x.volume), (y.ts, y.volume));
                prop_assert!(y.low >= 1);
                prop_assert!(y.low <= y.open && y.open <= y.high);
                prop_assert!(y.low <= y.close && y.close <= y.high);
                // 10 sigma is beyond any draw this test makes in practice.
                let far = |p: i64, q: i64| (p - q).abs() as f64 > 10.0 * sigma * q as f64 + 1.0;
                prop_assert!(!far(y.close, x.close), "{} vs {}", y.close, x.close);
            }
        }
    }

    #[test]
    fn other_seeds_give_other_copies_and_bad_sigmas_are_refused() {
        let bars: Vec<Bar> = (0..50)
            .map(|i| bar(i, 10_000, 10_100, 9_900, 10_050))
            .collect();
        let a = with_price_noise(&bars, 0.01, 1).unwrap();
        let b = with_price_noise(&bars, 0.01, 2).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, bars);
        // The closes' relative moves have about the asked spread.
        let moves: Vec<f64> = a.iter().map(|x| x.close as f64 / 10_050.0 - 1.0).collect();
        let sd = (moves.iter().map(|m| m * m).sum::<f64>() / moves.len() as f64).sqrt();
        assert!((0.005..0.02).contains(&sd), "{sd}");
        assert_eq!(with_price_noise(&bars, 0.0, 1), Err(NoiseError::Sigma(0.0)));
        assert_eq!(with_price_noise(&bars, 0.6, 1), Err(NoiseError::Sigma(0.6)));
        assert!(with_price_noise(&bars, f64::NAN, 1).is_err());
    }
}
