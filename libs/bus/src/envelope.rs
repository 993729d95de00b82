//! What travels on the bus: the envelope of one event, the entry id a stream
//! gives it, and a delivery of it to a consumer.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::error::BusError;

/// Longest accepted `event_type`.
const MAX_EVENT_TYPE_LEN: usize = 256;

/// One event with its metadata; the payload is opaque (protobuf-encoded bytes).
///
/// Consumers deduplicate by `event_id`: delivery is at least once, so the same
/// envelope can arrive more than once (see [`crate::consumer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// UUID v7, unique per event; the idempotency key for consumers.
    pub event_id: Uuid,
    /// The payload's message type, e.g. `grodt.v1.Bar`.
    pub event_type: String,
    /// When the event happened (not when it was published).
    pub occurred_at: DateTime<Utc>,
    /// W3C trace context of the publishing span, if any; never `Some("")`.
    pub traceparent: Option<String>,
    /// W3C vendor trace state, if any; never `Some("")`.
    pub tracestate: Option<String>,
    /// The encoded event.
    pub payload: Bytes,
}

/// A UUID v7 derived from `key`: its time bits from `at_ns`, the rest from
/// a SHA-256 of `key`. The same key always gives the same id, so an event
/// published again after a crash is the same event and consumers drop it
/// by id.
#[must_use]
pub fn derived_id(at_ns: i64, key: &str) -> Uuid {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let mut rand = [0u8; 10];
    rand.copy_from_slice(&digest[..10]);
    let ms = u64::try_from(at_ns.div_euclid(1_000_000)).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(ms, &rand).into_uuid()
}

