//! Storage for GRODT services: Postgres in distributed mode, SQLite (a file,
//! or memory in tests) in embedded mode, behind one interface.
//!
//! [`Store::connect`] picks the backend from the URL; [`Store::migrate`]
//! applies the embedded migrations (`migrations/postgres` and
//! `migrations/sqlite`: one logical schema written twice). Services use the
//! repository traits ([`ProcessedEvents`], [`Runs`], [`Settings`], [`Datasets`], [`Regimes`]) obtained
//! from the store, and [`Tx`] / [`Store::process_once`] when an effect and
//! its dedupe mark must commit together.
//!
//! # Transactions
//!
//! [`Tx`] is the primitive: an owned guard on either backend, with the
//! repository operations that can join it (`mark_processed`, `create_run`,
//! `put_setting`, ...) and the raw connection ([`Tx::postgres`] /
//! [`Tx::sqlite`]) for a service's own tables. Dropping it rolls back. An
//! owned guard was chosen over making every trait method generic over an
//! executor: the traits stay object-safe, and no lifetime ties the caller's
//! code to ours. The closure forms on top of it, [`Store::transaction`] and
//! [`Store::process_once`], commit on `Ok` and roll back on `Err`, so a
//! consumer cannot forget either; their closure is
//! `move |tx| Box::pin(async move { ... })` and, being higher-ranked over
//! the `Tx` borrow, captures owned values (clone an `Arc`, copy an id).
//! Inside a transaction use the `Tx` methods, not `store.runs()`: the
//! latter takes a second pooled connection (and on in-memory SQLite, whose
//! pool has one, waits until `acquire_timeout`).
//!
//! Money columns are exact: `NUMERIC` in Postgres, the rust_decimal text in
//! SQLite; never floating point.
//!
//! This crate must never depend on tonic, redis or any service crate: it is
//! storage only, and the domain (`grodt-core`) stays below it.

mod datasets;
mod error;
mod journal;
mod model;
mod pg;
mod regimes;
mod repo;
mod sqlite;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use datasets::{Dataset, DatasetFilter, Datasets, NewDataset};
pub use error::StoreError;
pub use journal::{Journal, JournalEntry};
pub use model::{Page, PageRequest, Run, RunKind, RunStatus, Setting};
pub use regimes::{NewRegimeChange, RegimeChange, RegimeChangeFilter, RegimeState, Regimes};
pub use repo::{ProcessedEvents, Runs, Settings};
pub use store::{Backend, Store, StoreOptions, Tx, TxFuture};
