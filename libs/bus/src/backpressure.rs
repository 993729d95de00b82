//! The back-pressure rule both backends apply on publish.

use std::future::Future;
use std::time::Duration;

use crate::error::BusError;
use crate::{GroupInfo, StreamName};

/// Bounds how far the slowest consumer group may fall behind a stream.
///
/// Rule: before appending, publish reads every group of the stream; while some
/// group's backlog ([`GroupInfo::backlog`]: pending + never delivered) is at or
/// above `max_backlog`, it re-checks every `poll_interval`, and after `max_wait`
/// fails with [`BusError::BackPressure`] (ResourceExhausted) naming that group.
/// Consuming alone does not relieve the pressure: only acks do, because an
/// unacked entry is still owed. A stream without groups has no back-pressure.
///
/// The check and the append are one atomic step (a Lua script in Redis, one
/// lock in memory), so no group's backlog ever exceeds `max_backlog` through
/// publishing, however many publishers there are. Stream trimming
/// ([`crate::RedisBusConfig::max_len`]) must stay well above `max_backlog`
/// (both backends require at least twice, leaving room for a group created
/// later from the beginning), or entries still owed to a group would be
/// trimmed away and lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackPressure {
    /// Backlog at which publishing waits.
    pub max_backlog: u64,
    /// How long publish waits for the backlog to fall before failing.
    pub max_wait: Duration,
    /// How often a waiting publish re-checks.
    pub poll_interval: Duration,
}

impl Default for BackPressure {
    fn default() -> Self {
        Self {
            max_backlog: 100_000,
            max_wait: Duration::from_secs(5),
            poll_interval: Duration::from_millis(20),
        }
    }
}

impl BackPressure {
    /// Rejects settings under which publish could never succeed or spin.
    pub fn validate(&self) -> Result<(), BusError> {
        if self.max_backlog == 0 {
            return Err(BusError::InvalidArgument {
                field: "max_backlog",
                reason: "must be at least 1".to_owned(),
            });
        }
        if self.poll_interval.is_zero() {
            return Err(BusError::InvalidArgument {
                field: "poll_interval",
                reason: "must be positive".to_owned(),
            });
        }
        Ok(())
    }

    /// Rejects a stream cap that trimming could push into entries a group
    /// still owes: `max_len` must be at least twice `max_backlog`.
    pub fn check_max_len(&self, max_len: u64) -> Result<(), BusError> {
        if max_len < self.max_backlog.saturating_mul(2) {
            return Err(BusError::InvalidArgument {
                field: "max_len",
                reason: format!(
                    "{max_len} is below twice max_backlog ({}): trimming could drop entries a group still owes",
                    self.max_backlog
                ),
            });
        }
        Ok(())
    }

    /// Runs `attempt` (an atomic check-and-append) until it is admitted, or
    /// fails with the back-pressure error once `max_wait` has passed.
    pub(crate) async fn admit<T, F, Fut>(
        &self,
        stream: &StreamName,
        mut attempt: F,
    ) -> Result<T, BusError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Admission<T>, BusError>>,
    {
        let started = tokio::time::Instant::now();
        loop {
            let (full, group, backlog) = match attempt().await? {
                Admission::Admitted(t) => return Ok(t),
                Admission::Full {
                    stream: full,
                    group,
                    backlog,
                } => (full, group, backlog),
            };
            let stream = full.as_ref().unwrap_or(stream);
            let waited = started.elapsed();
            if waited >= self.max_wait {
                return Err(BusError::BackPressure {
                    stream: stream.to_string(),
                    group,
                    backlog,
                    limit: self.max_backlog,
                    waited,
                });
            }
            tracing::debug!(stream = %stream, group = %group, backlog,
                "publish waiting for back-pressure to clear");
            tokio::time::sleep(self.poll_interval.min(self.max_wait - waited)).await;
        }
    }

    /// The first group whose backlog is at or above the limit, if any.
    pub(crate) fn full_group(&self, groups: &[GroupInfo]) -> Option<(String, u64)> {
        self.full_group_adding(groups, 1)
    }

    /// The group with the largest backlog if `n` more entries would take it
    /// past the limit.
    pub(crate) fn full_group_adding(&self, groups: &[GroupInfo], n: u64) -> Option<(String, u64)> {
        groups
            .iter()
            .max_by_key(|g| g.backlog())
            .filter(|g| g.backlog().saturating_add(n) > self.max_backlog)
            .map(|g| (g.group.clone(), g.backlog()))
    }
}

/// The outcome of one publish attempt under back-pressure.
pub(crate) enum Admission<T> {
    /// Appended.
    Admitted(T),
    /// Not appended: this group's backlog is at the limit.
    Full {
        /// The stream, when not the one the attempt was made for (a batch).
        stream: Option<StreamName>,
        /// The group.
        group: String,
        /// Its backlog.
        backlog: u64,
    },
}
