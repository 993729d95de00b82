//! Parameter search for GRODT strategies, as a pure library (no I/O, no
//! clock, randomness only from a seed).
//!
//! - [`space`]: search spaces built from a strategy's registry schema
//!   (`grodt_strategies::registry`), narrowed per parameter; int, float,
//!   log-float, decimal and categorical dimensions; the schema's constraints
//!   applied so no invalid trial is ever produced.
//! - [`search`]: the [`Search`] interface (`suggest` a batch, `observe`
//!   results, `is_done`) with grid and random search, both deterministic and
//!   serializable for resumption ([`Searcher`] holds any algorithm).
//! - [`bayes`]: Bayesian optimisation with a Gaussian-process surrogate
//!   ([`gp`]: Matérn 5/2 kernel, fitted hyperparameters, EI/PI/UCB),
//!   batched by the constant liar.
//! - [`genetic`]: a generational genetic algorithm (selection, crossover,
//!   mutation, elitism, diversity tracking).
//! - [`montecarlo`]: trade-order permutation and return bootstrap of one
//!   backtest (percentiles of final equity and drawdown, probability of loss).
//! - [`objective`]: Sharpe, Sortino, Calmar, total return, max drawdown or a
//!   weighted sum of them, with a minimum-trade filter.
//!
//! - [`study`]: one optimization run as a pure state machine (the search,
//!   its trials and results, the run's state), which the optimizer service
//!   journals and rebuilds by replay.
//!
//! - [`landscape`]: 2-D heatmaps of the objective around the best trial and
//!   a recommended parameter set in a stable region (best neighbourhood
//!   mean, failures counted as cliffs).
//! - [`walkforward`]: walk-forward windows (rolling or anchored, no test bar
//!   in its training window), the stitched out-of-sample curve, efficiency,
//!   decay and the stability of the chosen parameters.

pub mod bayes;
mod encode;
mod exact;
pub mod genetic;
pub mod gp;
pub mod landscape;
pub mod montecarlo;
pub mod objective;
mod rng;
pub mod search;
pub mod space;
pub mod study;
pub mod walkforward;

pub use bayes::{BayesConfig, BayesSearch, Known, Liar};
pub use genetic::{
    Crossover, Diversity, GenerationStats, GeneticConfig, GeneticSearch, Member, Selection,
};
pub use gp::Acquisition;
pub use objective::{Metric, Objective, ObjectiveError, TrialMetrics};
pub use search::{
    GridSearch, Observation, Plateau, RandomSearch, Search, SearchError, Searcher, SetupError,
    Trial,
};
pub use space::{Dim, Others, Params, Prior, Range, Space, SpaceError};
pub use study::{
    Outcome, ParamSensitivity, Progress, Purpose, Recorded, SENSITIVITY_IDS, SensitivityPoint,
    Study, StudyConfig, StudyError, StudyState, TrialRecord, TrialState,
};
