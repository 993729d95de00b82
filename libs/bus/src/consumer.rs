//! The consume loop every service runs: read a batch, hand each delivery to a
//! handler, ack only what the handler finished, and periodically take over
//! entries that other (dead) consumers left pending.
//!
//! Delivery is at least once. An entry is acked only after the handler
//! returned `Ok`, which must mean its effect is durable (committed to the
//! database, published onward). If the process dies in between, the entry is
//! delivered again, to this consumer or another one, after `min_idle`. The
//! handler therefore has to be idempotent: deduplicate by
//! [`Envelope::event_id`](crate::Envelope::event_id) (or a business key such
//! as a client order id), e.g. with a unique constraint written in the same
//! transaction as the effect. Redelivered entries can arrive after newer ones,
//! so handlers must not rely on order across failures.
//!
//! ```no_run
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use grodt_bus::consumer::{Consumer, ConsumerConfig, Handler, HandlerError};
//! use grodt_bus::{ConsumerName, Delivery, EventBus, GroupName, StreamName};
//!
//! struct Fills;
//!
//! #[async_trait]
//! impl Handler for Fills {
//!     async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
//!         // Apply the fill and record d.envelope.event_id in one transaction;
//!         // a duplicate event id means "already done": return Ok.
//!         Ok(())
//!     }
//! }
//!
//! # async fn example(bus: Arc<dyn EventBus>, shutdown: impl std::future::Future<Output = ()>)
//! # -> Result<(), grodt_bus::BusError> {
//! let config = ConsumerConfig::new(
//!     StreamName::parse("grodt.fills.v1")?,
//!     GroupName::parse("strategy")?,
//!     ConsumerName::parse("strategy-7f9c")?,
//! );
//! Consumer::new(bus, Arc::new(Fills), config).run(shutdown).await
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use grodt_core::error::{Classify, ErrorKind};
use tokio::time::Instant;

use crate::{BusError, ConsumerName, Delivery, EventBus, GroupName, StartFrom, StreamName};

/// What a handler returns when it could not finish a delivery; the entry stays
/// pending and is retried after `min_idle`.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Why [`Handler::handle_batch`] stopped: the first `done` deliveries are
/// durable (they are acked), the one at `done` failed with `error`, and those
/// behind it were not handled or are not durable (they are handled again).
#[derive(Debug)]
pub struct BatchFailure {
    /// How many leading deliveries are done.
    pub done: usize,
    /// What failed the delivery at `done`.
    pub error: HandlerError,
}

/// Processes one delivery. Must be idempotent (see the module doc).
#[async_trait]
pub trait Handler: Send + Sync {
    /// Handles the delivery; `Ok` means the effect is durable and the entry
    /// may be acked.
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError>;

    /// Handles deliveries read together, in stream order; `Ok` means every
    /// one's effect is durable. The default handles them one by one. A
    /// handler may do better: make a whole batch durable in one database
    /// commit (group commit), so that a consumer that fell behind catches up
    /// at the cost of one commit per batch instead of one per entry.
    ///
    /// # Errors
    /// [`BatchFailure`]: what is done, and what failed.
    async fn handle_batch(&self, deliveries: &[Delivery]) -> Result<(), BatchFailure> {
        for (done, d) in deliveries.iter().enumerate() {
            self.handle(d)
                .await
                .map_err(|error| BatchFailure { done, error })?;
        }
        Ok(())
    }
}

/// Settings of a [`Consumer`].
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The stream to read.
    pub stream: StreamName,
    /// The group (the service's name).
    pub group: GroupName,
    /// This instance's name in the group.
    pub consumer: ConsumerName,
    /// Where the group starts if this consumer creates it.
    pub start: StartFrom,
    /// Entries read (and claimed) per round trip.
    pub batch: usize,
    /// How long one read waits for new entries.
    pub block: Duration,
    /// How long an entry must sit unacked before this consumer takes it over.
    /// Must exceed the longest time a handler may take, or live consumers'
    /// entries get claimed twice (harmless with idempotent handlers, but waste).
    pub min_idle: Duration,
    /// How often to look for stale entries.
    pub claim_every: Duration,
    /// Pause after the bus was unavailable, before retrying.
    pub retry_after: Duration,
    /// Give up on an entry after the handler failed this many deliveries: it
    /// is published unchanged to the stream's dead-letter stream
    /// ([`StreamName::dead_letter`]) and acked. `None` retries forever, right
    /// for effects that must not be dropped when a dependency is down for a
    /// while; set it where a poison event must not cycle forever.
    pub max_deliveries: Option<u64>,
    /// Renew the lease on the entries of the batch being handled this often
    /// ([`EventBus::renew`]), so `min_idle` can be short (seconds) even when
    /// one handler runs for minutes: a live consumer keeps its entries, a
    /// killed one's are taken over after `min_idle`. Must be below
    /// `min_idle`. `None`: no renewal, `min_idle` must exceed the longest
    /// handler.
    pub renew_every: Option<Duration>,
    /// Handle the stream strictly in order: when the handler fails on an
    /// entry, the entries read behind it wait (unhandled, unacked) and that
    /// entry is retried first, every `retry_after`, until it succeeds (or is
    /// dead-lettered by `max_deliveries`); nothing is claimed or read
    /// meanwhile. For the services whose state is a fold of the stream
    /// (execution, strategy, risk, regime): handling bar k+1 before a failed
    /// bar k would make k stale. Off (the default), a failed entry stays
    /// pending for a later claim while the batch goes on.
    pub ordered: bool,
}

