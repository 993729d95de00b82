//! Bayesian optimisation: a Gaussian-process surrogate of the objective
//! over the space's unit cube ([`crate::encode`], [`crate::gp`]), refitted
//! at every batch, and an acquisition function maximised over valid,
//! untried points.
//!
//! A search starts with the known points given up front and an initial
//! Latin hypercube design of `n_init` points; once two results are in, each
//! further point maximises the acquisition. A batch of k points comes out
//! of one call by the constant liar: each point chosen (and every trial
//! still awaiting its result) is added to the model with a made-up result
//! (by default the worst seen), which flattens the acquisition around it so
//! the next point goes elsewhere.

use std::collections::BTreeSet;

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::encode;
use crate::gp::{self, Acquisition, Gp, Hyper};
use crate::rng::Stream;
use crate::search::{
    Ledger, Observation, Plateau, Search, SearchError, SetupError, Trial, check_plateau,
    draw_unseen,
};
use crate::space::{Params, Space};

/// A result known before the search starts (from an earlier study, say).
/// It informs the model and is never suggested again, but it is not a
/// trial of this search: [`Search::best`] only reports this search's trials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Known {
    /// The parameters (every dimension of the space, inside its bounds).
    pub params: Params,
    /// Its objective, None if it failed.
    #[serde(with = "crate::exact::option")]
    pub objective: Option<f64>,
}

/// The made-up result given to trials awaiting theirs while a batch is
/// chosen (the constant liar), relative to the results seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Liar {
    /// The worst seen: spreads a batch out the most.
    #[default]
    Min,
    /// The mean seen.
    Mean,
    /// The best seen: keeps a batch close to the incumbent.
    Max,
}

/// Settings of a Bayesian optimisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BayesConfig {
    /// The acquisition function.
    pub acquisition: Acquisition,
    /// Points of the initial Latin hypercube design (0 to start from the
    /// known points alone).
    pub n_init: usize,
    /// Trials at most (>= 1).
    pub max_trials: u64,
    /// Convergence stop: no improvement of the best by more than `epsilon`
    /// over the last `patience` results.
    pub plateau: Option<Plateau>,
    /// Convergence stop: the largest expected improvement (in standard
    /// deviations of the results seen) of the candidates is below this,
    /// checked when no trial awaits its result.
    #[serde(with = "crate::exact::option")]
    pub min_ei: Option<f64>,
    /// The constant liar's value.
    pub liar: Liar,
    /// Random candidates scored per point (1..=100000), before the best
    /// five are refined by local moves.
    pub candidates: usize,
    /// Random starts of the hyperparameter fit, besides the previous fit
    /// and a neutral start.
    pub restarts: usize,
}

impl Default for BayesConfig {
    fn default() -> Self {
        Self {
            acquisition: Acquisition::Ei { xi: 0.01 },
            n_init: 10,
            max_trials: 100,
            plateau: None,
            min_ei: None,
            liar: Liar::Min,
            candidates: 1000,
            restarts: 2,
        }
    }
}

impl BayesConfig {
    fn check(&self) -> Result<(), SetupError> {
        let bad = |field, reason| Err(SetupError::BadSetting { field, reason });
        check_plateau(self.plateau)?;
        let (field, p) = match self.acquisition {
            Acquisition::Ei { xi } => ("acquisition.xi", xi),
            Acquisition::Pi { xi } => ("acquisition.xi", xi),
            Acquisition::Ucb { kappa } => ("acquisition.kappa", kappa),
        };
        if !(p.is_finite() && p >= 0.0) {
            return bad(field, "must be finite and >= 0");
        }
        if self.max_trials == 0 {
            return bad("max_trials", "must be >= 1");
        }
        if !(1..=100_000).contains(&self.candidates) {
            return bad("candidates", "must be in 1..=100000");
        }
        if self.restarts > 20 {
            return bad("restarts", "must be <= 20");
        }
        if self.min_ei.is_some_and(|e| !(e.is_finite() && e >= 0.0)) {
            return bad("min_ei", "must be finite and >= 0");
        }
        Ok(())
    }
}

/// Candidates refined by local moves per point.
const REFINED: usize = 5;
/// Local moves per refined candidate.
const MAX_MOVES: usize = 30;

