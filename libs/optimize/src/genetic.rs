//! A generational genetic algorithm over a space's points.
//!
//! A genome is a trial's parameters, one gene per dimension. Generation 0
//! is drawn at random (no point twice, constraints kept). Each next
//! generation keeps the `elites` best unchanged (not re-evaluated) and
//! breeds the rest: two parents chosen by tournament, roulette or rank;
//! crossover (uniform or one-point over the genes) with probability
//! `crossover_rate`, else a copy of the first parent; each gene mutated with
//! probability `mutation_rate` (a step on an int's or decimal's lattice, a
//! normal step of a float, another value of a categorical). A child that
//! breaks a constraint or was already tried is mutated again (up to 20
//! times), then replaced by a random untried point: nothing is evaluated
//! twice.
//!
//! A generation goes out as one batch; [`Search::suggest`] returns nothing
//! while it awaits results (the next generation needs them all), without
//! being done. Failed trials rank below every success.

use std::collections::BTreeSet;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::encode;
use crate::rng::Stream;
use crate::search::{
    Ledger, Observation, Plateau, Search, SearchError, SetupError, Trial, check_plateau,
    draw_unseen,
};
use crate::space::{Params, Space};

/// How parents are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Selection {
    /// The best of `size` members drawn at random (with replacement).
    Tournament {
        /// Members per tournament (>= 1; 2 or 3 is usual).
        size: usize,
    },
    /// Chance proportional to fitness minus the worst fitness (plus a
    /// hundredth of the spread, so the worst keeps a small chance).
    Roulette,
    /// Chance proportional to rank (the worst 1, the best N).
    Rank,
}

/// How two parents' genes are mixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Crossover {
    /// Each gene from either parent with equal chance.
    Uniform,
    /// Genes before a random cut from the first parent, the rest from the
    /// second.
    OnePoint,
}

/// Settings of a genetic search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GeneticConfig {
    /// Members per generation (>= 2).
    pub population: usize,
    /// Parent selection.
    pub selection: Selection,
    /// Crossover operator.
    pub crossover: Crossover,
    /// Probability that a child is a crossover of two parents (0..=1).
    #[serde(with = "crate::exact")]
    pub crossover_rate: f64,
    /// Probability that each gene mutates (0..=1).
    #[serde(with = "crate::exact")]
    pub mutation_rate: f64,
    /// Best members carried unchanged into the next generation
    /// (< population).
    pub elites: usize,
    /// Stop after this many generations (generation 0 included).
    pub max_generations: Option<u32>,
    /// Stop after this many trials (the last generation may be cut short).
    pub max_trials: Option<u64>,
    /// Stop when the best has not improved by more than `epsilon` over the
    /// last `patience` generations.
    pub plateau: Option<Plateau>,
}

impl Default for GeneticConfig {
    fn default() -> Self {
        Self {
            population: 20,
            selection: Selection::Tournament { size: 3 },
            crossover: Crossover::Uniform,
            crossover_rate: 0.9,
            mutation_rate: 0.2,
            elites: 2,
            max_generations: Some(50),
            max_trials: None,
            plateau: None,
        }
    }
}

impl GeneticConfig {
    fn check(&self) -> Result<(), SetupError> {
        let bad = |field, reason| Err(SetupError::BadSetting { field, reason });
        check_plateau(self.plateau)?;
        if !(2..=100_000).contains(&self.population) {
            return bad("population", "must be in 2..=100000");
        }
        if self.elites >= self.population {
            return bad("elites", "must be below population");
        }
        if matches!(self.selection, Selection::Tournament { size } if size == 0) {
            return bad("selection.size", "must be >= 1");
        }
        if !(0.0..=1.0).contains(&self.crossover_rate) {
            return bad("crossover_rate", "must be in 0..=1");
        }
        if !(0.0..=1.0).contains(&self.mutation_rate) {
            return bad("mutation_rate", "must be in 0..=1");
        }
        if self.max_generations == Some(0) {
            return bad("max_generations", "must be >= 1");
        }
        if self.max_trials == Some(0) {
            return bad("max_trials", "must be >= 1");
        }
        Ok(())
    }
}

