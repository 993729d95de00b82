//! Events as the journaled services (risk, strategy, execution, optimizer)
//! keep them: an input's outputs are stored with the input in the store's
//! journal, with event ids derived from the input, so a redelivered input
//! republishes the same events under the same ids and downstream
//! deduplication sees one event, however often it is published.

use std::sync::Arc;

use grodt_bus::{BusError, Envelope, EventBus, StreamName};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A UUID v7 derived from `key` (and a time for its ordering bits): the same
/// key and time always give the same id.
#[must_use]
pub fn event_id(at_ns: i64, key: &str) -> Uuid {
    let digest = Sha256::digest(key.as_bytes());
    let mut rand = [0u8; 10];
    rand.copy_from_slice(&digest[..10]);
    let ms = u64::try_from(at_ns.div_euclid(1_000_000)).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(ms, &rand).into_uuid()
}

/// One event to publish, in the form the journal keeps (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The stream.
    pub stream: String,
    /// The envelope's event id (deterministic).
    pub event_id: Uuid,
    /// The payload's type.
    pub event_type: String,
    /// The envelope's `occurred_at`, ns.
    pub occurred_at_ns: i64,
    /// The payload, hex.
    pub payload: String,
    /// W3C `traceparent` of the span that produced the event, so a
    /// republication (a redelivered input, a retry after a failed publish,
    /// a restart) continues the trace of the input that caused it instead
    /// of whatever span happens to be current then. Absent in entries
    /// written before it was kept, and outside a traced span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// W3C `tracestate` with it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