/// Bayesian optimisation with a Gaussian-process surrogate. Deterministic
/// for a seed; its whole state is serde, so a restored search continues as
/// an uninterrupted one would.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BayesSearch {
    space: Space,
    config: BayesConfig,
    rng: Stream,
    known: Vec<Known>,
    /// The initial design, suggested first (a point already seen or
    /// breaking a constraint is replaced by a random unseen one).
    design: Vec<Params>,
    design_next: usize,
    /// Every valid point suggested or known, never suggested again.
    seen: BTreeSet<Params>,
    /// Valid points of a discrete space.
    valid: Option<u64>,
    /// The last hyperparameter fit, the next fit's warm start.
    hyper: Option<Hyper>,
    exhausted: bool,
    converged: bool,
    stopped: bool,
    ledger: Ledger,
}

/// The surrogate for one batch: the fit on the results seen, then the
/// liar's value at every trial awaiting its result.
struct Model {
    owners: Vec<usize>,
    x: Vec<Vec<f64>>,
    y: Vec<f64>,
    gp: Gp,
    /// Best standardised result (lies excluded).
    best: f64,
    lie: f64,
    lies: usize,
}

impl Model {
    fn add_lie(&mut self, x: Vec<f64>) {
        self.x.push(x);
        self.y.push(self.lie);
        self.lies += 1;
        // Same hyperparameters: only the conditioning changes.
        if let Some(gp) = Gp::new(
            self.x.clone(),
            &self.y,
            self.owners.clone(),
            self.gp.hyper().clone(),
        ) {
            self.gp = gp;
        }
    }
}

enum Pick {
    Point(Params),
    Converged,
    Nothing,
}

impl BayesSearch {
    /// The space searched.
    pub fn space(&self) -> &Space {
        &self.space
    }

    /// A Bayesian optimisation of `space` from `seed`, informed by `known`
    /// results.
    ///
    /// # Errors
    /// [`SetupError::BadSetting`] naming a setting out of range,
    /// [`SetupError::BadPlateau`], [`SetupError::BadKnownPoint`] for a known
    /// point missing a parameter or outside the space.
    pub fn new(
        space: Space,
        seed: u64,
        config: BayesConfig,
        known: Vec<Known>,
    ) -> Result<Self, SetupError> {
        config.check()?;
        let mut seen = BTreeSet::new();
        for (index, k) in known.iter().enumerate() {
            encode::encode(&space, &k.params)
                .map_err(|param| SetupError::BadKnownPoint { index, param })?;
            if is_exact_point(&space, &k.params) {
                seen.insert(k.params.clone());
            }
        }
        let plateau = config.plateau;
        let mut rng = Stream::new(seed);
        let mut r = rng.rng();
        let design = encode::latin_hypercube(&space, config.n_init, &mut r);
        rng.save(&r);
        let valid = if space.is_discrete() {
            space.valid_grid_len()
        } else {
            None
        };
        Ok(Self {
            space,
            config,
            rng,
            known,
            design,
            design_next: 0,
            seen,
            valid,
            hyper: None,
            exhausted: false,
            converged: false,
            stopped: false,
            ledger: Ledger::new(plateau),
        })
    }

    /// Every result observed, in observation order.
    pub fn observed(&self) -> &[Observation] {
        &self.ledger.observed
    }

    /// The settings.
    pub fn config(&self) -> &BayesConfig {
        &self.config
    }

    /// The last fitted hyperparameters (None before the first fit).
    pub fn hyper(&self) -> Option<&Hyper> {
        self.hyper.as_ref()
    }

    /// Whether the convergence test on the expected improvement stopped it.
    pub fn converged(&self) -> bool {
        self.converged
    }