impl ConsumerConfig {
    /// Defaults: batches of 64, 1 s blocking reads, claim entries idle for 30 s,
    /// checked every 5 s.
    pub fn new(stream: StreamName, group: GroupName, consumer: ConsumerName) -> Self {
        Self {
            stream,
            group,
            consumer,
            start: StartFrom::Beginning,
            batch: 64,
            block: Duration::from_secs(1),
            min_idle: Duration::from_secs(30),
            claim_every: Duration::from_secs(5),
            retry_after: Duration::from_secs(1),
            max_deliveries: None,
            renew_every: None,
            ordered: false,
        }
    }
}

/// What one [`Consumer::step`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StepReport {
    /// Stale entries taken over from other consumers (or this one's past).
    pub claimed: usize,
    /// New entries read.
    pub read: usize,
    /// Entries the handler finished, now acked.
    pub acked: usize,
    /// Entries the handler failed; left pending for a later claim (ordered:
    /// kept in the backlog, retried before anything else).
    pub failed: usize,
    /// Entries past `max_deliveries`, moved to the dead-letter stream.
    pub dead_lettered: usize,
}

/// Runs a [`Handler`] over a consumer group.
pub struct Consumer {
    bus: Arc<dyn EventBus>,
    handler: Arc<dyn Handler>,
    config: ConsumerConfig,
    last_claim: Option<Instant>,
    /// Ordered mode: the failed entry and those read behind it, in order.
    backlog: Vec<Delivery>,
}

impl Consumer {
    /// A consumer; nothing happens until [`Consumer::run`] or [`Consumer::step`].
    pub fn new(bus: Arc<dyn EventBus>, handler: Arc<dyn Handler>, config: ConsumerConfig) -> Self {
        Self {
            bus,
            handler,
            config,
            last_claim: None,
            backlog: Vec::new(),
        }
    }

    /// Creates the group if needed; `run` does this itself.
    pub async fn ensure_group(&self) -> Result<(), BusError> {
        self.bus
            .ensure_group(&self.config.stream, &self.config.group, self.config.start)
            .await
    }

    /// One round: claim stale entries if `claim_every` has passed (or never
    /// ran), then read new ones (waiting up to `block`), handle each in order
    /// and ack those handled. A shutdown may cancel it only while it waits
    /// for entries, never mid-handler (see [`Consumer::run`]).
    pub async fn step(&mut self) -> Result<StepReport, BusError> {
        let mut report = StepReport::default();
        if !self.backlog.is_empty() {
            let backlog = std::mem::take(&mut self.backlog);
            self.handle_batch(backlog, &mut report).await?;
            return Ok(report);
        }
        self.claim_if_due(&mut report).await?;
        let fresh = self.read().await?;
        report.read = fresh.len();
        self.handle_batch(fresh, &mut report).await?;
        Ok(report)
    }

    async fn claim_if_due(&mut self, report: &mut StepReport) -> Result<(), BusError> {
        let due = self
            .last_claim
            .is_none_or(|t| t.elapsed() >= self.config.claim_every);
        if !due {
            return Ok(());
        }
        self.last_claim = Some(Instant::now());
        let stale = self
            .bus
            .claim_stale(
                &self.config.stream,
                &self.config.group,
                &self.config.consumer,
                self.config.min_idle,
                self.config.batch,
            )
            .await?;
        report.claimed = stale.len();
        self.handle_batch(stale, report).await
    }

