//! The one error type of the bus, classified for the service kit.

use std::time::Duration;

use grodt_core::error::{Classify, ErrorKind};

/// Everything that can go wrong on the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A stream, group or consumer name is malformed.
    #[error("invalid {field} name {value:?}: {reason}")]
    InvalidName {
        /// `stream`, `group` or `consumer`.
        field: &'static str,
        /// The rejected text.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An envelope field is malformed, on publish or when decoding an entry.
    #[error("invalid envelope field {field}: {reason}")]
    InvalidEnvelope {
        /// The envelope field at fault (`event_id`, `occurred_at`, ...).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An argument or configuration value is out of range.
    #[error("invalid argument {field}: {reason}")]
    InvalidArgument {
        /// The argument or config key at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The consumer group does not exist on the stream (call `ensure_group` first).
    #[error("consumer group {group} does not exist on stream {stream}")]
    NoGroup {
        /// The stream.
        stream: String,
        /// The missing group.
        group: String,
    },
    /// Back-pressure: a group's backlog stayed at or above the limit for the whole wait.
    #[error(
        "back-pressure on stream {stream}: group {group} has {backlog} entries not yet acknowledged \
         (limit {limit}), still so after waiting {waited:?}"
    )]
    BackPressure {
        /// The stream published to.
        stream: String,
        /// The slowest group.
        group: String,
        /// Its backlog (pending + never delivered) at the last check.
        backlog: u64,
        /// The configured `max_backlog`.
        limit: u64,
        /// How long publish waited.
        waited: Duration,
    },
    /// Redis is unreachable or the connection broke; retry later.
    #[error("redis unavailable during {op}: {source}")]
    Unavailable {
        /// The bus operation (`publish`, `consume`, ...).
        op: &'static str,
        /// The client error.
        #[source]
        source: redis::RedisError,
    },
    /// Redis did not answer within the allowed time.
    #[error("redis did not answer {op} within {after:?}")]
    Timeout {
        /// The bus operation.
        op: &'static str,
        /// The time allowed.
        after: Duration,
    },
    /// Redis rejected a command for a reason other than connectivity.
    #[error("redis refused {op}: {source}")]
    Redis {
        /// The bus operation.
        op: &'static str,
        /// The server error.
        #[source]
        source: redis::RedisError,
    },
    /// Redis answered with a reply of an unexpected shape.
    #[error("unexpected redis reply to {op}: {detail}")]
    Protocol {
        /// The bus operation.
        op: &'static str,
        /// What was unexpected.
        detail: String,
    },
}

impl BusError {
    /// Maps a client error: connectivity problems and timeouts become
    /// `Unavailable`, and so do the answers of a server that is up but not
    /// serving yet (LOADING while a restarted Redis reads its AOF; TRYAGAIN,
    /// MASTERDOWN): consumers wait those out instead of stopping. Anything
    /// else is `Redis`.
    pub(crate) fn from_redis(op: &'static str, source: redis::RedisError) -> Self {
        if source.is_io_error()
            || source.is_connection_dropped()
            || source.is_connection_refusal()
            || source.is_unrecoverable_error()
            || source.is_timeout()
            || matches!(source.retry_method(), redis::RetryMethod::WaitAndRetry)
        {
            BusError::Unavailable { op, source }
        } else {
            BusError::Redis { op, source }
        }
    }
}

impl Classify for BusError {
    fn kind(&self) -> ErrorKind {
        match self {
            BusError::InvalidName { .. }
            | BusError::InvalidEnvelope { .. }
            | BusError::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            BusError::NoGroup { .. } => ErrorKind::FailedPrecondition,
            BusError::BackPressure { .. } => ErrorKind::ResourceExhausted,
            BusError::Unavailable { .. } | BusError::Timeout { .. } => ErrorKind::Unavailable,
            BusError::Redis { .. } | BusError::Protocol { .. } => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(reply: &[u8]) -> redis::RedisError {
        redis::parse_redis_value(reply)
            .and_then(redis::Value::extract_error)
            .expect_err("an error reply")
    }

    #[test]
    fn a_redis_still_loading_its_data_is_unavailable_not_a_refusal() {
        let loading = BusError::from_redis(
            "consume",
            server_error(b"-LOADING Redis is loading the dataset in memory\r\n"),
        );
        assert_eq!(loading.kind(), ErrorKind::Unavailable, "{loading}");
        let refused = BusError::from_redis("consume", server_error(b"-ERR syntax error\r\n"));
        assert_eq!(refused.kind(), ErrorKind::Internal, "{refused}");
    }
}
