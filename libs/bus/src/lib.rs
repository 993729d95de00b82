//! Event bus: one trait for publish / consume-in-group / ack / claim-stale with
//! a Redis Streams implementation ([`RedisBus`]) and an in-process one
//! ([`InProcessBus`], for the embedded `grodt up`), held to one conformance
//! suite (`conformance`, behind the feature of that name, with `faulty`, a
//! wrapper that fails publishes or reads on command for fault tests).
//!
//! Delivery is at least once: an entry stays pending for its group until acked,
//! and entries a dead consumer left pending are taken over by
//! [`EventBus::claim_stale`]. Consumers ack only after their effect is durable
//! and deduplicate by [`Envelope::event_id`]; [`consumer::Consumer`] is the loop
//! that does this for services.
//!
//! Back-pressure: see [`BackPressure`]. Publishing waits while the slowest
//! group of the stream has `max_backlog` or more unacknowledged entries
//! (pending + never delivered) and fails with [`BusError::BackPressure`]
//! (ResourceExhausted) if that lasts longer than `max_wait`. Streams are
//! trimmed to about `max_len` entries, which must stay at least twice
//! `max_backlog` so trimming never reaches an entry a group still owes.
//!
//! Redis layout: stream `s` lives at key `<key_prefix>s`; entries that cannot
//! be decoded, and (with [`consumer::ConsumerConfig::max_deliveries`]) events
//! a handler keeps failing, go to `<key_prefix>s.dead-letter`. Entry fields
//! are those of docs/conventions.md. [`EventBus::groups`] feeds the
//! consumer-group lag metric (`pending`, `lag`, or their sum `backlog`).
//!
//! Architecture invariant: this crate knows nothing of the events it carries
//! (payloads are opaque bytes); it never depends on grodt-proto, tonic or a
//! database.

mod backpressure;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod consumer;
mod envelope;
mod error;
#[cfg(any(test, feature = "conformance"))]
pub mod faulty;
mod memory;
mod names;
mod redis_bus;

use std::time::Duration;

use async_trait::async_trait;

pub use backpressure::BackPressure;
pub use envelope::{Delivery, EntryId, Envelope, derived_id};
pub use error::BusError;
pub use memory::InProcessBus;
pub use names::{ConsumerName, GroupName, StreamName};
pub use redis_bus::{RedisBus, RedisBusConfig};

/// Where a newly created consumer group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// Every entry still in the stream.
    Beginning,
    /// Only entries published after the group is created.
    New,
}

/// The state of one consumer group, for back-pressure and the lag metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group.
    pub group: String,
    /// Consumers the group has seen.
    pub consumers: u64,
    /// Entries delivered to a consumer and not yet acked.
    pub pending: u64,
    /// Entries in the stream not yet delivered to any consumer of the group.
    pub lag: u64,
    /// The last entry delivered to the group.
    pub last_delivered: EntryId,
}

/// One consumer of a group, as the bus last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// Its name.
    pub name: String,
    /// Since it last read from or claimed on the group (a consumer blocked
    /// in a read counts from the read's start). A live consumer's stays
    /// below its read timeout; a dead one's grows.
    pub idle: Duration,
}

impl GroupInfo {
    /// Entries the group has not finished: pending plus never delivered. This is
    /// what trimming must never reach and what back-pressure bounds.
    pub fn backlog(&self) -> u64 {
        self.pending.saturating_add(self.lag)
    }
}

