//! The objective's landscape over a study's lattice: 2-D heatmaps around
//! the best trial, and a recommended parameter set in a stable region.
//!
//! The best trial of a search is often a narrow peak: one lattice step away
//! the objective falls. [`recommend`] prefers the trial whose neighbourhood
//! is good as a whole: for every scored trial it takes the trials one
//! lattice step away in any searched parameter (the whole 3^d block around
//! it for up to [`FULL_BLOCK_DIMS`] searched parameters, the 2d axis
//! neighbours beyond), scores the neighbourhood by the mean objective of the
//! trial and its tried neighbours (a neighbour that ran and failed counts as
//! the worst objective of the study: a cliff), and recommends the highest
//! mean among trials with at least half of their possible neighbours tried.
//! Its variance is the stability score (low: a plateau).
//!
//! Only discrete dimensions have a lattice: a study with a continuous
//! searched dimension gets no recommendation and no heatmap of it.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::space::{Params, Space};
use crate::study::{TrialRecord, TrialState};

/// Searched parameters up to which the whole block of neighbours is used.
pub const FULL_BLOCK_DIMS: usize = 4;
/// Values per heatmap axis at most, centred on the best trial's value.
pub const AXIS: u64 = 41;

/// The objective over two parameters, every other at the best trial's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heatmap {
    /// The parameter along the x axis.
    pub x: String,
    /// The parameter along the y axis.
    pub y: String,
    /// The x values, in lattice order.
    pub x_values: Vec<String>,
    /// The y values, in lattice order.
    pub y_values: Vec<String>,
    /// Row-major: `values[j * x_values.len() + i]` is the objective at
    /// `(x_values[i], y_values[j])`; `None` where no trial scored.
    pub values: Vec<Option<f64>>,
}

/// A parameter set in a stable region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// Its parameters.
    pub params: Params,
    /// Its own objective.
    pub objective: f64,
    /// The mean objective of it and its tried neighbours.
    pub neighbourhood_mean: f64,
    /// Their population variance (the stability score: low is stable).
    pub neighbourhood_variance: f64,
    /// Tried neighbours counted.
    pub neighbours: usize,
    /// Of which failed (counted at the study's worst objective).
    pub failed_neighbours: usize,
    /// Whether it is the best trial too.
    pub is_best: bool,
}

/// The searched dimensions: those with more than one lattice point, all
/// discrete; `None` when one is continuous.
fn searched(space: &Space) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for (k, dim) in space.dims().iter().enumerate() {
        if dim.grid_len() < 2 {
            continue;
        }
        if !dim.is_discrete() {
            return None;
        }
        out.push(k);
    }
    Some(out)
}

/// A trial's lattice indices over `dims`, if every value is on the lattice.
fn indices(space: &Space, dims: &[usize], params: &Params) -> Option<Vec<u64>> {
    dims.iter()
        .map(|&k| {
            let name = &space.names()[k];
            crate::encode::index(&space.dims()[k], params.get(name)?)
        })
        .collect()
}

/// The offsets of a trial's neighbours over `d` searched dimensions.
fn offsets(d: usize) -> Vec<Vec<i64>> {
    if d <= FULL_BLOCK_DIMS {
        let mut out = vec![Vec::new()];
        for _ in 0..d {
            out = out
                .into_iter()
                .flat_map(|o: Vec<i64>| {
                    [-1, 0, 1].into_iter().map(move |x| {
                        let mut o = o.clone();
                        o.push(x);
                        o
                    })
                })
                .collect();
        }
        out.retain(|o| o.iter().any(|&x| x != 0));
        out
    } else {
        (0..d)
            .flat_map(|k| {
                [-1, 1].into_iter().map(move |x| {
                    let mut o = vec![0; d];
                    o[k] = x;
                    o
                })
            })
            .collect()
    }
}

