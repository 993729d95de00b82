//! Integration tests of grodt-core (one binary).

mod deps;
mod props;
