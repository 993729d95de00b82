//! The Gaussian-process surrogate of Bayesian optimisation: a Matérn 5/2
//! kernel with one length scale per dimension, a signal and a noise
//! variance fitted by maximising the log marginal likelihood, Cholesky
//! solves by nalgebra; and the acquisition functions (EI, PI, UCB).
//!
//! Inputs are the unit-cube coordinates of [`crate::encode`]; targets are
//! standardised by the caller (mean 0, sd 1), so the hyperparameter bounds
//! below hold for any objective's scale.

use nalgebra::{Cholesky, DMatrix, DVector, Dyn};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Kernel hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    /// One length scale per dimension of the space, in unit-cube units.
    #[serde(with = "crate::exact::vec")]
    pub length_scales: Vec<f64>,
    /// Signal variance (of the standardised objective).
    #[serde(with = "crate::exact")]
    pub signal_variance: f64,
    /// Noise variance (of the standardised objective).
    #[serde(with = "crate::exact")]
    pub noise_variance: f64,
}

/// Bounds of the fitted hyperparameters, as natural logs.
const LOG_LENGTH: (f64, f64) = (-4.6, 2.3); // 0.01 .. 10
const LOG_SIGNAL: (f64, f64) = (-3.0, 3.0); // 0.05 .. 20
const LOG_NOISE: (f64, f64) = (-13.8, 0.0); // 1e-6 .. 1
/// Diagonal jitter tried in turn when a Cholesky fails.
const JITTER: [f64; 4] = [1e-10, 1e-8, 1e-6, 1e-4];
/// Most points the hyperparameters are fitted on (a Cholesky each try).
const MAX_FIT_POINTS: usize = 150;
/// Likelihood evaluations per start of the hyperparameter search.
const MAX_EVALS: usize = 200;

impl Hyper {
    /// Length scales 0.3, signal variance 1, noise 1e-4: a neutral start.
    pub fn neutral(dims: usize) -> Self {
        Self {
            length_scales: vec![0.3; dims],
            signal_variance: 1.0,
            noise_variance: 1e-4,
        }
    }

    fn to_logs(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.length_scales.iter().map(|l| l.ln()).collect();
        v.push(self.signal_variance.ln());
        v.push(self.noise_variance.ln());
        v
    }

    fn from_logs(v: &[f64]) -> Self {
        let d = v.len() - 2;
        Self {
            length_scales: v[..d].iter().map(|x| x.exp()).collect(),
            signal_variance: v[d].exp(),
            noise_variance: v[d + 1].exp(),
        }
    }
}

fn log_bounds(i: usize, dims: usize) -> (f64, f64) {
    if i < dims {
        LOG_LENGTH
    } else if i == dims {
        LOG_SIGNAL
    } else {
        LOG_NOISE
    }
}

/// The Matérn 5/2 correlation at scaled distance `r`:
/// `(1 + √5 r + 5 r² / 3) exp(-√5 r)`.
pub fn matern52(r: f64) -> f64 {
    let s = 5f64.sqrt() * r;
    (1.0 + s + s * s / 3.0) * (-s).exp()
}

/// Distance of `a` and `b` with coordinate `k` divided by the length scale
/// of its dimension `owners[k]`.
fn scaled_distance(a: &[f64], b: &[f64], owners: &[usize], scales: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .zip(owners)
        .map(|((x, y), o)| {
            let d = (x - y) / scales[*o];
            d * d
        })
        .sum::<f64>()
        .sqrt()
}

/// A Gaussian process conditioned on training points.
#[derive(Debug, Clone)]
pub struct Gp {
    x: Vec<Vec<f64>>,
    owners: Vec<usize>,
    hyper: Hyper,
    chol: Cholesky<f64, Dyn>,
    alpha: DVector<f64>,
    y: DVector<f64>,
}

impl Gp {
    /// The process with `hyper` conditioned on inputs `x` (coordinate `k`
    /// of dimension `owners[k]`) and targets `y`. None when the kernel
    /// matrix cannot be factorised even with jitter added.
    pub fn new(x: Vec<Vec<f64>>, y: &[f64], owners: Vec<usize>, hyper: Hyper) -> Option<Self> {
        let n = x.len();
        let base = DMatrix::from_fn(n, n, |i, j| {
            hyper.signal_variance
                * matern52(scaled_distance(&x[i], &x[j], &owners, &hyper.length_scales))
        });
        let chol = JITTER.iter().find_map(|jitter| {
            let mut k = base.clone();
            for i in 0..n {
                k[(i, i)] += hyper.noise_variance + jitter;
            }
            Cholesky::new(k)
        })?;
        let y = DVector::from_column_slice(y);
        let alpha = chol.solve(&y);
        Some(Self {
            x,
            owners,
            hyper,
            chol,
            alpha,
            y,
        })
    }