/// The recommended set: the scored trial with the best neighbourhood mean
/// among those with at least half their possible neighbours tried (ties:
/// the higher own objective, then the earlier trial). `None` without a
/// lattice (a continuous searched dimension), without scored trials, or
/// when no trial has enough tried neighbours.
pub fn recommend(space: &Space, trials: &[&TrialRecord]) -> Option<Recommendation> {
    let dims = searched(space)?;
    let worst = trials
        .iter()
        .filter_map(|t| t.objective)
        .min_by(f64::total_cmp)?;
    let best_id = trials
        .iter()
        .filter_map(|t| t.objective.map(|o| (o, t.trial.id)))
        .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, id)| id);
    // What ran at each lattice point: Some(objective), or None for a failure.
    let mut at: HashMap<Vec<u64>, Option<f64>> = HashMap::new();
    for t in trials {
        if t.state == TrialState::Queued {
            continue;
        }
        if let Some(ix) = indices(space, &dims, &t.trial.params) {
            at.insert(ix, t.objective);
        }
    }
    let lens: Vec<u64> = dims.iter().map(|&k| space.dims()[k].grid_len()).collect();
    let around = offsets(dims.len());
    let mut chosen: Option<(Recommendation, u64)> = None;
    for t in trials {
        let Some(own) = t.objective else { continue };
        let Some(ix) = indices(space, &dims, &t.trial.params) else {
            continue;
        };
        let mut values = vec![own];
        let (mut possible, mut failed) = (0usize, 0usize);
        for o in &around {
            let Some(n): Option<Vec<u64>> = ix
                .iter()
                .zip(o)
                .zip(&lens)
                .map(|((&i, &d), &len)| i.checked_add_signed(d).filter(|j| *j < len))
                .collect()
            else {
                continue;
            };
            // A neighbour the constraints forbid is not a possible one.
            let mut params = t.trial.params.clone();
            for (&k, &j) in dims.iter().zip(&n) {
                params.insert(space.names()[k].clone(), space.dims()[k].grid_value(j));
            }
            if !space.is_valid(&params) {
                continue;
            }
            possible += 1;
            match at.get(&n) {
                Some(Some(v)) => values.push(*v),
                Some(None) => {
                    values.push(worst);
                    failed += 1;
                }
                None => {}
            }
        }
        let tried = values.len() - 1;
        if possible == 0 || tried * 2 < possible {
            continue;
        }
        #[allow(clippy::cast_precision_loss, reason = "a neighbourhood of at most 81")]
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let candidate = Recommendation {
            params: t.trial.params.clone(),
            objective: own,
            neighbourhood_mean: mean,
            neighbourhood_variance: variance,
            neighbours: tried,
            failed_neighbours: failed,
            is_best: best_id == Some(t.trial.id),
        };
        let better = chosen.as_ref().is_none_or(|(c, id)| {
            // Means equal but for the order of their sums are a tie.
            let tie = (mean - c.neighbourhood_mean).abs()
                <= 1e-12 * mean.abs().max(c.neighbourhood_mean.abs()).max(1.0);
            let by_mean = if tie {
                std::cmp::Ordering::Equal
            } else {
                mean.total_cmp(&c.neighbourhood_mean)
            };
            by_mean
                .then(own.total_cmp(&c.objective))
                .then(id.cmp(&t.trial.id))
                .is_gt()
        });
        if better {
            chosen = Some((candidate, t.trial.id));
        }
    }
    chosen.map(|(r, _)| r)
}