    /// Stops the search: it suggests nothing more (a study's time limit or
    /// a cancel). Results of trials already out are still taken.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// The surrogate on the results seen (known points included, a failed
    /// result at the worst seen), with the liar at every pending trial.
    /// None before two successful results.
    fn model(&mut self, rng: &mut ChaCha8Rng) -> Option<Model> {
        let results = self.known.iter().map(|k| (&k.params, k.objective)).chain(
            self.ledger
                .observed
                .iter()
                .map(|o| (&o.trial.params, o.objective)),
        );
        let mut x = Vec::new();
        let mut raw = Vec::new();
        for (p, v) in results {
            if let Ok(c) = encode::encode(&self.space, p) {
                x.push(c);
                raw.push(v.filter(|v| v.is_finite()));
            }
        }
        let ok: Vec<f64> = raw.iter().flatten().copied().collect();
        if ok.len() < 2 {
            return None;
        }
        #[allow(clippy::cast_precision_loss, reason = "result count")]
        let n = ok.len() as f64;
        let mean = ok.iter().sum::<f64>() / n;
        let sd = (ok.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        let sd = if sd > 1e-12 { sd } else { 1.0 };
        let worst = ok.iter().copied().fold(f64::INFINITY, f64::min);
        let y: Vec<f64> = raw
            .iter()
            .map(|v| (v.unwrap_or(worst) - mean) / sd)
            .collect();
        let owners = encode::owners(&self.space);
        let dims = self.space.dims().len();
        let hyper = gp::fit(
            &x,
            &y,
            &owners,
            dims,
            self.hyper.as_ref(),
            self.config.restarts,
            rng,
        );
        self.hyper = Some(hyper.clone());
        let best = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        #[allow(clippy::cast_precision_loss, reason = "result count")]
        let lie = match self.config.liar {
            Liar::Min => y.iter().copied().fold(f64::INFINITY, f64::min),
            Liar::Mean => y.iter().sum::<f64>() / y.len() as f64,
            Liar::Max => best,
        };
        let gp = Gp::new(x.clone(), &y, owners.clone(), hyper)?;
        let mut model = Model {
            owners,
            x,
            y,
            gp,
            best,
            lie,
            lies: 0,
        };
        for t in &self.ledger.pending {
            if let Ok(c) = encode::encode(&self.space, &t.params) {
                model.add_lie(c);
            }
        }
        Some(model)
    }

    fn score(&self, m: &Model, p: &Params) -> f64 {
        encode::encode(&self.space, p).map_or(f64::NEG_INFINITY, |c| {
            let (mean, var) = m.gp.predict(&c);
            self.config.acquisition.value(mean, var.sqrt(), m.best)
        })
    }

    fn fresh(&self, p: &Params) -> bool {
        !self.seen.contains(p) && self.space.is_valid(p)
    }

    /// The valid untried point of highest acquisition: seeded random
    /// candidates plus the neighbours of the best results, the best five
    /// refined by local moves while the acquisition rises.
    fn pick(&self, m: &Model, rng: &mut ChaCha8Rng) -> Pick {
        let mut pool: BTreeSet<Params> = BTreeSet::new();
        for _ in 0..self.config.candidates {
            let p = self.space.sample(rng);
            if self.fresh(&p) {
                pool.insert(p);
            }
        }
        let mut ranked: Vec<(&Params, f64)> = self
            .known
            .iter()
            .map(|k| (&k.params, k.objective))
            .chain(
                self.ledger
                    .observed
                    .iter()
                    .map(|o| (&o.trial.params, o.objective)),
            )
            .filter_map(|(p, v)| Some((p, v.filter(|v| v.is_finite())?)))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (p, _) in ranked.iter().take(3) {
            for q in encode::neighbors(&self.space, p) {
                if self.fresh(&q) {
                    pool.insert(q);
                }
            }
        }
        if pool.is_empty() {
            return Pick::Nothing;
        }
        if let Some(threshold) = self.config.min_ei
            && m.lies == 0
        {
            let max_ei = pool
                .iter()
                .filter_map(|p| encode::encode(&self.space, p).ok())
                .map(|c| {
                    let (mean, var) = m.gp.predict(&c);
                    gp::expected_improvement(mean, var.sqrt(), m.best, 0.0)
                })
                .fold(0.0, f64::max);
            if max_ei < threshold {
                return Pick::Converged;
            }
        }
        let mut scored: Vec<(f64, Params)> =
            pool.into_iter().map(|p| (self.score(m, &p), p)).collect();
        // Highest first; ties keep the pool's (sorted) order.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut best: Option<(f64, Params)> = None;
        for (mut value, mut at) in scored.into_iter().take(REFINED) {
            for _ in 0..MAX_MOVES {
                let step = encode::neighbors(&self.space, &at)
                    .into_iter()
                    .filter(|q| self.fresh(q))
                    .map(|q| (self.score(m, &q), q))
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                match step {
                    Some((v, q)) if v > value => {
                        value = v;
                        at = q;
                    }
                    _ => break,
                }
            }
            if best.as_ref().is_none_or(|b| value > b.0) {
                best = Some((value, at));
            }
        }
        best.map_or(Pick::Nothing, |(_, p)| Pick::Point(p))
    }

    fn random(&self, rng: &mut ChaCha8Rng) -> Option<Params> {
        draw_unseen(&self.space, &self.seen, self.valid, rng)
    }
}

/// Whether `params` is a valid point exactly as the space writes it (each
/// lattice value in its grid text), so it counts among the points a
/// search could suggest.
fn is_exact_point(space: &Space, params: &Params) -> bool {
    params.len() == space.names().len()
        && space.is_valid(params)
        && space.names().iter().zip(space.dims()).all(|(name, d)| {
            let text = &params[name];
            if d.is_discrete() {
                encode::index(d, text).is_some_and(|i| d.grid_value(i) == *text)
            } else {
                true
            }
        })
}

impl Search for BayesSearch {
    fn suggest(&mut self, n: usize) -> Vec<Trial> {
        let mut rng = self.rng.rng();
        let mut out = Vec::new();
        let mut model: Option<Model> = None;
        let mut modelled = false;
        while out.len() < n && !self.is_done() {
            let next = if self.design_next < self.design.len() {
                let p = self.design[self.design_next].clone();
                self.design_next += 1;
                if self.fresh(&p) {
                    Some(p)
                } else {
                    self.random(&mut rng)
                }
            } else {
                if !modelled {
                    model = self.model(&mut rng);
                    modelled = true;
                }
                match model.as_ref().map(|m| self.pick(m, &mut rng)) {
                    Some(Pick::Point(p)) => Some(p),
                    Some(Pick::Converged) => {
                        self.converged = true;
                        break;
                    }
                    Some(Pick::Nothing) | None => self.random(&mut rng),
                }
            };
            match next {
                Some(p) => {
                    if let (Some(m), Ok(c)) = (model.as_mut(), encode::encode(&self.space, &p)) {
                        m.add_lie(c);
                    }
                    self.seen.insert(p.clone());
                    out.push(self.ledger.issue(p));
                }
                None => self.exhausted = true,
            }
        }
        self.rng.save(&rng);
        out
    }

