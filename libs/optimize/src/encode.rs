//! A space's points as numbers, for the model-based searches.
//!
//! - Ordered dimensions (int, decimal, float, log-float) map to `[0, 1]`:
//!   ints and decimals by their lattice index (`i / (n - 1)`), floats
//!   linearly, log-floats linearly in `ln x`. Back from `[0, 1]`, ints and
//!   decimals round to the nearest lattice point, so nothing off the lattice
//!   is ever produced.
//! - Categorical dimensions are one-hot (one coordinate per value, 0 or 1):
//!   their values have no order, and one-hot keeps every two distinct
//!   values equally far apart. A categorical of one value (a fixed
//!   parameter) has no coordinate.

use std::str::FromStr;

use rand::Rng;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::space::{Dim, Params, Space};

/// Lattice index of `text` in a discrete dimension (ints and decimals
/// rounded to the nearest lattice point, categoricals by exact value);
/// None when unreadable or outside the bounds.
pub(crate) fn index(dim: &Dim, text: &str) -> Option<u64> {
    let n = dim.grid_len();
    let i = match dim {
        Dim::Int { min, max, step, .. } => {
            let x: i64 = text.trim().parse().ok()?;
            if x < *min || x > *max {
                return None;
            }
            let k = (x - min) as f64 / *step as f64;
            k.round()
        }
        Dim::Decimal { min, max, step } => {
            let x = Decimal::from_str(text.trim()).ok()?;
            if x < *min || x > *max {
                return None;
            }
            ((x - *min) / *step).round().to_f64()?
        }
        Dim::Categorical { values } => {
            return values.iter().position(|v| v == text).map(|i| i as u64);
        }
        Dim::Float { .. } | Dim::LogFloat { .. } => return None,
    };
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a non-negative index below the grid length"
    )]
    Some((i.max(0.0) as u64).min(n - 1))
}

/// `text` in `[0, 1]` for an ordered dimension; None for a categorical or
/// a value unreadable or outside the bounds.
pub(crate) fn unit(dim: &Dim, text: &str) -> Option<f64> {
    match dim {
        Dim::Int { .. } | Dim::Decimal { .. } => {
            let n = dim.grid_len();
            let i = index(dim, text)?;
            #[allow(clippy::cast_precision_loss, reason = "grid index of a bounded grid")]
            Some(if n <= 1 {
                0.5
            } else {
                i as f64 / (n - 1) as f64
            })
        }
        Dim::Float { min, max, .. } => {
            let x: f64 = text.trim().parse().ok()?;
            if !(*min..=*max).contains(&x) {
                return None;
            }
            Some(if max > min {
                (x - min) / (max - min)
            } else {
                0.5
            })
        }
        Dim::LogFloat { min, max, .. } => {
            let x: f64 = text.trim().parse().ok()?;
            if !(*min..=*max).contains(&x) {
                return None;
            }
            Some(if max > min {
                (x / min).ln() / (max / min).ln()
            } else {
                0.5
            })
        }
        Dim::Categorical { .. } => None,
    }
}

/// The value at `u` in `[0, 1]` of an ordered dimension (ints and decimals
/// rounded to the lattice), or the value of index `floor(u * n)` of a
/// categorical.
pub(crate) fn from_unit(dim: &Dim, u: f64) -> String {
    let u = u.clamp(0.0, 1.0);
    let n = dim.grid_len();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "index within a bounded grid"
    )]
    match dim {
        Dim::Int { .. } | Dim::Decimal { .. } => {
            dim.grid_value(((u * (n - 1) as f64).round() as u64).min(n - 1))
        }
        Dim::Categorical { .. } => dim.grid_value(((u * n as f64) as u64).min(n - 1)),
        Dim::Float { min, max, .. } => format!("{}", (min + u * (max - min)).clamp(*min, *max)),
        Dim::LogFloat { min, max, .. } => {
            let x = if max > min {
                (min.ln() + u * (max.ln() - min.ln())).exp()
            } else {
                *min
            };
            format!("{}", x.clamp(*min, *max))
        }
    }
}

/// For each model coordinate, the dimension it belongs to (so a length
/// scale per dimension covers all of a categorical's one-hot coordinates).
pub(crate) fn owners(space: &Space) -> Vec<usize> {
    let mut out = Vec::new();
    for (k, d) in space.dims().iter().enumerate() {
        match d {
            Dim::Categorical { values } if values.len() > 1 => {
                out.extend(std::iter::repeat_n(k, values.len()));
            }
            Dim::Categorical { .. } => {}
            _ => out.push(k),
        }
    }
    out
}

/// The model coordinates of `params`; Err(name) of the first parameter
/// missing, unreadable or outside the space.
pub(crate) fn encode(space: &Space, params: &Params) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for (name, d) in space.names().iter().zip(space.dims()) {
        let text = params.get(name).ok_or_else(|| name.clone())?;
        match d {
            Dim::Categorical { values } => {
                let i = index(d, text).ok_or_else(|| name.clone())?;
                if values.len() > 1 {
                    #[allow(clippy::cast_possible_truncation, reason = "index of a value list")]
                    out.extend((0..values.len()).map(|k| f64::from(u8::from(k == i as usize))));
                }
            }
            _ => out.push(unit(d, text).ok_or_else(|| name.clone())?),
        }
    }
    Ok(out)
}

