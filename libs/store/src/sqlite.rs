//! SQLite backend: the SQL, written against a connection so the same code
//! serves the pool (repository traits) and a transaction ([`crate::Tx`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::types::Json;
use sqlx::{Connection, Row};
use uuid::Uuid;

use crate::error::{StoreError, db};
use crate::model::{Page, PageRequest, Run, RunKind, RunStatus, Setting, now, paginate};
use crate::repo::{ProcessedEvents, Runs, Settings};

const RUN_COLUMNS: &str = "seq, id, kind, status, request, request_pb, result, result_pb, net_pnl, created_at, updated_at";

pub(crate) struct SqliteRepos {
    pub(crate) pool: SqlitePool,
}

impl SqliteRepos {
    async fn conn(
        &self,
        op: &'static str,
    ) -> Result<sqlx::pool::PoolConnection<sqlx::Sqlite>, StoreError> {
        self.pool.acquire().await.map_err(db(op))
    }
}

pub(crate) async fn ping(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    conn.ping().await.map_err(db("ping"))
}

pub(crate) async fn mark_processed(
    conn: &mut SqliteConnection,
    consumer: &str,
    event_id: &str,
) -> Result<bool, StoreError> {
    // SQLite has one writer at a time (transactions begin IMMEDIATE, others
    // wait on the busy timeout); the primary key then turns every later
    // insert into a no-op, so exactly one caller sees a row.
    let done = sqlx::query(
        "INSERT INTO processed_events (consumer, event_id, processed_at) VALUES ($1, $2, $3) \
         ON CONFLICT (consumer, event_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .bind(now())
    .execute(conn)
    .await
    .map_err(db("processed_events.mark"))?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn is_processed(
    conn: &mut SqliteConnection,
    consumer: &str,
    event_id: &str,
) -> Result<bool, StoreError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2)",
    )
    .bind(consumer)
    .bind(event_id)
    .fetch_one(conn)
    .await
    .map_err(db("processed_events.is_processed"))
}

pub(crate) async fn purge_processed_before(
    conn: &mut SqliteConnection,
    cutoff: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let done =
        sqlx::query("DELETE FROM processed_events WHERE julianday(processed_at) < julianday($1)")
            .bind(cutoff)
            .execute(conn)
            .await
            .map_err(db("processed_events.purge"))?;
    Ok(done.rows_affected())
}

fn decode_run(row: &SqliteRow) -> Result<(i64, Run), StoreError> {
    let op = "runs.decode";
    let id_text: String = row.try_get("id").map_err(db(op))?;
    let id = Uuid::parse_str(&id_text).map_err(|e| StoreError::Corrupt {
        row: format!("runs[id={id_text}].id"),
        reason: e.to_string(),
    })?;
    let kind: String = row.try_get("kind").map_err(db(op))?;
    let status: String = row.try_get("status").map_err(db(op))?;
    let corrupt = |col: &str, e: StoreError| StoreError::Corrupt {
        row: format!("runs[id={id}].{col}"),
        reason: e.to_string(),
    };
    let request: Json<serde_json::Value> = row.try_get("request").map_err(db(op))?;
    let result: Option<Json<serde_json::Value>> = row.try_get("result").map_err(db(op))?;
    let run = Run {
        id,
        kind: kind.parse().map_err(|e| corrupt("kind", e))?,
        status: status.parse().map_err(|e| corrupt("status", e))?,
        request: request.0,
        request_pb: row.try_get("request_pb").map_err(db(op))?,
        result: result.map(|j| j.0),
        result_pb: row.try_get("result_pb").map_err(db(op))?,
        net_pnl: decode_decimal(row.try_get("net_pnl").map_err(db(op))?)
            .map_err(|e| corrupt("net_pnl", e))?,
        created_at: row.try_get("created_at").map_err(db(op))?,
        updated_at: row.try_get("updated_at").map_err(db(op))?,
    };
    Ok((row.try_get("seq").map_err(db(op))?, run))
}

fn decode_decimal(text: Option<String>) -> Result<Option<Decimal>, StoreError> {
    text.map(|t| {
        Decimal::from_str_exact(&t).map_err(|e| StoreError::InvalidArgument {
            field: "net_pnl",
            reason: format!("{t:?} is not a decimal: {e}"),
        })
    })
    .transpose()
}

fn run_not_found(id: Uuid) -> StoreError {
    StoreError::NotFound {
        entity: "run",
        key: id.to_string(),
    }
}

