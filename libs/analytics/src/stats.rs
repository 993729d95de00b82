//! Numerical building blocks: compensated sums, moments, numpy-style
//! percentiles and the standard normal distribution.

use crate::error::{AnalyticsError, Result};

/// Neumaier-compensated sum: exact to about one rounding of the result even
/// over millions of terms, so long series agree with numpy's pairwise sums.
pub fn sum(values: &[f64]) -> f64 {
    sum_map(values, |v| v)
}

const LANES: usize = 4;

/// One Neumaier step, branch-free so the lane loop vectorises.
#[inline(always)]
fn neumaier(s: &mut f64, c: &mut f64, v: f64) {
    let t = *s + v;
    let lost = if s.abs() >= v.abs() {
        (*s - t) + v
    } else {
        (v - t) + *s
    };
    *c += lost;
    *s = t;
}

/// Compensated sum of `f(x)` over a slice: four independent Neumaier lanes
/// (so the loop runs at SIMD width rather than at the latency of one add
/// chain), folded together with compensation at the end.
#[inline]
pub(crate) fn sum_map(values: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let mut s = [0.0_f64; LANES];
    let mut c = [0.0_f64; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for k in 0..LANES {
            neumaier(&mut s[k], &mut c[k], f(chunk[k]));
        }
    }
    for (k, &v) in rest.iter().enumerate() {
        neumaier(&mut s[k], &mut c[k], f(v));
    }
    let (mut total, mut comp) = (0.0_f64, 0.0_f64);
    for v in s.into_iter().chain(c) {
        neumaier(&mut total, &mut comp, v);
    }
    total + comp
}

/// [`sum`] over an iterator, for short derived sequences (trade lists).
pub(crate) fn sum_iter(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut s, mut c) = (0.0_f64, 0.0_f64);
    for v in values {
        neumaier(&mut s, &mut c, v);
    }
    s + c
}

/// Arithmetic mean, `None` for an empty slice.
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        None
    } else {
        Some(sum(values) / values.len() as f64)
    }
}

/// Standard deviation with `ddof` delta degrees of freedom (1 = sample, like
/// `numpy.std(x, ddof=1)`). Two-pass, so it does not lose precision when the
/// mean is large against the spread. `None` when `len <= ddof`.
pub fn std_dev(values: &[f64], ddof: usize) -> Option<f64> {
    std_dev_around(values, mean(values)?, ddof)
}

/// [`std_dev`] given the mean already computed.
pub(crate) fn std_dev_around(values: &[f64], mean: f64, ddof: usize) -> Option<f64> {
    if values.len() <= ddof {
        return None;
    }
    let squares = sum_map(values, |v| (v - mean) * (v - mean));
    Some((squares / (values.len() - ddof) as f64).sqrt())
}

/// Percentile with linear interpolation between closest ranks, as numpy's
/// default (`numpy.percentile(x, 100 * q)`), for `q` in `[0, 1]`.
///
/// Runs in linear time: the slice is copied and partially selected, not sorted.
pub fn percentile(values: &[f64], q: f64) -> Result<f64> {
    if values.is_empty() {
        return Err(AnalyticsError::TooShort {
            input: "values",
            min: 1,
            actual: 0,
        });
    }
    if !(0.0..=1.0).contains(&q) {
        return Err(AnalyticsError::InvalidParameter {
            name: "q",
            reason: "must lie in [0, 1]",
        });
    }
    let mut work = values.to_vec();
    Ok(percentile_in_place(&mut work, q))
}

/// [`percentile`] on a scratch buffer the caller owns (its order is changed).
/// `values` must be non-empty, NaN-free, and `q` in `[0, 1]`.
pub(crate) fn percentile_in_place(values: &mut [f64], q: f64) -> f64 {
    let h = (values.len() - 1) as f64 * q;
    percentile_at(values, h)
}

/// The value at fractional rank `h` (0-based, `0 <= h <= len - 1`) with
/// linear interpolation, selecting in place.
pub(crate) fn percentile_at(values: &mut [f64], h: f64) -> f64 {
    let lo = h.floor() as usize;
    let frac = h - lo as f64;
    let (_, lo_val, upper) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let lo_val = *lo_val;
    if frac == 0.0 || upper.is_empty() {
        return lo_val;
    }
    let hi_val = upper.iter().copied().fold(f64::INFINITY, f64::min);
    lerp(lo_val, hi_val, frac)
}

/// numpy's `_lerp`: interpolates from the nearer end, which keeps the result
/// monotone in `t` and bit-compatible with numpy for `t >= 0.5`.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Density of the standard normal distribution.
pub fn norm_pdf(x: f64) -> f64 {
    FRAC_1_SQRT_2PI * (-0.5 * x * x).exp()
}

