//! The repository interfaces. Each backend implements all of them; services
//! get them from [`crate::Store`] and never see SQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::error::StoreError;
use crate::model::{Page, PageRequest, Run, RunKind, RunStatus, Setting};

/// Dedupe marks for idempotent event consumers.
#[async_trait]
pub trait ProcessedEvents: Send + Sync {
    /// Records that `consumer` handled `event_id`. True only the first time,
    /// also when many callers race on the same pair. For "apply the effect
    /// and mark" atomically use [`crate::Tx::mark_processed`] or
    /// [`crate::Store::process_once`].
    async fn mark_processed(&self, consumer: &str, event_id: &str) -> Result<bool, StoreError>;

    /// Whether `consumer` has handled `event_id`.
    async fn is_processed(&self, consumer: &str, event_id: &str) -> Result<bool, StoreError>;

    /// Forgets marks made before `cutoff` (retention); returns how many.
    /// Only safe for events that can no longer be redelivered, e.g. older
    /// than the stream's trimming horizon.
    async fn purge_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Backtest and optimization runs.
#[async_trait]
pub trait Runs: Send + Sync {
    /// A new `queued` run with its request: readable JSON and, optionally,
    /// the exact request as bytes (protobuf), opaque to the store.
    /// `AlreadyExists` if `id` is taken.
    async fn create(
        &self,
        kind: RunKind,
        id: Uuid,
        request: &serde_json::Value,
        request_pb: Option<&[u8]>,
    ) -> Result<Run, StoreError>;

    /// The run, or `NotFound`.
    async fn get(&self, id: Uuid) -> Result<Run, StoreError>;

    /// Moves the run to `to` atomically; `IllegalTransition` (carrying the
    /// current status) when the lifecycle forbids it, `NotFound` if missing.
    async fn transition(&self, id: Uuid, to: RunStatus) -> Result<Run, StoreError>;

    /// Stores the result: a small readable JSON summary, optionally the
    /// exact result as bytes (protobuf, opaque to the store), and the exact
    /// net PnL, replacing earlier ones; the status is left as it is.
    /// `NotFound` if missing.
    async fn set_result(
        &self,
        id: Uuid,
        result: &serde_json::Value,
        result_pb: Option<&[u8]>,
        net_pnl: Option<Decimal>,
    ) -> Result<Run, StoreError>;

    /// Runs of `kind`, oldest first. Pages are stable while runs are added:
    /// walking every page yields each run that existed at the start exactly once.
    async fn list(&self, kind: RunKind, page: &PageRequest) -> Result<Page<Run>, StoreError>;
}

/// Namespaced JSON settings.
#[async_trait]
pub trait Settings: Send + Sync {
    /// Inserts or replaces the value; idempotent (putting an equal value
    /// again changes nothing, not even `updated_at`).
    async fn put(
        &self,
        namespace: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<Setting, StoreError>;

    /// The setting, or `NotFound`.
    async fn get(&self, namespace: &str, key: &str) -> Result<Setting, StoreError>;

    /// Every setting of `namespace`, ordered by key.
    async fn list(&self, namespace: &str) -> Result<Vec<Setting>, StoreError>;

    /// Removes the setting; false if there was none.
    async fn delete(&self, namespace: &str, key: &str) -> Result<bool, StoreError>;
}

/// All repositories of one backend, so a store holds one trait object.
pub(crate) trait Repos:
    ProcessedEvents
    + Runs
    + Settings
    + crate::datasets::Datasets
    + crate::regimes::Regimes
    + crate::journal::Journal
{
}

impl<
    T: ProcessedEvents
        + Runs
        + Settings
        + crate::datasets::Datasets
        + crate::regimes::Regimes
        + crate::journal::Journal,
> Repos for T
{
}
