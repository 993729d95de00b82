//! Search spaces built from a strategy's registry schema.
//!
//! A [`Space`] has one [`Dim`] per searched (or fixed) parameter, in the
//! schema's display order. Each dimension has a finite grid (its values at
//! its step, or `points` geometric values for a log-float) and a random
//! sampler ([`Prior`]). The schema's constraints (`fast < slow`) are kept as
//! pairs of dimensions; [`Space::is_valid`] checks them and the registry's
//! [`registry::validate`], so no invalid trial ever leaves a search.

use std::collections::BTreeMap;
use std::str::FromStr;

use grodt_strategies::registry::{self, Constraint, ParamType, StrategySpec};
use rand::Rng;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Parameters of one trial: `name -> text`, as the registry takes them.
pub type Params = BTreeMap<String, String>;

/// Why a space was refused. Every message names the parameter at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpaceError {
    /// No strategy of that name.
    #[error("unknown strategy {0:?}; valid strategies: {valid}", valid = registry::names())]
    UnknownStrategy(String),
    /// A range for a parameter the strategy does not take.
    #[error("unknown parameter {param:?} for strategy {strategy}")]
    UnknownParam {
        /// The strategy.
        strategy: String,
        /// The parameter given.
        param: String,
    },
    /// A range that does not fit the parameter (outside the schema's
    /// bounds, wrong type, empty, bad step).
    #[error("parameter {param}: {reason}")]
    BadRange {
        /// The parameter.
        param: String,
        /// What is wrong.
        reason: String,
    },
}

/// How a random search draws a numeric dimension.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "prior", rename_all = "snake_case")]
pub enum Prior {
    /// Uniform over `[min, max]` (over the step lattice for ints and decimals).
    #[default]
    Uniform,
    /// Normal with this mean and standard deviation, truncated to the bounds
    /// (redrawn until it falls inside them; clamped after 100 misses).
    Normal {
        /// Mean.
        #[serde(with = "crate::exact")]
        mean: f64,
        /// Standard deviation (> 0).
        #[serde(with = "crate::exact")]
        sd: f64,
    },
}

/// One dimension of a space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Dim {
    /// Integers `min, min + step, ..., <= max`.
    Int {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
        /// Grid spacing (>= 1); random draws snap to it too.
        step: i64,
        /// Random draw.
        prior: Prior,
    },
    /// Floats: grid `min + i * step` (<= max); random draws are continuous.
    Float {
        /// Smallest value.
        #[serde(with = "crate::exact")]
        min: f64,
        /// Largest value.
        #[serde(with = "crate::exact")]
        max: f64,
        /// Grid spacing (> 0).
        #[serde(with = "crate::exact")]
        step: f64,
        /// Random draw.
        prior: Prior,
    },
    /// Positive floats searched on a log scale: grid of `points` geometric
    /// values from `min` to `max`; random draws log-uniform.
    LogFloat {
        /// Smallest value (> 0).
        #[serde(with = "crate::exact")]
        min: f64,
        /// Largest value.
        #[serde(with = "crate::exact")]
        max: f64,
        /// Grid points (>= 2 unless min == max).
        points: u32,
    },
    /// Exact decimals `min, min + step, ..., <= max`; random draws are
    /// uniform over that lattice.
    Decimal {
        /// Smallest value.
        min: Decimal,
        /// Largest value.
        max: Decimal,
        /// Spacing (> 0).
        step: Decimal,
    },
    /// A fixed list of values (bools, choices, sets, or a fixed value).
    Categorical {
        /// The values, as the registry takes them, in grid order.
        values: Vec<String>,
    },
}

/// Largest constrained dimension whose valid pairs are counted.
const MAX_COUNT: u64 = 10_000_000;

/// Largest float grid (per dimension) a space accepts.
const MAX_DIM_POINTS: u64 = 1 << 40;

