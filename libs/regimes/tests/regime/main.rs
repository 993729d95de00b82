//! Integration tests of grodt-regimes (one binary).

mod props;
mod samples;