/// Per-dimension distance of two values in `[0, 1]`: the distance of their
/// unit values for an ordered dimension, 0 or 1 for a categorical.
pub(crate) fn gene_distance(dim: &Dim, a: &str, b: &str) -> f64 {
    match dim {
        Dim::Categorical { .. } => f64::from(u8::from(a != b)),
        _ => match (unit(dim, a), unit(dim, b)) {
            (Some(x), Some(y)) => (x - y).abs(),
            _ => f64::from(u8::from(a != b)),
        },
    }
}

/// Points one move away from `params`: each int or decimal one, a few and
/// an eighth of its lattice up and down; each float 1 % and 5 % of its
/// range (in log space for a log-float); each categorical every other
/// value. Constraints not applied.
pub(crate) fn neighbors(space: &Space, params: &Params) -> Vec<Params> {
    let mut out = Vec::new();
    for (name, d) in space.names().iter().zip(space.dims()) {
        let Some(text) = params.get(name) else {
            continue;
        };
        let mut with = |v: String| {
            if v != *text {
                let mut p = params.clone();
                p.insert(name.clone(), v);
                out.push(p);
            }
        };
        match d {
            Dim::Int { .. } | Dim::Decimal { .. } => {
                let n = d.grid_len();
                let Some(i) = index(d, text) else { continue };
                let mut steps = vec![1, 3, (n / 8).max(1)];
                steps.dedup();
                for s in steps {
                    if i >= s {
                        with(d.grid_value(i - s));
                    }
                    if i + s < n {
                        with(d.grid_value(i + s));
                    }
                }
            }
            Dim::Float { .. } | Dim::LogFloat { .. } => {
                let Some(u) = unit(d, text) else { continue };
                for s in [0.01, 0.05] {
                    with(from_unit(d, u - s));
                    with(from_unit(d, u + s));
                }
            }
            Dim::Categorical { values } => {
                for v in values {
                    with(v.clone());
                }
            }
        }
    }
    out
}

/// A Latin hypercube design of `n` points: each dimension's `[0, 1]` cut in
/// `n` strata, every stratum used once per dimension, in a random pairing.
/// Constraints not applied.
pub(crate) fn latin_hypercube<R: Rng + ?Sized>(
    space: &Space,
    n: usize,
    rng: &mut R,
) -> Vec<Params> {
    let mut columns: Vec<Vec<String>> = Vec::new();
    for d in space.dims() {
        let mut strata: Vec<usize> = (0..n).collect();
        // Fisher-Yates, so the pairing of strata across dimensions is random.
        for i in (1..n).rev() {
            strata.swap(i, rng.random_range(0..=i));
        }
        columns.push(
            strata
                .into_iter()
                .map(|s| {
                    #[allow(clippy::cast_precision_loss, reason = "small design size")]
                    let u = (s as f64 + rng.random::<f64>()) / n as f64;
                    from_unit(d, u)
                })
                .collect(),
        );
    }
    (0..n)
        .map(|i| {
            space
                .names()
                .iter()
                .zip(&columns)
                .map(|(name, col)| (name.clone(), col[i].clone()))
                .collect()
        })
        .collect()
}

/// Mutates one value of `dim`: an int or decimal steps on its lattice (one
/// step half the time, else a normal step of a tenth of the lattice, at
/// least one), a float moves by a normal step of a tenth of its range (in
/// log space for a log-float), a categorical is resampled among its other
/// values.
pub(crate) fn mutate<R: Rng + ?Sized>(dim: &Dim, text: &str, rng: &mut R) -> String {
    let n = dim.grid_len();
    match dim {
        Dim::Int { .. } | Dim::Decimal { .. } => {
            let Some(i) = index(dim, text) else {
                return dim.sample(rng);
            };
            if n <= 1 {
                return text.to_owned();
            }
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "step within a bounded grid"
            )]
            let step = if rng.random::<bool>() {
                1
            } else {
                ((normal(rng) * n as f64 / 10.0).abs().round() as u64).max(1)
            };
            let up = if i == 0 {
                true
            } else if i == n - 1 {
                false
            } else {
                rng.random::<bool>()
            };
            let j = if up {
                (i + step).min(n - 1)
            } else {
                i.saturating_sub(step)
            };
            dim.grid_value(j)
        }
        Dim::Float { .. } | Dim::LogFloat { .. } => {
            let Some(u) = unit(dim, text) else {
                return dim.sample(rng);
            };
            from_unit(dim, u + 0.1 * normal(rng))
        }
        Dim::Categorical { values } => {
            if values.len() <= 1 {
                return text.to_owned();
            }
            let others: Vec<&String> = values.iter().filter(|v| *v != text).collect();
            others[rng.random_range(0..others.len())].clone()
        }
    }
}

/// A standard normal draw (Box-Muller).
pub(crate) fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