impl Dim {
    /// Number of grid points of this dimension.
    pub fn grid_len(&self) -> u64 {
        match self {
            Self::Int { min, max, step, .. } => (max.abs_diff(*min) / step.unsigned_abs()) + 1,
            Self::Float { min, max, step, .. } => float_points(*min, *max, *step),
            Self::LogFloat { min, max, points } => {
                if min == max {
                    1
                } else {
                    u64::from(*points)
                }
            }
            Self::Decimal { min, max, step } => {
                let n = ((*max - *min) / *step).floor();
                u64::try_from(n).unwrap_or(MAX_DIM_POINTS) + 1
            }
            Self::Categorical { values } => values.len() as u64,
        }
    }

    /// Smallest and largest numeric value of the dimension (None for a
    /// value that is not a number).
    pub fn num_bounds(&self) -> Option<(f64, f64)> {
        match self {
            Self::Categorical { values } => {
                values
                    .iter()
                    .try_fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                        let x: f64 = v.trim().parse().ok()?;
                        Some((lo.min(x), hi.max(x)))
                    })
            }
            _ => {
                let first = self.grid_value(0).parse().ok()?;
                let last = self.grid_value(self.grid_len() - 1).parse().ok()?;
                Some((first, last))
            }
        }
    }

    /// Whether random draws come from a finite set (the grid).
    pub fn is_discrete(&self) -> bool {
        !matches!(self, Self::Float { .. } | Self::LogFloat { .. })
    }

    /// Grid point `i` (< [`Dim::grid_len`]) as text.
    pub fn grid_value(&self, i: u64) -> String {
        match self {
            Self::Int { min, step, .. } => {
                (min + step * i64::try_from(i).unwrap_or(i64::MAX)).to_string()
            }
            Self::Float { min, max, step, .. } => {
                #[allow(clippy::cast_precision_loss, reason = "grid index of a bounded grid")]
                let x = min + step * i as f64;
                fmt_float(round_to_grid(x, *min, *step).clamp(*min, *max))
            }
            Self::LogFloat { min, max, points } => {
                if min == max || *points < 2 {
                    return fmt_float(*min);
                }
                #[allow(clippy::cast_precision_loss, reason = "grid index of a bounded grid")]
                let t = i as f64 / f64::from(points - 1);
                let x = (min.ln() + t * (max.ln() - min.ln())).exp();
                fmt_float(round_sig(x).clamp(*min, *max))
            }
            Self::Decimal { min, step, .. } => {
                (*min + *step * Decimal::from(i)).normalize().to_string()
            }
            Self::Categorical { values } => {
                values[usize::try_from(i).unwrap_or(usize::MAX)].clone()
            }
        }
    }

    /// A random value as text.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> String {
        match self {
            Self::Int {
                min,
                max,
                step,
                prior,
            } => {
                let n = self.grid_len();
                let i = match prior {
                    Prior::Uniform => rng.random_range(0..n),
                    Prior::Normal { mean, sd } => {
                        #[allow(
                            clippy::cast_precision_loss,
                            reason = "f64 draw on a bounded range"
                        )]
                        let x = normal_in(rng, *mean, *sd, *min as f64, *max as f64);
                        #[allow(
                            clippy::cast_possible_truncation,
                            clippy::cast_sign_loss,
                            clippy::cast_precision_loss,
                            reason = "index within the grid"
                        )]
                        let i = ((x - *min as f64) / *step as f64).round().max(0.0) as u64;
                        i.min(n - 1)
                    }
                };
                self.grid_value(i)
            }
            Self::Float {
                min, max, prior, ..
            } => {
                let x = match prior {
                    Prior::Uniform => {
                        if min == max {
                            *min
                        } else {
                            rng.random_range(*min..=*max)
                        }
                    }
                    Prior::Normal { mean, sd } => normal_in(rng, *mean, *sd, *min, *max),
                };
                fmt_float(x.clamp(*min, *max))
            }
            Self::LogFloat { min, max, .. } => {
                let x = if min == max {
                    *min
                } else {
                    rng.random_range(min.ln()..=max.ln()).exp()
                };
                fmt_float(x.clamp(*min, *max))
            }
            Self::Decimal { .. } | Self::Categorical { .. } => {
                let i = rng.random_range(0..self.grid_len());
                self.grid_value(i)
            }
        }
    }
}

