//! The service's error enum and its classification for `grodt_kit::to_status`.

use grodt_core::error::{Classify, ErrorKind};
use grodt_data::DataError;
use grodt_store::StoreError;

/// Everything a market-data RPC can fail at; messages name the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum MdError {
    /// A request field is missing or malformed.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// No dataset (or replay) with this id.
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The request is valid but the system's state forbids it now.
    #[error("{0}")]
    Precondition(String),
    /// The upload's bytes do not hash to the announced sha256.
    #[error("upload sha256 mismatch: header says {expected}, received bytes hash to {actual}")]
    DataLoss { expected: String, actual: String },
    /// The upload exceeds `market_data.upload_max_bytes`.
    #[error("upload exceeds market_data.upload_max_bytes = {limit} bytes")]
    TooLarge { limit: u64 },
    /// The data library failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The metadata store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bus refused a replayed bar.
    #[error("publishing to grodt.bars.v1: {0}")]
    Bus(String),
    /// A blocking task panicked or was cancelled.
    #[error("internal: {0}")]
    Internal(String),
}

impl MdError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl Classify for MdError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid { .. } => ErrorKind::InvalidArgument,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Precondition(_) => ErrorKind::FailedPrecondition,
            // DATA_LOSS has no ErrorKind; the handler answers it directly.
            Self::DataLoss { .. } => ErrorKind::InvalidArgument,
            Self::TooLarge { .. } => ErrorKind::ResourceExhausted,
            Self::Data(e) => e.kind(),
            Self::Store(e) => e.kind(),
            Self::Bus(_) => ErrorKind::Unavailable,
            Self::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// The gRPC status of an error: the kit's mapping, plus DATA_LOSS for a
/// corrupted upload.
pub fn status(err: &MdError) -> tonic::Status {
    match err {
        MdError::DataLoss { .. } => tonic::Status::data_loss(err.to_string()),
        _ => grodt_kit::to_status(err),
    }
}
