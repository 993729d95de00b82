//! The service's one error type, classified for `grodt_kit::status::to_status`
//! (the one place errors become a gRPC `Status`).

use grodt_core::error::{Classify, ErrorKind};

/// Why a request or an input could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Bad input; the message starts with the field at fault.
    #[error("{field}: {reason}")]
    Invalid {
        /// The request field (e.g. `order.limit_price`).
        field: String,
        /// Why.
        reason: String,
    },
    /// No such order.
    #[error("{0}")]
    NotFound(String),
    /// The client order id is taken by a different order.
    #[error("{0}")]
    AlreadyExists(String),
    /// The order is in a state that forbids the request.
    #[error("{0}")]
    Precondition(String),
    /// The broker refused the input.
    #[error(transparent)]
    Paper(#[from] grodt_paper::PaperError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] grodt_store::StoreError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] grodt_bus::BusError),
    /// A stored or received message could not be decoded, or the state
    /// contradicts the journal.
    #[error("{0}")]
    Corrupt(String),
}

impl ExecError {
    /// INVALID_ARGUMENT naming `field`.
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<grodt_proto::convert::ProtoError> for ExecError {
    fn from(e: grodt_proto::convert::ProtoError) -> Self {
        use grodt_proto::convert::ProtoError as P;
        let field = match &e {
            P::MissingField { field } | P::InvalidValue { field, .. } | P::Field { field, .. } => {
                (*field).to_owned()
            }
            P::InvalidDecimal { .. } | P::InvalidTimestamp { .. } => "value".to_owned(),
        };
        let reason = match e {
            P::MissingField { .. } => "required".to_owned(),
            P::InvalidValue { reason, .. } => reason,
            P::Field { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        Self::Invalid { field, reason }
    }
}

impl Classify for ExecError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid { .. } => ErrorKind::InvalidArgument,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Self::Precondition(_) => ErrorKind::FailedPrecondition,
            Self::Paper(e) => e.kind(),
            Self::Store(e) => e.kind(),
            Self::Bus(e) => e.kind(),
            Self::Corrupt(_) => ErrorKind::Internal,
        }
    }
}

impl From<ExecError> for tonic::Status {
    fn from(e: ExecError) -> Self {
        grodt_kit::status::to_status(&e)
    }
}

impl From<grodt_kit::journal::AppendBatchError> for ExecError {
    fn from(e: grodt_kit::journal::AppendBatchError) -> Self {
        match e {
            grodt_kit::journal::AppendBatchError::Store(e) => Self::Store(e),
            other => Self::Corrupt(other.to_string()),
        }
    }
}