/// A standard normal draw (Box-Muller) scaled to `mean`/`sd`, redrawn until
/// inside `[lo, hi]`, clamped after 100 misses.
fn normal_in<R: Rng + ?Sized>(rng: &mut R, mean: f64, sd: f64, lo: f64, hi: f64) -> f64 {
    let mut x = mean;
    for _ in 0..100 {
        let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        let u2: f64 = rng.random::<f64>();
        x = mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        if (lo..=hi).contains(&x) {
            return x;
        }
    }
    x.clamp(lo, hi)
}

fn float_points(min: f64, max: f64, step: f64) -> u64 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "checked bounded count"
    )]
    let n = ((max - min) / step + 1e-9)
        .floor()
        .min(MAX_DIM_POINTS as f64) as u64;
    n + 1
}

/// Decimal places of `step` (at most 12), so grid values print without
/// binary noise (`0.30000000000000004` prints `0.3`).
fn step_places(step: f64) -> i32 {
    (0..12)
        .find(|d| {
            let s = step * 10f64.powi(*d);
            (s - s.round()).abs() < 1e-9 * s.abs().max(1.0)
        })
        .unwrap_or(12)
}

/// `x` rounded to the decimal places of the grid's origin and step.
fn round_to_grid(x: f64, min: f64, step: f64) -> f64 {
    let p = 10f64.powi(step_places(step).max(step_places(min)));
    (x * p).round() / p
}

/// `x` rounded to 6 significant digits.
fn round_sig(x: f64) -> f64 {
    format!("{x:.5e}").parse().unwrap_or(x)
}

/// Shortest text that parses back to the same f64.
fn fmt_float(x: f64) -> String {
    format!("{x}")
}

/// A narrower range (or a fixed value) for one parameter of a space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Range {
    /// Int or float or decimal range; `step` defaults to the schema's.
    Linear {
        /// Smallest value (inside the schema's bounds).
        min: f64,
        /// Largest value (inside the schema's bounds).
        max: f64,
        /// Spacing; None for the schema's step.
        #[serde(default)]
        step: Option<f64>,
        /// Random draw (ints and floats).
        #[serde(default)]
        prior: Prior,
    },
    /// Float range on a log scale (`0 < min <= max`), `points` grid values.
    Log {
        /// Smallest value.
        min: f64,
        /// Largest value.
        max: f64,
        /// Grid points.
        points: u32,
    },
    /// An explicit list of values (any type), each checked by the registry.
    Values {
        /// The values as text.
        values: Vec<String>,
    },
    /// One value, not searched but sent with every trial.
    Fixed {
        /// The value as text.
        value: String,
    },
}

/// What a space does with parameters given no [`Range`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Others {
    /// Left out of trials: the registry uses their default (the usual case).
    #[default]
    Default,
    /// Searched over the whole schema: bounds and step, both bools, every
    /// choice, every non-empty subset of a set. Grids grow very fast.
    Schema,
}

/// A search space: the strategy, its dimensions and their constraints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Space {
    strategy: String,
    names: Vec<String>,
    dims: Vec<Dim>,
    /// `(left, right)` dimension indices of `left < right` constraints whose
    /// parameters are both in the space.
    less_than: Vec<(usize, usize)>,
}