/// Why stored events could not be published.
#[derive(Debug, thiserror::Error)]
pub enum JournalEventError {
    /// The stored form does not decode.
    #[error("journaled event {what}: {reason}")]
    Corrupt {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// The bus refused.
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl StoredEvent {
    /// An event of `event_type` on `stream` with `payload`, in the trace of
    /// the current span (kept with it: see [`StoredEvent::traceparent`]).
    #[must_use]
    pub fn new(stream: &str, event_type: String, id: Uuid, at_ns: i64, payload: &[u8]) -> Self {
        let (traceparent, tracestate) = current_trace();
        Self {
            stream: stream.to_owned(),
            event_id: id,
            event_type,
            occurred_at_ns: at_ns,
            payload: hex::encode(payload),
            traceparent,
            tracestate,
        }
    }

    /// The envelope to publish (its id the stored one), in the trace the
    /// event was made in, else (an entry without one) the current trace.
    ///
    /// # Errors
    /// A payload that is not hex.
    pub fn envelope(&self) -> Result<Envelope, JournalEventError> {
        let payload = hex::decode(&self.payload).map_err(|e| JournalEventError::Corrupt {
            what: "payload",
            reason: e.to_string(),
        })?;
        let (traceparent, tracestate) = if self.traceparent.is_some() {
            (self.traceparent.clone(), self.tracestate.clone())
        } else {
            current_trace()
        };
        let mut envelope = Envelope::new(
            self.event_type.clone(),
            chrono::DateTime::from_timestamp_nanos(self.occurred_at_ns),
            payload,
        )
        .with_trace(traceparent, tracestate);
        envelope.event_id = self.event_id;
        Ok(envelope)
    }
}

/// The current span's trace context as envelope fields (`None` for an empty
/// `tracestate`: envelopes never carry `Some("")`).
#[must_use]
pub fn current_trace() -> (Option<String>, Option<String>) {
    crate::telemetry::current_traceparent().map_or((None, None), |(p, s)| {
        (Some(p), (!s.is_empty()).then_some(s))
    })
}

/// The envelope of an event published now: the event id `id` (derived from
/// what caused it, see [`event_id`]), occurred at `at_ns`, in the current
/// span's trace.
#[must_use]
pub fn traced_envelope(event_type: String, id: Uuid, at_ns: i64, payload: Vec<u8>) -> Envelope {
    let (traceparent, tracestate) = current_trace();
    let mut envelope = Envelope::new(
        event_type,
        chrono::DateTime::from_timestamp_nanos(at_ns),
        payload,
    )
    .with_trace(traceparent, tracestate);
    envelope.event_id = id;
    envelope
}

/// Publishes `events` in order, in one batch ([`EventBus::publish_batch`]).
///
/// # Errors
/// A stored event that does not decode (nothing is published), or the bus
/// failed (with Redis nothing is published; a bus that publishes one by one
/// may have published a prefix: a retry publishes them again under the same
/// ids).
pub async fn publish_all<'a>(
    bus: &Arc<dyn EventBus>,
    events: impl IntoIterator<Item = &'a StoredEvent>,
) -> Result<(), JournalEventError> {
    let items = events
        .into_iter()
        .map(|e| Ok((StreamName::parse(&e.stream)?, e.envelope()?)))
        .collect::<Result<Vec<_>, JournalEventError>>()?;
    // One round trip for all of them, appended in order.
    bus.publish_batch(&items).await?;
    Ok(())
}

/// Decodes journaled outputs (a JSON list of [`StoredEvent`]).
///
/// # Errors
/// Bytes that are not such a list.
pub fn decode(outputs: &[u8]) -> Result<Vec<StoredEvent>, JournalEventError> {
    serde_json::from_slice(outputs).map_err(|e| JournalEventError::Corrupt {
        what: "outputs",
        reason: e.to_string(),
    })
}

/// Encodes outputs for the journal.
///
/// # Errors
/// Never in practice (plain strings and numbers); typed for the caller.
pub fn encode(events: &[StoredEvent]) -> Result<Vec<u8>, JournalEventError> {
    serde_json::to_vec(events).map_err(|e| JournalEventError::Corrupt {
        what: "outputs",
        reason: e.to_string(),
    })
}

/// The entries of `consumer` among `sources` that are journaled, by source:
/// the redelivery check of a batch, in one query.
///
/// # Errors
/// The database failed.
pub async fn journaled_among(
    store: &grodt_store::Store,
    consumer: &str,
    sources: &[String],
) -> Result<std::collections::HashMap<String, grodt_store::JournalEntry>, grodt_store::StoreError> {
    Ok(store
        .journal()
        .get_many(consumer, sources)
        .await?
        .into_iter()
        .map(|e| (e.source.clone(), e))
        .collect())
}

/// Why a batch was not journaled (by [`append_batch`]).
#[derive(Debug, thiserror::Error)]
pub enum AppendBatchError {
    /// An input or its outputs did not encode.
    #[error("journal entry does not encode: {0}")]
    Encode(#[from] serde_json::Error),
    /// The database failed: nothing was journaled (or, the connection lost
    /// during the commit, all of it: a retry finds it).
    #[error(transparent)]
    Store(#[from] grodt_store::StoreError),
    /// An input of the batch was journaled by another writer meanwhile: the
    /// rest of the batch is committed, and the caller's state (which folded
    /// its own version) must be rebuilt from the journal.
    #[error("input {input} was journaled by another writer meanwhile")]
    Taken {
        /// Its journal source.
        input: String,
    },
}

/// Journals a batch of `(source, input, outputs)`, each encoded as JSON, in
/// one transaction (group commit: one durable commit for inputs read
/// together); the seq of each, in order.
///
/// # Errors
/// [`AppendBatchError`].
pub async fn append_batch<I: Serialize, O: Serialize>(
    store: &grodt_store::Store,
    consumer: &str,
    batch: &[(&str, &I, &O)],
) -> Result<Vec<i64>, AppendBatchError> {
    let encoded = batch
        .iter()
        .map(|(_, i, o)| Ok((serde_json::to_vec(i)?, serde_json::to_vec(o)?)))
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    let entries: Vec<(&str, &[u8], &[u8])> = batch
        .iter()
        .zip(&encoded)
        .map(|((source, _, _), (i, o))| (*source, i.as_slice(), o.as_slice()))
        .collect();
    let seqs = store.journal_append_many(consumer, &entries).await?;
    seqs.iter()
        .zip(batch)
        .map(|(seq, (source, _, _))| {
            seq.ok_or_else(|| AppendBatchError::Taken {
                input: (*source).to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_deterministic_v7_and_differ_by_key() {
        let a = event_id(1_700_000_000_000_000_000, "optimizer:job:a:1");
        assert_eq!(a, event_id(1_700_000_000_000_000_000, "optimizer:job:a:1"));
        assert_ne!(a, event_id(1_700_000_000_000_000_000, "optimizer:job:a:2"));
        assert_eq!(a.get_version_num(), 7);
    }

    #[test]
    fn stored_events_round_trip_through_the_journal_form() {
        let e = StoredEvent::new(
            "grodt.backtest-jobs.v1",
            "grodt.v1.BacktestJob".into(),
            event_id(5_000_000, "k"),
            5_000_000,
            &[1, 2, 255],
        );
        let back = decode(&encode(std::slice::from_ref(&e)).unwrap()).unwrap();
        assert_eq!(back, vec![e.clone()]);
        let env = e.envelope().unwrap();
        assert_eq!(env.event_id, e.event_id);
        assert_eq!(env.payload.as_ref(), &[1, 2, 255]);
        assert_eq!(env.occurred_at.timestamp_nanos_opt(), Some(5_000_000));
        assert!(decode(b"not json").is_err());
        let bad = StoredEvent {
            payload: "zz".into(),
            ..e
        };
        assert!(bad.envelope().is_err());
    }

    #[test]
    fn a_republished_event_keeps_the_trace_it_was_made_in() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;
        let provider =
            crate::telemetry::tracer_provider("test", "", crate::telemetry::OTLP_TIMEOUT).unwrap();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let input = tracing::info_span!("input");
            let e = input.in_scope(|| StoredEvent::new("s", "t".into(), event_id(1, "k"), 1, &[1]));
            let made_in = input
                .in_scope(crate::telemetry::current_traceparent)
                .expect("a traced span")
                .0;
            assert_eq!(e.traceparent.as_deref(), Some(made_in.as_str()));
            // Published again later, from the journal, in another input's span.
            let back = decode(&encode(std::slice::from_ref(&e)).unwrap()).unwrap();
            let later = tracing::info_span!("later");
            let env = later.in_scope(|| back[0].envelope()).unwrap();
            assert_eq!(env.traceparent.as_deref(), Some(made_in.as_str()));
        });
        // An entry journaled before traces were kept takes the current one.
        let old: Vec<StoredEvent> = serde_json::from_str(
            r#"[{"stream":"s","event_id":"0190a000-0000-7000-8000-000000000000","event_type":"t","occurred_at_ns":1,"payload":"01"}]"#,
        )
        .unwrap();
        assert_eq!(old[0].traceparent, None);
        assert_eq!(old[0].envelope().unwrap().traceparent, None);
    }

    /// A batch lands in one commit, in order; an input journaled before is
    /// named, and the caller told to rebuild.
    #[tokio::test]
    async fn a_batch_is_journaled_in_order_and_a_taken_input_is_named() {
        let store = grodt_store::Store::connect("sqlite::memory:")
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let (a, b) = (vec![1u8], "two".to_owned());
        let seqs = append_batch(&store, "exec", &[("s-1", &a, &b), ("s-2", &a, &b)])
            .await
            .unwrap();
        assert_eq!(seqs.len(), 2);
        assert!(seqs[0] < seqs[1]);
        let e = store.journal().get("exec", "s-2").await.unwrap().unwrap();
        assert_eq!(
            (e.input.as_slice(), e.outputs.as_slice()),
            (&b"[1]"[..], &b"\"two\""[..])
        );
        let taken = append_batch(&store, "exec", &[("s-3", &a, &b), ("s-1", &a, &b)]).await;
        assert!(
            matches!(&taken, Err(AppendBatchError::Taken { input }) if input == "s-1"),
            "{taken:?}"
        );
    }
}