pub(crate) async fn create_run(
    conn: &mut SqliteConnection,
    kind: RunKind,
    id: Uuid,
    request: &serde_json::Value,
    request_pb: Option<&[u8]>,
) -> Result<Run, StoreError> {
    let at = now();
    let sql = format!(
        "INSERT INTO runs (id, kind, status, request, request_pb, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $6, $5, $5) ON CONFLICT (id) DO NOTHING RETURNING {RUN_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .bind(kind.as_str())
        .bind(RunStatus::Queued.as_str())
        .bind(Json(request))
        .bind(at)
        .bind(request_pb)
        .fetch_optional(conn)
        .await
        .map_err(db("runs.create"))?;
    match row {
        Some(row) => Ok(decode_run(&row)?.1),
        None => Err(StoreError::AlreadyExists {
            entity: "run",
            key: id.to_string(),
        }),
    }
}

pub(crate) async fn get_run(conn: &mut SqliteConnection, id: Uuid) -> Result<Run, StoreError> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(db("runs.get"))?;
    match row {
        Some(row) => Ok(decode_run(&row)?.1),
        None => Err(run_not_found(id)),
    }
}

pub(crate) async fn transition_run(
    conn: &mut SqliteConnection,
    id: Uuid,
    to: RunStatus,
) -> Result<Run, StoreError> {
    // One conditional UPDATE: two workers racing for `queued -> running`
    // cannot both win.
    let from: Vec<&str> = to.allowed_from().iter().map(|s| s.as_str()).collect();
    let sql = format!(
        "UPDATE runs SET status = $2, updated_at = $3 WHERE id = $1 AND status IN (SELECT value FROM json_each($4)) \
         RETURNING {RUN_COLUMNS}"
    );
    loop {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(id.to_string())
            .bind(to.as_str())
            .bind(now())
            .bind(Json(&from))
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("runs.transition"))?;
        if let Some(row) = row {
            return Ok(decode_run(&row)?.1);
        }
        let current = get_run(conn, id).await?;
        if !current.status.can_transition_to(to) {
            return Err(StoreError::IllegalTransition {
                id,
                from: current.status,
                to,
            });
        }
        // It reached a legal predecessor between the UPDATE and the SELECT;
        // the lifecycle is acyclic, so this retries at most twice.
    }
}

pub(crate) async fn set_run_result(
    conn: &mut SqliteConnection,
    id: Uuid,
    result: &serde_json::Value,
    result_pb: Option<&[u8]>,
    net_pnl: Option<Decimal>,
) -> Result<Run, StoreError> {
    let sql = format!(
        "UPDATE runs SET result = $2, net_pnl = $3, updated_at = $4, result_pb = $5 WHERE id = $1 \
         RETURNING {RUN_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .bind(Json(result))
        // Exact decimal text, never REAL.
        .bind(net_pnl.map(|d| d.to_string()))
        .bind(now())
        .bind(result_pb)
        .fetch_optional(conn)
        .await
        .map_err(db("runs.set_result"))?;
    match row {
        Some(row) => Ok(decode_run(&row)?.1),
        None => Err(run_not_found(id)),
    }
}

pub(crate) async fn list_runs(
    conn: &mut SqliteConnection,
    kind: RunKind,
    page: &PageRequest,
) -> Result<Page<Run>, StoreError> {
    let after = page.after_seq()?;
    let size = page.effective_size();
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE kind = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(kind.as_str())
        .bind(after)
        .bind(i64::from(size) + 1)
        .fetch_all(conn)
        .await
        .map_err(db("runs.list"))?;
    let rows = rows.iter().map(decode_run).collect::<Result<Vec<_>, _>>()?;
    Ok(paginate(rows, size))
}

fn decode_setting(row: &SqliteRow) -> Result<Setting, StoreError> {
    let op = "settings.decode";
    let value: Json<serde_json::Value> = row.try_get("value").map_err(db(op))?;
    Ok(Setting {
        namespace: row.try_get("namespace").map_err(db(op))?,
        key: row.try_get("key").map_err(db(op))?,
        value: value.0,
        updated_at: row.try_get("updated_at").map_err(db(op))?,
    })
}

fn setting_not_found(namespace: &str, key: &str) -> StoreError {
    StoreError::NotFound {
        entity: "setting",
        key: format!("{namespace}/{key}"),
    }
}

pub(crate) async fn put_setting(
    conn: &mut SqliteConnection,
    namespace: &str,
    key: &str,
    value: &serde_json::Value,
) -> Result<Setting, StoreError> {
    // The WHERE keeps `updated_at` when the value is unchanged; no row is
    // returned then and the stored one is read back.
    let row = sqlx::query(
        "INSERT INTO settings (namespace, key, value, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at \
         WHERE settings.value IS NOT EXCLUDED.value \
         RETURNING namespace, key, value, updated_at",
    )
    .bind(namespace)
    .bind(key)
    .bind(Json(value))
    .bind(now())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("settings.put"))?;
    match row {
        Some(row) => decode_setting(&row),
        None => get_setting(conn, namespace, key).await,
    }
}

