//! Search algorithms behind one interface, [`Search`]: suggest a batch of
//! trials, observe their objectives, say when done. Every algorithm is
//! seeded (or needs no seed), deterministic, and serializable with its whole
//! state, so a study restored from its saved state continues exactly as an
//! uninterrupted one would.

use std::collections::BTreeSet;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::bayes::{BayesConfig, BayesSearch, Known};
use crate::genetic::{GeneticConfig, GeneticSearch};
use crate::space::{Params, Space};

/// One suggested parameter set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    /// Its id within the search: 0, 1, 2, ... in suggestion order.
    pub id: u64,
    /// `name -> text` parameters the registry accepts (parameters not in the
    /// space are absent and take their default).
    pub params: Params,
}

/// Why an observation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// The id was never suggested, or was already observed.
    #[error("trial {0} is not awaiting a result")]
    NotPending(u64),
}

/// A search: suggests trials in batches, learns their results.
pub trait Search {
    /// Up to `n` new trials (fewer, or none, when the search is done).
    /// Never a trial that breaks a bound or a constraint.
    fn suggest(&mut self, n: usize) -> Vec<Trial>;

    /// The result of a suggested trial: its objective (higher is better) or
    /// `None` for a failed trial. A non-finite objective counts as failed.
    ///
    /// # Errors
    /// [`SearchError::NotPending`] for an id not suggested or already observed.
    fn observe(&mut self, trial_id: u64, objective: Option<f64>) -> Result<(), SearchError>;

    /// True when the search will suggest nothing more (space exhausted or
    /// stopped early). Trials already suggested may still await results.
    fn is_done(&self) -> bool;

    /// The best trial observed so far and its objective.
    fn best(&self) -> Option<(&Trial, f64)>;
}

/// Early stop on a plateau: the search stops suggesting once the last
/// `patience` results (failed ones included, in the order observed) brought
/// no improvement of the best objective by more than `epsilon`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Plateau {
    /// Results without improvement after which the search stops (>= 1).
    pub patience: usize,
    /// Smallest gain that counts as an improvement (>= 0).
    #[serde(with = "crate::exact")]
    pub epsilon: f64,
}

/// An observed trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The trial.
    pub trial: Trial,
    /// Its objective, None if failed.
    #[serde(with = "crate::exact::option")]
    pub objective: Option<f64>,
}

/// Bookkeeping shared by the algorithms: ids, pending trials, results, the
/// best so far and the plateau counter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Ledger {
    pub(crate) next_id: u64,
    /// Suggested, awaiting a result, in id order.
    pub(crate) pending: Vec<Trial>,
    pub(crate) observed: Vec<Observation>,
    /// Index in `observed` of the best result.
    best: Option<usize>,
    plateau: Option<Plateau>,
    since_improvement: usize,
}

impl Ledger {
    pub(crate) fn new(plateau: Option<Plateau>) -> Self {
        Self {
            next_id: 0,
            pending: Vec::new(),
            observed: Vec::new(),
            best: None,
            plateau,
            since_improvement: 0,
        }
    }

    pub(crate) fn issue(&mut self, params: Params) -> Trial {
        let trial = Trial {
            id: self.next_id,
            params,
        };
        self.next_id += 1;
        self.pending.push(trial.clone());
        trial
    }

    pub(crate) fn observe(&mut self, id: u64, objective: Option<f64>) -> Result<(), SearchError> {
        let at = self
            .pending
            .iter()
            .position(|t| t.id == id)
            .ok_or(SearchError::NotPending(id))?;
        let trial = self.pending.remove(at);
        let objective = objective.filter(|v| v.is_finite());
        let eps = self.plateau.map_or(0.0, |p| p.epsilon);
        let best = self.best_value();
        let improved = match (objective, best) {
            (Some(_), None) => true,
            (Some(v), Some(b)) => v > b + eps,
            (None, _) => false,
        };
        if let Some(v) = objective
            && best.is_none_or(|b| v > b)
        {
            self.best = Some(self.observed.len());
        }
        if improved {
            self.since_improvement = 0;
        } else {
            self.since_improvement += 1;
        }
        self.observed.push(Observation { trial, objective });
        Ok(())
    }

    pub(crate) fn plateaued(&self) -> bool {
        self.plateau
            .is_some_and(|p| self.since_improvement >= p.patience)
    }

    pub(crate) fn best_value(&self) -> Option<f64> {
        self.best.and_then(|i| self.observed[i].objective)
    }

    pub(crate) fn best(&self) -> Option<(&Trial, f64)> {
        let i = self.best?;
        Some((&self.observed[i].trial, self.observed[i].objective?))
    }
}

/// Grid search: the grid of the space in order (mixed radix, the last
/// parameter varying fastest), invalid points skipped, iterated lazily from
/// a cursor, never materialised. Optional [`Plateau`] early stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridSearch {
    space: Space,
    len: u64,
    cursor: u64,
    ledger: Ledger,
}

