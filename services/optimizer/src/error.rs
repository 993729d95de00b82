//! The service's one error enum; `grodt_kit::to_status` maps it to a gRPC
//! status through `Classify`.

use grodt_core::error::{Classify, ErrorKind};

/// Everything an optimizer call or input can fail at.
#[derive(Debug, thiserror::Error)]
pub enum OptimizerError {
    /// A request field is invalid (the message starts with the field).
    #[error("{field}: {reason}")]
    Invalid {
        /// The field, as the .proto names it (dotted when nested).
        field: String,
        /// What it accepts.
        reason: String,
    },
    /// A part of the request this build does not run yet.
    #[error("{field}: {what} is not built yet (docs/optimization.md)")]
    NotBuilt {
        /// The field asking for it.
        field: &'static str,
        /// What it asks for.
        what: &'static str,
    },
    /// No optimization of that id.
    #[error("no optimization {0:?}")]
    NotFound(String),
    /// The id is taken by a different request.
    #[error(
        "optimization {0:?} exists with a different request; StartOptimization is idempotent only for the same request"
    )]
    Conflict(String),
    /// The run has ended.
    #[error("optimization {id:?} is {state} already")]
    Finished {
        /// The run.
        id: String,
        /// Its state.
        state: &'static str,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] grodt_store::StoreError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] grodt_bus::BusError),
    /// Journaled events could not be published or decoded.
    #[error(transparent)]
    Events(#[from] grodt_kit::journal::JournalEventError),
    /// Journaled input could not be decoded (or replayed).
    #[error("journal: {0}")]
    Corrupt(String),
}

impl OptimizerError {
    /// An invalid field.
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl Classify for OptimizerError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid { .. } => ErrorKind::InvalidArgument,
            Self::NotBuilt { .. } => ErrorKind::Unimplemented,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Conflict(_) => ErrorKind::AlreadyExists,
            Self::Finished { .. } => ErrorKind::FailedPrecondition,
            Self::Store(e) => e.kind(),
            Self::Bus(e) => e.kind(),
            Self::Events(grodt_kit::journal::JournalEventError::Bus(e)) => e.kind(),
            Self::Events(_) | Self::Corrupt(_) => ErrorKind::Internal,
        }
    }
}
