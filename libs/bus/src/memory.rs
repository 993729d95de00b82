//! The in-process bus for embedded mode: Redis Streams semantics (consumer
//! groups, pending entries lists, idle times, claiming, trimming) in memory.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backpressure::Admission;
use crate::{
    BackPressure, BusError, ConsumerInfo, ConsumerName, Delivery, EntryId, Envelope, EventBus,
    GroupInfo, GroupName, StartFrom, StreamName, check_block, check_max,
};

/// An [`EventBus`] in memory. Clones share the same streams, so every service
/// of one process talks through one bus. Idle times use tokio's clock, so
/// tests may pause it; entry ids use the system clock like Redis does.
#[derive(Clone)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<HashMap<StreamName, StreamState>>,
    /// Woken on every publish so blocked consumers re-check.
    published: Notify,
    back_pressure: BackPressure,
    max_len: usize,
}

#[derive(Default)]
struct StreamState {
    entries: Entries,
    last_id: EntryId,
    groups: BTreeMap<GroupName, GroupState>,
}

struct GroupState {
    last_delivered: EntryId,
    pending: BTreeMap<EntryId, PendingEntry>,
    /// Every consumer seen, with when it last read or claimed.
    consumers: HashMap<ConsumerName, Instant>,
}

/// Which consumer owns an entry is not kept: nothing here asks, and claiming
/// goes by idle time alone.
struct PendingEntry {
    last_delivery: Instant,
    count: u64,
}

type Entries = VecDeque<(EntryId, Envelope)>;

fn find(entries: &Entries, id: EntryId) -> Option<&Envelope> {
    entries
        .binary_search_by_key(&id, |(i, _)| *i)
        .ok()
        .map(|i| &entries[i].1)
}

/// Index of the first entry after `id`.
fn after(entries: &Entries, id: EntryId) -> usize {
    entries.partition_point(|(i, _)| *i <= id)
}

impl StreamState {
    fn next_id(&mut self) -> EntryId {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        // Like Redis: a clock that stepped back keeps the last millisecond.
        let id = if now_ms > self.last_id.ms {
            EntryId { ms: now_ms, seq: 0 }
        } else {
            EntryId {
                ms: self.last_id.ms,
                seq: self.last_id.seq + 1,
            }
        };
        self.last_id = id;
        id
    }

    fn info(&self) -> Vec<GroupInfo> {
        self.groups
            .iter()
            .map(|(name, g)| GroupInfo {
                group: name.to_string(),
                consumers: g.consumers.len() as u64,
                pending: g.pending.len() as u64,
                lag: (self.entries.len() - after(&self.entries, g.last_delivered)) as u64,
                last_delivered: g.last_delivered,
            })
            .collect()
    }
}

impl std::fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessBus")
            .field("back_pressure", &self.inner.back_pressure)
            .field("max_len", &self.inner.max_len)
            .finish_non_exhaustive()
    }
}