    async fn read(&self) -> Result<Vec<Delivery>, BusError> {
        self.bus
            .consume(
                &self.config.stream,
                &self.config.group,
                &self.config.consumer,
                self.config.batch,
                self.config.block,
            )
            .await
    }

    async fn handle_batch(
        &mut self,
        deliveries: Vec<Delivery>,
        report: &mut StepReport,
    ) -> Result<(), BusError> {
        let dead = |d: &Delivery| {
            self.config
                .max_deliveries
                .is_some_and(|max| d.delivery_count > max)
        };
        let mut done = Vec::with_capacity(deliveries.len());
        let mut k = 0;
        while k < deliveries.len() {
            if dead(&deliveries[k]) {
                self.dead_letter(&deliveries[k]).await?;
                done.push(deliveries[k].entry_id);
                report.dead_lettered += 1;
                k += 1;
                continue;
            }
            // The run of entries up to the next one to dead-letter goes to
            // the handler at once.
            let end = deliveries[k..]
                .iter()
                .position(dead)
                .map_or(deliveries.len(), |n| k + n);
            let run = &deliveries[k..end];
            let failure = self.handle_renewing(run, &deliveries).await.err();
            let Some(BatchFailure { done: ok, error }) = failure else {
                done.extend(run.iter().map(|d| d.entry_id));
                k = end;
                continue;
            };
            // A handler that claims more than it was given: the rest is
            // handled again (idempotent), nothing is acked unhandled.
            let ok = ok.min(run.len() - 1);
            done.extend(run[..ok].iter().map(|d| d.entry_id));
            let failed = k + ok;
            let delivery = &deliveries[failed];
            report.failed += 1;
            tracing::warn!(
                stream = %self.config.stream,
                group = %self.config.group,
                entry_id = %delivery.entry_id,
                event_id = %delivery.envelope.event_id,
                delivery_count = delivery.delivery_count,
                error = %error,
                ordered = self.config.ordered,
                "handler failed; entry stays pending for redelivery"
            );
            if self.config.ordered {
                // This entry and those behind it, in order, before
                // anything else; each try counts as a delivery.
                self.backlog = deliveries[failed..].to_vec();
                self.backlog[0].delivery_count += 1;
                break;
            }
            k = failed + 1;
        }
        if !done.is_empty() {
            self.bus
                .ack(&self.config.stream, &self.config.group, &done)
                .await?;
            report.acked += done.len();
        }
        Ok(())
    }