    /// The hyperparameters.
    pub fn hyper(&self) -> &Hyper {
        &self.hyper
    }

    /// Log marginal likelihood of the targets:
    /// `-½ yᵀ K⁻¹ y - Σ ln Lᵢᵢ - n/2 ln 2π`.
    pub fn log_marginal_likelihood(&self) -> f64 {
        let n = self.x.len();
        let l = self.chol.l_dirty();
        let log_det_half: f64 = (0..n).map(|i| l[(i, i)].ln()).sum();
        #[allow(clippy::cast_precision_loss, reason = "point count")]
        let n = n as f64;
        -0.5 * self.y.dot(&self.alpha) - log_det_half - 0.5 * n * std::f64::consts::TAU.ln()
    }

    /// Posterior mean and variance (of the latent function, without the
    /// noise) at `x`.
    pub fn predict(&self, x: &[f64]) -> (f64, f64) {
        let k = DVector::from_iterator(
            self.x.len(),
            self.x.iter().map(|xi| {
                self.hyper.signal_variance
                    * matern52(scaled_distance(
                        x,
                        xi,
                        &self.owners,
                        &self.hyper.length_scales,
                    ))
            }),
        );
        let mean = k.dot(&self.alpha);
        let var = self
            .chol
            .l_dirty()
            .solve_lower_triangular(&k)
            .map_or(self.hyper.signal_variance, |v| {
                self.hyper.signal_variance - v.dot(&v)
            });
        (mean, var.max(0.0))
    }
}

/// Hyperparameters maximising the log marginal likelihood of `y` at `x`: a
/// compass search in log space (each log moved up and down by a step, the
/// step halved when no move helps) from the previous fit `warm` if any, the
/// neutral start, and `restarts` random starts within the bounds. Fitted on
/// at most `MAX_FIT_POINTS` evenly spaced points.
pub fn fit<R: Rng + ?Sized>(
    x: &[Vec<f64>],
    y: &[f64],
    owners: &[usize],
    dims: usize,
    warm: Option<&Hyper>,
    restarts: usize,
    rng: &mut R,
) -> Hyper {
    let (x, y): (Vec<Vec<f64>>, Vec<f64>) = if x.len() > MAX_FIT_POINTS {
        (0..MAX_FIT_POINTS)
            .map(|k| {
                let i = k * x.len() / MAX_FIT_POINTS;
                (x[i].clone(), y[i])
            })
            .unzip()
    } else {
        (x.to_vec(), y.to_vec())
    };
    let lml = |logs: &[f64]| {
        Gp::new(x.clone(), &y, owners.to_vec(), Hyper::from_logs(logs))
            .map_or(f64::NEG_INFINITY, |g| g.log_marginal_likelihood())
    };
    let clamp = |mut v: Vec<f64>| {
        for (i, x) in v.iter_mut().enumerate() {
            let (lo, hi) = log_bounds(i, dims);
            *x = x.clamp(lo, hi);
        }
        v
    };
    let mut starts = Vec::new();
    if let Some(w) = warm.filter(|w| w.length_scales.len() == dims) {
        starts.push(clamp(w.to_logs()));
    }
    starts.push(Hyper::neutral(dims).to_logs());
    for _ in 0..restarts {
        starts.push(
            (0..dims + 2)
                .map(|i| {
                    let (lo, hi) = log_bounds(i, dims);
                    rng.random_range(lo..=hi)
                })
                .collect(),
        );
    }
    let mut best = (f64::NEG_INFINITY, Hyper::neutral(dims).to_logs());
    for start in starts {
        let mut at = start;
        let mut value = lml(&at);
        let mut step = 1.0;
        let mut evals = 1;
        while step > 0.01 && evals < MAX_EVALS {
            let mut moved = false;
            for i in 0..at.len() {
                let (lo, hi) = log_bounds(i, dims);
                for dir in [1.0, -1.0] {
                    let mut next = at.clone();
                    next[i] = (at[i] + dir * step).clamp(lo, hi);
                    if next[i] == at[i] {
                        continue;
                    }
                    let v = lml(&next);
                    evals += 1;
                    if v > value {
                        at = next;
                        value = v;
                        moved = true;
                        break;
                    }
                }
            }
            if !moved {
                step /= 2.0;
            }
        }
        if value > best.0 {
            best = (value, at);
        }
    }
    Hyper::from_logs(&best.1)
}

