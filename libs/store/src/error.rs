//! The crate's one error type and its classification.

use grodt_core::error::{Classify, ErrorKind};
use uuid::Uuid;

use crate::model::RunStatus;

/// Every failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no backend this crate speaks.
    #[error("unsupported database url {url:?}: expected postgres://, postgresql:// or sqlite:")]
    UnsupportedUrl {
        /// Only the scheme of the URL, so a password in it never reaches a log.
        url: String,
    },
    /// A caller-supplied argument is unusable.
    #[error("invalid argument {field}: {reason}")]
    InvalidArgument {
        /// The field at fault.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A `page_token` this store did not issue (or issued for another listing).
    #[error("invalid page_token {token:?}")]
    InvalidPageToken {
        /// The token as received.
        token: String,
    },
    /// The row does not exist.
    #[error("{entity} {key} not found")]
    NotFound {
        /// The table or entity name, e.g. `run`.
        entity: &'static str,
        /// The key that was looked up.
        key: String,
    },
    /// A row with this key exists already.
    #[error("{entity} {key} already exists")]
    AlreadyExists {
        /// The table or entity name, e.g. `run`.
        entity: &'static str,
        /// The duplicate key.
        key: String,
    },
    /// A run status change the lifecycle does not allow.
    #[error("run {id}: illegal status transition {from} -> {to}")]
    IllegalTransition {
        /// The run.
        id: Uuid,
        /// Its status when the change was attempted.
        from: RunStatus,
        /// The refused target status.
        to: RunStatus,
    },
    /// The database cannot be reached, or refused for a transient reason
    /// (pool exhausted, connection lost, lock contention); retry later.
    #[error("database unavailable during {op}: {source}")]
    Unavailable {
        /// The operation that failed, e.g. `runs.get`.
        op: &'static str,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// Any other database error: a bug or a schema mismatch.
    #[error("database error during {op}: {source}")]
    Database {
        /// The operation that failed, e.g. `runs.get`.
        op: &'static str,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// Applying the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded into its domain type.
    #[error("corrupt row {row}: {reason}")]
    Corrupt {
        /// Which row and column, e.g. `runs[id=...].net_pnl`.
        row: String,
        /// What was wrong with it.
        reason: String,
    },
}

impl Classify for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::UnsupportedUrl { .. }
            | Self::InvalidArgument { .. }
            | Self::InvalidPageToken { .. } => ErrorKind::InvalidArgument,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Self::IllegalTransition { .. } => ErrorKind::FailedPrecondition,
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::Database { .. } | Self::Migrate(_) | Self::Corrupt { .. } => ErrorKind::Internal,
        }
    }
}

/// Wraps a driver error for operation `op`, telling transient failures
/// (retry later) from the rest.
pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| {
        if is_transient(&source) {
            StoreError::Unavailable { op, source }
        } else {
            StoreError::Database { op, source }
        }
    }
}

fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            let sqlite = d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some();
            d.code().is_some_and(|code| {
                if sqlite {
                    transient_sqlite_code(&code)
                } else {
                    transient_postgres_code(&code)
                }
            })
        }
        _ => false,
    }
}

/// SQLSTATEs for lost connections, shutdown, resource exhaustion,
/// serialization failure and deadlock.
fn transient_postgres_code(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || code == "40001"
        || code == "40P01"
}

/// SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes (the
/// primary code is the low byte).
fn transient_sqlite_code(code: &str) -> bool {
    code.parse::<i32>()
        .is_ok_and(|n| (n & 0xff) == 5 || (n & 0xff) == 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes() {
        assert!(transient_postgres_code("08006"));
        assert!(transient_postgres_code("57P01"));
        assert!(transient_postgres_code("40P01"));
        assert!(!transient_postgres_code("23505"));
        assert!(transient_sqlite_code("5"));
        assert!(transient_sqlite_code("517")); // SQLITE_BUSY_SNAPSHOT
        assert!(transient_sqlite_code("6"));
        assert!(!transient_sqlite_code("2067")); // SQLITE_CONSTRAINT_UNIQUE
        assert!(!transient_sqlite_code("19"));
    }

    #[test]
    fn classification() {
        let e = StoreError::IllegalTransition {
            id: Uuid::nil(),
            from: RunStatus::Succeeded,
            to: RunStatus::Running,
        };
        assert_eq!(e.kind(), ErrorKind::FailedPrecondition);
        assert_eq!(
            e.to_string(),
            "run 00000000-0000-0000-0000-000000000000: illegal status transition succeeded -> running"
        );
        let e = StoreError::InvalidPageToken { token: "x".into() };
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e = db("ping")(sqlx::Error::PoolTimedOut);
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let e = db("runs.get")(sqlx::Error::RowNotFound);
        assert_eq!(e.kind(), ErrorKind::Internal);
    }
}
