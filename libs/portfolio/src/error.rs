//! The crate's error: one enum, each variant naming what is at fault.

use grodt_core::CoreError;
use grodt_core::error::{Classify, ErrorKind};
use grodt_sim::SimError;

use crate::allocation::AllocationError;
use crate::netting::NettingError;
use crate::stats::StatsError;

/// Errors of a portfolio run or file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PortfolioError {
    /// A field of the portfolio is unusable (named).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A setting a portfolio cannot honour yet.
    #[error("{field} is not supported in a portfolio: {reason}")]
    Unsupported {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The sub-ledgers no longer add up to the account (a bug).
    #[error("portfolio books do not add up: {what}")]
    Books {
        /// What does not add up.
        what: String,
    },
    /// The venue refused something (a bad bar, an overflow).
    #[error(transparent)]
    Sim(#[from] SimError),
    /// A core value out of range.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Netting or allocation of a fill failed.
    #[error(transparent)]
    Netting(#[from] NettingError),
    /// The allocator failed.
    #[error(transparent)]
    Allocation(#[from] AllocationError),
    /// A statistic failed.
    #[error(transparent)]
    Stats(#[from] StatsError),
    /// A `[risk]` limit that does not validate, named as `risk.<field>`.
    #[error("invalid risk.{}: {}", .0.field, .0.reason)]
    RiskLimits(grodt_risk_rules::LimitsError),
    /// A portfolio file that does not parse (TOML syntax or shape).
    #[error("portfolio file: {0}")]
    File(#[from] toml::de::Error),
}

impl Classify for PortfolioError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid { .. } | Self::RiskLimits(_) | Self::Allocation(_) | Self::File(_) => {
                ErrorKind::InvalidArgument
            }
            Self::Unsupported { .. } => ErrorKind::FailedPrecondition,
            Self::Sim(e) => e.kind(),
            Self::Core(e) => e.kind(),
            Self::Books { .. } | Self::Netting(_) | Self::Stats(_) => ErrorKind::Internal,
        }
    }
}