impl Space {
    /// The space of strategy `strategy`: parameters in `ranges` get their
    /// range, the others follow `others`. Ranges outside the schema's bounds,
    /// of the wrong type, or naming unknown parameters are refused.
    ///
    /// # Errors
    /// [`SpaceError`] naming the strategy or parameter at fault.
    pub fn new(
        strategy: &str,
        ranges: &BTreeMap<String, Range>,
        others: Others,
    ) -> Result<Self, SpaceError> {
        let spec =
            registry::spec(strategy).ok_or_else(|| SpaceError::UnknownStrategy(strategy.into()))?;
        if let Some(unknown) = ranges.keys().find(|k| spec.param(k).is_none()) {
            return Err(SpaceError::UnknownParam {
                strategy: strategy.into(),
                param: unknown.clone(),
            });
        }
        // A parameter left at its default but constrained with a searched
        // one is fixed at its default and sent, so the constraint is a pair
        // of dimensions (counted exactly, skipped by blocks in a grid).
        let partner = |name: &str| {
            spec.constraints.iter().any(|c| {
                let (left, right) = c.params();
                (left == name && ranges.contains_key(right))
                    || (right == name && ranges.contains_key(left))
            })
        };
        let mut names = Vec::new();
        let mut dims = Vec::new();
        for p in &spec.params {
            let dim = match (ranges.get(p.name), others) {
                (Some(r), _) => dim_from_range(strategy, p.name, &p.kind, r)?,
                (None, Others::Schema) => dim_from_schema(p.name, &p.kind)?,
                (None, Others::Default) if partner(p.name) => Dim::Categorical {
                    values: vec![p.kind.default_value().to_string()],
                },
                (None, Others::Default) => continue,
            };
            names.push(p.name.to_owned());
            dims.push(dim);
        }
        let less_than = constraint_pairs(spec, &names);
        let space = Self {
            strategy: strategy.into(),
            names,
            dims,
            less_than,
        };
        space.check_some_valid()?;
        Ok(space)
    }

    /// Refuses a space whose every numeric range breaks a constraint
    /// (`fast` 50..60 with `slow` 10..20).
    fn check_some_valid(&self) -> Result<(), SpaceError> {
        for &(l, r) in &self.less_than {
            let lo = self.dims[l].num_bounds().map(|b| b.0);
            let hi = self.dims[r].num_bounds().map(|b| b.1);
            if !matches!((lo, hi), (Some(a), Some(b)) if a < b) {
                return Err(SpaceError::BadRange {
                    param: self.names[l].clone(),
                    reason: format!("no value satisfies {} < {}", self.names[l], self.names[r]),
                });
            }
        }
        Ok(())
    }

    /// The strategy's name.
    pub fn strategy(&self) -> &str {
        &self.strategy
    }

    /// Parameter names of the dimensions, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The dimensions, in order.
    pub fn dims(&self) -> &[Dim] {
        &self.dims
    }

    /// Whether every dimension is discrete (a random search can exhaust it).
    pub fn is_discrete(&self) -> bool {
        self.dims.iter().all(Dim::is_discrete)
    }

