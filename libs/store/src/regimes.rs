//! The regime service's tables on both backends: `regime_states` (one row per
//! (symbol, timeframe): the serialized classifier, opaque here) and
//! `regime_changes` (the history of regime changes, append-only).
//!
//! Writes go through [`crate::Tx`] (`put_regime_state`, `add_regime_change`)
//! so that they commit with the processed mark of the bar that caused them;
//! reads through [`Regimes`]. The SQL is written once in a macro and
//! instantiated per backend; only the id and row types differ.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;
use crate::model::{Page, PageRequest};

/// The state of one (symbol, timeframe).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegimeState {
    /// Instrument symbol.
    pub symbol: String,
    /// Timeframe label, e.g. `1d`.
    pub timeframe: String,
    /// The regime in force (`None` while warming up).
    pub regime: Option<String>,
    /// What the service needs to resume (the serialized classifier, ...).
    pub state: serde_json::Value,
    /// Last write (microsecond precision).
    pub updated_at: DateTime<Utc>,
}

/// A regime change as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRegimeChange {
    /// Instrument symbol.
    pub symbol: String,
    /// Timeframe label.
    pub timeframe: String,
    /// Open time of the bar the change was decided on (ns since the epoch).
    pub ts_ns: i64,
    /// The new regime.
    pub regime: String,
    /// The regime before; `None` for the symbol's first.
    pub previous: Option<String>,
    /// Event id of the published regime event (unique).
    pub event_id: Uuid,
    /// Event id of the bar that caused the change.
    pub source_event_id: String,
    /// The decision (inputs, thresholds, rule), opaque here.
    pub decision: serde_json::Value,
}

/// A stored regime change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegimeChange {
    /// What was recorded.
    pub data: NewRegimeChange,
    /// When (microsecond precision).
    pub created_at: DateTime<Utc>,
}

/// Which changes a history listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegimeChangeFilter {
    /// Exact symbol (required).
    pub symbol: String,
    /// Exact timeframe label (required).
    pub timeframe: String,
    /// Inclusive lower bound on `ts_ns`.
    pub from_ns: Option<i64>,
    /// Exclusive upper bound on `ts_ns`.
    pub to_ns: Option<i64>,
}

/// Reads of the regime service's tables.
#[async_trait]
pub trait Regimes: Send + Sync {
    /// The state of (symbol, timeframe), if any.
    async fn get_state(
        &self,
        symbol: &str,
        timeframe: &str,
    ) -> Result<Option<RegimeState>, StoreError>;

    /// Every state of `symbol` (every timeframe), or of every symbol when
    /// `symbol` is `None`, ordered by symbol and timeframe.
    async fn list_states(&self, symbol: Option<&str>) -> Result<Vec<RegimeState>, StoreError>;

    /// Changes matching `filter`, oldest first (in the order recorded, which
    /// is bar-time order per symbol and timeframe). Pages are stable while
    /// changes are appended.
    async fn history(
        &self,
        filter: &RegimeChangeFilter,
        page: &PageRequest,
    ) -> Result<Page<RegimeChange>, StoreError>;

    /// The change a bar event caused, if it caused one.
    async fn change_of_source(
        &self,
        source_event_id: &str,
    ) -> Result<Option<RegimeChange>, StoreError>;
}

pub(crate) const CHANGE_COLUMNS: &str = "seq, symbol, timeframe, ts_ns, regime, previous, \
     event_id, source_event_id, decision, created_at";

