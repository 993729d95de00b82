//! The entry point: a connection pool on one backend, its repositories and
//! transactions.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use uuid::Uuid;

use crate::error::{StoreError, db};
use crate::model::{Page, PageRequest, Run, RunKind, RunStatus, Setting};
use crate::repo::{ProcessedEvents, Repos, Runs, Settings};
use crate::{pg, sqlite};

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Distributed mode: `postgres://` or `postgresql://` URLs.
    Postgres,
    /// Embedded mode: `sqlite:` URLs (a file, or `sqlite::memory:`).
    Sqlite,
}

impl Backend {
    /// The backend a URL names, from its scheme.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else {
            Err(StoreError::UnsupportedUrl {
                url: url.chars().take_while(|c| *c != ':').collect::<String>() + ":...",
            })
        }
    }
}

/// A pooled Postgres connection idle at least this long is pinged before
/// it is handed out; one returned more recently is used as it is (a query
/// on a connection that died meanwhile fails like any query the server
/// drops, and the caller's retry gets a fresh one).
pub const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Pool settings. `Default` suits a service; tests may shrink it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Upper bound of open connections (forced to 1 for in-memory SQLite,
    /// whose database lives in its one connection).
    pub max_connections: u32,
    /// Connections kept open while idle.
    pub min_connections: u32,
    /// How long a caller waits for a free connection before `Unavailable`.
    pub acquire_timeout: Duration,
    /// Idle connections above `min_connections` are closed after this.
    pub idle_timeout: Option<Duration>,
    /// SQLite only: how long a writer waits for the database lock.
    pub sqlite_busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            sqlite_busy_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Storage on Postgres or SQLite behind one interface. Cheap to clone (the
/// pool is shared).
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    repos: Arc<dyn Repos>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// The future a transaction closure returns; it may borrow the [`Tx`].
pub type TxFuture<'t, T> = Pin<Box<dyn Future<Output = T> + Send + 't>>;

impl Store {
    /// Connects with default pool settings; see [`Store::connect_with`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// Connects to the backend the URL's scheme names and opens one
    /// connection at once, so an unreachable database fails here
    /// (`Unavailable`) rather than at the first query. SQLite files are
    /// created if missing and use WAL. Does not migrate.
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let bad_url = |e: sqlx::Error| StoreError::InvalidArgument {
            field: "url",
            reason: e.to_string(),
        };
        match Backend::from_url(url)? {
            Backend::Postgres => {
                let connect = PgConnectOptions::from_str(url).map_err(bad_url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(options.max_connections)
                    .min_connections(options.min_connections)
                    .acquire_timeout(options.acquire_timeout)
                    .idle_timeout(options.idle_timeout)
                    // A connection back in the pool for less than
                    // `PING_IDLE_AFTER` is handed out without a ping: the
                    // hot path (one input after another) would otherwise
                    // pay a round trip per query. One idle longer (a
                    // restarted server may have dropped it) is pinged first.
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for >= PING_IDLE_AFTER {
                                sqlx::Connection::ping(conn).await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect_with(connect)
                    .await
                    .map_err(db("connect"))?;
                Ok(Self::from_postgres(pool))
            }
            Backend::Sqlite => {
                let connect = SqliteConnectOptions::from_str(url)
                    .map_err(bad_url)?
                    .create_if_missing(true)
                    .foreign_keys(true)
                    .busy_timeout(options.sqlite_busy_timeout);
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                let pool = if in_memory {
                    // The database dies with its last connection: keep one,
                    // forever.
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None)
                } else {
                    SqlitePoolOptions::new()
                        .max_connections(options.max_connections)
                        .min_connections(options.min_connections)
                        .idle_timeout(options.idle_timeout)
                }
                .acquire_timeout(options.acquire_timeout);
                let connect = if in_memory {
                    connect
                } else {
                    connect.journal_mode(SqliteJournalMode::Wal)
                };
                let pool = pool.connect_with(connect).await.map_err(db("connect"))?;
                Ok(Self::from_sqlite(pool))
            }
        }
    }

    /// Wraps an existing Postgres pool.
    pub fn from_postgres(pool: PgPool) -> Self {
        Self {
            repos: Arc::new(pg::PgRepos { pool: pool.clone() }),
            pool: Pool::Postgres(pool),
        }
    }

    /// Wraps an existing SQLite pool.
    pub fn from_sqlite(pool: SqlitePool) -> Self {
        Self {
            repos: Arc::new(sqlite::SqliteRepos { pool: pool.clone() }),
            pool: Pool::Sqlite(pool),
        }
    }

    /// Which backend this store uses.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies the embedded migrations of this backend. Idempotent, and safe
    /// to call from several replicas at once (sqlx takes a lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await?,
            Pool::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await?,
        }
        Ok(())
    }

    /// Readiness: a round trip on a pooled connection.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Postgres(p) => pg::ping(&mut *p.acquire().await.map_err(db("ping"))?).await,
            Pool::Sqlite(p) => sqlite::ping(&mut *p.acquire().await.map_err(db("ping"))?).await,
        }
    }

    /// Appends an input and its outputs to `consumer`'s journal as one
    /// statement in its own transaction (committed, durably, when this
    /// returns `Ok`): the same as [`Tx::journal_append`] and a commit, in
    /// one round trip instead of three. `Ok(None)` when `source` is
    /// journaled already (nothing written).
    ///
    /// # Errors
    /// The database failed; nothing was journaled, or (the connection lost
    /// after the commit) the entry is there: a retry finds it.
    pub async fn journal_append(
        &self,
        consumer: &str,
        source: &str,
        input: &[u8],
        outputs: &[u8],
    ) -> Result<Option<i64>, StoreError> {
        let op = "journal.append";
        match &self.pool {
            Pool::Postgres(p) => {
                let mut conn = p.acquire().await.map_err(db(op))?;
                crate::journal::pg::append(&mut conn, consumer, source, input, outputs).await
            }
            Pool::Sqlite(p) => {
                let mut conn = p.acquire().await.map_err(db(op))?;
                crate::journal::sqlite::append(&mut conn, consumer, source, input, outputs).await
            }
        }
    }

    /// Appends several inputs with their outputs to `consumer`'s journal in
    /// one transaction, in the order given (group commit: one durable
    /// commit for a batch). The seq of each, `None` for one journaled
    /// already (nothing written for it).
    ///
    /// # Errors
    /// The database failed; nothing was journaled, or (the connection lost
    /// during the commit) all of it: a retry finds them.
    pub async fn journal_append_many(
        &self,
        consumer: &str,
        entries: &[(&str, &[u8], &[u8])],
    ) -> Result<Vec<Option<i64>>, StoreError> {
        if let [(source, input, outputs)] = entries {
            // One statement, committed on its own: one round trip.
            return Ok(vec![
                self.journal_append(consumer, source, input, outputs)
                    .await?,
            ]);
        }
        let mut tx = self.begin().await?;
        let mut seqs = Vec::with_capacity(entries.len());
        for (source, input, outputs) in entries {
            seqs.push(tx.journal_append(consumer, source, input, outputs).await?);
        }
        tx.commit().await?;
        Ok(seqs)
    }

    /// Closes the pool, waiting for borrowed connections to come back.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Postgres(p) => p.close().await,
            Pool::Sqlite(p) => p.close().await,
        }
    }

    /// Dedupe marks for idempotent consumers.
    pub fn processed_events(&self) -> &dyn ProcessedEvents {
        &*self.repos
    }

    /// Backtest and optimization runs.
    pub fn runs(&self) -> &dyn Runs {
        &*self.repos
    }

    /// Namespaced JSON settings.
    pub fn settings(&self) -> &dyn Settings {
        &*self.repos
    }

    /// Market-data catalog metadata.
    pub fn datasets(&self) -> &dyn crate::datasets::Datasets {
        &*self.repos
    }

    /// The regime service's classifier states and regime changes.
    pub fn regimes(&self) -> &dyn crate::regimes::Regimes {
        &*self.repos
    }

    /// The journal of the event-sourced consumers (reads; appends go
    /// through [`Store::journal_append`] or [`Tx::journal_append`]).
    pub fn journal(&self) -> &dyn crate::journal::Journal {
        &*self.repos
    }

    /// The Postgres pool, for a service's own tables (None on SQLite).
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.pool {
            Pool::Postgres(p) => Some(p),
            Pool::Sqlite(_) => None,
        }
    }

    /// The SQLite pool, for a service's own tables (None on Postgres).
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.pool {
            Pool::Sqlite(p) => Some(p),
            Pool::Postgres(_) => None,
        }
    }

    /// Starts a transaction. Dropping the [`Tx`] without `commit` rolls it
    /// back. On SQLite it begins IMMEDIATE (takes the write lock up front),
    /// so two transactions never deadlock upgrading a read lock.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let inner = match &self.pool {
            Pool::Postgres(p) => TxInner::Postgres(p.begin().await.map_err(db("begin"))?),
            Pool::Sqlite(p) => {
                TxInner::Sqlite(p.begin_with("BEGIN IMMEDIATE").await.map_err(db("begin"))?)
            }
        };
        Ok(Tx { inner })
    }

    /// Runs `body` in a transaction: commits when it returns `Ok`, rolls
    /// back when it returns `Err` (or panics).
    pub async fn transaction<T, E, F>(&self, body: F) -> Result<T, E>
    where
        F: for<'t> FnOnce(&'t mut Tx) -> TxFuture<'t, Result<T, E>> + Send,
        T: Send,
        E: From<StoreError> + Send,
    {
        let mut tx = self.begin().await?;
        let outcome = body(&mut tx).await;
        finish(tx, outcome).await
    }

    /// The idempotent-consumer step: in one transaction, marks
    /// (`consumer`, `event_id`) processed and applies `effect`. Returns
    /// `Ok(None)` without calling `effect` if the event was already
    /// processed; `Ok(Some(_))` once both committed; on `Err` neither the
    /// effect nor the mark is kept, so a redelivery retries it. Concurrent
    /// deliveries of one event run the effect at most once.
    pub async fn process_once<T, E, F>(
        &self,
        consumer: &str,
        event_id: &str,
        effect: F,
    ) -> Result<Option<T>, E>
    where
        F: for<'t> FnOnce(&'t mut Tx) -> TxFuture<'t, Result<T, E>> + Send,
        T: Send,
        E: From<StoreError> + Send,
    {
        let mut tx = self.begin().await?;
        if !tx.mark_processed(consumer, event_id).await? {
            // Already applied: nothing was written, leave the effect out.
            finish::<_, E>(tx, Ok(None)).await
        } else {
            let outcome = effect(&mut tx).await.map(Some);
            finish(tx, outcome).await
        }
    }
}