// Wichura's AS 241 (PPND16) coefficients, lowest degree first, verbatim.
#[allow(
    clippy::excessive_precision,
    reason = "AS 241 coefficients are published with 20 digits and kept verbatim"
)]
mod as241 {
    pub const A: [f64; 8] = [
        3.3871328727963666080e0,
        1.3314166789178437745e2,
        1.9715909503065514427e3,
        1.3731693765509461125e4,
        4.5921953931549871457e4,
        6.7265770927008700853e4,
        3.3430575583588128105e4,
        2.5090809287301226727e3,
    ];
    pub const B: [f64; 8] = [
        1.0,
        4.2313330701600911252e1,
        6.8718700749205790830e2,
        5.3941960214247511077e3,
        2.1213794301586595867e4,
        3.9307895800092710610e4,
        2.8729085735721942674e4,
        5.2264952788528545610e3,
    ];
    pub const C: [f64; 8] = [
        1.42343711074968357734e0,
        4.63033784615654529590e0,
        5.76949722146069140550e0,
        3.64784832476320460504e0,
        1.27045825245236838258e0,
        2.41780725177450611770e-1,
        2.27238449892691845833e-2,
        7.74545014278341407640e-4,
    ];
    pub const D: [f64; 8] = [
        1.0,
        2.05319162663775882187e0,
        1.67638483018380384940e0,
        6.89767334985100004550e-1,
        1.48103976427480074590e-1,
        1.51986665636164571966e-2,
        5.47593808499534494600e-4,
        1.05075007164441684324e-9,
    ];
    pub const E: [f64; 8] = [
        6.65790464350110377720e0,
        5.46378491116411436990e0,
        1.78482653991729133580e0,
        2.96560571828504891230e-1,
        2.65321895265761230930e-2,
        1.24266094738807843860e-3,
        2.71155556874348757815e-5,
        2.01033439929228813265e-7,
    ];
    pub const F: [f64; 8] = [
        1.0,
        5.99832206555887937690e-1,
        1.36929880922735805310e-1,
        1.48753612908506148525e-2,
        7.86869131145613259100e-4,
        1.84631831751005468180e-5,
        1.42151175831644588870e-7,
        2.04426310338993978564e-15,
    ];
}

/// Horner evaluation of a polynomial given lowest degree first.
fn poly(coeffs: &[f64; 8], x: f64) -> f64 {
    coeffs.iter().rev().fold(0.0, |acc, &c| acc * x + c)
}

/// Inverse of the standard normal CDF (the quantile function), by Wichura's
/// algorithm AS 241 (PPND16), accurate to about 1e-16 relative.
///
/// Returns `-inf` at 0, `+inf` at 1 and NaN outside `[0, 1]`.
pub fn norm_ppf(p: f64) -> f64 {
    use as241::{A, B, C, D, E, F};
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        return q * poly(&A, r) / poly(&B, r);
    }
    let tail = if q < 0.0 { p } else { 1.0 - p };
    let r = (-tail.ln()).sqrt();
    let value = if r <= 5.0 {
        let r = r - 1.6;
        poly(&C, r) / poly(&D, r)
    } else {
        let r = r - 5.0;
        poly(&E, r) / poly(&F, r)
    };
    if q < 0.0 { -value } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        if a == b {
            0.0
        } else {
            (a - b).abs() / a.abs().max(b.abs())
        }
    }

    #[test]
    fn ppf_matches_scipy_reference_values() {
        // scipy.stats.norm.ppf 1.17.1, printed with repr.
        let cases = [
            (0.05, -1.6448536269514729),
            (0.01, -2.3263478740408408),
            (0.975, 1.959963984540054),
            (1e-10, -6.361340902404056),
            (0.3, -0.5244005127080409),
            (0.9, 1.2815515655446004),
            (1e-300, -37.0470962993612),
        ];
        for (p, z) in cases {
            let got = norm_ppf(p);
            assert!(rel(got, z) < 1e-15, "ppf({p}) = {got}, scipy {z}");
        }
        assert_eq!(norm_ppf(0.5), 0.0);
        assert_eq!(norm_ppf(0.0), f64::NEG_INFINITY);
        assert_eq!(norm_ppf(1.0), f64::INFINITY);
        assert!(norm_ppf(1.5).is_nan());
        assert!(norm_ppf(f64::NAN).is_nan());
    }

    #[test]
    fn ppf_is_antisymmetric() {
        for p in [0.001, 0.02, 0.2, 0.4, 0.45] {
            assert!(rel(norm_ppf(p), -norm_ppf(1.0 - p)) < 1e-14);
        }
    }

    #[test]
    fn pdf_known_values() {
        assert!(rel(norm_pdf(0.0), 0.3989422804014327) < 1e-16);
        // scipy.stats.norm.pdf(1.6448536269514729)
        assert!(rel(norm_pdf(-1.6448536269514729), 0.10313564037537128) < 1e-15);
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        let x = [5.0, 1.0, 4.0, 2.0, 3.0];
        // numpy.percentile([5,1,4,2,3], [0, 5, 50, 62.5, 100]) = [1, 1.2, 3, 3.5, 5]
        assert_eq!(percentile(&x, 0.0).unwrap(), 1.0);
        assert!(rel(percentile(&x, 0.05).unwrap(), 1.2) < 1e-15);
        assert_eq!(percentile(&x, 0.5).unwrap(), 3.0);
        assert_eq!(percentile(&x, 0.625).unwrap(), 3.5);
        assert_eq!(percentile(&x, 1.0).unwrap(), 5.0);
        assert_eq!(percentile(&[7.0], 0.3).unwrap(), 7.0);
        assert!(matches!(
            percentile(&[], 0.5),
            Err(AnalyticsError::TooShort {
                input: "values",
                ..
            })
        ));
        assert!(matches!(
            percentile(&x, 1.5),
            Err(AnalyticsError::InvalidParameter { name: "q", .. })
        ));
    }

    #[test]
    fn compensated_sum_keeps_small_terms() {
        let mut v = vec![1e16];
        v.extend(std::iter::repeat_n(1.0, 1000));
        v.push(-1e16);
        assert_eq!(sum(&v), 1000.0);
    }

    #[test]
    fn moments() {
        let x = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(mean(&x), Some(5.0));
        assert_eq!(std_dev(&x, 0), Some(2.0));
        assert!(rel(std_dev(&x, 1).unwrap(), (32.0_f64 / 7.0).sqrt()) < 1e-15);
        assert_eq!(std_dev(&[1.0], 1), None);
        assert_eq!(mean(&[]), None);
    }
}
