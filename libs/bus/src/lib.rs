//! Event bus: one trait for publish / consume-in-group / ack / claim-stale with a Redis Streams implementation and an in-process one, held to one conformance suite.