/// A member of a generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Its genome.
    pub params: Params,
    /// Its objective, None if failed or not yet known.
    #[serde(with = "crate::exact::option")]
    pub fitness: Option<f64>,
    /// Its trial (None until suggested; an elite keeps its first trial's).
    pub trial: Option<u64>,
}

/// Figures of one finished generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    /// 0, 1, 2, ...
    pub generation: u32,
    /// Best fitness of the generation (None if all failed).
    #[serde(with = "crate::exact::option")]
    pub best: Option<f64>,
    /// Mean fitness of its successful members.
    #[serde(with = "crate::exact::option")]
    pub mean: Option<f64>,
    /// Its diversity.
    pub diversity: Diversity,
}

/// How spread out a generation is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Diversity {
    /// Mean over pairs of members of their mean per-gene distance, each
    /// gene scaled to `[0, 1]` (a categorical gene 0 if equal, else 1);
    /// fixed dimensions left out. 0 when all members are equal.
    #[serde(with = "crate::exact")]
    pub mean_distance: f64,
    /// Distinct genomes over members.
    #[serde(with = "crate::exact")]
    pub distinct_share: f64,
}

/// Attempts at a fresh valid child by mutating it again.
const MAX_REMUTATE: usize = 20;

/// A genetic search. Deterministic for a seed; its whole state is serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneticSearch {
    space: Space,
    config: GeneticConfig,
    rng: Stream,
    /// Every point suggested, never suggested again.
    seen: BTreeSet<Params>,
    valid: Option<u64>,
    /// The last finished generation, best first.
    population: Vec<Member>,
    /// The generation being evaluated (empty between generations).
    brood: Vec<Member>,
    /// Generations finished.
    generations: u32,
    history: Vec<GenerationStats>,
    /// Best at the last improvement, and generations since.
    #[serde(with = "crate::exact::option")]
    plateau_best: Option<f64>,
    stale: usize,
    exhausted: bool,
    stopped: bool,
    ledger: Ledger,
}

impl GeneticSearch {
    /// The space searched.
    pub fn space(&self) -> &Space {
        &self.space
    }

    /// A genetic search of `space` from `seed`.
    ///
    /// # Errors
    /// [`SetupError::BadSetting`] naming a setting out of range,
    /// [`SetupError::BadPlateau`].
    pub fn new(space: Space, seed: u64, config: GeneticConfig) -> Result<Self, SetupError> {
        config.check()?;
        let valid = if space.is_discrete() {
            space.valid_grid_len()
        } else {
            None
        };
        Ok(Self {
            space,
            config,
            rng: Stream::new(seed),
            seen: BTreeSet::new(),
            valid,
            population: Vec::new(),
            brood: Vec::new(),
            generations: 0,
            history: Vec::new(),
            plateau_best: None,
            stale: 0,
            exhausted: false,
            stopped: false,
            ledger: Ledger::new(None),
        })
    }

    /// Every result observed, in observation order.
    pub fn observed(&self) -> &[Observation] {
        &self.ledger.observed
    }

    /// The last finished generation, best first.
    pub fn population(&self) -> &[Member] {
        &self.population
    }

    /// Generations finished.
    pub fn generations(&self) -> u32 {
        self.generations
    }

    /// Figures of every finished generation, in order.
    pub fn history(&self) -> &[GenerationStats] {
        &self.history
    }

    /// Diversity of the last finished generation (None before the first).
    pub fn diversity(&self) -> Option<Diversity> {
        self.history.last().map(|h| h.diversity)
    }

