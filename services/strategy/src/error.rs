//! The service's one error enum and its one mapping to a gRPC status.

use grodt_core::error::{Classify, ErrorKind};
use tonic::Status;

/// Why a request or an event could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum StrategySvcError {
    /// Bad input; the message starts with the field at fault.
    #[error("{field}: {reason}")]
    Invalid {
        /// The request field (`instance_id`, `params.fast`).
        field: String,
        /// Why.
        reason: String,
    },
    /// No such instance.
    #[error("instance {0:?} not found")]
    NotFound(String),
    /// The instance exists with other settings.
    #[error("{0}")]
    AlreadyExists(String),
    /// Well formed, but not possible in the instance's state.
    #[error("{0}")]
    Precondition(String),
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

impl StrategySvcError {
    /// INVALID_ARGUMENT naming `field`.
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<grodt_proto::convert::ProtoError> for StrategySvcError {
    fn from(e: grodt_proto::convert::ProtoError) -> Self {
        // ProtoError's text starts with the field it names.
        Self::Invalid {
            field: String::new(),
            reason: e.to_string(),
        }
    }
}

impl Classify for StrategySvcError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid { .. } => ErrorKind::InvalidArgument,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Self::Precondition(_) => ErrorKind::FailedPrecondition,
            Self::Store(e) => e.kind(),
            Self::Bus(e) => e.kind(),
            Self::Corrupt(_) => ErrorKind::Internal,
        }
    }
}

/// The one mapping to a status (the kit's), keeping a field-less message as is.
pub fn to_status(e: &StrategySvcError) -> Status {
    match e {
        StrategySvcError::Invalid { field, reason } if field.is_empty() => {
            Status::invalid_argument(reason.clone())
        }
        _ => grodt_kit::status::to_status(e),
    }
}

impl From<grodt_kit::journal::JournalEventError> for StrategySvcError {
    fn from(e: grodt_kit::journal::JournalEventError) -> Self {
        match e {
            grodt_kit::journal::JournalEventError::Bus(b) => Self::Bus(b),
            corrupt @ grodt_kit::journal::JournalEventError::Corrupt { .. } => {
                Self::Corrupt(corrupt.to_string())
            }
        }
    }
}

impl From<grodt_kit::journal::AppendBatchError> for StrategySvcError {
    fn from(e: grodt_kit::journal::AppendBatchError) -> Self {
        match e {
            grodt_kit::journal::AppendBatchError::Store(e) => Self::Store(e),
            other => Self::Corrupt(other.to_string()),
        }
    }
}
