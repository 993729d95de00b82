//! The in-process bus for embedded mode: Redis Streams semantics (consumer
//! groups, pending entries lists, idle times, claiming, trimming) in memory.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{
    BackPressure, BusError, ConsumerName, Delivery, EntryId, Envelope, EventBus, GroupInfo,
    GroupName, StartFrom, StreamName, check_block, check_max,
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
    entries: VecDeque<(EntryId, Envelope)>,
    last_id: EntryId,
    groups: BTreeMap<GroupName, GroupState>,
}

struct GroupState {
    last_delivered: EntryId,
    pending: BTreeMap<EntryId, PendingEntry>,
    consumers: HashSet<ConsumerName>,
}

/// Which consumer owns an entry is not kept: nothing here asks, and claiming
/// goes by idle time alone.
struct PendingEntry {
    last_delivery: Instant,
    count: u64,
}

impl StreamState {
    fn find(&self, id: EntryId) -> Option<&Envelope> {
        self.entries
            .binary_search_by_key(&id, |(i, _)| *i)
            .ok()
            .map(|i| &self.entries[i].1)
    }

    fn after(&self, id: EntryId) -> usize {
        self.entries.partition_point(|(i, _)| *i <= id)
    }

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
                lag: (self.entries.len() - self.after(g.last_delivered)) as u64,
                last_delivered: g.last_delivered,
            })
            .collect()
    }
}

impl InProcessBus {
    /// A bus that keeps at most `max_len` entries per stream (oldest trimmed
    /// first) and applies `back_pressure` on publish. `max_len` must be at
    /// least twice `max_backlog`, as for Redis.
    pub fn new(back_pressure: BackPressure, max_len: usize) -> Result<Self, BusError> {
        back_pressure.validate()?;
        crate::redis_bus::check_max_len(max_len as u64, &back_pressure)?;
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

    fn with_group<'a>(
        state: &'a mut HashMap<StreamName, StreamState>,
        stream: &StreamName,
        group: &GroupName,
    ) -> Result<&'a mut StreamState, BusError> {
        let s = state
            .get_mut(stream)
            .filter(|s| s.groups.contains_key(group))
            .ok_or_else(|| BusError::NoGroup {
                stream: stream.to_string(),
                group: group.to_string(),
            })?;
        Ok(s)
    }

    fn take_new(
        &self,
        stream: &StreamName,
        group: &GroupName,
        consumer: &ConsumerName,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let mut state = self.lock();
        let s = Self::with_group(&mut state, stream, group)?;
        let g = s
            .groups
            .get(group)
            .map(|g| g.last_delivered)
            .unwrap_or_default();
        let start = s.after(g);
        let taken: Vec<(EntryId, Envelope)> =
            s.entries.iter().skip(start).take(max).cloned().collect();
        let g = s.groups.get_mut(group).ok_or_else(|| BusError::NoGroup {
            stream: stream.to_string(),
            group: group.to_string(),
        })?;
        g.consumers.insert(consumer.clone());
        let now = Instant::now();
        Ok(taken
            .into_iter()
            .map(|(entry_id, envelope)| {
                g.last_delivered = entry_id;
                g.pending.insert(
                    entry_id,
                    PendingEntry {
                        last_delivery: now,
                        count: 1,
                    },
                );
                Delivery {
                    entry_id,
                    envelope,
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
        self.inner
            .back_pressure
            .wait_for_room(stream, || async {
                Ok(self
                    .lock()
                    .get(stream)
                    .map(StreamState::info)
                    .unwrap_or_default())
            })
            .await?;
        let id = {
            let mut state = self.lock();
            let s = state.entry(stream.clone()).or_default();
            let id = s.next_id();
            s.entries.push_back((id, envelope.clone()));
            while s.entries.len() > self.inner.max_len {
                s.entries.pop_front();
            }
            id
        };
        self.inner.published.notify_waiters();
        Ok(id)
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
            consumers: HashSet::new(),
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
        let s = Self::with_group(&mut state, stream, group)?;
        let now = Instant::now();
        let stale: Vec<EntryId> = s.groups[group]
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.last_delivery) >= min_idle)
            .map(|(id, _)| *id)
            .collect();
        let mut claimed = Vec::new();
        let mut trimmed = Vec::new();
        for id in stale {
            if claimed.len() == max {
                break;
            }
            match s.find(id) {
                Some(envelope) => claimed.push((id, envelope.clone())),
                None => trimmed.push(id),
            }
        }
        let g = s.groups.get_mut(group).ok_or_else(|| BusError::NoGroup {
            stream: stream.to_string(),
            group: group.to_string(),
        })?;
        for id in &trimmed {
            g.pending.remove(id);
        }
        if !trimmed.is_empty() {
            tracing::warn!(stream = %stream, group = %group, lost = trimmed.len(),
                "pending entries were trimmed before being acked");
        }
        g.consumers.insert(consumer.clone());
        Ok(claimed
            .into_iter()
            .filter_map(|(entry_id, envelope)| {
                let p = g.pending.get_mut(&entry_id)?;
                p.last_delivery = now;
                p.count += 1;
                Some(Delivery {
                    entry_id,
                    envelope,
                    delivery_count: p.count,
                })
            })
            .collect())
    }

    async fn groups(&self, stream: &StreamName) -> Result<Vec<GroupInfo>, BusError> {
        Ok(self
            .lock()
            .get(stream)
            .map(StreamState::info)
            .unwrap_or_default())
    }
}