    /// Points of the full grid (product of the dimensions' grids),
    /// constraints not applied; None when it exceeds `u64::MAX`.
    pub fn grid_len(&self) -> Option<u64> {
        self.dims
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(d.grid_len()))
    }

    /// Points of the grid that satisfy the constraints, counted without
    /// enumerating the grid (each constrained pair is counted by a merge of
    /// its two sorted grids). None when it exceeds `u64::MAX`, when a
    /// parameter is in more than one constraint, or when a constrained
    /// dimension has more than 10^7 points.
    pub fn valid_grid_len(&self) -> Option<u64> {
        let mut used = vec![false; self.dims.len()];
        let mut total: u64 = 1;
        for &(l, r) in &self.less_than {
            if used[l] || used[r] {
                return None;
            }
            used[l] = true;
            used[r] = true;
            total = total.checked_mul(self.count_less_than(l, r)?)?;
        }
        // The other rules between two dimensions: `not both` flags are
        // counted (all pairs but true-true); `0 or >` is not (no count
        // rather than a wrong one).
        let at = |n: &str| self.names.iter().position(|x| x == n);
        let rules = registry::spec(&self.strategy).map_or(&[][..], |s| &s.constraints[..]);
        for c in rules {
            let (Some(l), Some(r)) = (at(c.params().0), at(c.params().1)) else {
                continue;
            };
            match c {
                Constraint::LessThan { .. } => {}
                Constraint::NotBoth { .. } if !used[l] && !used[r] => {
                    used[l] = true;
                    used[r] = true;
                    let trues = |d: &Dim| {
                        (0..d.grid_len())
                            .filter(|&i| d.grid_value(i) == "true")
                            .count() as u64
                    };
                    let (dl, dr) = (&self.dims[l], &self.dims[r]);
                    if dl.grid_len() > MAX_COUNT || dr.grid_len() > MAX_COUNT {
                        return None;
                    }
                    let n = dl.grid_len().checked_mul(dr.grid_len())? - trues(dl) * trues(dr);
                    total = total.checked_mul(n)?;
                }
                Constraint::NotBoth { .. } | Constraint::ZeroOrGreaterThan { .. } => return None,
            }
        }
        for (d, u) in self.dims.iter().zip(&used) {
            if !u {
                total = total.checked_mul(d.grid_len())?;
            }
        }
        Some(total)
    }

    /// Pairs `(a, b)` of the grids of `l` and `r` with `a < b`; None when
    /// a grid has more than 10^7 points (too long to count).
    fn count_less_than(&self, l: usize, r: usize) -> Option<u64> {
        if self.dims[l].grid_len() > MAX_COUNT || self.dims[r].grid_len() > MAX_COUNT {
            return None;
        }
        let values = |d: &Dim| -> Vec<f64> {
            (0..d.grid_len())
                .map(|i| d.grid_value(i).parse().unwrap_or(f64::NAN))
                .collect()
        };
        let mut a = values(&self.dims[l]);
        let mut b = values(&self.dims[r]);
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        // For each b, the number of a strictly below it.
        let mut i = 0usize;
        let mut n = 0u64;
        for y in &b {
            while i < a.len() && a[i] < *y {
                i += 1;
            }
            n += i as u64;
        }
        Some(n)
    }

    /// Grid point `index` (< [`Space::grid_len`]), mixed radix with the last
    /// dimension varying fastest. Constraints not applied.
    pub fn grid_point(&self, mut index: u64) -> Params {
        let mut digits = vec![0u64; self.dims.len()];
        for (k, d) in self.dims.iter().enumerate().rev() {
            let n = d.grid_len();
            digits[k] = index % n;
            index /= n;
        }
        self.names
            .iter()
            .zip(&self.dims)
            .zip(digits)
            .map(|((name, d), i)| (name.clone(), d.grid_value(i)))
            .collect()
    }

    /// For a grid point breaking a constraint between two dimensions, the
    /// next grid index that could satisfy it: every point sharing the
    /// digits up to the later of the two dimensions breaks it too. None
    /// when `params` break no such constraint.
    pub fn skip_invalid_block(&self, index: u64, params: &Params) -> Option<u64> {
        let num = |i: usize| {
            params
                .get(&self.names[i])
                .and_then(|t| Decimal::from_str(t).ok())
        };
        let last = self
            .less_than
            .iter()
            .filter(|&&(l, r)| !matches!((num(l), num(r)), (Some(a), Some(b)) if a < b))
            .map(|&(l, r)| l.max(r))
            .min()?;
        let stride: u64 = self.dims[last + 1..].iter().map(Dim::grid_len).product();
        Some((index / stride + 1).saturating_mul(stride))
    }

    /// A random point (constraints not applied).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Params {
        self.names
            .iter()
            .zip(&self.dims)
            .map(|(name, d)| (name.clone(), d.sample(rng)))
            .collect()
    }

    /// Whether `params` satisfy the constraints (checked first, cheaply, on
    /// the space's pairs) and the registry accepts them.
    pub fn is_valid(&self, params: &Params) -> bool {
        let num = |i: usize| {
            params
                .get(&self.names[i])
                .and_then(|t| Decimal::from_str(t).ok())
        };
        let pairs_ok = self.less_than.iter().all(|&(l, r)| match (num(l), num(r)) {
            (Some(a), Some(b)) => a < b,
            _ => false,
        });
        pairs_ok && registry::validate(&self.strategy, params).is_ok()
    }
}

