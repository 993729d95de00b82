use grodt_core::error::{Classify, ErrorKind};

/// Every failure of the data library. Messages name the row, column or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The import options or a request argument are inconsistent.
    #[error("invalid option {field}: {reason}")]
    InvalidOption { field: &'static str, reason: String },
    /// The source file cannot be parsed at all (no header, unknown column, ...).
    #[error("{file}: {reason}")]
    Source { file: String, reason: String },
    /// Validation found errors; nothing was written. The report lists every finding.
    #[error("import rejected: {errors} error finding(s), first: {first}")]
    Rejected {
        errors: usize,
        first: String,
        report: Box<crate::validate::QualityReport>,
    },
    /// The dataset is not in the catalog.
    #[error("dataset {0} not found")]
    NotFound(String),
    /// The dataset exists already and replacing it was not asked for.
    #[error("dataset {0} exists already")]
    AlreadyExists(String),
    /// Parquet files disagree with the catalog metadata (checksum, scale, schema).
    #[error("catalog corrupt at {path}: {reason}")]
    Corrupt { path: String, reason: String },
    /// The metadata store failed; the import was rolled back.
    #[error("metadata store: {0}")]
    Metadata(String),
    /// A filesystem operation failed.
    #[error("i/o on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// polars failed while reading, writing or aggregating.
    #[error("polars: {0}")]
    Polars(#[from] polars::error::PolarsError),
    /// A bug: an invariant of this crate broke (e.g. a poisoned lock).
    #[error("internal: {0}")]
    Internal(String),
    /// A blocking task (a catalog commit off the async runtime) panicked or
    /// was cancelled.
    #[error("blocking task: {0}")]
    Blocking(#[from] tokio::task::JoinError),
    /// A venue answered with an error status retrying cannot fix (4xx other than 429/418).
    #[error("{venue} {url}: HTTP {status}{}: {message}", .code.map(|c| format!(" (code {c})")).unwrap_or_default())]
    VenueStatus {
        venue: &'static str,
        url: String,
        status: u16,
        /// The venue's own error code when the body carries one (Binance: -1121 ...).
        code: Option<i64>,
        message: String,
    },
    /// A venue's body is not the payload its API documents; `field` says where.
    #[error("{venue} {url}: bad payload at {field}: {reason}")]
    VenuePayload {
        venue: &'static str,
        url: String,
        field: String,
        reason: String,
    },
    /// No response: refused, reset, TLS failure (including an untrusted certificate).
    #[error("{venue} {url}: {source}")]
    VenueTransport {
        venue: &'static str,
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No response within the per-request timeout.
    #[error("{venue} {url}: no response within {after:?}")]
    VenueTimeout {
        venue: &'static str,
        url: String,
        after: std::time::Duration,
    },
    /// The venue kept rate-limiting or failing beyond the retry budget; `last` is the last failure.
    #[error("exchange {url}: gave up after {attempts} attempts: {last}")]
    ExchangeExhausted {
        url: String,
        attempts: u32,
        last: String,
    },
}

impl DataError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

impl Classify for DataError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidOption { .. } | Self::Source { .. } | Self::Rejected { .. } => {
                ErrorKind::InvalidArgument
            }
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Self::Corrupt { .. } | Self::Polars(_) | Self::Internal(_) | Self::Blocking(_) => {
                ErrorKind::Internal
            }
            Self::Metadata(_)
            | Self::Io { .. }
            | Self::VenueTransport { .. }
            | Self::VenueTimeout { .. }
            | Self::VenuePayload { .. } => ErrorKind::Unavailable,
            // 400/404 from the venue: the symbol, interval or range asked for is wrong.
            Self::VenueStatus { status, .. } if *status < 500 => ErrorKind::InvalidArgument,
            Self::VenueStatus { .. } => ErrorKind::Unavailable,
            Self::ExchangeExhausted { .. } => ErrorKind::ResourceExhausted,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_caller_view() {
        assert_eq!(DataError::NotFound("x".into()).kind(), ErrorKind::NotFound);
        assert_eq!(
            DataError::AlreadyExists("x".into()).kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            DataError::InvalidOption {
                field: "f",
                reason: "r".into()
            }
            .kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            DataError::Metadata("down".into()).kind(),
            ErrorKind::Unavailable
        );
    }
}