    /// Stops the search: it suggests nothing more (a study's time limit or
    /// a cancel). Results of trials already out are still taken.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    fn budget_left(&self) -> bool {
        self.config
            .max_trials
            .is_none_or(|m| self.ledger.next_id < m)
    }

    fn fresh(&self, p: &Params) -> bool {
        !self.seen.contains(p) && self.space.is_valid(p)
    }

    /// The next generation's children (untried, valid, distinct).
    fn breed(&mut self, rng: &mut ChaCha8Rng) {
        let size = self.config.population;
        if self.population.is_empty() {
            for _ in 0..size {
                let Some(p) = draw_unseen(&self.space, &self.seen, self.valid, rng) else {
                    break;
                };
                self.add_child(p);
            }
        } else {
            for _ in self.config.elites..size {
                let a = self.select(rng);
                let b = self.select(rng);
                let mut child = if rng.random::<f64>() < self.config.crossover_rate {
                    self.cross(a, b, rng)
                } else {
                    self.population[a].params.clone()
                };
                self.mutate(&mut child, self.config.mutation_rate, rng);
                let mut tries = 0;
                while !self.fresh(&child) && tries < MAX_REMUTATE {
                    self.mutate_one(&mut child, rng);
                    tries += 1;
                }
                let child = if self.fresh(&child) {
                    Some(child)
                } else {
                    draw_unseen(&self.space, &self.seen, self.valid, rng)
                };
                match child {
                    Some(p) => self.add_child(p),
                    None => break,
                }
            }
        }
        if self.brood.is_empty() {
            self.exhausted = true;
        }
    }

    fn add_child(&mut self, params: Params) {
        self.seen.insert(params.clone());
        self.brood.push(Member {
            params,
            fitness: None,
            trial: None,
        });
    }

    /// Index in the population of a parent.
    fn select(&self, rng: &mut ChaCha8Rng) -> usize {
        let n = self.population.len();
        // The population is sorted best first: a lower index is fitter.
        match self.config.selection {
            Selection::Tournament { size } => {
                (0..size).map(|_| rng.random_range(0..n)).min().unwrap_or(0)
            }
            Selection::Rank => {
                // Weight n - i for index i; total n (n + 1) / 2.
                let total = n * (n + 1) / 2;
                let mut r = rng.random_range(0..total);
                for i in 0..n {
                    let w = n - i;
                    if r < w {
                        return i;
                    }
                    r -= w;
                }
                n - 1
            }
            Selection::Roulette => {
                let ok: Vec<f64> = self.population.iter().filter_map(|m| m.fitness).collect();
                let lo = ok.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = ok.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let floor = if hi > lo { (hi - lo) / 100.0 } else { 1.0 };
                let weights: Vec<f64> = self
                    .population
                    .iter()
                    .map(|m| m.fitness.map_or(0.0, |f| f - lo + floor))
                    .collect();
                let total: f64 = weights.iter().sum();
                if total.is_nan() || total <= 0.0 {
                    return rng.random_range(0..n);
                }
                let mut r = rng.random::<f64>() * total;
                for (i, w) in weights.iter().enumerate() {
                    if r < *w {
                        return i;
                    }
                    r -= w;
                }
                weights.iter().rposition(|w| *w > 0.0).unwrap_or(n - 1)
            }
        }
    }

    fn cross(&self, a: usize, b: usize, rng: &mut ChaCha8Rng) -> Params {
        let (pa, pb) = (&self.population[a].params, &self.population[b].params);
        let names = self.space.names();
        let cut = if names.len() >= 2 {
            rng.random_range(1..names.len())
        } else {
            0
        };
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let from_a = match self.config.crossover {
                    Crossover::Uniform => rng.random::<bool>(),
                    Crossover::OnePoint => i < cut,
                };
                let v = if from_a { &pa[name] } else { &pb[name] };
                (name.clone(), v.clone())
            })
            .collect()
    }

    fn mutate(&self, child: &mut Params, rate: f64, rng: &mut ChaCha8Rng) {
        for (name, d) in self.space.names().iter().zip(self.space.dims()) {
            if rng.random::<f64>() < rate
                && let Some(v) = child.get_mut(name)
            {
                *v = encode::mutate(d, v, rng);
            }
        }
    }

    /// Mutates one gene of a dimension with more than one value.
    fn mutate_one(&self, child: &mut Params, rng: &mut ChaCha8Rng) {
        let free: Vec<usize> = (0..self.space.dims().len())
            .filter(|i| {
                let d = &self.space.dims()[*i];
                !d.is_discrete() || d.grid_len() > 1
            })
            .collect();
        if free.is_empty() {
            return;
        }
        let i = free[rng.random_range(0..free.len())];
        let name = &self.space.names()[i];
        if let Some(v) = child.get_mut(name) {
            *v = encode::mutate(&self.space.dims()[i], v, rng);
        }
    }

    /// The brood is fully evaluated: elites plus brood, best first, become
    /// the population; figures and the plateau counter updated.
    fn finish_generation(&mut self) {
        let mut next: Vec<Member> = self
            .population
            .iter()
            .take(self.config.elites)
            .cloned()
            .collect();
        next.append(&mut self.brood);
        // Best first, failed last; ties in trial order (stable sort).
        next.sort_by(|a, b| fitness_key(b.fitness).total_cmp(&fitness_key(a.fitness)));
        let ok: Vec<f64> = next.iter().filter_map(|m| m.fitness).collect();
        #[allow(clippy::cast_precision_loss, reason = "population size")]
        let mean = (!ok.is_empty()).then(|| ok.iter().sum::<f64>() / ok.len() as f64);
        self.history.push(GenerationStats {
            generation: self.generations,
            best: next.first().and_then(|m| m.fitness),
            mean,
            diversity: diversity(&self.space, &next),
        });
        self.population = next;
        self.generations += 1;
        let eps = self.config.plateau.map_or(0.0, |p| p.epsilon);
        let best = self.ledger.best_value();
        let improved = match (best, self.plateau_best) {
            (Some(b), Some(p)) => b > p + eps,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if improved {
            self.plateau_best = best;
            self.stale = 0;
        } else {
            self.stale += 1;
        }
    }
}

