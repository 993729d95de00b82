//! Streams bound to their payload types, in one table.
//!
//! Every event payload of `events.proto` implements [`Topic`], whose
//! [`Topic::STREAM`] is the one stream it travels on. Publishers build an
//! [`Outgoing`] from a payload (the stream and `event_type` come from the
//! payload's type) and consumers decode with [`decode`] (which checks the
//! envelope's `event_type`), so no service writes a stream name next to a
//! payload by hand, and a payload cannot be sent on another payload's stream:
//!
//! ```compile_fail
//! use grodt_proto::{topic::{Outgoing, Topic}, v1};
//! // A fill is not a bar: the stream is the payload's, so this does not compile.
//! let _ = Outgoing::<v1::BarEvent>::new(&v1::FillEvent::default());
//! ```
//!
//! ```compile_fail
//! use grodt_proto::{topic::Topic, v1};
//! // A Bar is not an event payload: it has no stream.
//! let _ = <v1::Bar as Topic>::STREAM;
//! ```
//!
//! This crate does not depend on the bus: the service hands
//! [`Outgoing::stream`], [`Outgoing::event_type`] and [`Outgoing::payload`] to
//! `grodt_bus::Envelope::new` and `EventBus::publish`.

use std::marker::PhantomData;

use prost::{Message, Name};

use crate::v1;

/// An event payload and the one stream it travels on (`grodt.<topic>.v1`).
pub trait Topic: Message + Name + Default {
    /// The stream name, without any key prefix.
    const STREAM: &'static str;
}

macro_rules! topics {
    ($($ty:ident => $stream:literal),+ $(,)?) => {
        $(impl Topic for v1::$ty {
            const STREAM: &'static str = $stream;
        })+

        /// `(stream, event_type)` of every topic, in the order of `events.proto`'s table.
        pub const ALL: &[(&str, &str)] = &[
            $(($stream, concat!("grodt.v1.", stringify!($ty)))),+
        ];
    };
}

topics! {
    BarEvent => "grodt.bars.v1",
    RegimeEvent => "grodt.regimes.v1",
    OrderIntentEvent => "grodt.order-intents.v1",
    OrderEvent => "grodt.orders.v1",
    FillEvent => "grodt.fills.v1",
    RiskEvent => "grodt.risk-events.v1",
    BacktestJob => "grodt.backtest-jobs.v1",
    BacktestResultEvent => "grodt.backtest-results.v1",
    ExecutionReportEvent => "grodt.execution-reports.v1",
}

/// The stream of payload type `T`.
#[must_use]
pub fn stream_of<T: Topic>() -> &'static str {
    T::STREAM
}

/// A payload ready to publish: its stream, `event_type` and encoded bytes, all
/// taken from the payload's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing<T: Topic> {
    payload: Vec<u8>,
    _topic: PhantomData<fn() -> T>,
}

impl<T: Topic> Outgoing<T> {
    /// Encodes `event` for its stream.
    #[must_use]
    pub fn new(event: &T) -> Self {
        Self {
            payload: event.encode_to_vec(),
            _topic: PhantomData,
        }
    }

    /// The stream this payload goes on.
    #[must_use]
    pub fn stream(&self) -> &'static str {
        T::STREAM
    }

    /// The envelope's `event_type`: the payload's fully qualified name.
    #[must_use]
    pub fn event_type(&self) -> String {
        T::full_name()
    }

    /// The encoded payload.
    #[must_use]
    pub fn payload(self) -> Vec<u8> {
        self.payload
    }
}

/// A delivered envelope that is not a `T`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The envelope carries another payload type.
    #[error("event_type {found:?} on {stream}, expected {expected:?}")]
    WrongType {
        /// The stream of the expected payload.
        stream: &'static str,
        /// The expected `event_type`.
        expected: String,
        /// The `event_type` received.
        found: String,
    },
    /// The payload bytes do not decode as `T`.
    #[error("undecodable {event_type} payload: {reason}")]
    Decode {
        /// The expected `event_type`.
        event_type: String,
        /// The decoder's message.
        reason: String,
    },
}