/// The `left < right` constraints of `spec` whose two parameters are both
/// dimensions. Constraints with one side at its default are checked by the
/// registry alone.
fn constraint_pairs(spec: &StrategySpec, names: &[String]) -> Vec<(usize, usize)> {
    let at = |n: &str| names.iter().position(|x| x == n);
    spec.constraints
        .iter()
        .filter_map(|c| match c {
            Constraint::LessThan { left, right } => Some((at(left)?, at(right)?)),
            Constraint::NotBoth { .. } | Constraint::ZeroOrGreaterThan { .. } => None,
        })
        .collect()
}

fn bad(param: &str, reason: impl Into<String>) -> SpaceError {
    SpaceError::BadRange {
        param: param.into(),
        reason: reason.into(),
    }
}

fn dim_from_schema(name: &str, kind: &ParamType) -> Result<Dim, SpaceError> {
    Ok(match kind {
        ParamType::Int { min, max, step, .. } => Dim::Int {
            min: *min,
            max: *max,
            step: *step,
            prior: Prior::Uniform,
        },
        ParamType::Float { min, max, step, .. } => Dim::Float {
            min: *min,
            max: *max,
            step: *step,
            prior: Prior::Uniform,
        },
        ParamType::Decimal { min, max, step, .. } => Dim::Decimal {
            min: *min,
            max: *max,
            step: *step,
        },
        ParamType::Bool { .. } => Dim::Categorical {
            values: vec!["false".into(), "true".into()],
        },
        ParamType::Choice { options, .. } => Dim::Categorical {
            values: options.iter().map(|o| (*o).to_owned()).collect(),
        },
        ParamType::Set { options, .. } => {
            if options.len() > 12 {
                return Err(bad(name, "too many options to search every subset"));
            }
            let values = (1u32..(1 << options.len()))
                .map(|mask| {
                    options
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, o)| *o)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect();
            Dim::Categorical { values }
        }
    })
}

fn check_bounds<T: PartialOrd + std::fmt::Display>(
    name: &str,
    (lo, hi): (T, T),
    (min, max): (T, T),
) -> Result<(), SpaceError> {
    if lo > hi {
        return Err(bad(name, format!("range min {lo} is above max {hi}")));
    }
    if lo < min || hi > max {
        return Err(bad(
            name,
            format!("range {lo}..={hi} is outside the schema's bounds {min}..={max}"),
        ));
    }
    Ok(())
}

fn check_prior(name: &str, prior: Prior) -> Result<(), SpaceError> {
    if let Prior::Normal { mean, sd } = prior
        && !(mean.is_finite() && sd.is_finite() && sd > 0.0)
    {
        return Err(bad(name, "normal prior needs a finite mean and sd > 0"));
    }
    Ok(())
}