/// An acquisition function: how much a candidate is worth trying, from
/// the posterior mean and sd there and the best target seen (all in
/// standardised units; higher is better).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Acquisition {
    /// Expected improvement over the best by more than `xi`.
    Ei {
        /// Margin (>= 0); 0.01 is usual.
        #[serde(with = "crate::exact")]
        xi: f64,
    },
    /// Probability of improvement over the best by more than `xi`.
    Pi {
        /// Margin (>= 0); 0.01 is usual.
        #[serde(with = "crate::exact")]
        xi: f64,
    },
    /// Upper confidence bound `mean + kappa * sd`.
    Ucb {
        /// Exploration weight (>= 0); 2 is usual.
        #[serde(with = "crate::exact")]
        kappa: f64,
    },
}

impl Acquisition {
    /// The acquisition at posterior `mean` and `sd`, `best` the best target.
    pub fn value(self, mean: f64, sd: f64, best: f64) -> f64 {
        match self {
            Self::Ei { xi } => expected_improvement(mean, sd, best, xi),
            Self::Pi { xi } => probability_of_improvement(mean, sd, best, xi),
            Self::Ucb { kappa } => mean + kappa * sd,
        }
    }
}

/// Standard normal density.
pub fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / std::f64::consts::TAU.sqrt()
}

/// Standard normal distribution function, `½ erfc(-z/√2)`.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

/// `E[max(f - best - xi, 0)]` for `f ~ N(mean, sd²)`:
/// `(mean - best - xi) Φ(z) + sd φ(z)`, `z = (mean - best - xi) / sd`.
pub fn expected_improvement(mean: f64, sd: f64, best: f64, xi: f64) -> f64 {
    let gain = mean - best - xi;
    if sd <= 1e-12 {
        return gain.max(0.0);
    }
    let z = gain / sd;
    gain * normal_cdf(z) + sd * normal_pdf(z)
}