/// Why a search could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// The grid has more than `u64::MAX` points.
    #[error("the grid has more than 2^64 points: narrow the ranges or widen the steps")]
    GridTooLarge,
    /// A plateau with patience 0 or an epsilon negative or not finite.
    #[error("plateau: patience must be >= 1 and epsilon finite and >= 0")]
    BadPlateau,
    /// A setting of a Bayesian or genetic search out of its range.
    #[error("{field}: {reason}")]
    BadSetting {
        /// The setting, as named in its config struct.
        field: &'static str,
        /// The range it must be in.
        reason: &'static str,
    },
    /// A known point (given up front to a Bayesian search) whose parameter
    /// is missing, unreadable or outside the space.
    #[error("known point {index}: parameter {param} is missing or outside the space")]
    BadKnownPoint {
        /// Its position in the list given.
        index: usize,
        /// The parameter at fault.
        param: String,
    },
}

pub(crate) fn check_plateau(plateau: Option<Plateau>) -> Result<(), SetupError> {
    match plateau {
        Some(p) if p.patience == 0 || !(p.epsilon.is_finite() && p.epsilon >= 0.0) => {
            Err(SetupError::BadPlateau)
        }
        _ => Ok(()),
    }
}

impl GridSearch {
    /// A grid search of `space`.
    ///
    /// # Errors
    /// [`SetupError::GridTooLarge`] when the grid cannot be counted in a
    /// u64; [`SetupError::BadPlateau`].
    pub fn new(space: Space, plateau: Option<Plateau>) -> Result<Self, SetupError> {
        check_plateau(plateau)?;
        let len = space.grid_len().ok_or(SetupError::GridTooLarge)?;
        Ok(Self {
            space,
            len,
            cursor: 0,
            ledger: Ledger::new(plateau),
        })
    }

    /// Points of the full grid, constraints not applied.
    pub fn grid_len(&self) -> u64 {
        self.len
    }

    /// Every result observed, in observation order.
    pub fn observed(&self) -> &[Observation] {
        &self.ledger.observed
    }
}

impl Search for GridSearch {
    fn suggest(&mut self, n: usize) -> Vec<Trial> {
        let mut out = Vec::new();
        while out.len() < n && !self.is_done() {
            let params = self.space.grid_point(self.cursor);
            if let Some(next) = self.space.skip_invalid_block(self.cursor, &params) {
                self.cursor = next.min(self.len);
                continue;
            }
            self.cursor += 1;
            if self.space.is_valid(&params) {
                out.push(self.ledger.issue(params));
            }
        }
        out
    }

    fn observe(&mut self, trial_id: u64, objective: Option<f64>) -> Result<(), SearchError> {
        self.ledger.observe(trial_id, objective)
    }

    fn is_done(&self) -> bool {
        self.cursor >= self.len || self.ledger.plateaued()
    }

    fn best(&self) -> Option<(&Trial, f64)> {
        self.ledger.best()
    }
}

/// Draws before a random search gives up finding a new valid point by
/// sampling (then a discrete space is scanned; a continuous one is done).
const MAX_DRAWS: u32 = 1000;
/// Largest grid a random search scans for the last unseen points.
const MAX_SCAN: u64 = 10_000_000;

/// Random search: each dimension drawn from its prior (uniform, normal
/// truncated to the bounds, log-uniform, categorical), invalid draws
/// redrawn, no trial twice. A discrete space is exhausted when every valid
/// point was suggested (after `MAX_DRAWS` misses the rest of the grid is
/// scanned from a random offset, if it has at most 10^7 points); a
/// continuous space is done after 1000 draws in a row give no new valid point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomSearch {
    space: Space,
    seed: u64,
    /// The ChaCha8 word position, split in two u64 for any serde format.
    rng_pos: (u64, u64),
    seen: BTreeSet<Params>,
    /// Valid points of a discrete space, counted once.
    valid: Option<u64>,
    exhausted: bool,
    ledger: Ledger,
}

impl RandomSearch {
    /// A random search of `space` from `seed`.
    ///
    /// # Errors
    /// [`SetupError::BadPlateau`].
    pub fn new(space: Space, seed: u64, plateau: Option<Plateau>) -> Result<Self, SetupError> {
        check_plateau(plateau)?;
        let valid = if space.is_discrete() {
            space.valid_grid_len()
        } else {
            None
        };
        Ok(Self {
            space,
            seed,
            rng_pos: (0, 0),
            valid,
            seen: BTreeSet::new(),
            exhausted: false,
            ledger: Ledger::new(plateau),
        })
    }

    /// Every result observed, in observation order.
    pub fn observed(&self) -> &[Observation] {
        &self.ledger.observed
    }

