//! The service's errors, classified for `grodt_kit::status::to_status`.

use grodt_core::error::{Classify, ErrorKind};

/// Why a request or a bar could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum RegimeSvcError {
    /// Bad input; the message starts with the field at fault.
    #[error("{field}: {reason}")]
    Invalid {
        /// The request field (e.g. `bars[3].close`, `params.vol_long`).
        field: String,
        /// Why.
        reason: String,
    },
    /// Nothing is known about this key.
    #[error("{0}")]
    NotFound(String),
    /// Known but not ready (a symbol still warming up).
    #[error("{0}")]
    Precondition(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] grodt_store::StoreError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] grodt_bus::BusError),
    /// A stored or received message could not be decoded.
    #[error("{0}")]
    Corrupt(String),
}

impl RegimeSvcError {
    /// INVALID_ARGUMENT naming `field`.
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl Classify for RegimeSvcError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid { .. } => ErrorKind::InvalidArgument,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Precondition(_) => ErrorKind::FailedPrecondition,
            Self::Store(e) => e.kind(),
            Self::Bus(e) => e.kind(),
            Self::Corrupt(_) => ErrorKind::Internal,
        }
    }
}