fn dim_from_range(
    strategy: &str,
    name: &str,
    kind: &ParamType,
    range: &Range,
) -> Result<Dim, SpaceError> {
    let dim = match (kind, range) {
        (
            ParamType::Int {
                min: smin,
                max: smax,
                step: sstep,
                ..
            },
            Range::Linear {
                min,
                max,
                step,
                prior,
            },
        ) => {
            let int = |x: f64, what: &str| {
                if x.fract() == 0.0 && x.abs() < 9.0e15 {
                    #[allow(clippy::cast_possible_truncation, reason = "checked whole number")]
                    Ok(x as i64)
                } else {
                    Err(bad(name, format!("range {what} {x} is not an integer")))
                }
            };
            let (lo, hi) = (int(*min, "min")?, int(*max, "max")?);
            let step = step.map_or(Ok(*sstep), |s| int(s, "step"))?;
            check_bounds(name, (lo, hi), (*smin, *smax))?;
            if step < 1 {
                return Err(bad(name, "step must be >= 1"));
            }
            check_prior(name, *prior)?;
            Dim::Int {
                min: lo,
                max: hi,
                step,
                prior: *prior,
            }
        }
        (
            ParamType::Float {
                min: smin,
                max: smax,
                step: sstep,
                ..
            },
            Range::Linear {
                min,
                max,
                step,
                prior,
            },
        ) => {
            if !(min.is_finite() && max.is_finite()) {
                return Err(bad(name, "range bounds must be finite"));
            }
            check_bounds(name, (*min, *max), (*smin, *smax))?;
            let step = step.unwrap_or(*sstep);
            if !(step.is_finite() && step >= 1e-9) {
                return Err(bad(name, "step must be finite and >= 1e-9"));
            }
            check_prior(name, *prior)?;
            Dim::Float {
                min: *min,
                max: *max,
                step,
                prior: *prior,
            }
        }
        (
            ParamType::Float {
                min: smin,
                max: smax,
                ..
            },
            Range::Log { min, max, points },
        ) => {
            if !(min.is_finite() && max.is_finite() && *min > 0.0) {
                return Err(bad(name, "log range needs finite bounds with min > 0"));
            }
            check_bounds(name, (*min, *max), (*smin, *smax))?;
            if *points < 2 && min < max {
                return Err(bad(name, "log range needs at least 2 points"));
            }
            if *points > 100_000 {
                return Err(bad(name, "log range: at most 100000 points"));
            }
            let dim = Dim::LogFloat {
                min: *min,
                max: *max,
                points: *points,
            };
            let values: Vec<f64> = (0..dim.grid_len())
                .map(|i| dim.grid_value(i).parse().unwrap_or(f64::NAN))
                .collect();
            if values
                .windows(2)
                .any(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less))
            {
                return Err(bad(
                    name,
                    "log range: grid points collide at 6 significant digits; use fewer points",
                ));
            }
            dim
        }
        (
            ParamType::Decimal {
                min: smin,
                max: smax,
                step: sstep,
                ..
            },
            Range::Linear { min, max, step, .. },
        ) => {
            let dec = |x: f64, what: &str| {
                Decimal::from_str(&x.to_string())
                    .map_err(|_| bad(name, format!("range {what} {x} is not a decimal")))
            };
            let (lo, hi) = (dec(*min, "min")?, dec(*max, "max")?);
            let step = step.map_or(Ok(*sstep), |s| dec(s, "step"))?;
            check_bounds(name, (lo, hi), (*smin, *smax))?;
            if step <= Decimal::ZERO {
                return Err(bad(name, "step must be > 0"));
            }
            Dim::Decimal {
                min: lo,
                max: hi,
                step,
            }
        }
        (_, Range::Values { values }) => {
            if values.is_empty() {
                return Err(bad(name, "empty list of values"));
            }
            let mut seen = std::collections::BTreeSet::new();
            let mut canonical = Vec::new();
            for v in values {
                let c = check_value(strategy, name, v)?;
                if !seen.insert(c.clone()) {
                    return Err(bad(name, format!("value {v:?} given twice")));
                }
                canonical.push(c);
            }
            Dim::Categorical { values: canonical }
        }
        (_, Range::Fixed { value }) => Dim::Categorical {
            values: vec![check_value(strategy, name, value)?],
        },
        (kind, range) => {
            return Err(bad(
                name,
                format!(
                    "a {} parameter cannot take a {} range",
                    kind.name(),
                    match range {
                        Range::Linear { .. } => "linear",
                        Range::Log { .. } => "log",
                        Range::Values { .. } => "values",
                        Range::Fixed { .. } => "fixed",
                    }
                ),
            ));
        }
    };
    if dim.grid_len() >= MAX_DIM_POINTS {
        return Err(bad(name, "step too small: more than 2^40 grid points"));
    }
    Ok(dim)
}

/// A value checked by the registry's parser (type and bounds), returned in
/// the registry's canonical text (`1.0` -> `1`, a set in its options'
/// order) so equal values are one value. A constraint broken by this value
/// with the others at their default is not an error here: constraints are
/// applied per trial.
fn check_value(strategy: &str, name: &str, value: &str) -> Result<String, SpaceError> {
    let params = Params::from([(name.to_owned(), value.to_owned())]);
    match registry::parse(strategy, &params) {
        Ok(c) => Ok(c
            .params()
            .get(name)
            .map_or_else(|| value.trim().to_owned(), ToString::to_string)),
        Err(registry::RegistryError::Constraint { .. }) => Ok(value.trim().to_owned()),
        Err(e) => Err(bad(name, e.to_string())),
    }
}
