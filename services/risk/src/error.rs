//! The service's one error enum and its one mapping to a gRPC status.

use grodt_core::error::{Classify, ErrorKind};
use tonic::Status;

/// Why a request or an event could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum RiskSvcError {
    /// Bad input; the message starts with the field at fault.
    #[error("{field}: {reason}")]
    Invalid {
        /// The request field (`limits.max_drawdown`, `order.symbol`).
        field: String,
        /// Why.
        reason: String,
    },
    /// Well formed, but not possible now (no price known for CheckOrder).
    #[error("{0}")]
    Precondition(String),
    /// A compare-and-set lost: the version read is stale (ABORTED).
    #[error("{0}")]
    Aborted(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] grodt_store::StoreError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] grodt_bus::BusError),
    /// A journal entry or a message could not be decoded or encoded.
    #[error("{0}")]
    Corrupt(String),
}

impl RiskSvcError {
    /// INVALID_ARGUMENT naming `field`.
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<grodt_proto::convert::ProtoError> for RiskSvcError {
    fn from(e: grodt_proto::convert::ProtoError) -> Self {
        // ProtoError's text starts with the field it names.
        Self::Invalid {
            field: String::new(),
            reason: e.to_string(),
        }
    }
}

impl Classify for RiskSvcError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid { .. } => ErrorKind::InvalidArgument,
            // The kit has no ABORTED kind; `to_status` maps it below.
            Self::Precondition(_) | Self::Aborted(_) => ErrorKind::FailedPrecondition,
            Self::Store(e) => e.kind(),
            Self::Bus(e) => e.kind(),
            Self::Corrupt(_) => ErrorKind::Internal,
        }
    }
}

/// The one mapping to a status: the kit's, plus ABORTED for a stale version.
pub fn to_status(e: &RiskSvcError) -> Status {
    match e {
        RiskSvcError::Aborted(m) => Status::aborted(m.clone()),
        RiskSvcError::Invalid { field, reason } if field.is_empty() => {
            Status::invalid_argument(reason.clone())
        }
        _ => grodt_kit::status::to_status(e),
    }
}

impl From<grodt_kit::journal::JournalEventError> for RiskSvcError {
    fn from(e: grodt_kit::journal::JournalEventError) -> Self {
        match e {
            grodt_kit::journal::JournalEventError::Bus(b) => Self::Bus(b),
            corrupt @ grodt_kit::journal::JournalEventError::Corrupt { .. } => {
                Self::Corrupt(corrupt.to_string())
            }
        }
    }
}

impl From<grodt_kit::journal::AppendBatchError> for RiskSvcError {
    fn from(e: grodt_kit::journal::AppendBatchError) -> Self {
        match e {
            grodt_kit::journal::AppendBatchError::Store(e) => Self::Store(e),
            other => Self::Corrupt(other.to_string()),
        }
    }
}