    fn rng(&self) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_word_pos((u128::from(self.rng_pos.0) << 64) | u128::from(self.rng_pos.1));
        rng
    }

    fn save(&mut self, rng: &ChaCha8Rng) {
        let pos = rng.get_word_pos();
        #[allow(clippy::cast_possible_truncation, reason = "split in halves")]
        let halves = ((pos >> 64) as u64, pos as u64);
        self.rng_pos = halves;
    }

    fn next(&mut self, rng: &mut ChaCha8Rng) -> Option<Params> {
        draw_unseen(&self.space, &self.seen, self.valid, rng)
    }
}

/// A valid point of `space` not in `seen`, drawn from the priors (after
/// `MAX_DRAWS` misses a discrete space's grid is scanned from a random
/// offset). None when there is none to be found. `valid` is the count of
/// valid points of a discrete space, `seen` holding only valid points.
pub(crate) fn draw_unseen(
    space: &Space,
    seen: &BTreeSet<Params>,
    valid: Option<u64>,
    rng: &mut ChaCha8Rng,
) -> Option<Params> {
    if valid.is_some_and(|v| seen.len() as u64 >= v) {
        return None;
    }
    for _ in 0..MAX_DRAWS {
        let p = space.sample(rng);
        if !seen.contains(&p) && space.is_valid(&p) {
            return Some(p);
        }
    }
    if !space.is_discrete() {
        return None;
    }
    let len = space.grid_len().filter(|l| *l <= MAX_SCAN)?;
    let start = rand::Rng::random_range(rng, 0..len);
    (0..len)
        .map(|k| space.grid_point((start + k) % len))
        .find(|p| !seen.contains(p) && space.is_valid(p))
}

impl Search for RandomSearch {
    fn suggest(&mut self, n: usize) -> Vec<Trial> {
        let mut rng = self.rng();
        let mut out = Vec::new();
        while out.len() < n && !self.is_done() {
            match self.next(&mut rng) {
                Some(p) => {
                    self.seen.insert(p.clone());
                    out.push(self.ledger.issue(p));
                }
                None => self.exhausted = true,
            }
        }
        self.save(&rng);
        out
    }

    fn observe(&mut self, trial_id: u64, objective: Option<f64>) -> Result<(), SearchError> {
        self.ledger.observe(trial_id, objective)
    }

    fn is_done(&self) -> bool {
        self.exhausted || self.ledger.plateaued()
    }

    fn best(&self) -> Option<(&Trial, f64)> {
        self.ledger.best()
    }
}

/// Any search, as one serializable value (what a study stores).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case")]
pub enum Searcher {
    /// Grid search.
    Grid(GridSearch),
    /// Random search.
    Random(RandomSearch),
    /// Bayesian optimisation (boxed: its state is the largest).
    Bayes(Box<BayesSearch>),
    /// Genetic algorithm.
    Genetic(Box<GeneticSearch>),
}

impl Searcher {
    /// The space searched.
    pub fn space(&self) -> &Space {
        match self {
            Self::Grid(s) => &s.space,
            Self::Random(s) => &s.space,
            Self::Bayes(s) => s.space(),
            Self::Genetic(s) => s.space(),
        }
    }

    /// A Bayesian optimisation of `space` from `seed`, seeded with `known`
    /// results (see [`BayesSearch::new`]).
    ///
    /// # Errors
    /// As [`BayesSearch::new`].
    pub fn bayes(
        space: Space,
        seed: u64,
        config: BayesConfig,
        known: Vec<Known>,
    ) -> Result<Self, SetupError> {
        BayesSearch::new(space, seed, config, known).map(|s| Self::Bayes(Box::new(s)))
    }

    /// A genetic search of `space` from `seed` (see [`GeneticSearch::new`]).
    ///
    /// # Errors
    /// As [`GeneticSearch::new`].
    pub fn genetic(space: Space, seed: u64, config: GeneticConfig) -> Result<Self, SetupError> {
        GeneticSearch::new(space, seed, config).map(|s| Self::Genetic(Box::new(s)))
    }

    fn inner(&self) -> &dyn Search {
        match self {
            Self::Grid(s) => s,
            Self::Random(s) => s,
            Self::Bayes(s) => s.as_ref(),
            Self::Genetic(s) => s.as_ref(),
        }
    }

    fn inner_mut(&mut self) -> &mut dyn Search {
        match self {
            Self::Grid(s) => s,
            Self::Random(s) => s,
            Self::Bayes(s) => s.as_mut(),
            Self::Genetic(s) => s.as_mut(),
        }
    }
}

impl Search for Searcher {
    fn suggest(&mut self, n: usize) -> Vec<Trial> {
        self.inner_mut().suggest(n)
    }

    fn observe(&mut self, trial_id: u64, objective: Option<f64>) -> Result<(), SearchError> {
        self.inner_mut().observe(trial_id, objective)
    }

    fn is_done(&self) -> bool {
        self.inner().is_done()
    }

    fn best(&self) -> Option<(&Trial, f64)> {
        self.inner().best()
    }
}