impl InProcessBus {
    /// A bus that keeps at most `max_len` entries per stream (oldest trimmed
    /// first) and applies `back_pressure` on publish. `max_len` must be at
    /// least twice `max_backlog`, as for Redis.
    pub fn new(back_pressure: BackPressure, max_len: usize) -> Result<Self, BusError> {
        back_pressure.validate()?;
        back_pressure.check_max_len(u64::try_from(max_len).unwrap_or(u64::MAX))?;
        Ok(Self {
            inner: Arc::new(Inner {
                state: Mutex::new(HashMap::new()),
                published: Notify::new(),
                back_pressure,
                max_len,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<StreamName, StreamState>> {
        // A panic while holding the lock cannot leave a half-applied update
        // (every mutation is a few infallible steps), so the data is usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The stream's entries and the group, or `NoGroup`.
    fn with_group<'a>(
        state: &'a mut HashMap<StreamName, StreamState>,
        stream: &StreamName,
        group: &GroupName,
    ) -> Result<(&'a Entries, &'a mut GroupState), BusError> {
        let no_group = || BusError::NoGroup {
            stream: stream.to_string(),
            group: group.to_string(),
        };
        let StreamState {
            entries, groups, ..
        } = state.get_mut(stream).ok_or_else(no_group)?;
        let g = groups.get_mut(group).ok_or_else(no_group)?;
        Ok((entries, g))
    }

    fn take_new(
        &self,
        stream: &StreamName,
        group: &GroupName,
        consumer: &ConsumerName,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let mut state = self.lock();
        let (entries, g) = Self::with_group(&mut state, stream, group)?;
        g.consumers.insert(consumer.clone(), Instant::now());
        let now = Instant::now();
        let start = after(entries, g.last_delivered);
        Ok(entries
            .iter()
            .skip(start)
            .take(max)
            .map(|(entry_id, envelope)| {
                g.last_delivered = *entry_id;
                g.pending.insert(
                    *entry_id,
                    PendingEntry {
                        last_delivery: now,
                        count: 1,
                    },
                );
                Delivery {
                    entry_id: *entry_id,
                    envelope: envelope.clone(),
                    delivery_count: 1,
                }
            })
            .collect())
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, stream: &StreamName, envelope: &Envelope) -> Result<EntryId, BusError> {
        envelope.validate()?;
        let back_pressure = &self.inner.back_pressure;
        let id = back_pressure
            .admit(stream, || async {
                let mut state = self.lock();
                let s = state.entry(stream.clone()).or_default();
                if let Some((group, backlog)) = back_pressure.full_group(&s.info()) {
                    return Ok(Admission::Full {
                        stream: None,
                        group,
                        backlog,
                    });
                }
                let id = s.next_id();
                s.entries.push_back((id, envelope.clone()));
                while s.entries.len() > self.inner.max_len {
                    s.entries.pop_front();
                }
                Ok(Admission::Admitted(id))
            })
            .await?;
        self.inner.published.notify_waiters();
        Ok(id)
    }

    async fn publish_batch(
        &self,
        items: &[(StreamName, Envelope)],
    ) -> Result<Vec<EntryId>, BusError> {
        let Some((first, _)) = items.first() else {
            return Ok(Vec::new());
        };
        let back_pressure = &self.inner.back_pressure;
        crate::check_batch(items, back_pressure)?;
        let ids = back_pressure
            .admit(first, || async {
                let mut state = self.lock();
                for (k, (stream, _)) in items.iter().enumerate() {
                    if items[..k].iter().any(|(s, _)| s == stream) {
                        continue;
                    }
                    let n = items.iter().filter(|(s, _)| s == stream).count() as u64;
                    let s = state.entry(stream.clone()).or_default();
                    if let Some((group, backlog)) = back_pressure.full_group_adding(&s.info(), n) {
                        return Ok(Admission::Full {
                            stream: Some(stream.clone()),
                            group,
                            backlog,
                        });
                    }
                }
                let mut ids = Vec::with_capacity(items.len());
                for (stream, envelope) in items {
                    let s = state.entry(stream.clone()).or_default();
                    let id = s.next_id();
                    s.entries.push_back((id, envelope.clone()));
                    while s.entries.len() > self.inner.max_len {
                        s.entries.pop_front();
                    }
                    ids.push(id);
                }
                Ok(Admission::Admitted(ids))
            })
            .await?;
        self.inner.published.notify_waiters();
        Ok(ids)
    }

    async fn ensure_group(
        &self,
        stream: &StreamName,
        group: &GroupName,
        start: StartFrom,
    ) -> Result<(), BusError> {
        let mut state = self.lock();
        let s = state.entry(stream.clone()).or_default();
        let last_delivered = match start {
            StartFrom::Beginning => EntryId::ZERO,
            StartFrom::New => s.last_id,
        };
        s.groups.entry(group.clone()).or_insert_with(|| GroupState {
            last_delivered,
            pending: BTreeMap::new(),
            consumers: HashMap::new(),
        });
        Ok(())
    }

    async fn consume(
        &self,
        stream: &StreamName,
        group: &GroupName,
        consumer: &ConsumerName,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        check_max(max)?;
        check_block(block)?;
        let deadline = Instant::now() + block;
        loop {
            // Register for the wake-up before looking, so a publish between
            // the look and the wait is not missed.
            let notified = self.inner.published.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let taken = self.take_new(stream, group, consumer, max)?;
            if !taken.is_empty() || Instant::now() >= deadline {
                return Ok(taken);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.take_new(stream, group, consumer, max);
            }
        }
    }

    async fn ack(
        &self,
        stream: &StreamName,
        group: &GroupName,
        ids: &[EntryId],
    ) -> Result<u64, BusError> {
        // Like XACK: acking in a group that does not exist acks nothing.
        let mut state = self.lock();
        let Some(g) = state.get_mut(stream).and_then(|s| s.groups.get_mut(group)) else {
            return Ok(0);
        };
        Ok(ids
            .iter()
            .filter(|id| g.pending.remove(id).is_some())
            .count() as u64)
    }

    async fn renew(
        &self,
        stream: &StreamName,
        group: &GroupName,
        consumer: &ConsumerName,
        ids: &[EntryId],
    ) -> Result<u64, BusError> {
        let mut state = self.lock();
        let (_, g) = Self::with_group(&mut state, stream, group)?;
        g.consumers.insert(consumer.clone(), Instant::now());
        let now = Instant::now();
        let mut renewed = 0;
        for id in ids {
            if let Some(p) = g.pending.get_mut(id) {
                p.last_delivery = now;
                renewed += 1;
            }
        }
        Ok(renewed)
    }

    async fn claim_stale(
        &self,
        stream: &StreamName,
        group: &GroupName,
        consumer: &ConsumerName,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        check_max(max)?;
        let mut state = self.lock();
        let (entries, g) = Self::with_group(&mut state, stream, group)?;
        g.consumers.insert(consumer.clone(), Instant::now());
        let now = Instant::now();
        let mut claimed = Vec::new();
        let mut trimmed = Vec::new();
        // Oldest id first, like XAUTOCLAIM.
        for (id, p) in &mut g.pending {
            if claimed.len() == max {
                break;
            }
            if now.duration_since(p.last_delivery) < min_idle {
                continue;
            }
            match find(entries, *id) {
                Some(envelope) => {
                    p.last_delivery = now;
                    p.count += 1;
                    claimed.push(Delivery {
                        entry_id: *id,
                        envelope: envelope.clone(),
                        delivery_count: p.count,
                    });
                }
                None => trimmed.push(*id),
            }
        }
        for id in &trimmed {
            g.pending.remove(id);
        }
        if !trimmed.is_empty() {
            tracing::warn!(stream = %stream, group = %group, lost = trimmed.len(),
                "pending entries were trimmed before being acked");
        }
        Ok(claimed)
    }

    async fn groups(&self, stream: &StreamName) -> Result<Vec<GroupInfo>, BusError> {
        Ok(self
            .lock()
            .get(stream)
            .map(StreamState::info)
            .unwrap_or_default())
    }

    async fn consumers(
        &self,
        stream: &StreamName,
        group: &GroupName,
    ) -> Result<Vec<ConsumerInfo>, BusError> {
        let state = self.lock();
        let Some(g) = state.get(stream).and_then(|s| s.groups.get(group)) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<ConsumerInfo> = g
            .consumers
            .iter()
            .map(|(name, seen)| ConsumerInfo {
                name: name.to_string(),
                idle: seen.elapsed(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bus(max_backlog: u64, max_len: usize) -> InProcessBus {
        let bp = BackPressure {
            max_backlog,
            max_wait: Duration::from_millis(10),
            poll_interval: Duration::from_millis(1),
        };
        InProcessBus::new(bp, max_len).unwrap()
    }

    fn envelope() -> Envelope {
        Envelope::new(
            "grodt.v1.Test",
            chrono::Utc::now(),
            Bytes::from_static(b"p"),
        )
    }

    #[tokio::test]
    async fn trimming_keeps_the_newest_and_drops_trimmed_pending_entries() {
        let bus = bus(2, 4);
        let s = StreamName::parse("s").unwrap();
        let g = GroupName::parse("g").unwrap();
        let c = ConsumerName::parse("c").unwrap();
        bus.ensure_group(&s, &g, StartFrom::Beginning)
            .await
            .unwrap();
        let first = bus.publish(&s, &envelope()).await.unwrap();
        let taken = bus.consume(&s, &g, &c, 10, Duration::ZERO).await.unwrap();
        assert_eq!(taken[0].entry_id, first);
        // The first entry stays pending (backlog 1, under the limit of 2)
        // while five more are published, read and acked, past max_len.
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(bus.publish(&s, &envelope()).await.unwrap());
            let got = bus.consume(&s, &g, &c, 10, Duration::ZERO).await.unwrap();
            let got: Vec<_> = got.iter().map(|d| d.entry_id).collect();
            bus.ack(&s, &g, &got).await.unwrap();
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
        {
            let state = bus.lock();
            let kept: Vec<_> = state[&s].entries.iter().map(|(id, _)| *id).collect();
            assert_eq!(kept, ids[1..], "the oldest entries are trimmed");
        }
        // The first entry is still pending but its data is gone: claiming
        // drops it instead of handing out nothing.
        let info = bus.groups(&s).await.unwrap();
        assert_eq!(info[0].pending, 1);
        let claimed = bus
            .claim_stale(&s, &g, &c, Duration::ZERO, 10)
            .await
            .unwrap();
        assert!(claimed.is_empty());
        assert_eq!(bus.groups(&s).await.unwrap()[0].pending, 0);
    }

    #[test]
    fn rejects_a_max_len_that_would_trim_owed_entries() {
        let bp = BackPressure::default();
        let err = InProcessBus::new(bp, usize::try_from(bp.max_backlog).unwrap()).unwrap_err();
        assert!(err.to_string().contains("max_len"), "{err}");
        let err = InProcessBus::new(
            BackPressure {
                max_backlog: 0,
                ..bp
            },
            10,
        )
        .unwrap_err();
        assert!(err.to_string().contains("max_backlog"), "{err}");
    }

    #[test]
    fn ids_stay_ordered_within_one_millisecond() {
        let mut s = StreamState::default();
        let a = s.next_id();
        s.last_id = EntryId {
            ms: a.ms + 10_000,
            seq: 5,
        };
        // The clock is now "behind" the last id, as after a step back.
        let b = s.next_id();
        assert_eq!(
            b,
            EntryId {
                ms: a.ms + 10_000,
                seq: 6
            }
        );
    }
}