impl Envelope {
    /// A new envelope with a fresh UUID v7 and no trace context.
    pub fn new(
        event_type: impl Into<String>,
        occurred_at: DateTime<Utc>,
        payload: impl Into<Bytes>,
    ) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            occurred_at,
            traceparent: None,
            tracestate: None,
            payload: payload.into(),
        }
    }

    /// Sets the W3C trace context carried with the event.
    pub fn with_trace(mut self, traceparent: Option<String>, tracestate: Option<String>) -> Self {
        self.traceparent = traceparent;
        self.tracestate = tracestate;
        self
    }

    /// Checks what every backend requires before publishing, so that both
    /// round-trip exactly what they accept.
    pub fn validate(&self) -> Result<(), BusError> {
        if self.event_id.get_version_num() != 7 {
            return Err(BusError::InvalidEnvelope {
                field: "event_id",
                reason: format!("{} is not a UUID v7", self.event_id),
            });
        }
        if self.event_type.is_empty() || self.event_type.len() > MAX_EVENT_TYPE_LEN {
            return Err(BusError::InvalidEnvelope {
                field: "event_type",
                reason: "must be 1 to 256 bytes".to_owned(),
            });
        }
        // The wire form writes an absent value as an empty field, so an empty
        // string would come back as `None`: reject it instead of changing it.
        for (field, value) in [
            ("traceparent", &self.traceparent),
            ("tracestate", &self.tracestate),
        ] {
            if value.as_deref() == Some("") {
                return Err(BusError::InvalidEnvelope {
                    field,
                    reason: "empty string; use None for no trace context".to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The stream entry fields, in the order of docs/conventions.md.
    pub(crate) fn to_fields(&self) -> [(&'static str, Vec<u8>); 6] {
        [
            ("event_id", self.event_id.to_string().into_bytes()),
            ("event_type", self.event_type.clone().into_bytes()),
            (
                "occurred_at",
                self.occurred_at
                    .to_rfc3339_opts(SecondsFormat::AutoSi, true)
                    .into_bytes(),
            ),
            (
                "traceparent",
                self.traceparent.clone().unwrap_or_default().into_bytes(),
            ),
            (
                "tracestate",
                self.tracestate.clone().unwrap_or_default().into_bytes(),
            ),
            ("payload", self.payload.to_vec()),
        ]
    }

    /// Rebuilds an envelope from stream entry fields; unknown fields are ignored
    /// so that a newer publisher can add some.
    pub(crate) fn from_fields(fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Self, BusError> {
        let mut event_id = None;
        let mut event_type = None;
        let mut occurred_at = None;
        let mut traceparent = None;
        let mut tracestate = None;
        let mut payload = None;
        for (name, value) in fields {
            match name.as_slice() {
                b"event_id" => event_id = Some(value),
                b"event_type" => event_type = Some(value),
                b"occurred_at" => occurred_at = Some(value),
                b"traceparent" => traceparent = Some(value),
                b"tracestate" => tracestate = Some(value),
                b"payload" => payload = Some(value),
                _ => {}
            }
        }
        let text = |field: &'static str, value: Option<Vec<u8>>| -> Result<String, BusError> {
            let value = value.ok_or_else(|| BusError::InvalidEnvelope {
                field,
                reason: "missing".to_owned(),
            })?;
            String::from_utf8(value).map_err(|_| BusError::InvalidEnvelope {
                field,
                reason: "not UTF-8".to_owned(),
            })
        };
        let event_id_text = text("event_id", event_id)?;
        let event_id = Uuid::parse_str(&event_id_text).map_err(|e| BusError::InvalidEnvelope {
            field: "event_id",
            reason: format!("{event_id_text:?} is not a UUID: {e}"),
        })?;
        let occurred_text = text("occurred_at", occurred_at)?;
        let occurred_at = DateTime::parse_from_rfc3339(&occurred_text)
            .map_err(|e| BusError::InvalidEnvelope {
                field: "occurred_at",
                reason: format!("{occurred_text:?} is not RFC 3339: {e}"),
            })?
            .with_timezone(&Utc);
        let optional = |field, value: Option<Vec<u8>>| -> Result<Option<String>, BusError> {
            match value {
                None => Ok(None),
                Some(v) => Ok(Some(text(field, Some(v))?).filter(|s| !s.is_empty())),
            }
        };
        let envelope = Envelope {
            event_id,
            event_type: text("event_type", event_type)?,
            occurred_at,
            traceparent: optional("traceparent", traceparent)?,
            tracestate: optional("tracestate", tracestate)?,
            payload: Bytes::from(payload.ok_or_else(|| BusError::InvalidEnvelope {
                field: "payload",
                reason: "missing".to_owned(),
            })?),
        };
        envelope.validate()?;
        Ok(envelope)
    }
}

/// The id a stream gives an entry: `<milliseconds>-<sequence>`, as in Redis.
/// Ids grow strictly within a stream, so they order its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EntryId {
    /// Milliseconds since the Unix epoch when the entry was added.
    pub ms: u64,
    /// Sequence within that millisecond.
    pub seq: u64,
}

impl EntryId {
    /// The id before every entry (`0-0`).
    pub const ZERO: EntryId = EntryId { ms: 0, seq: 0 };
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EntryId {
    type Err = BusError;

    fn from_str(s: &str) -> Result<Self, BusError> {
        let bad = || BusError::InvalidArgument {
            field: "entry_id",
            reason: format!("{s:?} is not <ms>-<seq>"),
        };
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        Ok(EntryId {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// An entry handed to a consumer; it stays pending for its group until acked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Where the entry sits in its stream; pass it to `ack`.
    pub entry_id: EntryId,
    /// The event.
    pub envelope: Envelope,
    /// 1 on first delivery, incremented by every claim.
    pub delivery_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> Envelope {
        Envelope::new(
            "grodt.v1.Fill",
            Utc.timestamp_nanos(1_700_000_000_123_456_789),
            Bytes::from_static(&[0, 159, 146, 150, 255]),
        )
        .with_trace(
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
            Some("rojo=00f067aa0ba902b7".to_owned()),
        )
    }

    #[test]
    fn fields_round_trip_exactly() {
        let e = sample();
        let fields = e
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect();
        assert_eq!(Envelope::from_fields(fields).unwrap(), e);
    }

    #[test]
    fn absent_trace_context_is_written_empty_and_read_as_none() {
        let e = sample().with_trace(None, None);
        let fields: Vec<_> = e
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect();
        assert!(
            fields
                .iter()
                .any(|(k, v)| k == b"traceparent" && v.is_empty())
        );
        assert_eq!(Envelope::from_fields(fields).unwrap(), e);
    }

    #[test]
    fn validation_names_the_field() {
        let mut e = sample();
        e.event_id = Uuid::from_u128(0x1234_5678_1234_4234_8234_1234_5678_9abc);
        assert!(e.validate().unwrap_err().to_string().contains("event_id"));
        let mut e = sample();
        e.event_type.clear();
        assert!(e.validate().unwrap_err().to_string().contains("event_type"));
        let e = sample().with_trace(Some(String::new()), None);
        assert!(
            e.validate()
                .unwrap_err()
                .to_string()
                .contains("traceparent")
        );
    }

    #[test]
    fn decoding_reports_the_bad_field() {
        let mut fields: Vec<_> = sample()
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect();
        fields[2].1 = b"yesterday".to_vec();
        let err = Envelope::from_fields(fields.clone()).unwrap_err();
        assert!(err.to_string().contains("occurred_at"), "{err}");
        fields.remove(5);
        fields[2].1 = b"2026-11-22T00:00:00Z".to_vec();
        let err = Envelope::from_fields(fields).unwrap_err();
        assert!(err.to_string().contains("payload"), "{err}");
    }

    #[test]
    fn entry_ids_parse_print_and_order() {
        let a: EntryId = "1700000000000-0".parse().unwrap();
        let b: EntryId = "1700000000000-12".parse().unwrap();
        assert!(a < b);
        assert_eq!(b.to_string(), "1700000000000-12");
        assert!("17".parse::<EntryId>().is_err());
        assert!("a-1".parse::<EntryId>().is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn wire(e: &Envelope) -> Vec<(Vec<u8>, Vec<u8>)> {
            e.to_fields()
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect()
        }

        proptest! {
            #[test]
            fn any_valid_envelope_round_trips(
                id in any::<u128>(),
                event_type in "[a-zA-Z0-9._]{1,64}",
                nanos in 0i64..4_000_000_000_000_000_000,
                traceparent in proptest::option::of("[ -~]{1,80}"),
                tracestate in proptest::option::of("\\PC{1,80}"),
                payload in proptest::collection::vec(any::<u8>(), 0..512),
            ) {
                // Force the version and variant bits of a v7 UUID.
                let id = (id & !(0xF << 76) & !(0b11 << 62)) | (0x7 << 76) | (0b10 << 62);
                let e = Envelope {
                    event_id: Uuid::from_u128(id),
                    event_type,
                    occurred_at: Utc.timestamp_nanos(nanos),
                    traceparent,
                    tracestate,
                    payload: Bytes::from(payload),
                };
                prop_assert!(e.validate().is_ok());
                prop_assert_eq!(Envelope::from_fields(wire(&e)).unwrap(), e);
            }

            #[test]
            fn entry_ids_print_and_parse_back_in_order(a in any::<(u64, u64)>(), b in any::<(u64, u64)>()) {
                let (x, y) = (EntryId { ms: a.0, seq: a.1 }, EntryId { ms: b.0, seq: b.1 });
                let (px, py): (EntryId, EntryId) = (x.to_string().parse().unwrap(), y.to_string().parse().unwrap());
                prop_assert_eq!(px, x);
                prop_assert_eq!(x.cmp(&y), a.cmp(&b));
                prop_assert_eq!(py, y);
            }
        }
    }
}