/// The SQL of both backends. The invoking module supplies `Conn`, `DbRow`,
/// `bind_id(Uuid)` and `read_id(&DbRow)`.
macro_rules! regime_sql {
    () => {
        use sqlx::Row;
        use sqlx::types::Json;

        use crate::error::{StoreError, db};
        use crate::model::{Page, PageRequest, now, paginate};
        use crate::regimes::{
            CHANGE_COLUMNS, NewRegimeChange, RegimeChange, RegimeChangeFilter, RegimeState,
        };

        fn decode_state(row: &DbRow) -> Result<RegimeState, StoreError> {
            let op = "regime_states.decode";
            let state: Json<serde_json::Value> = row.try_get("state").map_err(db(op))?;
            Ok(RegimeState {
                symbol: row.try_get("symbol").map_err(db(op))?,
                timeframe: row.try_get("timeframe").map_err(db(op))?,
                regime: row.try_get("regime").map_err(db(op))?,
                state: state.0,
                updated_at: row.try_get("updated_at").map_err(db(op))?,
            })
        }

        fn decode_change(row: &DbRow) -> Result<(i64, RegimeChange), StoreError> {
            let op = "regime_changes.decode";
            let decision: Json<serde_json::Value> = row.try_get("decision").map_err(db(op))?;
            let previous: String = row.try_get("previous").map_err(db(op))?;
            let data = NewRegimeChange {
                symbol: row.try_get("symbol").map_err(db(op))?,
                timeframe: row.try_get("timeframe").map_err(db(op))?,
                ts_ns: row.try_get("ts_ns").map_err(db(op))?,
                regime: row.try_get("regime").map_err(db(op))?,
                previous: (!previous.is_empty()).then_some(previous),
                event_id: read_id(row)?,
                source_event_id: row.try_get("source_event_id").map_err(db(op))?,
                decision: decision.0,
            };
            Ok((
                row.try_get("seq").map_err(db(op))?,
                RegimeChange {
                    data,
                    created_at: row.try_get("created_at").map_err(db(op))?,
                },
            ))
        }

        pub(crate) async fn put_state(
            conn: &mut Conn,
            symbol: &str,
            timeframe: &str,
            regime: Option<&str>,
            state: &serde_json::Value,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO regime_states (symbol, timeframe, regime, state, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (symbol, timeframe) DO UPDATE SET \
                 regime = EXCLUDED.regime, state = EXCLUDED.state, \
                 updated_at = EXCLUDED.updated_at",
            )
            .bind(symbol)
            .bind(timeframe)
            .bind(regime)
            .bind(Json(state))
            .bind(now())
            .execute(conn)
            .await
            .map_err(db("regime_states.put"))?;
            Ok(())
        }

        pub(crate) async fn add_change(
            conn: &mut Conn,
            c: &NewRegimeChange,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO regime_changes (symbol, timeframe, ts_ns, regime, previous, \
                 event_id, source_event_id, decision, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&c.symbol)
            .bind(&c.timeframe)
            .bind(c.ts_ns)
            .bind(&c.regime)
            .bind(c.previous.as_deref().unwrap_or(""))
            .bind(bind_id(c.event_id))
            .bind(&c.source_event_id)
            .bind(Json(&c.decision))
            .bind(now())
            .execute(conn)
            .await
            .map_err(db("regime_changes.add"))?;
            Ok(())
        }

        pub(crate) async fn get_state(
            conn: &mut Conn,
            symbol: &str,
            timeframe: &str,
        ) -> Result<Option<RegimeState>, StoreError> {
            let row = sqlx::query(
                "SELECT symbol, timeframe, regime, state, updated_at FROM regime_states \
                 WHERE symbol = $1 AND timeframe = $2",
            )
            .bind(symbol)
            .bind(timeframe)
            .fetch_optional(conn)
            .await
            .map_err(db("regime_states.get"))?;
            row.as_ref().map(decode_state).transpose()
        }

        pub(crate) async fn list_states(
            conn: &mut Conn,
            symbol: Option<&str>,
        ) -> Result<Vec<RegimeState>, StoreError> {
            let rows = sqlx::query(
                "SELECT symbol, timeframe, regime, state, updated_at FROM regime_states \
                 WHERE ($1 = '' OR symbol = $1) ORDER BY symbol, timeframe",
            )
            .bind(symbol.unwrap_or(""))
            .fetch_all(conn)
            .await
            .map_err(db("regime_states.list"))?;
            rows.iter().map(decode_state).collect()
        }

        pub(crate) async fn history(
            conn: &mut Conn,
            f: &RegimeChangeFilter,
            page: &PageRequest,
        ) -> Result<Page<RegimeChange>, StoreError> {
            let after = page.after_seq()?;
            let size = page.effective_size();
            let sql = format!(
                "SELECT {CHANGE_COLUMNS} FROM regime_changes WHERE seq > $1 \
                 AND symbol = $2 AND timeframe = $3 AND ts_ns >= $4 AND ts_ns < $5 \
                 ORDER BY seq LIMIT $6"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(after)
                .bind(&f.symbol)
                .bind(&f.timeframe)
                .bind(f.from_ns.unwrap_or(i64::MIN))
                .bind(f.to_ns.unwrap_or(i64::MAX))
                .bind(i64::from(size) + 1)
                .fetch_all(conn)
                .await
                .map_err(db("regime_changes.history"))?;
            let rows = rows
                .iter()
                .map(decode_change)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(paginate(rows, size))
        }

        pub(crate) async fn change_of_source(
            conn: &mut Conn,
            source_event_id: &str,
        ) -> Result<Option<RegimeChange>, StoreError> {
            let sql =
                format!("SELECT {CHANGE_COLUMNS} FROM regime_changes WHERE source_event_id = $1");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(source_event_id)
                .fetch_optional(conn)
                .await
                .map_err(db("regime_changes.of_source"))?;
            row.map(|r| decode_change(&r).map(|(_, c)| c)).transpose()
        }
    };
}

pub(crate) mod pg {
    use sqlx::postgres::{PgConnection as Conn, PgRow as DbRow};

    fn bind_id(id: uuid::Uuid) -> uuid::Uuid {
        id
    }

    fn read_id(row: &DbRow) -> Result<uuid::Uuid, StoreError> {
        row.try_get("event_id").map_err(db("regime_changes.decode"))
    }

    regime_sql!();
}

pub(crate) mod sqlite {
    use sqlx::sqlite::{SqliteConnection as Conn, SqliteRow as DbRow};

    fn bind_id(id: uuid::Uuid) -> String {
        id.to_string()
    }

    fn read_id(row: &DbRow) -> Result<uuid::Uuid, StoreError> {
        let text: String = row
            .try_get("event_id")
            .map_err(db("regime_changes.decode"))?;
        uuid::Uuid::parse_str(&text).map_err(|e| StoreError::Corrupt {
            row: format!("regime_changes[event_id={text}].event_id"),
            reason: e.to_string(),
        })
    }

    regime_sql!();
}

macro_rules! impl_regimes {
    ($repos:ty, $backend:ident) => {
        #[async_trait]
        impl Regimes for $repos {
            async fn get_state(
                &self,
                symbol: &str,
                timeframe: &str,
            ) -> Result<Option<RegimeState>, StoreError> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(crate::error::db("regime_states.get"))?;
                $backend::get_state(&mut conn, symbol, timeframe).await
            }

            async fn list_states(
                &self,
                symbol: Option<&str>,
            ) -> Result<Vec<RegimeState>, StoreError> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(crate::error::db("regime_states.list"))?;
                $backend::list_states(&mut conn, symbol).await
            }

            async fn history(
                &self,
                filter: &RegimeChangeFilter,
                page: &PageRequest,
            ) -> Result<Page<RegimeChange>, StoreError> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(crate::error::db("regime_changes.history"))?;
                $backend::history(&mut conn, filter, page).await
            }

            async fn change_of_source(
                &self,
                source_event_id: &str,
            ) -> Result<Option<RegimeChange>, StoreError> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(crate::error::db("regime_changes.of_source"))?;
                $backend::change_of_source(&mut conn, source_event_id).await
            }
        }
    };
}

impl_regimes!(crate::pg::PgRepos, pg);
impl_regimes!(crate::sqlite::SqliteRepos, sqlite);