pub(crate) async fn get_setting(
    conn: &mut SqliteConnection,
    namespace: &str,
    key: &str,
) -> Result<Setting, StoreError> {
    let row = sqlx::query(
        "SELECT namespace, key, value, updated_at FROM settings WHERE namespace = $1 AND key = $2",
    )
    .bind(namespace)
    .bind(key)
    .fetch_optional(conn)
    .await
    .map_err(db("settings.get"))?;
    match row {
        Some(row) => decode_setting(&row),
        None => Err(setting_not_found(namespace, key)),
    }
}

pub(crate) async fn list_settings(
    conn: &mut SqliteConnection,
    namespace: &str,
) -> Result<Vec<Setting>, StoreError> {
    let rows = sqlx::query(
        "SELECT namespace, key, value, updated_at FROM settings WHERE namespace = $1 ORDER BY key",
    )
    .bind(namespace)
    .fetch_all(conn)
    .await
    .map_err(db("settings.list"))?;
    rows.iter().map(decode_setting).collect()
}

pub(crate) async fn delete_setting(
    conn: &mut SqliteConnection,
    namespace: &str,
    key: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM settings WHERE namespace = $1 AND key = $2")
        .bind(namespace)
        .bind(key)
        .execute(conn)
        .await
        .map_err(db("settings.delete"))?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl ProcessedEvents for SqliteRepos {
    async fn mark_processed(&self, consumer: &str, event_id: &str) -> Result<bool, StoreError> {
        mark_processed(
            &mut *self.conn("processed_events.mark").await?,
            consumer,
            event_id,
        )
        .await
    }

    async fn is_processed(&self, consumer: &str, event_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn("processed_events.is_processed").await?;
        is_processed(&mut conn, consumer, event_id).await
    }

    async fn purge_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        purge_processed_before(&mut *self.conn("processed_events.purge").await?, cutoff).await
    }
}

#[async_trait]
impl Runs for SqliteRepos {
    async fn create(
        &self,
        kind: RunKind,
        id: Uuid,
        request: &serde_json::Value,
        request_pb: Option<&[u8]>,
    ) -> Result<Run, StoreError> {
        create_run(
            &mut *self.conn("runs.create").await?,
            kind,
            id,
            request,
            request_pb,
        )
        .await
    }

    async fn get(&self, id: Uuid) -> Result<Run, StoreError> {
        get_run(&mut *self.conn("runs.get").await?, id).await
    }

    async fn transition(&self, id: Uuid, to: RunStatus) -> Result<Run, StoreError> {
        transition_run(&mut *self.conn("runs.transition").await?, id, to).await
    }

    async fn set_result(
        &self,
        id: Uuid,
        result: &serde_json::Value,
        result_pb: Option<&[u8]>,
        net_pnl: Option<Decimal>,
    ) -> Result<Run, StoreError> {
        set_run_result(
            &mut *self.conn("runs.set_result").await?,
            id,
            result,
            result_pb,
            net_pnl,
        )
        .await
    }

    async fn list(&self, kind: RunKind, page: &PageRequest) -> Result<Page<Run>, StoreError> {
        list_runs(&mut *self.conn("runs.list").await?, kind, page).await
    }
}

#[async_trait]
impl Settings for SqliteRepos {
    async fn put(
        &self,
        namespace: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<Setting, StoreError> {
        put_setting(
            &mut *self.conn("settings.put").await?,
            namespace,
            key,
            value,
        )
        .await
    }

    async fn get(&self, namespace: &str, key: &str) -> Result<Setting, StoreError> {
        get_setting(&mut *self.conn("settings.get").await?, namespace, key).await
    }

    async fn list(&self, namespace: &str) -> Result<Vec<Setting>, StoreError> {
        list_settings(&mut *self.conn("settings.list").await?, namespace).await
    }

    async fn delete(&self, namespace: &str, key: &str) -> Result<bool, StoreError> {
        delete_setting(&mut *self.conn("settings.delete").await?, namespace, key).await
    }
}
