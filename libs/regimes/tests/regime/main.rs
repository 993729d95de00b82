//! Integration tests of grodt-regimes (one binary).

mod expost;
mod props;
mod samples;
