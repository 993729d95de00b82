//! A bus that fails on command, for fault tests: it passes every call to the
//! bus it wraps, except that publishes fail while
//! [`Faulty::set_publish_down`] says so and the next reads (`consume`)
//! [`Faulty::fail_next_reads`] counts fail, each with the error
//! [`Faulty::failing_with`] chose (a timeout by default).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::{
    BusError, ConsumerInfo, ConsumerName, Delivery, EntryId, Envelope, EventBus, GroupInfo,
    GroupName, StartFrom, StreamName,
};

/// See the module docs.
pub struct Faulty {
    inner: Arc<dyn EventBus>,
    /// While set, every publish fails.
    publish_down: AtomicBool,
    /// Reads still to fail.
    read_outages: AtomicUsize,
    fail_with: fn(&'static str) -> BusError,
}

fn timeout(op: &'static str) -> BusError {
    BusError::Timeout {
        op,
        after: Duration::ZERO,
    }
}

impl Faulty {
    /// `inner`, healthy until told otherwise.
    pub fn new(inner: Arc<dyn EventBus>) -> Self {
        Self {
            inner,
            publish_down: AtomicBool::new(false),
            read_outages: AtomicUsize::new(0),
            fail_with: timeout,
        }
    }

    /// Failures return `fail_with(operation)` instead of a timeout.
    #[must_use]
    pub fn failing_with(mut self, fail_with: fn(&'static str) -> BusError) -> Self {
        self.fail_with = fail_with;
        self
    }

    /// Sets whether publishes fail.
    pub fn set_publish_down(&self, down: bool) {
        self.publish_down.store(down, Ordering::SeqCst);
    }

    /// The next `n` reads fail.
    pub fn fail_next_reads(&self, n: usize) {
        self.read_outages.store(n, Ordering::SeqCst);
    }

    /// Reads still to fail (0 once the consumer has read through them all).
    pub fn failing_reads_left(&self) -> usize {
        self.read_outages.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl EventBus for Faulty {
    async fn publish(&self, s: &StreamName, e: &Envelope) -> Result<EntryId, BusError> {
        if self.publish_down.load(Ordering::SeqCst) {
            return Err((self.fail_with)("publish"));
        }
        self.inner.publish(s, e).await
    }
    async fn publish_batch(
        &self,
        items: &[(StreamName, Envelope)],
    ) -> Result<Vec<EntryId>, BusError> {
        if self.publish_down.load(Ordering::SeqCst) {
            return Err((self.fail_with)("publish"));
        }
        self.inner.publish_batch(items).await
    }
    async fn ensure_group(
        &self,
        s: &StreamName,
        g: &GroupName,
        start: StartFrom,
    ) -> Result<(), BusError> {
        self.inner.ensure_group(s, g, start).await
    }
    async fn consume(
        &self,
        s: &StreamName,
        g: &GroupName,
        c: &ConsumerName,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let failing = self
            .read_outages
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err((self.fail_with)("consume"));
        }
        self.inner.consume(s, g, c, max, block).await
    }
    async fn ack(&self, s: &StreamName, g: &GroupName, ids: &[EntryId]) -> Result<u64, BusError> {
        self.inner.ack(s, g, ids).await
    }
    async fn claim_stale(
        &self,
        s: &StreamName,
        g: &GroupName,
        c: &ConsumerName,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        self.inner.claim_stale(s, g, c, min_idle, max).await
    }
    async fn groups(&self, s: &StreamName) -> Result<Vec<GroupInfo>, BusError> {
        self.inner.groups(s).await
    }
    async fn consumers(
        &self,
        s: &StreamName,
        g: &GroupName,
    ) -> Result<Vec<ConsumerInfo>, BusError> {
        self.inner.consumers(s, g).await
    }
    async fn renew(
        &self,
        s: &StreamName,
        g: &GroupName,
        c: &ConsumerName,
        ids: &[EntryId],
    ) -> Result<u64, BusError> {
        self.inner.renew(s, g, c, ids).await
    }
}