/// `P(f > best + xi)` for `f ~ N(mean, sd²)`: `Φ((mean - best - xi) / sd)`.
pub fn probability_of_improvement(mean: f64, sd: f64, best: f64, xi: f64) -> f64 {
    let gain = mean - best - xi;
    if sd <= 1e-12 {
        return f64::from(u8::from(gain > 0.0));
    }
    normal_cdf(gain / sd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn matern_at_known_distances() {
        assert_eq!(matern52(0.0), 1.0);
        // r = 1: (1 + √5 + 5/3) e^{-√5}.
        let want = (1.0 + 5f64.sqrt() + 5.0 / 3.0) * (-(5f64.sqrt())).exp();
        assert!((matern52(1.0) - want).abs() < 1e-15);
        assert!((matern52(1.0) - 0.523_994_108_8).abs() < 1e-9);
        assert!((matern52(0.5) - 0.828_649_142_4).abs() < 1e-9);
        assert!((matern52(2.0) - 0.138_660_219_1).abs() < 1e-9);
        // Decreasing in r.
        assert!(matern52(0.1) > matern52(0.2) && matern52(3.0) > matern52(4.0));
    }

    #[test]
    fn scaled_distance_uses_each_dimensions_length_scale() {
        // Coordinates 1 and 2 are one-hot of dimension 1.
        let d = scaled_distance(&[0.0, 1.0, 0.0], &[0.5, 0.0, 1.0], &[0, 1, 1], &[0.5, 2.0]);
        let want = (1.0f64 + 0.25 + 0.25).sqrt();
        assert!((d - want).abs() < 1e-15);
    }

    #[test]
    fn cholesky_of_a_known_matrix() {
        // [[4, 12, -16], [12, 37, -43], [-16, -43, 98]] = L Lᵀ with
        // L = [[2, 0, 0], [6, 1, 0], [-8, 5, 3]].
        let a = DMatrix::from_row_slice(
            3,
            3,
            &[4.0, 12.0, -16.0, 12.0, 37.0, -43.0, -16.0, -43.0, 98.0],
        );
        let l = Cholesky::new(a).unwrap().unpack();
        let want = DMatrix::from_row_slice(3, 3, &[2.0, 0.0, 0.0, 6.0, 1.0, 0.0, -8.0, 5.0, 3.0]);
        assert!((l - want).abs().max() < 1e-12);
    }

    #[test]
    fn posterior_interpolates_noise_free_points_with_no_variance_there() {
        let x = vec![
            vec![0.0, 0.1],
            vec![0.3, 0.9],
            vec![0.6, 0.4],
            vec![1.0, 0.7],
        ];
        let y = [0.5, -1.0, 2.0, 0.25];
        let hyper = Hyper {
            length_scales: vec![0.4, 0.6],
            signal_variance: 1.5,
            noise_variance: 1e-9,
        };
        let gp = Gp::new(x.clone(), &y, vec![0, 1], hyper).unwrap();
        for (xi, yi) in x.iter().zip(y) {
            let (m, v) = gp.predict(xi);
            assert!((m - yi).abs() < 1e-5, "{m} vs {yi}");
            assert!(v < 1e-6, "{v}");
        }
        // Far from the data: back to the prior mean 0 and variance.
        let (m, v) = gp.predict(&[20.0, -20.0]);
        assert!(m.abs() < 1e-9 && (v - 1.5).abs() < 1e-9, "{m} {v}");
        // Between points: some variance, below the prior's.
        let (_, v) = gp.predict(&[0.45, 0.5]);
        assert!(v > 1e-3 && v < 1.5, "{v}");
    }

    #[test]
    fn one_point_posterior_matches_the_closed_form() {
        // One point at 0, y = 2: mean(x) = k(x,0) 2 / (s + n),
        // var(x) = s - k(x,0)² / (s + n).
        let (s, n, l) = (1.3, 0.2, 0.5);
        let hyper = Hyper {
            length_scales: vec![l],
            signal_variance: s,
            noise_variance: n,
        };
        let gp = Gp::new(vec![vec![0.0]], &[2.0], vec![0], hyper).unwrap();
        let k = s * matern52(0.25 / l);
        let (m, v) = gp.predict(&[0.25]);
        assert!((m - 2.0 * k / (s + n)).abs() < 1e-9);
        assert!((v - (s - k * k / (s + n))).abs() < 1e-9);
        // LML of one point: log N(2; 0, s + n).
        let want = -0.5 * 4.0 / (s + n) - 0.5 * (s + n).ln() - 0.5 * std::f64::consts::TAU.ln();
        assert!((gp.log_marginal_likelihood() - want).abs() < 1e-9);
    }

    #[test]
    fn fitted_length_scale_follows_the_function() {
        // A slow function of dim 0, pure noise-free wiggle of dim 1 absent:
        // dim 1 should get a much longer length scale than dim 0.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let x: Vec<Vec<f64>> = (0..30)
            .map(|_| vec![rng.random::<f64>(), rng.random::<f64>()])
            .collect();
        let y: Vec<f64> = x.iter().map(|p| (6.0 * p[0]).sin()).collect();
        let h = fit(&x, &y, &[0, 1], 2, None, 2, &mut rng);
        assert!(h.length_scales[1] > 3.0 * h.length_scales[0], "{h:?}");
        assert!(h.noise_variance < 1e-3, "{h:?}");
        // The fit beats the neutral start.
        let lml = |h: Hyper| {
            Gp::new(x.clone(), &y, vec![0, 1], h)
                .unwrap()
                .log_marginal_likelihood()
        };
        assert!(lml(h) > lml(Hyper::neutral(2)));
    }

    #[test]
    fn acquisitions_at_known_mean_and_sd() {
        // mean = best: z = 0, EI = sd φ(0), PI = ½.
        let ei = expected_improvement(1.0, 2.0, 1.0, 0.0);
        assert!((ei - 2.0 * 0.398_942_280_401_432_7).abs() < 1e-12);
        assert!((probability_of_improvement(1.0, 2.0, 1.0, 0.0) - 0.5).abs() < 1e-15);
        // mean 1, sd 1, best 0, xi 0: z = 1; EI = Φ(1) + φ(1).
        let ei = expected_improvement(1.0, 1.0, 0.0, 0.0);
        assert!((ei - (0.841_344_746_068_542_9 + 0.241_970_724_519_143_37)).abs() < 1e-12);
        assert!(
            (probability_of_improvement(1.0, 1.0, 0.0, 0.0) - 0.841_344_746_068_542_9).abs()
                < 1e-12
        );
        // xi shifts the threshold: mean 0, sd 1, best 0, xi 1 -> z = -1.
        let ei = expected_improvement(0.0, 1.0, 0.0, 1.0);
        assert!((ei - (-0.158_655_253_931_457_05 + 0.241_970_724_519_143_37)).abs() < 1e-12);
        assert!(
            (probability_of_improvement(0.0, 1.0, 0.0, 1.0) - 0.158_655_253_931_457_05).abs()
                < 1e-12
        );
        // No uncertainty: the plain gain.
        assert_eq!(expected_improvement(3.0, 0.0, 1.0, 0.5), 1.5);
        assert_eq!(expected_improvement(0.0, 0.0, 1.0, 0.0), 0.0);
        assert_eq!(probability_of_improvement(3.0, 0.0, 1.0, 0.0), 1.0);
        // UCB.
        let ucb = Acquisition::Ucb { kappa: 2.0 }.value(0.5, 0.25, 100.0);
        assert!((ucb - 1.0).abs() < 1e-15);
        assert_eq!(Acquisition::Ei { xi: 0.0 }.value(1.0, 1.0, 0.0), ei_1());
        // Tails of Φ.
        assert!((normal_cdf(-3.0) - 0.001_349_898_031_630_094_6).abs() < 1e-15);
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-16);
    }

    fn ei_1() -> f64 {
        expected_improvement(1.0, 1.0, 0.0, 0.0)
    }
}
