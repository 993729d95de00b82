//! The journal of the event-sourced consumers (execution, strategy, risk):
//! each input a consumer applied to its in-memory state, in the order it
//! applied them, with the events the input produced.
//!
//! The contract: a consumer applies an input to its state and, in one
//! transaction, appends it (the unique `(consumer, source)` makes a second
//! append of the same input a no-op that reports the first one), then
//! publishes the outputs and acks. The append is
//! [`crate::Store::journal_append`], one statement committed on its own (one
//! round trip), or [`crate::Tx::journal_append`] inside a transaction that
//! writes more, or [`crate::Store::journal_append_many`] for a batch of
//! inputs in one commit (group commit); [`Journal::get_many`] is the
//! redelivery check of such a batch. A restart
//! rebuilds the state by replaying [`Journal::scan`] in `seq` order; a
//! redelivered input is found by [`Journal::get`] and its stored outputs are
//! published again under their original event ids, so downstream
//! deduplication sees the same events. Input and output bytes are the
//! consumer's own encoding, opaque here.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;

/// One journaled input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Position in the journal; increases in append order.
    pub seq: i64,
    /// The consumer (service) the entry belongs to.
    pub consumer: String,
    /// The input's idempotency key (its event id, or a command's own key).
    pub source: String,
    /// The input.
    pub input: Vec<u8>,
    /// What the input produced.
    pub outputs: Vec<u8>,
    /// When it was appended (microsecond precision).
    pub created_at: DateTime<Utc>,
}

/// Reads of the journal. Appends go through [`crate::Store::journal_append`]
/// or [`crate::Tx::journal_append`].
#[async_trait]
pub trait Journal: Send + Sync {
    /// The entry of `source`, if it was journaled.
    async fn get(&self, consumer: &str, source: &str) -> Result<Option<JournalEntry>, StoreError>;

    /// The entries of those of `sources` that were journaled, in `seq`
    /// order (one query: the redelivery check of a whole batch).
    async fn get_many(
        &self,
        consumer: &str,
        sources: &[String],
    ) -> Result<Vec<JournalEntry>, StoreError>;

    /// Up to `limit` entries of `consumer` with `seq > after`, in `seq` order.
    async fn scan(
        &self,
        consumer: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<JournalEntry>, StoreError>;

    /// How many entries `consumer` has.
    async fn count(&self, consumer: &str) -> Result<u64, StoreError>;
}

const COLUMNS: &str = "seq, consumer, source, input, outputs, created_at";

macro_rules! journal_sql {
    () => {
        use sqlx::Row;

        use crate::error::{StoreError, db};
        use crate::journal::{COLUMNS, JournalEntry};
        use crate::model::now;

        fn decode(row: &DbRow) -> Result<JournalEntry, StoreError> {
            let op = "journal.decode";
            Ok(JournalEntry {
                seq: row.try_get("seq").map_err(db(op))?,
                consumer: row.try_get("consumer").map_err(db(op))?,
                source: row.try_get("source").map_err(db(op))?,
                input: row.try_get("input").map_err(db(op))?,
                outputs: row.try_get("outputs").map_err(db(op))?,
                created_at: row.try_get("created_at").map_err(db(op))?,
            })
        }

        /// Appends; `None` when `(consumer, source)` is journaled already.
        pub(crate) async fn append(
            conn: &mut Conn,
            consumer: &str,
            source: &str,
            input: &[u8],
            outputs: &[u8],
        ) -> Result<Option<i64>, StoreError> {
            let seq: Option<i64> = sqlx::query_scalar(
                "INSERT INTO journal (consumer, source, input, outputs, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (consumer, source) DO NOTHING \
                 RETURNING seq",
            )
            .bind(consumer)
            .bind(source)
            .bind(input)
            .bind(outputs)
            .bind(now())
            .fetch_optional(conn)
            .await
            .map_err(db("journal.append"))?;
            Ok(seq)
        }

        pub(crate) async fn get(
            conn: &mut Conn,
            consumer: &str,
            source: &str,
        ) -> Result<Option<JournalEntry>, StoreError> {
            let sql = format!("SELECT {COLUMNS} FROM journal WHERE consumer = $1 AND source = $2");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(consumer)
                .bind(source)
                .fetch_optional(conn)
                .await
                .map_err(db("journal.get"))?;
            row.as_ref().map(decode).transpose()
        }

        pub(crate) async fn get_many(
            conn: &mut Conn,
            consumer: &str,
            sources: &[String],
        ) -> Result<Vec<JournalEntry>, StoreError> {
            if sources.is_empty() {
                return Ok(Vec::new());
            }
            // `IN ($2, $3, ...)`: both databases take it (SQLite has no arrays).
            let marks: Vec<String> = (2..sources.len() + 2).map(|k| format!("${k}")).collect();
            let sql = format!(
                "SELECT {COLUMNS} FROM journal WHERE consumer = $1 AND source IN ({}) ORDER BY seq",
                marks.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(consumer);
            for s in sources {
                q = q.bind(s);
            }
            let rows = q.fetch_all(conn).await.map_err(db("journal.get_many"))?;
            rows.iter().map(decode).collect()
        }

        pub(crate) async fn scan(
            conn: &mut Conn,
            consumer: &str,
            after: i64,
            limit: u32,
        ) -> Result<Vec<JournalEntry>, StoreError> {
            let sql = format!(
                "SELECT {COLUMNS} FROM journal WHERE consumer = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(consumer)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(conn)
                .await
                .map_err(db("journal.scan"))?;
            rows.iter().map(decode).collect()
        }

        pub(crate) async fn count(conn: &mut Conn, consumer: &str) -> Result<u64, StoreError> {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM journal WHERE consumer = $1")
                .bind(consumer)
                .fetch_one(conn)
                .await
                .map_err(db("journal.count"))?;
            Ok(u64::try_from(n).unwrap_or(0))
        }
    };
}

pub(crate) mod pg {
    use sqlx::postgres::{PgConnection as Conn, PgRow as DbRow};

    journal_sql!();
}

pub(crate) mod sqlite {
    use sqlx::sqlite::{SqliteConnection as Conn, SqliteRow as DbRow};

    journal_sql!();
}

macro_rules! impl_journal {
    ($repos:ty, $backend:ident) => {
        #[async_trait]
        impl Journal for $repos {
            async fn get(
                &self,
                consumer: &str,
                source: &str,
            ) -> Result<Option<JournalEntry>, StoreError> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(crate::error::db("journal.get"))?;
                $backend::get(&mut conn, consumer, source).await
            }

            async fn get_many(
                &self,
                consumer: &str,
                sources: &[String],
            ) -> Result<Vec<JournalEntry>, StoreError> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(crate::error::db("journal.get_many"))?;
                $backend::get_many(&mut conn, consumer, sources).await
            }

            async fn scan(
                &self,
                consumer: &str,
                after: i64,
                limit: u32,
            ) -> Result<Vec<JournalEntry>, StoreError> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(crate::error::db("journal.scan"))?;
                $backend::scan(&mut conn, consumer, after, limit).await
            }

            async fn count(&self, consumer: &str) -> Result<u64, StoreError> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(crate::error::db("journal.count"))?;
                $backend::count(&mut conn, consumer).await
            }
        }
    };
}

impl_journal!(crate::pg::PgRepos, pg);
impl_journal!(crate::sqlite::SqliteRepos, sqlite);