impl grodt_core::error::Classify for TopicError {
    fn kind(&self) -> grodt_core::error::ErrorKind {
        grodt_core::error::ErrorKind::InvalidArgument
    }
}

/// Decodes an envelope's payload as `T`, after checking its `event_type`.
///
/// # Errors
/// [`TopicError::WrongType`] when `event_type` is not `T`'s full name;
/// [`TopicError::Decode`] when the bytes are not a `T`.
pub fn decode<T: Topic>(event_type: &str, payload: &[u8]) -> Result<T, TopicError> {
    let expected = T::full_name();
    if event_type != expected {
        return Err(TopicError::WrongType {
            stream: T::STREAM,
            expected,
            found: event_type.to_owned(),
        });
    }
    T::decode(payload).map_err(|e| TopicError::Decode {
        event_type: expected,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message as _;

    use super::*;

    #[test]
    fn every_stream_follows_the_naming_scheme_and_is_unique() {
        let mut streams = BTreeSet::new();
        for (stream, _) in ALL {
            let topic = stream
                .strip_prefix("grodt.")
                .and_then(|s| s.strip_suffix(".v1"))
                .unwrap_or_else(|| panic!("{stream} is not grodt.<topic>.v1"));
            assert!(
                !topic.is_empty() && topic.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{stream}: the topic is lowercase words joined by '-'"
            );
            assert!(streams.insert(*stream), "{stream} is bound twice");
        }
    }

    /// The payload messages of events.proto, read from the descriptor set: every
    /// message of that file except the envelope is a payload and has exactly one
    /// stream in the table, and the file's header table says the same.
    #[test]
    fn every_events_proto_payload_has_exactly_one_stream() {
        let fds = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET)
            .expect("descriptors");
        let events = fds
            .file
            .iter()
            .find(|f| f.name() == "grodt/v1/events.proto")
            .expect("events.proto");
        let payloads: BTreeSet<String> = events
            .message_type
            .iter()
            .map(|m| format!("grodt.v1.{}", m.name()))
            .filter(|n| n != "grodt.v1.EventEnvelope")
            .collect();
        let bound: Vec<String> = ALL.iter().map(|(_, t)| (*t).to_owned()).collect();
        let bound_set: BTreeSet<String> = bound.iter().cloned().collect();
        assert_eq!(bound.len(), bound_set.len(), "a payload is bound twice");
        assert_eq!(payloads, bound_set);
        let header = include_str!("../../../proto/grodt/v1/events.proto");
        for (stream, event_type) in ALL {
            let name = event_type.trim_start_matches("grodt.v1.");
            assert!(
                header.lines().any(|l| {
                    let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                    cells.len() >= 3 && cells[1] == *stream && cells[2] == name
                }),
                "events.proto's table lacks | {stream} | {name} |"
            );
        }
    }

    #[test]
    fn outgoing_takes_stream_and_type_from_the_payload_and_decode_checks_it() {
        let job = v1::BacktestJob {
            backtest_id: "b-1".into(),
            ..v1::BacktestJob::default()
        };
        let out = Outgoing::new(&job);
        assert_eq!(out.stream(), "grodt.backtest-jobs.v1");
        assert_eq!(out.event_type(), "grodt.v1.BacktestJob");
        assert_eq!(stream_of::<v1::BacktestJob>(), out.stream());
        let bytes = out.payload();
        assert_eq!(
            decode::<v1::BacktestJob>("grodt.v1.BacktestJob", &bytes).unwrap(),
            job
        );
        let wrong = decode::<v1::BacktestResultEvent>("grodt.v1.BacktestJob", &bytes).unwrap_err();
        assert!(matches!(wrong, TopicError::WrongType { .. }), "{wrong}");
        assert!(wrong.to_string().contains("grodt.backtest-results.v1"));
        let garbage = decode::<v1::BacktestJob>("grodt.v1.BacktestJob", &[0xff, 0xff]);
        assert!(matches!(garbage, Err(TopicError::Decode { .. })));
    }
}