    /// Runs the handler over `run`; with `renew_every`, renews the lease on
    /// the whole batch meanwhile (entries after these wait their turn, and
    /// are not abandoned either). A failed renewal is logged, not fatal: at
    /// worst another consumer takes an entry over, which idempotent
    /// handlers tolerate.
    async fn handle_renewing(
        &self,
        run: &[Delivery],
        batch: &[Delivery],
    ) -> Result<(), BatchFailure> {
        let Some(every) = self.config.renew_every else {
            return self.handler.handle_batch(run).await;
        };
        let ids: Vec<_> = batch.iter().map(|d| d.entry_id).collect();
        let handled = self.handler.handle_batch(run);
        tokio::pin!(handled);
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                result = &mut handled => return result,
                _ = tick.tick() => {
                    let renewed = self
                        .bus
                        .renew(&self.config.stream, &self.config.group, &self.config.consumer, &ids)
                        .await;
                    if let Err(error) = renewed {
                        tracing::warn!(stream = %self.config.stream, group = %self.config.group,
                            error = %error, "could not renew the lease on pending entries");
                    }
                }
            }
        }
    }

    async fn dead_letter(&self, delivery: &Delivery) -> Result<(), BusError> {
        let target = self.config.stream.dead_letter();
        tracing::error!(
            stream = %self.config.stream,
            group = %self.config.group,
            entry_id = %delivery.entry_id,
            event_id = %delivery.envelope.event_id,
            delivery_count = delivery.delivery_count,
            dead_letter = %target,
            "giving up on entry after repeated handler failures"
        );
        self.bus
            .publish(&target, &delivery.envelope)
            .await
            .map(|_| ())
    }

    /// Ensures the group, then steps until `shutdown` completes. While the
    /// bus is unavailable it logs and retries after `retry_after`. A group
    /// that vanished (a Redis restarted without its data: no AOF) is logged
    /// as an error and created again, so the consumer takes the events
    /// published from then on instead of stopping while its process looks
    /// healthy; what the lost streams held is gone. Any other bus error ends
    /// the loop. Shutdown interrupts only the wait for new entries (whatever
    /// a cancelled read took stays pending and is claimed later), so a
    /// handler is never cut off halfway.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), BusError> {
        tokio::pin!(shutdown);
        if self.ensure_until_done(&mut shutdown).await? {
            return Ok(());
        }
        loop {
            let mut report = StepReport::default();
            if !self.backlog.is_empty() {
                // Ordered: the failed entry again, after a pause that
                // shutdown may cut (the backlog stays pending in the group).
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(self.config.retry_after) => {}
                }
                let backlog = std::mem::take(&mut self.backlog);
                match self.handle_batch(backlog, &mut report).await {
                    Ok(()) => continue,
                    Err(e) if e.kind() == ErrorKind::Unavailable => {
                        if self.pause(&mut shutdown, &e).await {
                            return Ok(());
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            // Claims and their handlers run to completion; only the wait for
            // new entries is cut short by shutdown.
            let result = match self.claim_if_due(&mut report).await {
                Err(e) => Err(e),
                Ok(()) => {
                    let fresh = tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        r = self.read() => r,
                    };
                    match fresh {
                        Ok(fresh) => self.handle_batch(fresh, &mut report).await,
                        Err(e) => Err(e),
                    }
                }
            };
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Unavailable => {
                    if self.pause(&mut shutdown, &e).await {
                        return Ok(());
                    }
                }
                Err(e @ BusError::NoGroup { .. }) => {
                    tracing::error!(stream = %self.config.stream, group = %self.config.group,
                        error = %e, "consumer group gone (Redis lost its data?); creating it again");
                    if self.ensure_until_done(&mut shutdown).await? {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Ensures the group, waiting out an unavailable bus; true if shutdown
    /// came first.
    async fn ensure_until_done(
        &self,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<bool, BusError> {
        loop {
            let ensured = tokio::select! {
                () = shutdown.as_mut() => return Ok(true),
                r = self.ensure_group() => r,
            };
            match ensured {
                Ok(()) => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Unavailable => {
                    if self.pause(shutdown, &e).await {
                        return Ok(true);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits `retry_after`; true if shutdown came first.
    async fn pause(
        &self,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
        error: &BusError,
    ) -> bool {
        tracing::warn!(stream = %self.config.stream, group = %self.config.group,
            error = %error, "bus unavailable; retrying");
        tokio::select! {
            () = shutdown.as_mut() => true,
            () = tokio::time::sleep(self.config.retry_after) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;

    use super::*;
    use crate::faulty::Faulty;
    use crate::{BackPressure, Envelope, InProcessBus};

    #[derive(Default)]
    struct Record(Mutex<Vec<uuid::Uuid>>);

    #[async_trait]
    impl Handler for Record {
        async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
            self.0.lock().unwrap().push(d.envelope.event_id);
            Ok(())
        }
    }

    fn setup(
        outages: usize,
        fail_with: fn(&'static str) -> BusError,
    ) -> (Arc<Faulty>, Arc<Record>, Consumer) {
        let inner = InProcessBus::new(BackPressure::default(), 1_000_000).unwrap();
        let bus = Arc::new(Faulty::new(Arc::new(inner)).failing_with(fail_with));
        bus.fail_next_reads(outages);
        let handler = Arc::new(Record::default());
        let mut config = ConsumerConfig::new(
            StreamName::parse("grodt.fills.v1").unwrap(),
            GroupName::parse("strategy").unwrap(),
            ConsumerName::parse("s-0").unwrap(),
        );
        config.block = Duration::from_millis(10);
        config.retry_after = Duration::from_millis(5);
        let consumer = Consumer::new(bus.clone(), handler.clone(), config);
        (bus, handler, consumer)
    }

    #[tokio::test]
    async fn run_rides_out_an_unavailable_bus() {
        let (bus, handler, consumer) = setup(3, |op| BusError::Timeout {
            op,
            after: Duration::from_millis(1),
        });
        let s = StreamName::parse("grodt.fills.v1").unwrap();
        let e = Envelope::new(
            "grodt.v1.Fill",
            chrono::Utc::now(),
            Bytes::from_static(b"f"),
        );
        bus.publish(&s, &e).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(consumer.run(async {
            let _ = stopped.await;
        }));
        let deadline = Instant::now() + Duration::from_secs(10);
        while handler.0.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "event never handled");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        stop.send(()).unwrap();
        running
            .await
            .unwrap()
            .expect("shutdown ends the loop cleanly");
        assert_eq!(*handler.0.lock().unwrap(), vec![e.event_id]);
        assert_eq!(bus.failing_reads_left(), 0, "every outage was retried");
        assert_eq!(bus.groups(&s).await.unwrap()[0].pending, 0);
    }

    #[tokio::test]
    async fn run_creates_a_vanished_group_again_and_goes_on() {
        // The first read finds no group, as after a Redis restart without
        // persistence; the loop must not end there.
        let (bus, handler, consumer) = setup(1, |_| BusError::NoGroup {
            stream: "grodt.fills.v1".to_owned(),
            group: "strategy".to_owned(),
        });
        let s = StreamName::parse("grodt.fills.v1").unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(consumer.run(async {
            let _ = stopped.await;
        }));
        let deadline = Instant::now() + Duration::from_secs(10);
        while bus.failing_reads_left() > 0 {
            assert!(Instant::now() < deadline, "the consumer never read");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let e = Envelope::new(
            "grodt.v1.Fill",
            chrono::Utc::now(),
            Bytes::from_static(b"f"),
        );
        bus.publish(&s, &e).await.unwrap();
        while handler.0.lock().unwrap().is_empty() {
            assert!(!running.is_finished(), "the loop ended on NoGroup");
            assert!(Instant::now() < deadline, "event never handled");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        stop.send(()).unwrap();
        running
            .await
            .unwrap()
            .expect("shutdown ends the loop cleanly");
        assert_eq!(*handler.0.lock().unwrap(), vec![e.event_id]);
    }

    #[tokio::test]
    async fn run_stops_on_an_error_retrying_cannot_fix() {
        let (_bus, _handler, consumer) = setup(1, |_| BusError::InvalidArgument {
            field: "max",
            reason: "test".to_owned(),
        });
        let err = consumer
            .run(std::future::pending())
            .await
            .expect_err("a bad argument ends the loop");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }

    /// Fails entry `fail_on` the first `failures` times, like a store that
    /// went away mid-batch; records what it handled.
    struct Flaky {
        seen: Mutex<Vec<uuid::Uuid>>,
        fail_on: uuid::Uuid,
        failures: AtomicUsize,
    }

    #[async_trait]
    impl Handler for Flaky {
        async fn handle(&self, d: &Delivery) -> Result<(), HandlerError> {
            let mut seen = self.seen.lock().unwrap();
            if d.envelope.event_id == self.fail_on && self.failures.load(Ordering::SeqCst) > 0 {
                self.failures.fetch_sub(1, Ordering::SeqCst);
                return Err("store unavailable".into());
            }
            seen.push(d.envelope.event_id);
            Ok(())
        }
    }

    /// Ordered, a failure mid-batch holds the entries behind it until the
    /// failed one is done: the handler sees the stream in order, once each.
    /// Unordered, the batch goes on and the failed entry comes later.
    #[tokio::test]
    async fn ordered_consumers_retry_a_failed_entry_before_the_rest() {
        for ordered in [true, false] {
            let bus = Arc::new(InProcessBus::new(BackPressure::default(), 1_000_000).unwrap());
            let s = StreamName::parse("grodt.bars.v1").unwrap();
            let ids: Vec<uuid::Uuid> = (0..4u8)
                .map(|k| {
                    Envelope::new(
                        "grodt.v1.BarEvent",
                        chrono::Utc::now(),
                        Bytes::from(vec![k]),
                    )
                })
                .map(|e| e.event_id)
                .collect();
            let mut config = ConsumerConfig::new(
                s.clone(),
                GroupName::parse("execution").unwrap(),
                ConsumerName::parse("e-0").unwrap(),
            );
            config.block = Duration::from_millis(10);
            config.retry_after = Duration::from_millis(5);
            config.min_idle = Duration::from_millis(20);
            config.claim_every = Duration::from_millis(20);
            config.ordered = ordered;
            let handler = Arc::new(Flaky {
                seen: Mutex::new(Vec::new()),
                fail_on: ids[1],
                failures: AtomicUsize::new(2),
            });
            let consumer = Consumer::new(bus.clone(), handler.clone(), config);
            consumer.ensure_group().await.unwrap();
            for (k, id) in ids.iter().enumerate() {
                let mut e = Envelope::new(
                    "grodt.v1.BarEvent",
                    chrono::Utc::now(),
                    Bytes::from(vec![u8::try_from(k).unwrap()]),
                );
                e.event_id = *id;
                bus.publish(&s, &e).await.unwrap();
            }
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let running = tokio::spawn(consumer.run(async {
                let _ = stopped.await;
            }));
            let deadline = Instant::now() + Duration::from_secs(10);
            while handler.seen.lock().unwrap().len() < 4 {
                assert!(Instant::now() < deadline, "not every entry handled");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            stop.send(()).unwrap();
            running.await.unwrap().expect("clean shutdown");
            let seen = handler.seen.lock().unwrap().clone();
            if ordered {
                assert_eq!(seen, ids, "in stream order, once each");
                assert_eq!(bus.groups(&s).await.unwrap()[0].pending, 0);
            } else {
                assert_eq!(seen[..3], [ids[0], ids[2], ids[3]], "the batch went on");
                assert_eq!(seen[3], ids[1], "the failed entry came last");
            }
        }
    }

    /// Makes a whole batch durable at once; the first time it sees three or
    /// more entries together it fails after the first (as a group commit
    /// that failed after an earlier flush), and once it claims more done
    /// than it was given.
    struct Grouping {
        durable: Mutex<Vec<uuid::Uuid>>,
        batches: Mutex<Vec<usize>>,
        failures: AtomicUsize,
    }

    #[async_trait]
    impl Handler for Grouping {
        async fn handle(&self, _: &Delivery) -> Result<(), HandlerError> {
            unreachable!("batches only")
        }

        async fn handle_batch(&self, ds: &[Delivery]) -> Result<(), BatchFailure> {
            self.batches.lock().unwrap().push(ds.len());
            let mut durable = self.durable.lock().unwrap();
            if ds.len() >= 3 && self.failures.load(Ordering::SeqCst) > 0 {
                let left = self.failures.fetch_sub(1, Ordering::SeqCst);
                durable.push(ds[0].envelope.event_id);
                // The second time, an out-of-range count: clamped.
                let done = if left == 2 { 1 } else { ds.len() + 5 };
                if left == 1 {
                    durable.extend(ds[1..].iter().map(|d| d.envelope.event_id));
                }
                return Err(BatchFailure {
                    done,
                    error: "commit failed".into(),
                });
            }
            durable.extend(ds.iter().map(|d| d.envelope.event_id));
            Ok(())
        }
    }

    /// A batch handler gets the whole read at once; after a failure the
    /// entries it reports done are acked and the rest come again, in order.
    #[tokio::test]
    async fn a_batch_handler_gets_the_batch_and_its_failure_acks_only_what_is_done() {
        let bus = Arc::new(InProcessBus::new(BackPressure::default(), 1_000_000).unwrap());
        let s = StreamName::parse("grodt.bars.v1").unwrap();
        let mut config = ConsumerConfig::new(
            s.clone(),
            GroupName::parse("execution").unwrap(),
            ConsumerName::parse("e-0").unwrap(),
        );
        config.block = Duration::from_millis(10);
        config.retry_after = Duration::from_millis(5);
        config.ordered = true;
        let handler = Arc::new(Grouping {
            durable: Mutex::new(Vec::new()),
            batches: Mutex::new(Vec::new()),
            failures: AtomicUsize::new(2),
        });
        let mut consumer = Consumer::new(bus.clone(), handler.clone(), config);
        consumer.ensure_group().await.unwrap();
        let mut ids = Vec::new();
        for k in 0..5u8 {
            let e = Envelope::new(
                "grodt.v1.BarEvent",
                chrono::Utc::now(),
                Bytes::from(vec![k]),
            );
            ids.push(e.event_id);
            bus.publish(&s, &e).await.unwrap();
        }
        // All five in one read; the handler fails after the first.
        let r = consumer.step().await.unwrap();
        assert_eq!((r.read, r.acked, r.failed), (5, 1, 1));
        assert_eq!(bus.groups(&s).await.unwrap()[0].pending, 4);
        // The four left, again at once; the claim of 9 done is cut to 3.
        let r = consumer.step().await.unwrap();
        assert_eq!((r.acked, r.failed), (3, 1));
        // The last one alone.
        let r = consumer.step().await.unwrap();
        assert_eq!((r.acked, r.failed), (1, 0));
        assert_eq!(*handler.batches.lock().unwrap(), [5, 4, 1]);
        assert_eq!(bus.groups(&s).await.unwrap()[0].pending, 0);
        let durable = handler.durable.lock().unwrap().clone();
        // Entry 4 was made durable twice (the handler is idempotent); every
        // entry at least once, in stream order first.
        assert_eq!(durable[..5], ids[..]);
        assert_eq!(durable[5..], [ids[4]]);
    }
}
