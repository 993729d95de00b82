//! Storage for GRODT services: Postgres in distributed mode, SQLite (a file,
//! or memory in tests) in embedded mode, behind one interface.
//!
//! [`Store::connect`] picks the backend from the URL; [`Store::migrate`]
//! applies the embedded migrations (`migrations/postgres` and
//! `migrations/sqlite`: one logical schema written twice). Services use the
//! repository traits ([`ProcessedEvents`], [`Runs`], [`Settings`]) obtained
//! from the store, and [`Tx`] / [`Store::process_once`] when an effect and
//! its dedupe mark must commit together.
//!
//! Money columns are exact: `NUMERIC` in Postgres, the rust_decimal text in
//! SQLite; never floating point.
//!
//! This crate must never depend on tonic, redis or any service crate: it is
//! storage only, and the domain (`grodt-core`) stays below it.

mod error;
mod model;
mod pg;
mod repo;
mod sqlite;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::StoreError;
pub use model::{Page, PageRequest, Run, RunKind, RunStatus, Setting};
pub use repo::{ProcessedEvents, Runs, Settings};
pub use store::{Backend, Store, StoreOptions, Tx, TxFuture};