fn fitness_key(f: Option<f64>) -> f64 {
    f.unwrap_or(f64::NEG_INFINITY)
}

/// Diversity of `members` in `space`.
pub fn diversity(space: &Space, members: &[Member]) -> Diversity {
    let free: Vec<usize> = (0..space.dims().len())
        .filter(|i| {
            let d = &space.dims()[*i];
            !d.is_discrete() || d.grid_len() > 1
        })
        .collect();
    let distinct: BTreeSet<&Params> = members.iter().map(|m| &m.params).collect();
    #[allow(clippy::cast_precision_loss, reason = "population size")]
    let distinct_share = if members.is_empty() {
        0.0
    } else {
        distinct.len() as f64 / members.len() as f64
    };
    let mut sum = 0.0;
    let mut pairs = 0u64;
    for (i, a) in members.iter().enumerate() {
        for b in &members[i + 1..] {
            let d: f64 = free
                .iter()
                .map(|k| {
                    let name = &space.names()[*k];
                    match (a.params.get(name), b.params.get(name)) {
                        (Some(x), Some(y)) => encode::gene_distance(&space.dims()[*k], x, y),
                        _ => 1.0,
                    }
                })
                .sum();
            sum += d;
            pairs += 1;
        }
    }
    #[allow(clippy::cast_precision_loss, reason = "pair and gene counts")]
    let mean_distance = if pairs == 0 || free.is_empty() {
        0.0
    } else {
        sum / pairs as f64 / free.len() as f64
    };
    Diversity {
        mean_distance,
        distinct_share,
    }
}

impl Search for GeneticSearch {
    fn suggest(&mut self, n: usize) -> Vec<Trial> {
        let mut rng = self.rng.rng();
        let mut out = Vec::new();
        while out.len() < n && !self.is_done() {
            if self.brood.is_empty() {
                self.breed(&mut rng);
                continue;
            }
            let Some(at) = self.brood.iter().position(|m| m.trial.is_none()) else {
                break; // the generation awaits its results
            };
            let trial = self.ledger.issue(self.brood[at].params.clone());
            self.brood[at].trial = Some(trial.id);
            out.push(trial);
        }
        self.rng.save(&rng);
        out
    }