/// Commits on `Ok`, rolls back on `Err`.
async fn finish<T, E: From<StoreError>>(tx: Tx, outcome: Result<T, E>) -> Result<T, E> {
    match outcome {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(e) => {
            // The body's error matters more than a failed rollback, and the
            // server rolls back on disconnect anyway.
            if let Err(rb) = tx.rollback().await {
                tracing::warn!(error = %rb, "rollback failed");
            }
            Err(e)
        }
    }
}

enum TxInner {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

/// An open transaction on either backend, with the repository operations
/// that can take part in it. Dropped without [`Tx::commit`], it rolls back.
pub struct Tx {
    inner: TxInner,
}

impl fmt::Debug for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

macro_rules! dispatch {
    ($self:ident, $f:ident ( $($arg:expr),* )) => {
        match &mut $self.inner {
            TxInner::Postgres(tx) => pg::$f(&mut *tx, $($arg),*).await,
            TxInner::Sqlite(tx) => sqlite::$f(&mut *tx, $($arg),*).await,
        }
    };
}

impl Tx {
    /// Which backend this transaction runs on.
    pub fn backend(&self) -> Backend {
        match self.inner {
            TxInner::Postgres(_) => Backend::Postgres,
            TxInner::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Makes the changes durable.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self.inner {
            TxInner::Postgres(tx) => tx.commit().await.map_err(db("commit")),
            TxInner::Sqlite(tx) => tx.commit().await.map_err(db("commit")),
        }
    }

    /// Discards the changes (dropping the `Tx` does the same, lazily).
    pub async fn rollback(self) -> Result<(), StoreError> {
        match self.inner {
            TxInner::Postgres(tx) => tx.rollback().await.map_err(db("rollback")),
            TxInner::Sqlite(tx) => tx.rollback().await.map_err(db("rollback")),
        }
    }

    /// The connection, for a service's own SQL in this transaction (None on SQLite).
    pub fn postgres(&mut self) -> Option<&mut sqlx::PgConnection> {
        match &mut self.inner {
            TxInner::Postgres(tx) => Some(&mut *tx),
            TxInner::Sqlite(_) => None,
        }
    }

    /// The connection, for a service's own SQL in this transaction (None on Postgres).
    pub fn sqlite(&mut self) -> Option<&mut sqlx::SqliteConnection> {
        match &mut self.inner {
            TxInner::Sqlite(tx) => Some(&mut *tx),
            TxInner::Postgres(_) => None,
        }
    }

    /// [`ProcessedEvents::mark_processed`] in this transaction: the mark
    /// commits or rolls back with everything else done here.
    pub async fn mark_processed(
        &mut self,
        consumer: &str,
        event_id: &str,
    ) -> Result<bool, StoreError> {
        dispatch!(self, mark_processed(consumer, event_id))
    }

    /// [`ProcessedEvents::is_processed`] in this transaction.
    pub async fn is_processed(
        &mut self,
        consumer: &str,
        event_id: &str,
    ) -> Result<bool, StoreError> {
        dispatch!(self, is_processed(consumer, event_id))
    }

    /// [`Runs::create`] in this transaction.
    pub async fn create_run(
        &mut self,
        kind: RunKind,
        id: Uuid,
        request: &serde_json::Value,
        request_pb: Option<&[u8]>,
    ) -> Result<Run, StoreError> {
        dispatch!(self, create_run(kind, id, request, request_pb))
    }

    /// [`Runs::get`] in this transaction.
    pub async fn get_run(&mut self, id: Uuid) -> Result<Run, StoreError> {
        dispatch!(self, get_run(id))
    }

    /// [`Runs::transition`] in this transaction.
    pub async fn transition_run(&mut self, id: Uuid, to: RunStatus) -> Result<Run, StoreError> {
        dispatch!(self, transition_run(id, to))
    }

    /// [`Runs::set_result`] in this transaction.
    pub async fn set_run_result(
        &mut self,
        id: Uuid,
        result: &serde_json::Value,
        result_pb: Option<&[u8]>,
        net_pnl: Option<Decimal>,
    ) -> Result<Run, StoreError> {
        dispatch!(self, set_run_result(id, result, result_pb, net_pnl))
    }

    /// [`Runs::list`] in this transaction.
    pub async fn list_runs(
        &mut self,
        kind: RunKind,
        page: &PageRequest,
    ) -> Result<Page<Run>, StoreError> {
        dispatch!(self, list_runs(kind, page))
    }

    /// [`Settings::put`] in this transaction.
    pub async fn put_setting(
        &mut self,
        namespace: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<Setting, StoreError> {
        dispatch!(self, put_setting(namespace, key, value))
    }

    /// [`Settings::get`] in this transaction.
    pub async fn get_setting(&mut self, namespace: &str, key: &str) -> Result<Setting, StoreError> {
        dispatch!(self, get_setting(namespace, key))
    }

    /// [`crate::Datasets::put`] in this transaction: an import's metadata
    /// commits or rolls back with everything else done here.
    pub async fn put_dataset(
        &mut self,
        id: Uuid,
        dataset: &crate::datasets::NewDataset,
    ) -> Result<crate::datasets::Dataset, StoreError> {
        match &mut self.inner {
            TxInner::Postgres(tx) => crate::datasets::pg::put_dataset(&mut *tx, id, dataset).await,
            TxInner::Sqlite(tx) => {
                crate::datasets::sqlite::put_dataset(&mut *tx, id, dataset).await
            }
        }
    }

    /// [`crate::Datasets::delete`] in this transaction.
    pub async fn delete_dataset(&mut self, id: Uuid) -> Result<bool, StoreError> {
        match &mut self.inner {
            TxInner::Postgres(tx) => crate::datasets::pg::delete_dataset(&mut *tx, id).await,
            TxInner::Sqlite(tx) => crate::datasets::sqlite::delete_dataset(&mut *tx, id).await,
        }
    }

    /// Writes the state of (symbol, timeframe) (insert or replace) in this
    /// transaction; `regime` is the regime in force, if any.
    pub async fn put_regime_state(
        &mut self,
        symbol: &str,
        timeframe: &str,
        regime: Option<&str>,
        state: &serde_json::Value,
    ) -> Result<(), StoreError> {
        match &mut self.inner {
            TxInner::Postgres(tx) => {
                crate::regimes::pg::put_state(&mut *tx, symbol, timeframe, regime, state).await
            }
            TxInner::Sqlite(tx) => {
                crate::regimes::sqlite::put_state(&mut *tx, symbol, timeframe, regime, state).await
            }
        }
    }

    /// Appends a regime change in this transaction; a second change of the
    /// same (symbol, timeframe, ts_ns) or event id is refused.
    pub async fn add_regime_change(
        &mut self,
        change: &crate::regimes::NewRegimeChange,
    ) -> Result<(), StoreError> {
        match &mut self.inner {
            TxInner::Postgres(tx) => crate::regimes::pg::add_change(&mut *tx, change).await,
            TxInner::Sqlite(tx) => crate::regimes::sqlite::add_change(&mut *tx, change).await,
        }
    }

    /// Appends an input and its outputs to `consumer`'s journal in this
    /// transaction; `Ok(None)` when `source` is journaled already (nothing
    /// written: the caller applied it before).
    pub async fn journal_append(
        &mut self,
        consumer: &str,
        source: &str,
        input: &[u8],
        outputs: &[u8],
    ) -> Result<Option<i64>, StoreError> {
        match &mut self.inner {
            TxInner::Postgres(tx) => {
                crate::journal::pg::append(&mut *tx, consumer, source, input, outputs).await
            }
            TxInner::Sqlite(tx) => {
                crate::journal::sqlite::append(&mut *tx, consumer, source, input, outputs).await
            }
        }
    }

    /// [`Settings::delete`] in this transaction.
    pub async fn delete_setting(&mut self, namespace: &str, key: &str) -> Result<bool, StoreError> {
        dispatch!(self, delete_setting(namespace, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_url() {
        assert_eq!(
            Backend::from_url("postgres://h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("sqlite::memory:").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("sqlite:///tmp/x.db").ok(),
            Some(Backend::Sqlite)
        );
        let err = Backend::from_url("mysql://user:secret@h/db").err();
        assert!(
            matches!(&err, Some(StoreError::UnsupportedUrl { url }) if url == "mysql:..."),
            "{err:?}"
        );
    }
}