/// One heatmap per pair of searched parameters: the objective of the trials
/// that differ from `center` only in those two, over at most [`AXIS`]
/// values per axis centred on `center`'s. Empty without a lattice.
pub fn heatmaps(space: &Space, trials: &[&TrialRecord], center: &Params) -> Vec<Heatmap> {
    let Some(dims) = searched(space) else {
        return Vec::new();
    };
    let mut by_params: BTreeMap<&Params, Option<f64>> = BTreeMap::new();
    for t in trials {
        by_params.insert(&t.trial.params, t.objective);
    }
    let axis = |k: usize| -> Option<Vec<String>> {
        let dim = &space.dims()[k];
        let len = dim.grid_len();
        let at = crate::encode::index(dim, center.get(&space.names()[k])?)?;
        let half = AXIS / 2;
        let lo = at.saturating_sub(half).min(len.saturating_sub(AXIS));
        let hi = (lo + AXIS).min(len);
        Some((lo..hi).map(|i| dim.grid_value(i)).collect())
    };
    let mut out = Vec::new();
    for (a, &kx) in dims.iter().enumerate() {
        for &ky in &dims[a + 1..] {
            let (Some(xs), Some(ys)) = (axis(kx), axis(ky)) else {
                continue;
            };
            let (nx, ny) = (&space.names()[kx], &space.names()[ky]);
            let mut values = Vec::with_capacity(xs.len() * ys.len());
            for y in &ys {
                for x in &xs {
                    let mut p = center.clone();
                    p.insert(nx.clone(), x.clone());
                    p.insert(ny.clone(), y.clone());
                    values.push(by_params.get(&p).copied().flatten());
                }
            }
            out.push(Heatmap {
                x: nx.clone(),
                y: ny.clone(),
                x_values: xs,
                y_values: ys,
                values,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::Trial;
    use crate::space::{Others, Prior, Range};

    fn space() -> Space {
        let mut ranges = BTreeMap::new();
        for (name, min, max, step) in [("fast", 2.0, 20.0, 2.0), ("slow", 30.0, 70.0, 10.0)] {
            ranges.insert(
                name.to_owned(),
                Range::Linear {
                    min,
                    max,
                    step: Some(step),
                    prior: Prior::default(),
                },
            );
        }
        Space::new("sma_cross", &ranges, Others::Default).unwrap()
    }

    fn record(id: u64, fast: i64, slow: i64, objective: Option<f64>) -> TrialRecord {
        TrialRecord {
            trial: Trial {
                id,
                params: [("fast", fast), ("slow", slow)]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_string()))
                    .collect(),
            },
            state: if objective.is_some() {
                TrialState::Succeeded
            } else {
                TrialState::Failed
            },
            metrics: None,
            objective,
            error: String::new(),
            finished_seq: Some(id),
            purpose: crate::study::Purpose::Search,
        }
    }

    /// A broad plateau of 1.0 around (6, 50) and a narrow peak of 3.0 at
    /// (18, 30) whose neighbours are 0: the best is the peak, the
    /// recommendation the plateau.
    fn landscape() -> Vec<TrialRecord> {
        let mut out = Vec::new();
        let mut id = 0;
        for fast in (2..=20).step_by(2) {
            for slow in (30..=70).step_by(10) {
                let v = if (fast, slow) == (18, 30) {
                    3.0
                } else if (2..=10).contains(&fast) && (40..=60).contains(&slow) {
                    if (fast, slow) == (6, 50) { 1.2 } else { 1.0 }
                } else {
                    0.0
                };
                out.push(record(id, fast, slow, Some(v)));
                id += 1;
            }
        }
        out
    }

    #[test]
    fn the_recommendation_is_the_plateau_not_the_narrow_peak() {
        let trials = landscape();
        let refs: Vec<&TrialRecord> = trials.iter().collect();
        let r = recommend(&space(), &refs).unwrap();
        assert_eq!(r.params["fast"], "6");
        assert_eq!(r.params["slow"], "50");
        assert!(!r.is_best);
        assert_eq!(r.neighbours, 8, "the whole 3x3 block");
        // (1.2 + 8 * 1.0) / 9
        assert!((r.neighbourhood_mean - 9.2 / 9.0).abs() < 1e-12);
        assert!(r.neighbourhood_variance > 0.0 && r.neighbourhood_variance < 0.01);
        assert_eq!(r.failed_neighbours, 0);
    }

    #[test]
    fn failed_neighbours_count_as_the_worst_and_sparse_trials_are_not_eligible() {
        let mut trials = landscape();
        // (4, 50) fails: (6, 50)'s neighbourhood takes the worst, 0.
        for t in &mut trials {
            if t.trial.params["fast"] == "4" && t.trial.params["slow"] == "50" {
                *t = record(t.trial.id, 4, 50, None);
            }
        }
        let refs: Vec<&TrialRecord> = trials.iter().collect();
        let r = recommend(&space(), &refs).unwrap();
        assert_ne!(
            (r.params["fast"].as_str(), r.params["slow"].as_str()),
            ("6", "50"),
            "a cliff next to it"
        );
        // A lone trial has no tried neighbour: nothing to recommend.
        let lone = [record(0, 6, 50, Some(1.0))];
        assert_eq!(recommend(&space(), &[&lone[0]]), None);
    }

    #[test]
    fn heatmaps_hold_the_pair_around_the_center() {
        let trials = landscape();
        let refs: Vec<&TrialRecord> = trials.iter().collect();
        let center = trials[0].trial.params.clone();
        let maps = heatmaps(&space(), &refs, &center);
        assert_eq!(maps.len(), 1);
        let m = &maps[0];
        assert_eq!((m.x.as_str(), m.y.as_str()), ("fast", "slow"));
        assert_eq!(m.x_values.len(), 10);
        assert_eq!(m.y_values, ["30", "40", "50", "60", "70"]);
        let cell = |x: &str, y: &str| {
            let i = m.x_values.iter().position(|v| v == x).unwrap();
            let j = m.y_values.iter().position(|v| v == y).unwrap();
            m.values[j * m.x_values.len() + i]
        };
        assert_eq!(cell("18", "30"), Some(3.0));
        assert_eq!(cell("6", "50"), Some(1.2));
        assert_eq!(cell("20", "70"), Some(0.0));
    }

    #[test]
    fn neighbour_offsets() {
        assert_eq!(offsets(2).len(), 8);
        assert_eq!(offsets(4).len(), 80);
        assert_eq!(offsets(5).len(), 10, "axis neighbours beyond four");
    }
}