/// The bus. Object safe: services hold an `Arc<dyn EventBus>`.
///
/// Every method validates its arguments and fails with an InvalidArgument-class
/// [`BusError`] naming the argument; `consume` and `claim_stale` on a group
/// that was never created fail with [`BusError::NoGroup`] (`ack` acks nothing).
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Appends the envelope to the stream and returns its entry id, after
    /// waiting for back-pressure to clear (see [`BackPressure`]).
    async fn publish(&self, stream: &StreamName, envelope: &Envelope) -> Result<EntryId, BusError>;

    /// Appends every envelope to its stream, in order, and returns their
    /// entry ids: one round trip where [`EventBus::publish`] would take one
    /// per event. The backends admit the batch as one atomic step under
    /// back-pressure (a stream that gets `n` events waits until its slowest
    /// group has room for all `n`) and append all of it or nothing; a
    /// stream may not get more events than `max_backlog`. This default, for
    /// wrappers, publishes one by one, so on an error a prefix may be
    /// appended: callers retry the whole batch, as event ids make a second
    /// copy harmless.
    async fn publish_batch(
        &self,
        items: &[(StreamName, Envelope)],
    ) -> Result<Vec<EntryId>, BusError> {
        let mut ids = Vec::with_capacity(items.len());
        for (stream, envelope) in items {
            ids.push(self.publish(stream, envelope).await?);
        }
        Ok(ids)
    }

    /// Creates the group (and the stream) unless it exists; an existing group
    /// keeps its position whatever `start` says.
    async fn ensure_group(
        &self,
        stream: &StreamName,
        group: &GroupName,
        start: StartFrom,
    ) -> Result<(), BusError>;

    /// Up to `max` entries never delivered to this group, in stream order,
    /// each now pending for `consumer`. Waits up to `block` for the first one
    /// when none is ready (`Duration::ZERO`: does not wait).
    async fn consume(
        &self,
        stream: &StreamName,
        group: &GroupName,
        consumer: &ConsumerName,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError>;

    /// Removes the entries from the group's pending list; returns how many were
    /// pending. Acking twice, or in a missing group, acks nothing and is harmless.
    async fn ack(
        &self,
        stream: &StreamName,
        group: &GroupName,
        ids: &[EntryId],
    ) -> Result<u64, BusError>;

    /// Takes over up to `max` pending entries of the group (any consumer's,
    /// this one's included) not delivered or claimed for at least `min_idle`,
    /// oldest id first, incrementing their delivery count (XAUTOCLAIM).
    /// Pending entries whose data was trimmed away are dropped from the pending
    /// list and logged, not returned.
    async fn claim_stale(
        &self,
        stream: &StreamName,
        group: &GroupName,
        consumer: &ConsumerName,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError>;

    /// Every group of the stream with its pending count and lag; empty if the
    /// stream does not exist.
    async fn groups(&self, stream: &StreamName) -> Result<Vec<GroupInfo>, BusError>;

    /// Every consumer the group has seen, with its idle time (XINFO
    /// CONSUMERS); empty if the stream or group does not exist. Consumers
    /// that died stay listed with a growing idle time: count the live ones
    /// by an idle bound above their read timeout.
    async fn consumers(
        &self,
        stream: &StreamName,
        group: &GroupName,
    ) -> Result<Vec<ConsumerInfo>, BusError>;

    /// Renews the lease `consumer` holds on entries it is still working on:
    /// resets their idle time (and makes them this consumer's) without
    /// counting a delivery (XCLAIM with min-idle 0 and JUSTID), so a claim
    /// timeout can be short whatever a handler's duration. Returns how many
    /// of `ids` were pending; acked or trimmed ids are skipped.
    async fn renew(
        &self,
        stream: &StreamName,
        group: &GroupName,
        consumer: &ConsumerName,
        ids: &[EntryId],
    ) -> Result<u64, BusError>;
}

/// A batch's envelopes are valid and no stream gets more of them than the
/// back-pressure limit (such a batch could never be admitted).
fn check_batch(items: &[(StreamName, Envelope)], bp: &BackPressure) -> Result<(), BusError> {
    for (k, (stream, envelope)) in items.iter().enumerate() {
        envelope.validate()?;
        let n = items[k..].iter().filter(|(s, _)| s == stream).count();
        if items[..k].iter().all(|(s, _)| s != stream) && n as u64 > bp.max_backlog {
            return Err(BusError::InvalidArgument {
                field: "items",
                reason: format!(
                    "{n} events for {stream} in one batch, over max_backlog ({})",
                    bp.max_backlog
                ),
            });
        }
    }
    Ok(())
}

fn check_max(max: usize) -> Result<(), BusError> {
    if max == 0 {
        return Err(BusError::InvalidArgument {
            field: "max",
            reason: "must be at least 1".to_owned(),
        });
    }
    Ok(())
}

/// Redis would read a BLOCK of 0 as "forever"; nothing here may wait forever.
const MAX_BLOCK: Duration = Duration::from_secs(300);

fn check_block(block: Duration) -> Result<(), BusError> {
    if block > MAX_BLOCK {
        return Err(BusError::InvalidArgument {
            field: "block",
            reason: format!("{block:?} is longer than {MAX_BLOCK:?}"),
        });
    }
    Ok(())
}