    fn observe(&mut self, trial_id: u64, objective: Option<f64>) -> Result<(), SearchError> {
        self.ledger.observe(trial_id, objective)
    }

    fn is_done(&self) -> bool {
        self.stopped
            || self.exhausted
            || self.converged
            || self.ledger.next_id >= self.config.max_trials
            || self.ledger.plateaued()
    }

    fn best(&self) -> Option<(&Trial, f64)> {
        self.ledger.best()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_naming_the_field() {
        let space = Space::new(
            "sma_cross",
            &[(
                "fast".to_owned(),
                crate::space::Range::Linear {
                    min: 5.0,
                    max: 20.0,
                    step: None,
                    prior: crate::space::Prior::Uniform,
                },
            )]
            .into(),
            crate::space::Others::Default,
        )
        .unwrap();
        let with = |f: &dyn Fn(&mut BayesConfig)| {
            let mut c = BayesConfig::default();
            f(&mut c);
            BayesSearch::new(space.clone(), 1, c, Vec::new()).unwrap_err()
        };
        assert_eq!(
            with(&|c| c.max_trials = 0),
            SetupError::BadSetting {
                field: "max_trials",
                reason: "must be >= 1"
            }
        );
        assert!(
            with(&|c| c.acquisition = Acquisition::Ucb { kappa: -1.0 })
                .to_string()
                .starts_with("acquisition.kappa: ")
        );
        assert!(
            with(&|c| c.candidates = 0)
                .to_string()
                .starts_with("candidates: ")
        );
        assert!(
            with(&|c| c.min_ei = Some(f64::NAN))
                .to_string()
                .starts_with("min_ei: ")
        );
        let e = BayesSearch::new(
            space.clone(),
            1,
            BayesConfig::default(),
            vec![Known {
                params: [("fast".to_owned(), "500".to_owned())].into(),
                objective: Some(1.0),
            }],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "known point 0: parameter fast is missing or outside the space"
        );
    }

    #[test]
    fn a_known_point_is_never_suggested_again() {
        // fast 5..=9 with slow fixed at 30: five points, one known.
        let space = Space::new(
            "sma_cross",
            &[(
                "fast".to_owned(),
                crate::space::Range::Linear {
                    min: 5.0,
                    max: 9.0,
                    step: None,
                    prior: crate::space::Prior::Uniform,
                },
            )]
            .into(),
            crate::space::Others::Default,
        )
        .unwrap();
        let known = vec![Known {
            params: [
                ("fast".to_owned(), "7".to_owned()),
                ("slow".to_owned(), "30".to_owned()),
            ]
            .into(),
            objective: Some(1.0),
        }];
        let config = BayesConfig {
            n_init: 2,
            ..BayesConfig::default()
        };
        let mut s = BayesSearch::new(space, 3, config, known).unwrap();
        let mut got = Vec::new();
        while !s.is_done() {
            let batch = s.suggest(2);
            for t in &batch {
                let f: f64 = t.params["fast"].parse().unwrap();
                s.observe(t.id, Some(-(f - 6.0).powi(2))).unwrap();
            }
            got.extend(batch.into_iter().map(|t| t.params["fast"].clone()));
        }
        got.sort();
        assert_eq!(got, ["5", "6", "8", "9"]);
        assert!(s.exhausted);
    }
}