    fn observe(&mut self, trial_id: u64, objective: Option<f64>) -> Result<(), SearchError> {
        self.ledger.observe(trial_id, objective)?;
        let objective = objective.filter(|v| v.is_finite());
        if let Some(m) = self.brood.iter_mut().find(|m| m.trial == Some(trial_id)) {
            m.fitness = objective;
        }
        let pending: BTreeSet<u64> = self.ledger.pending.iter().map(|t| t.id).collect();
        let complete = !self.brood.is_empty()
            && self
                .brood
                .iter()
                .all(|m| m.trial.is_some_and(|t| !pending.contains(&t)));
        if complete {
            self.finish_generation();
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.stopped
            || self.exhausted
            || !self.budget_left()
            || self
                .config
                .max_generations
                .is_some_and(|g| self.generations >= g)
            || self
                .config
                .plateau
                .is_some_and(|p| self.stale >= p.patience)
    }

    fn best(&self) -> Option<(&Trial, f64)> {
        self.ledger.best()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{Others, Prior, Range};

    fn space() -> Space {
        let r = |a: f64, b: f64| Range::Linear {
            min: a,
            max: b,
            step: None,
            prior: Prior::Uniform,
        };
        Space::new(
            "sma_cross",
            &[
                ("fast".to_owned(), r(5.0, 50.0)),
                ("slow".to_owned(), r(10.0, 200.0)),
            ]
            .into(),
            Others::Default,
        )
        .unwrap()
    }

    fn member(fast: &str, slow: &str) -> Member {
        Member {
            params: [
                ("fast".to_owned(), fast.to_owned()),
                ("slow".to_owned(), slow.to_owned()),
            ]
            .into(),
            fitness: None,
            trial: None,
        }
    }

    #[test]
    fn diversity_of_known_populations() {
        let s = space();
        let same = vec![member("5", "10"), member("5", "10")];
        let d = diversity(&s, &same);
        assert_eq!(d.mean_distance, 0.0);
        assert_eq!(d.distinct_share, 0.5);
        // Opposite corners: distance 1 in both genes.
        let far = vec![member("5", "10"), member("50", "200")];
        let d = diversity(&s, &far);
        assert!((d.mean_distance - 1.0).abs() < 1e-12);
        assert_eq!(d.distinct_share, 1.0);
        // fast 5 -> 50 only (1 of 2 genes): 0.5; three members, pairs
        // (a,b) 0.5, (a,c) 0, (b,c) 0.5.
        let three = vec![member("5", "10"), member("50", "10"), member("5", "10")];
        let d = diversity(&s, &three);
        assert!((d.mean_distance - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn selection_favours_the_fit() {
        let mut g = GeneticSearch::new(space(), 1, GeneticConfig::default()).unwrap();
        g.population = (0..10)
            .map(|i| {
                let mut m = member(&(5 + i).to_string(), "100");
                m.fitness = Some(f64::from(10 - i));
                m
            })
            .collect();
        let mut rng = g.rng.rng();
        for selection in [
            Selection::Tournament { size: 3 },
            Selection::Roulette,
            Selection::Rank,
        ] {
            g.config.selection = selection;
            let mut counts = [0usize; 10];
            for _ in 0..5000 {
                counts[g.select(&mut rng)] += 1;
            }
            assert!(counts[0] > counts[9] * 2, "{selection:?} {counts:?}");
            assert!(counts[0] + counts[1] + counts[2] > counts[7] + counts[8] + counts[9]);
        }
        // Tournament of size 1 is uniform.
        g.config.selection = Selection::Tournament { size: 1 };
        let mut counts = [0usize; 10];
        for _ in 0..10_000 {
            counts[g.select(&mut rng)] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    #[test]
    fn one_point_crossover_takes_a_prefix_from_the_first_parent() {
        let mut g = GeneticSearch::new(
            space(),
            1,
            GeneticConfig {
                crossover: Crossover::OnePoint,
                ..GeneticConfig::default()
            },
        )
        .unwrap();
        g.population = vec![member("5", "10"), member("50", "200")];
        let mut rng = g.rng.rng();
        // Two genes: the cut is always 1.
        for _ in 0..20 {
            let c = g.cross(0, 1, &mut rng);
            assert_eq!((c["fast"].as_str(), c["slow"].as_str()), ("5", "200"));
        }
    }

    #[test]
    fn bad_settings_are_refused_naming_the_field() {
        let with = |f: &dyn Fn(&mut GeneticConfig)| {
            let mut c = GeneticConfig::default();
            f(&mut c);
            GeneticSearch::new(space(), 1, c).unwrap_err().to_string()
        };
        assert!(with(&|c| c.population = 1).starts_with("population: "));
        assert!(with(&|c| c.elites = 20).starts_with("elites: "));
        assert!(with(&|c| c.mutation_rate = 1.5).starts_with("mutation_rate: "));
        assert!(with(&|c| c.crossover_rate = f64::NAN).starts_with("crossover_rate: "));
        assert!(
            with(&|c| c.selection = Selection::Tournament { size: 0 })
                .starts_with("selection.size: ")
        );
        assert!(with(&|c| c.max_generations = Some(0)).starts_with("max_generations: "));
    }
}
